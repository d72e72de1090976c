"""The conformance check: does a provider plugin keep the contract of `hub_core.hookspecs`?

    from hub_core.testing.conformance import check_plugin

    report = check_plugin(hub_acme, happy=Routes({"GET /v1/me": respond(json={...})}))
    assert report.ok, report

or, in a test suite with hub-core installed, the ``hub_conformance`` fixture, which fails the
test with every violation listed. For each provider the plugin declares, the check covers:

- the plugin registers, implements the hooks it needs, and answers only for its own providers;
- the schema: a secret field, defaults that pass their own validation, distinct labels, an
  HTTPS ``docs_url``; the exported JSON Schema is valid draft 2020-12 (with ``jsonschema``,
  from ``hub-core[testing]``) and accepts the sample values;
- a guide with sections, every section saying something; hosts that are DNS names;
- the flow, run with sample credentials whose secret is `hub_core.testing.CANARY`:
  it asks the provider at least once, sends only HTTPS requests to declared hosts, never puts
  a secret into a URL; with a happy-path responder it returns a `Verified` holding no secret;
- each standard answer (`SCENARIOS`: 401, 403, 404, 429 with Retry-After, 500, 503, a
  timeout, a refused connection, an unresolvable host, a 200 that is not JSON, an empty 200,
  a 200 of another shape, a redirect to another host) ends in the documented error, twice: run
  directly (as `hub_core.testing.drive` does) and under the core's own driver (`Hub` over
  ``httpx.MockTransport``, where retries and Retry-After are the driver's). Error bodies echo
  the key, as some providers do; no error, repr, result or log record may show any piece of
  it. Errors name only declared fields. With a happy path of several requests, each failure
  is also injected at every later request: the flow must end in `Verified` or a documented
  error, never crash;
- the account display: a valid `AccountDisplay` (or None, for the default) for a sample
  account built from the happy path's result, for a bare account and for an expired one;
  links are HTTPS.

Importing this module imports httpx; `hub_core.testing.pytest_plugin` imports it only when a
test asks for it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import socket
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, Literal

import attrs
import httpx

from hub_core.errors import (
    FieldError,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    PluginError,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from hub_core.fields import json_schema, validate_field, validate_values
from hub_core.flows import check_request
from hub_core.hookspecs import PROJECT
from hub_core.model import (
    Account,
    AccountDisplay,
    Credentials,
    Field,
    Guide,
    Provider,
    Section,
    Status,
    Verified,
)
from hub_core.plugins import Registry
from hub_core.testing import (
    CANARY,
    Responder,
    exposed_text,
    find_secret,
    mock_hub,
    respond,
    sample_account,
    sample_values,
)

__all__ = [
    "DOCUMENTED_ERRORS",
    "SCENARIOS",
    "ConformanceError",
    "ConformanceReport",
    "Finding",
    "Sample",
    "Scenario",
    "assert_conforms",
    "check_plugin",
    "load_plugin",
]

#: The errors a flow may end in. `PluginError` is not among them: it means the plugin broke.
DOCUMENTED_ERRORS: tuple[type[HubError], ...] = (
    FieldError,
    InvalidCredentials,
    PermissionDenied,
    RateLimited,
    ProviderUnavailable,
    UnexpectedResponse,
)

#: More requests than this in one check is a runaway flow.
MAX_REQUESTS = 25
#: The Retry-After the 429 scenario sends, in seconds.
RETRY_AFTER = 7

Outcome = Literal["pass", "fail", "skip"]
Expectation = type[HubError] | tuple[type[HubError], ...]


# --- the report ----------------------------------------------------------------------------


@attrs.frozen
class Finding:
    """One check's verdict: ``pass``, ``fail`` or ``skip``, with what was found."""

    check: str
    outcome: Outcome
    message: str = ""
    provider: str | None = None

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        text = f"{self.outcome.upper():4} {where}{self.check}"
        return f"{text}: {self.message}" if self.message else text


