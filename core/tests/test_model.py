from __future__ import annotations

import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

import hub_core
from hub_core import (
    Account,
    AccountDisplay,
    Choice,
    Credentials,
    Field,
    Guide,
    Provider,
    Status,
    Verified,
)
from hub_core.model import RESERVED_FIELD_NAMES

KEY = Field("api_key", "API Key", kind="secret")


def provider(**changes: object) -> Provider:
    values: dict[str, object] = {
        "id": "acme",
        "name": "Acme",
        "fields": [KEY],
        "guide": Guide(),
        "hosts": ["api.acme.test"],
    }
    values.update(changes)
    return Provider(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_id", ["", "Acme", "1acme", "ac me", "acme-", "a_b", "x" * 65])
def test_provider_id_must_be_a_lowercase_slug(bad_id: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        provider(id=bad_id)


@pytest.mark.parametrize(
    "hosts",
    [
        [],
        ["com"],
        ["*.com"],
        ["API.acme.test"],
        ["https://api.acme.test"],
        ["api.acme.test:8443"],
        ["-bad.acme.test"],
        ["*"],
        ["a..b"],
    ],
)
def test_provider_hosts_must_be_dns_names_or_suffix_patterns(hosts: list[str]) -> None:
    with pytest.raises(ValueError, match="host"):
        provider(hosts=hosts)


def test_provider_hosts_given_as_one_string_is_refused() -> None:
    with pytest.raises(TypeError):
        provider(hosts="api.acme.test")


def test_provider_needs_fields_with_unique_names() -> None:
    with pytest.raises(ValueError, match="no fields"):
        provider(fields=[])
    with pytest.raises(ValueError, match="twice"):
        provider(fields=[KEY, KEY])


@pytest.mark.parametrize("name", ["docs_url", "version"])
def test_a_providers_texts_must_be_text(name: str) -> None:
    # An httpx.URL as docs_url would break `hub providers --json` for every provider.
    with pytest.raises(TypeError, match=name):
        provider(**{name: _NotText()})


@pytest.mark.parametrize("name", ["help", "placeholder", "pattern", "default"])
def test_a_fields_texts_must_be_text(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        Field("team", "Team", **{name: _NotText()})  # type: ignore[arg-type]


class _NotText:
    def __str__(self) -> str:
        return "https://docs.acme.test"


def test_provider_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        provider().name = "Other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.acme.test", True),
        ("API.ACME.TEST", True),
        ("x.eu.acme.test", True),
        ("a.b.eu.acme.test", True),
        ("eu.acme.test", False),
        ("evil-eu.acme.test", False),
        ("api.acme.test.evil.test", False),
        ("xapi.acme.test", False),
        ("", False),
    ],
)
def test_allows_host_matches_exact_hosts_and_suffix_patterns(host: str, allowed: bool) -> None:
    assert provider(hosts=["api.acme.test", "*.eu.acme.test"]).allows_host(host) is allowed


def test_field_rules() -> None:
    with pytest.raises(ValueError, match="needs choices"):
        Field("region", "Region", kind="choice")
    with pytest.raises(ValueError, match="only choice fields"):
        Field("region", "Region", choices=["us"])
    with pytest.raises(ValueError, match="invalid pattern"):
        Field("team", "Team", pattern="(")
    with pytest.raises(ValueError, match="cannot have a default"):
        Field("api_key", "Key", kind="secret", default="x")
    with pytest.raises(ValueError, match="not one of its choices"):
        Field("region", "Region", kind="choice", choices=["us"], default="eu")
    with pytest.raises(ValueError, match="field name"):
        Field("API-key", "Key")
    with pytest.raises(ValueError, match="kind"):
        Field("x", "X", kind="password")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_length"):
        Field("x", "X", max_length=0)


def test_normalize_must_be_a_function_and_is_no_part_of_a_fields_value() -> None:
    with pytest.raises(TypeError, match="normalize of 'api_key' must be a function"):
        Field("api_key", "API Key", kind="secret", normalize="strip")  # type: ignore[arg-type]
    field = Field("api_key", "API Key", kind="secret", normalize=str.upper)
    assert field.normalize is str.upper
    assert field == Field("api_key", "API Key", kind="secret")  # as fills: not compared
    assert "normalize" not in repr(field)


def test_choices_accept_strings_pairs_and_choice_objects() -> None:
    field = Field(
        "r", "Region", kind="choice", choices=["us", ("eu", "Europe"), Choice("de", "DE")]
    )
    assert field.choices == (Choice("us", "us"), Choice("eu", "Europe"), Choice("de", "DE"))


def test_credentials_mask_secrets_in_repr_and_str() -> None:
    credentials = Credentials({"api_key": "s3cr3t-value", "region": "us"}, secret={"api_key"})
    assert "s3cr3t-value" not in repr(credentials)
    assert "s3cr3t-value" not in str(credentials)
    assert "'region': 'us'" in repr(credentials)
    assert credentials["api_key"] == "s3cr3t-value"
    assert credentials.public() == {"region": "us"}
    assert credentials.secret_values() == ("s3cr3t-value",)
    assert dict(credentials) == {"api_key": "s3cr3t-value", "region": "us"}


def test_credentials_refuse_pickling() -> None:
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(Credentials({"api_key": "x"}, secret={"api_key"}))


def test_credentials_are_immutable() -> None:
    credentials = Credentials({"a": "1"})
    with pytest.raises(TypeError):
        credentials["a"] = "2"  # type: ignore[index]


def test_verified_normalises_expiry_to_utc_and_refuses_naive_times() -> None:
    paris = timezone(timedelta(hours=1))
    verified = Verified("org:1", "Org", expires_at=datetime(2030, 1, 1, 1, tzinfo=paris))
    assert verified.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert verified.expires_at.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        Verified("org:1", "Org", expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="non-empty"):
        Verified("", "Org")


def test_account_display_rows_become_string_pairs() -> None:
    display = AccountDisplay("Title", rows=[("Count", 3)])
    assert display.rows == (("Count", "3"),)


def test_account_status_is_converted_from_text() -> None:
    account = Account(id="a1", provider_id="acme", identity="org:1", label="Org", status="active")
    assert account.status is Status.ACTIVE
    assert str(account.status) == "active"
    with pytest.raises(ValueError, match="'unknown' is not a valid Status"):
        Account(id="a1", provider_id="acme", identity="org:1", label="Org", status="unknown")


def test_a_pattern_must_also_compile_in_its_anchored_exported_form() -> None:
    with pytest.raises(ValueError, match="invalid pattern"):
        Field("team", "Team", pattern="(?i)[a-z]+")
    assert Field("team", "Team", pattern="[a-z]+|[0-9]+").pattern == "[a-z]+|[0-9]+"


@pytest.mark.parametrize("name", sorted(RESERVED_FIELD_NAMES))
def test_a_field_may_not_take_a_name_the_web_forms_use(name: str) -> None:
    # Two inputs of one name in a Connect form: the provider's value or hub's own would be lost.
    with pytest.raises(ValueError, match=f"field name '{name}' is one hub's web forms use"):
        Field(name, "Label")


def test_every_hidden_input_of_the_connect_form_is_a_reserved_name() -> None:
    template = Path(hub_core.__file__).parent / "web" / "templates" / "connect.html"
    hidden = set(re.findall(r'type="hidden" name="([a-z_]+)"', template.read_text()))
    assert hidden == RESERVED_FIELD_NAMES
