"""The plugin author kit: the conformance check, its pytest plugin, the testing helpers, the docs.

The check must pass for a plugin that keeps the contract and fail, saying why, for each way a
plugin can break it. Each broken plugin below differs from the good one in one point only.
"""

from __future__ import annotations

import ast
import enum
import inspect
import logging
import os
import re
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import attrs
import httpx
import pytest

from hub_core import (
    Account,
    AccountDisplay,
    Credentials,
    Field,
    FieldError,
    Flow,
    Guide,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    Section,
    Step,
    UnexpectedResponse,
    Verified,
    hookimpl,
    hookspecs,
)
from hub_core import Provider as ProviderType
from hub_core.plugins import Registry
from hub_core.testing import (
    CANARY,
    LEAK_WINDOW,
    FlowFailure,
    Routes,
    assert_no_secret,
    conformance,
    drive,
    drive_error,
    exposed_text,
    find_secret,
    mock_hub,
    respond,
    sample_account,
    sample_credentials,
    sample_values,
)
from hub_core.testing.conformance import (
    SCENARIOS,
    ConformanceError,
    ConformanceReport,
    Sample,
    assert_conforms,
    check_plugin,
    load_plugin,
)
from hub_core.testing.conformance.static import host_problems

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"

ACME = ProviderType(
    id="acme",
    name="Acme",
    fields=[
        Field("api_key", "API Key", kind="secret", help="Under Settings > API keys."),
        Field(
            "region",
            "Region",
            kind="choice",
            choices=[("us", "United States"), ("eu", "Europe")],
            default="us",
        ),
    ],
    guide=Guide(
        warning="Keys act as you.",
        sections=[Section("Create a key", "In Settings.", steps=[Step("Open Settings", "Go.")])],
    ),
    hosts=["api.acme.com", "api.eu.acme.com"],
    docs_url="https://docs.acme.com/keys",
)
ME = {"id": "42", "name": "Acme Team"}
URL = "https://api.acme.com/v1/me"
log = logging.getLogger("acme_plugin")


def happy() -> Routes:
    return Routes({"GET /v1/me": respond(json=ME)})


