"""The web Hub's security rules (WEB.md §4): headers, the session cookie, CSRF, attempt limits.

- Every response carries the CSP and the other headers of `security_headers`.
- The session is one signed cookie (`Session`): a random id, the CSRF token of its forms and
  whether it signed in with the dashboard token. It holds no secret and nothing from a
  provider; signing keeps it from being forged.
- A POST must come from this origin (``Origin`` and ``Sec-Fetch-Site``, when the browser sends
  them) and carry its session's CSRF token (`csrf_refusal`).
- `AttemptLimiter` counts Connect attempts in a sliding window.
"""

from __future__ import annotations

import base64
import collections
import hmac
import ipaddress
import secrets
import time
from collections.abc import MutableMapping
from typing import Any

import attrs
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "LINK_COOKIE",
    "ROOT_PATH",
    "AttemptLimiter",
    "LinkCookies",
    "LinkTokens",
    "SecurityHeaders",
    "Session",
    "SessionCookies",
    "csrf_refusal",
    "is_loopback",
    "root_path",
]

COOKIE = "hub_session"
#: The auth link a visitor opened (WEB.md §3): set by ``/l/<token>``, so the token leaves the URL.
LINK_COOKIE = "hub_link"
#: How a form names its CSRF token.
CSRF_FIELD = "csrf_token"


def content_security_policy(frame_ancestors: str) -> str:
    """The CSP of every page: only hub's own script and style, no inline code."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"form-action 'self'; frame-ancestors {frame_ancestors}; base-uri 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: the headers of WEB.md §4 on every response, errors included."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: str = "'none'") -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": content_security_policy(frame_ancestors),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
                # Pages hold account data and one-time form tokens: never kept by a cache.
                # hub's own CSS and script may be; an error page under /static/ is a page
                # (it may set the session cookie), so it is not.
                cached = static and message["status"] in (200, 304)
                headers["Cache-Control"] = "public, max-age=3600" if cached else "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


@attrs.frozen
class Session:
    """What the session cookie carries."""

    id: str
    csrf: str
    #: Signed in with the dashboard token.
    dashboard: bool = False

    @classmethod
    def new(cls, *, dashboard: bool = False) -> Session:
        """A fresh session: new id, new CSRF token (a sign-in never keeps the old ones)."""
        return cls(secrets.token_urlsafe(16), secrets.token_urlsafe(32), dashboard)


class SessionCookies:
    """Reads and writes the signed session cookie of one app."""

    #: What the store's derived key for session cookies is for (`AccountStore.derive_key`).
    PURPOSE = "session cookies"

    def __init__(self, secret_key: bytes, *, secure: bool | None, auth_token: str = "") -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="hub.web.session")
        self._secure = secure
        # A dashboard session names the token it was signed in with (by a MAC, never the
        # token): every process holding that token reads it, and a new token (a new `hub
        # serve` run) signs everyone out, though the key may outlive both (the store's).
        mac = hmac.new(secret_key, f"dashboard:{auth_token}".encode(), "sha256").digest()
        self._signed_in = base64.urlsafe_b64encode(mac[:18]).decode("ascii")

    def read(self, request: Request) -> Session | None:
        """The request's session, or None when it has none (or a forged or stale one)."""
        data = _signed_dict(self._serializer, request.cookies.get(COOKIE))
        if data is None:
            return None
        sid, csrf = data.get("id"), data.get("csrf")
        if not isinstance(sid, str) or not isinstance(csrf, str):
            return None
        return Session(sid, csrf, data.get("dashboard") == self._signed_in)

    def write(self, request: Request, response: Response, session: Session) -> None:
        """Set *session* on *response*: HttpOnly, SameSite=Lax, the mount's path, no Domain."""
        secure = _secure(request, self._secure)
        data: dict[str, object] = {"id": session.id, "csrf": session.csrf}
        if session.dashboard:
            data["dashboard"] = self._signed_in
        value = self._serializer.dumps(data)
        response.set_cookie(
            COOKIE,
            value,
            path=_cookie_path(request),
            httponly=True,
            samesite="lax",
            secure=secure,
        )


#: The longest a link token is accepted by its signature's age alone (`LINK_MAX_EXPIRY`).
_TOKEN_MAX_AGE = 30 * 24 * 3600


class LinkTokens:
    """Signs and reads auth-link tokens: the link's random id, nothing else (no provider,
    owner or note: signing is not encryption).

    The key is the store's ``derive_key("link tokens")``, so `hub link-url` signs what every
    server over the same store verifies.
    """

    PURPOSE = "link tokens"

    def __init__(self, key: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="hub.link")

    def dumps(self, link_id: str) -> str:
        """The token of link *link_id*."""
        return self._serializer.dumps(link_id)

    def loads(self, token: str) -> str | None:
        """The link id in *token*; None when its signature is wrong.

        Raise `SignatureExpired` when the signature is right but older than any link can live:
        that link has expired, whatever its row says (checked with no database).
        """
        try:
            link_id = self._serializer.loads(token, max_age=_TOKEN_MAX_AGE)
        except SignatureExpired:
            raise
        except BadSignature:
            return None
        return link_id if isinstance(link_id, str) and link_id else None