@attrs.frozen
class ConformanceReport:
    """Every finding of one conformance check of one plugin; ``ok`` when nothing failed."""

    plugin: str
    findings: tuple[Finding, ...]

    @property
    def failures(self) -> list[Finding]:
        """The checks that failed."""
        return [f for f in self.findings if f.outcome == "fail"]

    @property
    def skipped(self) -> list[Finding]:
        """The checks that could not run, with why."""
        return [f for f in self.findings if f.outcome == "skip"]

    @property
    def passed(self) -> list[Finding]:
        """The checks that passed."""
        return [f for f in self.findings if f.outcome == "pass"]

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped checks do not count against the plugin)."""
        return not self.failures

    def summary(self) -> str:
        """One line: the plugin and how many checks passed, failed and were skipped."""
        return (
            f"hub conformance of {self.plugin}: {len(self.passed)} passed, "
            f"{len(self.failures)} failed, {len(self.skipped)} skipped"
        )

    def __str__(self) -> str:
        shown = [f for f in self.findings if f.outcome != "pass"]
        return "\n".join([self.summary(), *(str(f) for f in shown)])

    def raise_for_failures(self) -> None:
        """Raise `ConformanceError` listing every failure, if any check failed."""
        if not self.ok:
            raise ConformanceError(self)


class ConformanceError(AssertionError):
    """A plugin failed the conformance check; ``report`` holds every finding."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(str(report))
        self.report = report


# --- what the plugin author tells the check ------------------------------------------------


def _values(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


def _names_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _expectations(value: Mapping[str, Expectation]) -> dict[str, tuple[type[HubError], ...]]:
    return {name: kinds if isinstance(kinds, tuple) else (kinds,) for name, kinds in value.items()}


@attrs.frozen
class Sample:
    """What the check cannot guess from a provider's schema.

    *values* override `hub_core.testing.sample_values` (a tenant that fits a pattern, a key
    with a fixed prefix: keep `CANARY` inside secrets, so leaks are found). *happy* answers
    every request of a successful check (a `hub_core.testing.Routes`, or any function from
    request to response); without it the happy path and the later-request checks are skipped.
    *expect* maps a scenario name to the error(s) this provider documents instead (say
    ``{"403": InvalidCredentials}``); *skip* names scenarios that cannot apply.
    """

    values: Mapping[str, str] = attrs.field(factory=dict, converter=_values)
    happy: Responder | None = None
    expect: Mapping[str, tuple[type[HubError], ...]] = attrs.field(
        factory=dict, converter=_expectations
    )
    skip: frozenset[str] = attrs.field(default=frozenset(), converter=_names_set)

    def __attrs_post_init__(self) -> None:
        known = {scenario.name for scenario in SCENARIOS}
        unknown = sorted((set(self.expect) | self.skip) - known)
        if unknown:
            raise ValueError(
                f"unknown scenario {', '.join(map(repr, unknown))}; scenarios are: "
                f"{', '.join(sorted(known))}"
            )
        for name, kinds in self.expect.items():
            if not kinds or not all(isinstance(k, type) and issubclass(k, HubError) for k in kinds):
                raise TypeError(f"expect[{name!r}] must be HubError subclasses")


# --- the standard answers ----------------------------------------------------------------------

Answer = httpx.Response | BaseException


@attrs.frozen
class Scenario:
    """One standard answer from a provider, and the errors a flow may end in after it.

    ``direct`` builds what the flow itself receives when driven directly (a response, or the
    error the core's driver throws in); ``wire`` builds what the HTTP transport does under
    the real driver (a response, or it raises an ``httpx`` transport error).
    """

    name: str
    description: str
    expect: tuple[type[HubError], ...]
    direct: Callable[[httpx.Request, Provider, tuple[str, ...]], Answer]
    wire: Callable[[httpx.Request, tuple[str, ...]], httpx.Response]
    retry_after: float | None = None


def _echo(status: int, secrets: tuple[str, ...]) -> dict[str, Any]:
    # Some providers quote the credential they refused; the body carries it in the shapes
    # error bodies commonly take, so a plugin quoting the provider is tested too.
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


def _status(status: int, headers: Mapping[str, str] | None = None) -> Scenario:
    def build(request: httpx.Request, secrets: tuple[str, ...]) -> httpx.Response:
        return respond(status, json=_echo(status, secrets), headers=headers)

    descriptions = {
        401: "HTTP 401: the key is wrong, expired or revoked",
        403: "HTTP 403: the key is valid but lacks a permission",
        404: "HTTP 404: nothing at that address",
        429: f"HTTP 429 with Retry-After: {RETRY_AFTER}",
        500: "HTTP 500: the provider failed",
        503: "HTTP 503: the provider is down",
    }
    expected: dict[int, tuple[type[HubError], ...]] = {
        401: (InvalidCredentials,),
        403: (PermissionDenied,),
        404: DOCUMENTED_ERRORS,
        429: (RateLimited,),
        500: (ProviderUnavailable,),
        503: (ProviderUnavailable,),
    }
    return Scenario(
        name=str(status),
        description=descriptions[status],
        expect=expected[status],
        direct=lambda request, provider, secrets: build(request, secrets),
        wire=build,
        retry_after=RETRY_AFTER if status == 429 else None,
    )


def _unreachable(name: str, reason: str, description: str, what: str) -> Scenario:
    def direct(request: httpx.Request, provider: Provider, secrets: tuple[str, ...]) -> Answer:
        return ProviderUnavailable(
            f"{provider.name} could not be reached: {what.format(host=request.url.host)}",
            reason=reason,
        )

    def wire(request: httpx.Request, secrets: tuple[str, ...]) -> httpx.Response:
        if reason == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if reason == "unresolved":
            cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            raise httpx.ConnectError(str(cause), request=request) from cause
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    # An unresolvable host may well mean a mistyped tenant: a FieldError says so best.
    expect = (ProviderUnavailable, FieldError) if reason == "unresolved" else (ProviderUnavailable,)
    return Scenario(name=name, description=description, expect=expect, direct=direct, wire=wire)


def _body(
    name: str, description: str, response: Callable[[], httpx.Response], expect: tuple[Any, ...]
) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        expect=expect,
        direct=lambda request, provider, secrets: response(),
        wire=lambda request, secrets: response(),
    )


