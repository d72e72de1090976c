"""hub_core.testing.drive: flows run under the production driver, against scripted answers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from hub_core import (
    Credentials,
    Field,
    FieldError,
    Guide,
    PluginError,
    Provider,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    Verified,
)
from hub_core.hookspecs import Flow
from hub_core.policy import Policy
from hub_core.testing import (
    UnusedResponses,
    drive,
    drive_error,
    drive_raw,
    respond,
    sample_credentials,
)

ACME = Provider(
    id="acme",
    name="Acme",
    fields=[Field("api_key", "API Key", kind="secret")],
    guide=Guide(),
    hosts=["api.acme.test"],
)
KEY = "acme-secret-0123456789"


def flow(credentials: Any = None) -> Flow:
    try:
        response = yield httpx.Request("GET", "https://api.acme.test/me")
    except ProviderUnavailable as exc:
        if exc.reason == "unresolved":
            raise FieldError("tenant", "no such tenant") from exc
        raise
    second = yield httpx.Request("GET", "https://api.acme.test/more")
    return Verified(f"id:{response.json()['id']}", second.text)


def one(url: str = "https://api.acme.test/me") -> Flow:
    """A flow of one request that reports the status it was handed."""
    response = yield httpx.Request("GET", url, headers={"Authorization": f"Bearer {KEY}"})
    return Verified(f"status:{response.status_code}", response.text or "empty")


def test_drive_answers_in_order_and_records_requests() -> None:
    run = drive(flow(), [respond(json={"id": 3}), respond(text="Three")], provider=ACME)
    assert run.result == Verified("id:3", "Three")
    assert run.urls == ["https://api.acme.test/me", "https://api.acme.test/more"]
    assert run.waits == []


def test_drive_accepts_a_responder_function() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return respond(json={"id": 1}) if request.url.path == "/me" else respond(text="x")

    assert drive(flow(), answer, provider=ACME).result.identity == "id:1"


def test_a_429_is_waited_out_and_the_flow_receives_the_200() -> None:
    started = time.monotonic()
    run = drive(
        one(), [respond(429, headers={"Retry-After": "0"}), respond(text="ok")], provider=ACME
    )
    assert run.result == Verified("status:200", "ok")
    assert len(run.requests) == 2
    assert run.waits == [0.0]
    assert time.monotonic() - started < 5


def test_a_long_retry_after_is_waited_on_the_virtual_clock() -> None:
    started = time.monotonic()
    run = drive(
        one(), [respond(429, headers={"Retry-After": "20"}), respond(text="ok")], provider=ACME
    )
    assert run.waits == [20.0]
    assert time.monotonic() - started < 5  # twenty seconds of script, no real wait


def test_a_429_that_persists_ends_in_the_drivers_rate_limit() -> None:
    limited = respond(429, headers={"Retry-After": "7"})
    failure = drive_error(one(), [limited] * 3, RateLimited, provider=ACME)
    assert isinstance(failure.error, RateLimited)
    assert failure.error.retry_after == 7
    assert "Acme is limiting" in str(failure.error)
    assert failure.waits == [7.0, 7.0]


def test_a_retry_after_past_the_policys_cap_is_not_waited() -> None:
    limited = respond(429, headers={"Retry-After": "3600"})
    failure = drive_error(one(), [limited], RateLimited, provider=ACME)
    assert failure.waits == []
    assert "60 minutes" in str(failure.error)
    assert failure.error.retry_after == 3600  # type: ignore[attr-defined]


def test_a_503_is_retried_as_in_production_and_policy_sets_how_often() -> None:
    run = drive(one(), [respond(503), respond(503), respond(text="up")], provider=ACME)
    assert run.result.label == "up"
    assert len(run.waits) == 2
    final = drive(one(), [respond(503)], provider=ACME, policy=Policy(retries=0))
    assert final.result.identity == "status:503"


def test_a_same_origin_redirect_is_followed() -> None:
    moved = respond(301, headers={"Location": "/users/7"})
    run = drive(one(), [moved, respond(text="user 7")], provider=ACME)
    assert run.result.label == "user 7"
    assert run.urls == ["https://api.acme.test/me", "https://api.acme.test/users/7"]
    assert run.requests[1].headers["Authorization"] == f"Bearer {KEY}"


def test_a_redirect_elsewhere_is_refused_and_the_key_not_sent() -> None:
    away = respond(302, headers={"Location": "https://login.elsewhere.test/"})
    failure = drive_error(one(), [away], UnexpectedResponse, provider=ACME)
    assert "redirected" in str(failure.error)
    assert failure.urls == ["https://api.acme.test/me"]


def test_a_host_the_provider_does_not_declare_is_refused_before_sending() -> None:
    failure = drive_error(one("https://evil.test/steal"), [], PluginError, provider=ACME)
    assert failure.requests == []
    assert "not among the hosts" in str(failure.error)


def test_a_transport_error_in_the_script_reaches_the_flow_as_provider_unavailable() -> None:
    import socket

    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    unresolved = httpx.ConnectError("no name")
    unresolved.__cause__ = cause
    with pytest.raises(FieldError, match="no such tenant"):
        drive(flow(), [unresolved], provider=ACME)
    timeouts = [httpx.ReadTimeout("slow")] * 3
    failure = drive_error(flow(), timeouts, ProviderUnavailable, provider=ACME)
    assert failure.error.reason == "timeout"  # type: ignore[attr-defined]
    assert len(failure.requests) == 3


def test_a_hub_error_in_the_script_is_thrown_into_the_flow() -> None:
    with pytest.raises(FieldError, match="no such tenant"):
        drive(flow(), [ProviderUnavailable("down", reason="unresolved")], provider=ACME)


def test_a_body_over_the_cap_never_reaches_the_flow() -> None:
    big = respond(text="x" * 2048)
    failure = drive_error(
        one(), [big], UnexpectedResponse, provider=ACME, policy=Policy(max_body=1024)
    )
    assert "more than 1 KiB" in str(failure.error)


def test_a_bug_in_the_flow_is_a_plugin_error_with_its_cause() -> None:
    failure = drive_error(
        flow(), [respond(json={"no id": 1}), respond()], PluginError, provider=ACME
    )
    assert isinstance(failure.error.__cause__, KeyError)


def test_secrets_are_masked_in_the_error() -> None:
    def leaky() -> Flow:
        yield httpx.Request("GET", "https://api.acme.test/me")
        raise UnexpectedResponse(f"the server said {KEY}")

    failure = drive_error(leaky(), [respond()], provider=ACME, secrets=[KEY])
    assert KEY not in str(failure.error)


def test_drive_error_fails_when_the_flow_returns() -> None:
    with pytest.raises(AssertionError, match="instead of raising RateLimited"):
        drive_error(one(), [respond()], RateLimited, provider=ACME)


def test_drive_error_fails_on_another_error_and_chains_it() -> None:
    with pytest.raises(AssertionError, match="not RateLimited") as info:
        drive_error(one("https://evil.test/"), [], RateLimited, provider=ACME)
    assert isinstance(info.value.__cause__, PluginError)


def test_drive_without_a_provider_warns_and_still_runs_the_driver() -> None:
    with pytest.warns(DeprecationWarning, match="provider="):
        run = drive(
            one("https://anywhere.test/"), [respond(429, headers={"Retry-After": "0"}), respond()]
        )
    assert run.result.identity == "status:200"


def test_drive_raw_hands_the_flow_what_the_driver_would_not() -> None:
    run = drive_raw(one(), [respond(429, headers={"Retry-After": "7"})])
    assert run.result.identity == "status:429"
    assert run.requests[0].url.host == "api.acme.test"


def test_running_out_of_responses_names_the_request() -> None:
    with pytest.raises(
        AssertionError, match=r"no scripted response left for GET https://api\.acme\.test/more"
    ):
        drive(flow(), [respond(json={"id": 3})], provider=ACME)
    with pytest.raises(AssertionError, match="no scripted response left"):
        drive_raw(flow(), [respond(json={"id": 3})])


def test_unused_responses_fail_the_test() -> None:
    with pytest.raises(UnusedResponses, match="1 scripted response"):
        drive(flow(), [respond(json={"id": 3}), respond(text="x"), respond()], provider=ACME)
    with pytest.raises(UnusedResponses, match="1 scripted response"):
        drive_raw(flow(), [respond(json={"id": 3}), respond(text="x"), respond()])


def test_respond_sets_json_content_type() -> None:
    response = respond(201, json={"a": 1}, headers={"x-id": "7"})
    assert (response.status_code, response.headers["content-type"], response.headers["x-id"]) == (
        201,
        "application/json",
        "7",
    )


def test_respond_json_with_own_content_type_has_one_content_type() -> None:
    response = respond(401, json={"e": 1}, headers={"Content-Type": "application/problem+json"})
    assert response.headers.get_list("content-type") == ["application/problem+json"]


def _buggy(credentials: Credentials) -> Flow:
    response = yield httpx.Request("GET", "https://api.acme.test/v1/me")
    return Verified(identity=response.json()["missing"], label="x")  # KeyError on a 401 body


def test_drive_error_without_expected_fails_on_a_plugin_bug() -> None:
    # A KeyError in the flow ends in PluginError, a HubError too: the flow's bug, not the
    # documented error the test asks for.
    values = sample_credentials(ACME)
    with pytest.raises(AssertionError, match="PluginError"):
        drive_error(_buggy(values), [respond(401, json={})], provider=ACME)
    failure = drive_error(_buggy(values), [respond(401, json={})], PluginError, provider=ACME)
    assert isinstance(failure.error, PluginError)  # when asked for by name
