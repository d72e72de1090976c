"""Helpers for testing provider plugins: scripted flows, sample inputs, secret checks; no network.

    from hub_core.testing import CANARY, drive, respond, sample_credentials

    credentials = sample_credentials(provider)            # the secret field holds CANARY
    run = drive(verify(credentials), [respond(200, json={...})], provider=provider)
    assert run.result.identity == "org:1"
    assert run.requests[0].headers["Authorization"] == f"ApiKey {CANARY}"
    assert run.hosts == ["api.elastic-cloud.com"]

`drive` runs the flow under the core's own driver, as `Hub.verify` does (host allowlist,
redirects, retries, Retry-After, body cap), with scripted answers in place of the network and
waits that take no time; `drive_error` runs it to the error it must end in. `drive_raw` hands
a flow raw responses with no driver in between, to unit-test one branch by hand.
`mock_hub(plugin, responder)` is a whole `Hub` over ``httpx.MockTransport``. The whole contract
is checked at once by `hub_core.testing.conformance.check_plugin`.

Importing this module does not import httpx: the pytest plugin of hub-core imports it at
pytest startup, which must stay cheap.
"""

from __future__ import annotations

import json as _json
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import attrs

from hub_core.errors import KEY_PIECE, HubError, PluginError, describe, redactor
from hub_core.fields import validate_field, validate_values
from hub_core.hookspecs import Flow
from hub_core.model import Account, Credentials, Field, Provider, Status, Verified

if TYPE_CHECKING:
    import httpx

    from hub_core.hub import Hub
    from hub_core.policy import Policy

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
    "drive_raw",
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
LEAK_WINDOW = KEY_PIECE

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
        given = httpx.Headers(headers or {})
        given.setdefault("content-type", "application/json")  # one, the caller's if given
        headers = given
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


def mock_hub(
    plugin: object, responder: Responder, *, policy: Policy | None = None, **options: Any
) -> Hub:
    """A `Hub` with only *plugin*, whose HTTP goes to *responder* (``httpx.MockTransport``).

    The flow then runs under the core's real driver and its real sync runner: host allowlist,
    redirects, retries, Retry-After (a real wait: keep it short), body caps, secret redaction.
    A responder may return an exception (say ``httpx.ConnectTimeout("...")``) to simulate a
    transport failure. *policy* sets the limits; *options* change single `Policy` fields of
    the default, which has no retries and no backoff, so a script answers each request once.
    """
    import httpx

    from hub_core.hub import Hub
    from hub_core.policy import Policy

    def handler(request: httpx.Request) -> httpx.Response:
        answer = responder(request)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    policy = attrs.evolve(policy or Policy(retries=0, backoff=0.0), **options)
    return Hub(
        plugins=[plugin],
        load_entrypoints=False,
        transport=httpx.MockTransport(handler),
        policy=policy,
    )


# --- driving a flow --------------------------------------------------------------------------


@attrs.define
class FlowRun:
    """What one driven flow did: the requests sent, the waits, and the `Verified` it returned."""

    requests: list[httpx.Request]
    result: Verified
    #: Each wait of the driver, in seconds (a Retry-After, a backoff); none took real time.
    waits: list[float] = attrs.Factory(list)

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
    """A flow that ended in an error: the requests sent, the waits, and the error it ended in."""

    requests: list[httpx.Request]
    error: HubError
    waits: list[float] = attrs.Factory(list)

    @property
    def urls(self) -> list[str]:
        """The URL of each request, in order."""
        return [str(request.url) for request in self.requests]


class UnusedResponses(AssertionError):
    """The flow finished before consuming every scripted response."""


Script: TypeAlias = "Iterable[httpx.Response | BaseException] | Responder"


def _answerer(
    responses: Script,
) -> tuple[Responder, list[httpx.Response | BaseException] | None]:
    if callable(responses):
        import httpx

        responder = responses

        def checked(request: httpx.Request) -> httpx.Response | BaseException:
            answer = responder(request)
            if not isinstance(answer, httpx.Response | BaseException):
                raise AssertionError(
                    f"the responder answered {request.method} {request.url} with "
                    f"{type(answer).__name__}, not an httpx.Response (a missing return?)"
                )
            return answer

        return checked, None
    queue = list(responses)

    def answer(request: httpx.Request) -> httpx.Response | BaseException:
        if not queue:
            raise AssertionError(f"no scripted response left for {request.method} {request.url}")
        return queue.pop(0)

    return answer, queue


