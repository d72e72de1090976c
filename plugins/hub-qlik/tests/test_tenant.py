"""Reading the Tenant Name and Region fields, and the hostile inputs that must send nothing."""

from __future__ import annotations

import pytest

from hub_core import FieldError
from hub_qlik.tenant import (
    GOV,
    REGIONS,
    find_region,
    parse_tenant,
    resolve_tenant,
    tenant_host,
)

EU = find_region("eu")
US = find_region("us")


@pytest.mark.parametrize(
    ("typed", "region", "host"),
    [
        ("my-company", "eu", "my-company.eu.qlikcloud.com"),
        ("My-Company", "EU", "my-company.eu.qlikcloud.com"),
        ("a", "us", "a.us.qlikcloud.com"),
        ("7", "us", "7.us.qlikcloud.com"),
        ("a" * 63, "jp", "a" * 63 + ".jp.qlikcloud.com"),
        ("abc123def", "se", "abc123def.se.qlikcloud.com"),
        ("my-company.eu.qlikcloud.com", None, "my-company.eu.qlikcloud.com"),
        ("MY-COMPANY.EU.QLIKCLOUD.COM", None, "my-company.eu.qlikcloud.com"),
        ("https://my-company.us.qlikcloud.com/hub", None, "my-company.us.qlikcloud.com"),
        ("https://my-company.us.qlikcloud.com/hub", "us", "my-company.us.qlikcloud.com"),
        ("HTTPS://My-Company.DE.qlikcloud.com/", "", "my-company.de.qlikcloud.com"),
        ("http://my-company.uk.qlikcloud.com", None, "my-company.uk.qlikcloud.com"),
        ("my-company.fr.qlikcloud.com/hub/home", None, "my-company.fr.qlikcloud.com"),
        ("//my-company.sg.qlikcloud.com", None, "my-company.sg.qlikcloud.com"),
        (
            "https://my-company.ap.qlikcloud.com/sense/app/1f2e/sheet/abc/state/analysis?x=1#y",
            None,
            "my-company.ap.qlikcloud.com",
        ),
        ("https://my-company.in.qlikcloud.com?next=/hub", None, "my-company.in.qlikcloud.com"),
        ("my-company.il.qlikcloud.com#top", None, "my-company.il.qlikcloud.com"),
        ("  my-company.ae.qlikcloud.com  ", None, "my-company.ae.qlikcloud.com"),
        ("my-company", "br", "my-company.br.qlikcloud.com"),
        ("my-company", "us-gov", "my-company.us.qlikcloudgov.com"),
        ("https://my-company.us.qlikcloudgov.com/hub", None, "my-company.us.qlikcloudgov.com"),
        ("my-company.us.qlikcloudgov.com", "us-gov", "my-company.us.qlikcloudgov.com"),
    ],
)
def test_tenant_names_hosts_and_addresses_are_read(typed, region, host):
    assert resolve_tenant(typed, region).host == host


def test_tenant_name_alone_has_no_region():
    assert parse_tenant("my-company") == ("my-company", None)


def test_address_names_its_region():
    assert parse_tenant("https://x.eu.qlikcloud.com/hub") == ("x", EU)
    assert parse_tenant("x.us.qlikcloudgov.com") == ("x", GOV)


def test_every_region_has_a_readable_label_and_its_domain():
    values = [region.value for region in REGIONS]
    assert values[:13] == [
        "us", "eu", "de", "uk", "fr", "sg", "ap", "jp", "in", "il", "ae", "br", "se",
    ]  # fmt: skip
    for region in REGIONS:
        assert region.value in region.label
        assert region.label != region.value
    assert {r.domain for r in REGIONS if r is not GOV} == {
        f"{v}.qlikcloud.com" for v in values[:13]
    }
    assert GOV.domain == "us.qlikcloudgov.com"


def test_region_mismatch_is_an_error_on_region_naming_both():
    with pytest.raises(FieldError) as caught:
        resolve_tenant("https://my-company.eu.qlikcloud.com/hub", "us")

    assert set(caught.value.errors) == {"region"}
    message = caught.value.errors["region"]
    assert "United States (us)" in message
    assert "Ireland (eu)" in message


def test_government_address_with_commercial_region_is_a_mismatch():
    with pytest.raises(FieldError) as caught:
        resolve_tenant("my-company.us.qlikcloudgov.com", "us")

    assert "us-gov" in caught.value.errors["region"]


def test_region_is_required_when_the_tenant_name_has_none():
    with pytest.raises(FieldError) as caught:
        resolve_tenant("my-company", None)

    assert set(caught.value.errors) == {"region"}
    assert "Region is required" in caught.value.errors["region"]
    assert "paste the whole address" in caught.value.errors["region"]


def test_unknown_region_value_is_an_error_on_region():
    with pytest.raises(FieldError) as caught:
        resolve_tenant("my-company", "mars")

    assert set(caught.value.errors) == {"region"}
    assert "us-gov" in caught.value.errors["region"]


