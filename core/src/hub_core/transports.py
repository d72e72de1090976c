"""How the async driver's requests leave: one finished response per request, body capped.

`run_async` needs little of an HTTP client: send one request, read at most so many bytes of
its decoded body, hand back a complete `httpx.Response`. `AiohttpSender` (the default) does
exactly that over an `aiohttp.ClientSession`, whose pool keeps its speed under concurrency
where httpx's async pool does not (encode/httpx#3215); building the one response from
aiohttp's costs far less per request than streaming through an httpx transport and copying
the result, which shows when thousands of keys are checked. It uses the environment's HTTPS
proxy when one is set (``HTTPS_PROXY``/``ALL_PROXY``, minus ``NO_PROXY``, read by the
standard library as any client does), and never reads ``.netrc`` or keeps cookies: one
account's check must not carry anything into another's.

`TransportSender` does the same over any httpx transport (a `MockTransport` in tests, a host
application's own), which brings its own proxy and cookie handling.
"""

from __future__ import annotations

import base64
import functools
import math
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

import httpx

if TYPE_CHECKING:
    import aiohttp
    import yarl

__all__ = [
    "USER_AGENT",
    "AiohttpSender",
    "AsyncSender",
    "ResponseTooLarge",
    "TransportSender",
    "finished_response",
]

# Before python/cpython#118960, a TLS connection aborted mid-answer (a timeout) kept its socket
# until the TLS shutdown timed out; aiohttp's clean-up closes it (and warns where it is not needed).
_LEAKS_CLOSED_TLS = sys.version_info < (3, 12, 8) or (3, 13, 0) <= sys.version_info < (3, 13, 1)

# Headers that describe the wire encoding: the response handed to a flow is already decoded.
WIRE_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


def _user_agent() -> str:
    from . import __version__

    return f"hub/{__version__} (+https://pypi.org/project/hub-core/)"


#: Sent with every request that does not name its own User-Agent.
USER_AGENT = _user_agent()


class ResponseTooLarge(Exception):
    """The answer is longer than the caller's limit; the rest of it was not read."""


class AsyncSender(Protocol):
    """What `run_async` sends its requests through."""

    async def fetch(self, request: httpx.Request, max_body: int, total: float) -> httpx.Response:
        """Send *request*; the response, its decoded body read.

        *total* bounds the whole exchange, body included (`TimeoutError` when it runs out); a
        sender may also apply the ``timeout`` extension's phases. Raise `ResponseTooLarge` when
        the body exceeds *max_body* bytes, and the transport's own exception when the request
        fails.
        """
        ...

    async def aclose(self) -> None:
        """Close the pooled connections."""
        ...


def environment_proxy() -> str | None:
    """The HTTPS proxy the environment names, if any."""
    proxies = urllib.request.getproxies()
    return proxies.get("https") or proxies.get("all") or None


def bypasses_proxy(host: str) -> bool:
    """Whether ``NO_PROXY`` exempts *host* from the proxy."""
    return bool(urllib.request.proxy_bypass(host))


def finished_response(
    request: httpx.Request,
    status: int,
    raw_headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    reason: str | None = None,
) -> httpx.Response:
    """A complete, closed response with its decoded *body*; wire-encoding headers dropped."""
    headers = [(k, v) for k, v in raw_headers if k.lower() not in WIRE_HEADERS]
    headers.append((b"Content-Length", b"%d" % len(body)))
    extensions = {"http_version": b"HTTP/1.1"}
    if reason:
        extensions["reason_phrase"] = reason.encode("ascii", "replace")
    response = httpx.Response(
        status, headers=headers, stream=_ReadBody(body), request=request, extensions=extensions
    )
    # What Response.read() leaves behind, without its streaming machinery (decoders, chunkers,
    # a context manager per chunk): that costs more than the rest of building the response,
    # thousands of times per `check_many`. core/tests/test_transports.py pins the result.
    response._content = body
    response.is_stream_consumed = response.is_closed = True
    return response


