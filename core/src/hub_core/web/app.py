"""`create_app`: the web Hub as one ASGI app (WEB.md).

Pattern: POST, then a 303 to a page (a bad POST draws its form again with the error's status).
Every URL comes from ``url_for``, so the app works mounted under any prefix. The app holds no
module-level state: two apps with two stores in one process are independent.

Threading: pages run on the server's event loop; store calls run on the app's `StoreThread`,
re-checks on its `Checker` thread, and a Connect check on the loop through the async API.
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import json
import logging
import math
import secrets
import traceback
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from itsdangerous import SignatureExpired
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Receive, Scope, Send

from hub_core.display_text import LONG_LIMIT, inert
from hub_core.errors import (
    AccountNotFound,
    AmbiguousAccount,
    FieldError,
    HubError,
    LinkUsed,
    PluginError,
    RateLimited,
    UnknownProvider,
)
from hub_core.owners import OWNER_LIMIT, check_owner, clean_owner_name
from hub_core.status import Status
from hub_core.store_types import LINK_MAX_EXPIRY

from . import present
from .config import WebConfig
from .forms import FormView, Outcome, OutcomeBook, form_view, submitted_values
from .security import (
    ROOT_PATH,
    AttemptLimiter,
    LinkCookies,
    LinkTokens,
    SecurityHeaders,
    Session,
    SessionCookies,
    csrf_refusal,
    root_path,
)
from .serving import redact_tokens
from .sessions import (
    SESSION_EXPIRY,
    HostSession,
    check_return_url,
    check_state,
    origin_of,
    return_link,
)
from .workers import Checker, StoreThread

if TYPE_CHECKING:
    from hub_core.hub import Hub
    from hub_core.model import Account, Provider
    from hub_core.store_protocol import AccountStore
    from hub_core.store_types import KeysetPage, Link

__all__ = ["HubApp", "create_app"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_HERE = Path(__file__).parent
_log = logging.getLogger("hub_core.web")
#: Form bodies hub reads: a few fields, the longest a key of some KiB.
_FORM_LIMITS = {"max_files": 0, "max_fields": 64, "max_part_size": 64 * 1024}


class PageError(Exception):
    """Ends a request with one of the error pages."""

    def __init__(self, status: int, title: str, message: str, **headers: str) -> None:
        super().__init__(title)
        self.status, self.title, self.message, self.headers = status, title, message, headers


class LinkRefused(PageError):
    """An error page for a link visitor: no way into the dashboard on it, no account details."""


#: What a link visitor sees when the link cannot be used (WEB.md §2 "Link not usable").
_ASK_AGAIN = "Ask the person who sent it for a new link."
_UNUSABLE = {
    "used": (
        410,
        "This link was used already",
        "An account was linked with it, and a link works once. " + _ASK_AGAIN,
    ),
    "revoked": (410, "This link was withdrawn", "It no longer works. " + _ASK_AGAIN),
    "locked": (
        403,
        "This link is locked",
        "Too many keys were tried with it, so it takes no more. " + _ASK_AGAIN,
    ),
    "unknown": (
        404,
        "This link is not valid",
        "It may have been copied incompletely, or it was never made. " + _ASK_AGAIN,
    ),
    "scope": (403, "This link is not for this page", _ASK_AGAIN),
}


#: What the Accounts page says when it cannot use the page its address names.
_CURSOR_REFUSED = (
    "That address does not name a page of this list (it was changed, or is from before the "
    "store's key changed), so this is the first page."
)
_CURSOR_GONE = (
    "The accounts after the last page you saw were unlinked meanwhile; this is the first page."
)


def _waiting_on_store(
    make: Callable[Concatenate[HubApp, P], Callable[[AccountStore], T]], name: str, doc: str
) -> Callable[Concatenate[HubApp, P], T]:
    """A method taking *make*'s arguments that runs the store call *make* returns on the
    app's store thread and waits for its result (for a caller off the event loop)."""

    def method(self: HubApp, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.db.call_sync(make(self, *args, **kwargs))

    return _named(method, make, name, doc)


def _awaiting_store(
    make: Callable[Concatenate[HubApp, P], Callable[[AccountStore], T]], name: str, doc: str
) -> Callable[Concatenate[HubApp, P], Awaitable[T]]:
    """`_waiting_on_store` for a coroutine: the store thread runs it, the loop goes on."""

    async def method(self: HubApp, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.db.call(make(self, *args, **kwargs))

    return _named(method, make, name, doc)


#: What of the Accounts page's query names its view: the filters and the page's cursor.
_VIEW = ("provider", "status", "after")


def _view(query: Any) -> list[tuple[str, str]]:
    """The view of an Accounts page query (a mapping of name to a value or a list of them):
    its filters and cursor, nothing else (the page checks each when it is read)."""
    kept = []
    for name in _VIEW:
        value = query.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, str) and value and len(value) <= 1000:
            kept.append((name, value))
    return kept


def _named(method: F, make: Callable[..., Any], name: str, doc: str) -> F:
    # What help(), inspect.signature and the docs read: *make*'s parameters (not what it
    # returns, a store call) under *name*.
    method.__name__ = name
    method.__qualname__ = f"HubApp.{name}"
    method.__doc__ = doc
    method.__signature__ = inspect.signature(make).replace(  # type: ignore[attr-defined]
        return_annotation=inspect.Signature.empty
    )
    return method


def create_app(hub: Hub, store: AccountStore, *, config: WebConfig | None = None) -> HubApp:
    """The web Hub over *hub*'s providers and *store*'s accounts, as an ASGI app.

    *store* is not used from the server's threads: the app opens its own connections to the
    same database (`Store.connect_again`). Call `HubApp.close` (or let the server's lifespan
    do it) when done.
    """
    return HubApp(hub, store, config or WebConfig())


class HubApp:
    """The ASGI app `create_app` returns; ``app.starlette`` is the Starlette app inside."""

    def __init__(self, hub: Hub, store: AccountStore, config: WebConfig) -> None:
        self.hub = hub
        self.config = config
        self.db = StoreThread(hub, store, on_event=config.on_event)
        self.checker = Checker(
            hub, store, concurrency=config.check_concurrency, on_event=config.on_event
        )
        self.cookies = SessionCookies(
            config.secret_key or store.derive_key(SessionCookies.PURPOSE),
            secure=config.secure_cookies,
            auth_token=config.auth_token,
        )
        self.outcomes = OutcomeBook()
        self.session_attempts = AttemptLimiter(config.session_attempts, config.attempt_window)
        self.provider_attempts = AttemptLimiter(config.provider_attempts, config.attempt_window)
        self.notices: dict[str, str] = {}
        #: Which session used each link, and its confirmation: a resubmit lands there too.
        self._link_outcomes: dict[str, tuple[str, dict[str, object]]] = {}
        # Derived from the store's key: `hub link-url` signs what this app verifies.
        self.link_tokens = LinkTokens(store.derive_key(LinkTokens.PURPOSE))
        self.link_cookies = LinkCookies(
            store.derive_key(LinkCookies.PURPOSE), secure=config.secure_cookies
        )
        self.cursors = present.PageCursors(store.derive_key(present.PageCursors.PURPOSE))
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            finalize=present.shown,
            undefined=jinja2.StrictUndefined,
        )
        environment.globals["url_for"] = _url_for
        self.templates = Jinja2Templates(env=environment)
        routes = [
            Route("/", self.providers_page, name="providers"),
            Route("/connect/{provider}", self.connect_page, name="connect"),
            Route("/connect/{provider}", self.connect_submit, methods=["POST"]),
            Route("/accounts", self.accounts_page, name="accounts"),
            Route("/accounts/check", self.check_all, methods=["POST"], name="check_all"),
            Route("/accounts/{account}/linked", self.linked_page, name="linked"),
            Route("/accounts/{account}/check", self.check_one, methods=["POST"], name="check"),
            Route("/accounts/{account}/relink", self.relink_page, name="relink"),
            Route("/accounts/{account}/relink", self.relink_submit, methods=["POST"]),
            Route("/accounts/{account}/unlink", self.unlink_page, name="unlink"),
            Route("/accounts/{account}/unlink", self.unlink_submit, methods=["POST"]),
            Route("/l/{token}", self.link_open, name="link_open"),
            Route("/link", self.link_page, name="link"),
            Route("/link", self.link_submit, methods=["POST"]),
            Route("/link/done", self.link_done, name="link_done"),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]
        self.starlette = Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: self._http_error,
                PageError: self._page_error,
                Exception: self._server_error,
            },
            lifespan=self._lifespan,
        )
        # A page draws some 150 links: each route's path pattern, found once, is filled in.
        self.starlette.state.path_formats = {
            route.name: route.path_format for route in routes if isinstance(route, Route)
        }
        self._asgi = SecurityHeaders(self.starlette, frame_ancestors=config.frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._asgi(scope, receive, send)
            return
        scope = {**scope, ROOT_PATH: scope.get("root_path", "")}
        try:
            await self._asgi(scope, receive, send)
        except Exception as exc:
            # Answered already with the 500 page (`_server_error`), which Starlette raises
            # on for the server to log, traceback and message: its text could quote a
            # submitted value. Logged here instead, its type and where it was raised.
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {frame.filename}:{frame.lineno}" if frame else ""
            _log.error(
                "%s %s failed: %s%s",
                scope.get("method"),
                redact_tokens(str(scope.get("path", ""))),  # a link's address is its token
                type(exc).__name__,
                where,
            )

    def close(self) -> None:
        """Stop the app's threads and close its store connections."""
        self.checker.close()
        self.db.close()

    def _lifespan(self, _app: Starlette) -> Any:
        @contextlib.asynccontextmanager
        async def lifespan() -> Any:
            yield
            self.close()

        return lifespan()

    # --- sessions and sign-in ---------------------------------------------------------------

    async def _dashboard(self, request: Request) -> Session:
        """The session of a dashboard user, or the sign-in page (401)."""
        session = self.cookies.read(request)
        if self.config.authorize is not None:
            verdict = self.config.authorize(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                raise PageError(
                    403, "Not allowed", "Your account in this application may not use the Hub."
                )
        elif (session is None or not session.dashboard) and self.link_cookies.read(request):
            # A link visitor sees the link's page only: never Accounts or other providers.
            raise LinkRefused(
                403,
                "This page is not part of your link",
                "Your link lets you link one account. Open the link you were sent again.",
            )
        elif not self.config.no_auth and (session is None or not session.dashboard):
            raise PageError(
                401,
                "Sign in to the Hub",
                "Open the address `hub serve` printed when it started (it ends in ?token=…) "
                "in this browser.",
            )
        if session is None:
            session = Session.new()
            request.state.new_session = session
        return session

    def _may_navigate(self, request: Request) -> bool:
        """Whether a page may show the dashboard's navigation: not to a link visitor (WEB.md
        §3), nor to someone `_dashboard` would ask to sign in."""
        session = self.cookies.read(request)
        if session is not None and session.dashboard:
            return True
        if self.link_cookies.read(request) is not None:
            return False
        return self.config.authorize is not None or self.config.no_auth

    def _sign_in(self, request: Request) -> Response | None:
        """A GET with the dashboard token: trade it for a session cookie, drop it from the URL."""
        token = request.query_params.get("token")
        if token is None or self.config.authorize is not None or self.config.no_auth:
            return None
        if not hmac.compare_digest(token.encode(), self.config.auth_token.encode()):
            raise PageError(
                401,
                "That sign-in address is not valid",
                "Open the address the running `hub serve` printed; an address from an earlier "
                "run no longer works.",
            )
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        current = self.cookies.read(request)
        if current is None or not current.dashboard:
            # A new session at each sign-in (a session planted before it gains nothing); one
            # signed in already is kept, so the forms of its other tabs still go through.
            self.cookies.write(request, response, Session.new(dashboard=True))
        return response

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        """Draw template *name*; a new session gets its cookie on the way out."""
        session = getattr(request.state, "session", None)
        response = self.templates.TemplateResponse(
            request,
            name,
            {
                "session": session,
                "template": name,
                "linkify": present.linked_text,
                **context,
            },
            status_code=status,
        )
        self._keep_session(request, response)
        return response

    def _keep_session(self, request: Request, response: Response) -> None:
        new = getattr(request.state, "new_session", None)
        if new is not None:
            self.cookies.write(request, response, new)

    def redirect(self, request: Request, url: str) -> Response:
        """The 303 that ends a good POST."""
        response = RedirectResponse(url, status_code=303)
        self._keep_session(request, response)
        return response

    async def _page(self, request: Request) -> Session:
        session = await self._dashboard(request)
        request.state.session = session
        return session

    async def _post(self, request: Request) -> tuple[Session, Any]:
        """A dashboard POST's session and form, after the same-origin and CSRF checks."""
        session = await self._page(request)
        form = await request.form(**_FORM_LIMITS)
        refusal = csrf_refusal(request, self.cookies.read(request), form)
        if refusal is not None:
            raise PageError(
                403,
                "The form expired",
                f"hub did not use it ({refusal}). Reload the page and submit it again.",
            )
        return session, form

    # --- pages ------------------------------------------------------------------------------

    async def providers_page(self, request: Request) -> Response:
        """Every installed provider, with its accounts and Connect; broken plugins and why."""
        signed_in = self._sign_in(request)
        if signed_in is not None:
            return signed_in
        await self._page(request)
        providers = self.hub.providers()
        counts = await self.db.call(
            lambda store: {p.id: store.page(provider=p.id, limit=1).total for p in providers}
        )
        broken = [report for report in self.hub.plugins() if report.error]
        return self.render(
            request,
            "providers.html",
            {"providers": providers, "counts": counts, "broken": broken},
        )

    def _provider(self, provider_id: str) -> Provider:
        try:
            return self.hub.provider(provider_id)
        except UnknownProvider:
            raise PageError(
                404, "No such provider", "No installed provider has that name."
            ) from None

    async def _account(self, account_id: str) -> Account:
        try:
            return await self.db.call(lambda store: store.get(account_id))
        except (AccountNotFound, AmbiguousAccount):
            raise PageError(
                404,
                "No such account",
                "It may have been unlinked. The Accounts page lists the linked ones.",
            ) from None

    async def connect_page(self, request: Request) -> Response:
        """The provider's guide beside its form."""
        await self._page(request)
        provider = self._provider(request.path_params["provider"])
        return self._connect(request, provider, form_view(provider))

    def _connect(
        self,
        request: Request,
        provider: Provider,
        form: Any,
        *,
        error: HubError | None = None,
        account: Account | None = None,
        status: int = 200,
        banner: present.Banner | None = None,
    ) -> Response:
        if banner is None and error is not None:
            banner = present.banner(error, provider.name)
            if isinstance(error, PluginError):
                # The page says only that the plugin failed: the operator reads why here (the
                # message is the driver's, every secret of the check masked in it).
                _log.warning(
                    "a check of %s failed in its plugin: %s",
                    inert(provider.id),
                    inert(error.message, limit=LONG_LIMIT),
                )
        if banner is not None and status == 200:
            status = banner.status
        if account is None:
            action = _path(request, "connect", provider=provider.id)
        else:
            action = _path(request, "relink", account=account.id)
        # A link visitor's form posts to the link, on a page with no way into the dashboard.
        link_view: dict[str, Any] = getattr(request.state, "link_view", {})
        response = self.render(
            request,
            "connect.html",
            {
                "provider": provider,
                "form": form,
                "banner": banner,
                "error": error,
                "account": account,
                "action": action,
                **link_view,
            },
            status=status,
        )
        if banner is not None and banner.retry_after is not None:
            response.headers["Retry-After"] = str(banner.retry_after)
        return response

    async def connect_submit(self, request: Request) -> Response:
        """Check the key live; link the account (303 to the confirmation) or say what is wrong."""
        session, form = await self._post(request)
        provider = self._provider(request.path_params["provider"])
        values = submitted_values(provider, form)
        accounts = await self.db.accounts()
        return await self._attempt(
            request,
            session,
            form,
            provider,
            values,
            lambda: accounts.alink(provider.id, values),
        )

    async def _claim(
        self, scope: str, form: Any, values: dict[str, str]
    ) -> tuple[str | None, Outcome | None]:
        """Claim the form's token for this attempt (its key in `outcomes`, None without a
        token), or the outcome of the attempt that claimed it before (a double click)."""
        form_id = form.get("form_id")
        if not isinstance(form_id, str) or not form_id:
            return None, None
        key = self.outcomes.key(scope, form_id, values)
        if self.outcomes.begin(key):
            return key, None
        # The first attempt ends within the flow's deadline, or it was lost (expired, or it
        # ended in a refusal): then this attempt runs on its own.
        earlier = await self.outcomes.wait(key, timeout=self.hub.policy.flow_timeout + 5)
        return None, earlier

    async def _attempt(
        self,
        request: Request,
        session: Session,
        form: Any,
        provider: Provider,
        values: dict[str, str],
        check: Callable[[], Awaitable[Account]],
        account: Account | None = None,
    ) -> Response:
        key, earlier = await self._claim(session.id, form, values)
        if earlier is not None:
            return self._outcome(request, provider, earlier, account)
        wait = self.session_attempts.retry_after(session.id) or self.provider_attempts.retry_after(
            provider.id
        )
        if wait is not None:
            if key is not None:
                self.outcomes.forget(key)
            return self._too_many(request, provider, values, max(1, math.ceil(wait)), account)
        try:
            linked = await check()
        except HubError as exc:
            outcome = Outcome(error=exc, values=_public(provider, values))
        else:
            updated = account is not None or linked.linked_at != linked.checked_at
            outcome = Outcome(account_id=linked.id, updated=updated)
        if key is not None:
            self.outcomes.finish(key, outcome)
        return self._outcome(request, provider, outcome, account)

    def _too_many(
        self,
        request: Request,
        provider: Provider,
        values: dict[str, str],
        seconds: int,
        account: Account | None,
    ) -> Response:
        error = RateLimited(
            f"Too many attempts to link an account from here; nothing was sent to {provider.name}.",
            retry_after=seconds,
        )
        return self._connect(
            request,
            provider,
            form_view(provider, _public(provider, values), error),
            error=error,
            account=account,
            # hub's own limit, not the provider's: the page must not blame the provider.
            banner=present.attempts_banner(provider.name, seconds),
        )

    def _outcome(
        self, request: Request, provider: Provider, outcome: Outcome, account: Account | None
    ) -> Response:
        if outcome.error is None:
            assert outcome.account_id is not None
            url = _path(request, "linked", account=outcome.account_id)
            query = {"relinked": "1"} if account is not None else {}
            if account is None and outcome.updated:
                query = {"updated": "1"}
            return self.redirect(request, f"{url}?{urlencode(query)}" if query else url)
        error = outcome.error
        form = form_view(provider, outcome.values, error)
        return self._connect(request, provider, form, error=error, account=account)

    async def linked_page(self, request: Request) -> Response:
        """The confirmation: who the key reaches and when it expires."""
        account, provider_name = await self._account_page(request)
        return self.render(
            request,
            "linked.html",
            {
                "account": account,
                "provider_name": provider_name,
                "expiry": present.expiry(account.expires_at, linked_at=account.checked_at),
                "updated": request.query_params.get("updated") == "1",
                "relinked": request.query_params.get("relinked") == "1",
            },
        )

    async def _account_page(self, request: Request) -> tuple[Account, str]:
        """The account a page is about, and its provider's name (its id when uninstalled)."""
        await self._page(request)
        account = await self._account(request.path_params["account"])
        try:
            return account, self.hub.provider(account.provider_id).name
        except HubError:
            return account, account.provider_id

    async def accounts_page(self, request: Request) -> Response:
        """The linked accounts, filtered and paged by keyset, with their status and actions.

        ``?after=`` is a signed cursor (`present.PageCursors`) naming the page; one that is
        not valid for these filters (changed, old, another filter's) shows the first page,
        saying so. Each page reads its own rows and a count, wherever it is in the listing.
        """
        await self._page(request)
        provider = request.query_params.get("provider") or None
        status = request.query_params.get("status") or None
        if status is not None and status not in {s.value for s in Status}:
            status = None
        filters = (provider, status)
        notice = self.notices.pop(request.query_params.get("notice", ""), None)
        place = present.PagePlace()
        cursor = request.query_params.get("after")
        valid_cursor = None
        if cursor:
            found_place = self.cursors.loads(cursor, filters)
            if found_place is None:
                notice = _CURSOR_REFUSED
            else:
                place, valid_cursor = found_place, cursor
        size = self.config.page_size

        def read(store: AccountStore) -> tuple[int, KeysetPage, bool]:
            # One call on the store thread: the count and the rows come from one moment.
            total = store.page(provider=provider, status=status, limit=1).total
            found = store.page_after(place.after, provider=provider, status=status, limit=size)
            if found.accounts or place.after is None:
                return total, found, False
            # Every account from there on was unlinked meanwhile: the first page.
            return total, store.page_after(provider=provider, status=status, limit=size), True

        progress = self.checker.progress()  # before the rows: never "done" beside older rows
        total, page, restarted = await self.db.call(read)
        if restarted:
            place, notice = present.PagePlace(), _CURSOR_GONE
        names = {p.id: p.name for p in self.hub.providers()}
        urls = {name: _pattern(request, name) for name in ("check", "relink", "unlink")}
        rows = [
            present.account_row(account, names.get(account.provider_id, account.provider_id), urls)
            for account in page.accounts
        ]

        def page_url(at: present.PagePlace | None) -> str | None:
            if at is None:
                return None
            query = {k: v for k, v in (("provider", provider), ("status", status)) if v}
            if at.trail:
                query["after"] = self.cursors.dumps(at, filters)
            base = _path(request, "accounts")
            return f"{base}?{urlencode(query)}" if query else base

        # Counted apart from the rows: accounts linked or unlinked since the walk began move
        # the numbers, so they are kept within what is there.
        pages = max(1, math.ceil(total / size))
        number = min(place.number, pages)
        first = min((place.number - 1) * size, max(0, total - len(rows)))
        return self.render(
            request,
            "accounts.html",
            {
                "rows": rows,
                "total": total,
                "first": first + 1,
                "last": first + len(rows),
                "number": number,
                "pages": pages,
                "first_url": page_url(present.PagePlace()) if place.number > 2 else None,
                "previous_url": page_url(place.previous()) if place.number > 1 else None,
                "next_url": page_url(place.next(page.after)) if page.after is not None else None,
                "providers": sorted(names.items(), key=lambda item: item[1].lower()),
                "statuses": [(s.value, present.status_badge(s)[0]) for s in Status],
                "provider_filter": provider,
                "status_filter": status,
                "progress": progress,
                "notice": notice,
                # Printed once per row: escaped here, once (it is hub's own url-safe token).
                "csrf": escape(request.state.session.csrf),
                # The page a row's Check now comes back to: these filters, this page (only
                # a cursor that was valid: nothing typed into the address is echoed).
                "view": urlencode(
                    _view({"provider": provider, "status": status, "after": valid_cursor})
                ),
            },
        )

    def _notice(self, request: Request, text: str, view: Any = None) -> Response:
        """Back to the Accounts page (the filters and page of *view*, a query), saying *text*."""
        nid = secrets.token_urlsafe(8)
        self.notices[nid] = text
        while len(self.notices) > 1000:
            self.notices.pop(next(iter(self.notices)))
        query = [*_view(view or {}), ("notice", nid)]
        return self.redirect(request, f"{_path(request, 'accounts')}?{urlencode(query)}")

    async def check_one(self, request: Request) -> Response:
        """Re-check one account now, then back to the Accounts page it was pressed on (its
        filters and page) with its verdict."""
        _, form = await self._post(request)
        view = parse_qs(form.get("view") or "") if isinstance(form.get("view"), str) else {}
        account = await self._account(request.path_params["account"])
        checked = await self.checker.check(account.id)
        if checked is None:
            return self._notice(request, f"{_notice_label(account)} was unlinked meanwhile.", view)
        text, _ = present.status_badge(checked.status)
        return self._notice(request, f"Checked {_notice_label(checked)}: {text}.", view)

    async def check_all(self, request: Request) -> Response:
        """Start re-checking every account in the background; progress shows on Accounts."""
        await self._post(request)
        total = await self.db.call(lambda store: store.page(limit=1).total)
        self.checker.start_check_all(total)
        return self.redirect(request, _path(request, "accounts"))

    async def relink_page(self, request: Request) -> Response:
        """The Connect form for a new key of an existing account."""
        await self._page(request)
        account = await self._account(request.path_params["account"])
        provider = self._provider(account.provider_id)
        return self._connect(request, provider, _relink_form(provider, account), account=account)

    async def relink_submit(self, request: Request) -> Response:
        """Check the new key; it must reach the same identity (409 naming both otherwise)."""
        session, form = await self._post(request)
        account = await self._account(request.path_params["account"])
        provider = self._provider(account.provider_id)
        values = submitted_values(provider, form)
        missing = _new_key_missing(provider, values)
        if missing is not None:
            view = form_view(provider, _public(provider, values), missing)
            return self._connect(request, provider, view, error=missing, account=account)
        accounts = await self.db.accounts()
        return await self._attempt(
            request,
            session,
            form,
            provider,
            values,
            lambda: accounts.arelink(account.id, values),
            account=account,
        )

    async def unlink_page(self, request: Request) -> Response:
        """Ask before unlinking."""
        account, provider_name = await self._account_page(request)
        return self.render(
            request, "unlink.html", {"account": account, "provider_name": provider_name}
        )

    async def unlink_submit(self, request: Request) -> Response:
        """Forget the account and its key."""
        await self._post(request)
        try:
            account = await self.db.call(lambda store: store.get(request.path_params["account"]))
        except AccountNotFound:
            # Unlinked already (a double click, a second tab): what the person asked for.
            return self._notice(request, "That account is not linked any more.")
        except AmbiguousAccount:
            raise PageError(404, "No such account", "The Accounts page lists them.") from None
        accounts = await self.db.accounts()
        with contextlib.suppress(AccountNotFound):  # unlinked meanwhile: as the person asked
            await accounts.aunlink(account.id)
        return self._notice(
            request,
            f"Unlinked {_notice_label(account)}. The key still works at the "
            "provider until you revoke it there.",
        )

    # --- auth links (WEB.md §3) --------------------------------------------------------------

    def _unusable(self, reason: str, link: Link | None = None) -> LinkRefused:
        if reason == "expired":
            when = f" on {link.expires_at:%d %B %Y at %H:%M} UTC" if link is not None else ""
            return LinkRefused(410, "This link has expired", f"It expired{when}. {_ASK_AGAIN}")
        return LinkRefused(*_UNUSABLE.get(reason, _UNUSABLE["unknown"]))

    async def _usable_link(self, token: str) -> Link:
        """The open link of *token*: signature and age first (no database), then its row."""
        try:
            link_id = self.link_tokens.loads(token)
        except SignatureExpired:
            raise self._unusable("expired") from None
        if link_id is None:
            raise self._unusable("unknown")
        return await self._open_row(link_id)

    async def _open_row(self, link_id: str) -> Link:
        try:
            link = await self.db.call(lambda store: store.link(link_id))
        except LinkUsed:
            raise self._unusable("unknown") from None
        state = link.state()
        if state != "open":
            raise self._unusable(state, link)
        return link

    async def _visit(self, request: Request) -> Link:
        """The open link of the link cookie; the page's session (made if new)."""
        data = self.link_cookies.read(request)
        if data is None and request.headers.get("sec-fetch-dest") == "iframe":
            # Inside a frame of another site the browser withholds the link cookie (SameSite):
            # the link itself may be fine.
            raise LinkRefused(
                400,
                "Open this link in its own tab",
                "Your browser does not let this page keep your link inside a frame of "
                "another site. Open the link in a tab of its own to continue.",
            )
        if data is None:
            raise self._unusable("unknown")
        link = await self._open_row(data["link"])
        session = self.cookies.read(request)
        if session is None:
            session = Session.new()
            request.state.new_session = session
        request.state.session = session
        request.state.link_view = {
            "action": _path(request, "link"),
            "link_id": link.id,
            "bare": True,
            "note": link.note,
            "cancel_url": _back(link, result="cancelled"),
        }
        return link

    def _link_provider(self, request: Request, link: Link) -> Provider | None:
        """The link's provider; a session's visitor's choice (None until they make it)."""
        if link.provider_id is not None:
            return self._provider(link.provider_id)
        chosen = request.query_params.get("provider")
        if not chosen:
            return None
        provider = self._provider(chosen)
        request.state.link_view["action"] = (
            _path(request, "link") + "?" + urlencode({"provider": provider.id})
        )
        return provider

    async def link_open(self, request: Request) -> Response:
        """``/l/<token>``: the token moves into the link cookie, then a token-free address.

        A GET never uses a link up (mail scanners open links): opening it again before it is
        used works the same.
        """
        link = await self._usable_link(request.path_params["token"])
        response = RedirectResponse(_path(request, "link"), status_code=303)
        # The id, not the token: after this redirect the token is in no header or page.
        self.link_cookies.write(request, response, {"link": link.id})
        if self.cookies.read(request) is None:
            self.cookies.write(request, response, Session.new())
        return response

    async def _link_account(self, link: Link) -> Account | None:
        if link.account_id is None:
            return None
        try:
            return await self.db.call(lambda store: store.get(link.account_id or ""))
        except (AccountNotFound, AmbiguousAccount):
            raise self._unusable("unknown") from None  # unlinked since: nothing to relink

    async def link_page(self, request: Request) -> Response:
        """The link's one page: its provider's Connect (or its account's Relink) page."""
        if (self.link_cookies.read(request) or {}).get("done"):
            return self.redirect(request, _path(request, "link_done"))
        link = await self._visit(request)
        provider = self._link_provider(request, link)
        if provider is None:  # a host session for any provider: its visitor picks one
            choices = [
                (p, _path(request, "link") + "?" + urlencode({"provider": p.id}))
                for p in self.hub.providers()
            ]
            return self.render(
                request, "link_choose.html", {"choices": choices, **request.state.link_view}
            )
        account = await self._link_account(link)
        if account is None:
            return self._connect(request, provider, form_view(provider))
        return self._connect(request, provider, _relink_form(provider, account), account=account)

    async def link_submit(self, request: Request) -> Response:
        """Check the key live and link exactly one account, using the link up in the save."""
        form = await request.form(**_FORM_LIMITS)
        refusal = csrf_refusal(request, self.cookies.read(request), form)
        if refusal is not None:
            raise LinkRefused(
                403,
                "The form expired",
                f"hub did not use it ({refusal}). Reload the page and submit it again.",
            )
        finished = self._finished_link(request)
        if finished is not None:  # sent again (a double click, a reload) after it linked
            return finished
        link = await self._visit(request)
        if form.get("hub_link") != link.id:
            # The link cookie is the browser's, not the page's: a link opened in it since
            # (another tab, or a page that made it open someone else's) must not receive the
            # key typed into this one.
            raise LinkRefused(
                403,
                "The form expired",
                "Another link was opened in this browser after this page, so hub did not use "
                "the form for it; nothing was linked. Open the link you were given again.",
            )
        session: Session = request.state.session
        provider = self._link_provider(request, link)
        if provider is None:
            raise self._unusable("scope")
        account = await self._link_account(link)
        values = submitted_values(provider, form)
        missing = _new_key_missing(provider, values) if account is not None else None
        if missing is not None:
            view = form_view(provider, _public(provider, values), missing)
            return self._connect(request, provider, view, error=missing, account=account)
        # The same form sent again while its check runs (a double click): one check, one
        # failed attempt towards the link's lock, and both get its outcome.
        key, earlier = await self._claim(f"{session.id}:link:{link.id}", form, values)
        if earlier is not None:
            return self._link_outcome(request, provider, link, earlier, account)
        # Per session, per link (a new session does not reset it) and per provider.
        wait = (
            self.session_attempts.retry_after(session.id)
            or self.session_attempts.retry_after(f"link:{link.id}")
            or self.provider_attempts.retry_after(provider.id)
        )
        if wait is not None:
            if key is not None:
                self.outcomes.forget(key)
            return self._too_many(request, provider, values, max(1, math.ceil(wait)), account)
        try:
            outcome = await self._link_attempt(session, provider, link, values, account)
        except BaseException as exc:
            if key is not None:
                self.outcomes.forget(key)
            if not isinstance(exc, LinkUsed):
                raise
            # Used (a racing submit won), revoked or expired meanwhile.
            finished = self._finished_link(request)
            if finished is not None:  # the racing submit was this person's own
                return finished
            raise self._unusable(exc.reason, link) from None
        if key is not None:
            self.outcomes.finish(key, outcome)
        return self._link_outcome(request, provider, link, outcome, account)

    async def _link_attempt(
        self,
        session: Session,
        provider: Provider,
        link: Link,
        values: dict[str, str],
        account: Account | None,
    ) -> Outcome:
        """One check of a link's form: the account linked, or the error to show with it."""
        accounts = await self.db.accounts()
        try:
            if account is None:
                linked = await accounts.alink(provider.id, values, link=link)
            else:
                linked = await accounts.arelink(account.id, values, link=link)
        except LinkUsed:
            raise  # the caller's to say
        except HubError as exc:
            failed = await self.db.call(lambda store: store.link_failed(link.id))
            if failed.state() == "locked":
                raise self._unusable("locked") from None
            return Outcome(error=exc, values=_public(provider, values))
        updated = account is not None or linked.linked_at != linked.checked_at
        done = {"link": link.id, "done": linked.id, "updated": updated}
        self._link_outcomes[link.id] = (session.id, done)
        while len(self._link_outcomes) > 1000:
            self._link_outcomes.pop(next(iter(self._link_outcomes)))
        return Outcome(account_id=linked.id, updated=updated)

    def _link_outcome(
        self,
        request: Request,
        provider: Provider,
        link: Link,
        outcome: Outcome,
        account: Account | None,
    ) -> Response:
        """The page of a link's attempt: its confirmation, or the form again with its error."""
        if outcome.error is None:
            response = self.redirect(request, _path(request, "link_done"))
            done = {"link": link.id, "done": outcome.account_id, "updated": outcome.updated}
            self.link_cookies.write(request, response, done)
            return response
        view = form_view(provider, outcome.values, outcome.error)
        return self._connect(request, provider, view, error=outcome.error, account=account)

    def _finished_link(self, request: Request) -> Response | None:
        """The confirmation again, when this session's earlier submit used the link."""
        data, session = self.link_cookies.read(request), self.cookies.read(request)
        if data is None or session is None:
            return None
        earlier = self._link_outcomes.get(str(data.get("link")))
        if earlier is None or earlier[0] != session.id:
            return None
        response = self.redirect(request, _path(request, "link_done"))
        self.link_cookies.write(request, response, earlier[1])
        return response

    async def link_done(self, request: Request) -> Response:
        """The link's confirmation: what was linked, and that the tab may be closed."""
        data = self.link_cookies.read(request) or {}
        account_id, link_id = data.get("done"), data.get("link")
        if not isinstance(account_id, str) or not isinstance(link_id, str):
            raise self._unusable("unknown")
        try:
            link = await self.db.call(lambda store: store.link(link_id))
            account = await self.db.call(lambda store: store.get(account_id))
        except (LinkUsed, AccountNotFound, AmbiguousAccount):
            raise self._unusable("unknown") from None
        if link.used_account_id != account.id:
            raise self._unusable("unknown")
        try:
            provider_name = self.hub.provider(account.provider_id).name
        except HubError:
            provider_name = account.provider_id
        return self.render(
            request,
            "link_done.html",
            {
                "account": account,
                "provider_name": provider_name,
                "expiry": present.expiry(account.expires_at, linked_at=account.checked_at),
                "updated": data.get("updated") is True,
                "relinked": link.account_id is not None,
                "bare": True,
                "back_url": _back(link, "linked", account),
                **self._post_message(request, link, account),
            },
        )

    def _post_message(self, request: Request, link: Link, account: Account) -> dict[str, Any]:
        """What hub.js posts to a framing host: only to ``return_url``'s own origin, and only
        when the CSP lets that origin frame the Hub (WEB.md §3)."""
        origin = origin_of(link.return_url) if link.return_url else None
        own = origin_of(self.config.base_url or str(request.base_url))
        if origin is None or not _frames(self.config.frame_ancestors, origin, own):
            return {}
        message = {
            "hub_result": "linked",
            "hub_account": account.id,
            "hub_provider": account.provider_id,
            "state": link.return_state,
        }
        return {"post_origin": origin, "post_message": json.dumps(message)}

    # --- host sessions (WEB.md §3) -----------------------------------------------------------

    def _session_maker(
        self,
        provider: str | None = None,
        *,
        owner: str,
        owner_name: str | None = None,
        note: str | None = None,
        account_id: str | None = None,
        return_url: str | None = None,
        state: str | None = None,
        expires_in: float | timedelta = SESSION_EXPIRY,
    ) -> Callable[[AccountStore], HostSession]:
        """The store write of a host session, its arguments checked (`create_session` says
        what they mean): `create_session` and `acreate_session` run it on the store thread."""
        # Everything is checked before the store is touched: a bad argument stores nothing.
        if self.config.base_url is None:
            raise ValueError(
                "create_session needs WebConfig(base_url=...): the Hub's address as people "
                "reach it, mount prefix included"
            )
        if owner is None:
            raise ValueError("a host session links for an owner: give owner=")
        check_owner(owner)
        clean_owner_name(owner_name)
        return_url = check_return_url(return_url, self.config.allowed_return_origins)
        state = check_state(state)
        if note is not None and (not isinstance(note, str) or len(note) > OWNER_LIMIT):
            raise ValueError(f"note must be text of at most {OWNER_LIMIT} characters")
        if provider is not None:
            provider = self.hub.provider(provider).id  # UnknownProvider for a host typo
        try:
            lifetime = (
                expires_in if isinstance(expires_in, timedelta) else timedelta(seconds=expires_in)
            )
        except OverflowError:  # inf, or more seconds than a timedelta holds: past 30 days
            raise ValueError(f"a session may live at most {LINK_MAX_EXPIRY.days} days") from None
        base_url = self.config.base_url

        def make(store: AccountStore) -> HostSession:
            link = store.create_link(
                provider,
                kind="session",
                expires_in=lifetime,
                note=note,
                account_id=account_id,
                owner=owner,
                owner_name=owner_name,
                return_url=return_url,
                return_state=state,
            )
            url = f"{base_url}/l/{self.link_tokens.dumps(link.id)}"
            return HostSession(url, link.id, link.expires_at)

        return make

    # Both take `_session_maker`'s arguments, written there once.
    create_session = _waiting_on_store(
        _session_maker,
        "create_session",
        """A one-time address for the host's user *owner* to link a key (WEB.md §3).

        *provider* limits it to one provider (None: the visitor chooses); *account_id* makes
        it a relink of that account, which must be *owner*'s (`AccountNotFound` otherwise).
        *owner* and *owner_name* are the host's id and display name of its user: set here,
        server-side, never by the visitor; the account is theirs and no other owner's session
        finds it. *note* is shown to the visitor. *return_url* (its origin one of
        `WebConfig.allowed_return_origins`, else `ValueError`) is where the confirmation's
        "Back" link and "Cancel" go, with ``hub_result`` (``linked`` / ``cancelled``),
        ``hub_account``, ``hub_provider`` and *state* in the query. *expires_in* is seconds
        (or a timedelta), 30 minutes by default, at most 30 days.

        Blocks while the store writes the session (on the app's store thread); from a
        coroutine use `acreate_session`. Needs `WebConfig.base_url`.
        """,
    )
    acreate_session = _awaiting_store(
        _session_maker,
        "acreate_session",
        """`create_session`, for a host's coroutine: the store write does not block its loop.""",
    )

    # --- errors -----------------------------------------------------------------------------

    def _error_page(
        self, request: Request, status: int, title: str, message: str, headers: dict[str, str]
    ) -> Response:
        response = self.render(
            request,
            "error.html",
            {"title": title, "message": message, "bare": not self._may_navigate(request)},
            status=status,
        )
        response.headers.update(headers)
        return response

    async def _page_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        if isinstance(exc, LinkRefused):
            response = self.render(
                request,
                "link_error.html",
                {"title": exc.title, "message": exc.message, "bare": True},
                status=exc.status,
            )
            response.headers.update(exc.headers)
            return response
        return self._error_page(request, exc.status, exc.title, exc.message, exc.headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {
            404: ("Page not found", "There is no page at this address."),
            405: ("Not allowed", "This address does not take that kind of request."),
            400: (
                "The form could not be read",
                "It was too large, had too many fields or held a file; hub used none of it. "
                "Go back and submit it again.",
            ),
        }
        title, message = titles.get(exc.status_code, ("Request refused", "hub cannot answer it."))
        return self._error_page(request, exc.status_code, title, message, dict(exc.headers or {}))

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        # Logged once Starlette raises it on (`__call__`).
        return self._error_page(
            request,
            500,
            "Something went wrong",
            "hub could not finish this page. Nothing was changed by it; try again.",
            {},
        )


@jinja2.pass_context
def _url_for(context: Any, name: str, /, **params: Any) -> Markup:
    """A page's links are paths (the mount's prefix included), never built from ``Host``.

    Escaped here, once: the values in it are percent-quoted and the rest is hub's own.
    """
    return escape(_path(context["request"], name, **params))


def _notice_label(account: Account) -> str:
    """*account*'s label in a notice, clipped on its own: the page clips a notice whole, and
    a provider's long label would cut off what the notice says of it."""
    return inert(account.label)


def _frames(frame_ancestors: str, origin: str, own: str | None) -> bool:
    """Whether CSP ``frame-ancestors`` *frame_ancestors* lets *origin* frame the Hub (*own*:
    the Hub's origin, which ``'self'`` names): each source written as CSP reads it, in any
    case, with or without a slash or its default port, ``https://*.example.com`` included."""
    scheme, _, host = origin.partition("://")
    for word in frame_ancestors.split():
        if word.lower() == "'self'":
            if origin == own:
                return True
            continue
        wildcard = "://*." in word
        source = origin_of(word.replace("://*.", "://wildcard.", 1) if wildcard else word)
        if source is None:
            continue
        if not wildcard:
            if source == origin:
                return True
            continue
        source_scheme, _, source_host = source.partition("://")
        suffix = source_host.removeprefix("wildcard")  # ".example.com[:port]"
        if source_scheme == scheme and host.endswith(suffix) and len(host) > len(suffix):
            return True
    return False


def _path(request: Request, name: str, /, **params: Any) -> str:
    # Not ``request.url_for``: mounted in a host app, that looks the name up in the host's
    # routes from the host's root. hub's own routes (``request.app``: the Starlette app inside
    # HubApp), under the path hub is mounted at, are the ones meant.
    starlette: Starlette = request.app
    path_format: str | None = starlette.state.path_formats.get(name)
    if path_format is None:  # the static files' mount
        return root_path(request) + starlette.url_path_for(name, **params)
    return root_path(request) + path_format.format_map(
        {key: quote(str(value), safe="") for key, value in params.items()}
    )


def _pattern(request: Request, name: str) -> str:
    """Route *name*'s path with its ``{parameters}`` left to fill (``str.format``)."""
    path_format: str = request.app.state.path_formats[name]
    return root_path(request) + path_format


def _back(link: Link, result: str, account: Account | None = None) -> str | None:
    """The host session's way back to its ``return_url`` with *result*, if it has one."""
    if link.return_url is None:
        return None
    if account is None:
        return return_link(link.return_url, link.return_state, result=result)
    return return_link(
        link.return_url,
        link.return_state,
        result=result,
        account=account.id,
        provider=account.provider_id,
    )


def _relink_form(provider: Provider, account: Account) -> FormView:
    """An account's Relink form: its non-secret fields filled in, the key asked again."""
    return form_view(
        provider,
        account.config,
        secret_note="A key is stored; paste the new one.",  # noqa: S106
    )


def _new_key_missing(provider: Provider, values: dict[str, str]) -> FieldError | None:
    """A relink must bring each required secret: the stored one is never shown to reuse."""
    missing = {
        f.name: f"Paste the new {f.label}: the stored one is never shown."
        for f in provider.fields
        if f.secret and f.required and f.name not in values
    }
    return FieldError.many(missing) if missing else None


def _public(provider: Provider, values: dict[str, str]) -> dict[str, str]:
    secret = set(provider.secret_fields)
    return {k: v for k, v in values.items() if k not in secret}
