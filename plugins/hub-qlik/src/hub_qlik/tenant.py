"""Qlik Cloud regions, and the reading of what a person types in the Tenant Name field.

People type a bare tenant name (``my-company``), or paste the address bar
(``https://my-company.eu.qlikcloud.com/hub``) or just the host. All three are read here, before
any request, and anything that is not exactly a Qlik Cloud tenant becomes a `FieldError`: the
host a key is sent to is built from one checked DNS label and a known region, never copied from
the input.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import NamedTuple

from hub_core import FieldError

__all__ = [
    "GOV",
    "REGIONS",
    "Region",
    "Tenant",
    "find_region",
    "parse_tenant",
    "resolve_tenant",
    "tenant_host",
]


class Region(NamedTuple):
    """A Qlik Cloud region: the value a person picks, its label, and the domain tenants live in."""

    value: str
    label: str
    domain: str


def _commercial(code: str, place: str) -> Region:
    return Region(code, f"{place} ({code})", f"{code}.qlikcloud.com")


#: Qlik Cloud Government lives on its own domain; it is only used when picked explicitly.
GOV = Region("us-gov", "Qlik Cloud Government (us-gov)", "us.qlikcloudgov.com")

#: Every region a person can choose, commercial ones first. Each label names where the region
#: is (Qlik's public region list): eu is Ireland and ap is Australia (Sydney), not the wider
#: areas their codes suggest.
REGIONS: tuple[Region, ...] = (
    _commercial("us", "United States"),
    _commercial("eu", "Ireland"),
    _commercial("de", "Germany"),
    _commercial("uk", "United Kingdom"),
    _commercial("fr", "France"),
    _commercial("sg", "Singapore"),
    _commercial("ap", "Australia"),
    _commercial("jp", "Japan"),
    _commercial("in", "India"),
    _commercial("il", "Israel"),
    _commercial("ae", "United Arab Emirates"),
    _commercial("br", "Brazil"),
    _commercial("se", "Sweden"),
    GOV,
)

_BY_VALUE = {region.value: region for region in REGIONS}
_COMMERCIAL_CODES = ", ".join(r.value for r in REGIONS if r is not GOV)

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_EXAMPLE = "https://my-company.eu.qlikcloud.com"
_SHOWN = 60


class Tenant(NamedTuple):
    """A checked tenant: its DNS label and its region."""

    name: str
    region: Region

    @property
    def host(self) -> str:
        """The tenant's host name, such as ``my-company.eu.qlikcloud.com``."""
        return f"{self.name}.{self.region.domain}"


class _Address(NamedTuple):
    name: str
    region: Region | None
    host: str | None  # the host as pasted, when a whole host was given


def find_region(value: str) -> Region | None:
    """Return the region whose value is *value* (any case), or None."""
    return _BY_VALUE.get(value.strip().lower())


def _quote(text: str) -> str:
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 1] + "…"
    return f"'{text}'"


def _fail(message: str) -> FieldError:
    return FieldError("tenant", message)


def _bad(shown: str, problem: str) -> FieldError:
    return _fail(f"Tenant Name {_quote(shown)} {problem}")


def _check_characters(text: str) -> None:
    for position, char in enumerate(text, start=1):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            raise _fail(f"Tenant Name contains a control character (at position {position}).")
        if code > 0x7E:
            name = unicodedata.name(char, "unnamed character")
            raise _fail(
                f"Tenant Name contains U+{code:04X} ({name}) at position {position}, which is "
                "not a plain letter: tenant names use only a-z, 0-9 and hyphens. If you copied "
                "it from a message or a document, type it again by hand."
            )
        if char.isspace():
            raise _fail("Tenant Name contains a space; a tenant name has none.")
    if "\\" in text:
        raise _fail("Tenant Name contains a backslash; a tenant name or address has none.")


def _check_label(label: str, shown: str) -> str:
    if len(label) > 63:
        raise _bad(shown, "is too long: a tenant name has at most 63 characters.")
    if label.startswith("-") or label.endswith("-"):
        raise _bad(shown, "starts or ends with a hyphen, which a tenant name never does.")
    if "_" in label:
        raise _bad(shown, "contains an underscore; tenant names use hyphens instead.")
    if not _LABEL.fullmatch(label):
        raise _bad(shown, "is not a tenant name: use only letters a-z, digits and hyphens.")
    if label[2:4] == "--":
        # "xn--" labels encode international names; a look-alike of a real tenant hides there.
        raise _bad(
            shown,
            "is an encoded international name (it has '--' in third "
            "and fourth place); Qlik Cloud tenant names are plain.",
        )
    return label


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _split_host(host: str, shown: str) -> _Address:
    """Read a whole host name (lowercase, ASCII) as tenant + region."""
    if host.endswith("."):
        raise _bad(shown, "ends with a dot; remove it.")
    labels = host.split(".")
    if "" in labels:
        raise _bad(shown, "has an empty part (two dots in a row, or a leading dot).")
    if len(labels) > 1 and all(label.isdigit() for label in labels):
        raise _bad(shown, "looks like an IP address; use your tenant's name instead.")
    if len(labels) == 1:
        return _Address(_check_label(labels[0], shown), None, None)
    if labels[-2:] == ["qlikcloud", "com"]:
        if len(labels) == 2:
            raise _bad(
                shown, f"is Qlik's own site, not a tenant; a tenant address looks like {_EXAMPLE}."
            )
        if len(labels) == 3:
            raise _bad(
                shown,
                f"has no region; a tenant address looks like "
                f"{_EXAMPLE} (tenant my-company, region eu).",
            )
        if len(labels) > 4:
            raise _bad(
                shown,
                f"has extra parts before the tenant name; a tenant "
                f"address has exactly the form <tenant>.<region>.qlikcloud.com, as in {_EXAMPLE}.",
            )
        region = find_region(labels[1])
        if region is None or region is GOV:
            raise _bad(
                shown,
                f"names the region {_quote(labels[1])}, which is not a Qlik "
                f"Cloud region hub knows ({_COMMERCIAL_CODES}).",
            )
        return _Address(_check_label(labels[0], shown), region, host)
    if labels[-3:] == ["us", "qlikcloudgov", "com"]:
        if len(labels) != 4:
            raise _bad(
                shown,
                "is not a Qlik Cloud Government tenant address; "
                "those have exactly the form <tenant>.us.qlikcloudgov.com.",
            )
        return _Address(_check_label(labels[0], shown), GOV, host)
    if len(labels) == 2 and find_region(labels[1]) not in (None, GOV):
        raise _bad(
            shown,
            f"looks like a tenant name and a region; type only the "
            f"tenant name here ({_quote(labels[0])}) and choose '{labels[1]}' as Region, or "
            "paste the whole address.",
        )
    raise _bad(
        shown,
        f"is not a Qlik Cloud address: a tenant address ends in "
        f".qlikcloud.com, as in {_EXAMPLE} (or in .us.qlikcloudgov.com for Qlik Cloud "
        "Government).",
    )


