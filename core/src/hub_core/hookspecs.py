"""The plugin contract: the markers and the three hooks a provider plugin implements.

A plugin is a module, named by an entry point in group ``hub``, holding functions marked with
`hookimpl` whose names are hook names below. Every hook is optional; a provider plugin
usually implements all three.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, TypeAlias

import pluggy

from .model import Account, AccountDisplay, Credentials, Provider, Verified

if TYPE_CHECKING:
    import httpx

__all__ = ["PROJECT", "Flow", "hookimpl", "hookspec"]

#: The pluggy project name, which is also the entry-point group plugins register in.
PROJECT = "hub"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: A verification flow: a generator that yields `httpx.Request`s, is sent each
#: `httpx.Response`, and returns `Verified` (or raises a `hub_core.errors.HubError`).
Flow: TypeAlias = "Generator[httpx.Request, httpx.Response, Verified]"


@hookspec
def hub_providers() -> Sequence[Provider]:  # type: ignore[empty-body]
    """Declare the providers this plugin adds, each with the fields its link form asks for.

    Called once when a `Hub` loads its plugins. Return a sequence of `Provider`; an empty
    sequence is allowed. A provider id must be unique across all installed plugins.
    """


@hookspec(firstresult=True)
def hub_validate_credentials(provider: Provider, credentials: Credentials) -> Flow | None:
    """Return a verification flow for *credentials* of *provider*, or ``None`` if not ours.

    Called each time a key is checked, after the core has validated the values against the
    provider's fields (required, choices, pattern, length, control characters; whitespace
    stripped). The plugin that declares the provider is asked first. The flow yields requests
    (HTTPS, to the provider's ``hosts`` only), receives responses, and returns `Verified` or
    raises an error from `hub_core.errors`. It must not perform I/O itself.

    The core's driver follows same-origin redirects, retries 502/503/504 and connection
    errors on GET, and waits out a short Retry-After, so the flow sees the final response; a
    429 never reaches it. When no response can be had, the driver throws `ProviderUnavailable`
    (its ``reason`` says why: ``unresolved``, ``connect``, ``tls``, ``timeout``, ...) or
    `RateLimited` into the flow at its ``yield``; a flow may catch it to say something more
    precise, or let it propagate.
    """


@hookspec(firstresult=True)
def hub_account_display(provider: Provider, account: Account) -> AccountDisplay | None:
    """Return how a linked *account* of *provider* is shown, or ``None`` for the default display.

    Called when an account is listed in detail (``hub accounts show``, the web Hub). The
    account's ``config`` holds non-secret fields only and ``details`` what the last check found.
    """
