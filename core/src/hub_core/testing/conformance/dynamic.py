"""The checks that run a provider's flow: the first request, the happy path, every scenario,
failures at later requests, the account display, and the logs of it all.

Every run is production's: the flow comes from the plugin's hook (`Registry.flow`) and runs
under `hub_core.flows.drive` with the production `Policy`, executed by
`hub_core.flows.run_scripted` against scripted answers on a virtual clock. So the driver
retries, waits out Retry-After, follows or refuses redirects and translates transport errors,
and nothing here asks a flow to do any of that itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import traceback
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from hub_core.errors import FieldError, HubError, PluginError, RateLimited, describe
from hub_core.flows import Answer, check_request, drive, run_scripted
from hub_core.hookspecs import Flow
from hub_core.model import Account, AccountDisplay, Credentials, Provider, Status, Verified
from hub_core.plugins import Registry
from hub_core.policy import Policy
from hub_core.testing import CANARY, exposed_text, find_secret, sample_account

from .report import Findings
from .scenarios import BY_NAME, DOCUMENTED_ERRORS, LATER, SCENARIOS, Scenario

if TYPE_CHECKING:
    from . import Sample


@attrs.define
class Run:
    """What one run of a flow did and ended in."""

    #: Every request that reached the (scripted) wire: retries and followed redirects too.
    requests: list[httpx.Request] = attrs.Factory(list)
    #: How many requests the flow itself yielded.
    asked: int = 0
    result: Verified | None = None
    error: BaseException | None = None
    #: What the happy-path responder raised: the test's fixture broke, not the plugin.
    responder_error: BaseException | None = None
    #: All the text of the error the flow raised, before the driver masked secrets in it.
    raised: str | None = None
    #: What the flow itself returned, before the driver masked secrets in it.
    returned: object = None

    @property
    def outcome(self) -> str:
        """How the run ended, in one word or two, for a passing finding."""
        if self.error is None:
            return type(self.result).__name__
        cause = self.error.__cause__
        if isinstance(self.error, PluginError) and _is_bug(cause):
            return f"PluginError ({type(cause).__name__})"
        return type(self.error).__name__


def _is_bug(error: BaseException | None) -> bool:
    """Whether *error*, the cause of a `PluginError`, is an exception of the plugin's code."""
    return error is not None and not isinstance(error, HubError)


class _ResponderFailed(Exception):
    """Ends a run whose happy-path responder raised; it is no transport error, so it is not
    thrown into the flow."""


class _Counted(Generator[httpx.Request, httpx.Response, Verified]):
    """A flow that counts the requests it yields, so an answer knows which one it answers,
    and keeps what an error it raised showed before the driver masked the key in it.

    The driver sends the same request again on a retry and a new one on a redirect it
    follows; only the flow's own yields start a new request of the flow.
    """

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.asked = 0
        self.raised: str | None = None
        self.returned: object = None

    def send(self, value: httpx.Response | None) -> httpx.Request:
        return self._step(self.flow.send, value)

    def throw(self, *args: Any, **kwargs: Any) -> httpx.Request:
        return self._step(self.flow.throw, *args, **kwargs)

    def close(self) -> None:
        self.flow.close()

    def _step(
        self, resume: Callable[..., httpx.Request], *args: Any, **kwargs: Any
    ) -> httpx.Request:
        try:
            request = resume(*args, **kwargs)
        except StopIteration as stop:
            self.returned = stop.value  # as with errors: the driver masks what leaves it
            raise
        except Exception as exc:
            # The driver masks every piece of the key in what leaves it, so a leak of the
            # plugin's own is only seen here; production's masking is a safety net, not a fix.
            self.raised = exposed_text(exc)
            raise
        self.asked += 1
        return request


