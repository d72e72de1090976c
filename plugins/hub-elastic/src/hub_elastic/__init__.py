"""Elastic Cloud for hub: link an Elastic Cloud organization by its Cloud API key.

This module is the plugin (entry point ``elastic`` in group ``hub``): it holds the three hook
implementations. Importing it stays cheap; httpx loads only when a key is checked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from hub_core import Account, AccountDisplay, Credentials, Flow, Provider, hookimpl

from .display import account_display
from .provider import PROVIDER_ID, build_provider

__version__ = "0.1.0"

__all__ = [
    "PROVIDER",
    "__version__",
    "hub_account_display",
    "hub_providers",
    "hub_validate_credentials",
]

#: The Elastic Cloud provider this plugin declares.
PROVIDER = build_provider(version=__version__)


@hookimpl
def hub_providers() -> list[Provider]:
    """Declare the Elastic Cloud provider."""
    return [PROVIDER]


@hookimpl
def hub_validate_credentials(provider: Provider, credentials: Credentials) -> Flow | None:
    """Return the flow that checks a Cloud API key, for the Elastic Cloud provider only."""
    if provider.id != PROVIDER_ID:
        return None
    return _verify()(credentials)


@functools.cache
def _verify() -> Callable[[Mapping[str, str]], Flow]:
    # Imports httpx: only when a key is actually checked. Looked up once, not by an import
    # statement per check, which costs about 2 µs each time even with the module loaded.
    from .flow import verify

    return verify


@hookimpl
def hub_account_display(provider: Provider, account: Account) -> AccountDisplay | None:
    """Show a linked Elastic Cloud organization; other providers keep their own display."""
    if provider.id != PROVIDER_ID:
        return None
    return account_display(account)
