"""hub's conformance check: hub-elastic keeps the whole plugin contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import hub_elastic
from hub_core.testing import CANARY, Routes, respond
from hub_core.testing.conformance import ConformanceReport

Check = Callable[..., ConformanceReport]
OrgBody = Callable[..., dict[str, Any]]


@pytest.fixture
def elastic_api(org_body: OrgBody) -> Routes:
    """Elastic Cloud when the key is good, in both environments."""
    body = org_body(("1234567890", "Acme Observability"), ("222", "Second"))
    headers = {"X-Elastic-Api-Key-Expiration": "2031-05-04T03:02:01Z"}
    return Routes({"GET /api/v1/organizations": respond(200, json=body, headers=headers)})


@pytest.mark.parametrize(
    "values",
    [
        {},  # the bare canary as the key, the default environment
        {"api_key": f"essu_{CANARY}"},  # shaped like a real Cloud API key
        {"api_key": f"ApiKey essu_{CANARY}", "environment": "gov"},  # a pasted header value
    ],
    ids=["canary", "essu-key", "gov-header"],
)
def test_hub_elastic_conforms(
    hub_conformance: Check, elastic_api: Routes, values: dict[str, str]
) -> None:
    report = hub_conformance(hub_elastic, values=values, happy=elastic_api)
    assert not report.skipped, report
    assert elastic_api.unmatched == []
