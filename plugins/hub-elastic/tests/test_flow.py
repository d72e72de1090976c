"""The verification flow under the core's own driver, against answers shaped like Elastic's."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import hub_elastic
from hub_core import (
    Flow,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    Verified,
)
from hub_core.policy import Policy
from hub_core.testing import FlowRun, drive, drive_error, drive_raw, respond

Start = Callable[..., Flow]
OrgBody = Callable[..., dict[str, Any]]

EXPIRY = "X-Elastic-Api-Key-Expiration"
#: One answer per request: nothing retried, so a script of one 503 or one 429 is enough.
ONCE = Policy(retries=0)


def run(flow: Flow, responses: list[httpx.Response], **options: Any) -> FlowRun:
    """Drive *flow* as `Hub.verify` does, for Elastic Cloud's hosts."""
    return drive(flow, responses, provider=hub_elastic.PROVIDER, **options)


def verified(flow: Flow, responses: list[httpx.Response]) -> Verified:
    return run(flow, responses).result


def failed(
    flow: Flow,
    responses: list[httpx.Response | BaseException],
    expected: type[HubError] = HubError,
    **options: Any,
) -> HubError:
    """The error *flow* ends in under the driver; the test fails if it is not *expected*."""
    return drive_error(flow, responses, expected, provider=hub_elastic.PROVIDER, **options).error


# --- 200 ---------------------------------------------------------------------------------


def test_one_organization_is_verified(start: Start, org_body: OrgBody, canary: str) -> None:
    done = run(start(), [respond(200, json=org_body(("1234567890", "Acme Observability")))])
    assert done.urls == ["https://api.elastic-cloud.com/api/v1/organizations"]
    assert done.requests[0].headers["Authorization"] == f"ApiKey {canary}"
    result = done.result
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
    result = verified(start(), [respond(200, json=body)])
    assert (result.identity, result.label) == ("org:111", "Main")
    assert result.details["organization_count"] == 3
    assert result.details["other_organizations"] == [
        {"id": "222", "name": "Second"},
        {"id": "333", "name": "Third"},
    ]
    assert "more_organizations" not in result.details


def test_a_further_page_is_noted(start: Start, org_body: OrgBody) -> None:
    body = org_body(("111", "Main"), next_page="cursor-2")
    assert verified(start(), [respond(200, json=body)]).details["more_organizations"] is True


def test_government_environment_is_recorded(start: Start, org_body: OrgBody) -> None:
    done = run(start("essu_k", environment="gov"), [respond(200, json=org_body(("9", "Agency")))])
    assert done.hosts == ["api.us-gov-east-1.aws.elastic-cloud.com"]
    assert done.result.details["environment"] == "gov"
    assert done.result.details["api_host"] == "api.us-gov-east-1.aws.elastic-cloud.com"


def test_numeric_id_and_missing_name_are_tolerated(start: Start) -> None:
    body = {"organizations": [{"id": 42}]}
    result = verified(start(), [respond(200, json=body)])
    assert (result.identity, result.label) == ("org:42", "Organization 42")


def test_organization_name_is_cleaned_and_capped(start: Start) -> None:
    body = {"organizations": [{"id": "1", "name": "Acme\n\tCorp " + "x" * 500}]}
    label = verified(start(), [respond(200, json=body)]).label
    assert label.startswith("Acme Corp x")
    assert len(label) == 200
    assert label.endswith("…")


def test_rate_limit_headers_are_kept(start: Start, org_body: OrgBody) -> None:
    # Elastic names these headers; that limit and remaining are counts is an assumption.
    headers = {
        "x-ratelimit-limit": "100",
        "x-ratelimit-remaining": "97",
        "x-ratelimit-interval": "1m",
    }
    response = respond(200, json=org_body(("1", "A")), headers=headers)
    rate_limit = verified(start(), [response]).details["rate_limit"]
    assert rate_limit == {"limit": 100, "remaining": 97, "interval": "1m"}


def test_a_rate_limit_that_is_not_an_ascii_number_is_kept_as_text(
    start: Start, org_body: OrgBody
) -> None:
    # '²'.isdigit() is True, yet int('²') raises: only ASCII decimal digits make a count.
    headers = [
        (b"x-ratelimit-limit", "²".encode()),
        (b"x-ratelimit-remaining", "٣".encode()),
        (b"x-ratelimit-interval", b"60"),
    ]
    body = json.dumps(org_body(("1", "A"))).encode()
    response = httpx.Response(200, headers=headers, content=body)
    rate_limit = verified(start(), [response]).details["rate_limit"]
    assert rate_limit == {"limit": "²", "remaining": "٣", "interval": 60}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2031-05-04T03:02:01Z", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T03:02:01.500+02:00", datetime(2031, 5, 4, 1, 2, 1, 500000, tzinfo=UTC)),
        ("2031-05-04T03:02:01", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("1935630121", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("1935630121000", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("Sun, 04 May 2031 03:02:01 GMT", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
    ],
)
def test_expiry_header_is_read(
    start: Start, org_body: OrgBody, header: str, expected: datetime
) -> None:
    # Elastic does not document the header's format: each of these is read (hub_core's
    # read_time is tested on many more).
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: header})
    expires_at = verified(start(), [response]).expires_at
    assert expires_at == expected
    assert expires_at is not None
    assert expires_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("header", ["never", "soon", "2031-13-45T99:00:00Z", "9" * 20, "-5"])
