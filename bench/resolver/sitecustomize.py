"""Name resolution for the bulk benchmark: the provider's real host name → a loopback address.

`bulk.py` puts this directory on ``PYTHONPATH`` of every bulk process (the three clients and
``hub check``), with ``HUB_BENCH_HOSTS=api.elastic-cloud.com=127.0.0.1``. Python imports
``sitecustomize`` at start-up, and this one wraps `socket.getaddrinfo` so that those names
resolve to that address, like an ``/etc/hosts`` line would. Every client resolves through
`socket.getaddrinfo` (asyncio's ``loop.getaddrinfo``, aiohttp's threaded resolver, anyio), so
all of them take the same route; the product is not changed or configured in any way, and the
port stays 443, which the fake provider listens on.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def _install(spec: str) -> None:
    hosts: dict[str, str] = {}
    for item in spec.split(","):
        name, _, address = item.partition("=")
        if name.strip() and address.strip():
            hosts[name.strip().lower()] = address.strip()
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if isinstance(name, str) and name.lower().rstrip(".") in hosts:
            host = hosts[name.lower().rstrip(".")]
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


if os.environ.get("HUB_BENCH_HOSTS"):
    _install(os.environ["HUB_BENCH_HOSTS"])
