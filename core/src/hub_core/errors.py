"""The errors hub raises: one base class, each message written for the person who typed the key.

Every error class lives here, so that a caller (the CLI, a web page) can catch any of them by
type without importing the module that raises it (the store's sqlite3 and cryptography).

No message may contain a secret. Plugins write messages by hand, and the core redacts every
secret value of the submission from any error that passes through it (`HubError.redacted`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "AccountNotFound",
    "AmbiguousAccount",
    "ConfigurationError",
    "FieldError",
    "HubError",
    "IdentityMismatch",
    "InvalidCredentials",
    "PermissionDenied",
    "PluginError",
    "ProviderUnavailable",
    "RateLimited",
    "StoreError",
    "UnexpectedResponse",
    "UnknownProvider",
]

MASK = "[redacted]"

#: How many consecutive characters of a key count as the key. A secret this long or longer is
#: masked wherever it appears, whole or in part: every run of this many of its characters (a
#: key cut short is still a key). Shorter values are left alone: they cannot be told apart
#: from ordinary words ("us", "key"), and no provider issues keys that short.
KEY_PIECE = 8


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return *text* with each secret, and every `KEY_PIECE`-long piece of one, masked.

    A run of text made of such pieces becomes one mask, so a quoted key, a key cut short and a
    key split across lines all leave no key material behind.
    """
    keys = {secret for secret in secrets if len(secret) >= KEY_PIECE}
    if not keys or len(text) < KEY_PIECE:
        return text
    pieces = {key[i : i + KEY_PIECE] for key in keys for i in range(len(key) - KEY_PIECE + 1)}
    covered_until = -1
    spans: list[tuple[int, int]] = []
    for start in range(len(text) - KEY_PIECE + 1):
        if text[start : start + KEY_PIECE] in pieces:
            end = start + KEY_PIECE
            if spans and start <= covered_until:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
            covered_until = end
    if not spans:
        return text
    out, position = [], 0
    for start, end in spans:
        out += [text[position:start], MASK]
        position = end
    out.append(text[position:])
    return "".join(out)


class HubError(Exception):
    """Base class of every error hub raises on purpose.

    ``str(error)`` is the message for the person; ``field`` names the input at fault, if any.
    """

    #: A short, stable name for the kind of failure (used in ``--json`` output and by web pages).
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        field = f", field={self.field!r}" if self.field else ""
        return f"{type(self).__name__}({self.message!r}{field})"

    def redacted(self, secrets: Iterable[str]) -> HubError:
        """Mask every secret value in this error's text, in place, and return it."""
        secrets = tuple(secrets)
        self.message = redact(self.message, secrets)
        self.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in self.args)
        return self


class FieldError(HubError):
    """One or more fields hold a value that cannot be right.

    ``errors`` always maps each field at fault to its message, so a form can show every message
    beside its own field at once.
    """

    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)
        self.errors: dict[str, str] = {field: message}

    @classmethod
    def many(cls, errors: Mapping[str, str]) -> FieldError:
        """Report several fields at once; *errors* maps field name to message (not empty)."""
        if not errors:
            raise ValueError("FieldError.many() needs at least one field")
        items = list(errors.items())
        error = cls(*items[0])
        error.errors = dict(items)
        if len(items) > 1:
            error.message = "; ".join(f"{name}: {message}" for name, message in items)
            error.args = (error.message,)
        return error

    def __repr__(self) -> str:
        return f"FieldError({self.errors!r})"

    def redacted(self, secrets: Iterable[str]) -> FieldError:
        """Mask every secret value in the message and in each field's message."""
        secrets = tuple(secrets)
        super().redacted(secrets)
        self.errors = {name: redact(msg, secrets) for name, msg in self.errors.items()}
        return self


class ConfigurationError(HubError):
    """An environment variable hub depends on holds a value it cannot use.

    ``variable`` names it (``SSL_CERT_FILE``, ``HTTPS_PROXY``, ...). This is the setup's fault,
    not the provider's or the key's: nothing was sent, and nothing is stored. The message shows
    the value with any password masked.
    """

    code = "configuration_error"

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


class InvalidCredentials(HubError):
    """The provider rejected the key: wrong, expired or revoked (usually HTTP 401)."""

    code = "invalid_credentials"


class PermissionDenied(HubError):
    """The key is valid but lacks a role or permission the check needs (usually HTTP 403)."""

    code = "permission_denied"


class RateLimited(HubError):
    """The provider asked us to slow down; ``retry_after`` is in seconds when known."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class ProviderUnavailable(HubError):
    """The provider could not be reached or failed on its side: network, timeout, 5xx.

    ``reason`` says which: ``unresolved`` (the host name does not resolve), ``connect``,
    ``tls``, ``timeout``, ``proxy``, ``protocol`` or ``server`` (a 5xx answer). The driver throws
    this error into the flow at the ``yield`` that asked for the request, so a flow can say
    more (hub-qlik names the tenant field and its likely cause); it stays a
    `ProviderUnavailable`: no network is no verdict on the key or the values.
    """

    code = "provider_unavailable"

    def __init__(self, message: str, *, reason: str = "server", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class UnexpectedResponse(HubError):
    """The provider answered with something the plugin cannot make sense of."""

    code = "unexpected_response"


class PluginError(HubError):
    """A plugin broke the contract: it raised an unknown exception or asked for a forbidden request.

    ``plugin`` names the plugin at fault.
    """

    code = "plugin_error"

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin


class UnknownProvider(HubError):
    """No installed plugin provides the provider id that was asked for."""

    code = "unknown_provider"

    def __init__(self, provider_id: str, known: Iterable[str] = ()) -> None:
        known = sorted(known)
        hint = f"; installed: {', '.join(known)}" if known else "; no provider plugin is installed"
        super().__init__(f"no provider {provider_id!r}{hint}")
        self.provider_id = provider_id


class IdentityMismatch(HubError):
    """A relink's new key reaches another organisation, user or tenant than the account's."""

    code = "identity_mismatch"


class StoreError(HubError):
    """The account store cannot do what was asked: no key, wrong key, unusable database."""

    code = "store_error"


class AccountNotFound(StoreError):
    """No stored account has this id (or an id starting with this prefix)."""

    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"no account {account_id!r}")
        self.account_id = account_id


class AmbiguousAccount(StoreError):
    """Several accounts have ids starting with this prefix; ``matches`` lists them."""

    code = "ambiguous_account"

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(
            f"{prefix!r} matches {len(matches)} accounts ({', '.join(matches)}); "
            "type more of the id"
        )
        self.prefix = prefix
        self.matches = matches
