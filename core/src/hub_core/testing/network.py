"""A loopback network for end-to-end tests: fake HTTPS providers behind an HTTPS proxy.

The product reaches these servers exactly as it reaches real providers: through the proxy
named by ``HTTPS_PROXY`` (``CONNECT host:443``), over TLS verified against the CA bundle named
by ``SSL_CERT_FILE``. Nothing in the product is switched off for tests::

    import trustme
    from hub_core.testing.network import (
        ConnectProxy, FakeProvider, Reply, apply_environment, merged_environ, proxy_environment,
    )

    ca = trustme.CA()
    with (
        FakeProvider(["api.acme.test"], lambda request: Reply.json({"id": 1}), ca=ca) as acme,
        ConnectProxy({"api.acme.test": acme}) as proxy,
        proxy_environment(proxy, ca) as env,
    ):
        apply_environment(monkeypatch, env)       # or subprocess.run(..., env=merged_environ(env))
        hub.verify("acme", {...})
        assert acme.requests[0].headers["authorization"] == "Bearer ..."
        assert proxy.hosts == ["api.acme.test"]

Every server listens on 127.0.0.1 on a random port, runs on daemon threads, and stops, with
all its connections, when closed. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json as _json
import os
import selectors
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Protocol, Self

import attrs
import httpx
import trustme

__all__ = [
    "PROXY_VARIABLES",
    "ConnectProxy",
    "ConnectRecord",
    "Exchange",
    "FakeProvider",
    "Handler",
    "Received",
    "Reply",
    "apply_environment",
    "merged_environ",
    "proxy_environment",
]

#: How a reply's body is delimited: a Content-Length header, chunked encoding, or closing.
Framing = Literal["length", "chunked", "close"]
#: What the server does with a request: answer it, never answer it, or reset the connection.
Action = Literal["answer", "hang", "abort"]

#: Proxy variables `proxy_environment` unsets, so only ``HTTPS_PROXY`` decides the route.
PROXY_VARIABLES = (
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
)

_POLL = 0.05  # how often accept loops look at the stop flag, in seconds
_CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024


# --- what the fake provider receives and sends -------------------------------------------


@attrs.frozen(eq=False)
class Received:
    """One request as the fake provider received it."""

    method: str
    #: The request target: path and query string, as sent.
    target: str
    headers: httpx.Headers = attrs.field(repr=False)
    body: bytes = attrs.field(default=b"", repr=False)

    @property
    def path(self) -> str:
        """The path without the query string."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The query string (without ``?``), empty when there is none."""
        return self.target.partition("?")[2]


def _header_pairs(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(name), str(text)) for name, text in items)


