"""Helpers for testing provider plugins: scripted flows, sample inputs, secret checks; no network.

    from hub_core.testing import CANARY, drive, respond, sample_credentials

    credentials = sample_credentials(provider)            # the secret field holds CANARY
    run = drive(verify(credentials), [respond(200, json={"organizations": [...]})])
    assert run.result.identity == "org:1"
    assert run.requests[0].headers["Authorization"] == f"ApiKey {CANARY}"
    assert run.hosts == ["api.elastic-cloud.com"]

`drive` runs the generator directly, as the flow's protocol logic sees it; `drive_error` runs
it to the error it must end in. To test a plugin under the core's full driver (allowlist,
redirects, retries, caps, redaction), use `mock_hub(plugin, responder)`. The whole contract
is checked at once by `hub_core.testing.conformance.check_plugin`.

Importing this module does not import httpx: the pytest plugin of hub-core imports it at
pytest startup, which must stay cheap.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from hub_core.errors import MIN_REDACTED_LENGTH, HubError
from hub_core.fields import validate_field, validate_values
from hub_core.hookspecs import Flow
from hub_core.model import Account, Credentials, Field, Provider, Status, Verified

if TYPE_CHECKING:
    import httpx

    from hub_core.hub import Hub

__all__ = [
    "CANARY",
    "LEAK_WINDOW",
    "FlowFailure",
    "FlowRun",
    "Responder",
    "Routes",
    "UnusedResponses",
    "assert_no_secret",
    "drive",
    "drive_error",
    "exposed_text",
    "find_secret",
    "mock_hub",
    "respond",
    "sample_account",
    "sample_credentials",
    "sample_values",
]

#: The secret the sample credentials carry: letters and digits only, so it fits most key
#: formats. Any run of `LEAK_WINDOW` of its characters in a message, repr or log is a leak.
CANARY = "hubcanary0SECRET0d1e2a3d4b5e6c7f"

#: How many consecutive characters copied from a secret count as leaking it.
LEAK_WINDOW = 16

#: Answers a flow's request: a response, or an exception to throw into the flow at its yield.
Responder: TypeAlias = "Callable[[httpx.Request], httpx.Response | BaseException]"


# --- scripted responses --------------------------------------------------------------------


def respond(
    status_code: int = 200,
    *,
    json: Any = None,
    text: str | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Build a scripted response; *json* is serialised with a JSON content type."""
    import httpx

    if json is not None:
        content = _json.dumps(json).encode()
        headers = {"content-type": "application/json", **(headers or {})}
    elif text is not None:
        content = text.encode()
    return httpx.Response(status_code, headers=headers, content=content or b"")


def _copy(response: httpx.Response) -> httpx.Response:
    """A fresh response with the same status, headers and body, so one script serves many runs."""
    import httpx

    return httpx.Response(
        response.status_code, headers=response.headers.multi_items(), content=response.content
    )


