"""A TCP proxy on 127.0.0.1 that a test can stall or reset: the network faults of SCALE.md §4.

Put between a worker and PostgreSQL (or any TCP server), it forwards bytes both ways until the
test says otherwise:

- `FaultProxy.stall` stops forwarding in both directions while keeping every connection open,
  as a partitioned or frozen link does: the peers see silence, not an error;
- `FaultProxy.resume` forwards again (what was read meanwhile is delivered, in order);
- `FaultProxy.reset` aborts every open connection with a TCP RST on both sides, as a restarted
  middlebox or a dropped NAT entry does; new connections are accepted afterwards.

The proxy runs its own event loop in a daemon thread, so a test drives it from plain code.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

_CHUNK = 65536
_T = TypeVar("_T")


class FaultProxy:
    """Forward 127.0.0.1:`port` to *target* (host, port); a context manager that stops it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        #: Connections accepted so far (reconnects show here).
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1 (then `port` is set)."""
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop listening, drop every connection and end the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- faults ---------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding (connections stay open, nothing moves)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        """Forward again after `stall`."""
        self._loop.call_soon_threadsafe(self._flowing.set)

    def reset(self) -> int:
        """Abort every open connection with a RST on both sides; return how many there were."""
        return self._call(self._reset())

    async def _reset(self) -> int:
        return self._abort_all()

    @property
    def open_connections(self) -> int:
        """Connections currently forwarded."""
        return len(self._open)

    # --- forwarding -----------------------------------------------------------------------------

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(client_w)
            return
        pair = (client_w, upstream_w)
        self._open.add(pair)
        try:
            await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))
        finally:
            self._open.discard(pair)
            for writer in pair:
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        # One side ended: pass the end on, so the other side's read ends too.
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()

    def _abort_all(self) -> int:
        pairs = list(self._open)
        for pair in pairs:
            for writer in pair:
                _abort(writer)
        return len(pairs)

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)


def _abort(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send a RST instead of a FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