#: The standard answers every flow must turn into the documented errors.
SCENARIOS: tuple[Scenario, ...] = (
    _status(401),
    _status(403),
    _status(404),
    _status(429, {"retry-after": str(RETRY_AFTER)}),
    _status(500),
    _status(503),
    _unreachable("timeout", "timeout", "a timeout", "{host} did not answer in time"),
    _unreachable("connect", "connect", "a refused connection", "could not connect to {host}"),
    _unreachable(
        "unresolved", "unresolved", "a host name that does not resolve", "{host} does not resolve"
    ),
    _body(
        "not-json",
        "HTTP 200 with an HTML page instead of JSON",
        lambda: respond(
            200,
            text="<!doctype html><html><body>Please sign in</body></html>",
            headers={"content-type": "text/html; charset=utf-8"},
        ),
        (UnexpectedResponse,),
    ),
    _body(
        "empty",
        "HTTP 200 with an empty body",
        lambda: respond(200, headers={"content-type": "application/json"}),
        (UnexpectedResponse,),
    ),
    _body(
        "wrong-json",
        "HTTP 200 with JSON of another shape",
        lambda: respond(200, json={"unexpected": ["shape"], "data": None}),
        (UnexpectedResponse,),
    ),
    _body(
        "redirect-elsewhere",
        "a redirect to another host",
        lambda: respond(302, headers={"location": "https://login.elsewhere.invalid/sign-in"}),
        (UnexpectedResponse,),
    ),
)

_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
#: The scenarios injected at each later request of a multi-request happy path.
LATER = ("401", "429", "500", "timeout", "not-json", "empty")


# --- running a flow --------------------------------------------------------------------------


@attrs.define
class _Run:
    """What one run of a flow did."""

    requests: list[httpx.Request] = attrs.Factory(list)
    returned: object = None
    error: BaseException | None = None
    refused: str | None = None  # why the core's driver would refuse a request of the flow
    responder_error: BaseException | None = None


def _drive_direct(
    flow: Any,
    provider: Provider,
    label: str,
    answer: Callable[[int, httpx.Request], Answer],
    secrets: tuple[str, ...],
) -> _Run:
    """Run *flow* directly, vetting each request as the core's driver would before sending."""
    run = _Run()
    try:
        request = next(flow)
        while True:
            try:
                check_request(provider, label, request, secrets)
            except PluginError as exc:
                run.refused = exc.message
                return run
            if len(run.requests) >= MAX_REQUESTS:
                run.refused = f"the flow made more than {MAX_REQUESTS} requests in one check"
                return run
            run.requests.append(request)
            try:
                reply = answer(len(run.requests) - 1, request)
            except Exception as exc:
                run.responder_error = exc
                return run
            if isinstance(reply, BaseException):
                request = flow.throw(reply)
            else:
                reply.request = request
                request = flow.send(reply)
    except StopIteration as stop:
        run.returned = stop.value
    except Exception as exc:
        run.error = exc
    finally:
        try:
            flow.close()
        except Exception as exc:  # a flow that yields again when closed
            run.error = run.error or exc
    return run


class _Runaway(Exception):
    """Raised by the check's transport when a flow asks for more than `MAX_REQUESTS`."""


class _Wire:
    """The check's transport under the real driver: answers one run's requests, counting them."""

    def __init__(self) -> None:
        self.answer: Callable[[int, httpx.Request], Answer] = lambda index, request: respond(404)
        self.count = 0
        self.responder_errors: list[BaseException] = []

    def __call__(self, request: httpx.Request) -> Answer:
        self.count += 1
        if self.count > MAX_REQUESTS:
            # Not a transport error: it ends the run instead of being thrown into the flow.
            raise _Runaway
        try:
            return self.answer(self.count - 1, request)
        except httpx.TransportError:
            raise
        except Exception as exc:
            self.responder_errors.append(exc)
            raise


