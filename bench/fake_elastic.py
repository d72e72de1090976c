"""The fake Elastic Cloud API of the bulk benchmark: uvicorn + httptools + uvloop, over TLS.

Run by `bulk.py` in a process of its own (``python bench/fake_elastic.py HOST PORT CERT KEY``).
``GET /api/v1/organizations`` answers what Elastic Cloud answers for a valid key: one
organization, whose id is the key's number (key ``essu_bench_000042`` → organization ``42``),
so every client can check that each answer belongs to its own request. Anything else is 404.

The app is a bare ASGI callable (no framework), so that the server spends as little CPU per
request as uvicorn allows; `bulk.py` measures this process's CPU time to show it was not the
bottleneck.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/api/v1/organizations"
KEY_PREFIX = b"ApiKey essu_bench_"
JSON_HEADERS = [(b"content-type", b"application/json")]


def organization_body(number: bytes) -> bytes:
    """The JSON body for the key numbered *number* (ASCII digits)."""
    return b'{"organizations":[{"id":"%s","name":"Bench org %s"}]}' % (number, number)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer the organizations request of Elastic Cloud's API."""
    if scope["type"] != "http":  # lifespan is off; nothing else is expected
        return
    authorization = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
            break
    if scope["path"] == PATH and authorization.startswith(KEY_PREFIX):
        status = 200
        body = organization_body(authorization[len(KEY_PREFIX) :].lstrip(b"0") or b"0")
    elif scope["path"] == PATH:
        status = 401
        body = b'{"errors":[{"code":"root.unauthenticated","message":"bad key"}]}'
    else:
        status = 404
        body = b'{"errors":[{"code":"not_found","message":"no such path"}]}'
    headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str]) -> None:
    host, port, certfile, keyfile = argv
    uvicorn.run(
        app,
        host=host,
        port=int(port),
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=1024,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
