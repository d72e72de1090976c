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

Every sender and `run_sync` decode bodies with `BodyDecoder`, not with the HTTP library's own
decoders: those inflate a whole network chunk at once, so a small answer with stacked
encodings (``Content-Encoding: gzip, gzip``) grew to gigabytes in one call before any length
was checked. The blocking client's transport (`ProxyRouter`) also keeps the flow's deadline
(`flow_deadline`) on every socket operation, so a provider that trickles its answer a byte at
a time cannot outlast it.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import importlib
import logging
import math
import os
import re
import socket
import ssl
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, cast

import httpx

from .errors import ConfigurationError

if TYPE_CHECKING:
    import aiohttp
    import httpcore
    import yarl

__all__ = [
    "USER_AGENT",
    "AiohttpSender",
    "AsyncSender",
    "BodyDecoder",
    "EnvironmentProxy",
    "ProxyRouter",
    "ProxyUnreachable",
    "ResponseTooLarge",
    "TransportSender",
    "UnreadableBody",
    "accept_encoding",
    "causes",
    "environment_proxy",
    "environment_ssl_context",
    "finished_response",
    "flow_deadline",
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


class UnreadableBody(Exception):
    """The answer's content coding is one hub does not read, or its compressed data is corrupt.

    The message says which, in words fit for a person; it never quotes the body.
    """


class AsyncSender(Protocol):
    """What `run_async` sends its requests through."""

    async def fetch(self, request: httpx.Request, max_body: int, total: float) -> httpx.Response:
        """Send *request*; the response, its decoded body read.

        *total* bounds the whole exchange, body included (`TimeoutError` when it runs out); a
        sender may also apply the ``timeout`` extension's phases. Raise `ResponseTooLarge` when
        the body, or any layer of its content coding, exceeds *max_body* bytes (decode with
        `BodyDecoder`), `UnreadableBody` when it cannot be decoded, and the transport's own
        exception when the request fails.
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
    # The first "://" ends the scheme: a password may hold another one, and "@", unencoded.
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    at = rest.rfind("@")
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


class _NoHeaderValues(logging.Filter):
    """httpcore's DEBUG trace writes every header a response carried (``receive_response_
    headers.complete return_value=(..., [(name, value), ...])``), and a provider may echo the
    key in one: the event is kept, its values are not. hub's own DEBUG line names the host
    and path of each request, and its status."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "headers" in message and "return_value=" in message:
            record.msg, record.args = message.split(" ", 1)[0] + " (values not logged)", ()
        return True


# The loggers of httpcore's trace (`httpcore._trace`), which the blocking path sends through.
for _name in ("httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_NoHeaderValues())


class ProxyRouter(httpx.BaseTransport):
    """The blocking client's transport: through *proxy*, unless ``NO_PROXY`` names the host.

    The same choice `AiohttpSender` makes, from the proxy hub checked (`environment_proxy`):
    httpx's own reading of the environment would also build proxies hub never uses (an
    ``HTTP_PROXY`` of any scheme) and fail on them.
    """

    def __init__(self, ssl_context: ssl.SSLContext, proxy: EnvironmentProxy | None) -> None:
        self._direct = _DeadlineTransport(ssl_context)
        self._proxy = proxy
        self._proxied = _DeadlineTransport(ssl_context, proxy.proxy) if proxy else None

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


# --- the flow's deadline on the blocking path ----------------------------------------------

# httpx's blocking timeouts bound each socket operation, so a provider sending its status line
# a byte at a time never trips them. Each operation of `_DeadlineTransport` is bounded by what
# is left of the deadline `run_sync` sets here too. The other ways considered: a watchdog
# thread shutting the socket down (the socket is out of reach until the headers have arrived,
# and a thread per request races the pool reusing the connection), or running sync checks on
# the async path (breaks inside a running event loop, and a host's sync httpx transport). This
# one uses only httpcore's public API (network backends, pools, proxies): replacing the pool
# inside httpx.HTTPTransport would need its private attributes.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "hub_flow_deadline", default=None
)


