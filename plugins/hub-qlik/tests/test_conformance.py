"""hub's conformance check: hub-qlik keeps the whole plugin contract."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import hub_qlik
from hub_core.testing import Routes, respond
from hub_core.testing.conformance import ConformanceReport, check_plugin


def assert_conforms(report: ConformanceReport) -> None:
    """Fail on any failed or skipped finding, listing the whole report."""
    assert report.ok, report
    assert not report.skipped, report


def test_hub_qlik_conforms_with_an_opaque_key(ids: SimpleNamespace) -> None:
    # The check's default key (CANARY) is not a JWT: no claims, so no key lookup either.
    user = {"id": ids.user_id, "tenantId": ids.tenant_id, "name": "Ada", "status": "active"}
    tenant = {"id": ids.tenant_id, "name": "Acme Analytics", "hostnames": [ids.host]}
    api = Routes(
        {
            "GET /api/v1/users/me": respond(200, json=user),
            "GET /api/v1/tenants/me": respond(200, json=tenant),
        }
    )
    assert_conforms(check_plugin(hub_qlik, happy=api))
    assert {request.url.host for request in api.requests} == {"my-company.us.qlikcloud.com"}
    assert not [r for r in api.requests if r.url.path.startswith("/api/v1/api-keys")]


def test_hub_qlik_conforms_with_a_jwt_key_and_redirects(
    values: dict[str, str], qlik: Any, canary: str, ids: SimpleNamespace
) -> None:
    # A key shaped like Qlik's (its signature holds the suite's canary), answered by the fake
    # tenant, which redirects users/me and tenants/me and holds the key's record: five
    # requests under the driver (two of them redirect hops), each also failed in turn.
    assert canary in values["api_key"]
    report = check_plugin(hub_qlik, values=values, happy=qlik)
    assert_conforms(report)
    assert f"/api/v1/api-keys/{ids.key_id}" in qlik.paths()
    happy = next(f for f in report.findings if f.check == "happy-path")
    later = {f.check.split(":")[0] for f in report.passed if f.check.startswith("request ")}
    if happy.outcome == "pass":
        # Every later request was failed in turn too (users/<id>, tenants/me, its hop, the key).
        assert later == {f"request {n} of 5" for n in range(2, 6)}, report
    else:
        # Driven directly, the flow stops at the raw 301 of users/me: no later requests.
        assert not later, report
