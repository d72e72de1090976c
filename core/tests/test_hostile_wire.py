"""Hostile answers on the wire: stacked content codings and trickled answers (issue 16).

The body cap (`Policy.max_body`) holds for every layer of content coding, and bounds memory,
not only the length handed to the flow; the flow's deadline holds however slowly a provider
sends its status line, headers or body. Both on the blocking (httpx) and the async (aiohttp)
path, over real sockets through the loopback HTTPS proxy.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib
import json
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_core import (
    Credentials,
    Field,
    Guide,
    Hub,
    HubError,
    Policy,
    Provider,
    ProviderUnavailable,
    UnexpectedResponse,
    Verified,
    hookimpl,
)
from hub_core.testing.network import (
    ConnectProxy,
    FakeProvider,
    Reply,
    apply_environment,
    proxy_environment,
)
from hub_core.transports import (
    BodyDecoder,
    ResponseTooLarge,
    UnreadableBody,
    accept_encoding,
)

MiB = 1024 * 1024
CAP = 1 * MiB
OK = {"id": 7, "name": "Ada Lovelace"}
MODES = ["verify", "averify", "check_many"]


# --- encoders for every coding hub may decode ---------------------------------------------


def _optional(*names: str) -> Any:
    for name in names:
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    return None


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, 9),
    "x-gzip": lambda data: gzip.compress(data, 9),
    "deflate": lambda data: zlib.compress(data, 9),  # zlib-wrapped, as RFC 9110 says
    "deflate-raw": _deflate_raw,  # what some servers send as "deflate"
}
_brotli = _optional("brotli")
if _brotli is not None and "br" in accept_encoding():
    ENCODERS["br"] = _brotli.compress
_zstd = _optional("compression.zstd", "backports.zstd")
if _zstd is not None:
    ENCODERS["zstd"] = _zstd.compress


def header_name(coding: str) -> str:
    return "deflate" if coding == "deflate-raw" else coding


def encode(body: bytes, codings: list[str]) -> tuple[bytes, str]:
    """*body* with *codings* applied in order; the Content-Encoding that says so."""
    for coding in codings:
        body = ENCODERS[coding](body)
    return body, ", ".join(header_name(c) for c in codings)


def decoded(wire: bytes, header: str, cap: int = CAP, chunk: int = 4096) -> bytes:
    decoder = BodyDecoder([header], cap)
    for start in range(0, len(wire), chunk):
        decoder.feed(wire[start : start + chunk])
    return decoder.finish()


@functools.cache
def zeros_gzip(size: int) -> bytes:
    """gzip of *size* zero bytes, built a mebibyte at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join(parts) + compressor.flush()


# --- the decoder, layer by layer -----------------------------------------------------------

codings = st.lists(st.sampled_from(sorted(ENCODERS)), min_size=0, max_size=5)
bodies = st.one_of(st.binary(max_size=2048), st.builds(lambda n: b"{}" * n, st.integers(0, 5000)))


@settings(max_examples=150, deadline=None)
@given(body=bodies, applied=codings, chunk=st.integers(1, 5000))
def test_stacked_codings_in_any_order_and_depth_decode_to_the_body(
    body: bytes, applied: list[str], chunk: int
) -> None:
    wire, header = encode(body, applied)

    assert decoded(wire, header, chunk=chunk) == body


@settings(max_examples=60, deadline=None)
@given(applied=codings.filter(bool), size=st.integers(CAP + 1, 3 * CAP))
def test_a_body_over_the_cap_is_refused_in_any_stack_of_codings(
    applied: list[str], size: int
) -> None:
    wire, header = encode(bytes(size), applied)

    with pytest.raises(ResponseTooLarge):
        decoded(wire, header)