Driver = Callable[[Callable[[int, httpx.Request], Answer]], _Run]


def _driver(hub: Any, wire: _Wire, provider: Provider, values: Mapping[str, str]) -> Driver:
    """Run one check through *hub*'s real driver, *answer* playing the provider."""

    def run(answer: Callable[[int, httpx.Request], Answer]) -> _Run:
        wire.answer, wire.count = answer, 0
        wire.responder_errors.clear()
        result = _Run()
        try:
            result.returned = hub.verify(provider.id, values)
        except _Runaway:
            result.refused = f"the flow made more than {MAX_REQUESTS} requests in one check"
        except Exception as exc:
            result.error = exc
        if wire.responder_errors:
            result.responder_error = wire.responder_errors[0]
        return result

    return run


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _names(kinds: tuple[type[BaseException], ...]) -> str:
    if kinds == DOCUMENTED_ERRORS:
        return "a documented error (not PluginError)"
    return " or ".join(kind.__name__ for kind in kinds)


_HINTS = {
    "401": "a key the provider rejects must raise InvalidCredentials naming the secret field",
    "403": "a valid key without the needed role must raise PermissionDenied",
    "429": "raise RateLimited(retry_after=...) from the Retry-After header, and let the core's "
    "RateLimited propagate from the yield",
    "500": "a 5xx answer must raise ProviderUnavailable",
    "503": "a 5xx answer must raise ProviderUnavailable",
    "timeout": "let the ProviderUnavailable thrown in at the yield propagate",
    "connect": "let the ProviderUnavailable thrown in at the yield propagate",
    "not-json": "catch the ValueError of response.json() and raise UnexpectedResponse",
    "empty": "catch the ValueError of response.json() and raise UnexpectedResponse",
    "wrong-json": "check the shape of the body and raise UnexpectedResponse when it is not right",
    "redirect-elsewhere": "a redirect the flow does not expect must raise UnexpectedResponse; "
    "never follow it to another host",
}


def _field_problems(error: HubError, provider: Provider) -> list[str]:
    names = {field.name for field in provider.fields}
    named = set(error.errors) if isinstance(error, FieldError) else set()
    if error.field is not None:
        named.add(error.field)
    unknown = sorted(named - names)
    if unknown:
        return [
            f"{type(error).__name__} names the field(s) {', '.join(map(repr, unknown))}, which "
            f"{provider.name} does not declare (its fields: {', '.join(sorted(names))})"
        ]
    return []


def _judge(
    run: _Run,
    provider: Provider,
    expect: tuple[type[HubError], ...],
    secrets: tuple[str, ...],
    *,
    direct: bool,
    verified_ok: bool = False,
    retry_after: float | None = None,
    hint: str | None = None,
) -> list[str]:
    """Everything wrong with how *run* ended, given that it had to end in *expect*."""
    wanted = _names(expect) + (" or Verified" if verified_ok else "")
    problems: list[str] = []
    if run.responder_error is not None:
        return [f"the happy-path responder itself failed: {_describe(run.responder_error)}"]
    if run.refused is not None:
        return [f"the flow asked for a request hub refuses: {run.refused}"]
    error = run.error
    if direct and isinstance(error, json.JSONDecodeError):
        # The core's driver turns a JSON decoding error into UnexpectedResponse.
        error = UnexpectedResponse("not JSON")
    if error is None:
        if isinstance(run.returned, Verified) and verified_ok:
            problems += _leaks(run.returned, secrets, "the result")
            return problems
        problems.append(f"the flow returned {run.returned!r}; expected {wanted}")
    elif isinstance(error, PluginError):
        problems.append(f"hub reported a broken plugin ({error}); expected {wanted}")
    elif not isinstance(error, HubError):
        where = _origin(error)
        problems.append(
            f"the flow raised {_describe(error)}{where}, which hub reports as a bug in the "
            f"plugin (PluginError); expected {wanted}"
        )
    elif not isinstance(error, expect):
        problems.append(f"the flow ended in {_describe(error)}; expected {wanted}")
    else:
        if not str(error).strip():
            problems.append(f"{type(error).__name__} has no message for the person")
        problems += _field_problems(error, provider)
        if retry_after is not None and isinstance(error, RateLimited):
            got = error.retry_after
            if got is None or abs(got - retry_after) > 1:
                problems.append(
                    f"RateLimited.retry_after is {got!r}, but the provider said Retry-After: "
                    f"{retry_after:g}"
                )
    if error is not None:
        problems += _leaks(error, secrets, "the error")
    if problems and hint:
        problems.append(f"hint: {hint}")
    return problems


