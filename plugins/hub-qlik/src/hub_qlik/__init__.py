"""hub-qlik: the Qlik Cloud provider for hub.

Link a Qlik Cloud account with its tenant, region and API key; hub checks the key live against
the tenant and shows whose key it is and when it expires. Installed, this module is the
``qlik`` entry point in group ``hub``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hub_core import Account, AccountDisplay, Credentials, Flow, Provider, hookimpl

from .display import account_display
from .provider import PROVIDER_ID, make_provider

if TYPE_CHECKING:
    from .flow import verify

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hub_account_display",
    "hub_providers",
    "hub_validate_credentials",
    "verify",
]


@hookimpl
def hub_providers() -> Sequence[Provider]:
    """Declare the Qlik Cloud provider."""
    return [make_provider(__version__)]


@hookimpl
def hub_validate_credentials(provider: Provider, credentials: Credentials) -> Flow | None:
    """Return the flow that checks a Qlik Cloud key, or None for other providers."""
    if provider.id != PROVIDER_ID:
        return None
    return _verify()(credentials)


@hookimpl
def hub_account_display(provider: Provider, account: Account) -> AccountDisplay | None:
    """Show a linked Qlik Cloud account, or None for other providers."""
    if provider.id != PROVIDER_ID:
        return None
    return account_display(account)


@functools.cache
def _verify() -> Callable[[Mapping[str, str]], Flow]:
    # The flow module loads only when a key is checked (or `verify` is asked for). Looked up
    # once, not by an import statement per check, which costs about 2 µs each time.
    from .flow import verify

    return verify


def __getattr__(name: str) -> Any:
    # `verify` is public, but its module loads only when a key is checked (or it is asked for).
    if name == "verify":
        return _verify()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