def parse_tenant(value: str) -> tuple[str, Region | None]:
    """Read the Tenant Name field: a tenant name, a tenant host, or a pasted tenant URL.

    Return the tenant's DNS label (lowercase) and the region the input names, if any.
    Raise `FieldError` on ``tenant`` for anything else.
    """
    text = value.strip()
    if not text:
        raise _fail("Tenant Name is required: the first part of your tenant's address.")
    _check_characters(text)
    rest = text
    whole_url = False
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() not in ("https", "http"):
            raise _bad(
                text,
                f"is a {scheme}:// address; paste the https:// "
                f"address of your tenant, such as {_EXAMPLE}, or just the tenant name.",
            )
        whole_url = True
    elif text.startswith("//"):
        rest = text[2:]
        whole_url = True
    else:
        scheme_match = _SCHEME.match(text)
        # "host:443" is a host with a port (refused below); "javascript:..." is a scheme.
        if scheme_match and not text[scheme_match.end() :][:1].isdigit():
            raise _bad(
                text,
                f"is not a web address; paste the https:// address "
                f"of your tenant, such as {_EXAMPLE}, or just the tenant name.",
            )
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if tail:
        whole_url = True
    if not authority:
        raise _bad(text, "has no host name in it.")
    if "@" in authority:
        raise _bad(
            text,
            f"contains '@' (a user name or e-mail address); paste "
            f"only the tenant name or the tenant's address, such as {_EXAMPLE}.",
        )
    if "[" in authority or "]" in authority or _is_ip(authority):
        raise _bad(text, "is an IP address; use your tenant's name instead.")
    if ":" in authority:
        raise _bad(
            text,
            "includes a port number; Qlik Cloud tenants need none, "
            "so remove the ':' and what follows it.",
        )
    if "%" in authority:
        raise _bad(text, "contains a percent-escape ('%'); type the tenant name in plain letters.")
    address = _split_host(authority.lower(), text)
    if whole_url and address.host is None:
        raise _bad(
            text,
            f"is not a Qlik Cloud address; paste either the tenant "
            f"name alone or your tenant's whole address, such as {_EXAMPLE}.",
        )
    return address.name, address.region


def resolve_tenant(tenant: str | None, region: str | None) -> Tenant:
    """Combine the Tenant Name and Region fields into one checked `Tenant`.

    A region in a pasted address fills an empty Region field; one that disagrees with it is a
    `FieldError` on ``region`` naming both. Every problem found is reported at once.
    """
    errors: dict[str, str] = {}
    name: str | None = None
    from_address: Region | None = None
    try:
        name, from_address = parse_tenant(tenant or "")
    except FieldError as exc:
        errors.update(exc.errors)
    chosen: Region | None = None
    if region and region.strip():
        chosen = find_region(region)
        if chosen is None:
            allowed = ", ".join(r.value for r in REGIONS)
            errors["region"] = f"Region must be one of: {allowed}."
    if name is not None and not errors:
        if chosen is not None and from_address is not None and chosen != from_address:
            errors["region"] = (
                f"Region is {chosen.label}, but the tenant address in Tenant Name is in "
                f"{from_address.label}. Choose {from_address.value} as Region, or correct the "
                "Tenant Name."
            )
        elif chosen is None and from_address is None:
            errors["region"] = (
                "Region is required: it is the part after the tenant name in your tenant's "
                "address (eu in https://my-company.eu.qlikcloud.com). You can also paste the "
                "whole address in Tenant Name."
            )
    if errors:
        raise FieldError.many(errors)
    assert name is not None
    found = chosen or from_address
    assert found is not None
    return Tenant(name, found)


def tenant_host(value: object) -> str | None:
    """The tenant host *value* names when it is a whole Qlik Cloud tenant host, else None.

    For hosts read back from an answer or from storage: a bare name, any other domain or any
    text that `parse_tenant` refuses gives None, never an error.
    """
    # A host name has at most 253 characters; a longer value is not read at all.
    if not isinstance(value, str) or not value or len(value) > 253:
        return None
    try:
        return resolve_tenant(value, None).host
    except FieldError:
        return None