class _ReadBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The stream of a response whose body is already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self._body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length the server declared, if it is a number."""
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


class AiohttpSender:
    """The default sender: one pooled `aiohttp.ClientSession`, opened on first use.

    *ssl_context* verifies servers (hub builds it from ``SSL_CERT_FILE`` or certifi);
    *max_connections* bounds the pool, shared by the direct and the proxied requests.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int = 20) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        proxy = environment_proxy()
        self._proxy = httpx.Proxy(proxy) if proxy else None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            ssl=self._ssl_context,
            enable_cleanup_closed=_LEAKS_CLOSED_TLS,
        )
        # No cookie jar: a cookie one account's check receives must not reach the next check.
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},  # a flow's own User-Agent wins
            trust_env=False,
        )
        return self._session

    def _proxy_options(self, url: httpx.URL) -> dict[str, object]:
        if self._proxy is None or bypasses_proxy(url.host):
            return {}
        headers = dict(self._proxy.headers)
        if self._proxy.raw_auth is not None:  # httpx.Proxy took them out of the URL
            token = base64.b64encode(b":".join(self._proxy.raw_auth)).decode("ascii")
            headers["Proxy-Authorization"] = f"Basic {token}"
        return {"proxy": str(self._proxy.url), "proxy_headers": headers}

    async def fetch(self, request: httpx.Request, max_body: int, total: float) -> httpx.Response:
        """Send *request* with aiohttp; its decoded body read up to *max_body* bytes.

        One timer bounds the request (*total*), as aiohttp's own default does; the connect
        phase of a new connection has its own. Per-phase pool and read timers would add two
        more timers to every request, which shows when thousands run at once.
        """
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        response = await session.request(
            request.method,
            _yarl_url(str(request.url)),
            headers=request.headers.multi_items(),
            data=request.content or None,
            allow_redirects=False,
            timeout=_client_timeout(total, timeout.get("connect")),
            **self._proxy_options(request.url),  # type: ignore[arg-type]
        )
        try:
            declared = response.content_length
            if declared is not None and declared > max_body:
                raise ResponseTooLarge
            body = bytearray()
            while chunk := await response.content.readany():
                body += chunk
                if len(body) > max_body:
                    raise ResponseTooLarge
        except BaseException:
            response.close()  # the rest is unread: the connection cannot be reused
            raise
        response.release()
        return finished_response(
            request, response.status, response.raw_headers, bytes(body), response.reason
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=1024)
def _yarl_url(url: str) -> yarl.URL:
    # Reused: aiohttp reads a dozen properties of the URL, each computed once per object, and
    # thousands of checks of one provider ask for the same few URLs. httpx has encoded it.
    import yarl

    return yarl.URL(url, encoded=True)


@functools.lru_cache(maxsize=64)
def _client_timeout(total: float, connect: float | None) -> aiohttp.ClientTimeout:
    # Reused: most requests get the same limits (the policy's, unless their flow is late).
    import aiohttp

    return aiohttp.ClientTimeout(total=total, sock_connect=connect, ceil_threshold=math.inf)


class TransportSender:
    """A sender over any `httpx.AsyncBaseTransport`, used as it is (no proxy of its own)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def fetch(self, request: httpx.Request, max_body: int, total: float) -> httpx.Response:
        """Send *request* through the transport; its decoded body read up to *max_body*."""
        import asyncio

        if "user-agent" not in request.headers:
            request.headers["User-Agent"] = USER_AGENT
        async with asyncio.timeout(total):
            response = await self._transport.handle_async_request(request)
            try:
                declared = declared_length(response.headers.raw)
                if declared is not None and declared > max_body:
                    raise ResponseTooLarge
                body = await _read_capped(response.aiter_bytes(), max_body)
            finally:
                await response.aclose()
        return finished_response(
            request, response.status_code, response.headers.raw, body, response.reason_phrase
        )

    async def aclose(self) -> None:
        """Close the transport."""
        await self._transport.aclose()


async def _read_capped(chunks: AsyncIterator[bytes], max_body: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_body:
            raise ResponseTooLarge
    return bytes(body)