def test_bad_tenant_and_bad_region_are_reported_together():
    with pytest.raises(FieldError) as caught:
        resolve_tenant("my_company", "mars")

    assert set(caught.value.errors) == {"tenant", "region"}


def test_empty_tenant_is_required():
    for empty in ("", "   ", None):
        with pytest.raises(FieldError) as caught:
            resolve_tenant(empty, "eu")
        assert "Tenant Name is required" in caught.value.errors["tenant"]


HOSTILE = [
    # not a DNS label
    "my_company",
    "-my-company",
    "my-company-",
    "a" * 64,
    "my company",
    "my\tcompany",
    "my-company\x00",
    "my-company\r\nHost: evil.example.net",
    "*",
    "*.us.qlikcloud.com",
    "my-company!",
    "my+company",
    "~my-company",
    '"my-company"',
    "'my-company'",
    "<my-company>",
    "my-company;rm -rf",
    # empty labels and dots
    ".",
    "..",
    ".my-company",
    "my-company.",
    "my..company",
    "my-company..us.qlikcloud.com",
    "my-company.us.qlikcloud.com.",
    "my-company.us.qlikcloud.com..",
    ".my-company.us.qlikcloud.com",
    # other domains and extra labels
    "my-company.example.com",
    "my-company.us.qlikcloud.com.example.net",
    "https://my-company.us.qlikcloud.com.example.net/hub",
    "a.b.us.qlikcloud.com",
    "https://a.b.us.qlikcloud.com/",
    "evil.my-company.eu.qlikcloud.com",
    "my-company.us.qlikcloud.co",
    "my-company.us.qlikcloud.com.evil",
    "qlikcloud.com",
    "us.qlikcloud.com",
    "https://qlikcloud.com/",
    "my-company.qlikcloud.com",
    "my-company.xx.qlikcloud.com",
    "my-company.us-gov.qlikcloud.com",
    "my-company.eu.qlikcloudgov.com",
    "a.b.us.qlikcloudgov.com",
    "us.qlikcloudgov.com",
    "my-company.us",
    "my-company.eu",
    "https://localhost/",
    "https://my-company/hub",
    "my-company/hub",
    "my-company?x=1",
    "https://evil.example.net/my-company.us.qlikcloud.com",
    "https://evil.example.net/?h=my-company.us.qlikcloud.com",
    "evil.example.net#.us.qlikcloud.com",
    # userinfo
    "user@my-company.us.qlikcloud.com",
    "ada@example.com",
    "https://user:pass@my-company.us.qlikcloud.com/",
    "https://my-company.us.qlikcloud.com@evil.example.net/",
    "https://evil.example.net@my-company.us.qlikcloud.com/",
    "@my-company",
    # ports
    "my-company.us.qlikcloud.com:443",
    "https://my-company.us.qlikcloud.com:443/hub",
    "https://my-company.us.qlikcloud.com:8443/hub",
    "my-company:80",
    "localhost:8080",
    "my-company.us.qlikcloud.com:",
    # percent-escapes
    "my%2dcompany",
    "my-company%2eus.qlikcloud.com",
    "%2e%2e",
    "https://my-company%2Eus.qlikcloud.com/",
    "my-company.us.qlikcloud.com%00.evil.example.net",
    "%6d%79",
    # IP addresses
    "127.0.0.1",
    "10.0.0.1",
    "https://169.254.169.254/latest/meta-data",
    "127.1",
    "0.0.0.0",  # noqa: S104 - an input, not a bind address
    "[::1]",
    "https://[::1]/",
    "::1",
    "2001:db8::1",
    "[2001:db8::1]:443",
    "::ffff:127.0.0.1",
    # schemes and scheme-like input
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "ftp://my-company.us.qlikcloud.com",
    "wss://my-company.us.qlikcloud.com",
    "mailto:ada@example.com",
    "https:/my-company.us.qlikcloud.com",
    "https:my-company.us.qlikcloud.com",
    "https://",
    "http:///hub",
    "//",
    "/",
    "?",
    "#",
    "/my-company",
    # backslashes
    "my-company\\evil",
    "https://my-company.us.qlikcloud.com\\@evil.example.net",
    "https:\\\\my-company.us.qlikcloud.com",
    "\\\\evil.example.net\\share",
    # non-ASCII look-alikes, invisible and encoded names
    "мy-company",  # Cyrillic em
    "my-cоmpany",  # Cyrillic o
    "ｍｙ-company",  # fullwidth
    "my‐company",  # U+2010 hyphen
    "my-company.us.qlikclоud.com",  # Cyrillic o in the domain
    "my-company。us。qlikcloud。com",  # ideographic full stops
    "mу-company.eu.qlikcloud.com",  # Cyrillic u
    "my-compаny",  # Cyrillic a
    "straße",
    "KELVIN-\u212a",
    "my-company\u200b",
    "\u202emy-company",
    "my-company\u00ad",
    "xn--my-cmpany-xyz",
    "xn--80ak6aa92e.us.qlikcloud.com",
    "ab--cd",
    "https://xn--mycompany-9db.eu.qlikcloud.com/",
]


