"""Signed webhooks: the events of every process, delivered to a host over HTTP.

An ``on_event`` callback hears only the process that made a change. With ``HUB_WEBHOOK_URL``
and ``HUB_WEBHOOK_SECRET`` set, the same events (`hub_core.events`) also go to that URL, from
a ``hub check`` run, ``hub serve`` or a host's own process alike:

- `Outbox.on_event` is an ``on_event`` handler that writes each event to the store's outbox
  table before the `Accounts` method that made the change returns (after the change's own
  write). The verdicts of a ``check`` arrive a batch at a time and are written in one
  transaction per batch, not one per event.
- `Outbox.deliver` (or the background sender of `Outbox.start`) POSTs each due row: the
  event's ``to_json()`` as the body; ``Hub-Event-Id`` (stable across retries: deduplicate on
  it), ``Hub-Event-Type`` and ``Hub-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``.
  A 2xx marks the row delivered; anything else (another status, a redirect, which is never
  followed, a timeout, a refused connection) schedules a retry with exponential backoff and
  jitter (`backoff`); after `WebhookConfig.max_attempts` the row is marked failed and stays.
- `verify_signature` is what a receiver calls on each request.

Delivery is at least once: a receiver may see an event twice (a lost answer, two senders
racing a lease that ran out), never a changed body under the same id.

``import hub_core`` does not import this module; it loads httpx only when it sends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .display_text import inert
from .errors import ConfigurationError, HubError
from .events import Event, EventHandler

if TYPE_CHECKING:
    import httpx

    from .store_protocol import AccountStore
    from .store_types import OutboxEntry

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "URL_ENV",
    "DeliveryReport",
    "Outbox",
    "WebhookConfig",
    "backoff",
    "chain",
    "check_url",
    "sign",
    "verify_signature",
]

URL_ENV = "HUB_WEBHOOK_URL"
SECRET_ENV = "HUB_WEBHOOK_SECRET"  # noqa: S105 - the variable's name, not a secret

SIGNATURE_HEADER = "Hub-Signature"
EVENT_ID_HEADER = "Hub-Event-Id"
EVENT_TYPE_HEADER = "Hub-Event-Type"
ATTEMPT_HEADER = "Hub-Delivery-Attempt"

_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})

_log = logging.getLogger("hub_core.webhooks")


# --- configuration --------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """*url* if hub may send webhooks to it; else `ConfigurationError` naming ``HUB_WEBHOOK_URL``.

    https, or http to a loopback host only (``127.0.0.1``, ``::1``, ``localhost``): an event
    over plain http could be read or forged on the way. No user name or password in it: the
    signature is what authenticates a delivery, and a URL is printed and logged.
    """
    import httpx

    def refused(why: str) -> ConfigurationError:
        return ConfigurationError(URL_ENV, f"{URL_ENV}={inert(_shown_url(url))} : {why}")

    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        raise refused("not a valid URL") from None
    host = parsed.host
    if parsed.scheme not in ("https", "http") or not host:
        raise refused("give an https:// URL (http:// only to 127.0.0.1, ::1 or localhost)")
    if not _HOST.fullmatch(host) or not 1 <= (parsed.port or 443) <= 65535:
        raise refused("not a valid URL: it names no valid host name and port")
    if parsed.userinfo:
        raise refused(
            "put no user name or password in the URL: each delivery is signed with "
            f"{SECRET_ENV}, which the receiver checks"
        )
    if parsed.scheme == "http" and not _is_loopback(host):
        raise refused(
            "plain http is allowed to a loopback host only (127.0.0.1, ::1, localhost): "
            "give an https:// URL"
        )
    return str(parsed)


def _shown_url(url: str) -> str:
    """*url* for a message: its query (which may hold a receiver's token) and user info cut.

    The user info first, up to the last "@" (a password may hold "/", "?" or "#" unencoded),
    then the query and the fragment.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    rest = rest.rpartition("@")[2].partition("?")[0].partition("#")[0]
    shown = f"{scheme}{sep}{rest}"
    return shown[:200] + ("..." if len(shown) > 200 else "")


def _masked(value: str) -> str:
    return "'***'"


@attrs.frozen(kw_only=True)
class WebhookConfig:
    """Where webhooks go and how they are sent; `from_env` reads ``HUB_WEBHOOK_URL/SECRET``.

    *secret* signs each delivery (`sign`); it is never sent, logged or shown (the repr masks
    it). *timeout* bounds each request, connecting included. A failed delivery is retried
    after `backoff` (*backoff_base* doubling up to *backoff_cap* seconds, jittered) until
    *max_attempts*; the defaults retry for about seven hours. Delivered rows are removed
    after *keep_delivered* seconds.
    """

    url: str = attrs.field(converter=check_url)
    secret: str = attrs.field(repr=_masked)
    timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    max_attempts: int = attrs.field(default=18, validator=attrs.validators.gt(0))
    backoff_base: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    backoff_cap: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))
    #: Requests in flight at once.
    concurrency: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    keep_delivered: float = attrs.field(default=7 * 86400.0, validator=attrs.validators.ge(0))

    @secret.validator
    def _check_secret(self, _: object, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                SECRET_ENV,
                f"{URL_ENV} is set, so {SECRET_ENV} must be too: the secret each delivery is "
                "signed with, which the receiver checks (e.g. 32 random bytes in hex)",
            )

    @property
    def shown_url(self) -> str:
        """The URL for messages: no query string (it may hold a receiver's token)."""
        return _shown_url(self.url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookConfig | None:
        """The configuration ``HUB_WEBHOOK_URL`` and ``HUB_WEBHOOK_SECRET`` give, or None.

        None when ``HUB_WEBHOOK_URL`` is unset or empty: no webhooks, nothing enqueued. A URL
        hub refuses (`check_url`) or a missing secret is a `ConfigurationError`.
        """
        env = os.environ if environ is None else environ
        url = env.get(URL_ENV, "").strip()
        if not url:
            return None
        return cls(url=url, secret=env.get(SECRET_ENV, "").strip())


# --- signing --------------------------------------------------------------------------------


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    # Surrounding white space is no part of a secret: hub reads HUB_WEBHOOK_SECRET stripped,
    # and a receiver's copy from a file or a .env line may end in a newline.
    return hmac.new(_bytes(secret).strip(), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: str | bytes, *, timestamp: int | None = None) -> str:
    """The ``Hub-Signature`` header for *body*: ``t=<unix>,v1=<hex HMAC-SHA256>``.

    The MAC covers ``f"{t}.{body}"``, so a receiver that checks *t* (`verify_signature`)
    refuses a delivery replayed later. *timestamp* defaults to now.
    """
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(secret, t, _bytes(body))}"


