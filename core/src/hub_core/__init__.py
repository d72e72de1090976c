"""hub: link SaaS accounts by API key, check every key live against its provider.

The public API of the core. Plugins use the markers, value types and errors; host applications
use `Hub` (its limits in `Policy`), `Accounts` (what it tells them: `Event` and its kinds) and
`Store`. Importing this package costs next to nothing: each name loads its module on first use
(pluggy and attrs with the contract, httpx with `Hub`, sqlite3 and cryptography with `Store`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .accounts import Accounts
    from .errors import (
        AccountNotFound,
        AmbiguousAccount,
        ConfigurationError,
        FieldError,
        HubError,
        IdentityMismatch,
        InvalidCredentials,
        LinkUsed,
        PermissionDenied,
        PluginError,
        ProviderUnavailable,
        RateLimited,
        StoreError,
        UnexpectedResponse,
        UnknownProvider,
    )
    from .events import (
        AccountChecked,
        AccountLinked,
        AccountRelinked,
        AccountUnlinked,
        CredentialsRead,
        Event,
        LinkFailed,
    )
    from .hookspecs import (
        Flow,
        hookimpl,
        hookspec,
        hub_account_display,
        hub_providers,
        hub_validate_credentials,
    )
    from .hub import Hub
    from .model import (
        Account,
        AccountDisplay,
        Choice,
        Credentials,
        Field,
        Guide,
        Provider,
        Section,
        Step,
        Verified,
    )
    from .plugins import PluginReport
    from .policy import Policy
    from .status import Status
    from .store import Link, Store, open_store
    from .store_protocol import AccountStore

__version__ = "0.1.0"

__all__ = [
    "Account",
    "AccountChecked",
    "AccountDisplay",
    "AccountLinked",
    "AccountNotFound",
    "AccountRelinked",
    "AccountStore",
    "AccountUnlinked",
    "Accounts",
    "AmbiguousAccount",
    "Choice",
    "ConfigurationError",
    "Credentials",
    "CredentialsRead",
    "Event",
    "Field",
    "FieldError",
    "Flow",
    "Guide",
    "Hub",
    "HubError",
    "IdentityMismatch",
    "InvalidCredentials",
    "Link",
    "LinkFailed",
    "LinkUsed",
    "PermissionDenied",
    "PluginError",
    "PluginReport",
    "Policy",
    "Provider",
    "ProviderUnavailable",
    "RateLimited",
    "Section",
    "Status",
    "Step",
    "Store",
    "StoreError",
    "UnexpectedResponse",
    "UnknownProvider",
    "Verified",
    "__version__",
    "hookimpl",
    "hookspec",
    "hub_account_display",
    "hub_providers",
    "hub_validate_credentials",
    "open_store",
]

# Every public name loads on first use: `hub --help` must not pay for pluggy, attrs, httpx,
# sqlite3 or cryptography, and a plugin pays only for what it touches.
_LAZY = {
    "AccountNotFound": "errors",
    "AmbiguousAccount": "errors",
    "ConfigurationError": "errors",
    "FieldError": "errors",
    "HubError": "errors",
    "IdentityMismatch": "errors",
    "InvalidCredentials": "errors",
    "LinkUsed": "errors",
    "PermissionDenied": "errors",
    "PluginError": "errors",
    "ProviderUnavailable": "errors",
    "RateLimited": "errors",
    "StoreError": "errors",
    "UnexpectedResponse": "errors",
    "UnknownProvider": "errors",
    "AccountChecked": "events",
    "AccountLinked": "events",
    "AccountRelinked": "events",
    "AccountUnlinked": "events",
    "CredentialsRead": "events",
    "Event": "events",
    "LinkFailed": "events",
    "Flow": "hookspecs",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "hub_account_display": "hookspecs",
    "hub_providers": "hookspecs",
    "hub_validate_credentials": "hookspecs",
    "Account": "model",
    "AccountDisplay": "model",
    "Choice": "model",
    "Credentials": "model",
    "Field": "model",
    "Guide": "model",
    "Provider": "model",
    "Section": "model",
    "Step": "model",
    "Verified": "model",
    "Status": "status",
    "Accounts": "accounts",
    "Hub": "hub",
    "PluginReport": "plugins",
    "Policy": "policy",
    "AccountStore": "store_protocol",
    "Link": "store",
    "Store": "store",
    "open_store": "store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