def _origin(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}"


def _leaks(value: object, secrets: tuple[str, ...], what: str) -> list[str]:
    text = exposed_text(value)
    if isinstance(value, Verified):
        text += "\n" + json.dumps(value.details, default=str)
    piece = find_secret(text, secrets)
    if piece is None:
        return []
    return [f"{what} shows a secret ({piece!r} is part of the key): {text.splitlines()[0]}"]


# --- the check -------------------------------------------------------------------------------


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.provider: str | None = None

    def add(self, check: str, problems: list[str] | str | None, passed: str = "") -> bool:
        if isinstance(problems, str):
            problems = [problems]
        if problems:
            self.items.append(Finding(check, "fail", "; ".join(problems), self.provider))
            return False
        self.items.append(Finding(check, "pass", passed, self.provider))
        return True

    def skip(self, check: str, why: str) -> None:
        self.items.append(Finding(check, "skip", why, self.provider))


class _LogCapture(logging.Handler):
    """Collects the text of every log record, so leaks into logs are found too."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + exposed_text(record.exc_info[1])
        self.texts.append(f"{record.name}: {text}")


@contextlib.contextmanager
def _captured_logs() -> Iterator[_LogCapture]:
    capture = _LogCapture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


def _label(plugin: object) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


def load_plugin(name: str) -> object:
    """The plugin called *name*: an installed ``hub`` entry point, or else a module to import."""
    for entry_point in entry_points(group=PROJECT):
        if entry_point.name == name:
            return entry_point.load()
    return importlib.import_module(name)


def check_plugin(
    plugin: object,
    sample: Sample | Mapping[str, Sample] | None = None,
    *,
    values: Mapping[str, str] | None = None,
    happy: Responder | None = None,
    expect: Mapping[str, Expectation] | None = None,
    skip: Collection[str] = (),
) -> ConformanceReport:
    """Check *plugin* (a module or object holding hook implementations) against the contract.

    *sample* is one `Sample` for every provider of the plugin, or a mapping of provider id to
    `Sample`; or pass the fields of one `Sample` as keywords (*values*, *happy*, *expect*,
    *skip*). Return the `ConformanceReport`; nothing is raised for a failing check (see
    `assert_conforms`). No request leaves the process.
    """
    if sample is None:
        sample = Sample(values=values or {}, happy=happy, expect=expect or {}, skip=skip)
    elif values is not None or happy is not None or expect is not None or skip:
        raise TypeError("pass either a Sample or its fields as keywords, not both")
    findings = _Findings()
    _check(plugin, sample, findings)
    return ConformanceReport(plugin=_label(plugin), findings=tuple(findings.items))


def assert_conforms(
    plugin: object,
    sample: Sample | Mapping[str, Sample] | None = None,
    *,
    values: Mapping[str, str] | None = None,
    happy: Responder | None = None,
    expect: Mapping[str, Expectation] | None = None,
    skip: Collection[str] = (),
) -> ConformanceReport:
    """Run `check_plugin` and raise `ConformanceError` listing every failure; else the report."""
    report = check_plugin(plugin, sample, values=values, happy=happy, expect=expect, skip=skip)
    report.raise_for_failures()
    return report


def _check(plugin: object, sample: Sample | Mapping[str, Sample], findings: _Findings) -> None:
    registry = Registry([plugin], load_entrypoints=False)
    (report,) = registry.reports()
    if not findings.add("contract", report.error, "registers with the hub hook specs"):
        return
    hooks = {caller.name for caller in registry.manager.get_hookcallers(plugin) or ()}
    missing = sorted({"hub_providers", "hub_validate_credentials"} - hooks)
    findings.add(
        "hooks",
        f"implements no {' and no '.join(missing)}: a provider plugin declares its providers "
        "and checks their keys"
        if missing
        else None,
        ", ".join(sorted(hooks)),
    )
    providers = registry.providers()
    if not findings.add(
        "providers",
        None if providers else "hub_providers() declares no provider",
        ", ".join(p.id for p in providers),
    ):
        return
    if not isinstance(sample, Sample):
        extra = sorted(set(sample) - {p.id for p in providers})
        if extra:
            findings.add(
                "samples", f"samples are given for {', '.join(extra)}, which the plugin lacks"
            )
    findings.add("own-providers-only", _foreign_problems(registry, hooks))
    for provider in providers:
        findings.provider = provider.id
        own = sample if isinstance(sample, Sample) else sample.get(provider.id, Sample())
        _check_provider(plugin, registry, report.label, provider, own, hooks, findings)
    findings.provider = None


_OTHER = Provider(
    id="conformance-other",
    name="Another provider",
    fields=[Field("api_key", "API Key", kind="secret")],
    guide=Guide(sections=[Section("Create a key", "In its settings.")]),
    hosts=["api.other.invalid"],
)


def _foreign_problems(registry: Registry, hooks: set[str]) -> list[str]:
    """A firstresult hook that answers for another plugin's provider hijacks it."""
    problems: list[str] = []
    credentials = Credentials({"api_key": CANARY}, secret=["api_key"])
    account = sample_account(_OTHER)
    calls: list[tuple[str, Callable[[], object]]] = []
    if "hub_validate_credentials" in hooks:
        calls.append(
            (
                "hub_validate_credentials",
                lambda: registry.manager.hook.hub_validate_credentials(
                    provider=_OTHER, credentials=credentials
                ),
            )
        )
    if "hub_account_display" in hooks:
        calls.append(
            (
                "hub_account_display",
                lambda: registry.manager.hook.hub_account_display(provider=_OTHER, account=account),
            )
        )
    for name, call in calls:
        try:
            result = call()
        except Exception as exc:
            problems.append(f"{name} raised {_describe(exc)} for another plugin's provider")
            continue
        close = getattr(result, "close", None)
        if callable(close):
            close()
        if result is not None:
            problems.append(
                f"{name} answered {type(result).__name__} for another plugin's provider; "
                "return None unless provider.id is one of yours"
            )
    return problems


