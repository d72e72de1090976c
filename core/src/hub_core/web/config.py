"""`WebConfig`: how one web Hub app signs people in, limits attempts and pages its lists."""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from starlette.requests import Request

    from hub_core.events import EventHandler

__all__ = ["Authorize", "WebConfig"]


def _base_url(value: str | None) -> str | None:
    if value is None:
        return None
    from .sessions import origin_of

    parts = urllib.parse.urlsplit(value)
    if origin_of(value) is None or parts.query or parts.fragment:
        raise ValueError(
            f"base_url must be an absolute http(s) URL with no query, such as "
            f"https://app.example.com/integrations/hub, not {value!r}"
        )
    return value.rstrip("/")


def _origins(values: Iterable[str]) -> frozenset[str]:
    from .sessions import origin_of

    if isinstance(values, str):
        values = [values]
    found = set()
    for value in values:
        origin = origin_of(value)
        if origin is None or urllib.parse.urlsplit(value).path not in ("", "/"):
            raise ValueError(
                f"allowed_return_origins holds origins such as https://app.example.com, "
                f"not {value!r}"
            )
        found.add(origin)
    return frozenset(found)


#: A host application's own check of who may use the dashboard: given the request, true when
#: its user may (sync or async). When set, hub's sign-in token is not accepted.
Authorize = Callable[["Request"], bool | Awaitable[bool]]


@attrs.frozen(kw_only=True)
class WebConfig:
    """Settings of one web Hub app (`hub_core.web.create_app`).

    Who may use the dashboard, in this order: *authorize* when a host application sets it;
    nobody-asks when *no_auth* is true (`hub serve --no-auth`, loopback only); otherwise whoever
    opened the address with *auth_token* (``/?token=…``, as `hub serve` prints it), which is
    exchanged for a session cookie. The default token is random, so an app built without
    thinking about sign-in lets nobody in rather than everybody.
    """

    auth_token: str = attrs.field(factory=lambda: secrets.token_urlsafe(32), repr=False)
    no_auth: bool = False
    authorize: Authorize | None = None
    #: Cookies carry ``Secure`` unless this is false; None: unless served over http on loopback.
    secure_cookies: bool | None = None
    #: The CSP's ``frame-ancestors``: who may frame the Hub (``'none'``: nobody).
    frame_ancestors: str = "'none'"
    #: Connect attempts one session may make per *attempt_window* seconds ...
    session_attempts: int = attrs.field(default=10, validator=attrs.validators.gt(0))
    #: ... and all sessions together, per provider.
    provider_attempts: int = attrs.field(default=60, validator=attrs.validators.gt(0))
    attempt_window: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    #: Accounts per page of the Accounts page.
    page_size: int = attrs.field(default=50, validator=attrs.validators.gt(0))
    #: Checks at a time for "Check all".
    check_concurrency: int = attrs.field(default=20, validator=attrs.validators.gt(0))
    #: Signs the session cookie. None (the default): a key derived from the store's, so every
    #: process of one app over one store reads the cookies the others set (a host running
    #: several workers). A dashboard session holds only for the *auth_token* it was signed in
    #: with: a new token (a new `hub serve` run) signs everyone out.
    secret_key: bytes | None = attrs.field(default=None, repr=False)
    #: Told each change the pages make (`hub_core.events`, ``via="dashboard"``), after the
    #: store write; sync or async. Connect, Relink and Unlink call it on the server's event
    #: loop (a sync one blocks it while it runs), "Check now" and "Check all" on the app's
    #: checker thread. What it raises is logged and changes nothing the person sees.
    on_event: EventHandler | None = None
    #: The Hub's address as people reach it, mount prefix included
    #: (``https://app.example.com/integrations/hub``): host sessions need it to make their URL,
    #: since no request is at hand when the host's backend creates one.
    base_url: str | None = attrs.field(default=None, converter=_base_url)
    #: The origins a host session's ``return_url`` may point to (``https://app.example.com``);
    #: any other is refused, so the Hub never links a person to an address it was handed.
    allowed_return_origins: frozenset[str] = attrs.field(factory=frozenset, converter=_origins)