def test_unreadable_expiry_is_none_not_an_error(
    start: Start, org_body: OrgBody, header: str
) -> None:
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: header})
    result = verified(start(), [response])
    assert result.expires_at is None
    assert result.details["key_expiration_header"] == header


def test_expiry_header_is_kept_as_sent_beside_the_date(start: Start, org_body: OrgBody) -> None:
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: " 2031-05-04T03:02:01Z "})
    result = verified(start(), [response])
    assert result.expires_at == datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert result.details["key_expiration_header"] == "2031-05-04T03:02:01Z"


def test_expiry_header_kept_is_one_clipped_line(start: Start, org_body: OrgBody) -> None:
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: "T\t" * 500})
    result = verified(start(), [response])
    kept = result.details["key_expiration_header"]
    assert kept.startswith("T T T")
    assert (len(kept), kept[-1]) == (200, "…")
    assert result.expires_at is None


def test_empty_expiry_header_keeps_nothing(start: Start, org_body: OrgBody) -> None:
    response = respond(200, json=org_body(("1", "A")), headers={EXPIRY: ""})
    result = verified(start(), [response])
    assert result.expires_at is None
    assert "key_expiration_header" not in result.details


# --- 200 with a body hub cannot use ------------------------------------------------------


def test_empty_organization_list_says_what_was_expected(start: Start, org_body: OrgBody) -> None:
    error = failed(start(), [respond(200, json=org_body())], UnexpectedResponse)
    assert "listed no organization" in str(error)
    assert "the organization the key belongs to" in str(error)


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
    error = failed(start(), [response], UnexpectedResponse)
    assert "api.elastic-cloud.com answered HTTP 200 with something that is not JSON" in str(error)
    assert "'organizations' list, each with an 'id' and a 'name'" in str(error)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([{"id": "1", "name": "A"}], "another shape (a list)"),
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
    error = failed(start(), [respond(200, json=body)], UnexpectedResponse)
    assert words in str(error)
    assert "'organizations' list, each with an 'id' and a 'name'" in str(error)


def test_wrong_shape_quotes_the_providers_error_code(start: Start, errors_body: Any) -> None:
    # Assumed: a 200 that carries Elastic's error shape instead of organizations.
    body = errors_body("root.maintenance", "Read-only mode")
    error = failed(start(), [respond(200, json=body)], UnexpectedResponse)
    assert 'said: "root.maintenance: Read-only mode"' in str(error)


# --- errors ------------------------------------------------------------------------------


def test_401_is_invalid_credentials_on_the_key(
    start: Start, assumed_errors: Mapping[int, Any]
) -> None:
    error = failed(start(), [respond(401, json=assumed_errors[401])], InvalidCredentials)
    assert error.field == "api_key"
    assert "wrong, has expired, or was deleted" in str(error)
    assert "root.unauthenticated: The supplied authentication is invalid" in str(error)
    assert "usually start with essu_" not in str(error)  # this key has the prefix


def test_401_for_a_key_without_the_prefix_mentions_the_prefix(
    start: Start, assumed_errors: Mapping[int, Any]
) -> None:
    answer = [respond(401, json=assumed_errors[401])]
    error = failed(start("dGhpc2lzYWtleQ=="), answer, InvalidCredentials)
    assert "usually start with essu_" in str(error)


def test_401_suggests_the_other_environment(start: Start) -> None:
    error = failed(start(), [respond(401)], InvalidCredentials)
    assert "Elastic Cloud for US government" in str(error)
    error = failed(start(environment="gov"), [respond(401)], InvalidCredentials)
    assert "on Elastic Cloud, choose" in str(error)
    assert "said:" not in str(error)  # an empty body quotes nothing


def test_401_falls_back_to_the_error_code_header(start: Start) -> None:
    # Assumed: x-cloud-error-codes is seen in Elastic's answers but not documented.
    response = respond(401, text="", headers={"x-cloud-error-codes": "user.not_found"})
    error = failed(start(), [response], InvalidCredentials)
    assert 'said: "user.not_found"' in str(error)


