"""The verification flow under the core's own driver, with scripted answers: every branch.

The driver follows the tenant's same-host redirects, waits out a 429 and retries a failing
GET, exactly as in production; the tests of those check that the flow needs no code for them.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import httpx
import pytest

import hub_qlik
from hub_core import (
    FieldError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
)
from hub_core.policy import Policy
from hub_core.testing import drive, drive_error, respond

(PROVIDER,) = hub_qlik.hub_providers()


def run(values, responder, **options):
    return drive(hub_qlik.verify(values), responder, provider=PROVIDER, **options)


def fail(values, responder, expected, **options):
    return drive_error(hub_qlik.verify(values), responder, expected, provider=PROVIDER, **options)


# --- success ---------------------------------------------------------------------------------


def test_full_check_reads_user_tenant_and_key(values, qlik, ids):
    result = run(values, qlik).result

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert result.label == f"Ada Lovelace @ {ids.host}"
    assert result.expires_at == datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert result.details == {
        "user_id": ids.user_id,
        "tenant_id": ids.tenant_id,
        "tenant_host": ids.host,
        "region": "eu",
        "user_name": "Ada Lovelace",
        "email": "ada@example.com",
        "user_status": "active",
        "roles": ["TenantAdmin", "Developer"],
        "tenant_name": "Acme Analytics",
        "hostnames": [ids.host, "acme.eu.qlikcloud.com"],
        "permanent_host": ids.host,
        "key_id": ids.key_id,
        "key_status": "active",
        "key_description": "hub",
        "key_expiry": "2031-05-04T03:02:01+00:00",
    }
    json.dumps(result.details)  # must be JSON-serialisable
    assert qlik.paths() == [
        "/api/v1/users/me",
        f"/api/v1/users/{ids.user_id}",
        "/api/v1/tenants/me",
        f"/api/v1/tenants/{ids.tenant_id}",
        f"/api/v1/api-keys/{ids.key_id}",
    ]


def test_users_me_redirect_to_the_user_is_followed_by_the_driver(values, qlik, ids):
    run_ = run(values, qlik)

    # The flow asked for users/me; the driver sent the 301's hop to users/<id> on the same host.
    assert run_.urls[:2] == [
        f"https://{ids.host}/api/v1/users/me",
        f"https://{ids.host}/api/v1/users/{ids.user_id}",
    ]
    assert run_.result.details["user_id"] == ids.user_id
    assert run_.waits == []


def test_every_request_is_https_to_the_tenant_with_the_bearer_key(values, qlik, api_key, ids):
    requests = run(values, qlik).requests

    for request in requests:
        assert request.method == "GET"
        assert request.url.scheme == "https"
        assert request.url.host == ids.host
        assert request.url.port is None
        assert request.headers["authorization"] == f"Bearer {api_key}"
        assert request.headers["accept"] == "application/json"


def test_key_record_is_asked_for_by_the_keys_own_id(values, qlik, ids):
    requests = run(values, qlik).requests

    assert requests[-1].url == httpx.URL(f"https://{ids.host}/api/v1/api-keys/{ids.key_id}")
    assert [r for r in requests if r.url.path.startswith("/api/v1/api-keys")] == [requests[-1]]


@pytest.mark.parametrize("jti", ["../users/me", "a/b", "key?x=1", "-key", "k" * 200, "ключ"])
def test_jti_that_is_no_qlik_id_is_not_put_into_a_url(values, qlik, make_key, jti):
    qlik.key = values["api_key"] = make_key(jti=jti)

    result = run(values, qlik).result

    assert not [p for p in qlik.paths() if p.startswith("/api/v1/api-keys")]
    assert result.expires_at is None
    assert "key_id" in result.details


def test_permanent_host_is_shown_beside_the_typed_one(values, qlik, ids):
    qlik.tenant["hostnames"] = ["tx81ab3d0f.eu.qlikcloud.com", ids.host]

    details = run(values, qlik).result.details

    assert details["tenant_host"] == ids.host  # what the person typed, normalised
    assert details["permanent_host"] == "tx81ab3d0f.eu.qlikcloud.com"
    assert details["hostnames"] == ["tx81ab3d0f.eu.qlikcloud.com", ids.host]


@pytest.mark.parametrize(
    "first",
    ["evil.example.net", "other-tenant.eu.qlikcloud.com", "x.us.qlikcloudgov.com"],
)
def test_a_hostname_in_the_answer_never_receives_a_request(values, qlik, ids, first):
    qlik.tenant["hostnames"] = [first, ids.host]

    run_ = run(values, qlik)

    assert set(run_.hosts) == {ids.host}
    assert run_.result.details["tenant_host"] == ids.host
    assert run_.result.label.endswith(f"@ {ids.host}")


def test_hostname_that_is_not_a_tenant_host_is_no_permanent_host(values, qlik, ids):
    qlik.tenant["hostnames"] = ["evil.example.net", ids.host]

    details = run(values, qlik).result.details

    assert "permanent_host" not in details
    assert details["hostnames"] == ["evil.example.net", ids.host]


@pytest.mark.parametrize("hostnames", [[], [7, "acme.eu.qlikcloud.com"], "acme.eu.qlikcloud.com"])
def test_hostnames_of_another_shape_give_no_permanent_host(values, qlik, hostnames):
    qlik.tenant["hostnames"] = hostnames

    assert "permanent_host" not in run(values, qlik).result.details


def test_user_answered_without_redirect_is_read(values, qlik, ids):
    qlik.routes["/api/v1/users/me"] = httpx.Response(200, json=qlik.user)

    result = run(values, qlik).result

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert qlik.paths()[1] == "/api/v1/tenants/me"


def test_pasted_address_supplies_the_region(values, qlik, ids):
    values.update(tenant=f"https://{ids.host}/hub", region="")

    result = run(values, qlik).result

    assert result.details["region"] == "eu"
    assert qlik.seen[0].url.host == ids.host


def test_government_region_uses_the_government_domain(values, qlik):
    qlik.host = "my-company.us.qlikcloudgov.com"
    values["region"] = "us-gov"

    result = run(values, qlik).result

    assert result.label == "Ada Lovelace @ my-company.us.qlikcloudgov.com"
    assert result.details["region"] == "us-gov"
    assert {r.url.host for r in qlik.seen} == {"my-company.us.qlikcloudgov.com"}


def test_label_falls_back_to_email_then_user_id(values, qlik, ids):
    del qlik.user["name"]
    assert run(values, qlik).result.label == f"ada@example.com @ {ids.host}"
    del qlik.user["email"]
    assert run(values, qlik).result.label == f"{ids.user_id} @ {ids.host}"


def test_roles_fall_back_to_the_plain_roles_list(values, qlik):
    del qlik.user["assignedRoles"]
    qlik.user["roles"] = ["TenantAdmin", 7, "", "AnalyticsAdmin"]

    assert run(values, qlik).result.details["roles"] == ["TenantAdmin", "AnalyticsAdmin"]


def test_user_without_roles_has_no_roles_detail(values, qlik):
    del qlik.user["assignedRoles"]

    assert "roles" not in run(values, qlik).result.details


def test_key_the_tenant_does_not_know_leaves_expiry_unknown(values, qlik, ids):
    qlik.keys = [qlik.keys[0]]

    result = run(values, qlik).result

    assert result.expires_at is None
    assert result.details["key_id"] == ids.key_id
    assert "key_status" not in result.details
    assert "key_expiry" not in result.details


def test_key_without_jti_skips_the_key_lookup(values, qlik, make_key):
    qlik.key = values["api_key"] = make_key(jti=None)

    result = run(values, qlik).result

    assert not [p for p in qlik.paths() if p.startswith("/api/v1/api-keys")]
    assert "key_id" not in result.details


def test_key_that_is_not_a_jwt_is_still_checked(values, qlik, ids):
    qlik.key = values["api_key"] = "opaque-token-" + "x" * 40

    result = run(values, qlik).result

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert not [p for p in qlik.paths() if p.startswith("/api/v1/api-keys")]


def test_bearer_prefix_pasted_with_the_key_is_dropped(values, qlik, api_key):
    values["api_key"] = f"Bearer {api_key}"

    requests = run(values, qlik).requests

    assert requests[0].headers["authorization"] == f"Bearer {api_key}"


def test_exp_claim_is_the_expiry_when_the_key_record_has_none(values, qlik, make_key):
    qlik.key = values["api_key"] = make_key(exp=1_900_000_000)
    qlik.keys = []

    result = run(values, qlik).result

    assert result.expires_at == datetime.fromtimestamp(1_900_000_000, tz=UTC)


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        ("2031-05-04T03:02:01.000Z", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T03:02:01Z", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T05:02:01+02:00", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T03:02:01", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("next tuesday", None),
        ("9999-12-31T23:30:00-05:00", None),  # past datetime's range once in UTC
        ("0001-01-01T00:10:00+05:00", None),  # before it
        ("2031-02-30T00:00:00Z", None),
        (1_900_000_000, None),
        (None, None),
    ],
)
def test_key_expiry_is_read_as_utc(values, qlik, expiry, expected):
    qlik.keys[1]["expiry"] = expiry

    result = run(values, qlik).result

    assert result.expires_at == expected
    if expected is not None:
        assert result.expires_at.utcoffset().total_seconds() == 0
        assert result.details["key_expiry"] == expected.isoformat()
    else:
        assert "key_expiry" not in result.details
    assert result.details["key_status"] == "active"  # the rest of the record is still read


# --- best-effort calls -------------------------------------------------------------------------


def _failures(qlik_error):
    return {
        "401": qlik_error(401, "Unauthorized", "HTTP-401"),
        "403": qlik_error(403, "Forbidden", "HTTP-403"),
        "404": qlik_error(404, "Not found", "HTTP-404"),
        "429": httpx.Response(429, headers={"retry-after": "3"}),  # the driver's RateLimited
        "500": httpx.Response(500, text="oops"),
        "503": qlik_error(503, "Unavailable", "HTTP-503"),  # retried, then handed over
        "not-json": httpx.Response(200, text="<html>hello</html>"),
        "empty": httpx.Response(200),
        "json-list": httpx.Response(200, json=[1, 2]),
        "json-null": httpx.Response(200, content=b"null"),
        "offsite-redirect": httpx.Response(302, headers={"location": "https://evil.example.net/"}),
    }


FAILURES = [
    "401",
    "403",
    "404",
    "429",
    "500",
    "503",
    "not-json",
    "empty",
    "json-list",
    "json-null",
    "offsite-redirect",
]


@pytest.mark.parametrize("failure", FAILURES)
def test_tenant_lookup_failure_only_leaves_tenant_details_out(values, qlik, qlik_error, failure):
    qlik.routes["/api/v1/tenants/me"] = _failures(qlik_error)[failure]

    result = run(values, qlik).result

    assert "tenant_name" not in result.details
    assert "hostnames" not in result.details
    assert "permanent_host" not in result.details
    assert result.details["key_status"] == "active"
    assert all(r.url.host != "evil.example.net" for r in qlik.seen)


@pytest.mark.parametrize("failure", FAILURES)
def test_key_lookup_failure_leaves_expiry_unknown_and_still_verifies(
    values, qlik, qlik_error, key_path, failure
):
    qlik.routes[key_path] = _failures(qlik_error)[failure]

    result = run(values, qlik).result

    assert result.expires_at is None
    assert "key_status" not in result.details
    assert "key_expiry" not in result.details
    assert result.details["tenant_name"] == "Acme Analytics"
    assert all(r.url.host != "evil.example.net" for r in qlik.seen)


@pytest.mark.parametrize(
    "record",
    [
        {"id": "key-0001", "status": "expired", "expiry": "2024-01-01T00:00:00Z"},
        {"id": 77, "status": "active", "expiry": "2031-01-01T00:00:00Z"},
    ],
)
def test_record_of_another_key_is_not_read(values, qlik, key_path, record):
    qlik.routes[key_path] = httpx.Response(200, json=record)

    result = run(values, qlik).result

    assert result.expires_at is None
    assert "key_status" not in result.details


def test_tenant_lookup_with_odd_fields_keeps_what_it_can(values, qlik):
    qlik.tenant.update(name=["not", "text"], hostnames="not-a-list")

    result = run(values, qlik).result

    assert "tenant_name" not in result.details
    assert "hostnames" not in result.details


def test_key_record_with_odd_fields_keeps_what_it_can(values, qlik, key_path, ids):
    record = {"id": ids.key_id, "status": 5, "description": ["x"], "expiry": "2031-01-01"}
    qlik.routes[key_path] = httpx.Response(200, json=record)

    result = run(values, qlik).result

    assert "key_status" not in result.details
    assert "key_description" not in result.details
    assert result.expires_at == datetime(2031, 1, 1, tzinfo=UTC)


def test_key_record_without_id_is_taken_as_this_keys(values, qlik, key_path):
    qlik.routes[key_path] = httpx.Response(200, json={"expiry": "2031-01-01T00:00:00Z"})

    assert run(values, qlik).result.expires_at == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("reason", ["unresolved", "connect", "timeout", "tls", "protocol"])
def test_transport_failure_in_a_best_effort_call_leaves_the_detail_out(
    values, qlik, key_path, reason
):
    failure = ProviderUnavailable("could not be reached", reason=reason)
    qlik.routes["/api/v1/tenants/me"] = lambda request: failure
    qlik.routes[key_path] = lambda request: failure

    run_ = run(values, qlik)

    assert "tenant_name" not in run_.result.details
    assert run_.result.expires_at is None
    # The driver retried what is worth retrying; each lookup still ended without failing.
    attempts = 3 if reason in ("connect", "timeout", "protocol") else 1
    assert qlik.paths().count(key_path) == attempts


def test_rate_limited_lookup_leaves_the_detail_out(values, qlik, key_path):
    qlik.routes[key_path] = httpx.Response(429, headers={"retry-after": "3600"})

    result = run(values, qlik).result

    assert result.expires_at is None
    assert result.details["tenant_name"] == "Acme Analytics"


# --- the tenant's and the key's own failures -------------------------------------------------


def test_key_from_another_tenant_is_a_tenant_error(values, qlik, make_key, ids):
    qlik.key = values["api_key"] = make_key(tenantId="tnt-other")

    with pytest.raises(FieldError) as caught:
        run(values, qlik)

    assert set(caught.value.errors) == {"tenant"}
    message = caught.value.errors["tenant"]
    assert "tnt-other" in message
    assert ids.tenant_id in message
    assert ids.host in message


def test_rejected_key_lists_the_usual_causes_and_quotes_qlik(values, qlik, api_key):
    qlik.key = "some other key"

    with pytest.raises(InvalidCredentials) as caught:
        run(values, qlik)

    error = caught.value
    assert error.field == "api_key"
    message = str(error)
    for cause in ("expired", "revoked", "Manage API keys", "Tenant Admin", "another tenant"):
        assert cause in message
    assert '"Unauthorized" (code HTTP-401)' in message
    assert "trace id trace-123" in message
    assert len(qlik.seen) == 1


def test_forbidden_is_permission_denied(values, qlik, qlik_error):
    qlik.routes["/api/v1/users/me"] = qlik_error(403, "Forbidden", "HTTP-403")

    with pytest.raises(PermissionDenied) as caught:
        run(values, qlik)

    assert caught.value.field == "api_key"
    assert '"Forbidden" (code HTTP-403)' in str(caught.value)


def test_not_found_is_an_unknown_tenant(values, qlik, qlik_error):
    qlik.routes["/api/v1/users/me"] = qlik_error(404, "Not found", "HTTP-404")

    with pytest.raises(FieldError) as caught:
        run(values, qlik)

    message = caught.value.errors["tenant"]
    assert "no Qlik Cloud tenant my-company in region eu" in message
    assert '"Not found"' in message
    # Either may be wrong: both are asked again.
    assert "Region eu may not be the tenant's" in caught.value.errors["region"]


def test_not_found_after_the_redirect_is_an_unknown_tenant(values, qlik, ids):
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(404)

    with pytest.raises(FieldError) as caught:
        run(values, qlik)

    assert set(caught.value.errors) == {"tenant", "region"}  # either may be wrong


def test_unresolved_tenant_host_is_unreachable_and_names_the_tenant(values):
    lookup = socket.gaierror(-2, "Name or service not known")
    unresolved = httpx.ConnectError("[Errno -2] Name or service not known")
    unresolved.__cause__ = lookup

    # No DNS proves nothing about the tenant: never a FieldError (a verdict on the values).
    failed = fail(values, [unresolved], ProviderUnavailable)

    error = failed.error
    assert not isinstance(error, FieldError)
    assert (error.reason, error.field) == ("unresolved", "tenant")
    assert "my-company.eu.qlikcloud.com does not resolve" in str(error)
    assert "Check the Tenant Name and Region" in str(error)
    assert "check your connection" in str(error)
    assert isinstance(error.__cause__, ProviderUnavailable)
    assert len(failed.requests) == 1  # an unknown name is not retried


@pytest.mark.parametrize("reason", ["connect", "timeout", "tls", "proxy", "protocol", "server"])
def test_other_transport_failures_pass_through(values, reason):
    failure = ProviderUnavailable("could not connect", reason=reason)

    failed = fail(values, [failure], ProviderUnavailable, policy=Policy(retries=0))

    assert failed.error is failure
    assert failed.error.reason == reason


def test_rate_limit_is_the_drivers_business(values):
    limited = respond(429, headers={"retry-after": "7"})

    failed = fail(values, [limited] * 3, RateLimited)

    assert failed.error.retry_after == 7
    assert failed.waits == [7, 7]  # waited out twice, then given up
    assert "try again in 7 seconds" in str(failed.error)
    assert len(failed.requests) == 3


def test_rate_limit_waited_out_never_reaches_the_flow(values, qlik, ids):
    answers = iter(
        [
            httpx.Response(429, headers={"retry-after": "2"}),
            httpx.Response(301, headers={"location": f"/api/v1/users/{ids.user_id}"}),
        ]
    )
    qlik.routes["/api/v1/users/me"] = lambda request: next(answers)

    run_ = run(values, qlik)

    assert run_.waits == [2]
    assert run_.result.details["user_name"] == "Ada Lovelace"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_is_provider_unavailable(values, qlik, qlik_error, status):
    qlik.routes["/api/v1/users/me"] = qlik_error(status, "Service down", f"HTTP-{status}")

    with pytest.raises(ProviderUnavailable) as caught:
        run(values, qlik)

    assert caught.value.reason == "server"
    assert f"HTTP {status}" in str(caught.value)
    assert '"Service down"' in str(caught.value)
    assert len(qlik.seen) == (1 if status == 500 else 3)  # 502, 503, 504: the driver retried


def test_server_error_without_a_qlik_body_still_says_what_happened(values, qlik):
    qlik.routes["/api/v1/users/me"] = httpx.Response(502, text="<html>Bad gateway</html>")

    with pytest.raises(ProviderUnavailable) as caught:
        run(values, qlik)

    assert "HTTP 502" in str(caught.value)
    assert "html" not in str(caught.value)


@pytest.mark.parametrize("status", [400, 405, 410, 418])
def test_other_client_errors_are_unexpected(values, qlik, status):
    qlik.routes["/api/v1/users/me"] = httpx.Response(status)

    with pytest.raises(UnexpectedResponse, match=f"HTTP {status}"):
        run(values, qlik)


def test_answer_that_is_not_json_is_unexpected(values, qlik, ids):
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(
        200, text="<html>sign in</html>", headers={"content-type": "text/html; charset=utf-8"}
    )

    with pytest.raises(UnexpectedResponse) as caught:
        run(values, qlik)

    assert "not JSON" in str(caught.value)
    assert "text/html" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "another shape"),
        ("user", "another shape"),
        (None, "another shape"),
        ({}, "does not describe a user"),
        ({"id": "u1"}, "does not describe a user"),
        ({"tenantId": "t1"}, "does not describe a user"),
        ({"id": 5, "tenantId": "t1"}, "does not describe a user"),
        ({"id": "u1", "tenantId": ""}, "does not describe a user"),
        ({"id": "   ", "tenantId": "t1"}, "does not describe a user"),
    ],
)
def test_answer_of_the_wrong_shape_is_unexpected(values, qlik, ids, body, problem):
    # Serialised by hand: httpx sends no body at all for json=None.
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(
        200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )

    with pytest.raises(UnexpectedResponse, match=problem):
        run(values, qlik)


def test_deeply_nested_json_is_unexpected_not_a_crash(values, qlik, ids):
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(
        200, content=b"[" * 100_000 + b"]" * 100_000
    )

    with pytest.raises(UnexpectedResponse):
        run(values, qlik)


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example.net/api/v1/users/me",
        "http://my-company.eu.qlikcloud.com/api/v1/users/u1",
        "https://my-company.eu.qlikcloud.com:8443/api/v1/users/u1",
        "//other.eu.qlikcloud.com/api/v1/users/u1",
    ],
)
def test_redirect_off_the_tenant_origin_is_refused_by_the_driver(values, qlik, ids, location):
    qlik.routes["/api/v1/users/me"] = httpx.Response(302, headers={"location": location})

    failed = fail(values, qlik, UnexpectedResponse)

    assert "the key was not sent there" in str(failed.error)
    assert [r.url.host for r in qlik.seen] == [ids.host]


def test_unreadable_redirect_location_is_an_unexpected_response(values):
    failed = fail(values, [respond(301, headers={"location": "\x1f"})], UnexpectedResponse)
    assert "cannot use, so the key was not sent there" in str(failed.error)


def test_redirect_without_location_is_unexpected(values, qlik):
    qlik.routes["/api/v1/users/me"] = httpx.Response(301)

    with pytest.raises(UnexpectedResponse, match="HTTP 301"):
        run(values, qlik)


def test_long_qlik_error_text_is_clipped(values, qlik, qlik_error):
    qlik.routes["/api/v1/users/me"] = qlik_error(401, "x" * 5000, "HTTP-401")

    with pytest.raises(InvalidCredentials) as caught:
        run(values, qlik)

    assert "x" * 199 + "…" in str(caught.value)
    assert "x" * 201 not in str(caught.value)


def test_qlik_error_without_details_quotes_only_the_trace_id(values, qlik):
    qlik.routes["/api/v1/users/me"] = httpx.Response(
        401, json={"errors": [{"status": "401"}, "junk"], "traceId": "abc"}
    )

    with pytest.raises(InvalidCredentials) as caught:
        run(values, qlik)

    assert "Qlik Cloud said: (no details) (trace id abc)." in str(caught.value)


# --- input found wrong before any request ------------------------------------------------------


def test_elastic_key_is_refused_with_a_hint(values, field_error):
    values["api_key"] = "essu_" + "A" * 60

    error = field_error(values)

    assert set(error.errors) == {"api_key"}
    assert "Elastic" in error.errors["api_key"]
    assert "eyJ" in error.errors["api_key"]


def test_every_field_at_fault_is_reported_at_once(values, field_error):
    values.update(tenant="my_company", region="mars", api_key="essu_" + "A" * 60)

    error = field_error(values)

    assert set(error.errors) == {"tenant", "region", "api_key"}


def test_missing_key_is_a_field_error(values, field_error):
    del values["api_key"]

    assert set(field_error(values).errors) == {"api_key"}


def test_key_pasted_into_tenant_is_caught_without_quoting_it(values, field_error, api_key):
    values["tenant"] = api_key

    error = field_error(values)

    assert "looks like an API key" in error.errors["tenant"]
    assert api_key[:20] not in str(error)


def test_hooks_answer_only_for_qlik(provider, values):
    from hub_core import Account, Credentials

    other = type(provider)(
        id="acme", name="Acme", fields=provider.fields, guide=provider.guide, hosts=["acme.com"]
    )
    credentials = Credentials(values, secret=["api_key"])
    account = Account(id="1", provider_id="acme", identity="x", label="x", status="active")

    assert hub_qlik.hub_validate_credentials(other, credentials) is None
    assert hub_qlik.hub_account_display(other, account) is None
    flow = hub_qlik.hub_validate_credentials(provider, credentials)
    assert next(flow).url.host == "my-company.eu.qlikcloud.com"
    flow.close()


@pytest.mark.parametrize(
    ("error", "quoted"),
    [
        ({"code": "APIKEYS-7"}, "Qlik Cloud said: (code APIKEYS-7)."),
        ({"title": "Key revoked"}, 'Qlik Cloud said: "Key revoked".'),
        ({"detail": "Key expired", "code": "E1"}, 'Qlik Cloud said: "Key expired" (code E1).'),
        ({"title": "two\nlines"}, 'Qlik Cloud said: "two lines".'),
    ],
)
def test_qlik_error_parts_are_quoted_as_given(values, qlik, error, quoted):
    qlik.routes["/api/v1/users/me"] = httpx.Response(401, json={"errors": [error]})

    with pytest.raises(InvalidCredentials) as caught:
        run(values, qlik)

    assert quoted in str(caught.value)
