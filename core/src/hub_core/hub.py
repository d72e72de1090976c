"""`Hub`: the entry point for host applications, the CLI and the web Hub."""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

import httpx

from .errors import HubError, PluginError, scrub_chain
from .fields import json_schema, validate_values
from .model import Account, AccountDisplay, Credentials, Provider, Verified
from .plugins import PluginReport, Registry, is_interrupt, watching_interrupts
from .policy import Policy

# The driver (.flows) and the transports load on the first check: together some 25 ms of
# imports (decoders, the deadline transport, the proxy checks) that `hub providers`, `hub
# accounts` and every Hub that never checks a key need not pay (bench: `hub providers`
# went from 1.19x to 1.34x of its baseline with them at the top).
if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable

    from .flows import Driver
    from .hookspecs import Flow
    from .transports import AsyncSender, EnvironmentProxy

__all__ = ["CheckItem", "CheckResult", "Hub"]

#: One account to check: a provider id and the values of its fields.
CheckItem = tuple[str, Mapping[str, str]]
#: What `Hub.check_many` returns per item: the verdict, or the error that ended the check.
CheckResult = Verified | HubError


class Hub:
    """The plugins of one application, and the checks they run.

    *plugins* are modules (or objects) holding hook implementations, registered in code.
    *load_entrypoints* adds every installed plugin of the ``hub`` entry-point group, filtered
    by *enable* / *disable* (default: the ``HUB_PLUGINS`` / ``HUB_DISABLE_PLUGINS`` variables).
    *transport* replaces the HTTP transport (tests, benchmarks, host apps with their own); by
    default proxies and CA bundles come from the environment (``HTTPS_PROXY``,
    ``SSL_CERT_FILE``). *policy* sets the driver's limits (timeouts, retries, redirects, body
    size) for every check; by default ``Policy()``.

    A Hub holds no global state: two Hubs in one process are independent. Use it as a context
    manager (``with`` or ``async with``) to reuse connections across checks.
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        load_entrypoints: bool = True,
        enable: Collection[str] | None = None,
        disable: Collection[str] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._registry = Registry(
            plugins, load_entrypoints=load_entrypoints, enable=enable, disable=disable
        )
        self._transport = transport
        #: The driver's limits for this Hub's checks.
        self.policy = Policy() if policy is None else policy
        self._environ: tuple[ssl.SSLContext, EnvironmentProxy | None] | None = None
        self._client: httpx.Client | None = None
        self._sender: AsyncSender | None = None

    def __repr__(self) -> str:
        return f"<Hub providers={[p.id for p in self.providers()]}>"

    # --- plugins and providers --------------------------------------------------------------

    def plugins(self) -> list[PluginReport]:
        """Every plugin seen, with its distribution, version, providers and error, if broken."""
        return self._registry.reports()

    def providers(self) -> list[Provider]:
        """The providers of the usable plugins, sorted by id."""
        return self._registry.providers()

    def provider(self, provider_id: str) -> Provider:
        """The provider with this id, or raise `UnknownProvider`."""
        return self._registry.provider(provider_id)

    def json_schema(self, provider_id: str) -> dict[str, Any]:
        """The provider's link form as JSON Schema (draft 2020-12)."""
        return json_schema(self.provider(provider_id))

    def validate(self, provider_id: str, values: Mapping[str, str]) -> Credentials:
        """Check *values* against the provider's fields without any request (`FieldError`)."""
        return validate_values(self.provider(provider_id), values)

    def display(self, account: Account) -> AccountDisplay:
        """How *account* is shown: its plugin's display, or a plain default."""
        try:
            provider = self.provider(account.provider_id)
        except HubError:
            return _default_display(None, account)
        return self._registry.display(
            provider, account, default=lambda: _default_display(provider, account)
        )

    # --- checks -----------------------------------------------------------------------------

    def _prepare(
        self,
        provider_id: str,
        values: Mapping[str, str],
        on_request: Callable[[], object] | None = None,
    ) -> tuple[Provider, Driver]:
        drive = _drive()
        provider = self.provider(provider_id)
        credentials = validate_values(provider, values)
        try:
            flow, plugin = self._registry.flow(provider, credentials)
        except HubError as exc:
            exc.redacted(credentials.secret_values())
            scrub_chain(exc, credentials.secret_values())  # the hook's own, which may quote it
            raise exc from exc.__cause__
        driver = drive(self.policy, provider, plugin, flow, credentials.secret_values())
        if on_request is not None:
            driver = _before_first_send(driver, on_request)
        return provider, driver

    def verify(
        self,
        provider_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
    ) -> Verified:
        """Check a key with its provider, blocking; return what it reaches or raise `HubError`.

        *values* maps field names to what the person typed. Nothing is stored.
        *on_request* is called once, just before the check's first request leaves (after the
        plugin read the values and the allowlist let the request through): "Checking the key
        with ..." is true only then. It is not called when the check ends before any request,
        such as a value the plugin refuses.
        """
        from .flows import run_sync

        with watching_interrupts():
            provider, driver = self._prepare(provider_id, values, on_request)
            if self._client is not None:
                return run_sync(driver, self._client, provider, self.policy)
            with self._new_client() as client:
                return run_sync(driver, client, provider, self.policy)

    async def averify(
        self,
        provider_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
    ) -> Verified:
        """Check a key with its provider without blocking the event loop (asyncio).

        *on_request* is as for `verify`.
        """
        from .flows import run_async

        async with self._async_client() as client:
            with watching_interrupts():
                provider, driver = self._prepare(provider_id, values, on_request)
                return await run_async(driver, client, provider, self.policy)

    async def check_many(
        self,
        items: Iterable[CheckItem],
        *,
        concurrency: int = 20,
        on_result: Callable[[int, CheckResult], None] | None = None,
    ) -> list[CheckResult]:
        """Check many keys concurrently over one connection pool.

        Return one result per item, in order: `Verified`, or the `HubError` that ended that
        check. One bad item never stops the others. *on_result(index, result)* is called as
        each check finishes (for progress bars). At most *concurrency* checks run at once.
        """
        results: dict[int, CheckResult] = {}

        def keep(index: int, result: CheckResult) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        await self._check_each(items, concurrency=concurrency, on_result=keep)
        return [results[index] for index in range(len(results))]

    async def _check_each(
        self,
        items: Iterable[CheckItem] | AsyncIterable[CheckItem],
        *,
        concurrency: int,
        on_result: Callable[[int, CheckResult], None],
    ) -> None:
        """`check_many` without its list of results: *on_result* gets each, nothing is kept.

        *items* is read lazily, one item as a check slot frees up, so it may be an endless
        stream: memory holds the checks in flight, never the results of the whole stream. An
        async iterable may wait for its next item (`Accounts.check_all` waits there for a
        lease its store thread fetches) while the checks in flight go on; it is read by one
        check slot at a time.
        """
        import asyncio

        from .flows import run_async

        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        take = _taker(items)

        async def worker(client: AsyncSender) -> None:
            while (taken := await take()) is not None:
                index, (provider_id, values) = taken
                result: CheckResult
                try:
                    provider, driver = self._prepare(provider_id, values)
                    result = await run_async(driver, client, provider, self.policy)
                except HubError as exc:
                    result = exc
                except asyncio.CancelledError:
                    raise  # the whole batch is being stopped (by Ctrl-C, say)
                except BaseException as exc:  # a bug must not cost the other accounts their check
                    if is_interrupt(exc):
                        raise
                    result = PluginError(f"the check failed unexpectedly ({type(exc).__name__})")
                on_result(index, result)

        async with self._async_client(max_connections=concurrency) as client:
            with watching_interrupts():
                await asyncio.gather(*(worker(client) for _ in range(concurrency)))

    # --- HTTP clients -----------------------------------------------------------------------

    def _environment(self) -> tuple[ssl.SSLContext, EnvironmentProxy | None]:
        """The CA bundle and proxy the environment sets, checked once, when a client is built.

        Raise `ConfigurationError` naming the variable at fault (``SSL_CERT_FILE``,
        ``HTTPS_PROXY``...), before any request: the sync and async clients, and so
        `verify`, `averify` and `check_many`, all fail the same way.
        """
        # Built once per Hub: loading a CA bundle costs milliseconds.
        if self._environ is None:
            from .transports import environment_proxy, environment_ssl_context

            self._environ = (environment_ssl_context(), environment_proxy())
        return self._environ

    def _new_client(self) -> httpx.Client:
        if self._transport is None:
            from .transports import ProxyRouter

            # trust_env=False: the proxy comes from the checked environment, via ProxyRouter.
            return httpx.Client(transport=ProxyRouter(*self._environment()), trust_env=False)
        if not isinstance(self._transport, httpx.BaseTransport):
            raise TypeError("this Hub's transport is async-only; use averify() or check_many()")
        return httpx.Client(transport=self._transport)

    @contextlib.asynccontextmanager
    async def _async_client(self, max_connections: int = 20) -> AsyncIterator[AsyncSender]:
        if self._sender is not None:
            yield self._sender
            return
        sender = self._new_async_client(max_connections)
        try:
            yield sender
        finally:
            await sender.aclose()

    def _new_async_client(self, max_connections: int = 20) -> AsyncSender:
        from .transports import AiohttpSender, TransportSender

        if self._transport is not None:
            if not isinstance(self._transport, httpx.AsyncBaseTransport):
                raise TypeError("this Hub's transport is sync-only; use verify()")
            return TransportSender(self._transport)
        context, proxy = self._environment()
        return AiohttpSender(ssl_context=context, max_connections=max_connections, proxy=proxy)

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if self._client is None:
            self._client = self._new_client()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled blocking client opened by ``with hub:``."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def __aenter__(self) -> Self:
        if self._sender is None:
            self._sender = self._new_async_client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled async client opened by ``async with hub:``."""
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None


@functools.cache
def _drive() -> Callable[[Policy, Provider, str, Flow, Iterable[str]], Driver]:
    # Looked up once: an import statement costs a check about 2 µs each time it runs, even
    # with the module loaded (bench: three per check were 2% of check_many's instructions).
    from .flows import drive

    return drive


def _taker(
    items: Iterable[CheckItem] | AsyncIterable[CheckItem],
) -> Callable[[], Awaitable[tuple[int, CheckItem] | None]]:
    """What `Hub._check_each`'s check slots call for their next item and its index (None:
    no more)."""
    import asyncio
    import collections
    from collections.abc import AsyncIterable

    if not isinstance(items, AsyncIterable):
        pending = enumerate(items)

        async def next_item() -> tuple[int, CheckItem] | None:
            return next(pending, None)

        return next_item
    source = aiter(items)
    # An async generator cannot be resumed while it waits: one slot reads it at a time. Not
    # with an asyncio.Lock: a lock hands itself to its waiters in turn, so once the slots had
    # queued behind one read that waited (for a lease, say), every read after it queued too,
    # each paying a future and a pass of the loop. Here a slot reads at once when no other is
    # inside the stream, and waits only while one is.
    loop = asyncio.get_running_loop()
    waiters: collections.deque[asyncio.Future[None]] = collections.deque()
    reading = False
    count = 0

    def wake_one() -> None:
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def next_async_item() -> tuple[int, CheckItem] | None:
        nonlocal reading, count
        while reading:
            waiter = loop.create_future()
            waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.cancelled():  # woken, then cancelled: the turn passes on
                    wake_one()
                raise  # a cancelled waiter left in the queue is skipped by `wake_one`
        reading = True
        try:
            item = await anext(source)
        except StopAsyncIteration:
            return None
        finally:
            reading = False
            wake_one()
        count += 1
        return count - 1, item

    return next_async_item


def _before_first_send(driver: Driver, callback: Callable[[], object]) -> Driver:
    """*driver*, calling *callback* when its first `Send` is handed to the runner.

    Every outcome, error and close is passed through, so the runner drives the inner driver
    exactly as it would without the callback.
    """
    from .flows import Send

    called = False
    try:
        action = next(driver)
        while True:
            if not called and isinstance(action, Send):
                called = True
                try:
                    callback()
                except BaseException:
                    driver.close()
                    raise
            try:
                outcome = yield action
            except GeneratorExit:
                driver.close()
                raise
            except BaseException as exc:  # the runner throws the request's failure in
                action = driver.throw(exc)
            else:
                action = driver.send(outcome)
    except StopIteration as stop:
        result: Verified = stop.value
        return result


def _default_display(provider: Provider | None, account: Account) -> AccountDisplay:
    rows = [(key.replace("_", " ").capitalize(), value) for key, value in account.config.items()]
    rows.append(
        ("Expires", account.expires_at.isoformat() if account.expires_at else "never / unknown")
    )
    name = provider.name if provider is not None else account.provider_id
    return AccountDisplay(title=account.label, subtitle=f"{name} · {account.identity}", rows=rows)