# As docs/plugins.md says to write it: no code for a 429, a Retry-After or a redirect, which
# the core's driver handles before the flow sees them.
def read(response: httpx.Response) -> Verified:
    """How a well-behaved flow reads the answer."""
    status = response.status_code
    if status == 401:
        raise InvalidCredentials("Acme rejected the API Key", field="api_key")
    if status == 403:
        raise PermissionDenied("The API Key may not read the team", field="api_key")
    if status >= 500:
        raise ProviderUnavailable(f"Acme failed (HTTP {status})")
    if status != 200:
        raise UnexpectedResponse(f"Acme answered HTTP {status}")
    try:
        body = response.json()
    except ValueError:
        raise UnexpectedResponse("Acme answered with something that is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise UnexpectedResponse("Acme's answer does not describe a team")
    return Verified(identity=f"team:{body['id']}", label=str(body.get("name") or body["id"]))


def good_flow(credentials: Credentials) -> Flow:
    response = yield httpx.Request(
        "GET", URL, headers={"Authorization": f"Bearer {credentials['api_key']}"}
    )
    return read(response)


def good_display(provider: ProviderType, account: Account) -> AccountDisplay:
    return AccountDisplay(
        title=account.label,
        subtitle=f"Acme team {account.identity}",
        rows=[("Region", account.config.get("region", "us"))],
        url="https://app.acme.com",
    )


class Plugin:
    """An in-code plugin; each argument replaces one part of the good one."""

    def __init__(
        self,
        provider: ProviderType = ACME,
        flow: Callable[[Credentials], Flow] = good_flow,
        display: Callable[[ProviderType, Account], object] = good_display,
        own_only: bool = True,
    ) -> None:
        self.provider = provider
        self.flow = flow
        self.display = display
        self.own_only = own_only

    @hookimpl
    def hub_providers(self) -> list[ProviderType]:
        return [self.provider]

    @hookimpl
    def hub_validate_credentials(
        self, provider: ProviderType, credentials: Credentials
    ) -> Flow | None:
        if self.own_only and provider.id != self.provider.id:
            return None
        return self.flow(credentials)

    @hookimpl
    def hub_account_display(self, provider: ProviderType, account: Account) -> object:
        if self.own_only and provider.id != self.provider.id:
            return None
        return self.display(provider, account)


def failures(report: ConformanceReport) -> dict[str, str]:
    return {
        f"{f.provider}: {f.check}" if f.provider else f.check: f.message for f in report.failures
    }


def failed(report: ConformanceReport, check: str) -> str:
    """The message of the failed check whose name starts with *check*; fails if none did."""
    found = [message for name, message in failures(report).items() if name.startswith(check)]
    assert found, f"expected {check!r} to fail; the report says:\n{report}"
    return found[0]


def responding(
    status: Mapping[int, Callable[[httpx.Response, Credentials], Verified]],
) -> Callable[[Credentials], Flow]:
    """The good flow, with the handling of some statuses replaced."""

    def flow(credentials: Credentials) -> Flow:
        response = yield httpx.Request(
            "GET", URL, headers={"Authorization": f"Bearer {credentials['api_key']}"}
        )
        if response.status_code in status:
            return status[response.status_code](response, credentials)
        return read(response)

    return flow


def replacing(
    caught: type[HubError], outcome: Callable[[], Verified]
) -> Callable[[Credentials], Flow]:
    """The good flow, putting *outcome()* in place of the *caught* error the driver throws in."""

    def flow(credentials: Credentials) -> Flow:
        try:
            response = yield httpx.Request("GET", URL)
        except caught:
            return outcome()
        return read(response)

    return flow


def raising(error: HubError) -> Callable[[], Verified]:
    def outcome() -> Verified:
        raise error from None

    return outcome


def finding(report: ConformanceReport, check: str) -> tuple[str, str]:
    """The outcome and message of the one finding whose check starts with *check*."""
    (found,) = [f for f in report.findings if f.check.startswith(check)]
    return found.outcome, found.message


# --- a good plugin passes ----------------------------------------------------------------------


def test_a_good_plugin_passes_every_check() -> None:
    # Written as docs/plugins.md says: nothing for what the driver handles.
    source = inspect.getsource(read) + inspect.getsource(good_flow)
    assert not re.search(r"429|retry|redirect|location|RateLimited", source, re.IGNORECASE)
    report = check_plugin(Plugin(), happy=happy())
    assert report.ok, report
    assert not report.skipped, report
    checks = {f.check for f in report.findings}
    for scenario in SCENARIOS:
        assert sum(c.startswith(f"response {scenario.name} ") for c in checks) == 1, scenario.name
    assert {"contract", "hooks", "schema", "json-schema", "guide", "hosts", "display", "logs"} <= {
        c.split(" ")[0] for c in checks
    }


def test_without_a_happy_path_the_success_checks_are_skipped_not_failed() -> None:
    report = check_plugin(Plugin())
    assert report.ok, report
    assert [f.check.split(" (")[0] for f in report.skipped] == [
        "happy-path",
        "response redirect-same-origin",
    ]
    assert all("Sample(happy=...)" in f.message for f in report.skipped)


def test_assert_conforms_returns_the_report_when_all_is_well() -> None:
    report = assert_conforms(Plugin(), Sample(happy=happy()))
    assert report.ok
    assert report.summary().startswith("hub conformance of Plugin: ")


def test_a_multi_request_flow_is_checked_at_every_request() -> None:
    def two_steps(credentials: Credentials) -> Flow:
        headers = {"Authorization": f"Bearer {credentials['api_key']}"}
        verified = read((yield httpx.Request("GET", URL, headers=headers)))
        plan = yield httpx.Request("GET", "https://api.acme.com/v1/plan", headers=headers)
        name = plan.json().get("plan") if plan.status_code == 200 else None
        return attrs.evolve(verified, details={"plan": name} if isinstance(name, str) else {})

    routes = Routes({"GET /v1/me": respond(json=ME), "GET /v1/plan": respond(json={"plan": "x"})})
    report = check_plugin(Plugin(flow=two_steps), happy=routes)
    assert report.ok, report
    later = [f.check for f in report.findings if f.check.startswith("request 2 of 2")]
    assert len(later) == len(conformance.scenarios.LATER)


def provider_check(plugin: Plugin, sample: Sample) -> conformance.dynamic.ProviderCheck:
    """The check of the plugin's one provider, to run a flow as the check runs it."""
    registry = Registry([plugin], load_entrypoints=False)
    credentials = sample_credentials(ACME)
    return conformance.dynamic.ProviderCheck(
        registry=registry,
        label="Plugin",
        provider=ACME,
        sample=sample,
        hooks=set(HOOKS),
        values=sample_values(ACME),
        credentials=credentials,
        findings=conformance.report.Findings(),
    )


@pytest.mark.parametrize(
    ("scenario", "sent", "outcome"),
    [
        ("503", 3, "ProviderUnavailable"),  # retried twice by the driver, then handed over
        ("timeout", 3, "ProviderUnavailable"),  # a real httpx.ReadTimeout, retried too
        ("429", 3, "RateLimited"),  # Retry-After waited out twice, then the driver's error
        ("500", 1, "ProviderUnavailable"),  # not retried
        ("redirect-elsewhere", 1, "UnexpectedResponse"),  # refused by the driver
        ("redirect-same-origin", 2, "Verified"),  # followed to the happy answer
    ],
)
def test_a_scenario_meets_every_attempt_the_driver_makes(
    scenario: str, sent: int, outcome: str
) -> None:
    check = provider_check(Plugin(), Sample(happy=happy()))
    run = check.drive(conformance.scenarios.BY_NAME[scenario])
    assert (len(run.requests), run.asked, run.outcome) == (sent, 1, outcome)
    assert {str(request.url) for request in run.requests} == {URL}


def test_the_429_ends_in_the_drivers_rate_limit_with_the_retry_after() -> None:
    run = provider_check(Plugin(), Sample()).drive(conformance.scenarios.BY_NAME["429"])
    assert isinstance(run.error, RateLimited)
    assert run.error.retry_after == conformance.scenarios.RETRY_AFTER


def test_a_later_failure_meets_the_retries_of_its_request_only() -> None:
    def two_steps(credentials: Credentials) -> Flow:
        verified = read((yield httpx.Request("GET", URL)))
        try:
            yield httpx.Request("GET", "https://api.acme.com/v1/plan")
        except ProviderUnavailable:
            return attrs.evolve(verified, details={"plan": None})
        return verified

    routes = Routes({"GET /v1/me": respond(json=ME), "GET /v1/plan": respond(json={"plan": "x"})})
    run = provider_check(Plugin(flow=two_steps), Sample(happy=routes)).drive(
        conformance.scenarios.BY_NAME["timeout"], at=1
    )
    assert [request.url.path for request in run.requests] == ["/v1/me", *["/v1/plan"] * 3]
    assert run.result is not None
    assert run.result.details == {"plan": None}


def test_a_same_origin_redirect_passes_for_a_plain_plugin() -> None:
    report = check_plugin(Plugin(), happy=happy())
    assert finding(report, "response redirect-same-") == ("pass", "Verified")


def test_a_flow_that_breaks_on_a_followed_redirect_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        request = httpx.Request("GET", URL)
        response = yield request
        # Pairs answers with requests by identity: wrong once the driver follows a redirect.
        if response.request is not request:
            raise UnexpectedResponse("Acme answered a request hub did not send")
        return read(response)

    report = check_plugin(Plugin(flow=flow), happy=happy())
    assert [name.split(" (")[0] for name in failures(report)] == [
        "acme: response redirect-same-origin"
    ]
    message = failed(report, "acme: response redirect-same-origin")
    assert "ended in UnexpectedResponse: Acme answered a request hub did not send" in message
    assert "hint: the core follows the redirect" in message


# --- each broken point fails, saying why -------------------------------------------------------


def test_a_request_to_an_undeclared_host_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        response = yield httpx.Request("GET", "https://api.acme.net/v1/me")
        return read(response)

    message = failed(check_plugin(Plugin(flow=flow), happy=happy()), "acme: flow")
    assert "api.acme.net" in message
    assert "not among the hosts" in message


def test_a_later_request_to_an_undeclared_host_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        verified = read((yield httpx.Request("GET", URL)))
        yield httpx.Request("POST", "https://telemetry.acme-metrics.io/event")
        return verified

    report = check_plugin(Plugin(flow=flow), happy=happy())
    assert "telemetry.acme-metrics.io" in failed(report, "acme: happy-path")


def test_a_plain_http_request_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        return read((yield httpx.Request("GET", "http://api.acme.com/v1/me")))

    assert "HTTPS only" in failed(check_plugin(Plugin(flow=flow)), "acme: flow")


def test_a_secret_in_the_url_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        return read((yield httpx.Request("GET", URL, params={"key": credentials["api_key"]})))

    message = failed(check_plugin(Plugin(flow=flow)), "acme: flow")
    assert "secret into the address" in message


def test_swallowing_the_refused_redirect_to_another_host_fails() -> None:
    # The driver throws in UnexpectedResponse: it refused to follow to login.elsewhere.
    flow = replacing(UnexpectedResponse, lambda: Verified("team:redirected", "Redirected"))
    report = check_plugin(Plugin(flow=flow), happy=happy())
    message = failed(report, "acme: response redirect-elsewhere")
    assert "returned Verified" in message
    assert "expected UnexpectedResponse" in message


def test_a_flow_that_asks_nothing_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        if not credentials:  # never: this yield only makes the function a generator
            yield httpx.Request("GET", URL)
        return Verified("team:1", "Team")

    assert "without asking Acme" in failed(check_plugin(Plugin(flow=flow)), "acme: flow")


def test_a_runaway_flow_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        while True:
            yield httpx.Request("GET", URL)

    report = check_plugin(Plugin(flow=flow), happy=happy())
    message = failed(report, "acme: happy-path")
    assert "a runaway flow" in message
    assert "more than 25 requests" in message


def test_leaking_the_key_in_a_message_fails() -> None:
    def leak(response: httpx.Response, credentials: Credentials) -> Verified:
        raise InvalidCredentials(f"Acme rejected {credentials['api_key']}", field="api_key")

    report = check_plugin(Plugin(flow=responding({401: leak})))
    message = failed(report, "acme: response 401 ")
    assert "the error the flow raised shows a secret" in message
    assert CANARY in message
    # The driver masks the key in what leaves it; the plugin's own message is still at fault.
    flow = responding({401: leak})(sample_credentials(ACME))
    error = drive_error(flow, [respond(401)], provider=ACME, secrets=[CANARY]).error
    assert CANARY not in str(error)


def test_leaking_part_of_the_key_fails() -> None:
    def leak(response: httpx.Response, credentials: Credentials) -> Verified:
        raise InvalidCredentials(f"key {credentials['api_key'][:20]}… rejected", field="api_key")

    report = check_plugin(Plugin(flow=responding({401: leak})))
    message = failed(report, "acme: response 401 (HTTP 401: the key is wrong")
    assert f"{CANARY[:LEAK_WINDOW]!r} is part of the key" in message


def test_quoting_a_provider_body_that_echoes_the_key_fails() -> None:
    def quote(response: httpx.Response, credentials: Credentials) -> Verified:
        raise PermissionDenied(f"Acme said: {response.json()['message']}", field="api_key")

    report = check_plugin(Plugin(flow=responding({403: quote})))
    assert "shows a secret" in failed(report, "acme: response 403 ")


def test_swallowing_a_401_into_verified_fails() -> None:
    def swallow(response: httpx.Response, credentials: Credentials) -> Verified:
        return Verified("team:unknown", "Unknown team")

    message = failed(check_plugin(Plugin(flow=responding({401: swallow}))), "acme: response 401")
    assert "returned Verified" in message
    assert "expected InvalidCredentials" in message


def test_a_key_error_on_a_500_fails() -> None:
    def crash(response: httpx.Response, credentials: Credentials) -> Verified:
        raise ProviderUnavailable(response.json()["detail_message"])

    report = check_plugin(Plugin(flow=responding({500: crash})))
    message = failed(report, "acme: response 500 (HTTP 500: the provider failed)")
    assert "raised KeyError: 'detail_message'" in message
    assert "PluginError" in message
    assert "test_conformance.py" in message  # where it was raised


def test_the_wrong_error_for_a_403_fails_unless_the_provider_documents_it() -> None:
    def invalid(response: httpx.Response, credentials: Credentials) -> Verified:
        raise InvalidCredentials("Acme refused the key", field="api_key")

    plugin = Plugin(flow=responding({403: invalid}))
    message = failed(check_plugin(plugin), "acme: response 403")
    assert "ended in InvalidCredentials" in message
    assert "expected PermissionDenied" in message
    assert check_plugin(plugin, expect={"403": InvalidCredentials}).ok


def test_a_429_ends_in_the_drivers_rate_limit_for_a_plugin_without_429_code() -> None:
    report = check_plugin(Plugin())
    assert finding(report, "response 429 ") == ("pass", "RateLimited")


def test_replacing_the_drivers_retry_after_fails() -> None:
    flow = replacing(RateLimited, raising(RateLimited("Acme is limiting requests")))
    message = failed(check_plugin(Plugin(flow=flow)), "acme: response 429")
    assert "retry_after is None" in message
    assert "Retry-After: 7" in message


def test_replacing_the_drivers_rate_limit_fails() -> None:
    flow = replacing(RateLimited, raising(UnexpectedResponse("something went wrong")))
    report = check_plugin(Plugin(flow=flow))
    message = failed(report, "acme: response 429 (HTTP 429")
    assert "ended in UnexpectedResponse" in message
    assert "hint: let the RateLimited thrown in at the yield propagate" in message


def test_swallowing_a_timeout_fails() -> None:
    flow = replacing(ProviderUnavailable, lambda: Verified("team:offline", "Offline"))
    report = check_plugin(Plugin(flow=flow))
    assert "returned Verified" in failed(report, "acme: response timeout")
    assert "returned Verified" in failed(report, "acme: response connect")


def test_a_flow_relying_on_the_drivers_json_handling_passes() -> None:
    def flow(credentials: Credentials) -> Flow:
        response = yield httpx.Request("GET", URL)
        if response.status_code != 200:
            return read(response)
        body = response.json()  # the core turns a JSONDecodeError into UnexpectedResponse
        if not isinstance(body, dict) or "id" not in body:
            raise UnexpectedResponse("not a team")
        return Verified(f"team:{body['id']}", "Team")

    report = check_plugin(Plugin(flow=flow), happy=happy())
    assert report.ok, report


def test_a_body_of_another_shape_that_crashes_the_flow_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        response = yield httpx.Request("GET", URL)
        if response.status_code != 200:
            return read(response)
        body = response.json()
        return Verified(f"team:{body['id']}", body["name"])

    report = check_plugin(Plugin(flow=flow), happy=happy())
    assert "raised KeyError: 'id'" in failed(report, "acme: response wrong-json")


def test_an_error_naming_an_undeclared_field_fails() -> None:
    def tenant(response: httpx.Response, credentials: Credentials) -> Verified:
        raise FieldError("tenant", "No such tenant")

    message = failed(check_plugin(Plugin(flow=responding({404: tenant}))), "acme: response 404")
    assert "'tenant'" in message
    assert "does not declare" in message


def test_a_crash_at_a_later_request_fails() -> None:
    def two_steps(credentials: Credentials) -> Flow:
        verified = read((yield httpx.Request("GET", URL)))
        plan = yield httpx.Request("GET", "https://api.acme.com/v1/plan")
        return attrs.evolve(verified, details={"plan": plan.json()["plan"]})

    routes = Routes({"GET /v1/me": respond(json=ME), "GET /v1/plan": respond(json={"plan": "x"})})
    report = check_plugin(Plugin(flow=two_steps), happy=routes)
    assert "raised KeyError" in failed(report, "acme: request 2 of 2: response 401")


def test_a_result_that_is_not_verified_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        yield httpx.Request("GET", URL)
        return {"identity": "team:1"}  # type: ignore[return-value]

    report = check_plugin(Plugin(flow=flow), happy=happy())
    assert "not Verified" in failed(report, "acme: happy-path")


def test_a_secret_in_the_verified_details_fails() -> None:
    def keep(response: httpx.Response, credentials: Credentials) -> Verified:
        return Verified("team:42", "Team", details={"token": credentials["api_key"]})

    report = check_plugin(Plugin(flow=responding({200: keep})), happy=happy())
    assert "shows a secret" in failed(report, "acme: happy-path")


def test_details_that_cannot_be_stored_as_json_fail() -> None:
    def keep(response: httpx.Response, credentials: Credentials) -> Verified:
        return Verified("team:42", "Team", details={"seen": datetime.now(UTC)})

    report = check_plugin(Plugin(flow=responding({200: keep})), happy=happy())
    assert "not JSON-serialisable" in failed(report, "acme: happy-path")


def test_verified_config_holding_the_key_or_an_unknown_field_fails() -> None:
    def keep(response: httpx.Response, credentials: Credentials) -> Verified:
        return Verified("team:42", "Team", config={"api_key": "x", "tenant": "t"})

    report = check_plugin(Plugin(flow=responding({200: keep})), happy=happy())
    assert "Verified.config names 'api_key', 'tenant'" in failed(report, "acme: happy-path")


def test_verified_config_reaches_the_sample_account() -> None:
    verified = Verified("team:42", "Team", config={"region": "eu", "api_key": "no"})
    account = sample_account(ACME, verified)
    assert account.config == {"region": "eu"}


def test_logging_the_key_fails() -> None:
    def flow(credentials: Credentials) -> Flow:
        log.debug("checking key %s", credentials["api_key"])
        return read((yield httpx.Request("GET", URL)))

    message = failed(check_plugin(Plugin(flow=flow)), "acme: logs")
    assert "acme_plugin: checking key" in message


def test_a_display_that_is_not_an_account_display_fails() -> None:
    def display(provider: ProviderType, account: Account) -> object:
        return {"title": account.label}

    message = failed(check_plugin(Plugin(display=display)), "acme: display")
    assert "returned dict, not AccountDisplay" in message


def test_a_display_that_needs_details_fails_for_a_bare_account() -> None:
    def display(provider: ProviderType, account: Account) -> object:
        return AccountDisplay(title=account.details["team_name"])

    report = check_plugin(Plugin(display=display), happy=happy())
    assert "an account with no details" in failed(report, "acme: display")


def test_a_display_linking_over_http_fails() -> None:
    def display(provider: ProviderType, account: Account) -> object:
        return AccountDisplay(title=account.label, url="http://app.acme.com")

    assert "not https://" in failed(check_plugin(Plugin(display=display)), "acme: display")


def test_a_display_returning_none_uses_the_default_and_passes() -> None:
    report = check_plugin(Plugin(display=lambda provider, account: None), happy=happy())
    assert report.ok, report


def test_answering_for_another_plugins_provider_fails() -> None:
    message = failed(check_plugin(Plugin(own_only=False)), "own-providers-only")
    assert "hub_validate_credentials answered generator" in message
    assert "hub_account_display answered AccountDisplay" in message


def test_a_missing_guide_fails() -> None:
    plugin = Plugin(provider=attrs.evolve(ACME, guide=Guide(warning="Careful.")))
    assert "no sections" in failed(check_plugin(plugin), "acme: guide")


def test_an_empty_guide_section_fails() -> None:
    guide = Guide(sections=[Section("Create a key")])
    plugin = Plugin(provider=attrs.evolve(ACME, guide=guide))
    assert "'Create a key' has neither text nor steps" in failed(
        check_plugin(plugin), "acme: guide"
    )


def test_a_key_field_that_is_not_secret_fails() -> None:
    fields = [attrs.evolve(ACME.fields[0], kind="text"), ACME.fields[1]]
    plugin = Plugin(provider=attrs.evolve(ACME, fields=fields))
    assert "kind='secret'" in failed(check_plugin(plugin), "acme: schema")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"pattern": "[a-z]+", "default": "Team 1"}, "does not have the expected format"),
        ({"kind": "url", "default": "ftp://files"}, "web address starting with https://"),
        ({"max_length": 4, "default": "teams"}, "too long"),
        ({"default": "a\nb"}, "line break"),
    ],
)
def test_a_default_that_fails_its_own_check_cannot_even_be_declared(
    options: dict[str, object], why: str
) -> None:
    # A default is used as it is, never typed: Field refuses one its own check would refuse.
    with pytest.raises(ValueError, match=f"default of 'team' fails the field's own check: .*{why}"):
        Field("team", "Team", **options)  # type: ignore[arg-type]


