"""fake_elastic.py's server, also counting the requests of each key: the distributed section's.

``python bench/counting_elastic.py HOST PORT CERT KEY``: the same app under the same uvicorn
settings (fake_elastic.main), with one counter per bench key (``essu_bench_000042`` → key 42)
in a bytearray, so a million keys cost a megabyte and no dict. Two control paths, which no
client of the bench asks for:

- ``GET /_bench/reset?keys=N``: count keys 0 to N − 1 afresh (every counter back to 0);
- ``GET /_bench/counts``: one JSON object: ``requests`` (organization requests since the
  reset), ``keys`` (N), ``missing`` (keys never asked for), ``repeated`` (keys asked for more
  than once), ``most`` (the most requests of one key, at most 255) and ``outside`` (requests
  for a key outside 0 to N − 1, or none).

Counting is a header scan and a bytearray increment per request: a few hundred nanoseconds
beside the TLS and HTTP work the server does anyway.
"""

from __future__ import annotations

import json
import sys
import urllib.parse

import fake_elastic
from fake_elastic import PATH, Receive, Scope, Send

_answer = fake_elastic.app
_counts = bytearray()
_totals = {"requests": 0, "outside": 0}
_PREFIX_LENGTH = len(fake_elastic.KEY_PREFIX)


def _count(scope: Scope) -> None:
    _totals["requests"] += 1
    for name, value in scope["headers"]:
        if name == b"authorization":
            digits = value[_PREFIX_LENGTH:]
            if value.startswith(fake_elastic.KEY_PREFIX) and digits.isdigit():
                number = int(digits)
                if number < len(_counts):
                    if _counts[number] < 255:
                        _counts[number] += 1
                    return
            break
    _totals["outside"] += 1


def _control(scope: Scope) -> bytes:
    global _counts
    if scope["path"] == "/_bench/reset":
        query = urllib.parse.parse_qs(scope["query_string"].decode("ascii"))
        _counts = bytearray(int(query["keys"][0]))
        _totals.update(requests=0, outside=0)
        return b'{"reset":true}'
    missing = _counts.count(0)
    return json.dumps(
        {
            **_totals,
            "keys": len(_counts),
            "missing": missing,
            "repeated": len(_counts) - missing - _counts.count(1),
            "most": max(_counts, default=0),
        }
    ).encode("ascii")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Count the request's key, then answer as fake_elastic.app does; or a control path."""
    if scope["type"] == "http" and scope["path"].startswith("/_bench/"):
        body = _control(scope)
        headers = [*fake_elastic.JSON_HEADERS, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] == "http" and scope["path"] == PATH:
        _count(scope)
    await _answer(scope, receive, send)


if __name__ == "__main__":
    # fake_elastic.main serves the module's `app`: this one, under the same settings.
    fake_elastic.app = app
    fake_elastic.main(sys.argv[1:])
