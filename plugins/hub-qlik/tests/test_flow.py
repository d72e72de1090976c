"""The verification flow, driven with scripted responses: every branch of every answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

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
    Verified,
)
from hub_core.testing import drive_raw as drive


def run(values, responder):
    return drive(hub_qlik.verify(values), responder)


# --- success ---------------------------------------------------------------------------------


def test_full_check_follows_redirects_and_reads_user_tenant_and_key(values, qlik, ids):
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
        "/api/v1/api-keys",
    ]


def test_every_request_is_https_to_the_tenant_with_the_bearer_key(values, qlik, api_key, ids):
    requests = run(values, qlik).requests

    for request in requests:
        assert request.method == "GET"
        assert request.url.scheme == "https"
        assert request.url.host == ids.host
        assert request.url.port is None
        assert request.headers["authorization"] == f"Bearer {api_key}"
        assert request.headers["accept"] == "application/json"


def test_key_list_is_asked_for_this_user_only(values, qlik, ids):
    requests = run(values, qlik).requests

    assert requests[-1].url.params["sub"] == ids.user_id
    assert requests[-1].url.params["limit"] == "100"


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


def test_key_found_on_a_later_page_of_the_key_list(values, qlik, ids):
    matching = qlik.keys[1]
    pages = {
        "1": {"data": [qlik.keys[0]], "links": {"next": {"href": "/api/v1/api-keys?page=2"}}},
        "2": {"data": [matching], "links": {}},
    }

    def keys(request):
        return httpx.Response(200, json=pages[request.url.params.get("page", "1")])

    qlik.routes["/api/v1/api-keys"] = keys

    result = run(values, qlik).result

    assert result.details["key_status"] == "active"
    assert qlik.seen[-1].url == httpx.URL(f"https://{ids.host}/api/v1/api-keys?page=2")


def test_key_list_paging_stops_at_another_host(values, qlik):
    page = {"data": [], "links": {"next": {"href": "https://evil.example.net/api/v1/api-keys"}}}
    qlik.routes["/api/v1/api-keys"] = httpx.Response(200, json=page)

    result = run(values, qlik).result

    assert "key_status" not in result.details
    assert all(r.url.host != "evil.example.net" for r in qlik.seen)


def test_key_list_paging_is_bounded(values, qlik):
    page = {"data": [], "links": {"next": {"href": "/api/v1/api-keys?again=1"}}}
    qlik.routes["/api/v1/api-keys"] = httpx.Response(200, json=page)

    result = run(values, qlik).result

    assert result.expires_at is None
    assert qlik.paths().count("/api/v1/api-keys") == 5


def test_key_missing_from_the_list_leaves_expiry_unknown(values, qlik, ids):
    qlik.keys = [qlik.keys[0]]

    result = run(values, qlik).result

    assert result.expires_at is None
    assert result.details["key_id"] == ids.key_id
    assert "key_status" not in result.details
    assert "key_expiry" not in result.details


def test_key_without_jti_skips_the_key_list(values, qlik, make_key):
    qlik.key = values["api_key"] = make_key(jti=None)

    result = run(values, qlik).result

    assert "/api/v1/api-keys" not in qlik.paths()
    assert "key_id" not in result.details


def test_key_that_is_not_a_jwt_is_still_checked(values, qlik, ids):
    qlik.key = values["api_key"] = "opaque-token-" + "x" * 40

    result = run(values, qlik).result

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert "/api/v1/api-keys" not in qlik.paths()


def test_bearer_prefix_pasted_with_the_key_is_dropped(values, qlik, api_key):
    values["api_key"] = f"Bearer {api_key}"

    requests = run(values, qlik).requests

    assert requests[0].headers["authorization"] == f"Bearer {api_key}"


def test_exp_claim_is_the_expiry_when_the_key_list_has_none(values, qlik, make_key):
    qlik.key = values["api_key"] = make_key(exp=1_900_000_000)
    qlik.keys = []

    result = run(values, qlik).result

    assert result.expires_at == datetime.fromtimestamp(1_900_000_000, tz=UTC)


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        ("2031-05-04T03:02:01Z", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T05:02:01+02:00", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2031-05-04T03:02:01", datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("next tuesday", None),
        (1_900_000_000, None),
        (None, None),
    ],
)
def test_key_expiry_is_read_as_utc(values, qlik, expiry, expected):
    qlik.keys[1]["expiry"] = expiry

    result = run(values, qlik).result

    assert result.expires_at == expected
    if expected is not None:
        assert result.expires_at.tzinfo is not None


# --- best-effort calls -------------------------------------------------------------------------


def _failures(qlik_error):
    return {
        "401": qlik_error(401, "Unauthorized", "HTTP-401"),
        "403": qlik_error(403, "Forbidden", "HTTP-403"),
        "404": qlik_error(404, "Not found", "HTTP-404"),
        "429": httpx.Response(429, headers={"retry-after": "3"}),
        "500": httpx.Response(500, text="oops"),
        "not-json": httpx.Response(200, text="<html>hello</html>"),
        "json-list": httpx.Response(200, json=[1, 2]),
        "offsite-redirect": httpx.Response(302, headers={"location": "https://evil.example.net/"}),
    }


FAILURES = ["401", "403", "404", "429", "500", "not-json", "json-list", "offsite-redirect"]


@pytest.mark.parametrize("failure", FAILURES)
def test_tenant_lookup_failure_only_leaves_tenant_details_out(values, qlik, qlik_error, failure):
    qlik.routes["/api/v1/tenants/me"] = _failures(qlik_error)[failure]

    result = run(values, qlik).result

    assert "tenant_name" not in result.details
    assert "hostnames" not in result.details
    assert result.details["key_status"] == "active"
    assert all(r.url.host != "evil.example.net" for r in qlik.seen)


@pytest.mark.parametrize("failure", FAILURES)
def test_key_list_failure_only_leaves_expiry_out(values, qlik, qlik_error, failure):
    qlik.routes["/api/v1/api-keys"] = _failures(qlik_error)[failure]

    result = run(values, qlik).result

    assert result.expires_at is None
    assert "key_status" not in result.details
    assert result.details["tenant_name"] == "Acme Analytics"


def test_tenant_lookup_with_odd_fields_keeps_what_it_can(values, qlik):
    qlik.tenant.update(name=["not", "text"], hostnames="not-a-list")

    result = run(values, qlik).result

    assert "tenant_name" not in result.details
    assert "hostnames" not in result.details


def test_key_list_with_odd_entries_is_tolerated(values, qlik, ids):
    body = {"data": ["junk", None, {"id": ids.key_id, "status": 5, "expiry": "2031-01-01"}]}
    qlik.routes["/api/v1/api-keys"] = httpx.Response(200, json=body)

    result = run(values, qlik).result

    assert "key_status" not in result.details
    assert result.expires_at == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("reason", ["unresolved", "connect", "timeout", "tls", "server"])
def test_transport_failure_in_a_best_effort_call_leaves_the_detail_out(values, qlik, reason):
    flow = hub_qlik.verify(values)
    request = next(flow)
    while request.url.path != "/api/v1/tenants/me":
        response = qlik(request)
        response.request = request
        request = flow.send(response)
    request = flow.throw(ProviderUnavailable("could not be reached", reason=reason))
    assert request.url.path == "/api/v1/api-keys"
    response = qlik(request)
    response.request = request
    with pytest.raises(StopIteration) as stop:
        flow.send(response)

    result = stop.value.value
    assert isinstance(result, Verified)
    assert "tenant_name" not in result.details
    assert result.details["key_status"] == "active"


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


def test_not_found_after_the_redirect_is_an_unknown_tenant(values, qlik, ids):
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(404)

    with pytest.raises(FieldError) as caught:
        run(values, qlik)

    assert set(caught.value.errors) == {"tenant"}


def test_unresolved_tenant_host_is_an_unknown_tenant(values):
    flow = hub_qlik.verify(values)
    next(flow)
    failure = ProviderUnavailable("the name does not resolve", reason="unresolved")

    with pytest.raises(FieldError) as caught:
        flow.throw(failure)

    assert caught.value.errors == {
        "tenant": caught.value.errors["tenant"],
    }
    assert "no Qlik Cloud tenant my-company in region eu" in caught.value.errors["tenant"]
    assert "my-company.eu.qlikcloud.com does not exist" in caught.value.errors["tenant"]
    assert caught.value.__cause__ is failure


@pytest.mark.parametrize("reason", ["connect", "timeout", "tls", "proxy", "protocol", "server"])
def test_other_transport_failures_pass_through(values, reason):
    flow = hub_qlik.verify(values)
    next(flow)
    failure = ProviderUnavailable("could not connect", reason=reason)

    with pytest.raises(ProviderUnavailable) as caught:
        flow.throw(failure)

    assert caught.value is failure
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("2.5", 2.5), ("soon", None), ("-4", 0.0), ("nan", None), (None, None)],
)
def test_rate_limit_carries_retry_after(values, qlik, header, expected):
    headers = {"retry-after": header} if header is not None else {}
    qlik.routes["/api/v1/users/me"] = httpx.Response(429, headers=headers)

    with pytest.raises(RateLimited) as caught:
        run(values, qlik)

    assert caught.value.retry_after == expected
    if expected == 7.0:
        assert "try again in 7 seconds" in str(caught.value)


def test_rate_limit_retry_after_as_a_date(values, qlik):
    when = datetime.now(UTC) + timedelta(seconds=120)
    qlik.routes["/api/v1/users/me"] = httpx.Response(
        429, headers={"retry-after": format_datetime(when, usegmt=True)}
    )

    with pytest.raises(RateLimited) as caught:
        run(values, qlik)

    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_is_provider_unavailable(values, qlik, qlik_error, status):
    qlik.routes["/api/v1/users/me"] = qlik_error(status, "Service down", f"HTTP-{status}")

    with pytest.raises(ProviderUnavailable) as caught:
        run(values, qlik)

    assert caught.value.reason == "server"
    assert f"HTTP {status}" in str(caught.value)
    assert '"Service down"' in str(caught.value)


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
    "body",
    [
        [],
        "user",
        {},
        {"id": "u1"},
        {"tenantId": "t1"},
        {"id": 5, "tenantId": "t1"},
        {"id": "u1", "tenantId": ""},
        {"id": "   ", "tenantId": "t1"},
    ],
)
def test_answer_of_the_wrong_shape_is_unexpected(values, qlik, ids, body):
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(200, json=body)

    with pytest.raises(UnexpectedResponse, match="does not describe a user"):
        run(values, qlik)


def test_deeply_nested_json_is_unexpected_not_a_crash(values, qlik, ids):
    qlik.routes[f"/api/v1/users/{ids.user_id}"] = httpx.Response(
        200, content=b"[" * 100_000 + b"]" * 100_000
    )

    with pytest.raises(UnexpectedResponse):
        run(values, qlik)


def test_redirect_to_another_host_is_not_followed(values, qlik):
    qlik.routes["/api/v1/users/me"] = httpx.Response(
        301, headers={"location": "https://evil.example.net/api/v1/users/me"}
    )

    with pytest.raises(UnexpectedResponse, match="another address"):
        run(values, qlik)

    assert len(qlik.seen) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://my-company.eu.qlikcloud.com/api/v1/users/u1",
        "https://my-company.eu.qlikcloud.com:8443/api/v1/users/u1",
        "//other.eu.qlikcloud.com/api/v1/users/u1",
    ],
)
def test_redirect_off_the_tenant_origin_is_not_followed(values, qlik, location):
    qlik.routes["/api/v1/users/me"] = httpx.Response(302, headers={"location": location})

    with pytest.raises(UnexpectedResponse):
        run(values, qlik)

    assert len(qlik.seen) == 1


def test_redirect_loop_ends(values, qlik):
    qlik.routes["/api/v1/users/me"] = httpx.Response(302, headers={"location": "/api/v1/users/me"})

    with pytest.raises(UnexpectedResponse, match="too many times"):
        run(values, qlik)

    assert len(qlik.seen) == 6


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


def test_unreadable_next_link_ends_the_key_list(values, qlik):
    page = {"data": [], "links": {"next": {"href": "https://a.eu.qlikcloud.com:abc/"}}}
    qlik.routes["/api/v1/api-keys"] = httpx.Response(200, json=page)

    result = run(values, qlik).result

    assert "key_status" not in result.details
    assert qlik.paths().count("/api/v1/api-keys") == 1


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


def test_rate_limit_date_without_zone_is_read_as_utc(values, qlik):
    when = datetime.now(UTC) + timedelta(seconds=300)
    qlik.routes["/api/v1/users/me"] = httpx.Response(
        429, headers={"retry-after": when.strftime("%a, %d %b %Y %H:%M:%S -0000")}
    )

    with pytest.raises(RateLimited) as caught:
        run(values, qlik)

    assert 250 < caught.value.retry_after <= 300