def test_a_kind_that_is_none_names_the_kinds() -> None:
    with pytest.raises(ValueError, match="has kind 'password'") as caught:
        Field("api_key", "API Key", kind="password")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "field 'api_key' has kind 'password'; a kind is one of text, secret, choice, url "
        "(a key is kind='secret')"
    )


def test_an_http_docs_url_fails() -> None:
    plugin = Plugin(provider=attrs.evolve(ACME, docs_url="http://docs.acme.com"))
    assert "not an https:// address" in failed(check_plugin(plugin), "acme: schema")


def test_a_pattern_json_schema_cannot_express_cannot_even_be_declared() -> None:
    # Python accepts a global flag mid-pattern only unanchored; Field checks the anchored
    # form it exports, so such a schema never reaches the conformance check.
    with pytest.raises(ValueError, match="invalid pattern"):
        Field("team", "Team", pattern="(?i)[a-z]+", required=False)


class IPHostPlugin(Plugin):
    @hookimpl
    def hub_providers(self) -> list[ProviderType]:
        return [attrs.evolve(ACME, hosts=["api.acme.com", "10.0.0.7"])]


def test_an_ip_address_host_fails() -> None:
    # One rule (hub_core.model.host_problem): Provider itself refuses the host, so the
    # plugin's hub_providers fails, and the check reports it in the rule's words.
    report = check_plugin(IPHostPlugin())
    assert "'10.0.0.7' is an IP address" in failed(report, "contract")
    assert host_problems(ACME) == []


