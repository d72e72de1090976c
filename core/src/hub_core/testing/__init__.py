"""Helpers for testing provider plugins: drive a flow with scripted responses, no network.

    from hub_core.testing import drive, respond

    run = drive(flow, [respond(200, json={"organizations": [...]})])
    assert run.result.identity == "org:1"
    assert run.requests[0].headers["Authorization"] == "ApiKey essu_..."

This drives the generator directly, as the flow's protocol logic sees it. To test a plugin
under the core's full driver (allowlist, redirects, retries, caps), use
`hub_core.Hub(plugins=[module], load_entrypoints=False, transport=httpx.MockTransport(...))`.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import httpx

from hub_core.hookspecs import Flow
from hub_core.model import Verified

__all__ = ["FlowRun", "drive", "respond"]

Responder = Callable[[httpx.Request], httpx.Response | BaseException]


def respond(
    status_code: int = 200,
    *,
    json: Any = None,
    text: str | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Build a scripted response; *json* is serialised with a JSON content type."""
    if json is not None:
        content = _json.dumps(json).encode()
        headers = {"content-type": "application/json", **(headers or {})}
    elif text is not None:
        content = text.encode()
    return httpx.Response(status_code, headers=headers, content=content or b"")


@attrs.define
class FlowRun:
    """What one driven flow did: the requests it yielded and the `Verified` it returned."""

    requests: list[httpx.Request]
    result: Verified


class UnusedResponses(AssertionError):
    """The flow finished before consuming every scripted response."""


def drive(flow: Flow, responses: Iterable[httpx.Response | BaseException] | Responder) -> FlowRun:
    """Run *flow* to its end, answering each request it yields.

    *responses* is either a sequence answered in order or a function from request to
    response. An exception in their place (say ``ProviderUnavailable("...", reason=
    "unresolved")``) is thrown into the flow at that ``yield``, as the core's driver does when
    no response can be had. Errors the flow raises propagate unchanged; when a list runs out,
    the test fails with the request that had no answer. Each request is attached to its
    response.
    """
    requests: list[httpx.Request] = []
    if callable(responses):
        answer: Responder = responses
    else:
        queue = list(responses)

        def answer(request: httpx.Request) -> httpx.Response | BaseException:
            if not queue:
                raise AssertionError(
                    f"no scripted response left for {request.method} {request.url}"
                )
            return queue.pop(0)

    try:
        request = next(flow)
        while True:
            if not isinstance(request, httpx.Request):
                raise AssertionError(f"flow yielded {type(request).__name__}, not httpx.Request")
            requests.append(request)
            response = answer(request)
            if isinstance(response, BaseException):
                request = flow.throw(response)
                continue
            response.request = request
            request = flow.send(response)
    except StopIteration as stop:
        result = stop.value
    finally:
        flow.close()
    if not callable(responses) and queue:
        raise UnusedResponses(f"{len(queue)} scripted response(s) were not used")
    if not isinstance(result, Verified):
        raise AssertionError(f"flow returned {result!r}, not Verified")
    return FlowRun(requests=requests, result=result)
