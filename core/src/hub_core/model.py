"""The value types of the plugin contract: providers, their fields and guides, results, accounts.

All are immutable (attrs, frozen, slots) and validated when built, so an invalid `Provider`
cannot exist. None of them imports anything heavier than attrs.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from .status import Status

__all__ = [
    "Account",
    "AccountDisplay",
    "Choice",
    "Credentials",
    "Field",
    "Guide",
    "Provider",
    "Section",
    "Status",
    "Step",
    "Verified",
    "host_problem",
]

FieldKind = Literal["text", "secret", "choice", "url"]
FIELD_KINDS: tuple[FieldKind, ...] = ("text", "secret", "choice", "url")

_SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: The names the web Hub's forms give their own inputs, beside a provider's fields.
RESERVED_FIELD_NAMES = frozenset({"csrf_token", "form_id", "hub_link"})
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


#: An optional text of a declaration: a plugin that gives another type (an ``httpx.URL`` as
#: ``docs_url``) fails at import, not in the ``--json`` of every provider.
_optional_text = attrs.validators.optional(attrs.validators.instance_of(str))


def _non_empty(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _utc(value: datetime | None) -> datetime | None:
    """Normalise a timestamp to aware UTC; naive datetimes are refused, not guessed."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC)


# --- the guide ---------------------------------------------------------------------------


@attrs.frozen
class Step:
    """One step of a guide section: a short title and its text."""

    title: str = attrs.field(validator=_non_empty)
    content: str = ""


def _steps(value: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(value)


@attrs.frozen
class Section:
    """A part of a guide, such as "Create the key", with its numbered steps."""

    title: str = attrs.field(validator=_non_empty)
    content: str = ""
    steps: tuple[Step, ...] = attrs.field(
        default=(),
        converter=_steps,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(Step)),
    )


def _sections(value: Iterable[Section]) -> tuple[Section, ...]:
    return tuple(value)


@attrs.frozen
class Guide:
    """The end-user guide of a provider, as data: the CLI and the web Hub each render it."""

    warning: str | None = None
    sections: tuple[Section, ...] = attrs.field(
        default=(),
        converter=_sections,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(Section)),
    )


# --- fields ------------------------------------------------------------------------------


@attrs.frozen
class Choice:
    """One allowed value of a ``choice`` field, with the label a person reads."""

    value: str = attrs.field(validator=_non_empty)
    label: str = attrs.field(validator=_non_empty)


def _choices(value: Iterable[Choice | str | tuple[str, str]]) -> tuple[Choice, ...]:
    out = []
    for item in value:
        if isinstance(item, Choice):
            out.append(item)
        elif isinstance(item, str):
            out.append(Choice(item, item))
        else:
            out.append(Choice(*item))
    return tuple(out)


