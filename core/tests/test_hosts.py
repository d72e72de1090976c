"""A provider's hosts: DNS names only, never an IP address, never a whole public suffix.

One rule (`hub_core.model.host_problem`): `Provider` refuses what it names, so a plugin
declaring such a host is reported broken, and the conformance check says the same words.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from hub_core import Field, Guide, Hub, Provider, hookimpl
from hub_core.model import host_problem
from hub_core.testing.conformance.static import host_problems


def provider(*hosts: str) -> Provider:
    return Provider(
        id="acme",
        name="Acme",
        fields=[Field("api_key", "API Key", kind="secret")],
        guide=Guide(),
        hosts=hosts,
    )


IP_ADDRESSES = [
    "127.0.0.1",  # dotted quad
    "10.0.0.1",
    "127.1",  # shortened
    "10.1",
    "2130706433",  # one decimal number
    "0x7f.1",  # hex
    "0x7f000001",
    "0177.0.0.1",  # octal
    "127.0.0.1.",  # with the root's dot
    "[::1]",  # IPv6, bracketed or not
    "::1",
    "[2001:db8::1]",
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "fe80::1%eth0",
    "*.0.0.1",  # a wildcard over an address
    "*.10.1",
]


@pytest.mark.parametrize("host", IP_ADDRESSES)
def test_an_ip_address_in_any_spelling_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="is an IP address; declare the provider's DNS name"):
        provider("api.acme.com", host)


PUBLIC_SUFFIXES = [
    "*.com",  # a top-level domain
    "*.uk",
    "*.co.uk",  # plain rules of the ICANN section
    "*.com.au",
    "*.foo.kawasaki.jp",  # under the wildcard rule *.kawasaki.jp
    "*.kawasaki.jp",  # implied by it
    "*.xn--55qx5d.cn",  # 公司.cn, listed in Unicode, declared in punycode
]


@pytest.mark.parametrize("pattern", PUBLIC_SUFFIXES)
def test_a_wildcard_over_a_bare_public_suffix_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="covers every domain registered under the public"):
        provider(pattern)


REGISTRABLE = [
    "*.myshopify.com",  # in the list's private section, not the ICANN one
    "*.qlikcloud.com",
    "*.eu.qlikcloud.com",
    "*.city.kawasaki.jp",  # the exception rule !city.kawasaki.jp
    "*.acme.co.uk",
    "*.foo.xn--55qx5d.cn",
    "*.acme.test",  # a name the list does not know
    "co.uk",  # an exact host is one host, not every domain under it
    "api.0x7f.example.com",  # numbers inside a name are fine
]


@pytest.mark.parametrize("pattern", REGISTRABLE)
def test_a_registrable_domain_and_its_wildcard_are_allowed(pattern: str) -> None:
    assert provider(pattern).hosts == (pattern,)
    assert host_problem(pattern) is None


@pytest.mark.parametrize("host", ["localhost", "*.localhost", "api.localhost"])
def test_this_machine_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="is this machine, not a provider"):
        provider(host)


@pytest.mark.parametrize("host", ["127.1", "*.co.uk", "[::1]"])
def test_a_plugin_declaring_such_a_host_is_reported_broken_with_the_reason(host: str) -> None:
    def hub_providers() -> list[Provider]:
        return [provider(host)]

    plugin = types.ModuleType("hub_badhosts")
    plugin.hub_providers = hookimpl(hub_providers)  # type: ignore[attr-defined]
    hub = Hub([plugin], load_entrypoints=False)
    (report,) = hub.plugins()
    assert report.error is not None
    assert report.error.startswith("hub_providers() failed: ValueError: ")
    assert report.error.endswith(str(host_problem(host)))
    assert hub.providers() == []


def test_the_conformance_check_applies_the_same_rule() -> None:
    assert host_problems(provider("api.acme.com", "*.eu.acme.com")) == []
    for host in (*IP_ADDRESSES, *PUBLIC_SUFFIXES, "localhost"):
        assert host_problem(host) is not None, host


def test_the_public_suffix_list_is_read_only_for_wildcards_and_parsed_only_when_needed() -> None:
    # Every plugin's Provider is built at every start of hub: an exact host never reads the
    # list, and a wildcard only the lines for its domain; the library's matcher is imported
    # only when one of those could make the domain public.
    code = """if True:
        import sys
        from hub_core.model import _icann_section, host_problem
        host_problem("api.acme.co.uk")
        print(_icann_section.cache_info().currsize, "publicsuffixlist" in sys.modules)
        host_problem("*.acme.co.uk")
        print(_icann_section.cache_info().currsize, "publicsuffixlist" in sys.modules)
        host_problem("*.co.uk")
        print(_icann_section.cache_info().currsize, "publicsuffixlist" in sys.modules)
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "False", "1", "False", "1", "True"]