class _AnyHost:
    """Stands in for the provider of a `drive` call that names none: every host is allowed."""

    id = "unnamed"
    name = "the provider"
    hosts = ("any host",)

    @staticmethod
    def allows_host(host: str) -> bool:
        return True


@attrs.define
class _Driven:
    """One run of a flow under the production driver: what was sent, waited and ended in."""

    queue: list[httpx.Response | BaseException] | None
    requests: list[httpx.Request] = attrs.Factory(list)
    waits: list[float] = attrs.Factory(list)
    result: Any = None
    error: Exception | None = None


def _driven(
    flow: Flow,
    responses: Script,
    provider: Provider | None,
    policy: Policy | None,
    secrets: Iterable[str],
    caller: str,
) -> _Driven:
    """Run *flow* under the production driver against *responses*, catching how it ends."""
    from hub_core.flows import drive as production_drive
    from hub_core.flows import run_scripted
    from hub_core.policy import Policy

    _check_flow(flow, caller)
    if provider is None:
        warnings.warn(
            f"{caller}() without provider= lets the flow reach any host; pass the provider "
            "so its hosts are checked as in production (provider= is required from 0.3)",
            DeprecationWarning,
            stacklevel=3,
        )
        provider = cast("Provider", _AnyHost())
    policy = policy or Policy()
    answer, queue = _answerer(responses)
    run = _Driven(queue=queue)

    def recorded(request: httpx.Request) -> httpx.Response | BaseException:
        run.requests.append(request)
        return answer(request)

    driver = production_drive(policy, provider, provider.id, flow, _secret_list(secrets))
    try:
        run.result = run_scripted(driver, recorded, provider, policy, on_wait=run.waits.append)
    except Exception as exc:
        run.error = exc
    return run


def _check_flow(flow: object, caller: str) -> None:
    """Refuse what is not a flow generator, as `Hub` refuses it from a plugin."""
    if not isinstance(flow, Generator):
        raise TypeError(
            f"{caller}() was given {type(flow).__name__}, not a flow generator: a flow "
            "function yields its requests (call it, and give what it returns)"
        )


def _secret_list(secrets: Iterable[str] | str) -> tuple[str, ...]:
    """*secrets* as a tuple of secrets: one string is one secret, not its characters."""
    return (secrets,) if isinstance(secrets, str) else tuple(secrets)


def drive(
    flow: Flow,
    responses: Script,
    *,
    provider: Provider | None = None,
    policy: Policy | None = None,
    secrets: Iterable[str] | str = (CANARY,),
) -> FlowRun:
    """Run *flow* to its end under the core's own driver, answering each request it sends.

    The flow sees exactly what it sees in production: a 429 is waited out and retried (then
    `RateLimited`), a 502/503/504 on GET retried, a redirect followed within the same origin
    or refused, a body over the cap refused, a request to a host *provider* does not declare
    refused with `PluginError`. Waits take no time (`FlowRun.waits` lists them). *policy*
    (default: production's `hub_core.Policy()`) sets the retries and limits, so a script must
    answer every attempt: three 503s for one request that keeps failing, or pass
    ``Policy(retries=0)``. *secrets* (default: `CANARY`, the key `sample_credentials` gives)
    are masked in any error and refused in a request's address, as `Hub` does with the key.

    *responses* is a sequence answered in order or a function from request to response. An
    exception in their place (say ``ProviderUnavailable("...", reason="unresolved")`` or
    ``httpx.ConnectTimeout("...")``) is what that request ended in; the driver throws it into
    the flow at its ``yield``. When a list runs out, the test fails with the request that had
    no answer. To hand a flow raw responses with no driver in between, use `drive_raw`.
    """
    run = _driven(flow, responses, provider, policy, secrets, "drive")
    if run.error is not None:
        raise run.error
    if run.queue:
        raise UnusedResponses(f"{len(run.queue)} scripted response(s) were not used")
    return FlowRun(requests=run.requests, result=run.result, waits=run.waits)