@pytest.mark.parametrize(
    "applied",
    [["gzip"], ["gzip", "gzip"], ["gzip", "deflate"], ["deflate", "gzip", "gzip"]],
    ids=lambda applied: "+".join(applied),
)
def test_a_bomb_is_refused_with_memory_near_the_cap(applied: list[str]) -> None:
    # 256 MiB of zeros; each further layer makes the wire smaller still.
    wire = zeros_gzip(256 * MiB)
    header = "gzip"
    for coding in applied[1:]:
        wire, _ = encode(wire, [coding])
        header = f"{header}, {header_name(coding)}"
    assert len(wire) < 300 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            decoded(wire, header, chunk=64 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * CAP, f"decoding took {peak // MiB} MiB"


def test_a_small_answer_that_inflates_past_the_cap_only_at_its_last_layer_is_refused() -> None:
    inner = zeros_gzip(64 * MiB)  # the last layer undone: 64 KiB that inflate to 64 MiB
    wire, header = encode(inner, ["deflate"])
    assert decoded(wire, header) == inner  # every layer before the last is small

    with pytest.raises(ResponseTooLarge):
        decoded(wire, f"gzip, {header}")


def test_every_layer_counts_against_the_cap_the_wire_included() -> None:
    noise = bytes(range(256)) * (CAP // 256 + 16)  # incompressible enough, and over the cap
    with pytest.raises(ResponseTooLarge):
        decoded(noise, "identity")
    # The middle layer is over the cap although the body it holds is small.
    middle = gzip.compress(b"{}") + noise
    wire, _ = encode(middle, ["gzip"])
    with pytest.raises(ResponseTooLarge):
        decoded(wire, "gzip, gzip")


@pytest.mark.parametrize(
    "header",
    [
        "compress",
        "x-custom",
        "br" if "br" not in ENCODERS else "x-br",
        "zstd" if "zstd" not in ENCODERS else "x-zstd",
        "gzip, lzma",
        "\x1b[2J",
    ],
)
def test_a_coding_hub_does_not_read_is_refused_before_reading(header: str) -> None:
    with pytest.raises(UnreadableBody) as caught:
        BodyDecoder([header], CAP)
    assert "content coding hub does not read" in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_identity_and_empty_codings_are_no_layer() -> None:
    assert decoded(b'{"a": 1}', "identity, , IDENTITY") == b'{"a": 1}'


def test_more_than_five_layers_are_refused_before_any_is_built() -> None:
    with pytest.raises(UnreadableBody, match="at most 5"):
        BodyDecoder([", ".join(["gzip"] * 10_000)], CAP)
    wire, header = encode(b"{}", ["gzip"] * 5)
    assert decoded(wire, header) == b"{}"


@pytest.mark.parametrize(
    ("wire", "header"),
    [
        (b"\x1f\x8b\x08\x00garbage-garbage", "gzip"),
        (gzip.compress(b'{"id": 7}')[:-6], "gzip"),  # cut short
        (b"\xff\xff\xff\xff", "deflate"),
        (zlib.compress(b'{"id": 7}')[:5], "deflate"),
    ],
    ids=["corrupt-gzip", "truncated-gzip", "corrupt-deflate", "truncated-deflate"],
)
def test_corrupt_or_truncated_compressed_data_is_unreadable(wire: bytes, header: str) -> None:
    with pytest.raises(UnreadableBody):
        decoded(wire, header)


def test_hub_offers_exactly_the_codings_it_decodes() -> None:
    offered = [name.strip() for name in accept_encoding().split(",")]
    assert {"gzip", "deflate"} <= set(offered)
    for name in offered:
        BodyDecoder([name], CAP)  # no UnreadableBody


# --- over real sockets ---------------------------------------------------------------------


class AcmePlugin:
    @hookimpl
    def hub_providers(self) -> list[Provider]:
        return [
            Provider(
                id="acme",
                name="Acme",
                fields=[Field("api_key", "API key", kind="secret")],
                guide=Guide(),
                hosts=["api.acme.test"],
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
        headers = {"Authorization": f"Bearer {credentials['api_key']}"}
        response = yield httpx.Request("GET", "https://api.acme.test/v1/me", headers=headers)
        data = response.json()
        return Verified(identity=f"user:{data['id']}", label=data["name"])


def make_hub(**limits: Any) -> Hub:
    return Hub(plugins=[AcmePlugin()], load_entrypoints=False, policy=Policy(**limits))


async def check(hub: Hub, mode: str) -> list[Verified | HubError]:
    values = {"api_key": "hubkey-wire-5b2d9c"}
    if mode == "check_many":
        return await hub.check_many([("acme", values)] * 2, concurrency=2)
    try:
        if mode == "verify":
            return [hub.verify("acme", values)]
        return [await hub.averify("acme", values)]
    except HubError as exc:
        return [exc]


@pytest.fixture
def acme(ca: trustme.CA) -> Iterator[FakeProvider]:
    with FakeProvider(["api.acme.test"], ca=ca) as server:
        yield server


@pytest.fixture
def routes(acme: FakeProvider) -> dict[str, FakeProvider | int]:
    return {"api.acme.test": acme}


@pytest.fixture
def network(
    routes: dict[str, FakeProvider | int], ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ConnectProxy]:
    with ConnectProxy(routes) as proxy, proxy_environment(proxy, ca) as env:
        apply_environment(monkeypatch, env)
        yield proxy


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
@pytest.mark.usefixtures("network")
@pytest.mark.parametrize(
    "applied", [["gzip", "gzip"], ["gzip", "deflate", "gzip"], ["gzip"]], ids="+".join
)
async def test_a_stacked_bomb_is_refused_with_memory_near_the_cap(
    mode: str, acme: FakeProvider, applied: list[str]
) -> None:
    wire = zeros_gzip(256 * MiB)
    header = "gzip"
    for coding in applied[1:]:
        wire, _ = encode(wire, [coding])
        header = f"{header}, {header_name(coding)}"
    headers = {"Content-Type": "application/json", "Content-Encoding": header}
    acme.handler = lambda request: Reply(200, headers, wire, framing="chunked")

    tracemalloc.start()
    try:
        results = await check(make_hub(), mode)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert results
    for result in results:
        assert isinstance(result, UnexpectedResponse), repr(result)
        assert "answered with more than 1024 KiB" in str(result)
    assert peak < 16 * MiB, f"the check took {peak // MiB} MiB"
    assert all("gzip" in r.headers.get("accept-encoding", "") for r in acme.requests)


@pytest.mark.anyio
@pytest.mark.usefixtures("network")
@pytest.mark.parametrize("applied", [["deflate", "gzip"], ["deflate-raw"], ["gzip", "gzip"]])
async def test_a_stacked_answer_reaches_the_flow_decoded(
    mode: str, acme: FakeProvider, applied: list[str]
) -> None:
    wire, header = encode(json.dumps(OK).encode(), applied)
    headers = {"Content-Type": "application/json", "Content-Encoding": header}
    acme.handler = lambda request: Reply(200, headers, wire)

    results = await check(make_hub(), mode)

    assert results == [Verified(identity="user:7", label="Ada Lovelace")] * len(results)


@pytest.mark.anyio
@pytest.mark.usefixtures("network")
@pytest.mark.parametrize(
    ("header", "wire", "expected"),
    [
        ("x-unknown", b'{"id": 7}', "a content coding hub does not read (x-unknown)"),
        ("gzip", b"\x1f\x8b\x08\x00 not gzip at all", "its compressed data is corrupt"),
    ],
    ids=["unknown", "corrupt"],
)
async def test_an_answer_hub_cannot_decode_is_a_clear_unexpected_response(
    mode: str, acme: FakeProvider, header: str, wire: bytes, expected: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": header}
    acme.handler = lambda request: Reply(200, headers, wire)

    results = await check(make_hub(retries=0), mode)

    for result in results:
        assert isinstance(result, UnexpectedResponse), repr(result)
        assert str(result).startswith("Acme answered with a body hub cannot decode")
        assert expected in str(result)
    assert len(acme.requests) == len(results)  # not retried: the answer is wrong, not the net


# --- trickled answers ----------------------------------------------------------------------


class Trickler:
    """A TLS server that answers every request a byte every *interval* seconds, head included."""

    def __init__(self, ca: trustme.CA, answer: bytes, interval: float = 0.05) -> None:
        self.answer = answer
        self.interval = interval
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("api.acme.test").configure_cert(self._context)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self.sent: list[int] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        sent = 0
        try:
            conn.settimeout(5)
            with self._context.wrap_socket(conn, server_side=True) as sock:
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = sock.recv(4096)
                    if not piece:
                        return
                    head += piece
                for byte in self.answer:
                    if self._stopped.wait(self.interval):
                        return
                    sock.sendall(bytes([byte]))
                    sent += 1
        except OSError:
            pass
        finally:
            self.sent.append(sent)

    def close(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()


BODY = json.dumps(OK).encode()
SLOW_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: "
    + b"p" * 200
    + b"\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    + BODY
)
FAST_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["verify", "averify"])
@pytest.mark.parametrize("part", ["head", "body"], ids=["status-line-and-headers", "body"])
async def test_an_answer_trickled_a_byte_at_a_time_ends_at_the_flow_timeout(
    mode: str, part: str, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every byte comes well within the read timeout, so only the flow's deadline can end it.
    answer = SLOW_HEAD if part == "head" else FAST_HEAD + b" " * 2000
    trickler = Trickler(ca, answer)
    interval = trickler.interval
    try:
        with (
            ConnectProxy({"api.acme.test": trickler.port}) as proxy,
            proxy_environment(proxy, ca) as env,
        ):
            apply_environment(monkeypatch, env)
            if part == "body":
                trickler.answer = FAST_HEAD  # the head at once, then the body a byte at a time
                trickler.interval = 0
            hub = make_hub(flow_timeout=1.0, timeout=5.0, retries=0)
            started = time.monotonic()
            if part == "body":
                trickler.answer = answer
                trickler.interval = interval
            [result] = await check(hub, mode)
            elapsed = time.monotonic() - started
    finally:
        trickler.close()

    assert isinstance(result, ProviderUnavailable), repr(result)
    assert result.reason == "timeout"
    assert "did not finish answering within 1 seconds" in str(result)
    assert elapsed < 1.0 + 0.5, f"the check ran {elapsed:.2f} s"
    assert trickler.sent
    assert max(trickler.sent) < len(answer)