def test_sample_values_the_schema_refuses_fail_with_a_hint_and_can_be_given() -> None:
    team = Field("team", "Team code", pattern="[A-Z]{3}")
    plugin = Plugin(provider=attrs.evolve(ACME, fields=[*ACME.fields, team]))
    message = failed(check_plugin(plugin), "acme: sample")
    assert "Team code does not have the expected format" in message
    assert "Sample(values=" in message
    assert check_plugin(plugin, values={"team": "ABC"}).ok


def test_a_misspelled_hook_fails_the_contract() -> None:
    class Misspelled:
        @hookimpl
        def hub_provider(self) -> list[ProviderType]:
            return [ACME]

    message = failed(check_plugin(Misspelled()), "contract")
    assert "did you mean 'hub_providers'" in message


def test_a_plugin_without_a_flow_hook_fails() -> None:
    class DeclaresOnly:
        @hookimpl
        def hub_providers(self) -> list[ProviderType]:
            return [ACME]

    report = check_plugin(DeclaresOnly())
    assert "no hub_validate_credentials" in failed(report, "hooks")
    assert "no installed plugin can check keys" in failed(report, "acme: flow")


def test_a_plugin_without_providers_fails() -> None:
    class Empty:
        @hookimpl
        def hub_providers(self) -> list[ProviderType]:
            return []

    assert "declares no provider" in failed(check_plugin(Empty()), "providers")


