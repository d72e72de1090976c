"""One run of the bulk benchmark, in a fresh process: N key checks at a fixed concurrency.

``python bench/bulk_client.py CLIENT COUNT CONCURRENCY`` with CLIENT one of

- ``hub``: ``Hub().check_many()`` with the installed hub-elastic plugin, the product's default
  async transport, proxies and CA bundle from the environment, exactly as a host app uses it;
- ``aiohttp``: a raw ``aiohttp.ClientSession`` (``TCPConnector(limit=CONCURRENCY)``);
- ``httpx``: a raw ``httpx.AsyncClient`` (``max_connections=CONCURRENCY``), httpx's own pool.

All three send the same request (``GET https://api.elastic-cloud.com/api/v1/organizations``
with ``Authorization: ApiKey essu_bench_<n>``) to the same server over the same route (see
resolver/sitecustomize.py), with COUNT requests spread over CONCURRENCY workers pulling from
one queue, the way ``check_many`` schedules its checks. Each answer is checked: status 200 and
the organization of that very key. The raw clients trust the same CA through the same
``SSL_CERT_FILE``.

The timed span is opening the client, every check, and closing the client; imports and the
construction of the inputs happen before it. Prints one JSON object: the counts, the seconds,
this process's CPU seconds over the span, and its peak RSS (``VmHWM``) at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

HOST = "api.elastic-cloud.com"
URL = f"https://{HOST}/api/v1/organizations"


def key(number: int) -> str:
    """The bench key numbered *number*; the fake server answers organization *number*."""
    return f"essu_bench_{number:06d}"


def vm_status(field: str) -> int:
    """A ``VmHWM``/``VmRSS``-style field of /proc/self/status, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def _ca_file() -> str:
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        raise SystemExit("SSL_CERT_FILE must name the bench CA's certificate")
    return path


def _expect(number: int, status: int, body: bytes) -> str | None:
    """None when the answer is the organization of key *number*, else what is wrong."""
    if status != 200:
        return f"HTTP {status}"
    organizations = json.loads(body)["organizations"]
    if organizations[0]["id"] != str(number):
        return f"organization {organizations[0]['id']} for key {number}"
    return None


async def _workers(
    count: int, concurrency: int, one: Callable[[int], Awaitable[str | None]]
) -> list[str]:
    pending: Iterator[int] = iter(range(count))
    failures: list[str] = []

    async def worker() -> None:
        for number in pending:
            try:
                problem = await one(number)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                failures.append(problem)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


async def run_aiohttp(count: int, concurrency: int) -> list[str]:
    import ssl

    import aiohttp

    context = ssl.create_default_context(cafile=_ca_file())
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(number: int) -> str | None:
            headers = {"Authorization": f"ApiKey {key(number)}", "Accept": "application/json"}
            async with session.get(URL, headers=headers) as response:
                return _expect(number, response.status, await response.read())

        return await _workers(count, concurrency, one)


async def run_httpx(count: int, concurrency: int) -> list[str]:
    import ssl

    import httpx

    context = ssl.create_default_context(cafile=_ca_file())
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(verify=context, limits=limits, trust_env=False) as client:

        async def one(number: int) -> str | None:
            headers = {"Authorization": f"ApiKey {key(number)}", "Accept": "application/json"}
            response = await client.get(URL, headers=headers)
            return _expect(number, response.status_code, response.content)

        return await _workers(count, concurrency, one)


async def run_httpx_aiohttp(count: int, concurrency: int) -> list[str]:
    import httpx
    from httpx_aiohttp import HttpxAiohttpClient

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with HttpxAiohttpClient(verify=_ca_file(), limits=limits, trust_env=False) as client:

        async def one(number: int) -> str | None:
            headers = {"Authorization": f"ApiKey {key(number)}", "Accept": "application/json"}
            response = await client.get(URL, headers=headers)
            return _expect(number, response.status_code, response.content)

        return await _workers(count, concurrency, one)


async def run_aiohttp_transport(count: int, concurrency: int) -> list[str]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = AiohttpTransport(verify=_ca_file(), limits=limits, trust_env=False)
    async with transport:

        async def one(number: int) -> str | None:
            headers = {"Authorization": f"ApiKey {key(number)}", "Accept": "application/json"}
            request = httpx.Request("GET", URL, headers=headers)
            response = await transport.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            return _expect(number, response.status_code, body)

        return await _workers(count, concurrency, one)


def hub_runner() -> Callable[[int, int], Awaitable[list[str]]]:
    """Build the Hub (plugin discovery) outside the timed span; return the timed part."""
    from hub_core import Hub, Verified

    hub = Hub()
    hub.provider("elastic")  # fail early when hub-elastic is not installed

    async def run_hub(count: int, concurrency: int) -> list[str]:
        items = [("elastic", {"api_key": key(number)}) for number in range(count)]
        results = await hub.check_many(items, concurrency=concurrency)
        failures: list[str] = []
        for number, result in enumerate(results):
            if not isinstance(result, Verified):
                failures.append(f"{type(result).__name__}: {result}")
            elif result.identity != f"org:{number}":
                failures.append(f"identity {result.identity} for key {number}")
        return failures

    return run_hub


def main(argv: list[str]) -> None:
    client, count_text, concurrency_text = argv
    count, concurrency = int(count_text), int(concurrency_text)
    runners: dict[str, Callable[[], Callable[[int, int], Awaitable[list[str]]]]] = {
        "hub": hub_runner,
        "aiohttp": lambda: run_aiohttp,
        "httpx": lambda: run_httpx,
        "httpx-aiohttp": lambda: run_httpx_aiohttp,
        "aiohttp-transport": lambda: run_aiohttp_transport,
    }
    run = runners[client]()
    rss_before = vm_status("VmRSS")
    outcome: dict[str, Any] = {}

    async def timed() -> None:
        cpu, started = time.process_time(), time.perf_counter()
        failures = await run(count, concurrency)
        outcome["seconds"] = time.perf_counter() - started
        outcome["cpu_seconds"] = time.process_time() - cpu
        outcome["failures"] = len(failures)
        outcome["failure_examples"] = sorted(set(failures))[:3]

    asyncio.run(timed())
    outcome.update(
        client=client,
        count=count,
        concurrency=concurrency,
        ok=count - outcome["failures"],
        rss_before_kib=rss_before,
        peak_rss_kib=vm_status("VmHWM"),
    )
    print(json.dumps(outcome))


if __name__ == "__main__":
    main(sys.argv[1:])