def _check_provider(
    plugin: object,
    registry: Registry,
    label: str,
    provider: Provider,
    sample: Sample,
    hooks: set[str],
    findings: _Findings,
) -> None:
    findings.add("schema", _schema_problems(provider), f"{len(provider.fields)} fields")
    findings.add(
        "guide", _guide_problems(provider.guide), f"{len(provider.guide.sections)} sections"
    )
    findings.add("hosts", _host_problems(provider), ", ".join(provider.hosts))
    try:
        values = sample_values(provider, **sample.values)
    except ValueError as exc:
        findings.add("sample", str(exc))
        return
    _check_json_schema(provider, values, findings)
    try:
        credentials = validate_values(provider, values)
    except FieldError as exc:
        findings.add(
            "sample",
            f"the sample values {_public(values, provider)} do not pass the schema ({exc}); "
            "pass Sample(values={...}) with values that do",
        )
        return
    findings.add("sample", None, str(_public(values, provider)))
    # What the provider echoes back is the key as typed; leaks are looked for of CANARY too.
    keys = credentials.secret_values()
    secrets = tuple(dict.fromkeys((*keys, CANARY)))

    def flow() -> Any:
        made, _ = registry.flow(provider, credentials)
        return made

    wire = _Wire()
    # flow_timeout is a backstop only: the wire ends a runaway flow after MAX_REQUESTS.
    with _captured_logs() as logs, mock_hub(plugin, wire, flow_timeout=10.0) as hub:
        if not _check_first_request(flow, provider, label, secrets, findings):
            return
        driver = _driver(hub, wire, provider, values)
        verified, count = _check_happy(flow, driver, provider, label, sample, secrets, findings)
        _check_scenarios(flow, driver, provider, label, sample, keys, secrets, findings)
        _check_later(flow, provider, label, sample, count, keys, secrets, findings)
        _check_display(registry, provider, sample, values, verified, hooks, secrets, findings)
    leaked = [text for text in logs.texts if find_secret(text, secrets)]
    findings.add(
        "logs",
        f"a log record shows a secret: {leaked[0][:300]}" if leaked else None,
        f"{len(logs.texts)} records, none with a secret",
    )


def _public(values: Mapping[str, str], provider: Provider) -> dict[str, str]:
    secret = set(provider.secret_fields)
    return {name: ("***" if name in secret else value) for name, value in values.items()}


def _schema_problems(provider: Provider) -> list[str]:
    problems: list[str] = []
    if not provider.secret_fields:
        problems.append(
            "no field has kind='secret': the API key must be one, so it is hidden when typed, "
            "encrypted at rest and never shown"
        )
    for field in provider.fields:
        if field.default is not None and field.default:
            try:
                validate_field(field, field.default)
            except FieldError as exc:
                problems.append(f"the default of {field.name!r} fails its own validation: {exc}")
    labels = [field.label.casefold() for field in provider.fields]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        problems.append(f"several fields share the label(s) {', '.join(map(repr, repeated))}")
    if provider.docs_url is not None and not provider.docs_url.startswith("https://"):
        problems.append(f"docs_url {provider.docs_url!r} is not an https:// address")
    return problems