def test_samples_for_an_undeclared_provider_fail() -> None:
    report = check_plugin(Plugin(), {"acme": Sample(happy=happy()), "acme-typo": Sample()})
    assert "acme-typo" in failed(report, "samples")


def test_a_failing_happy_path_responder_is_reported_as_such() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("fixture bug")

    assert "responder" in failed(check_plugin(Plugin(), happy=broken), "acme: happy-path")


# --- the report and the Sample ------------------------------------------------------------------


def test_the_report_lists_failures_and_skips_but_not_passes() -> None:
    report = check_plugin(Plugin(provider=attrs.evolve(ACME, guide=Guide())))
    text = str(report)
    assert text.splitlines()[0] == report.summary()
    assert "FAIL acme: guide: the guide has no sections" in text
    assert "SKIP acme: happy-path" in text
    assert "PASS" not in text


def test_assert_conforms_raises_an_assertion_error_holding_the_report() -> None:
    with pytest.raises(ConformanceError) as caught:
        assert_conforms(Plugin(own_only=False))
    assert isinstance(caught.value, AssertionError)
    assert not caught.value.report.ok
    assert "FAIL own-providers-only" in str(caught.value)


def test_a_sample_refuses_unknown_scenarios_and_non_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown scenario '4O3'"):
        Sample(expect={"4O3": PermissionDenied})
    with pytest.raises(ValueError, match="unknown scenario 'timeouts'"):
        Sample(skip={"timeouts"})
    with pytest.raises(TypeError, match="HubError subclasses"):
        Sample(expect={"403": (KeyError,)})  # type: ignore[dict-item]


def test_a_skipped_scenario_is_reported_as_skipped() -> None:
    def swallow(response: httpx.Response, credentials: Credentials) -> Verified:
        return Verified("team:unknown", "Unknown team")

    report = check_plugin(Plugin(flow=responding({404: swallow})), skip={"404"})
    assert report.ok, report
    assert any(f.check.startswith("response 404") for f in report.skipped)


def test_a_sample_and_its_keywords_cannot_be_mixed() -> None:
    with pytest.raises(TypeError, match="not both"):
        check_plugin(Plugin(), Sample(), happy=happy())


def test_load_plugin_finds_entry_points_and_modules() -> None:
    import hub_elastic

    assert load_plugin("elastic") is hub_elastic
    assert load_plugin("hub_elastic") is hub_elastic
    with pytest.raises(LookupError, match="no module is named 'hub_no_such_plugin'") as caught:
        load_plugin("hub_no_such_plugin")
    assert "the installed entry points: " in str(caught.value)
    assert "elastic" in str(caught.value).rpartition(":")[2]