@contextlib.contextmanager
def flow_deadline(at: float) -> Iterator[None]:
    """Bound every socket operation of `ProxyRouter` in this context by *at* (`time.monotonic`).

    A connect, TLS handshake, read or write that would outlast it ends in httpx's matching
    timeout error when *at* is reached.
    """
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, kind: str) -> float | None:
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        # A socket timeout of 0 would make the socket non-blocking: a ReadError, not a timeout.
        import httpcore

        raise getattr(httpcore, kind)("the flow's time ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """An httpcore network stream whose every operation ends by the flow's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, "ReadTimeout"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, "WriteTimeout"))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # Through a proxy, the tunnel's TLS stream wraps this one: it stays bounded too.
        stream = self._stream.start_tls(
            ssl_context, server_hostname, _bounded(timeout, "ConnectTimeout")
        )
        return cast("httpcore.NetworkStream", _DeadlineStream(stream))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _addresses(host: str, port: int, wait: float | None) -> list[str]:
    """The addresses of *host*, looked up for at most *wait* seconds.

    The lookup (``getaddrinfo``) takes no timeout of its own, and a resolver that does not
    answer holds it for seconds a try: it runs on a daemon thread, waited for no longer (and
    not at exit either).
    """
    import httpcore

    found: list[Any] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:  # socket.gaierror: the name does not resolve
            found.append(exc)
        finally:
            done.set()

    threading.Thread(target=look_up, name="hub-resolve", daemon=True).start()
    if not done.wait(wait):
        raise httpcore.ConnectTimeout(f"looking up {host} took longer than the flow")
    if isinstance(found[0], OSError):
        # Raised while handling it, as httpcore does: its pool re-raises `from None`, which
        # keeps the context (`causes` finds the gaierror there), not the cause.
        try:
            raise found[0]
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in found[0]))


