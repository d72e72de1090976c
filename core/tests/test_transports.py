"""The async senders: one finished response per request, body capped, proxy from the env."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
import time
from typing import Any

import aiohttp
import httpx
import pytest

from hub_core import Hub, Policy, ProviderUnavailable
from hub_core.transports import (
    AiohttpSender,
    ResponseTooLarge,
    TransportSender,
    declared_length,
    finished_response,
)

from .conftest import AcmePlugin

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def request(host: str = "api.acme.test") -> httpx.Request:
    return httpx.Request("GET", f"https://{host}/")


def sender() -> AiohttpSender:
    return AiohttpSender(ssl_context=ssl.create_default_context())


# --- proxies --------------------------------------------------------------------------------


async def test_without_a_proxy_every_request_goes_direct() -> None:
    assert sender()._proxy_options(httpx.URL("https://api.acme.test/")) == {}


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
async def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "direct.acme.test")
    options = sender()._proxy_options(httpx.URL("https://api.acme.test/"))
    assert options == {"proxy": "http://127.0.0.1:9", "proxy_headers": {}}
    assert sender()._proxy_options(httpx.URL("https://direct.acme.test/")) == {}


async def test_proxy_credentials_in_the_url_become_a_proxy_authorization_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://ada:s3cret@proxy.corp.test:3128")
    options = sender()._proxy_options(httpx.URL("https://api.acme.test/"))
    assert options["proxy"] == "http://proxy.corp.test:3128"
    credentials = base64.b64encode(b"ada:s3cret").decode()
    assert options["proxy_headers"] == {"Proxy-Authorization": f"Basic {credentials}"}


async def test_the_session_opens_on_first_use_and_closes() -> None:
    plain = sender()
    assert plain._session is None
    session = plain._open()
    assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
    await plain.aclose()
    assert session.closed
    assert plain._session is None
    await plain.aclose()  # closing twice is harmless


# --- a given httpx transport ----------------------------------------------------------------


def transport_answering(response: httpx.Response) -> TransportSender:
    return TransportSender(httpx.MockTransport(lambda r: response))


async def test_a_given_transport_is_used_as_it_is_and_the_body_is_read() -> None:
    answer = httpx.Response(200, json={"id": 7}, headers={"X-Trace": "t1"})
    response = await transport_answering(answer).fetch(request(), 1024, 5.0)
    assert response.status_code == 200
    assert response.json() == {"id": 7}
    assert response.headers["x-trace"] == "t1"
    assert response.request.url == "https://api.acme.test/"


async def test_a_compressed_body_is_handed_over_decoded_without_wire_headers() -> None:
    body = b'{"id": 7}'
    answer = httpx.Response(200, content=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    response = await transport_answering(answer).fetch(request(), 1024, 5.0)
    assert response.content == body
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(body))


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    answer = httpx.Response(200, content=b"x" * 2048)
    with pytest.raises(ResponseTooLarge):
        await transport_answering(answer).fetch(request(), 1024, 5.0)


async def test_a_body_that_decodes_past_the_limit_is_refused() -> None:
    bomb = gzip.compress(b"0" * 100_000)
    answer = httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})
    assert len(bomb) < 1024
    with pytest.raises(ResponseTooLarge):
        await transport_answering(answer).fetch(request(), 1024, 5.0)


async def test_the_total_bounds_the_whole_exchange_over_a_given_transport() -> None:
    class Stalling(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await TransportSender(Stalling()).fetch(request(), 1024, 0.05)
    assert time.monotonic() - started < 5


async def test_closing_the_sender_closes_its_transport() -> None:
    closed: list[bool] = []

    class Transport(httpx.AsyncBaseTransport):
        async def aclose(self) -> None:
            closed.append(True)

    await TransportSender(Transport()).aclose()
    assert closed == [True]


# --- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"Content-Length", b"12")], 12),
        ([(b"content-length", b"0")], 0),
        ([(b"Content-Length", b"-1")], None),
        ([(b"Content-Length", b"12, 12")], None),
        ([], None),
    ],
)
def test_declared_length(headers: list[tuple[bytes, bytes]], expected: int | None) -> None:
    assert declared_length(headers) == expected


def test_a_finished_response_keeps_the_reason_phrase() -> None:
    response = finished_response(request(), 418, [(b"X-A", b"1")], b"tea", "I'm a teapot")
    assert response.reason_phrase == "I'm a teapot"
    assert response.text == "tea"
    assert response.headers["x-a"] == "1"


async def test_a_finished_response_behaves_as_one_httpx_has_read() -> None:
    body = '{"name": "Zoë"}'.encode()
    raw = [(b"Content-Type", b"application/json; charset=utf-8"), (b"Content-Length", b"99")]
    response = finished_response(request(), 200, raw, body)
    assert response.is_closed
    assert response.is_stream_consumed
    assert response.content == body
    assert response.json() == {"name": "Zoë"}
    assert response.read() == body
    assert await response.aread() == body
    assert b"".join(response.iter_bytes()) == body
    assert response.headers.get_list("content-length") == [str(len(body))]
    assert response.http_version == "HTTP/1.1"
    response.close()
    await response.aclose()


# --- over a real socket ---------------------------------------------------------------------


async def test_the_aiohttp_sender_names_hub_unless_the_flow_names_itself() -> None:
    from hub_core.testing.network import FakeProvider, Reply
    from hub_core.transports import USER_AGENT

    with FakeProvider(["127.0.0.1"], lambda request: Reply.json({})) as server:
        context = ssl.create_default_context()
        server.ca.configure_trust(context)
        sender = AiohttpSender(ssl_context=context)
        url = f"https://127.0.0.1:{server.port}/"
        try:
            await sender.fetch(httpx.Request("GET", url), 1024, 5.0)
            own = httpx.Request("GET", url, headers={"User-Agent": "acme-sdk/2"})
            response = await sender.fetch(own, 1024, 5.0)
        finally:
            await sender.aclose()

    assert response.json() == {}
    agents = [request.headers.get_list("user-agent") for request in server.requests]
    assert agents == [[USER_AGENT], ["acme-sdk/2"]]


async def test_the_aiohttp_sender_sends_a_body_once_with_its_length() -> None:
    from hub_core.testing.network import FakeProvider, Reply

    with FakeProvider(
        ["127.0.0.1"], lambda request: Reply.json({"ok": True}, status=201)
    ) as server:
        context = ssl.create_default_context()
        server.ca.configure_trust(context)
        sender = AiohttpSender(ssl_context=context)
        url = f"https://127.0.0.1:{server.port}/v1/keys?check=1"
        try:
            posted = httpx.Request("POST", url, json={"name": "Zoë"})
            response = await sender.fetch(posted, 1024, 5.0)
        finally:
            await sender.aclose()

    assert response.status_code == 201
    assert response.json() == {"ok": True}
    (received,) = server.requests
    assert (received.method, received.target) == ("POST", "/v1/keys?check=1")
    assert received.body == posted.content
    assert received.headers.get_list("content-length") == [str(len(posted.content))]
    assert received.headers["content-type"] == "application/json"


SLOW_LOOKUP = 3.0


@pytest.fixture
def hanging_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    real = socket.getaddrinfo

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "api.acme.test":
            time.sleep(SLOW_LOOKUP)  # a nameserver that does not answer
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)


@pytest.mark.usefixtures("hanging_resolver")
@pytest.mark.parametrize("runner", ["sync", "async"])
def test_a_hanging_name_lookup_ends_at_the_flow_timeout(runner: str) -> None:
    hub = Hub(
        plugins=[AcmePlugin()],
        load_entrypoints=False,
        policy=Policy(flow_timeout=1.0, retries=0),
    )

    async def timed() -> float:  # timed inside the loop: asyncio.run also joins the executor
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable):
            await hub.averify("acme", {"api_key": "good"})
        return time.monotonic() - started

    try:
        if runner == "sync":
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable):
                hub.verify("acme", {"api_key": "good"})
            elapsed = time.monotonic() - started
        else:
            elapsed = asyncio.run(timed())
    finally:
        hub.close()
    # getaddrinfo takes no timeout: the blocking path waits for it on a thread, no longer
    # (room for a loaded machine, none for waiting the lookup out).
    assert elapsed < SLOW_LOOKUP - 0.5
