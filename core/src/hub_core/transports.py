"""How the async driver's requests leave: one finished response per request, body capped.

`run_async` needs little of an HTTP client: send one request, read at most so many bytes of
its decoded body, hand back a complete `httpx.Response`. `AiohttpSender` (the default) does
exactly that over an `aiohttp.ClientSession`, whose pool keeps its speed under concurrency
where httpx's async pool does not (encode/httpx#3215); building the one response from
aiohttp's costs far less per request than streaming through an httpx transport and copying
the result, which shows when thousands of keys are checked. It uses the environment's HTTPS
proxy when one is set (``HTTPS_PROXY``/``ALL_PROXY``, minus ``NO_PROXY``, read by the
standard library as any client does), and never reads ``.netrc`` or keeps cookies: one
account's check must not carry anything into another's. `ProxyRouter` gives the blocking
client the same choice of proxy, from the same variables.

What the environment configures is checked once, when a Hub builds its first client
(`environment_proxy`, `environment_ssl_context`): an unusable value is a `ConfigurationError`
naming the variable, never a traceback from deep inside an HTTP library, and a proxy that
cannot be reached is `ProxyUnreachable`, which names the proxy rather than the provider.

`TransportSender` does the same over any httpx transport (a `MockTransport` in tests, a host
application's own), which brings its own proxy and cookie handling.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import re
import socket
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import httpx

from .errors import ConfigurationError

if TYPE_CHECKING:
    import aiohttp
    import yarl

__all__ = [
    "USER_AGENT",
    "AiohttpSender",
    "AsyncSender",
    "EnvironmentProxy",
    "ProxyRouter",
    "ProxyUnreachable",
    "ResponseTooLarge",
    "TransportSender",
    "causes",
    "environment_proxy",
    "environment_ssl_context",
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


# --- what the environment configures -------------------------------------------------------

_PROXY_SCHEMES = ("http", "https")
_SHOWN_LENGTH = 120
# What a proxy's host may be: a name (IDNA already applied by httpx) or an IP address.
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


class EnvironmentProxy(NamedTuple):
    """The HTTPS proxy the environment names, checked: hub sends every request through it.

    *variable* is where it came from (``HTTPS_PROXY``, ``https_proxy``, ``ALL_PROXY``...),
    *proxy* the parsed proxy (credentials taken out of its URL), *shown* its address for
    messages, with any user name and password masked.
    """

    variable: str
    proxy: httpx.Proxy
    shown: str


def _shown(value: str) -> str:
    """*value* fit for a message: the user name and password of a URL masked, cut short."""
    scheme, sep, rest = value.rpartition("://")
    at = rest.rfind("@")  # the last "@": a password may hold "@" unencoded
    if at != -1:
        rest = "***" + rest[at:]
    shown = f"{scheme}{sep}{rest}"
    if len(shown) > _SHOWN_LENGTH:
        shown = shown[:_SHOWN_LENGTH] + "..."
    # A value with control characters is quoted, so it cannot rewrite the person's terminal.
    return shown if shown.isprintable() else ascii(shown)


def _proxy_variable(kind: str, value: str) -> str:
    """The environment variable urllib took the *kind* proxy from (lower case wins, as there)."""
    for name in (f"{kind}_proxy", f"{kind.upper()}_PROXY"):
        if os.environ.get(name) == value:
            return name
    for name, found in os.environ.items():
        if name.lower() == f"{kind}_proxy" and found == value:
            return name
    return f"the system's {kind} proxy setting"  # macOS and Windows also read their settings


def environment_proxy() -> EnvironmentProxy | None:
    """The HTTPS proxy the environment names, if any; `ConfigurationError` if it is unusable.

    Read as urllib, httpx and curl read it: ``HTTPS_PROXY``, else ``ALL_PROXY`` (lower-case
    names first), an address without a scheme taken as ``http://``. hub only sends HTTPS, so
    ``HTTP_PROXY`` plays no part.
    """
    proxies = urllib.request.getproxies()
    kind = "https" if proxies.get("https") else "all"
    value = proxies.get(kind)
    if not value:
        return None
    variable = _proxy_variable(kind, value)
    shown = _shown(value)

    def unusable(why: str) -> ConfigurationError:
        return ConfigurationError(variable, f"{variable}={shown} : {why}")

    url = value.strip() if "://" in value else f"http://{value.strip()}"
    scheme = url.partition("://")[0].lower()
    if scheme not in _PROXY_SCHEMES:
        extra = " (SOCKS is not supported)" if scheme.startswith("socks") else ""
        why = f"hub reaches providers through an http:// or https:// proxy only{extra}"
        raise unusable(why)
    bad_port = "not a proxy address: its port must be a number from 1 to 65535"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        # httpx says what is wrong, but may quote part of the URL: say it in our own words.
        raise unusable(bad_port if "port" in str(exc) else "not a valid proxy URL") from None
    host = parsed.raw_host.decode("ascii", "replace")
    if not host or not _HOST.fullmatch(host):
        raise unusable("not a proxy address: it names no valid host name")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise unusable(bad_port)
    return EnvironmentProxy(variable, httpx.Proxy(parsed), shown)


def environment_ssl_context() -> ssl.SSLContext:
    """Verify servers with ``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else certifi's CAs.

    The same choice httpx makes, but an unusable file or directory is a `ConfigurationError`
    naming the variable and what is wrong with it, raised before any request.
    """
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile:
        shown = _shown(cafile)

        def unusable(why: str) -> ConfigurationError:
            return ConfigurationError("SSL_CERT_FILE", f"SSL_CERT_FILE={shown} : {why}")

        try:
            return ssl.create_default_context(cafile=cafile)
        except FileNotFoundError:
            raise unusable("no such file") from None
        except IsADirectoryError:
            why = "a directory, not a file of PEM certificates (name a directory in SSL_CERT_DIR)"
            raise unusable(why) from None
        except ssl.SSLError:
            # Loading found no certificate: an empty file, text that is not PEM, a PEM
            # holding only a key or a certificate request.
            raise unusable("the file holds no PEM certificate (BEGIN CERTIFICATE)") from None
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise unusable(f"the file cannot be read ({why})") from None
    capath = os.environ.get("SSL_CERT_DIR")
    if capath:
        if not os.path.isdir(capath):
            raise ConfigurationError(
                "SSL_CERT_DIR", f"SSL_CERT_DIR={_shown(capath)} : not a directory"
            )
        return ssl.create_default_context(capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class ProxyUnreachable(httpx.ProxyError):
    """A request failed on its way to the environment's proxy, not to the provider.

    Through a proxy, a client resolves and connects to the proxy only (the proxy resolves the
    provider's name and answers a CONNECT it cannot complete with an error status), so a name
    that does not resolve or a refused connection is the proxy's. The message names the proxy
    (*proxy*) and the variable that set it.
    """

    def __init__(self, proxy: EnvironmentProxy, cause: BaseException) -> None:
        what = "does not resolve" if _in_chain(cause, socket.gaierror) else "refused the connection"
        super().__init__(f"the HTTPS proxy {proxy.shown} (from {proxy.variable}) {what}")
        self.proxy = proxy


def causes(exc: BaseException) -> Iterator[BaseException]:
    """*exc* and every exception behind it: causes, contexts and aiohttp's ``os_error``.

    Transports wrap errors differently (httpx chains the OSError as a cause, aiohttp keeps it
    in ``os_error``), so what went wrong is found anywhere in the chain.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        os_error = getattr(current, "os_error", None)
        stack += [current.__cause__, current.__context__]
        if isinstance(os_error, BaseException):
            stack.append(os_error)


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in causes(exc))