def _check_json_schema(provider: Provider, values: Mapping[str, str], findings: _Findings) -> None:
    try:
        # Optional (hub-core[testing]) and untyped: imported by name, used as Any.
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        findings.skip(
            "json-schema", "install jsonschema (pip install 'hub-core[testing]') to check it"
        )
        return
    schema = json_schema(provider)
    validator_class = jsonschema.Draft202012Validator
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        findings.add("json-schema", f"the exported schema is not valid JSON Schema: {exc.message}")
        return
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(dict(values)), key=lambda e: list(e.path))
    findings.add(
        "json-schema",
        [
            "the sample values pass hub's validation but not the exported JSON Schema: "
            + "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors)
        ]
        if errors
        else None,
        "valid draft 2020-12; accepts the sample values",
    )


def _guide_problems(guide: Guide) -> list[str]:
    if not guide.sections:
        return [
            "the guide has no sections: tell people where to create the key and what to paste where"
        ]
    return [
        f"the guide section {section.title!r} has neither text nor steps"
        for section in guide.sections
        if not section.content.strip() and not section.steps
    ]


def _host_problems(provider: Provider) -> list[str]:
    problems = []
    for pattern in provider.hosts:
        host = pattern.removeprefix("*.")
        if host.rsplit(".", 1)[-1].isdigit():
            problems.append(f"host {pattern!r} is an IP address; declare the provider's DNS name")
        elif host == "localhost" or host.endswith(".localhost"):
            problems.append(f"host {pattern!r} is this machine, not a provider")
    return problems


def _check_first_request(
    flow: Callable[[], Any],
    provider: Provider,
    label: str,
    secrets: tuple[str, ...],
    findings: _Findings,
) -> bool:
    try:
        made = flow()
    except HubError as exc:
        findings.add("flow", f"hub_validate_credentials failed: {exc}")
        return False
    try:
        first = next(made)
    except StopIteration as stop:
        findings.add(
            "flow",
            f"the flow returned {stop.value!r} without asking {provider.name}: a key must be "
            "checked live",
        )
        return False
    except FieldError as exc:
        findings.add(
            "flow",
            f"the flow refused the sample values before any request ({exc}); pass "
            "Sample(values={...}) with values it accepts",
        )
        return False
    except Exception as exc:
        findings.add("flow", f"the flow failed before its first request: {_describe(exc)}")
        return False
    finally:
        made.close()
    try:
        check_request(provider, label, first, secrets)
    except PluginError as exc:
        findings.add("flow", f"the first request would be refused: {exc}")
        return False
    return findings.add("flow", None, f"asks {first.method} {first.url.copy_with(query=None)}")


def _check_happy(
    flow: Callable[[], Any],
    driver: Driver,
    provider: Provider,
    label: str,
    sample: Sample,
    secrets: tuple[str, ...],
    findings: _Findings,
) -> tuple[Verified | None, int]:
    happy = sample.happy
    if happy is None:
        why = "no happy-path responder: pass Sample(happy=...) to check a successful check"
        findings.skip("happy-path", why)
        findings.skip("happy-path (driver)", why)
        return None, 0

    def answer(index: int, request: httpx.Request) -> Answer:
        return happy(request)

    run = _drive_direct(flow(), provider, label, answer, secrets)
    ok = findings.add(
        "happy-path",
        _verified_problems(run, provider, secrets),
        f"Verified after {len(run.requests)} request(s)",
    )
    verified = run.returned if ok and isinstance(run.returned, Verified) else None
    driven = driver(answer)
    findings.add(
        "happy-path (driver)", _verified_problems(driven, provider, secrets), _outcome(driven)
    )
    return verified, len(run.requests) if verified else 0


def _verified_problems(run: _Run, provider: Provider, secrets: tuple[str, ...]) -> list[str]:
    if run.responder_error is not None:
        return [f"the happy-path responder failed: {_describe(run.responder_error)}"]
    if run.refused is not None:
        return [f"the flow asked for a request hub refuses: {run.refused}"]
    if run.error is not None:
        return [
            f"with the happy-path answers the flow ended in {_describe(run.error)}",
            *_leaks(run.error, secrets, "the error"),
        ]
    result = run.returned
    if not isinstance(result, Verified):
        return [f"the flow returned {result!r}, not Verified"]
    problems = []
    try:
        json.dumps(result.details)
    except (TypeError, ValueError) as exc:
        problems.append(
            f"Verified.details is not JSON-serialisable ({exc}); the store cannot keep it"
        )
    plain = {field.name for field in provider.fields if not field.secret}
    stray = sorted(name for name in result.config if name not in plain)
    if stray:
        problems.append(
            f"Verified.config names {', '.join(map(repr, stray))}; it may only hold non-secret "
            f"fields of {provider.name} ({', '.join(sorted(plain)) or 'none'})"
        )
    if any(not isinstance(value, str) for value in result.config.values()):
        problems.append("Verified.config values must be strings, as typed values are")
    return problems + _leaks(result, secrets, "the Verified result")