@attrs.frozen
class Field:
    """One input of a provider's link form.

    ``name`` is a lowercase identifier (it also names the ``HUB_FIELD_<NAME>`` variable);
    ``kind`` is ``text``, ``secret`` (never shown, stored encrypted), ``choice`` (one of
    ``choices``) or ``url``. ``pattern`` is a regular expression the whole value must match.

    ``fills`` (non-secret fields only) lets this field's value supply the values of other
    non-secret fields before they are asked: a function of the value as typed, returning
    ``{field name: value}`` (a pasted tenant address gives ``{"region": "eu"}``). It must be
    pure and quick (no I/O). Forms call it through `Provider.supplied`; a value the person
    gave for a field always wins over a supplied one, and the flow still checks everything.

    ``normalize`` turns the value as typed into the value hub keeps: the one checked against
    ``pattern``, ``max_length``, ``choices`` and the rest, given to the flow, stored, and (for
    a secret) masked in every message of a check; such as the bare key from a pasted
    ``Authorization: Bearer <key>`` line. It must be pure and quick (no I/O). It is given the
    value stripped of surrounding white space, never an empty one nor one holding a control
    or invisible character (refused as typed). It may raise `FieldError` or `ValueError`: the
    message becomes the field's error (for a secret field, with any piece of the typed value
    masked). Its result is stripped too; an empty one counts as no value. Returning anything
    but a string, or raising anything else, is the plugin's bug (`PluginError`). It must give
    a normalized value back unchanged (a prompt normalizes what is typed, and the check that
    follows normalizes that again), as must a flow that normalizes again.
    """

    name: str = attrs.field()
    label: str = attrs.field(validator=_non_empty)
    kind: FieldKind = attrs.field(default="text")
    required: bool = True
    help: str | None = attrs.field(default=None, validator=_optional_text)
    placeholder: str | None = attrs.field(default=None, validator=_optional_text)
    choices: tuple[Choice, ...] = attrs.field(default=(), converter=_choices)
    pattern: str | None = attrs.field(default=None, validator=_optional_text)
    max_length: int = attrs.field(default=256)
    default: str | None = attrs.field(default=None, validator=_optional_text)
    fills: Callable[[str], Mapping[str, str]] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    normalize: Callable[[str], str] | None = attrs.field(default=None, eq=False, repr=False)

    @name.validator
    def _check_name(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or not _FIELD_NAME.fullmatch(value):
            raise ValueError(f"field name must match [a-z][a-z0-9_]*, got {value!r}")
        if value in RESERVED_FIELD_NAMES:
            raise ValueError(f"field name {value!r} is one hub's web forms use; choose another")

    @kind.validator
    def _check_kind(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if value not in FIELD_KINDS:
            raise ValueError(
                f"field {self.name!r} has kind {value!r}; a kind is one of "
                f"{', '.join(FIELD_KINDS)} (a key is kind='secret')"
            )

    @max_length.validator
    def _check_max_length(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"max_length must be a positive integer, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"choice field {self.name!r} needs choices")
        if self.kind != "choice" and self.choices:
            raise ValueError(f"only choice fields take choices ({self.name!r} is {self.kind})")
        values = [choice.value for choice in self.choices]
        if len(set(values)) != len(values):
            raise ValueError(f"field {self.name!r} has duplicate choices")
        if self.pattern is not None:
            try:  # in the anchored form it is matched and exported in (JSON Schema)
                re.compile(f"^(?:{self.pattern})$")
            except re.error as exc:
                raise ValueError(f"field {self.name!r} has an invalid pattern: {exc}") from None
        if self.default is not None:
            if self.kind == "secret":
                raise ValueError(f"secret field {self.name!r} cannot have a default")
            if self.kind == "choice" and self.default not in values:
                raise ValueError(f"default of {self.name!r} is not one of its choices")
            from .fields import default_problem  # fields reads this module: asked late

            problem = default_problem(self)
            if problem is not None:
                raise ValueError(f"default of {self.name!r} fails the field's own check: {problem}")
        if self.fills is not None:
            if not callable(self.fills):
                raise TypeError(f"fills of {self.name!r} must be a function of the value")
            if self.kind == "secret":
                # Its result is shown: derived from a key, it could show a piece of it.
                raise ValueError(f"secret field {self.name!r} cannot fill other fields")
        if self.normalize is not None and not callable(self.normalize):
            raise TypeError(f"normalize of {self.name!r} must be a function of the value")

    @property
    def secret(self) -> bool:
        """Whether the value is a secret (hidden when typed, encrypted at rest, never shown)."""
        return self.kind == "secret"


# --- providers ---------------------------------------------------------------------------


# The last label of a host that URL parsers read as an IPv4 address: decimal, or hex with 0x
# (WHATWG URL "ends in a number"; inet_aton's rules: 127.1, 2130706433, 0x7f.1, 0177.0.0.1).
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


def host_problem(pattern: str) -> str | None:
    """Why *pattern* cannot be on a provider's allowlist (`Provider.hosts`), or None if it can.

    The one rule for declared hosts: `Provider` refuses a pattern this returns a reason for, and
    the conformance check reports the same words. Allowed: a lowercase DNS name of two labels
    or more (``api.example.com``), or ``*.`` and such a name (``*.example.com``). Refused: an
    IP address in any spelling (dotted, shortened ``127.1``, decimal ``2130706433``, hex
    ``0x7f.1``, octal ``0177.0.0.1``, IPv6 with or without brackets, IPv4-mapped IPv6), this
    machine (``localhost``), and a wildcard over a bare public suffix of the ICANN section of
    the Public Suffix List (``*.co.uk``, ``*.com.au``), which covers domains anyone can
    register. A registrable domain (``*.myshopify.com``) is allowed.
    """
    host = pattern.removeprefix("*.")
    if _is_ip_address(host.lower()):
        return f"host {pattern!r} is an IP address; declare the provider's DNS name"
    labels = host.split(".")
    if pattern != pattern.lower() or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return _NOT_A_NAME.format(pattern=pattern)
    if host == "localhost" or host.endswith(".localhost"):
        return f"host {pattern!r} is this machine, not a provider"
    if pattern.startswith("*.") and (len(labels) < 2 or _is_public_suffix(host)):
        return (
            f"host {pattern!r} covers every domain registered under the public suffix "
            f"{host!r}; declare the provider's own domain, such as '*.example.{host}'"
        )
    if len(labels) < 2:
        return _NOT_A_NAME.format(pattern=pattern)
    return None


_NOT_A_NAME = (
    "host {pattern!r} must be a lowercase DNS name such as 'api.example.com' "
    "or a pattern such as '*.example.com'"
)


def _is_ip_address(host: str) -> bool:
    if ":" in host:  # IPv6, bracketed or not, IPv4-mapped included; imported only then
        import ipaddress

        try:
            ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            return False
        return True
    return _NUMBER_LABEL.fullmatch(host.removesuffix(".").rpartition(".")[2]) is not None


@functools.cache
def _is_public_suffix(domain: str) -> bool:
    """Whether *domain* is a public suffix of the ICANN section of the Public Suffix List.

    The list is the one the ``publicsuffixlist`` package ships (a release follows each update
    of the list). Parsing all of it takes some 100 ms, and every plugin's `Provider` is built
    at every start of ``hub`` (hub-qlik declares ``*.qlikcloud.com``), so only the rules that
    can bear on *domain* are handed to the library's matcher: those for *domain* and each of
    its parent domains, found by a scan of the file's ICANN section (well under a millisecond).
    """
    icann = _icann_section()
    labels = domain.split(".")
    rules = []
    for depth in range(1, len(labels) + 1):
        suffix = ".".join(labels[-depth:])
        for form in {suffix, _unicode(suffix)}:
            for kind in ("", "*.", "!"):
                rule = kind + form
                if b"\n" + rule.encode() + b"\n" in icann:
                    rules.append(rule)
    spellings = {domain, _unicode(domain)}
    if not any(rule in spellings or rule[0] in "*!" for rule in rules):
        # Only plain rules for its parents (``com`` for ``acme.com``): those make only the
        # parents public, so the library's matcher (and its import) can be spared.
        return False
    from publicsuffixlist import PublicSuffixList

    # Encoding IDN rules imports the idna codec: only when a rule is not ASCII.
    idn = not all(rule.isascii() for rule in rules)
    return bool(PublicSuffixList(rules, accept_encoded_idn=idn).is_public(domain))


@functools.cache
def _icann_section() -> bytes:
    # Found without importing the package: its data file is all this needs.
    from importlib.util import find_spec

    spec = find_spec("publicsuffixlist")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("hub-core needs the publicsuffixlist package (pip install hub-core)")
    path = os.path.join(spec.submodule_search_locations[0], "public_suffix_list.dat")
    with open(path, "rb") as file:
        data = file.read()
    start = data.index(b"// ===BEGIN ICANN DOMAINS===")
    return data[start : data.index(b"// ===END ICANN DOMAINS===", start)]


def _unicode(domain: str) -> str:
    """*domain* with its punycode labels decoded: the list spells IDN rules in Unicode."""
    if "xn--" not in domain:
        return domain
    try:
        return domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain


def _check_host_pattern(pattern: str) -> None:
    problem = host_problem(pattern)
    if problem is not None:
        raise ValueError(problem)


def _fields(value: Iterable[Field]) -> tuple[Field, ...]:
    return tuple(value)


def _hosts(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("hosts must be a sequence of host names, not one string")
    return tuple(value)


@attrs.frozen
class Provider:
    """A service hub can link accounts of, as a plugin declares it.

    ``id`` is a lowercase slug (``qlik``); ``hosts`` is the egress allowlist: exact host names or
    ``*.suffix`` patterns. A flow may send requests only to these hosts, over HTTPS.
    """

    id: str = attrs.field()
    name: str = attrs.field(validator=_non_empty)
    fields: tuple[Field, ...] = attrs.field(
        converter=_fields,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(Field)),
    )
    guide: Guide = attrs.field(validator=attrs.validators.instance_of(Guide))
    hosts: tuple[str, ...] = attrs.field(converter=_hosts)
    docs_url: str | None = attrs.field(default=None, validator=_optional_text)
    version: str | None = attrs.field(default=None, validator=_optional_text)

    @id.validator
    def _check_id(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or len(value) > 64 or not _SLUG.fullmatch(value):
            raise ValueError(f"provider id must be a lowercase slug such as 'acme', got {value!r}")

    @fields.validator
    def _check_fields(self, _attribute: attrs.Attribute[Any], value: tuple[Field, ...]) -> None:
        if not value:
            raise ValueError(f"provider {self.id!r} declares no fields")
        names = [field.name for field in value]
        if len(set(names)) != len(names):
            raise ValueError(f"provider {self.id!r} declares a field name twice")

    @hosts.validator
    def _check_hosts(self, _attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        if not value:
            raise ValueError(f"provider {self.id!r} declares no hosts")
        for host in value:
            if not isinstance(host, str):
                raise TypeError(f"hosts must be strings, got {host!r}")
            _check_host_pattern(host)

    def field(self, name: str) -> Field:
        """Return the field called *name* (KeyError if there is none)."""
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    def supplied(self, name: str, value: str) -> dict[str, str]:
        """The values field *name*'s ``fills`` derives from *value*, for other fields.

        Only valid values of this provider's other non-secret fields are kept (a choice must
        be one of its choices), each normalised as `validate_field` does; anything else a
        plugin's function returns, or raises, gives nothing: filling is a convenience, and
        the flow checks the values all the same. ``{}`` when the field has no ``fills``.
        """
        from .errors import HubError
        from .fields import validate_field

        source = self.field(name)
        if source.fills is None or source.secret or not value.strip():
            return {}
        from .plugins import is_interrupt, watching_interrupts

        with watching_interrupts():  # told apart while the block is open
            try:
                # Typed as a mapping of strings, but it is a plugin's code: each item checked.
                derived: list[tuple[object, object]] = list(dict(source.fills(value)).items())
            except BaseException as exc:  # a plugin's bug (a SystemExit too) stops no one
                if is_interrupt(exc):  # a real Ctrl-C does
                    raise
                return {}
        out: dict[str, str] = {}
        for target_name, target_value in derived:
            if not isinstance(target_name, str) or not isinstance(target_value, str):
                continue
            try:
                target = self.field(target_name)
            except KeyError:
                continue
            if target is source or target.secret or not target_value.strip():
                continue
            try:
                out[target.name] = validate_field(target, target_value)
            except HubError:  # not a value that field takes: it is asked as usual
                continue
        return out

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """The names of the fields whose values are secrets."""
        return tuple(field.name for field in self.fields if field.secret)

    def allows_host(self, host: str) -> bool:
        """Whether *host* (an ASCII host name) is on this provider's egress allowlist."""
        host = host.lower()
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


# --- credentials and results -------------------------------------------------------------


def _dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


class Credentials(Mapping[str, str]):
    """The validated values of one submission: field name -> value, immutable.

    ``repr()`` and ``str()`` mask the secret fields, so printing credentials never leaks a key.
    """

    __slots__ = ("_secret", "_values")

    def __init__(self, values: Mapping[str, str], secret: Iterable[str] = ()) -> None:
        self._values = dict(values)
        self._secret = frozenset(secret)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {k: ("***" if k in self._secret else v) for k, v in self._values.items()}
        return f"Credentials({shown!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would carry secrets into caches, queues and logs: refuse it.
        raise TypeError("Credentials cannot be pickled")

    @property
    def secret_names(self) -> frozenset[str]:
        """The names of the secret fields."""
        return self._secret

    def secret_values(self) -> tuple[str, ...]:
        """The secret values, for redaction."""
        return tuple(v for k, v in self._values.items() if k in self._secret)

    def public(self) -> dict[str, str]:
        """The non-secret values, safe to store in clear and to show."""
        return {k: v for k, v in self._values.items() if k not in self._secret}


@attrs.frozen
class Verified:
    """What a successful check found.

    ``identity`` is the stable id of what the key reaches (``org:<id>``): linking the same
    identity again updates that account. ``label`` names it for a person. ``details`` holds
    JSON-serialisable facts for the account display; never a secret. ``config`` optionally
    gives non-secret field values as the flow understood them (a pasted tenant URL split into
    tenant and region): the account is stored with these instead of what was typed.

    ``expires_at`` is when the key stops working, and ``created_at`` when it was created, each
    where the provider says (None when it does not). Both are converted to UTC; naive
    datetimes are refused. Knowing both, hub marks the account ``expiring`` in the last fifth
    of the key's life (at most 7 days), so a healthy 1-day key is ``active``; without
    ``created_at`` it is ``expiring`` for the last 7 days (see `hub_core.status.expiring_from`).
    """

    identity: str = attrs.field(validator=_non_empty)
    label: str = attrs.field(validator=_non_empty)
    expires_at: datetime | None = attrs.field(default=None, converter=_utc)
    details: dict[str, Any] = attrs.field(factory=dict, converter=_dict, hash=False)
    config: dict[str, str] = attrs.field(factory=dict, converter=_dict, hash=False)
    #: When the key was created, where the provider says: with `expires_at`, its lifetime.
    created_at: datetime | None = attrs.field(default=None, converter=_utc, kw_only=True)


def _rows(rows: Iterable[tuple[object, object]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(label), str(value)) for label, value in rows)


@attrs.frozen
class AccountDisplay:
    """How an account is shown: a title, an optional subtitle, labelled rows and a link."""

    title: str = attrs.field(validator=_non_empty)
    subtitle: str | None = None
    rows: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_rows)
    url: str | None = None


@attrs.frozen
class Account:
    """A linked account, as stored. ``config`` holds the non-secret fields only."""

    id: str
    provider_id: str
    identity: str
    label: str
    status: Status = attrs.field(converter=Status)
    config: dict[str, str] = attrs.field(factory=dict, converter=_dict, hash=False)
    linked_at: datetime | None = attrs.field(default=None, converter=_utc)
    checked_at: datetime | None = attrs.field(default=None, converter=_utc)
    expires_at: datetime | None = attrs.field(default=None, converter=_utc)
    last_error: str | None = None
    details: dict[str, Any] = attrs.field(factory=dict, converter=_dict, hash=False)
    #: The host application's opaque id of whom the account was linked for (a host session
    #: or an auth link made with ``--owner``); None for the operator's own accounts.
    owner: str | None = None
    #: The host's display name for that owner; ``label`` stays the verified identity's.
    owner_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The account as stable, documented JSON data (times in ISO-8601 UTC); never a secret."""

        def when(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "id": self.id,
            "provider": self.provider_id,
            "identity": self.identity,
            "label": self.label,
            "status": self.status.value,
            "config": dict(self.config),
            "linked_at": when(self.linked_at),
            "checked_at": when(self.checked_at),
            "expires_at": when(self.expires_at),
            "last_error": self.last_error,
            "owner": self.owner,
            "owner_name": self.owner_name,
        }


_new_object = object.__new__
_set_slot = object.__setattr__


def trusted_account(
    id: str,
    provider_id: str,
    identity: str,
    label: str,
    status: Status,
    config: dict[str, str],
    linked_at: datetime | None,
    checked_at: datetime | None,
    expires_at: datetime | None,
    last_error: str | None,
    details: dict[str, Any],
    owner: str | None,
    owner_name: str | None,
) -> Account:
    """The `Account` of these values, built without running its converters: for the store,
    whose values already are what they would make (a `Status`, fresh dicts of its own, aware
    UTC datetimes).

    Equal to ``Account(...)`` of the same values, at a fraction of its cost: listing 10,000
    accounts builds 10,000 of them. Anyone else builds an `Account` the ordinary way.
    """
    account: Account = _new_object(Account)
    _set_slot(account, "id", id)
    _set_slot(account, "provider_id", provider_id)
    _set_slot(account, "identity", identity)
    _set_slot(account, "label", label)
    _set_slot(account, "status", status)
    _set_slot(account, "config", config)
    _set_slot(account, "linked_at", linked_at)
    _set_slot(account, "checked_at", checked_at)
    _set_slot(account, "expires_at", expires_at)
    _set_slot(account, "last_error", last_error)
    _set_slot(account, "details", details)
    _set_slot(account, "owner", owner)
    _set_slot(account, "owner_name", owner_name)
    return account