def verify_signature(
    secret: str | bytes,
    body: str | bytes,
    header: str | None,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether *header* (``Hub-Signature``) signs *body* with *secret*, made recently.

    *body* is the request body exactly as received (the raw bytes, not re-encoded JSON).
    False for a missing or malformed header, a signature made with another secret or over
    another body, and a timestamp more than *tolerance* seconds from *now* (default: the
    clock), so an old delivery replayed is refused. Every ``v1=`` value in the header is tried
    (compared in constant time), so a sender may sign with two secrets while one replaces
    the other.
    """
    if not header:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            # Seconds since the epoch in ASCII digits; a number past any clock (400 digits)
            # would overflow the comparison below: refused as malformed.
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                return False
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, _bytes(body))
    matched = False
    for candidate in signatures:  # each compared in constant time, none skipped
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def backoff(
    attempt: int, *, base: float = 1.0, cap: float = 3600.0, rand: float | None = None
) -> float:
    """Seconds to wait after failed attempt number *attempt* (1, 2, ...) before the next.

    Exponential (``base * 2 ** (attempt - 1)``, at most *cap*) with "equal jitter": a random
    point in its upper half, so senders that failed together do not retry together, and the
    wait never drops to nothing. *rand* in [0, 1) replaces the random draw (tests).
    """
    delay = min(cap, base * 2.0 ** min(attempt - 1, 64))
    draw = random.random() if rand is None else rand
    return delay / 2 + draw * delay / 2


def body_of(event: Event) -> str:
    """The JSON body of *event*'s deliveries: ``to_json()``, compact, keys sorted, ASCII."""
    return json.dumps(event.to_json(), separators=(",", ":"), sort_keys=True)


# --- composing callbacks -------------------------------------------------------------------


def chain(*handlers: EventHandler | None) -> EventHandler:
    """One ``on_event`` handler calling each of *handlers* in turn (None ones skipped).

    What one raises is logged (as `Accounts` logs a callback's failure) and the others still
    run; async ones are awaited in order. Put `Outbox.on_event` first, so the event is in the
    outbox before a slow host callback runs.
    """
    from .accounts import _callback_failed

    called = [handler for handler in handlers if handler is not None]

    def handler(event: Event) -> Awaitable[None] | None:
        pending: list[Awaitable[Any]] = []
        for each in called:
            try:
                result = each(event)
            except Exception as exc:
                _callback_failed(event, exc)
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        if not pending:
            return None

        async def awaited() -> None:
            for each_pending in pending:
                try:
                    await each_pending
                except Exception as exc:
                    _callback_failed(event, exc)

        return awaited()

    return handler


# --- the outbox ----------------------------------------------------------------------------


@attrs.define
class DeliveryReport:
    """What one `Outbox.deliver` did, and what it left."""

    delivered: int = 0
    #: Attempts that failed and will be retried.
    retried: int = 0
    #: Rows whose retries ran out in this call (they stay in the outbox, marked failed).
    gave_up: int = 0
    #: Rows still waiting when it returned (this process's and any other's).
    pending: int = 0
    #: What the last failed attempt met (``HTTP 500``, ``timed out``), or None.
    last_error: str | None = None


class Outbox:
    """The webhook outbox of one store: `on_event` writes events, `deliver` sends them.

    Every store call runs on one thread of the outbox's own, with its own connection
    (`Store.connect_again`), so `on_event` may be called from any thread or event loop (the
    web Hub calls it from the server's loop and from its checker thread). *transport* replaces
    the network (an ``httpx.AsyncBaseTransport``: a ``MockTransport`` in tests); *clock* gives
    Unix seconds. Close it when done: `close` writes what is still buffered.
    """

    def __init__(
        self,
        store: AccountStore,
        config: WebhookConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._origin = store
        self._transport = transport
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hub-outbox")
        self._store: AccountStore | None = None
        self._lock = threading.Lock()
        self._buffer: list[tuple[str, str, str]] = []
        self._next_write: concurrent.futures.Future[None] | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._closed = False

    @classmethod
    def from_env(cls, store: AccountStore, **options: Any) -> Outbox | None:
        """An outbox for `WebhookConfig.from_env`, or None when no webhook URL is set."""
        config = WebhookConfig.from_env()
        return None if config is None else cls(store, config, **options)

    def __repr__(self) -> str:
        return f"<Outbox url={self.config.shown_url!r}>"

    # --- store calls, on the outbox's thread ---

    def _db(self) -> AccountStore:
        if self._store is None:
            self._store = self._origin.connect_again()
        return self._store

    def _run(self, call: Callable[[AccountStore], Any]) -> concurrent.futures.Future[Any]:
        return self._executor.submit(lambda: call(self._db()))

    async def _stored(self, call: Callable[[AccountStore], Any]) -> Any:
        return await asyncio.wrap_future(self._run(call))

    # --- enqueueing ---

    def on_event(self, event: Event) -> Awaitable[None]:
        """The ``on_event`` handler: *event* is in the outbox once what it returns is awaited.

        `Accounts` awaits it before the method that made the change returns. Events that
        arrive together (a ``check``'s batch of verdicts) are written in one transaction. A
        store that cannot be written is logged (logger ``hub_core.webhooks``) and changes
        nothing for the person: the change stands.
        """
        self._buffer_rows([event])

        async def written() -> None:
            await asyncio.wrap_future(self._write_soon())

        return written()

    def enqueue(self, events: Iterable[Event]) -> None:
        """Write *events* to the outbox now (from synchronous code)."""
        self._buffer_rows(events)
        self._write_soon().result()

    def _buffer_rows(self, events: Iterable[Event]) -> None:
        rows = [(e.id, e.type, body_of(e)) for e in events]
        with self._lock:
            self._buffer.extend(rows)

    def _write_soon(self) -> concurrent.futures.Future[None]:
        """The write that will hold every event buffered so far ("group commit").

        Queued when first awaited, not when an event arrives: a ``check`` hands over a batch
        of verdicts before its tasks run, so the first of them writes the whole batch in one
        transaction. One write waits at a time; awaiting after it took the buffer queues the
        next, which runs after it on the one thread, so every event's write is done by then.
        """
        with self._lock:
            if self._next_write is None:
                self._next_write = self._run(self._write_buffer)
            return self._next_write

    def _write_buffer(self, store: AccountStore) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
            self._next_write = None
        if not rows:
            return
        try:
            store.outbox_add(rows, now=self._clock())
        except HubError as exc:
            _log.error(
                "%d webhook event(s) could not be written to the outbox and will not be sent: %s",
                len(rows),
                inert(str(exc)),
            )
            return
        self._wake.set()

    # --- sending ---

    def deliver(self, *, timeout: float, wait_for_retries: bool = True) -> DeliveryReport:
        """Send what is due, for at most about *timeout* seconds; see `adeliver`."""
        return self._deliver(timeout, wait_for_retries, None)

    def _deliver(
        self, timeout: float, wait_for_retries: bool, stop: threading.Event | None
    ) -> DeliveryReport:
        coroutine = self._adeliver(timeout, wait_for_retries, stop)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        # Called from inside a running loop (a sync host call): run it on a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    async def adeliver(self, *, timeout: float, wait_for_retries: bool = True) -> DeliveryReport:
        """Send due rows until none is due or *timeout* seconds have passed.

        With *wait_for_retries*, a retry that falls due before the time is up is waited for
        and made. Each request is bounded by `WebhookConfig.timeout` and by what is left of
        *timeout*. Never raises for a receiver's failure; returns what it did.
        """
        return await self._adeliver(timeout, wait_for_retries, None)

    async def _adeliver(
        self, timeout: float, wait_for_retries: bool, stop: threading.Event | None
    ) -> DeliveryReport:
        report = DeliveryReport()
        start = self._clock()
        deadline = start + timeout
        config = self.config
        await self._stored(lambda s: s.outbox_prune(delivered_before=start - config.keep_delivered))
        async with self._client() as client:
            while stop is None or not stop.is_set():
                now = self._clock()
                left = deadline - now
                if left <= 0.05:
                    break
                lease = config.timeout + 30

                # As many rows as are sent at once: each round's requests all start now and
                # end within their limit, so a round ends before its lease (another sender
                # would take rows that waited past it, and send them again) and before
                # *timeout* (rows queued behind the others would each wait a limit more).
                def claim(store: AccountStore, now: float = now, lease: float = lease) -> Any:
                    return store.outbox_claim(now=now, limit=config.concurrency, lease=lease)

                rows: list[OutboxEntry] = await self._stored(claim)
                if not rows:
                    due = await self._stored(lambda s: s.outbox_next_due())
                    if not wait_for_retries or due is None or due >= deadline:
                        break
                    await asyncio.sleep(max(0.0, min(due - self._clock(), left)))
                    continue
                limit = min(config.timeout, left)
                errors = await asyncio.gather(*(self._send(client, row, limit) for row in rows))
                await self._settle(rows, errors, report)
        counts = await self._stored(lambda s: s.outbox_counts())
        report.pending = counts["pending"]
        return report

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._transport is not None:
            return httpx.AsyncClient(
                transport=self._transport, follow_redirects=False, trust_env=False
            )
        from .transports import bypasses_proxy, environment_proxy, environment_ssl_context

        host = httpx.URL(self.config.url).host
        proxy = None
        if not _is_loopback(host) and not bypasses_proxy(host):
            found = environment_proxy()
            proxy = found.proxy if found is not None else None
        # trust_env=False: no .netrc, and the proxy is the one hub itself would use.
        return httpx.AsyncClient(
            verify=environment_ssl_context(),
            proxy=proxy,
            follow_redirects=False,
            trust_env=False,
        )

    async def _send(self, client: httpx.AsyncClient, row: OutboxEntry, limit: float) -> str | None:
        """POST one row; None when the receiver took it, else what went wrong (no body)."""
        import httpx

        from .transports import USER_AGENT

        body = row.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: row.event_id,
            EVENT_TYPE_HEADER: row.event_type,
            ATTEMPT_HEADER: str(row.attempts + 1),
            # Signed at each attempt: a retry hours later still passes the receiver's tolerance.
            SIGNATURE_HEADER: sign(self.config.secret, body, timestamp=int(self._clock())),
        }
        try:
            async with asyncio.timeout(limit):
                request = client.build_request(
                    "POST", self.config.url, content=body, headers=headers, timeout=limit
                )
                # The answer's body is never read: only its status counts.
                response = await client.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return "timed out"
        except httpx.ConnectError:
            return "could not connect"
        except httpx.HTTPError as exc:
            return f"failed ({type(exc).__name__})"
        status = response.status_code
        if 200 <= status < 300:
            return None
        if 300 <= status < 400:
            return f"HTTP {status} (a redirect; not followed)"
        return f"HTTP {status}"

    async def _settle(
        self, rows: list[OutboxEntry], errors: list[str | None], report: DeliveryReport
    ) -> None:
        now = self._clock()
        config = self.config
        delivered: list[int] = []
        retry: list[tuple[int, float, str]] = []
        failed: list[tuple[int, str]] = []
        for row, error in zip(rows, errors, strict=True):
            if error is None:
                delivered.append(row.seq)
                continue
            report.last_error = error
            attempts = row.attempts + 1
            if attempts >= config.max_attempts:
                failed.append((row.seq, error))
                _log.warning(
                    "webhook %s %s gave up after %d attempts (%s); it stays in the outbox: "
                    "`hub webhooks retry` sends it again",
                    row.event_type,
                    row.event_id,
                    attempts,
                    error,
                )
                continue
            wait = backoff(attempts, base=config.backoff_base, cap=config.backoff_cap)
            retry.append((row.seq, now + wait, error))
        await self._stored(
            lambda s: s.outbox_settle(delivered=delivered, retry=retry, failed=failed, now=now)
        )
        report.delivered += len(delivered)
        report.retried += len(retry)
        report.gave_up += len(failed)

    # --- the background sender ---

    def start(self, *, poll: float = 30.0) -> None:
        """Deliver in the background until `close`: at once after each event, retries when due,
        and every *poll* seconds what other processes left in the outbox."""
        if self._sender is not None:
            return

        self._stopping = stopping = threading.Event()

        def run() -> None:
            while not stopping.is_set():
                self._wake.clear()
                try:
                    self._deliver(poll, False, stopping)
                    due = self._run(lambda s: s.outbox_next_due()).result()
                except Exception as exc:  # never let the sender die: log and try again later
                    _log.error("the webhook sender failed: %s", inert(type(exc).__name__))
                    due = None
                wait = poll if due is None else max(0.0, min(poll, due - self._clock()))
                self._wake.wait(wait)

        self._sender = threading.Thread(target=run, name="hub-webhooks", daemon=True)
        self._sender.start()

    def stop(self) -> None:
        """Stop the background sender (`start`): its requests in flight end first."""
        if self._sender is None:
            return
        self._stopping.set()
        self._wake.set()
        self._sender.join(self.config.timeout + 5)
        self._sender = None

    def close(self) -> None:
        """Stop the background sender, write what is buffered, close the store connection."""
        if self._closed:
            return
        self._closed = True
        self.stop()

        def finish() -> None:
            if self._buffer:
                self._write_buffer(self._db())
            if self._store is not None:
                self._store.close()

        try:
            self._executor.submit(finish).result()
        finally:
            self._executor.shutdown(wait=True)

    # --- what is in it ---

    def counts(self) -> dict[str, int]:
        """How many events are ``pending``, ``failed`` (retries exhausted) and ``delivered``."""
        return dict(self._run(lambda s: s.outbox_counts()).result())

    def entries(self, state: str = "pending", *, limit: int = 100) -> list[OutboxEntry]:
        """The outbox's rows in *state* (``pending``, ``failed``, ``delivered``), oldest first."""
        return list(self._run(lambda s: s.outbox_entries(state=state, limit=limit)).result())

    def retry_failed(self) -> int:
        """Make every failed event due again, with a fresh count of attempts; how many."""
        now = self._clock()
        return int(self._run(lambda s: s.outbox_retry_failed(now=now)).result())

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