@attrs.frozen
class Reply:
    """What the fake provider does with one request.

    *delay* waits before the status line. *trickle* sends the body *trickle_size* bytes at a
    time, waiting *trickle* seconds before each piece. *framing* delimits the body with a
    Content-Length header (unless *headers* carry one), chunked encoding, or by closing the
    connection. *action* ``"hang"`` never answers (until the server closes); ``"abort"`` resets
    the connection (TCP RST) without answering.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_header_pairs)
    body: bytes = attrs.field(default=b"", repr=lambda body: f"<{len(body)} bytes>")
    framing: Framing = "length"
    delay: float = 0.0
    trickle: float | None = None
    trickle_size: int = 1
    action: Action = "answer"

    @classmethod
    def json(
        cls,
        data: Any,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        **behaviour: Any,
    ) -> Reply:
        """Answer *data* as JSON; *behaviour* takes the other fields (``delay=``, ...)."""
        pairs = (("Content-Type", "application/json"), *_header_pairs(headers))
        return cls(status, pairs, _json.dumps(data).encode(), **behaviour)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        """Redirect to *location*."""
        return cls(status, (("Location", location),))

    @classmethod
    def hang(cls) -> Reply:
        """Never answer: hold the connection open until the server closes."""
        return cls(action="hang")

    @classmethod
    def abort(cls, delay: float = 0.0) -> Reply:
        """Reset the connection (TCP RST) after *delay* seconds, without answering."""
        return cls(action="abort", delay=delay)


#: Decides the reply to each request; runs on the connection's thread.
Handler = Callable[[Received], Reply]


def _no_handler(request: Received) -> Reply:
    return Reply(404, (("Content-Type", "text/plain"),), b"no handler set for this test\n")


@attrs.define(eq=False)
class Exchange:
    """One request and what became of its reply; updated while the reply is being sent."""

    request: Received
    reply: Reply | None = None
    #: Body bytes the server managed to hand to the connection.
    body_sent: int = 0
    #: True once the whole reply was sent.
    finished: bool = False
    #: Why the reply was not sent whole, if it was not (the client left, a handler failed).
    error: str | None = None
    _ended: threading.Event = attrs.field(factory=threading.Event, repr=False, init=False)

    def wait(self, timeout: float = 5.0) -> bool:
        """Wait until the server is done with this exchange; return whether it is."""
        return self._ended.wait(timeout)


# --- the servers ---------------------------------------------------------------------------


class _LoopbackServer:
    """An accept loop on 127.0.0.1 with one daemon thread per connection, stopped by close()."""

    _thread_name = "loopback"

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (127.0.0.1); the server must be started."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    def start(self) -> Self:
        """Listen on a random port of 127.0.0.1 and start serving; return self."""
        if self._listener is not None:
            return self
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(_POLL)
        self._port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop, self._listener)
        return self

    def close(self) -> None:
        """Stop accepting, cut every open connection and wait (bounded) for the threads."""
        self._stopped.set()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also for TLS sockets: it wakes a blocked
                # recv/send in another thread without touching the TLS state.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        deadline = time.monotonic() + 5.0
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        thread = threading.Thread(
            target=target, args=(sock,), name=f"{self._thread_name}:{self._port}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                conn, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve_connection, conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        raise NotImplementedError


class FakeProvider(_LoopbackServer):
    """A threaded HTTPS server on 127.0.0.1 that plays a provider's API.

    Its certificate, issued by *ca* (a new `trustme.CA` when omitted), names *hosts*: exact
    names or wildcards such as ``"*.acme.test"``. *handler* (settable later as ``.handler``)
    turns each `Received` request into a `Reply`. Every request is recorded in `exchanges`
    (and `requests`), every failed TLS handshake in `tls_failures`.

    *idle_timeout* closes a connection that sends nothing for that long; *max_wait* bounds
    delays, trickles and hangs; *send_buffer* keeps the kernel's send buffer small, so that
    what `Exchange.body_sent` counts is close to what the client actually read.
    """

    _thread_name = "fake-provider"

    def __init__(
        self,
        hosts: Sequence[str],
        handler: Handler | None = None,
        *,
        ca: trustme.CA | None = None,
        idle_timeout: float = 5.0,
        max_wait: float = 30.0,
        send_buffer: int = 64 * 1024,
    ) -> None:
        super().__init__()
        if isinstance(hosts, str):
            raise TypeError("hosts must be a sequence of host names, not one string")
        self.hosts = tuple(hosts)
        self.handler: Handler = handler or _no_handler
        self.ca = ca or trustme.CA()
        self.idle_timeout = idle_timeout
        self.max_wait = max_wait
        self.send_buffer = send_buffer
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*self.hosts).configure_cert(self._context)
        self._exchanges: list[Exchange] = []
        self._tls_failures: list[str] = []

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"<FakeProvider {', '.join(self.hosts)} at {where}>"

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request received so far, with what became of its reply, in order."""
        with self._lock:
            return list(self._exchanges)

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, in order."""
        return [exchange.request for exchange in self.exchanges]

    @property
    def tls_failures(self) -> list[str]:
        """Why each failed TLS handshake failed (the client did not trust us, or left)."""
        with self._lock:
            return list(self._tls_failures)

    def _record(self, request: Received) -> Exchange:
        exchange = Exchange(request)
        with self._lock:
            self._exchanges.append(exchange)
        return exchange

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
            conn.settimeout(self.idle_timeout)
            sock = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        except OSError:
            conn.close()
            return
        self._track(sock)
        handler: _ProviderHandler | None = None
        try:
            if self._stopped.is_set():
                return
            try:
                sock.do_handshake()
            except OSError as exc:
                with self._lock:
                    self._tls_failures.append(f"{type(exc).__name__}: {exc}")
                return
            with contextlib.suppress(OSError):
                handler = _ProviderHandler(sock, sock.getpeername(), self)
        finally:
            self._untrack(sock)
            if handler is not None and handler.reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


class _ProviderHandler(BaseHTTPRequestHandler):
    """Parses requests with the standard library; the provider's handler decides the reply."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeProvider"

    def __init__(self, sock: ssl.SSLSocket, address: Any, provider: FakeProvider) -> None:
        self.provider = provider
        self.reset = False
        # The standard handler wants a server object; ours only reads `provider`.
        placeholder = socketserver.BaseServer(address, socketserver.BaseRequestHandler)
        super().__init__(sock, address, placeholder)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests assert on `FakeProvider.exchanges`, not on stderr."""

    def handle(self) -> None:
        """Serve requests until the connection closes; a broken connection just ends it."""
        try:
            super().handle()
        except (OSError, ValueError):
            self.close_connection = True

    def handle_one_request(self) -> None:
        """Read one request and answer it as the handler says."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not self.raw_requestline or len(self.raw_requestline) > 65536:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        request = Received(
            method=self.command,
            target=self.path,
            headers=httpx.Headers(list(self.headers.items())),
            body=body,
        )
        exchange = self.provider._record(request)
        try:
            self._answer(exchange)
        finally:
            exchange._ended.set()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
                if size == 0:
                    return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, exchange: Exchange) -> None:
        provider = self.provider
        try:
            reply = provider.handler(exchange.request)
        except Exception as exc:
            exchange.error = f"the handler failed: {type(exc).__name__}: {exc}"
            reply = Reply(500, (("Content-Type", "text/plain"),), exchange.error.encode())
        exchange.reply = reply
        stopped = provider._stopped
        if reply.delay and stopped.wait(min(reply.delay, provider.max_wait)):
            exchange.error = "the server closed during the delay"
            self.close_connection = True
            return
        if reply.action == "hang":
            stopped.wait(provider.max_wait)
            exchange.error = "never answered"
            self.close_connection = True
            return
        if reply.action == "abort":
            exchange.error = "reset the connection"
            self.reset = self.close_connection = True
            return
        try:
            self._send(reply, exchange)
        except OSError as exc:
            exchange.error = f"the client went away: {type(exc).__name__}"
            self.close_connection = True

    def _send(self, reply: Reply, exchange: Exchange) -> None:
        self.send_response_only(reply.status)
        names = {name.lower() for name, _ in reply.headers}
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.framing == "length" and "content-length" not in names:
            self.send_header("Content-Length", str(len(reply.body)))
        elif reply.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif reply.framing == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        step = reply.trickle_size if reply.trickle is not None else _CHUNK
        started = time.monotonic()
        for start in range(0, len(reply.body), max(1, step)):
            if reply.trickle is not None:
                if time.monotonic() - started > self.provider.max_wait:
                    raise TimeoutError("trickled for longer than max_wait")
                if self.provider._stopped.wait(reply.trickle):
                    raise ConnectionAbortedError("the server closed while trickling")
            piece = reply.body[start : start + step]
            if reply.framing == "chunked":
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            exchange.body_sent += len(piece)
        if reply.framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
        exchange.finished = True