@attrs.define
class ProviderCheck:
    """The dynamic checks of one provider of a plugin, and what they share.

    The sample *credentials* are what the flow gets; leaks are looked for of their secrets
    (the key as typed, which is what a provider echoes) and of `CANARY` too.
    """

    registry: Registry
    label: str
    provider: Provider
    sample: Sample
    hooks: set[str]
    values: dict[str, str]
    credentials: Credentials
    findings: Findings
    policy: Policy = attrs.Factory(Policy)

    @property
    def keys(self) -> tuple[str, ...]:
        """The secrets of the sample credentials, as `Hub` hands them to the driver."""
        return self.credentials.secret_values()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Everything no error, result, display or log may show a piece of."""
        return tuple(dict.fromkeys((*self.keys, CANARY)))

    def run(self) -> None:
        """Run every dynamic check, adding a finding for each."""
        with _captured_logs() as logs:
            if not self.check_first_request():
                return
            verified, count = self.check_happy()
            self.check_scenarios()
            self.check_later(count)
            self.check_display(verified)
        leaked = [text for text in logs.texts if find_secret(text, self.secrets)]
        self.findings.add(
            "logs",
            f"a log record shows a secret: {leaked[0][:300]}" if leaked else None,
            f"{len(logs.texts)} records, none with a secret",
        )

    # --- running the flow --------------------------------------------------------------------

    def drive(self, scenario: Scenario | None = None, at: int = 0) -> Run:
        """Run the flow as production does, *scenario* playing the provider at request *at*.

        *at* counts every request that reaches the wire. The scenario answers that request and
        each retry of it (just the first attempt, if ``once``); the happy path answers the
        rest, and without one the scenario answers every request.
        """
        run = Run()
        try:
            flow, plugin = self.registry.flow(self.provider, self.credentials)
        except HubError as exc:
            run.error = exc
            return run
        counted = _Counted(flow)
        happy = self.sample.happy
        injected: int | None = None  # the flow's request (by count) that the scenario answers

        def answer(request: httpx.Request) -> Answer:
            nonlocal injected
            index = len(run.requests)
            run.requests.append(request)
            if index == at:
                injected = counted.asked
            if scenario is not None and (
                index == at
                or happy is None
                or (index > at and counted.asked == injected and not scenario.once)
            ):
                return scenario.wire(request, self.keys)
            assert happy is not None  # a run without a scenario needs the happy path
            try:
                answered = happy(request)
                if not isinstance(answered, httpx.Response | BaseException):
                    raise TypeError(
                        f"it answered {request.method} {request.url} with "
                        f"{type(answered).__name__}, not an httpx.Response (a missing return?)"
                    )
            except Exception as exc:
                run.responder_error = exc
                raise _ResponderFailed from exc
            return answered

        driver = drive(self.policy, self.provider, plugin, counted, self.keys)
        try:
            run.result = run_scripted(driver, answer, self.provider, self.policy)
        except _ResponderFailed:
            pass
        except Exception as exc:
            run.error = exc
        run.asked, run.raised, run.returned = counted.asked, counted.raised, counted.returned
        return run

    # --- the checks ---------------------------------------------------------------------------

    def check_first_request(self) -> bool:
        """The flow asks the provider, and its first request is one hub would send."""
        try:
            made, _ = self.registry.flow(self.provider, self.credentials)
        except HubError as exc:
            self.findings.add("flow", f"hub_validate_credentials failed: {exc}")
            return False
        try:
            first = next(made)
        except StopIteration as stop:
            self.findings.add(
                "flow",
                f"the flow returned {stop.value!r} without asking {self.provider.name}: a key "
                "must be checked live",
            )
            return False
        except FieldError as exc:
            self.findings.add(
                "flow",
                f"the flow refused the sample values before any request ({exc}); pass "
                "Sample(values={...}) with values it accepts",
            )
            return False
        except Exception as exc:
            self.findings.add("flow", f"the flow failed before its first request: {describe(exc)}")
            return False
        finally:
            made.close()
        try:
            check_request(self.provider, self.label, first, self.secrets)
        except PluginError as exc:
            self.findings.add("flow", f"the first request would be refused: {exc}")
            return False
        return self.findings.add(
            "flow", None, f"asks {first.method} {first.url.copy_with(query=None)}"
        )

    def check_happy(self) -> tuple[Verified | None, int]:
        """The happy path ends in a storable `Verified`; return it and the requests it took."""
        if self.sample.happy is None:
            self.findings.skip(
                "happy-path",
                "no happy-path responder: pass Sample(happy=...) to check a successful check",
            )
            return None, 0
        run = self.drive()
        ok = self.findings.add(
            "happy-path",
            self.verified_problems(run, "with the happy-path answers"),
            f"Verified after {len(run.requests)} request(s)",
        )
        return (run.result, len(run.requests)) if ok else (None, 0)

    def check_scenarios(self) -> None:
        """Each standard answer at the first request ends as documented."""
        for scenario in SCENARIOS:
            check = f"response {scenario.name} ({scenario.description})"
            if scenario.name in self.sample.skip:
                self.findings.skip(check, "skipped by the plugin's Sample")
                continue
            expect = self.sample.expect.get(scenario.name, scenario.expect)
            if not expect and self.sample.happy is None:
                self.findings.skip(check, "it ends on the happy path: pass Sample(happy=...)")
                continue
            run = self.drive(scenario)
            if expect:
                problems = self.judge(run, expect, retry_after=scenario.retry_after)
            else:
                problems = self.verified_problems(run, f"after {scenario.description}")
            if problems and scenario.hint:
                problems.append(f"hint: {scenario.hint}")
            self.findings.add(check, problems, run.outcome)

    def check_later(self, count: int) -> None:
        """Failures at each later request of the happy path end in Verified or as documented."""
        if self.sample.happy is None or count < 2:
            return
        for step in range(1, count):
            for name in LATER:
                if name in self.sample.skip:
                    continue
                run = self.drive(BY_NAME[name], at=step)
                self.findings.add(
                    f"request {step + 1} of {count}: response {name}",
                    self.judge(run, DOCUMENTED_ERRORS, verified_ok=True),
                    run.outcome,
                )

    def check_display(self, verified: Verified | None) -> None:
        """The account display copes with a checked, a bare and an expired account."""
        if "hub_account_display" not in self.hooks:
            self.findings.skip(
                "display", "no hub_account_display: the core's default display is used"
            )
            return
        now = datetime.now(UTC)
        account = sample_account(self.provider, verified, values=self.values, now=now)
        accounts = {
            "a checked account": account,
            "an account with no details": Account(
                id="bare",
                provider_id=self.provider.id,
                identity="bare:1",
                label="Bare",
                status="error",
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
        hook = self.registry.manager.hook.hub_account_display
        for what, item in accounts.items():
            try:
                display = hook(provider=self.provider, account=item)
            except Exception as exc:
                problems.append(f"for {what}, hub_account_display raised {describe(exc)}")
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
            problems += self.leaks(display, f"the display of {what}")
        self.findings.add(
            "display", problems, f"AccountDisplay for {shown} of {len(accounts)} accounts"
        )

    # --- judging a run ----------------------------------------------------------------------

    def broke_off(self, run: Run) -> str | None:
        """Why *run* says nothing of the plugin's handling: the fixture broke, or hub stopped
        a runaway flow."""
        if run.responder_error is not None:
            return f"the happy-path responder itself failed: {describe(run.responder_error)}"
        if run.asked > self.policy.max_requests:
            return (
                f"a runaway flow: it asked for more than {self.policy.max_requests} requests in "
                "one check, and hub stopped it; a flow must end after the requests it needs"
            )
        return None

    def verified_problems(self, run: Run, when: str) -> list[str]:
        """Everything wrong with *run*, which had to end in a `Verified` the store can keep."""
        broken = self.broke_off(run)
        if broken is not None:
            return [broken]
        if run.error is not None:
            return [f"{when}, {self.ending(run.error)}", *self.error_leaks(run)]
        result = run.result
        assert result is not None  # run_scripted returns a Verified or raises
        problems = []
        try:
            json.dumps(result.details)
        except (TypeError, ValueError) as exc:
            problems.append(
                f"Verified.details is not JSON-serialisable ({exc}); the store cannot keep it"
            )
        plain = {field.name for field in self.provider.fields if not field.secret}
        stray = sorted(name for name in result.config if name not in plain)
        if stray:
            problems.append(
                f"Verified.config names {', '.join(map(repr, stray))}; it may only hold "
                f"non-secret fields of {self.provider.name} ({', '.join(sorted(plain)) or 'none'})"
            )
        if any(not isinstance(value, str) for value in result.config.values()):
            problems.append("Verified.config values must be strings, as typed values are")
        own = run.returned if isinstance(run.returned, Verified) else result
        return problems + self.leaks(own, "the Verified result")

    def judge(
        self,
        run: Run,
        expect: tuple[type[HubError], ...],
        *,
        verified_ok: bool = False,
        retry_after: float | None = None,
    ) -> list[str]:
        """Everything wrong with how *run* ended, given that it had to end in *expect*."""
        broken = self.broke_off(run)
        if broken is not None:
            return [broken]
        wanted = _names(expect) + (" or Verified" if verified_ok else "")
        error = run.error
        if error is None:
            if verified_ok:  # what the flow returned, not the copy the core has masked
                own = run.returned if isinstance(run.returned, Verified) else run.result
                return self.leaks(own, "the result")
            return [f"the flow returned {run.result!r}; expected {wanted}"]
        problems: list[str] = []
        if not isinstance(error, HubError) or isinstance(error, PluginError):
            problems.append(f"{self.ending(error)}; expected {wanted}")
        elif not isinstance(error, expect):
            problems.append(f"the flow ended in {describe(error)}; expected {wanted}")
        else:
            if not str(error).strip():
                problems.append(f"{type(error).__name__} has no message for the person")
            problems += self.field_problems(error)
            if retry_after is not None and isinstance(error, RateLimited):
                got = error.retry_after
                if got is None or abs(got - retry_after) > 1:
                    problems.append(
                        f"RateLimited.retry_after is {got!r}, but the provider said "
                        f"Retry-After: {retry_after:g}"
                    )
        return problems + self.error_leaks(run)

    def ending(self, error: BaseException) -> str:
        """How a run ended in *error*, for the plugin's author: where a bug of theirs was raised."""
        cause = error.__cause__
        if isinstance(error, PluginError) and cause is not None and _is_bug(cause):
            return (
                f"the flow raised {describe(cause)}{_raised_at(cause)}, which hub reports as a "
                "bug in the plugin (PluginError)"
            )
        if isinstance(error, PluginError):
            return f"hub stopped the flow: {error}"
        return f"the flow ended in {describe(error)}"

    def field_problems(self, error: HubError) -> list[str]:
        """The fields *error* names that the provider does not declare."""
        names = {field.name for field in self.provider.fields}
        named = set(error.errors) if isinstance(error, FieldError) else set()
        if error.field is not None:
            named.add(error.field)
        unknown = sorted(named - names)
        if unknown:
            return [
                f"{type(error).__name__} names the field(s) {', '.join(map(repr, unknown))}, "
                f"which {self.provider.name} does not declare (its fields: "
                f"{', '.join(sorted(names))})"
            ]
        return []

    def leaks(self, value: object, what: str) -> list[str]:
        """A problem if *value* shows a piece of a secret anywhere a person or a log sees."""
        text = exposed_text(value)
        if isinstance(value, Verified):
            text += "\n" + json.dumps(value.details, default=str)
        return self._leaked(text, what)

    def error_leaks(self, run: Run) -> list[str]:
        """A problem if the error the flow raised, or the one the run ended in, shows a secret."""
        if run.raised is not None:
            problems = self._leaked(run.raised, "the error the flow raised")
            if problems:
                return problems
        return self.leaks(run.error, "the error") if run.error is not None else []

    def _leaked(self, text: str, what: str) -> list[str]:
        piece = find_secret(text, self.secrets)
        if piece is None:
            return []
        return [f"{what} shows a secret ({piece!r} is part of the key): {text.splitlines()[0]}"]


def _names(kinds: tuple[type[BaseException], ...]) -> str:
    if kinds == DOCUMENTED_ERRORS:
        return "a documented error (not PluginError)"
    return " or ".join(kind.__name__ for kind in kinds)


def _raised_at(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}"


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