class Routes:
    """A scripted provider: answers each request by method and path, and records it.

    *routes* maps ``"GET /v1/me"`` (any host) or ``"GET https://api.acme.com/v1/me"`` (that
    host only) to a response, or to a function from request to response. A request no route
    matches gets *default* (a 404) and is also listed in ``unmatched``. A `Routes` is a
    `Responder`: pass it to `drive`, to `mock_hub`, or as the happy path of the conformance
    check. The same object can answer many runs: every response is copied.
    """

    def __init__(
        self,
        routes: Mapping[str, httpx.Response | Callable[[httpx.Request], httpx.Response]],
        *,
        default: httpx.Response | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.default = default
        #: Every request answered, in order.
        self.requests: list[httpx.Request] = []
        #: The requests no route matched.
        self.unmatched: list[httpx.Request] = []

    def __repr__(self) -> str:
        return f"Routes({sorted(self.routes)})"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = request.url
        keys = (
            f"{request.method} {url.scheme}://{url.host}{url.path}",
            f"{request.method} {url.path}",
        )
        for key in keys:
            if key in self.routes:
                route = self.routes[key]
                return _copy(route) if not callable(route) else route(request)
        self.unmatched.append(request)
        if self.default is not None:
            return _copy(self.default)
        return respond(404, json={"error": f"no scripted route for {keys[1]}"})


def mock_hub(plugin: object, responder: Responder, **options: Any) -> Hub:
    """A `Hub` with only *plugin*, whose HTTP goes to *responder* (``httpx.MockTransport``).

    The flow then runs under the core's real driver: host allowlist, redirects, retries,
    Retry-After, body caps, secret redaction. A responder may return an exception (say
    ``httpx.ConnectTimeout("...")``) to simulate a transport failure. *options* are `Policy`
    fields; by default there are no retries and no backoff, so a script answers each request once.
    """
    import httpx

    from hub_core.hub import Hub
    from hub_core.policy import Policy

    def handler(request: httpx.Request) -> httpx.Response:
        answer = responder(request)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    policy = attrs.evolve(Policy(retries=0, backoff=0.0), **options)
    return Hub(
        plugins=[plugin],
        load_entrypoints=False,
        transport=httpx.MockTransport(handler),
        policy=policy,
    )


# --- driving a flow --------------------------------------------------------------------------


@attrs.define
class FlowRun:
    """What one driven flow did: the requests it yielded and the `Verified` it returned."""

    requests: list[httpx.Request]
    result: Verified

    @property
    def urls(self) -> list[str]:
        """The URL of each request, in order."""
        return [str(request.url) for request in self.requests]

    @property
    def hosts(self) -> list[str]:
        """The host of each request, in order."""
        return [request.url.host for request in self.requests]


@attrs.define
class FlowFailure:
    """A flow that ended in an error: the requests it yielded and the error it raised."""

    requests: list[httpx.Request]
    error: HubError

    @property
    def urls(self) -> list[str]:
        """The URL of each request, in order."""
        return [str(request.url) for request in self.requests]


class UnusedResponses(AssertionError):
    """The flow finished before consuming every scripted response."""


def _answerer(
    responses: Iterable[httpx.Response | BaseException] | Responder,
) -> tuple[Responder, list[httpx.Response | BaseException] | None]:
    if callable(responses):
        return responses, None
    queue = list(responses)

    def answer(request: httpx.Request) -> httpx.Response | BaseException:
        if not queue:
            raise AssertionError(f"no scripted response left for {request.method} {request.url}")
        return queue.pop(0)

    return answer, queue


def _run(flow: Flow, answer: Responder, requests: list[httpx.Request]) -> object:
    """Drive *flow* to its end; return what it returned (errors it raises propagate)."""
    import httpx

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
        return stop.value
    finally:
        flow.close()


def drive(flow: Flow, responses: Iterable[httpx.Response | BaseException] | Responder) -> FlowRun:
    """Run *flow* to its end, answering each request it yields.

    *responses* is either a sequence answered in order or a function from request to
    response. An exception in their place (say ``ProviderUnavailable("...", reason=
    "unresolved")``) is thrown into the flow at that ``yield``, as the core's driver does when
    no response can be had. Errors the flow raises propagate unchanged; when a list runs out,
    the test fails with the request that had no answer. Each request is attached to its
    response.
    """
    answer, queue = _answerer(responses)
    requests: list[httpx.Request] = []
    result = _run(flow, answer, requests)
    if queue:
        raise UnusedResponses(f"{len(queue)} scripted response(s) were not used")
    if not isinstance(result, Verified):
        raise AssertionError(f"flow returned {result!r}, not Verified")
    return FlowRun(requests=requests, result=result)


def drive_error(
    flow: Flow,
    responses: Iterable[httpx.Response | BaseException] | Responder,
    expected: type[HubError] | tuple[type[HubError], ...] = HubError,
) -> FlowFailure:
    """Run *flow*, which must end in an *expected* error; return the error and the requests.

    The test fails (AssertionError) when the flow returns instead, or raises anything else:
    that exception is chained, so its traceback shows where.
    """
    answer, queue = _answerer(responses)
    requests: list[httpx.Request] = []
    try:
        result = _run(flow, answer, requests)
    except expected as exc:
        if queue:
            raise UnusedResponses(f"{len(queue)} scripted response(s) were not used") from exc
        return FlowFailure(requests=requests, error=exc)
    except Exception as exc:
        raise AssertionError(
            f"flow raised {type(exc).__name__}: {exc}, not {_names(expected)}"
        ) from exc
    raise AssertionError(f"flow returned {result!r} instead of raising {_names(expected)}")


def _names(expected: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(kind.__name__ for kind in kinds)


# --- sample inputs -----------------------------------------------------------------------------


def _fits(field: Field, value: str | None) -> bool:
    if not value or "…" in value or "..." in value:
        return False
    try:
        return validate_field(field, value) == value
    except HubError:
        return False


def _sample_value(field: Field) -> str:
    if field.secret:
        return CANARY
    if field.default is not None:
        return field.default
    if field.kind == "choice":
        return field.choices[0].value
    fallback = "https://example.com" if field.kind == "url" else "example"
    if _fits(field, field.placeholder):
        return field.placeholder or fallback
    return fallback


def sample_values(provider: Provider, **overrides: str) -> dict[str, str]:
    """Plausible values for every field of *provider*, as a person would type them.

    Secret fields hold `CANARY`; other fields take, in order, the override, the field's
    default, its first choice, its placeholder when that is a valid value, or
    ``https://example.com`` (url) / ``example`` (text). Pass *overrides* where the schema
    cannot tell (a tenant name with a pattern, a key with a fixed prefix: ``api_key=f"essu_
    {CANARY}"``). An override naming no field raises ValueError.
    """
    names = [field.name for field in provider.fields]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"{provider.name} has no field {', '.join(map(repr, unknown))}")
    return {
        field.name: overrides[field.name] if field.name in overrides else _sample_value(field)
        for field in provider.fields
    }


def sample_credentials(provider: Provider, **overrides: str) -> Credentials:
    """The `sample_values` of *provider*, validated as the core validates a submission.

    Raise `hub_core.FieldError` when they do not pass: pass *overrides* for those fields.
    """
    return validate_values(provider, sample_values(provider, **overrides))


def sample_account(
    provider: Provider,
    verified: Verified | None = None,
    *,
    values: Mapping[str, str] | None = None,
    status: Status | str = Status.ACTIVE,
    now: datetime | None = None,
) -> Account:
    """A linked `Account` of *provider*, as the store would hold it after a check.

    ``config`` holds the non-secret sample values (override them with *values*), updated with
    *verified*'s ``config``; identity, label, expiry and details come from *verified* when
    given, so the account display sees what a real check stored.
    """
    credentials = sample_credentials(provider, **dict(values or {}))
    config = credentials.public()
    if verified is not None:
        # As the store does: the flow's normalised values replace what was typed, for
        # non-secret fields only.
        plain = {field.name for field in provider.fields if not field.secret}
        config.update({k: v for k, v in verified.config.items() if k in plain and v})
    when = now or datetime.now(UTC)
    return Account(
        id=f"sample-{provider.id}",
        provider_id=provider.id,
        identity=verified.identity if verified else f"sample:{provider.id}",
        label=verified.label if verified else f"Sample {provider.name} account",
        status=Status(status),
        config=config,
        linked_at=when,
        checked_at=when,
        expires_at=verified.expires_at if verified else None,
        last_error=None,
        details=verified.details if verified else {},
    )


# --- secrets ---------------------------------------------------------------------------------


def find_secret(text: str, secrets: Iterable[str], window: int = LEAK_WINDOW) -> str | None:
    """Return the piece of a secret that *text* contains, or None.

    A secret leaks when it appears whole, or when any *window* consecutive characters of it
    do (a key cut short is still a key). Secrets shorter than the core's redaction minimum are
    ignored: they cannot be told apart from ordinary words.
    """
    for secret in secrets:
        if len(secret) < MIN_REDACTED_LENGTH:
            continue
        if secret in text:
            return secret
        for start in range(len(secret) - window + 1):
            piece = secret[start : start + window]
            if piece in text:
                return piece
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def exposed_text(value: object) -> str:
    """Every piece of text *value* shows a person or a log: str, repr and, for an exception,
    its args, notes, per-field messages and the exceptions chained to it."""
    if not isinstance(value, BaseException):
        return f"{value}\n{value!r}"
    texts: list[str] = []
    for error in _chain(value):
        texts += [str(error), repr(error)]
        texts += [str(arg) for arg in error.args]
        texts += [str(note) for note in getattr(error, "__notes__", ())]
        errors = getattr(error, "errors", None)
        if isinstance(errors, Mapping):
            texts += [str(message) for message in errors.values()]
    return "\n".join(texts)


def assert_no_secret(value: object, secrets: Iterable[str] = (CANARY,)) -> None:
    """Fail (AssertionError) when *value*'s `exposed_text` holds any piece of a secret."""
    text = exposed_text(value)
    leaked = find_secret(text, tuple(secrets))
    if leaked is not None:
        raise AssertionError(f"a secret ({leaked!r}) appears in {type(value).__name__}: {text}")
