"""The standard answers of a provider (`SCENARIOS`) and the errors a flow may end in after each.

Each scenario builds what the provider's side of the wire does: a response, or the ``httpx``
transport error a real connection raises. The check hands it to the production driver, so
what the driver handles (retries, Retry-After, redirects, transport errors) the driver does,
and the flow sees only what it sees in production.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import httpx

from hub_core.errors import (
    FieldError,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from hub_core.flows import Answer
from hub_core.testing import respond

#: The errors a flow may end in. `PluginError` is not among them: it means the plugin broke.
DOCUMENTED_ERRORS: tuple[type[HubError], ...] = (
    FieldError,
    InvalidCredentials,
    PermissionDenied,
    RateLimited,
    ProviderUnavailable,
    UnexpectedResponse,
)

#: The Retry-After the 429 scenario sends, in seconds.
RETRY_AFTER = 7


@attrs.frozen
class Scenario:
    """One standard answer from a provider, and the errors a flow may end in after it.

    ``wire`` builds what the provider's side does for a request: a response, or the ``httpx``
    transport error a real connection raises, which the core's driver translates. It answers
    every attempt of the request it is injected at (so the driver's retries meet it too),
    unless ``once``: then it answers the first attempt only and the happy path the rest, and
    the scenario needs a happy path. An empty ``expect`` means the flow must end in `Verified`.
    """

    name: str
    description: str
    expect: tuple[type[HubError], ...]
    wire: Callable[[httpx.Request, tuple[str, ...]], Answer]
    retry_after: float | None = None
    #: What to tell the plugin's author when the scenario fails.
    hint: str | None = None
    once: bool = False


def echo(status: int, secrets: tuple[str, ...]) -> dict[str, Any]:
    """An error body quoting the key, as some providers do, in the shapes such bodies take.

    A plugin that quotes the provider is then tested for leaks too.
    """
    key = " ".join(secrets)
    return {
        "error": f"invalid key {key}",
        "message": f"The key {key} was not accepted",
        "detail": key,
        "errors": [
            {"code": f"E{status}", "message": f"key {key}", "title": f"Key {key}", "status": status}
        ],
        "traceId": "conformance-trace",
    }


_PROPAGATE = "let the {} thrown in at the yield propagate"


def _status(
    status: int,
    description: str,
    expect: tuple[type[HubError], ...],
    hint: str,
    headers: Mapping[str, str] | None = None,
) -> Scenario:
    def wire(request: httpx.Request, secrets: tuple[str, ...]) -> Answer:
        return respond(status, json=echo(status, secrets), headers=headers)

    return Scenario(
        name=str(status),
        description=description,
        expect=expect,
        wire=wire,
        retry_after=RETRY_AFTER if status == 429 else None,
        hint=hint,
    )


def _unreachable(name: str, description: str, error: Callable[[httpx.Request], Answer]) -> Scenario:
    # A name that does not resolve may be a mistyped tenant, or no network at all: only an
    # answer proves a tenant does not exist, so it stays ProviderUnavailable (a FieldError
    # would make `hub check` record the key as invalid). The flow may raise its own, with
    # field= naming the likely cause.
    hint = _PROPAGATE.format("ProviderUnavailable")
    if name == "unresolved":
        hint += (
            " (or raise your own ProviderUnavailable with field=; not a FieldError: no "
            "network is not a verdict on the key)"
        )
    return Scenario(
        name=name,
        description=description,
        expect=(ProviderUnavailable,),
        wire=lambda request, secrets: error(request),
        hint=hint,
    )


def _unresolved(request: httpx.Request) -> Answer:
    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    error = httpx.ConnectError(str(cause), request=request)
    error.__cause__ = cause  # as httpx chains it, so the driver's reason is "unresolved"
    return error


def _body(
    name: str, description: str, response: Callable[[], httpx.Response], hint: str
) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        expect=(UnexpectedResponse,),
        wire=lambda request, secrets: response(),
        hint=hint,
    )


def _same_origin_redirect(request: httpx.Request, secrets: tuple[str, ...]) -> Answer:
    # 307 keeps the method and body, so the happy path answers the followed request as it
    # would the first.
    return respond(307, headers={"location": str(request.url)})


_NOT_JSON = "let response.json() raise (the core turns that into UnexpectedResponse) or catch it"

#: The standard answers every flow must turn into the documented errors.
SCENARIOS: tuple[Scenario, ...] = (
    _status(
        401,
        "HTTP 401: the key is wrong, expired or revoked",
        (InvalidCredentials,),
        "a key the provider rejects must raise InvalidCredentials naming the secret field",
    ),
    _status(
        403,
        "HTTP 403: the key is valid but lacks a permission",
        (PermissionDenied,),
        "a valid key without the needed role must raise PermissionDenied",
    ),
    _status(404, "HTTP 404: nothing at that address", DOCUMENTED_ERRORS, "raise a hub_core error"),
    _status(
        429,
        f"HTTP 429 with Retry-After: {RETRY_AFTER}",
        (RateLimited,),
        _PROPAGATE.format("RateLimited"),
        headers={"retry-after": str(RETRY_AFTER)},
    ),
    _status(
        500,
        "HTTP 500: the provider failed",
        (ProviderUnavailable,),
        "a 5xx answer must raise ProviderUnavailable",
    ),
    _status(
        503,
        "HTTP 503: the provider is down",
        (ProviderUnavailable,),
        "a 5xx answer the core has retried must raise ProviderUnavailable",
    ),
    _unreachable(
        "timeout", "a timeout", lambda request: httpx.ReadTimeout("timed out", request=request)
    ),
    _unreachable(
        "connect",
        "a refused connection",
        lambda request: httpx.ConnectError("[Errno 111] Connection refused", request=request),
    ),
    _unreachable("unresolved", "a host name that does not resolve", _unresolved),
    _body(
        "not-json",
        "HTTP 200 with an HTML page instead of JSON",
        lambda: respond(
            200,
            text="<!doctype html><html><body>Please sign in</body></html>",
            headers={"content-type": "text/html; charset=utf-8"},
        ),
        _NOT_JSON,
    ),
    _body(
        "empty",
        "HTTP 200 with an empty body",
        lambda: respond(200, headers={"content-type": "application/json"}),
        _NOT_JSON,
    ),
    _body(
        "wrong-json",
        "HTTP 200 with JSON of another shape",
        lambda: respond(200, json={"unexpected": ["shape"], "data": None}),
        "check the shape of the body and raise UnexpectedResponse when it is not right",
    ),
    Scenario(
        name="redirect-elsewhere",
        description="a redirect to another host",
        expect=(UnexpectedResponse,),
        wire=lambda request, secrets: respond(
            302, headers={"location": "https://login.elsewhere.invalid/sign-in"}
        ),
        hint=_PROPAGATE.format("UnexpectedResponse"),
    ),
    Scenario(
        name="redirect-same-origin",
        description="a 307 redirect to the same address, then the happy answer",
        expect=(),
        wire=_same_origin_redirect,
        hint="the core follows the redirect: treat the response as the answer to the request",
        once=True,
    ),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
#: The scenarios injected at each later request of a multi-request happy path.
LATER = ("401", "429", "500", "timeout", "not-json", "empty")