def drive_error(
    flow: Flow,
    responses: Script,
    expected: type[HubError] | tuple[type[HubError], ...] = HubError,
    *,
    provider: Provider | None = None,
    policy: Policy | None = None,
    secrets: Iterable[str] | str = (CANARY,),
) -> FlowFailure:
    """Run *flow* as `drive` does; it must end in an *expected* error: return it and the requests.

    The test fails (AssertionError) when the flow returns instead, or ends in another error:
    that error is chained, so its traceback shows where. A bug in the flow (say a KeyError)
    ends, as in production, in `PluginError`, with the original exception as its cause: it
    fails the test unless *expected* names `PluginError`.
    """
    run = _driven(flow, responses, provider, policy, secrets, "drive_error")
    wanted = expected if isinstance(expected, tuple) else (expected,)
    # A PluginError (the flow's own bug) is a HubError too: it passes only when named.
    named = any(issubclass(kind, PluginError) for kind in wanted)
    if isinstance(run.error, wanted) and (named or not isinstance(run.error, PluginError)):
        if run.queue:
            raise UnusedResponses(f"{len(run.queue)} scripted response(s) were not used")
        return FlowFailure(requests=run.requests, error=run.error, waits=run.waits)
    if run.error is not None:
        error = run.error
        raise AssertionError(
            f"flow raised {type(error).__name__}: {error}, not {_names(expected)}"
        ) from error
    raise AssertionError(f"flow returned {run.result!r} instead of raising {_names(expected)}")


def drive_raw(flow: Flow, responses: Script) -> FlowRun:
    """Hand *flow* exactly these responses, with no driver in between; return its `FlowRun`.

    For unit-testing one branch of a flow by hand. Nothing is retried, waited for, followed or
    refused: the flow receives even what the core's driver never hands it in production (a
    429, a redirect, a 503), and a request to any host is answered. Errors the flow raises
    propagate unchanged. Prefer `drive`, which runs the flow as users run it; the conformance
    check never asks a flow to handle what the driver handles.
    """
    import httpx

    _check_flow(flow, "drive_raw")
    answer, queue = _answerer(responses)
    requests: list[httpx.Request] = []
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
    if queue:
        raise UnusedResponses(f"{len(queue)} scripted response(s) were not used")
    if not isinstance(result, Verified):
        raise AssertionError(f"flow returned {result!r}, not Verified")
    return FlowRun(requests=requests, result=result)


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


def find_secret(text: str, secrets: Iterable[str] | str, window: int = LEAK_WINDOW) -> str | None:
    """Return the piece of a secret that *text* contains, or None.

    A secret leaks when it appears whole, or when any *window* consecutive characters of it
    do (a key cut short is still a key), in any form the core's redaction masks: reversed,
    in hex, in base64 (standard or URL-safe, at any offset of a longer encoded string), in
    another case, or cut into parts by separators (see `hub_core.responses.redact`). What is
    returned is the text that holds it. *secrets* is a list of secrets, or one as a string.
    Secrets shorter than the core's redaction minimum (`KEY_PIECE`) are ignored: they cannot
    be told apart from ordinary words.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    keys = [key for key in _secret_list(secrets) if len(key) >= KEY_PIECE]
    return redactor(keys, window).find(text)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # As a traceback shows it: a context hidden with `raise ... from None` is not.
        if current.__cause__ is not None:
            current = current.__cause__
        else:
            current = None if current.__suppress_context__ else current.__context__


def exposed_text(value: object) -> str:
    """Every piece of text *value* shows a person or a log: str, repr and, for an exception,
    its args, notes, per-field messages and the exceptions chained to it."""
    if not isinstance(value, BaseException):
        return f"{value}\n{value!r}"
    texts: list[str] = []
    for error in _chain(value):
        texts += [describe(error), _text(repr, error)]
        texts += [_text(str, arg) for arg in error.args]
        texts += [_text(str, note) for note in getattr(error, "__notes__", ())]
        errors = getattr(error, "errors", None)
        if isinstance(errors, Mapping):
            texts += [_text(str, message) for message in errors.values()]
    return "\n".join(texts)


def _text(show: Callable[[object], str], value: object) -> str:
    # A plugin's exception may build its text lazily, and fail doing so: the check reports
    # the plugin, it does not crash on it.
    try:
        return show(value)
    except Exception:
        return f"<{type(value).__name__}: its text cannot be read>"


def assert_no_secret(value: object, secrets: Iterable[str] | str = (CANARY,)) -> None:
    """Fail (AssertionError) when *value*'s `exposed_text` holds any piece of a secret
    (*secrets*: a list of secrets, or one as a string)."""
    text = exposed_text(value)
    leaked = find_secret(text, secrets)
    if leaked is not None:
        raise AssertionError(f"a secret ({leaked!r}) appears in {type(value).__name__}: {text}")