def test_load_plugin_says_which_entry_point_cannot_be_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    import hub_core.testing.conformance as conformance

    broken = EntryPoint(name="acme", value="hub_acme_missing:plugin", group="hub")
    monkeypatch.setattr(conformance, "entry_points", lambda group: [broken])
    with pytest.raises(LookupError) as caught:
        load_plugin("acme")
    message = str(caught.value)
    assert "the hub entry point 'acme' (hub_acme_missing:plugin) cannot be loaded" in message
    assert "ModuleNotFoundError" in message


# --- the testing kit -----------------------------------------------------------------------------


def test_sample_values_follow_the_schema() -> None:
    provider = attrs.evolve(
        ACME,
        fields=[
            *ACME.fields,
            Field("tier", "Tier", kind="choice", choices=["gold", "silver"], required=False),
            Field("site", "Site", kind="url"),
            Field("tenant", "Tenant", placeholder="my-company", pattern="[a-z-]+"),
            Field("team", "Team", placeholder="Acme…"),
        ],
    )
    assert sample_values(provider) == {
        "api_key": CANARY,
        "region": "us",  # the default
        "tier": "gold",  # the first choice
        "site": "https://example.com",
        "tenant": "my-company",  # a placeholder that is a valid value
        "team": "example",  # not a placeholder with an ellipsis
    }
    assert sample_values(provider, region="eu")["region"] == "eu"
    with pytest.raises(ValueError, match="has no field 'regoin'"):
        sample_values(provider, regoin="eu")


def test_sample_credentials_are_validated_and_mask_the_canary() -> None:
    credentials = sample_credentials(ACME, region="Europe")
    assert credentials["region"] == "eu"
    assert CANARY not in repr(credentials)
    with pytest.raises(FieldError):
        sample_credentials(ACME, region="mars")


def test_a_sample_account_holds_no_secret_and_what_the_check_found() -> None:
    verified = Verified("team:42", "Team", details={"plan": "pro"})
    account = sample_account(ACME, verified, values={"region": "eu"})
    assert (account.provider_id, account.identity, account.label) == ("acme", "team:42", "Team")
    assert account.config == {"region": "eu"}
    assert account.details == {"plan": "pro"}
    assert_no_secret(account.to_json())
    assert sample_account(ACME).identity == "sample:acme"


def test_drive_error_returns_the_error_and_the_requests() -> None:
    failure = drive_error(
        good_flow(sample_credentials(ACME)), [respond(401)], InvalidCredentials, provider=ACME
    )
    assert isinstance(failure, FlowFailure)
    assert failure.error.field == "api_key"
    assert failure.urls == [URL]


def test_drive_error_fails_when_the_flow_verifies_or_raises_something_else() -> None:
    credentials = sample_credentials(ACME)
    with pytest.raises(AssertionError, match="returned Verified"):
        drive_error(good_flow(credentials), [respond(json=ME)], provider=ACME)
    with pytest.raises(AssertionError, match="raised InvalidCredentials"):
        drive_error(good_flow(credentials), [respond(401)], PermissionDenied, provider=ACME)


def test_flow_run_lists_urls_and_hosts() -> None:
    run = drive(good_flow(sample_credentials(ACME)), happy(), provider=ACME)
    assert run.urls == [URL]
    assert run.hosts == ["api.acme.com"]


def test_routes_match_method_path_and_host_and_record_everything() -> None:
    routes = Routes(
        {
            "GET /v1/me": respond(json=ME),
            "GET https://api.eu.acme.com/v1/me": respond(json={"id": "eu"}),
            "POST /v1/echo": lambda request: respond(text=request.content.decode()),
        }
    )
    assert routes(httpx.Request("GET", URL)).json() == ME
    assert routes(httpx.Request("GET", URL)).json() == ME  # answered again: a copy
    assert routes(httpx.Request("GET", "https://api.eu.acme.com/v1/me")).json() == {"id": "eu"}
    assert routes(httpx.Request("POST", "https://x.acme.com/v1/echo", content=b"hi")).text == "hi"
    missing = routes(httpx.Request("DELETE", URL))
    assert missing.status_code == 404
    assert len(routes.requests) == 5
    assert [r.method for r in routes.unmatched] == ["DELETE"]


def test_mock_hub_runs_the_plugin_under_the_real_driver() -> None:
    hub = mock_hub(Plugin(), happy())
    assert hub.verify("acme", {"api_key": "k" * 20}).identity == "team:42"

    def down(request: httpx.Request) -> httpx.Response | BaseException:
        return httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(ProviderUnavailable) as caught:
        mock_hub(Plugin(), down).verify("acme", {"api_key": "k" * 20})
    assert caught.value.reason == "timeout"


def test_find_secret_catches_whole_and_partial_copies() -> None:
    assert find_secret(f"key {CANARY}!", [CANARY]) == CANARY
    assert find_secret(f"key {CANARY[3:21]}…", [CANARY]) == CANARY[3 : 3 + LEAK_WINDOW]
    assert find_secret(f"ends in {CANARY[-4:]}", [CANARY]) is None
    assert find_secret("us", ["us"]) is None  # too short to be told from a word


def test_exposed_text_covers_args_field_messages_and_chained_errors() -> None:
    error = FieldError.many({"api_key": "bad", "region": "worse"})
    try:
        try:
            raise KeyError(f"inner {CANARY}")
        except KeyError as exc:
            raise InvalidCredentials("outer") from exc
    except InvalidCredentials as exc:
        chained: HubError = exc
    assert "worse" in exposed_text(error)
    assert CANARY in exposed_text(chained)
    with pytest.raises(AssertionError, match="a secret"):
        assert_no_secret(chained)
    assert_no_secret(error)


