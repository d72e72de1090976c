"""hub's conformance check: hub-qlik keeps the whole plugin contract."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import hub_qlik
from hub_core.testing import Routes, respond
from hub_core.testing.conformance import ConformanceReport

Check = Callable[..., ConformanceReport]


def test_hub_qlik_conforms_with_an_opaque_key(hub_conformance: Check, ids: SimpleNamespace) -> None:
    # The check's default key (CANARY) is not a JWT: no claims, so no key lookup either.
    user = {"id": ids.user_id, "tenantId": ids.tenant_id, "name": "Ada", "status": "active"}
    tenant = {"id": ids.tenant_id, "name": "Acme Analytics", "hostnames": [ids.host]}
    api = Routes(
        {
            "GET /api/v1/users/me": respond(200, json=user),
            "GET /api/v1/tenants/me": respond(200, json=tenant),
        }
    )
    report = hub_conformance(hub_qlik, happy=api)
    assert not report.skipped, report
    assert {request.url.host for request in api.requests} == {"my-company.us.qlikcloud.com"}


def test_hub_qlik_conforms_with_a_jwt_key_and_redirects(
    hub_conformance: Check, values: dict[str, str], qlik: Any, canary: str
) -> None:
    # A key shaped like Qlik's (its signature holds the suite's canary), answered by the fake
    # tenant, which redirects users/me and tenants/me and lists the key: four requests, each
    # also failed in turn by the check.
    assert canary in values["api_key"]
    report = hub_conformance(hub_qlik, values=values, happy=qlik)
    assert not report.skipped, report
    # Every later request was failed in turn too (users/<id>, tenants/me, its redirect, keys).
    later = {f.check.split(":")[0] for f in report.passed if f.check.startswith("request ")}
    assert later == {f"request {n} of 5" for n in range(2, 6)}, report
