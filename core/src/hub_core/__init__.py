"""hub: link SaaS accounts by API key, check every key live against its provider.

The public API of the core. Plugins use the markers, value types and errors; host applications
use `Hub`. Importing this package is cheap: the HTTP driver (httpx) loads when `Hub` is first
used, and the store, the CLI and the web Hub only when they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    FieldError,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    PluginError,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    UnknownProvider,
)
from .hookspecs import (
    Flow,
    hookimpl,
    hookspec,
    hub_account_display,
    hub_providers,
    hub_validate_credentials,
)
from .model import (
    Account,
    AccountDisplay,
    Choice,
    Credentials,
    Field,
    Guide,
    Provider,
    Section,
    Status,
    Step,
    Verified,
)

if TYPE_CHECKING:
    from .accounts import Accounts
    from .hub import Hub
    from .plugins import PluginReport
    from .store import Store

__version__ = "0.1.0"

__all__ = [
    "Account",
    "AccountDisplay",
    "Accounts",
    "Choice",
    "Credentials",
    "Field",
    "FieldError",
    "Flow",
    "Guide",
    "Hub",
    "HubError",
    "InvalidCredentials",
    "PermissionDenied",
    "PluginError",
    "PluginReport",
    "Provider",
    "ProviderUnavailable",
    "RateLimited",
    "Section",
    "Status",
    "Step",
    "Store",
    "UnexpectedResponse",
    "UnknownProvider",
    "Verified",
    "__version__",
    "hookimpl",
    "hookspec",
    "hub_account_display",
    "hub_providers",
    "hub_validate_credentials",
]

_LAZY = {"Accounts": "accounts", "Hub": "hub", "PluginReport": "plugins", "Store": "store"}


def __getattr__(name: str) -> Any:
    # Hub pulls in httpx, Store sqlite3 and cryptography: keep them out of `import hub_core`.
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
