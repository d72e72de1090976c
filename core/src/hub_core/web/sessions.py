"""Host sessions: a host application's one-time address for one of its users to link a key.

The host's backend calls `HubApp.create_session` (WEB.md §3) with whom the account is for
(``owner``, set server-side only), where to send the person back (``return_url``, whose origin
must be one of `WebConfig.allowed_return_origins`) and an opaque ``state`` to get back. The
session is a row in the store's links table (kind ``session``): single use in the save's
transaction, revocable, locked after repeated failures, like an auth link. Its visitor sees
only the Connect page (or the provider choice, or one account's Relink page), then a
confirmation linking back to ``return_url`` with ``hub_result``, ``hub_account``,
``hub_provider`` and ``state``; "Cancel" links back with ``hub_result=cancelled``.
"""

from __future__ import annotations

import urllib.parse
from datetime import datetime, timedelta

import attrs

__all__ = ["STATE_LIMIT", "HostSession", "origin_of", "return_link"]

#: The default lifetime of a host session: long enough to find a key, short enough to leak.
SESSION_EXPIRY = timedelta(minutes=30)
#: The longest ``state`` a session keeps (it travels back in a URL).
STATE_LIMIT = 1000
_DEFAULT_PORTS = {"http": 80, "https": 443}


@attrs.frozen
class HostSession:
    """What `HubApp.create_session` gives back: where to send the person, and until when."""

    #: The one-time address (``<base_url>/l/<token>``); it grants linking: send it to the
    #: person's browser only (a redirect, a link), never log it.
    url: str = attrs.field(repr=False)
    #: The session's id (``source_id`` of its events; `Store.revoke_link` withdraws it).
    id: str
    expires_at: datetime


def origin_of(url: str) -> str | None:
    """The origin (``scheme://host[:port]``, lower case, default port left out) of an
    absolute http(s) URL, or None when *url* is not one (or carries a user name)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def check_return_url(url: str | None, allowed: frozenset[str]) -> str | None:
    """*url* when its origin is allowed, else `ValueError` (a foreign origin is an open
    redirect: it would send the person, with hub's word, anywhere)."""
    if url is None:
        return None
    if not isinstance(url, str) or not url.isprintable():
        raise ValueError("return_url must be an absolute http(s) URL")
    origin = origin_of(url)
    if origin is None:
        raise ValueError("return_url must be an absolute http(s) URL, with no user name in it")
    if origin not in allowed:
        raise ValueError(
            f"return_url's origin {origin} is not one of WebConfig.allowed_return_origins"
        )
    return url


def check_state(state: str | None) -> str | None:
    """*state* when it is printable text of at most `STATE_LIMIT` characters, else ValueError."""
    if state is None:
        return None
    if not isinstance(state, str) or not state.isprintable() or len(state) > STATE_LIMIT:
        raise ValueError(f"state must be printable text of at most {STATE_LIMIT} characters")
    return state


#: The parameters hub adds to a way back (`return_link`).
_RETURN_NAMES = frozenset({"hub_result", "hub_account", "hub_provider", "state"})


def return_link(return_url: str, state: str | None, **params: str) -> str:
    """*return_url* with ``hub_*`` *params* and ``state`` added to its query (any it had of
    those names replaced: the host reads ours, not a look-alike already in the URL)."""
    parts = urllib.parse.urlsplit(return_url)
    ours = {f"hub_{name}": value for name, value in params.items()}
    if state is not None:
        ours["state"] = state
    # Every name hub may send is dropped, not only those sent this time: a Cancel (which names
    # no account) must not keep a hub_account the host's URL happened to hold.
    kept = [
        (name, value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if name not in ours and name not in _RETURN_NAMES
    ]
    query = urllib.parse.urlencode([*kept, *ours.items()])
    return urllib.parse.urlunsplit(parts._replace(query=query))
