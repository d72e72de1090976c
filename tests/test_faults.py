"""The fault proxy the PostgreSQL fault tests put between a worker and the server."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from faults import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the proxy's reset reaches here too
            while data := self.request.recv(4096):
                self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[:2]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(echo) as started:
        yield started


def _connect(proxy: FaultProxy) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    conn.settimeout(5)
    return conn


def test_forwards_both_ways(proxy: FaultProxy) -> None:
    with _connect(proxy) as conn:
        conn.sendall(b"hello")
        assert conn.recv(100) == b"hello"
    assert proxy.accepted == 1


def test_a_stall_holds_the_bytes_until_resumed(proxy: FaultProxy) -> None:
    with _connect(proxy) as conn:
        conn.sendall(b"one")
        assert conn.recv(100) == b"one"
        proxy.stall()
        conn.sendall(b"two")
        conn.settimeout(0.5)
        with pytest.raises(TimeoutError):
            conn.recv(100)
        assert proxy.open_connections == 1  # silence, not an error
        proxy.resume()
        conn.settimeout(5)
        assert conn.recv(100) == b"two"


def test_a_reset_aborts_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    conn = _connect(proxy)
    conn.sendall(b"ping")
    assert conn.recv(100) == b"ping"
    assert proxy.reset() == 1
    with pytest.raises(ConnectionResetError):
        conn.recv(100)
    conn.close()
    with _connect(proxy) as again:
        again.sendall(b"back")
        assert again.recv(100) == b"back"
    assert proxy.accepted == 2


def test_an_unreachable_target_closes_the_client() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]  # nothing listens once closed
    with FaultProxy(("127.0.0.1", port)) as proxy:
        try:  # the proxy's RST may come as the connection opens, as the byte goes, or after
            with _connect(proxy) as conn:
                conn.sendall(b"x")
                answer = conn.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed at once, nothing forwarded
        assert proxy.accepted == 1
