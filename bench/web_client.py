"""One load run of the web benchmark, in a fresh process: COUNT GETs of one page.

``python bench/web_client.py URL COUNT CONCURRENCY EXPECT`` sends COUNT ``GET URL`` over
CONCURRENCY keep-alive connections (``aiohttp.ClientSession``, ``TCPConnector(limit=...)``),
CONCURRENCY workers pulling from one counter. Each answer must be 200 and contain EXPECT;
the cookie in ``HUB_BENCH_COOKIE`` (the signed-in session, for hub's server) goes with every
request. The span timed is every request, after one untimed request per connection has opened
the pool. Prints one JSON object: counts, seconds, this process's CPU seconds, and the
latencies (median, p90, p99, in seconds).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any


async def run(url: str, count: int, concurrency: int, expect: bytes) -> dict[str, Any]:
    import aiohttp

    headers = {"Accept": "text/html"}
    cookie = os.environ.get("HUB_BENCH_COOKIE")
    if cookie:
        headers["Cookie"] = cookie
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    latencies: list[float] = []
    failures: list[str] = []
    sizes: list[int] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> None:
            started = time.perf_counter()
            async with session.get(url, allow_redirects=False) as response:
                body = await response.read()
            latencies.append(time.perf_counter() - started)
            sizes.append(len(body))
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
            elif expect not in body:
                failures.append(f"no {expect!r} in the page")

        # Open every connection before the clock starts.
        await asyncio.gather(*(one() for _ in range(concurrency)))
        latencies.clear()
        sizes.clear()
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await one()

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "url": url,
        "count": count,
        "concurrency": concurrency,
        "ok": count - len(failures),
        "failures": len(failures),
        "failure_examples": sorted(set(failures))[:3],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "median_s": statistics.median(ordered),
        "p90_s": quantile(0.9),
        "p99_s": quantile(0.99),
        "bytes": round(statistics.mean(sizes)),
    }


def main(argv: list[str]) -> None:
    url, count, concurrency, expect = argv
    report = asyncio.run(run(url, int(count), int(concurrency), expect.encode()))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
