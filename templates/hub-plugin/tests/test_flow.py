"""The verification flow, driven with scripted answers: no network."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hub_core import (
    Credentials,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    Provider,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from hub_core.responses import MASK
from hub_core.testing import (
    CANARY,
    Routes,
    assert_no_secret,
    drive,
    drive_error,
    respond,
    sample_credentials,
)

import hub_example
from hub_example.flow import verify


def test_a_good_key_verifies_the_account(
    provider: Provider, credentials: Credentials, api: Routes
) -> None:
    run = drive(verify(credentials), api, provider=provider)
    assert run.urls == ["https://api.example.com/v1/me"]
    assert run.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    assert run.result.identity == "account:acc_42"
    assert run.result.label == "Ada's team"
    assert run.result.expires_at == datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert run.result.details == {"account_id": "acc_42", "region": "us", "plan": "pro"}


def test_the_eu_region_has_its_own_host(provider: Provider, api: Routes) -> None:
    run = drive(verify(sample_credentials(provider, region="eu")), api, provider=provider)
    assert run.hosts == ["api.eu.example.com"]


@pytest.mark.parametrize(("status", "error"), [(401, InvalidCredentials), (403, PermissionDenied)])
def test_a_refused_key_names_the_key_field(
    provider: Provider, credentials: Credentials, status: int, error: type[HubError]
) -> None:
    failure = drive_error(verify(credentials), [respond(status)], error, provider=provider)
    assert failure.error.field == "api_key"
    assert_no_secret(failure.error)


def test_a_rate_limit_is_the_cores_business(provider: Provider, credentials: Credentials) -> None:
    # The driver waits out a 429 (on a virtual clock here) and retries; the flow never sees it.
    limited = respond(429, headers={"retry-after": "7"})
    failure = drive_error(verify(credentials), [limited] * 3, RateLimited, provider=provider)
    assert failure.waits == [7, 7]
    assert isinstance(failure.error, RateLimited)
    assert failure.error.retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_mean_the_provider_is_unavailable(
    provider: Provider, credentials: Credentials, status: int
) -> None:
    # The driver retries a 502/503/504 twice before the flow sees it: three answers.
    answers = [respond(status)] * (1 if status == 500 else 3)
    drive_error(verify(credentials), answers, ProviderUnavailable, provider=provider)


def test_an_answer_without_an_account_is_unexpected(
    provider: Provider, credentials: Credentials
) -> None:
    answer = [respond(200, json={"id": 1})]
    drive_error(verify(credentials), answer, UnexpectedResponse, provider=provider)


def test_an_answer_that_is_not_json_is_unexpected(
    provider: Provider, credentials: Credentials
) -> None:
    answer = [respond(200, text="<html>Down for maintenance</html>")]
    failure = drive_error(verify(credentials), answer, UnexpectedResponse, provider=provider)
    assert "api.example.com answered HTTP 200 with something that is not JSON" in str(failure.error)


def test_provider_text_is_one_line_and_never_shows_the_key(
    provider: Provider, credentials: Credentials
) -> None:
    me = {"account": {"id": 7, "name": f"Ada's\n\tteam {CANARY}", "plan": "\x1b[31mpro"}}
    run = drive(verify(credentials), [respond(200, json=me)], provider=provider)
    assert run.result.label == f"Ada's team {MASK}"
    assert run.result.details == {"account_id": "7", "region": "us", "plan": "[31mpro"}
    assert run.result.expires_at is None
    assert_no_secret(run.result.details)


def test_the_hooks_answer_only_for_this_provider(credentials: Credentials) -> None:
    (provider,) = hub_example.hub_providers()
    flow = hub_example.hub_validate_credentials(provider=provider, credentials=credentials)
    assert flow is not None
    flow.close()
