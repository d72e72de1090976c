"""The flow driver over real sockets, reached the way production traffic is (DESIGN §5, §8).

Every check goes through `Hub`'s default transports (httpx for `verify`, aiohttp for `averify`
and `check_many`) to an HTTPS proxy on 127.0.0.1 named by ``HTTPS_PROXY``, which tunnels to a
fake provider whose certificate is trusted only through ``SSL_CERT_FILE``. Each scenario runs
in the three modes; every error and log line is searched for the key.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import traceback
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import anyio
import httpx
import pytest
import trustme

from hub_core import (
    Credentials,
    Field,
    Guide,
    Hub,
    HubError,
    InvalidCredentials,
    Policy,
    Provider,
    ProviderUnavailable,
    UnexpectedResponse,
    Verified,
    hookimpl,
)
from hub_core.testing.network import (
    ConnectProxy,
    ConnectRecord,
    FakeProvider,
    Received,
    Reply,
    apply_environment,
    proxy_environment,
)

CANARY = "hubkey-CANARY-7f3a9c1e5b2d"
MODES = ["verify", "averify", "check_many"]
TEN_MIB = b"x" * (10 * 1024 * 1024)
OK = {"id": 7, "name": "Ada Lovelace"}

Result = Verified | HubError


# --- the plugin under test ------------------------------------------------------------------


class AcmePlugin:
    """A provider plugin written as a third party would, registered in code."""

    @hookimpl
    def hub_providers(self) -> list[Provider]:
        return [
            Provider(
                id="acme",
                name="Acme",
                fields=[
                    Field("api_key", "API key", kind="secret"),
                    Field("host", "API host", default="api.acme.test"),
                    Field("path", "Path", default="/v1/me"),
                ],
                guide=Guide(),
                hosts=["api.acme.test", "*.acme.test"],
            )
        ]

    @hookimpl
    def hub_validate_credentials(
        self, provider: Provider, credentials: Credentials
    ) -> Generator[httpx.Request, httpx.Response, Verified] | None:
        return self.verify(credentials) if provider.id == "acme" else None

    def verify(
        self, credentials: Credentials
    ) -> Generator[httpx.Request, httpx.Response, Verified]:
        url = f"https://{credentials['host']}{credentials['path']}"
        headers = {"Authorization": f"Bearer {credentials['api_key']}"}
        response = yield httpx.Request("GET", url, headers=headers)
        # Plugins quote the provider's words in their messages; the core must mask the key.
        if response.status_code == 401:
            raise InvalidCredentials(f"Acme rejected the key: {response.text}", field="api_key")
        if response.status_code >= 500:
            raise ProviderUnavailable(f"Acme failed: HTTP {response.status_code} {response.text}")
        if response.status_code != 200:
            raise UnexpectedResponse(f"Acme answered HTTP {response.status_code}")
        data = response.json()
        return Verified(identity=f"user:{data['id']}", label=data["name"])


def make_hub(**limits: Any) -> Hub:
    return Hub(plugins=[AcmePlugin()], load_entrypoints=False, policy=Policy(**limits))


# --- the loopback network -------------------------------------------------------------------


@pytest.fixture
def acme(ca: trustme.CA) -> Iterator[FakeProvider]:
    with FakeProvider(["api.acme.test", "*.acme.test"], ca=ca) as server:
        yield server


@pytest.fixture
def elsewhere(ca: trustme.CA) -> Iterator[FakeProvider]:
    """Another host, reachable through the proxy: it must never see a request or a key."""
    with FakeProvider(["evil.test"], ca=ca) as server:
        yield server


@pytest.fixture
def proxy(acme: FakeProvider, elsewhere: FakeProvider) -> Iterator[ConnectProxy]:
    # eu.acme.test is on Acme's allowlist but deliberately not routed.
    routes = {"api.acme.test": acme, "other.acme.test": acme, "evil.test": elsewhere}
    with ConnectProxy(routes) as server:
        yield server


@pytest.fixture
def trusted(
    proxy: ConnectProxy, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str | None]]:
    with proxy_environment(proxy, ca) as env:
        apply_environment(monkeypatch, env)
        yield env


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert CANARY not in caplog.text


def assert_no_key(outcome: object) -> None:
    texts = [str(outcome), repr(outcome)]
    if isinstance(outcome, BaseException):
        texts += traceback.format_exception(outcome)
        texts += [repr(vars(outcome))]
    for text in texts:
        assert CANARY not in text, text


async def check(hub: Hub, mode: str, path: str = "/v1/me", **values: str) -> list[Result]:
    """Check the canary key in *mode*; `check_many` checks two copies of it concurrently.

    The copies differ by a query parameter, so a handler can tell them apart by target.
    """
    values = {"api_key": CANARY, "path": path, **values}
    if mode == "check_many":
        join = "&" if "?" in path else "?"
        items = [("acme", {**values, "path": f"{path}{join}copy={n}"}) for n in range(2)]
        results = await hub.check_many(items, concurrency=2)
    else:
        results = []
        try:
            if mode == "verify":
                results.append(hub.verify("acme", values))
            else:
                results.append(await hub.averify("acme", values))
        except HubError as exc:
            results.append(exc)
    for result in results:
        assert_no_key(result)
    assert_no_key(hub)
    return results


def first_attempt_then(fail: Reply, then: Reply) -> Callable[[Received], Reply]:
    """A handler that answers *fail* to the first request for each target, then *then*."""
    seen: set[str] = set()

    def handler(request: Received) -> Reply:
        if request.target in seen:
            return then
        seen.add(request.target)
        return fail

    return handler


def unavailable(results: Sequence[Result], reason: str) -> list[ProviderUnavailable]:
    for result in results:
        assert isinstance(result, ProviderUnavailable), repr(result)
        assert result.reason == reason, repr(result)
    return [r for r in results if isinstance(r, ProviderUnavailable)]


# --- success, proxy and TLS -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_check_succeeds_through_the_proxy_with_the_ca_from_ssl_cert_file(
    mode: str, acme: FakeProvider, proxy: ConnectProxy
) -> None:
    acme.handler = lambda request: Reply.json(OK)

    results = await check(make_hub(), mode)

    assert results
    assert all(r == Verified(identity="user:7", label="Ada Lovelace") for r in results)
    assert len(acme.requests) == len(results)
    for request in acme.requests:
        assert (request.method, request.path) == ("GET", "/v1/me")
        assert request.headers["host"] == "api.acme.test"
        assert request.headers["authorization"] == f"Bearer {CANARY}"
        assert request.headers["user-agent"].startswith("hub/")
    assert proxy.connects
    assert set(proxy.connects) == {ConnectRecord("api.acme.test", 443, routed=True)}


@pytest.mark.anyio
async def test_untrusted_certificate_is_a_tls_failure_and_nothing_reaches_the_handler(
    mode: str, acme: FakeProvider, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme.handler = lambda request: Reply.json(OK)
    with proxy_environment(proxy, ca=None) as env:  # SSL_CERT_FILE unset: the test CA is unknown
        apply_environment(monkeypatch, env)
        results = await check(make_hub(backoff=0), mode)

    for error in unavailable(results, "tls"):
        assert "api.acme.test" in str(error)
    assert acme.requests == []
    # The client gives up on the handshake first; the server thread records it a moment later.
    for _ in range(100):
        if acme.tls_failures:
            break
        await anyio.sleep(0.02)
    assert acme.tls_failures, "the handshake never reached the server: not a TLS test"
    assert set(proxy.hosts) == {"api.acme.test"}


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_host_the_proxy_refuses_is_unavailable_and_named_in_the_message(
    mode: str, acme: FakeProvider, proxy: ConnectProxy
) -> None:
    acme.handler = lambda request: Reply.json(OK)

    results = await check(make_hub(backoff=0), mode, host="eu.acme.test")

    for error in unavailable(results, "proxy"):
        assert str(error).startswith("Acme could not be reached")
        assert "eu.acme.test" in str(error)
    assert acme.requests == []
    assert set(proxy.connects) == {ConnectRecord("eu.acme.test", 443, routed=False)}


# --- timeouts -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize(
    "reply", [Reply.json(OK, delay=3), Reply.hang()], ids=["slow-headers", "never-answers"]
)
async def test_answer_slower_than_the_read_timeout_is_a_timeout(
    mode: str, acme: FakeProvider, reply: Reply
) -> None:
    acme.handler = lambda request: reply
    started = time.monotonic()

    results = await check(make_hub(timeout=0.5, retries=0), mode)

    assert time.monotonic() - started < 2.5
    unavailable(results, "timeout")
    assert len(acme.requests) == len(results)


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_body_trickling_past_the_flow_timeout_is_a_timeout(
    mode: str, acme: FakeProvider
) -> None:
    reply = Reply.json(OK, trickle=0.1)  # one byte every 0.1 s: about 3.5 s in all
    acme.handler = lambda request: reply
    started = time.monotonic()

    results = await check(make_hub(flow_timeout=1), mode)

    assert time.monotonic() - started < 2.5
    unavailable(results, "timeout")
    assert len(acme.exchanges) == len(results)
    assert all(not exchange.finished for exchange in acme.exchanges)


# --- retries --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize(
    "failure",
    [Reply.abort(), Reply(503, body=b"maintenance")],
    ids=["connection-reset", "503"],
)
async def test_get_is_retried_after_a_failure_then_succeeds(
    mode: str, acme: FakeProvider, failure: Reply
) -> None:
    acme.handler = first_attempt_then(failure, Reply.json(OK))

    results = await check(make_hub(backoff=0), mode)

    assert all(isinstance(r, Verified) for r in results), results
    by_target: dict[str, list[Reply | None]] = {}
    for exchange in acme.exchanges:
        by_target.setdefault(exchange.request.target, []).append(exchange.reply)
    assert len(by_target) == len(results)
    assert all(replies == [failure, Reply.json(OK)] for replies in by_target.values()), by_target


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_connection_reset_is_reported_as_a_failed_connection_not_a_timeout(
    mode: str, acme: FakeProvider
) -> None:
    acme.handler = lambda request: Reply.abort()

    results = await check(make_hub(retries=0), mode)

    for result in results:
        assert isinstance(result, ProviderUnavailable), repr(result)
        assert result.reason in {"connect", "protocol"}, repr(result)
        assert "in time" not in str(result)
    # aiohttp itself resends an idempotent request once when the server drops the connection
    # (ClientSession's built-in retry, which has no public switch): still bounded.
    per_check = 1 if mode == "verify" else 2
    assert len(results) <= len(acme.requests) <= per_check * len(results)


# --- body cap -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_ten_mib_body_is_refused_without_being_read(
    mode: str, acme: FakeProvider, framing: Any
) -> None:
    acme.handler = lambda request: Reply(
        200, {"Content-Type": "application/json"}, TEN_MIB, framing=framing
    )

    results = await check(make_hub(), mode)

    for result in results:
        assert isinstance(result, UnexpectedResponse), repr(result)
        assert "1024 KiB" in str(result)
    assert len(acme.exchanges) == len(results)
    for exchange in acme.exchanges:
        # Wait off the event loop: the async client finishes closing on it.
        ended = await anyio.to_thread.run_sync(exchange.wait, 5.0)
        assert ended, "the client kept the connection open without reading"
        assert not exchange.finished
        assert exchange.body_sent < len(TEN_MIB) // 2, exchange


# --- redirects ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("target", ["evil.test", "other.acme.test"])
async def test_redirect_to_another_host_is_not_followed(
    mode: str, acme: FakeProvider, elsewhere: FakeProvider, proxy: ConnectProxy, target: str
) -> None:
    acme.handler = lambda request: Reply.redirect(f"https://{target}/v1/me")

    results = await check(make_hub(), mode)

    for result in results:
        assert isinstance(result, UnexpectedResponse), repr(result)
        assert target in str(result)
    assert set(proxy.hosts) == {"api.acme.test"}
    assert elsewhere.requests == []
    assert {request.headers["host"] for request in acme.requests} == {"api.acme.test"}
    assert len(acme.requests) == len(results)


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_redirect_within_the_same_host_is_followed_with_the_key(
    mode: str, acme: FakeProvider
) -> None:
    def handler(request: Received) -> Reply:
        if request.path == "/v1/me":
            return Reply.redirect("/v1/users/7", status=301)
        return Reply.json(OK)

    acme.handler = handler

    results = await check(make_hub(), mode)

    assert all(isinstance(r, Verified) for r in results), results
    assert sorted(request.path for request in acme.requests) == sorted(
        ["/v1/me", "/v1/users/7"] * len(results)
    )
    assert {request.headers["authorization"] for request in acme.requests} == {f"Bearer {CANARY}"}


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("status", [401, 500])
async def test_key_echoed_by_the_provider_is_masked_in_errors(
    mode: str, acme: FakeProvider, status: int
) -> None:
    def handler(request: Received) -> Reply:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return Reply(status, {"Content-Type": "text/plain"}, f"bad key {key}".encode())

    acme.handler = handler

    results = await check(make_hub(backoff=0, retries=0), mode)

    expected = InvalidCredentials if status == 401 else ProviderUnavailable
    for result in results:
        assert isinstance(result, expected), repr(result)
        assert "bad key [redacted]" in str(result)
    assert acme.requests  # the key really was sent and echoed; check() found it masked


# --- what one check leaves behind -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_a_cookie_set_during_one_check_is_not_sent_with_the_next(
    mode: str, acme: FakeProvider
) -> None:
    acme.handler = lambda request: Reply.json(OK, headers={"Set-Cookie": "session=s1; Path=/"})
    hub = make_hub()
    async with hub:
        with hub:
            for _ in range(2):
                results = await check(hub, mode)
                assert all(isinstance(r, Verified) for r in results), results

    assert len(acme.requests) >= 2
    assert all("cookie" not in request.headers for request in acme.requests)


# --- compressed answers ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_a_gzip_answer_reaches_the_flow_decoded(mode: str, acme: FakeProvider) -> None:
    body = gzip.compress(json.dumps(OK).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    acme.handler = lambda request: Reply(200, headers, body)

    results = await check(make_hub(), mode)

    assert all(r == Verified(identity="user:7", label="Ada Lovelace") for r in results), results


@pytest.mark.anyio
@pytest.mark.usefixtures("trusted")
async def test_a_small_gzip_answer_that_inflates_past_the_cap_is_refused(
    mode: str, acme: FakeProvider
) -> None:
    bomb = gzip.compress(b" " * (20 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    acme.handler = lambda request: Reply(200, headers, bomb)

    results = await check(make_hub(), mode)

    for result in results:
        assert isinstance(result, UnexpectedResponse), repr(result)
        assert "1024 KiB" in str(result)