def _check_scenarios(
    flow: Callable[[], Any],
    driver: Driver,
    provider: Provider,
    label: str,
    sample: Sample,
    keys: tuple[str, ...],
    secrets: tuple[str, ...],
    findings: _Findings,
) -> None:
    happy = sample.happy
    for scenario in SCENARIOS:
        check = f"response {scenario.name} ({scenario.description})"
        if scenario.name in sample.skip:
            findings.skip(check, "skipped by the plugin's Sample")
            continue
        expect = sample.expect.get(scenario.name, scenario.expect)
        judged = functools.partial(
            _judge,
            provider=provider,
            expect=expect,
            secrets=secrets,
            retry_after=scenario.retry_after,
            hint=_HINTS.get(scenario.name),
        )

        def direct(index: int, request: httpx.Request, scenario: Scenario = scenario) -> Answer:
            if index > 0 and happy is not None:
                return happy(request)
            return scenario.direct(request, provider, keys)

        def wire(index: int, request: httpx.Request, scenario: Scenario = scenario) -> Answer:
            if index > 0 and happy is not None:
                return happy(request)
            return scenario.wire(request, keys)

        run = _drive_direct(flow(), provider, label, direct, secrets)
        findings.add(check, judged(run, direct=True), _outcome(run))
        driven = driver(wire)
        findings.add(f"{check} (driver)", judged(driven, direct=False), _outcome(driven))


def _outcome(run: _Run) -> str:
    if run.error is not None:
        return type(run.error).__name__
    return type(run.returned).__name__


def _check_later(
    flow: Callable[[], Any],
    provider: Provider,
    label: str,
    sample: Sample,
    count: int,
    keys: tuple[str, ...],
    secrets: tuple[str, ...],
    findings: _Findings,
) -> None:
    happy = sample.happy
    if happy is None or count < 2:
        return
    for step in range(1, count):
        for name in LATER:
            if name in sample.skip:
                continue
            scenario = _BY_NAME[name]

            def answer(
                index: int, request: httpx.Request, scenario: Scenario = scenario, step: int = step
            ) -> Answer:
                if index == step:
                    return scenario.direct(request, provider, keys)
                return happy(request)

            run = _drive_direct(flow(), provider, label, answer, secrets)
            findings.add(
                f"request {step + 1} of {count}: response {name}",
                _judge(run, provider, DOCUMENTED_ERRORS, secrets, direct=True, verified_ok=True),
                _outcome(run),
            )


def _check_display(
    registry: Registry,
    provider: Provider,
    sample: Sample,
    values: Mapping[str, str],
    verified: Verified | None,
    hooks: set[str],
    secrets: tuple[str, ...],
    findings: _Findings,
) -> None:
    if "hub_account_display" not in hooks:
        findings.skip("display", "no hub_account_display: the core's default display is used")
        return
    now = datetime.now(UTC)
    account = sample_account(provider, verified, values=values, now=now)
    accounts = {
        "a checked account": account,
        "an account with no details": Account(
            id="bare", provider_id=provider.id, identity="bare:1", label="Bare", status="error"
        ),
        "an expired account": attrs.evolve(
            account,
            status=Status.EXPIRED,
            expires_at=now - timedelta(days=3),
            last_error="the key has expired",
        ),
    }
    problems: list[str] = []
    shown = 0
    for what, item in accounts.items():
        try:
            display = registry.manager.hook.hub_account_display(provider=provider, account=item)
        except Exception as exc:
            problems.append(f"for {what}, hub_account_display raised {_describe(exc)}")
            continue
        if display is None:
            continue
        if not isinstance(display, AccountDisplay):
            problems.append(
                f"for {what}, hub_account_display returned {type(display).__name__}, not "
                "AccountDisplay (or None for the default display)"
            )
            continue
        shown += 1
        if display.url is not None and not display.url.startswith("https://"):
            problems.append(f"for {what}, the display links to {display.url!r}, not https://")
        problems += _leaks(display, secrets, f"the display of {what}")
    findings.add("display", problems, f"AccountDisplay for {shown} of {len(accounts)} accounts")
