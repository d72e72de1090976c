"""The verification flow against scripted answers shaped like Elastic Cloud's."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from hub_core import (
    Flow,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from hub_core.testing import drive_raw as drive
from hub_core.testing import respond

Start = Callable[..., Flow]
OrgBody = Callable[..., dict[str, Any]]

EXPIRY = "X-Elastic-Api-Key-Expiration"


# --- 200 ---------------------------------------------------------------------------------


def test_one_organization_is_verified(start: Start, org_body: OrgBody) -> None:
    run = drive(start(), [respond(200, json=org_body(("1234567890", "Acme Observability")))])
    result = run.result
    assert result.identity == "org:1234567890"
    assert result.label == "Acme Observability"
    assert result.expires_at is None
    assert result.details == {
        "environment": "cloud",
        "api_host": "api.elastic-cloud.com",
        "organization_id": "1234567890",
        "organization_name": "Acme Observability",
        "organization_count": 1,
    }
    json.dumps(result.details)  # must be storable as JSON


def test_several_organizations_use_the_first_and_list_the_others(
    start: Start, org_body: OrgBody
) -> None:
    body = org_body(("111", "Main"), ("222", "Second"), ("333", "Third"))
    result = drive(start(), [respond(200, json=body)]).result
    assert (result.identity, result.label) == ("org:111", "Main")
    assert result.details["organization_count"] == 3
    assert result.details["other_organizations"] == [
        {"id": "222", "name": "Second"},
        {"id": "333", "name": "Third"},
    ]
    assert "more_organizations" not in result.details


def test_a_further_page_is_noted(start: Start, org_body: OrgBody) -> None:
    body = org_body(("111", "Main"), next_page="cursor-2")
    assert drive(start(), [respond(200, json=body)]).result.details["more_organizations"] is True


def test_government_environment_is_recorded(start: Start, org_body: OrgBody) -> None:
    run = drive(start("essu_k", environment="gov"), [respond(200, json=org_body(("9", "Agency")))])
    assert run.result.details["environment"] == "gov"
    assert run.result.details["api_host"] == "api.us-gov-east-1.aws.elastic-cloud.com"


def test_numeric_id_and_missing_name_are_tolerated(start: Start) -> None:
    body = {"organizations": [{"id": 42}]}
    result = drive(start(), [respond(200, json=body)]).result
    assert (result.identity, result.label) == ("org:42", "Organization 42")


def test_organization_name_is_cleaned_and_capped(start: Start) -> None:
    body = {"organizations": [{"id": "1", "name": "Acme\n\tCorp " + "x" * 500}]}
    label = drive(start(), [respond(200, json=body)]).result.label
    assert label.startswith("Acme Corp x")
    assert len(label) == 200
    assert label.endswith("…")


def test_rate_limit_headers_are_kept(start: Start, org_body: OrgBody) -> None:
    headers = {
        "x-ratelimit-limit": "100",
        "x-ratelimit-remaining": "97",
        "x-ratelimit-interval": "1m",
    }
    response = respond(200, json=org_body(("1", "A")), headers=headers)
    rate_limit = drive(start(), [response]).result.details["rate_limit"]
    assert rate_limit == {"limit": 100, "remaining": 97, "interval": "1m"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2031-05-04T03:02:01Z", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T03:02:01.500+02:00", datetime(2031, 5, 4, 1, 2, 1, 500000, tzinfo=UTC)),
        ("2031-05-04T03:02:01", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04", datetime(2031, 5, 4, tzinfo=UTC)),
        ("1935630121", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("1935630121000", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("1935630121.25", datetime(2031, 5, 4, 3, 2, 1, 250000, tzinfo=UTC)),
        ("Sun, 04 May 2031 03:02:01 GMT", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        (" 2031-05-04T03:02:01Z ", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
    ],
)
def test_expiry_header_is_read(
    start: Start, org_body: OrgBody, header: str, expected: datetime
) -> None:
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: header})
    expires_at = drive(start(), [response]).result.expires_at
    assert expires_at == expected
    assert expires_at is not None
    assert expires_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "header",
    ["", "never", "soon", "2031-13-45T99:00:00Z", "9" * 20, "1e12", "-5", "0x1F", "T" * 500],
)
def test_unreadable_expiry_is_none_not_an_error(
    start: Start, org_body: OrgBody, header: str
) -> None:
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: header})
    assert drive(start(), [response]).result.expires_at is None


# --- 200 with a body hub cannot use ------------------------------------------------------


def test_empty_organization_list_says_what_was_expected(start: Start, org_body: OrgBody) -> None:
    with pytest.raises(UnexpectedResponse, match="listed no organization") as caught:
        drive(start(), [respond(200, json=org_body())])
    assert "the organization the key belongs to" in str(caught.value)


@pytest.mark.parametrize(
    "response",
    [
        respond(200, text="<html>Service maintenance</html>"),
        respond(200, content=b"\xff\xfe\x00garbage"),
        respond(200, text="[" * 100_000 + "]" * 100_000),
        respond(200),
    ],
    ids=["html", "binary", "deeply-nested", "empty"],
)
def test_non_json_200_is_unexpected(start: Start, response: httpx.Response) -> None:
    with pytest.raises(UnexpectedResponse, match="not JSON"):
        drive(start(), [response])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([{"id": "1", "name": "A"}], "no 'organizations' list"),
        ({"organisations": []}, "no 'organizations' list"),
        ({"organizations": {"id": "1"}}, "no 'organizations' list"),
        ({"organizations": ["1"]}, "not an object"),
        ({"organizations": [{"name": "A"}]}, "has no id"),
        ({"organizations": [{"id": True, "name": "A"}]}, "has no id"),
        ({"organizations": [{"id": ["1"], "name": "A"}]}, "has no id"),
        ({"organizations": [{"id": "  ", "name": "A"}]}, "id hub cannot use"),
        ({"organizations": [{"id": "x" * 129, "name": "A"}]}, "id hub cannot use"),
        ({"organizations": [{"id": "a\nb", "name": "A"}]}, "id hub cannot use"),
    ],
)
def test_wrong_shape_is_unexpected_and_says_what_was_expected(
    start: Start, body: Any, words: str
) -> None:
    with pytest.raises(UnexpectedResponse) as caught:
        drive(start(), [respond(200, json=body)])
    assert words in str(caught.value)
    assert "'organizations' list, each with an 'id' and a 'name'" in str(caught.value)


def test_wrong_shape_quotes_the_providers_error_code(start: Start, errors_body: Any) -> None:
    body = errors_body("root.maintenance", "Read-only mode")
    quoted = re.escape('said: "root.maintenance: Read-only mode"')
    with pytest.raises(UnexpectedResponse, match=quoted):
        drive(start(), [respond(200, json=body)])


# --- errors ------------------------------------------------------------------------------


def test_401_is_invalid_credentials_on_the_key(
    start: Start, documented_errors: Mapping[int, Any]
) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        drive(start(), [respond(401, json=documented_errors[401])])
    error = caught.value
    assert error.field == "api_key"
    assert "wrong, has expired, or was deleted" in str(error)
    assert "root.unauthenticated: The supplied authentication is invalid" in str(error)
    assert "usually start with essu_" not in str(error)  # this key has the prefix


def test_401_for_a_key_without_the_prefix_mentions_the_prefix(
    start: Start, documented_errors: Mapping[int, Any]
) -> None:
    with pytest.raises(InvalidCredentials, match="usually start with essu_"):
        drive(start("dGhpc2lzYWtleQ=="), [respond(401, json=documented_errors[401])])


def test_401_suggests_the_other_environment(start: Start) -> None:
    with pytest.raises(InvalidCredentials, match="Elastic Cloud for US government"):
        drive(start(), [respond(401)])
    with pytest.raises(InvalidCredentials, match="on Elastic Cloud, choose") as caught:
        drive(start(environment="gov"), [respond(401)])
    assert "said:" not in str(caught.value)  # an empty body quotes nothing


def test_401_falls_back_to_the_error_code_header(start: Start) -> None:
    response = respond(401, text="", headers={"x-cloud-error-codes": "user.not_found"})
    with pytest.raises(InvalidCredentials, match=re.escape('said: "user.not_found"')):
        drive(start(), [response])


def test_403_names_the_role_and_quotes_the_provider(
    start: Start, documented_errors: Mapping[int, Any]
) -> None:
    with pytest.raises(PermissionDenied) as caught:
        drive(start(), [respond(403, json=documented_errors[403])])
    message = str(caught.value)
    assert caught.value.field == "api_key"
    assert "Organization owner" in message
    assert "organization.invalid_access" in message
    assert "does not have access to the requested organization" in message


def test_429_with_retry_after_seconds(start: Start, documented_errors: Mapping[int, Any]) -> None:
    response = respond(429, json=documented_errors[429], headers={"Retry-After": "17"})
    with pytest.raises(RateLimited, match="try again in 17 seconds") as caught:
        drive(start(), [response])
    assert caught.value.retry_after == 17.0
    assert "root.rate_limited" in str(caught.value)


def test_429_with_retry_after_date(start: Start) -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    response = respond(429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    with pytest.raises(RateLimited) as caught:
        drive(start(), [response])
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


def test_429_with_retry_after_date_without_zone_is_taken_as_utc(start: Start) -> None:
    later = datetime.now(UTC) + timedelta(seconds=300)
    header = later.strftime("%a, %d %b %Y %H:%M:%S -0000")
    with pytest.raises(RateLimited) as caught:
        drive(start(), [respond(429, headers={"Retry-After": header})])
    assert caught.value.retry_after is not None
    assert 280 < caught.value.retry_after <= 300


@pytest.mark.parametrize("header", [None, "whenever", "1e999"])
def test_429_without_a_usable_retry_after(start: Start, header: str | None) -> None:
    headers = {"Retry-After": header} if header else None
    with pytest.raises(RateLimited, match="try again shortly") as caught:
        drive(start(), [respond(429, headers=headers)])
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_5xx_is_provider_unavailable(
    start: Start, documented_errors: Mapping[int, Any], status: int
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        drive(start(), [respond(status, json=documented_errors[500])])
    assert caught.value.reason == "server"
    assert f"HTTP {status}" in str(caught.value)
    assert "api.elastic-cloud.com" in str(caught.value)
    assert "root.unexpected_error" in str(caught.value)


@pytest.mark.parametrize("status", [302, 400, 404, 418])
def test_other_statuses_are_unexpected(start: Start, errors_body: Any, status: int) -> None:
    body = errors_body("root.invalid_path", "Unknown resource")
    with pytest.raises(UnexpectedResponse, match=f"HTTP {status}") as caught:
        drive(start(), [respond(status, json=body)])
    assert "root.invalid_path: Unknown resource" in str(caught.value)


def test_long_provider_text_is_truncated(start: Start, errors_body: Any) -> None:
    body = errors_body("root.forbidden", "blah " * 500)
    with pytest.raises(PermissionDenied) as caught:
        drive(start(), [respond(403, json=body)])
    quoted = str(caught.value).split('said: "', 1)[1]
    assert len(quoted) < 210
    assert "…" in quoted


def test_provider_text_is_one_printable_line(start: Start, errors_body: Any) -> None:
    body = errors_body("root.forbidden", "line one\r\nline\x1b[31m two\x00")
    with pytest.raises(PermissionDenied) as caught:
        drive(start(), [respond(403, json=body)])
    assert str(caught.value).isprintable()
    assert "line one line [31m two" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"errors": "nope"},
        {"errors": [1, None, {"code": 5}, {"message": ""}]},
        {"error": {"code": "x"}},
        ["errors"],
    ],
)
def test_odd_error_bodies_quote_nothing(start: Start, body: Any) -> None:
    with pytest.raises(PermissionDenied) as caught:
        drive(start(), [respond(403, json=body)])
    assert "said:" not in str(caught.value)


@pytest.mark.parametrize("reason", ["unresolved", "connect", "tls", "timeout", "proxy"])
def test_transport_failure_thrown_at_the_yield_propagates(start: Start, reason: str) -> None:
    flow = start()
    next(flow)
    failure = ProviderUnavailable("Elastic Cloud could not be reached", reason=reason)
    with pytest.raises(ProviderUnavailable) as caught:
        flow.throw(failure)
    assert caught.value is failure


def test_errors_raised_are_hub_errors(start: Start) -> None:
    # Every verdict other than Verified is a HubError, so the core can report it by code.
    for status in (401, 403, 429, 500, 404):
        with pytest.raises(HubError):
            drive(start(), [respond(status)])