def proxy_failed(exc: BaseException) -> bool:
    """Whether *exc*, raised sending a request through a proxy, is the proxy's failure.

    A name that does not resolve, or a refused connection, was the proxy's (see
    `ProxyUnreachable`); a TLS failure inside the tunnel is the provider's.
    """
    if _in_chain(exc, ssl.SSLError):
        return False
    return _in_chain(exc, socket.gaierror) or _in_chain(exc, ConnectionRefusedError)


class ProxyRouter(httpx.BaseTransport):
    """The blocking client's transport: through *proxy*, unless ``NO_PROXY`` names the host.

    The same choice `AiohttpSender` makes, from the proxy hub checked (`environment_proxy`):
    httpx's own reading of the environment would also build proxies hub never uses (an
    ``HTTP_PROXY`` of any scheme) and fail on them.
    """

    def __init__(self, ssl_context: ssl.SSLContext, proxy: EnvironmentProxy | None) -> None:
        self._direct = httpx.HTTPTransport(verify=ssl_context)
        self._proxy = proxy
        self._proxied = (
            httpx.HTTPTransport(verify=ssl_context, proxy=proxy.proxy) if proxy else None
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* directly or through the proxy."""
        if self._proxied is None or self._proxy is None or bypasses_proxy(request.url.host):
            return self._direct.handle_request(request)
        try:
            return self._proxied.handle_request(request)
        except httpx.ConnectError as exc:
            if proxy_failed(exc):
                raise ProxyUnreachable(self._proxy, exc) from exc
            raise

    def close(self) -> None:
        """Close both connection pools."""
        self._direct.close()
        if self._proxied is not None:
            self._proxied.close()


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
    *max_connections* bounds the pool, shared by the direct and the proxied requests. *proxy*
    is the proxy to use, by default the environment's (`environment_proxy`).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int = 20,
        proxy: EnvironmentProxy | Literal["environment"] | None = "environment",
    ) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxy = environment_proxy() if proxy == "environment" else proxy

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
        proxy = self._proxy.proxy
        headers = dict(proxy.headers)
        if proxy.raw_auth is not None:  # httpx.Proxy took them out of the URL
            token = base64.b64encode(b":".join(proxy.raw_auth)).decode("ascii")
            headers["Proxy-Authorization"] = f"Basic {token}"
        return {"proxy": str(proxy.url), "proxy_headers": headers}

    async def fetch(self, request: httpx.Request, max_body: int, total: float) -> httpx.Response:
        """Send *request* with aiohttp; its decoded body read up to *max_body* bytes.

        One timer bounds the request (*total*), as aiohttp's own default does; the connect
        phase of a new connection has its own. Per-phase pool and read timers would add two
        more timers to every request, which shows when thousands run at once.
        """
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        proxy_options = self._proxy_options(request.url)
        try:
            response = await session.request(
                request.method,
                _yarl_url(str(request.url)),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=_client_timeout(total, timeout.get("connect")),
                **proxy_options,  # type: ignore[arg-type]
            )
        except OSError as exc:  # aiohttp's connection errors are OSErrors
            if proxy_options and self._proxy is not None and proxy_failed(exc):
                raise ProxyUnreachable(self._proxy, exc) from exc
            raise
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
