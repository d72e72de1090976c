"""The plugin under the core's real driver: `Hub` with an `httpx.MockTransport`, no network.

The driver enforces HTTPS and the allowlist, follows the tenant's real 301/302 redirects,
retries, and throws transport failures into the flow; these tests check that the plugin and
the driver agree on all of it.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import httpx
import pytest

import hub_qlik
from hub_core import (
    Account,
    FieldError,
    Hub,
    InvalidCredentials,
    Policy,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    Verified,
)


@pytest.fixture
def hub_for():
    def make(handler) -> Hub:
        return Hub(
            plugins=[hub_qlik],
            load_entrypoints=False,
            transport=httpx.MockTransport(handler),
            policy=Policy(backoff=0.0),
        )

    return make


def test_check_follows_the_tenants_redirects(hub_for, qlik, values, ids):
    result = hub_for(qlik).verify("qlik", values)

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert result.details["tenant_name"] == "Acme Analytics"
    assert result.details["permanent_host"] == ids.host
    assert result.expires_at == datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert qlik.paths() == [
        "/api/v1/users/me",
        f"/api/v1/users/{ids.user_id}",
        "/api/v1/tenants/me",
        f"/api/v1/tenants/{ids.tenant_id}",
        f"/api/v1/api-keys/{ids.key_id}",
    ]
    assert all(r.headers["authorization"] == f"Bearer {values['api_key']}" for r in qlik.seen)


def test_pasted_address_and_no_region_pass_the_core_validation(hub_for, qlik, values, ids):
    del values["region"]
    values["tenant"] = f"  https://{ids.host}/hub  "

    result = hub_for(qlik).verify("qlik", values)

    assert result.details["region"] == "eu"


def test_missing_region_is_reported_on_region_with_no_request(hub_for, qlik, values):
    values["region"] = ""

    with pytest.raises(FieldError) as caught:
        hub_for(qlik).verify("qlik", values)

    assert set(caught.value.errors) == {"region"}
    assert qlik.seen == []


@pytest.mark.parametrize(
    "tenant",
    [
        "my-company.eu.qlikcloud.com.example.net",
        "https://user@my-company.eu.qlikcloud.com/",
        "a.b.eu.qlikcloud.com",
        "127.0.0.1",
        "my-cоmpany",
        "my-company:443",
    ],
)
def test_hostile_tenant_sends_nothing_through_the_hub(hub_for, qlik, values, tenant):
    values["tenant"] = tenant

    with pytest.raises(FieldError) as caught:
        hub_for(qlik).verify("qlik", values)

    assert "tenant" in caught.value.errors
    assert qlik.seen == []


def test_tenant_that_does_not_resolve_is_unreachable_with_the_likely_cause(hub_for, values):
    def handler(request):
        raise httpx.ConnectError("[Errno -2] Name or service not known") from socket.gaierror(
            -2, "Name or service not known"
        )

    with pytest.raises(ProviderUnavailable) as caught:
        hub_for(handler).verify("qlik", values)

    assert (caught.value.reason, caught.value.field) == ("unresolved", "tenant")
    assert "Check the Tenant Name and Region" in str(caught.value)


def test_refused_connection_is_provider_unavailable(hub_for, values):
    def handler(request):
        raise httpx.ConnectError("Connection refused") from ConnectionRefusedError(111, "refused")

    with pytest.raises(ProviderUnavailable) as caught:
        hub_for(handler).verify("qlik", values)

    assert caught.value.reason == "connect"


def test_rejected_key_through_the_hub_hides_the_key(hub_for, qlik, values, canary):
    qlik.key = "another key"

    with pytest.raises(InvalidCredentials) as caught:
        hub_for(qlik).verify("qlik", values)

    assert caught.value.field == "api_key"
    assert "Manage API keys" in str(caught.value)
    assert canary not in str(caught.value)


def test_redirect_to_another_host_never_carries_the_key(hub_for, qlik, values):
    qlik.routes["/api/v1/users/me"] = httpx.Response(
        301, headers={"location": "https://evil.example.net/steal"}
    )

    with pytest.raises(UnexpectedResponse):
        hub_for(qlik).verify("qlik", values)

    assert [r.url.host for r in qlik.seen] == ["my-company.eu.qlikcloud.com"]


def test_best_effort_redirect_elsewhere_only_leaves_the_detail_out(hub_for, qlik, values):
    qlik.routes["/api/v1/tenants/me"] = httpx.Response(
        302, headers={"location": "https://evil.example.net/tenant"}
    )

    result = hub_for(qlik).verify("qlik", values)

    assert "tenant_name" not in result.details
    assert result.details["key_status"] == "active"
    assert "evil.example.net" not in {r.url.host for r in qlik.seen}


def test_best_effort_calls_that_fail_at_the_transport_leave_details_out(
    hub_for, qlik, values, key_path
):
    def broken(request):
        raise httpx.ConnectError("reset") from ConnectionResetError(104, "reset")

    qlik.routes["/api/v1/tenants/me"] = broken
    qlik.routes[key_path] = broken

    result = hub_for(qlik).verify("qlik", values)

    assert isinstance(result, Verified)
    assert "tenant_name" not in result.details
    assert result.expires_at is None


def test_long_rate_limit_ends_in_rate_limited(hub_for, qlik, values):
    qlik.routes["/api/v1/users/me"] = httpx.Response(429, headers={"retry-after": "3600"})

    with pytest.raises(RateLimited) as caught:
        hub_for(qlik).verify("qlik", values)

    assert caught.value.retry_after == 3600


def test_server_errors_are_retried_then_reported(hub_for, qlik, qlik_error, values):
    qlik.routes["/api/v1/users/me"] = qlik_error(503, "Unavailable", "HTTP-503")

    with pytest.raises(ProviderUnavailable) as caught:
        hub_for(qlik).verify("qlik", values)

    assert caught.value.reason == "server"
    assert '"Unavailable"' in str(caught.value)
    assert len(qlik.seen) == 3  # the first try and the driver's two retries


def test_async_check_gives_the_same_result(hub_for, qlik, values, ids):
    result = asyncio.run(hub_for(qlik).averify("qlik", values))

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert result.details["key_status"] == "active"
    assert result.expires_at == datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)


def test_bulk_check_reports_each_account(hub_for, qlik, values):
    bad = {**values, "tenant": "my_company"}
    gov = {**values, "region": "us-gov"}

    results = asyncio.run(
        hub_for(qlik).check_many([("qlik", values), ("qlik", bad), ("qlik", gov)])
    )

    assert isinstance(results[0], Verified)
    assert isinstance(results[1], FieldError)
    assert isinstance(results[2], FieldError)  # the fake has no such Government tenant: 404


def test_hub_uses_the_plugins_account_display(hub_for, qlik):
    account = Account(
        id="1",
        provider_id="qlik",
        identity="tenant:t/user:u",
        label="Ada @ x.eu.qlikcloud.com",
        status="active",
        details={"user_name": "Ada", "email": "a@b.c", "tenant_host": "x.eu.qlikcloud.com"},
    )

    shown = hub_for(qlik).display(account)

    assert shown.title == "Ada (a@b.c)"
    assert shown.url == "https://x.eu.qlikcloud.com"


def test_installed_entry_point_provides_qlik():
    hub = Hub(enable=["qlik"])

    assert [p.id for p in hub.providers()] == ["qlik"]
    (report,) = hub.plugins()
    assert (report.name, report.distribution, report.version) == ("qlik", "hub-qlik", "0.1.0")
    assert report.error is None


@pytest.mark.parametrize("pasted", ["Authorization: Bearer {key}", '"Bearer {key}"', "{key}"])
def test_a_pasted_header_line_or_quoted_key_is_read_as_the_key(hub_for, qlik, values, ids, pasted):
    # Qlik's own examples show the whole `Authorization: Bearer <key>` line.
    typed = dict(values, api_key=pasted.format(key=values["api_key"]))

    result = hub_for(qlik).verify("qlik", typed)

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert qlik.seen[0].headers["authorization"] == f"Bearer {values['api_key']}"


@pytest.mark.parametrize("pasted", ["Authorization: Bearer {key}", "  'Bearer {key}' "])
def test_a_pasted_header_line_is_kept_as_the_bare_key(hub_for, qlik, values, pasted):
    # What is stored (and masked in every message of a check) is the key, not the header
    # name and scheme typed around it.
    typed = dict(values, api_key=pasted.format(key=values["api_key"]))

    credentials = hub_for(qlik).validate("qlik", typed)

    assert credentials["api_key"] == values["api_key"]
    assert credentials.secret_values() == (values["api_key"],)


def test_qliks_unauthorized_title_is_not_masked_after_a_pasted_header_line(
    hub_for, qlik, qlik_error, values
):
    # "Authorization" and Qlik's title "Unauthorized" share the piece "authoriz": masked by the
    # line as typed, the title read "Un[redacted]ed".
    qlik.routes["/api/v1/users/me"] = qlik_error(401, "Unauthorized", "HTTP-401")
    typed = dict(values, api_key=f"Authorization: Bearer {values['api_key']}")

    with pytest.raises(InvalidCredentials) as caught:
        hub_for(qlik).verify("qlik", typed)

    assert "[redacted]" not in str(caught.value)
    assert 'Qlik Cloud said: "Unauthorized" (code HTTP-401)' in str(caught.value)
    assert values["api_key"][:8] not in str(caught.value)


def test_accounts_stored_with_a_pasted_header_line_still_check(
    hub_for, qlik, values, ids, make_key
):
    # Accounts linked before the field normalized its value hold the line as typed.
    revoked = make_key(jti="key-0001")
    stored = [
        dict(values, api_key=f"Authorization: Bearer {key}") for key in (values["api_key"], revoked)
    ]

    checked, rejected = asyncio.run(hub_for(qlik).check_many([("qlik", v) for v in stored]))

    assert isinstance(checked, Verified)
    assert checked.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"
    assert qlik.seen[0].headers["authorization"] == f"Bearer {values['api_key']}"
    assert isinstance(rejected, InvalidCredentials)
    assert 'Qlik Cloud said: "Unauthorized" (code HTTP-401)' in str(rejected)