@pytest.mark.parametrize("typed", HOSTILE)
def test_hostile_tenant_is_a_field_error_and_sends_nothing(typed, values, field_error):
    values.update(tenant=typed, region="")

    error = field_error(values)

    assert set(error.errors) == {"tenant"}
    assert error.errors["tenant"].startswith("Tenant Name")
    assert "\n" not in error.errors["tenant"]
    assert "\r" not in error.errors["tenant"]


@pytest.mark.parametrize("typed", HOSTILE)
def test_hostile_tenant_is_refused_whatever_the_region(typed, values, field_error):
    values.update(tenant=typed, region="us")

    assert "tenant" in field_error(values).errors


def test_long_input_is_clipped_in_the_message(values, field_error):
    values["tenant"] = "x" * 300 + ".example.net"

    message = field_error(values).errors["tenant"]

    assert "x" * 59 + "…" in message
    assert "x" * 61 not in message


def test_look_alike_character_is_named(values, field_error):
    values["tenant"] = "my-cоmpany"

    message = field_error(values).errors["tenant"]

    assert "U+043E" in message
    assert "CYRILLIC SMALL LETTER O" in message
    assert "position 5" in message


def test_tenant_and_region_typed_together_get_a_hint(values, field_error):
    values["tenant"] = "my-company.eu"

    message = field_error(values).errors["tenant"]

    assert "choose 'eu' as Region" in message


def test_unknown_region_in_an_address_lists_the_known_ones(values, field_error):
    values.update(tenant="my-company.xx.qlikcloud.com", region="")

    message = field_error(values).errors["tenant"]

    assert "'xx'" in message
    assert "us, eu, de" in message


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("user@my-company.us.qlikcloud.com", "contains '@'"),
        ("https://my-company.us.qlikcloud.com@evil.example.net/", "contains '@'"),
        ("my-company.us.qlikcloud.com:443", "port number"),
        ("https://my-company.us.qlikcloud.com:8443/", "port number"),
        ("my%2dcompany", "percent-escape"),
        ("127.0.0.1", "IP address"),
        ("2001:db8::1", "IP address"),
        ("[::1]", "IP address"),
        ("127.1", "IP address"),
        ("my-company.us.qlikcloud.com.", "ends with a dot"),
        ("my..company", "empty part"),
        ("a.b.us.qlikcloud.com", "extra parts"),
        ("my-company.us.qlikcloud.com.example.net", "not a Qlik Cloud address"),
        ("https://my-company/hub", "not a Qlik Cloud address"),
        ("my-company.qlikcloud.com", "has no region"),
        ("qlikcloud.com", "Qlik's own site"),
        ("a.b.us.qlikcloudgov.com", "Qlik Cloud Government"),
        ("javascript:alert(1)", "not a web address"),
        ("ftp://my-company.us.qlikcloud.com", "ftp:// address"),
        ("https://", "no host name"),
        ("my\\company", "backslash"),
        ("my company", "space"),
        ("my\x00company", "control character"),
        ("my_company", "underscore"),
        ("-my-company", "hyphen"),
        ("a" * 64, "at most 63"),
        ("my+company", "only letters a-z, digits and hyphens"),
        ("xn--my-cmpany-xyz", "encoded international name"),
    ],
)
def test_each_kind_of_bad_tenant_gets_its_own_explanation(typed, said, values, field_error):
    values.update(tenant=typed, region="")

    assert said in field_error(values).errors["tenant"]


@pytest.mark.parametrize("typed", ["essu_" + "k" * 40, "Bearer abc", "github_pat_1234"])
def test_another_key_typed_as_tenant_is_recognised(typed, values, field_error):
    values["tenant"] = typed

    assert "looks like an API key" in field_error(values).errors["tenant"]


def test_a_different_qlik_key_typed_as_tenant_is_recognised(values, field_error, make_key):
    values["tenant"] = make_key(jti="some-other-key")

    assert "looks like an API key" in field_error(values).errors["tenant"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acme.eu.qlikcloud.com", "acme.eu.qlikcloud.com"),
        ("ACME.EU.QlikCloud.com", "acme.eu.qlikcloud.com"),
        ("x.us.qlikcloudgov.com", "x.us.qlikcloudgov.com"),
        ("acme", None),  # a bare name says nothing of the region
        ("evil.example.net", None),
        ("acme.eu.qlikcloud.com.example.net", None),
        ("https://acme.eu.qlikcloud.com/hub", "acme.eu.qlikcloud.com"),
        ("a" * 300 + ".eu.qlikcloud.com", None),
        ("", None),
        (None, None),
        (["acme.eu.qlikcloud.com"], None),
    ],
)
def test_tenant_host_reads_only_whole_tenant_hosts(value, expected):
    assert tenant_host(value) == expected