def test_importing_the_kit_does_not_import_httpx() -> None:
    code = (
        "import sys, hub_core.testing, hub_core.testing.pytest_plugin\n"
        "heavy = {'httpx', 'trustme', 'jsonschema', 'hub_core.testing.conformance'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# --- the pytest plugin ----------------------------------------------------------------------------

PLAIN_TEST = "def test_plain():\n    assert True\n"
BROKEN_PLUGIN = textwrap.dedent(
    """
    import httpx
    from hub_core import Field, Guide, Provider, Section, hookimpl

    PROVIDER = Provider(
        id="broken",
        name="Broken",
        fields=[Field("api_key", "API Key", kind="secret")],
        guide=Guide(sections=[Section("Create a key", "Somewhere.")]),
        hosts=["api.broken.com"],
    )

    @hookimpl
    def hub_providers():
        return [PROVIDER]

    @hookimpl
    def hub_validate_credentials(provider, credentials):
        def flow():
            yield httpx.Request("GET", "https://api.broken.net/me")
        return flow() if provider.id == "broken" else None
    """
)
FIXTURE_TEST = textwrap.dedent(
    """
    import pytest
    import hub_elastic
    from hub_core.testing import Routes, respond
    from hub_core.testing.conformance import ConformanceError

    import broken_plugin

    def test_elastic(hub_conformance):
        orgs = {"organizations": [{"id": "1", "name": "Org"}]}
        report = hub_conformance(
            hub_elastic, happy=Routes({"GET /api/v1/organizations": respond(json=orgs)})
        )
        assert report.ok and not report.skipped

    def test_broken(hub_conformance):
        with pytest.raises(ConformanceError, match="api.broken.net"):
            hub_conformance(broken_plugin)
    """
)


def run_pytest(where: Path, *args: str, autoload: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = str(where)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={where}", *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "test_plain.py").write_text(PLAIN_TEST)
    (tmp_path / "broken_plugin.py").write_text(BROKEN_PLUGIN)
    return tmp_path


@pytest.mark.slow
def test_the_pytest_plugin_changes_nothing_unless_asked(suite: Path) -> None:
    collected = run_pytest(suite, "--collect-only", "-q", "--import-mode=importlib")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert [line for line in collected.stdout.splitlines() if "::" in line] == [
        "test_plain.py::test_plain"
    ]
    for args in (["-p", "no:hub"], ["-p", "no:hub", "-p", "no:randomly", "-p", "no:doctest"]):
        done = run_pytest(suite, "-q", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 passed" in done.stdout


@pytest.mark.slow
def test_the_option_checks_named_plugins(suite: Path) -> None:
    good = run_pytest(suite, "-v", "--hub-conformance=elastic", "--hub-conformance=hub_qlik")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "hub-conformance[elastic] PASSED" in good.stdout
    assert "hub-conformance[hub_qlik] PASSED" in good.stdout
    bad = run_pytest(suite, "--hub-conformance=broken_plugin", "--import-mode=importlib")
    assert bad.returncode == 1
    assert "FAIL broken: flow: the first request would be refused" in bad.stdout
    assert "api.broken.net" in bad.stdout
    unknown = run_pytest(suite, "--hub-conformance=hub_no_such_plugin")
    assert unknown.returncode == 1
    assert "no module is named 'hub_no_such_plugin'" in unknown.stdout
    assert "Traceback" not in unknown.stdout
    assert "importlib" not in unknown.stdout


@pytest.mark.slow
def test_the_fixture_runs_the_check(suite: Path) -> None:
    (suite / "test_fixture.py").write_text(FIXTURE_TEST)
    done = run_pytest(suite, "-q", "--import-mode=importlib", "test_fixture.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.slow
def test_without_autoload_the_plugin_is_enabled_by_name(suite: Path) -> None:
    (suite / "test_fixture.py").write_text(FIXTURE_TEST)
    off = run_pytest(suite, "-q", "test_fixture.py", autoload=False)
    assert "fixture 'hub_conformance' not found" in off.stdout
    on = run_pytest(suite, "-q", "-p", "hub", "test_fixture.py", autoload=False)
    assert on.returncode == 0, on.stdout + on.stderr


# --- the plugin author guide ---------------------------------------------------------------------


def hookspec_reference(name: str) -> str:
    """A hook spec as docs/plugins.md shows it: decorator, signature and docstring, verbatim."""
    function = getattr(hookspecs, name)
    options = getattr(function, f"{hookspecs.PROJECT}_spec")
    decorator = "@hookspec(firstresult=True)" if options.get("firstresult") else "@hookspec"
    signature = inspect.signature(function)
    parameters = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    docstring = textwrap.indent(inspect.getdoc(function) or "", "    ").replace("    \n", "\n")
    return (
        f"{decorator}\n"
        f"def {name}({parameters}) -> {signature.return_annotation}:\n"
        f'    """{docstring.lstrip()}\n    """\n'
    )


HOOKS = ["hub_providers", "hub_validate_credentials", "hub_account_display"]


@pytest.mark.parametrize("name", HOOKS)
def test_the_guide_quotes_each_hook_spec_verbatim(name: str) -> None:
    expected = hookspec_reference(name)
    assert expected in DOCS.read_text(), (
        f"docs/plugins.md does not show the current spec of {name}; paste this into its "
        f"hook reference:\n\n{expected}"
    )


def test_the_guide_documents_every_hook_and_nothing_else() -> None:
    text = DOCS.read_text()
    specs = {
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, f"{hookspecs.PROJECT}_spec")
    }
    assert specs == set(HOOKS)
    documented = set(re.findall(r"^def (hub_\w+)\(", text, flags=re.MULTILINE))
    assert specs <= documented


def test_the_guide_names_every_public_helper_of_the_kit() -> None:
    import hub_core.testing

    text = DOCS.read_text()
    names = [*hub_core.testing.__all__, *conformance.__all__]
    missing = [name for name in names if f"`{name}" not in text and f" {name}(" not in text]
    assert not missing, f"docs/plugins.md does not mention {missing}"


def test_the_guides_python_examples_parse() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 5
    for block in blocks:
        ast.parse(block)


def test_the_guide_states_the_entry_point_group_and_the_template_rename() -> None:
    text = DOCS.read_text()
    assert "[project.entry-points.hub]" in text
    assert "sed -i -e 's/Example/Acme/g' -e 's/example/acme/g'" in text  # as test_template does
    names = {path.name for path in (ROOT / "templates" / "hub-plugin").iterdir()}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "src", "tests"} <= names


def test_hook_reference_rendering_matches_the_spec_source() -> None:
    rendered = hookspec_reference("hub_account_display")
    assert rendered.startswith("@hookspec(firstresult=True)\ndef hub_account_display(")
    assert "-> AccountDisplay | None:" in rendered
    source = inspect.getsource(hookspecs.hub_account_display)
    assert rendered.splitlines()[2].strip() in source


def test_an_unresolved_host_turned_into_a_field_error_fails() -> None:
    # No DNS is no verdict on the values: `hub check` would record the key as invalid.
    def flow(credentials: Credentials) -> Flow:
        try:
            response = yield httpx.Request("GET", URL)
        except ProviderUnavailable as exc:
            if exc.reason == "unresolved":
                raise FieldError("region", "there is no such region") from exc
            raise
        return read(response)

    report = check_plugin(Plugin(flow=flow))
    message = failed(report, "acme: response unresolved")
    assert "FieldError" in message
    assert "not a FieldError" in message  # the hint says why


def test_an_unresolved_host_with_the_likely_field_passes() -> None:
    def flow(credentials: Credentials) -> Flow:
        try:
            response = yield httpx.Request("GET", URL)
        except ProviderUnavailable as exc:
            if exc.reason == "unresolved":
                message = f"{exc.message}. Check the Region."
                raise ProviderUnavailable(message, reason=exc.reason, field="region") from exc
            raise
        return read(response)

    report = check_plugin(Plugin(flow=flow))
    assert finding(report, "response unresolved ") == ("pass", "ProviderUnavailable")


# --- 1. a leak in the Verified of a later-request failure passes -----------------------------


def leaky_two_steps(credentials: Credentials) -> Flow:
    """A best-effort second request; on a failure it copies the provider's message into
    details, unmasked: the check reads what the flow returned, not the core's masked copy."""
    headers = {"Authorization": f"Bearer {credentials['api_key']}"}
    verified = read((yield httpx.Request("GET", URL, headers=headers)))
    plan = yield httpx.Request("GET", "https://api.acme.com/v1/plan", headers=headers)
    if plan.status_code == 200:
        return attrs.evolve(verified, details={"plan": "x"})
    try:
        note = plan.json().get("message")
    except ValueError:
        note = None
    return attrs.evolve(verified, details={"plan_error": str(note)})


def test_a_key_leaked_into_the_result_after_a_later_failure_fails_the_check() -> None:
    routes = Routes({"GET /v1/me": respond(json=ME), "GET /v1/plan": respond(json={"plan": "x"})})
    report = check_plugin(Plugin(flow=leaky_two_steps), happy=routes)
    later = [f for f in report.findings if f.check == "request 2 of 2: response 401"]
    assert later
    assert later[0].outcome == "fail"


def test_the_same_leak_on_the_happy_path_is_caught_too() -> None:
    from hub_core.testing.conformance.scenarios import echo

    routes = Routes(
        {
            "GET /v1/me": respond(json=ME),
            "GET /v1/plan": respond(401, json=echo(401, (CANARY,))),
        }
    )
    report = check_plugin(Plugin(flow=leaky_two_steps), happy=routes)
    happy = [f for f in report.findings if f.check == "happy-path"]
    assert happy[0].outcome == "fail"
    assert "shows a secret" in happy[0].message


# --- 2. an exception whose __str__ fails crashes exposed_text and the whole check ------------


class ApiError(Exception):
    """A plugin's own exception whose message is read from the response, lazily."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__()
        self.response = response

    def __str__(self) -> str:
        return self.response.json()["error"]["message"]  # fails on bodies of another shape


def crashing_on_500(credentials: Credentials) -> Flow:
    response = yield httpx.Request(
        "GET", URL, headers={"Authorization": f"Bearer {credentials['api_key']}"}
    )
    if response.status_code == 500:
        raise ApiError(response)  # a plugin bug: the check must report it, not crash
    return read(response)


def test_exposed_text_does_not_crash_on_an_unreadable_exception() -> None:
    error = ApiError(respond(500, text="<html>"))
    text = exposed_text(error)
    assert "ApiError" in text


def test_check_plugin_reports_a_flow_raising_an_unreadable_exception() -> None:
    report = check_plugin(
        Plugin(flow=crashing_on_500), happy=Routes({"GET /v1/me": respond(json=ME)})
    )
    assert not report.ok
    assert any(f.check.startswith("response 500") for f in report.failures), report


# --- 3. a context suppressed with `from None` is counted as shown: false alarm ---------------


class Code(enum.Enum):
    BAD_KEY = "bad_key"


def hides_context(credentials: Credentials) -> Flow:
    response = yield httpx.Request(
        "GET", URL, headers={"Authorization": f"Bearer {credentials['api_key']}"}
    )
    if response.status_code == 401:
        try:
            Code(response.json().get("error"))  # ValueError quoting the provider's text
        except ValueError:
            # The idiomatic way to hide it: no traceback, log or message shows the context.
            raise InvalidCredentials("Acme rejected the API Key", field="api_key") from None
        raise InvalidCredentials("Acme rejected the API Key", field="api_key")
    return read(response)


def test_a_context_suppressed_with_from_none_is_not_a_leak() -> None:
    from hub_core.testing.conformance.scenarios import echo

    # What a person or a log sees of such an error: no key.
    try:
        next_flow = hides_context(Credentials({"api_key": CANARY}, secret=["api_key"]))
        next(next_flow)
        next_flow.send(respond(401, json=echo(401, (CANARY,))))
    except InvalidCredentials as exc:
        shown = "".join(traceback.format_exception(exc))
        assert find_secret(shown, [CANARY]) is None
    report = check_plugin(
        Plugin(flow=hides_context), happy=Routes({"GET /v1/me": respond(json=ME)})
    )
    assert report.ok, report  # hidden as a traceback hides it: no false alarm