def test_403_is_a_neutral_permission_denied(
    start: Start, assumed_errors: Mapping[int, Any]
) -> None:
    error = failed(start(), [respond(403, json=assumed_errors[403])], PermissionDenied)
    message = str(error)
    assert error.field == "api_key"
    assert "refused the Cloud API Key permission to list the organization" in message
    assert "roles and permissions under Organization → API keys in the Cloud console" in message
    # No source says which role lists organizations: the message names none.
    assert "owner" not in message.lower()
    assert "organization.invalid_access" in message
    assert "does not have access to the requested organization" in message


def test_a_rate_limit_is_the_drivers_business(start: Start) -> None:
    # The driver waits out each 429 and retries; after the last it raises RateLimited into the
    # flow at its yield, and the flow lets it through.
    limited = respond(429, headers={"Retry-After": "7"})
    failure = drive_error(start(), [limited] * 3, RateLimited, provider=hub_elastic.PROVIDER)
    assert failure.waits == [7, 7]
    assert isinstance(failure.error, RateLimited)
    assert failure.error.retry_after == 7
    # By hand, a 429 is just a status the flow did not expect: it has no 429 code of its own.
    with pytest.raises(UnexpectedResponse, match="HTTP 429"):
        drive_raw(start(), [limited])


def test_a_long_retry_after_is_not_waited_for(start: Start) -> None:
    limited = respond(429, headers={"Retry-After": "3600"})
    failure = drive_error(start(), [limited], RateLimited, provider=hub_elastic.PROVIDER)
    assert failure.waits == []
    assert isinstance(failure.error, RateLimited)
    assert failure.error.retry_after == 3600


@pytest.mark.parametrize(("status", "attempts"), [(500, 1), (502, 3), (503, 3), (504, 3), (599, 1)])
def test_5xx_is_provider_unavailable_once_retries_are_spent(
    start: Start, assumed_errors: Mapping[int, Any], status: int, attempts: int
) -> None:
    # The driver retries a 502, 503 or 504 on GET twice; other 5xx reach the flow at once.
    answers = [respond(status, json=assumed_errors[500])] * attempts
    error = failed(start(), answers, ProviderUnavailable)
    assert isinstance(error, ProviderUnavailable)
    assert error.reason == "server"
    assert f"HTTP {status}" in str(error)
    assert "api.elastic-cloud.com" in str(error)
    assert "root.unexpected_error" in str(error)


def test_a_5xx_without_retries_reaches_the_flow_at_once(start: Start) -> None:
    error = failed(start(), [respond(503)], ProviderUnavailable, policy=ONCE)
    assert "HTTP 503" in str(error)


def test_a_server_error_that_passes_is_retried_into_a_verdict(
    start: Start, org_body: OrgBody
) -> None:
    done = run(start(), [respond(503), respond(200, json=org_body(("1", "A")))])
    assert done.result.identity == "org:1"
    assert len(done.requests) == 2
    assert len(done.waits) == 1


@pytest.mark.parametrize("status", [302, 400, 404, 418])
def test_other_statuses_are_unexpected(start: Start, errors_body: Any, status: int) -> None:
    # A 302 with no Location is not a redirect the driver can follow: the flow sees it.
    body = errors_body("root.invalid_path", "Unknown resource")
    error = failed(start(), [respond(status, json=body)], UnexpectedResponse)
    assert f"HTTP {status}" in str(error)
    assert "root.invalid_path: Unknown resource" in str(error)


def test_long_provider_text_is_truncated(start: Start, errors_body: Any) -> None:
    body = errors_body("root.forbidden", "blah " * 500)
    error = failed(start(), [respond(403, json=body)], PermissionDenied)
    quoted = str(error).split('said: "', 1)[1]
    assert len(quoted) < 210
    assert "…" in quoted


def test_provider_text_is_one_printable_line(start: Start, errors_body: Any) -> None:
    body = errors_body("root.forbidden", "line one\r\nline\x1b[31m two\x00")
    error = failed(start(), [respond(403, json=body)], PermissionDenied)
    assert str(error).isprintable()
    assert "line one line [31m two" in str(error)


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
    error = failed(start(), [respond(403, json=body)], PermissionDenied)
    assert "said:" not in str(error)


@pytest.mark.parametrize("reason", ["unresolved", "connect", "tls", "timeout", "proxy"])
def test_transport_failure_thrown_at_the_yield_propagates(start: Start, reason: str) -> None:
    failure = ProviderUnavailable("Elastic Cloud could not be reached", reason=reason)
    assert failed(start(), [failure], ProviderUnavailable, policy=ONCE) is failure


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 503])
def test_every_verdict_but_verified_is_a_hub_error(start: Start, status: int) -> None:
    # The core reports a HubError by its code; anything else would be a bug in the plugin.
    failed(start(), [respond(status)], HubError, policy=ONCE)