@attrs.frozen
class ConnectRecord:
    """One ``CONNECT`` the proxy received, and whether it was routed to a fake provider."""

    host: str
    port: int
    routed: bool


class ConnectProxy(_LoopbackServer):
    """A threaded HTTP proxy on 127.0.0.1 that tunnels ``CONNECT host:443`` to fake providers.

    *routes* maps host names (exact, or ``"*.suffix"`` patterns) to a `FakeProvider` (or a
    port on 127.0.0.1). A CONNECT to a routed host on port 443 is tunnelled both ways; any
    other CONNECT is answered ``502 Bad Gateway`` (``403`` for a port other than 443), and any
    other method ``405``. Every CONNECT is recorded in `connects`, routed or not.
    """

    _thread_name = "connect-proxy"

    def __init__(
        self,
        routes: Mapping[str, FakeProvider | int] | None = None,
        *,
        idle_timeout: float = 30.0,
        buffer_size: int = 64 * 1024,
    ) -> None:
        super().__init__()
        self._routes: dict[str, FakeProvider | int] = {}
        for pattern, target in (routes or {}).items():
            self.route(pattern, target)
        self.idle_timeout = idle_timeout
        self.buffer_size = buffer_size
        self._connects: list[ConnectRecord] = []

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"<ConnectProxy {', '.join(self._routes)} at {where}>"

    @property
    def url(self) -> str:
        """The proxy's URL, as ``HTTPS_PROXY`` takes it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def connects(self) -> list[ConnectRecord]:
        """Every CONNECT received so far, in order."""
        with self._lock:
            return list(self._connects)

    @property
    def hosts(self) -> list[str]:
        """The host of every CONNECT received so far (routed or not), in order."""
        return [record.host for record in self.connects]

    def route(self, pattern: str, target: FakeProvider | int) -> None:
        """Tunnel CONNECTs for *pattern* (a host or ``"*.suffix"``) to *target*."""
        with self._lock:
            self._routes[pattern.lower()] = target

    def _port_for(self, host: str) -> int | None:
        with self._lock:
            routes = dict(self._routes)
        target = routes.get(host)
        if target is None:
            for pattern, candidate in routes.items():
                if pattern.startswith("*.") and host.endswith(pattern[1:]):
                    target = candidate
                    break
        if target is None:
            return None
        return target if isinstance(target, int) else target.port

    def _serve_connection(self, conn: socket.socket) -> None:
        self._track(conn)
        upstream: socket.socket | None = None
        try:
            conn.settimeout(self.idle_timeout)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer_size)
            head, extra = self._read_head(conn)
            if head is None:
                return
            upstream = self._open_tunnel(conn, head)
            if upstream is None:
                return
            if extra:
                upstream.sendall(extra)
            self._pipe(conn, upstream)
        except OSError:
            pass
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    self._untrack(sock)
                    sock.close()

    def _read_head(self, conn: socket.socket) -> tuple[bytes | None, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > _MAX_HEAD or self._stopped.is_set():
                return None, b""
            piece = conn.recv(4096)
            if not piece:
                return None, b""
            data += piece
        head, _, extra = data.partition(b"\r\n\r\n")
        return head, extra

    def _open_tunnel(self, conn: socket.socket, head: bytes) -> socket.socket | None:
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        authority = rest.partition(" ")[0]
        if method != "CONNECT":
            conn.sendall(_status_line(405, "Method Not Allowed"))
            return None
        host, _, port_text = authority.rpartition(":")
        host = host.strip("[]").lower()
        port = int(port_text) if port_text.isdigit() else 0
        target = self._port_for(host) if port == 443 else None
        with self._lock:
            self._connects.append(ConnectRecord(host, port, routed=target is not None))
        if port != 443:
            conn.sendall(_status_line(403, "Forbidden"))
            return None
        if target is None:
            conn.sendall(_status_line(502, "Bad Gateway"))
            return None
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._track(upstream)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_size)
        upstream.settimeout(self.idle_timeout)
        try:
            upstream.connect(("127.0.0.1", target))
        except OSError:
            conn.sendall(_status_line(502, "Bad Gateway"))
            self._untrack(upstream)
            upstream.close()
            return None
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream

    def _pipe(self, conn: socket.socket, upstream: socket.socket) -> None:
        peers = {conn: upstream, upstream: conn}
        last = time.monotonic()
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self._stopped.is_set() and time.monotonic() - last < self.idle_timeout:
                for key, _events in selector.select(_POLL * 4):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    peers[source].sendall(data)
                    last = time.monotonic()


def _status_line(status: int, reason: str) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


# --- the environment -----------------------------------------------------------------------


@contextlib.contextmanager
def proxy_environment(
    proxy: ConnectProxy, ca: trustme.CA | None
) -> Iterator[dict[str, str | None]]:
    """Yield the environment variables that send HTTPS traffic through *proxy*.

    ``HTTPS_PROXY`` (and ``https_proxy``) name the proxy; ``SSL_CERT_FILE`` names a temporary
    file holding *ca*'s certificate, removed on exit. A value of None means "unset": the other
    proxy variables (`PROXY_VARIABLES`) and ``SSL_CERT_DIR``, and ``SSL_CERT_FILE`` too when
    *ca* is None, so that the CA is not trusted. Apply it with `apply_environment`, or pass
    ``merged_environ(env)`` to a subprocess.
    """
    env: dict[str, str | None] = dict.fromkeys(PROXY_VARIABLES)
    env.update(HTTPS_PROXY=proxy.url, https_proxy=proxy.url, SSL_CERT_DIR=None, SSL_CERT_FILE=None)
    if ca is None:
        yield env
        return
    with ca.cert_pem.tempfile() as path:
        env["SSL_CERT_FILE"] = path
        yield env


def merged_environ(
    changes: Mapping[str, str | None], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return *base* (default: ``os.environ``) with *changes* applied, for ``subprocess(env=)``."""
    merged = dict(os.environ if base is None else base)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


class _EnvironmentPatcher(Protocol):
    def setenv(self, name: str, value: str, prepend: str | None = None) -> None: ...

    def delenv(self, name: str, raising: bool = True) -> None: ...


def apply_environment(patcher: _EnvironmentPatcher, changes: Mapping[str, str | None]) -> None:
    """Apply *changes* through *patcher* (pytest's ``monkeypatch``), None meaning "unset"."""
    for name, value in changes.items():
        if value is None:
            patcher.delenv(name, raising=False)
        else:
            patcher.setenv(name, value)