class LinkCookies:
    """The signed link cookie: the id of the link a visitor opened, and the account it linked.

    HttpOnly, SameSite=Lax (a link opened from a mail client is a cross-site navigation, on
    which a Strict cookie set by its redirect would not come back), the mount's path.
    """

    PURPOSE = "link cookies"

    def __init__(self, key: bytes, *, secure: bool | None) -> None:
        self._serializer = URLSafeSerializer(key, salt="hub.web.link")
        self._secure = secure

    def read(self, request: Request) -> dict[str, Any] | None:
        """The cookie's ``link`` id (and ``done``: the linked account id), or None."""
        data = _signed_dict(self._serializer, request.cookies.get(LINK_COOKIE))
        if data is None or not isinstance(data.get("link"), str):
            return None
        return data

    def write(self, request: Request, response: Response, data: dict[str, Any]) -> None:
        """Set the link cookie to *data* on *response*."""
        secure = _secure(request, self._secure)
        response.set_cookie(
            LINK_COOKIE,
            self._serializer.dumps(data),
            path=_cookie_path(request),
            httponly=True,
            samesite="lax",
            secure=secure,
        )


#: The scope key `HubApp` keeps the path it is mounted at in (``root_path`` changes below it:
#: inside hub's ``/static`` mount it ends in ``/static``).
ROOT_PATH = "hub_core.root_path"


def root_path(request: Request) -> str:
    """The path the Hub is mounted at, without a trailing slash (``""`` at the root)."""
    root = request.scope.get(ROOT_PATH, request.scope.get("root_path", ""))
    return str(root or "").rstrip("/")


def _secure(request: Request, secure: bool | None) -> bool:
    # Secure unless served over plain http on loopback (WEB.md §4), when not configured.
    if secure is not None:
        return secure
    return request.url.scheme == "https" or not is_loopback(request.url.hostname)


def _signed_dict(serializer: URLSafeSerializer, raw: str | None) -> dict[str, Any] | None:
    """The mapping a signed cookie holds, or None (missing, forged, or not a mapping)."""
    if not raw:
        return None
    try:
        data = serializer.loads(raw)
    except BadSignature:
        return None
    return data if isinstance(data, dict) else None


def _cookie_path(request: Request) -> str:
    return root_path(request) + "/"


def is_loopback(host: str | None) -> bool:
    """Whether *host* is a loopback name or address (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def csrf_refusal(request: Request, session: Session | None, form: Any) -> str | None:
    """Why this POST is refused as cross-site, or None when it may go on.

    Checked before the form's values are used: the browser's own word on where the request
    came from (``Sec-Fetch-Site``, ``Origin``), then the session's token in the form.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"it came from another site ({fetch_site})"
    origin = request.headers.get("origin")
    # Under `Referrer-Policy: no-referrer` browsers send ``Origin: null`` with every form POST,
    # same-origin ones too: it names no origin, so Sec-Fetch-Site and the token decide.
    if origin is not None and origin != "null" and origin != _own_origin(request):
        return "it came from another origin"
    if session is None:
        return "the session cookie is missing"
    token = form.get(CSRF_FIELD) if form is not None else None
    if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
        return "its form token does not match"
    return None


def _own_origin(request: Request) -> str:
    url = request.url
    default = {"http": 80, "https": 443}.get(url.scheme)
    port = f":{url.port}" if url.port is not None and url.port != default else ""
    return f"{url.scheme}://{url.hostname}{port}"


class AttemptLimiter:
    """At most *limit* attempts per key in any *window* seconds (a sliding window)."""

    def __init__(self, limit: int, window: float, *, keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self._keys = keys
        self._attempts: MutableMapping[str, collections.deque[float]] = collections.OrderedDict()

    def retry_after(self, key: str, *, now: float | None = None) -> float | None:
        """Seconds until *key* may try again, or None (and the attempt is counted)."""
        now = time.monotonic() if now is None else now
        attempts = self._attempts.pop(key, None) or collections.deque()
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        self._attempts[key] = attempts  # most recently used last, so the oldest go first
        while len(self._attempts) > self._keys:
            self._attempts.pop(next(iter(self._attempts)))
        if len(attempts) >= self.limit:
            return max(attempts[0] + self.window - now, 0.0)
        attempts.append(now)
        return None