class _DeadlineBackend:
    """httpcore's blocking network backend, its streams bounded by the flow's deadline."""

    def __init__(self) -> None:
        import httpcore

        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        import httpcore

        if _DEADLINE.get() is None:
            addresses = [host]
        else:  # the name looked up within the flow's time (`_addresses`), then each address
            addresses = _addresses(host, port, _bounded(timeout, "ConnectTimeout"))
        failed: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                stream = self._backend.connect_tcp(
                    address,
                    port,
                    _bounded(timeout, "ConnectTimeout"),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:  # refused, unreachable: the next address
                failed = exc
                continue
            return cast("httpcore.NetworkStream", _DeadlineStream(stream))
        assert failed is not None
        raise failed

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - hub never asks for a Unix socket
        return self._backend.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries only
        self._backend.sleep(seconds)


# httpx's limits (httpx.Limits()), as httpx.HTTPTransport would use them.
_LIMITS = httpx.Limits()


class _DeadlineTransport(httpx.BaseTransport):
    """httpx's blocking HTTP/1.1 transport, built on httpcore over `_DeadlineBackend`.

    What httpx.HTTPTransport does with a verifying *ssl_context* and an optional *proxy*, in
    httpcore's public API: the same pool, proxy tunnel, responses and exception types.
    """

    def __init__(self, ssl_context: ssl.SSLContext, proxy: httpx.Proxy | None = None) -> None:
        import httpcore

        backend = cast("httpcore.NetworkBackend", _DeadlineBackend())
        self._pool: httpcore.ConnectionPool
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=ssl_context,
                network_backend=backend,
                max_connections=_LIMITS.max_connections,
                max_keepalive_connections=_LIMITS.max_keepalive_connections,
                keepalive_expiry=_LIMITS.keepalive_expiry,
            )
        else:
            self._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=proxy.url.raw_scheme,
                    host=proxy.url.raw_host,
                    port=proxy.url.port,
                    target=proxy.url.raw_path,
                ),
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                ssl_context=ssl_context,
                proxy_ssl_context=proxy.ssl_context,
                network_backend=backend,
                max_connections=_LIMITS.max_connections,
                max_keepalive_connections=_LIMITS.max_keepalive_connections,
                keepalive_expiry=_LIMITS.keepalive_expiry,
            )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* over the pool; the response streams its body."""
        import httpcore

        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=cast("Iterable[bytes]", request.stream),
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_CoreBody(cast("Iterable[bytes]", response.stream)),
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()


class _CoreBody(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


# httpcore's errors and httpx's for them, the most specific first.
_ERROR_NAMES = (
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "TimeoutException",
    "ConnectError",
    "ReadError",
    "WriteError",
    "NetworkError",
    "ProxyError",
    "UnsupportedProtocol",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ProtocolError",
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    import httpcore

    try:
        yield
    except Exception as exc:
        for name in _ERROR_NAMES:
            if isinstance(exc, getattr(httpcore, name)):
                raise getattr(httpx, name)(str(exc)) from exc
        raise


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


# --- content codings -----------------------------------------------------------------------

# How much one layer of decoding hands the next at a time: what bounds the memory of decoding,
# whatever the ratio of each layer.
_STEP = 64 * 1024
# The most content codings one answer may stack; curl stops at 5 too (CVE-2022-32206): each
# layer holds a decompressor's state, so ten thousand "gzip, " would cost gigabytes.
_MAX_LAYERS = 5


class _Layer(Protocol):
    """One content coding being undone."""

    def decode(self, data: bytes, limit: int) -> bytes:
        """Take *data* (``b""`` for more of what came before); at most *limit* bytes of output.

        ``b""`` once everything given has been decoded (or the stream has ended).
        """
        ...

    def finished(self) -> bool:
        """Whether the stream ended, or never started: a truncated stream is corrupt."""
        ...


class _Zlib:
    """gzip, or deflate (zlib-wrapped as RFC 9110 says, or raw as some servers send it)."""

    def __init__(self, gzip: bool) -> None:
        self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16) if gzip else None
        self._head = b""
        self._started = False

    def decode(self, data: bytes, limit: int) -> bytes:
        decompressor = self._decompressor
        if decompressor is None:  # deflate: the first two bytes say which kind
            self._head += data
            if len(self._head) < 2:
                return b""
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            decompressor = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            self._decompressor = decompressor
            data, self._head = self._head, b""
        if decompressor.eof:
            return b""  # what follows the end of the stream is ignored, as httpx ignores it
        self._started = self._started or bool(data)
        try:
            return decompressor.decompress(decompressor.unconsumed_tail + data, limit)
        except zlib.error:
            raise UnreadableBody("its compressed data is corrupt") from None

    def finished(self) -> bool:
        if self._decompressor is None:
            return not self._head
        return self._decompressor.eof or not self._started


class _Brotli:
    """br, with a brotli module that can bound its output (brotli 1.2 and later)."""

    def __init__(self, module: Any) -> None:
        self._decompressor = module.Decompressor()
        self._started = False

    def decode(self, data: bytes, limit: int) -> bytes:
        decompressor = self._decompressor
        if decompressor.is_finished():
            return b""
        self._started = self._started or bool(data)
        try:
            return cast(bytes, decompressor.process(data, output_buffer_limit=limit))
        except Exception:  # brotli.error, or whatever another brotli module raises
            raise UnreadableBody("its compressed data is corrupt") from None

    def finished(self) -> bool:
        return bool(self._decompressor.is_finished()) or not self._started


class _Zstd:
    """zstd, with the standard library's module (Python 3.14) or its backport."""

    def __init__(self, module: Any) -> None:
        self._decompressor = module.ZstdDecompressor()
        self._started = False

    def decode(self, data: bytes, limit: int) -> bytes:
        decompressor = self._decompressor
        if decompressor.eof or (not data and decompressor.needs_input):
            return b""
        self._started = self._started or bool(data)
        try:
            return cast(bytes, decompressor.decompress(data, limit))
        except Exception:  # ZstdError
            raise UnreadableBody("its compressed data is corrupt") from None

    def finished(self) -> bool:
        return bool(self._decompressor.eof) or not self._started


def _module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


@functools.cache
def _codings() -> dict[str, Any]:
    """The content codings hub decodes, each with the module it needs (None: zlib's)."""
    codings: dict[str, Any] = {"gzip": None, "x-gzip": None, "deflate": None}
    brotli = _module("brotli")
    if brotli is not None and hasattr(brotli.Decompressor, "can_accept_more_data"):
        codings["br"] = brotli
    zstd = _module("compression.zstd", "backports.zstd")
    if zstd is not None:
        codings["zstd"] = zstd
    return codings


@functools.cache
def accept_encoding() -> str:
    """The ``Accept-Encoding`` hub sends: exactly the codings `BodyDecoder` decodes."""
    return ", ".join(name for name in _codings() if name != "x-gzip")


def _layer(name: str) -> _Layer:
    codings = _codings()
    if name not in codings:
        shown = name if len(name) <= 20 and name.isascii() and name.isprintable() else None
        raise UnreadableBody(
            f"it is in a content coding hub does not read ({shown or 'unnamed'}); hub reads "
            f"{accept_encoding()}"
        )
    if name in ("gzip", "x-gzip", "deflate"):
        return _Zlib(gzip=name != "deflate")
    return _Brotli(codings[name]) if name == "br" else _Zstd(codings[name])


class BodyDecoder:
    """A body decoded as it arrives, no layer of it longer than *max_body* bytes.

    *encodings* are the answer's ``Content-Encoding`` values (each may list several, comma
    separated), in the order the server applied them. Each chunk from the wire is undone
    layer by layer, each layer handing the next at most 64 KiB at a time, so memory stays near
    *max_body* whatever each layer's ratio. The bytes on the wire, and the output of every
    layer, count against *max_body*: `ResponseTooLarge` once any exceeds it. `UnreadableBody`
    for a coding hub does not read (it decodes
    `accept_encoding`, and ``identity``), more than five layers, or corrupt data.
    """

    def __init__(self, encodings: Sequence[str], max_body: int) -> None:
        names = [
            name
            for value in encodings
            for name in (part.strip().lower() for part in value.split(","))
            if name and name != "identity"
        ]
        if len(names) > _MAX_LAYERS:
            raise UnreadableBody(
                f"it stacks {len(names)} content codings; hub undoes at most {_MAX_LAYERS}"
            )
        self._layers = [_layer(name) for name in reversed(names)]
        self._max_body = max_body
        self._sizes = [0] * (len(self._layers) + 1)
        self._body = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Decode *chunk*, the next bytes from the wire."""
        self._push(0, chunk)

    def _push(self, index: int, data: bytes) -> None:
        self._sizes[index] += len(data)
        if self._sizes[index] > self._max_body:
            raise ResponseTooLarge
        if index == len(self._layers):
            self._body += data
            return
        layer = self._layers[index]
        while piece := layer.decode(data, _STEP):
            data = b""
            self._push(index + 1, piece)

    def finish(self) -> bytes:
        """The decoded body, once the wire is done; `UnreadableBody` if a layer was cut short."""
        if not all(layer.finished() for layer in self._layers):
            raise UnreadableBody("its compressed data ends before the compressed stream does")
        return bytes(self._body)


def decode_whole(response: httpx.Response, max_body: int) -> bytes | None:
    """The body of a response built whole (a `MockTransport` handler's), or None if it streams.

    httpx decoded such a body when the response was built: its wire bytes are gone.
    """
    if not response.is_stream_consumed:
        return None
    if len(response.content) > max_body:
        raise ResponseTooLarge
    return response.content


def content_codings(headers: httpx.Headers) -> list[str]:
    """The ``Content-Encoding`` values of *headers*, in the order they were applied."""
    return headers.get_list("content-encoding", split_commas=True)


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
        # auto_decompress=False: aiohttp inflates a whole chunk at once and reads one coding
        # only; BodyDecoder bounds every layer, as on the blocking path.
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            # A flow's own headers win.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": accept_encoding()},
            trust_env=False,
            auto_decompress=False,
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
            codings = response.headers.getall("Content-Encoding", ())
            if codings:
                decoder = BodyDecoder(
                    content_codings(httpx.Headers(response.raw_headers)), max_body
                )
                while chunk := await response.content.readany():
                    decoder.feed(chunk)
                body = decoder.finish()
            else:  # most answers: no decoder at all
                raw = bytearray()
                while chunk := await response.content.readany():
                    raw += chunk
                    if len(raw) > max_body:
                        raise ResponseTooLarge
                body = bytes(raw)
        except BaseException:
            response.close()  # the rest is unread: the connection cannot be reused
            raise
        response.release()
        return finished_response(
            request, response.status, response.raw_headers, body, response.reason
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
        if "accept-encoding" not in request.headers:
            request.headers["Accept-Encoding"] = accept_encoding()
        async with asyncio.timeout(total):
            response = await self._transport.handle_async_request(request)
            try:
                declared = declared_length(response.headers.raw)
                if declared is not None and declared > max_body:
                    raise ResponseTooLarge
                body = decode_whole(response, max_body)
                if body is None:
                    decoder = BodyDecoder(content_codings(response.headers), max_body)
                    async for chunk in response.aiter_raw():
                        decoder.feed(chunk)
                    body = decoder.finish()
            finally:
                await response.aclose()
        return finished_response(
            request, response.status_code, response.headers.raw, body, response.reason_phrase
        )

    async def aclose(self) -> None:
        """Close the transport."""
        await self._transport.aclose()
