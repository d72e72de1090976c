"""Shared fixtures: the provider, a way to start a flow as the core would, documented bodies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

import hub_elastic
from hub_core import Credentials, Flow, Provider
from hub_core.fields import validate_values

#: A key shaped like a real Cloud API key; every test that looks for leaks looks for this.
CANARY = "essu_Q2FuYXJ5U2VjcmV0S2V5MDEyMzQ1Njc4OTphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY="


@pytest.fixture
def provider() -> Provider:
    return hub_elastic.PROVIDER


@pytest.fixture
def canary() -> str:
    return CANARY


@pytest.fixture
def credentials(provider: Provider) -> Callable[..., Credentials]:
    """Validate values against the schema, as the core does before it asks for a flow."""

    def make(api_key: str = CANARY, **values: str) -> Credentials:
        return validate_values(provider, {"api_key": api_key, **values})

    return make


@pytest.fixture
def start(provider: Provider, credentials: Callable[..., Credentials]) -> Callable[..., Flow]:
    """Ask the plugin's hook for the flow of these values, as the core's registry does."""

    def make(api_key: str = CANARY, **values: str) -> Flow:
        flow = hub_elastic.hub_validate_credentials(
            provider=provider, credentials=credentials(api_key, **values)
        )
        assert flow is not None
        return flow

    return make


# Bodies shaped like the ones Elastic Cloud documents for GET /api/v1/organizations; the error
# bodies' shape is documented, their codes are not.


@pytest.fixture
def org_body() -> Callable[..., dict[str, Any]]:
    def make(*orgs: tuple[str, str], next_page: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "organizations": [
                {
                    "id": org_id,
                    "name": name,
                    "billing_contacts": [],
                    "operational_contacts": [],
                    "notifications_allowed_email_domains": [],
                }
                for org_id, name in orgs
            ]
        }
        if next_page is not None:
            body["next_page"] = next_page
        return body

    return make


def _errors(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


@pytest.fixture
def errors_body() -> Callable[[str, str], dict[str, Any]]:
    return _errors


@pytest.fixture
def assumed_errors() -> Mapping[int, dict[str, Any]]:
    """Error answers of GET /api/v1/organizations, by status.

    Assumed shape: Elastic documents ``{"errors": [{"code", "message"}]}`` but not these codes
    or messages for this endpoint, and no 403 for it at all.
    """
    return {
        401: _errors("root.unauthenticated", "The supplied authentication is invalid"),
        403: _errors(
            "organization.invalid_access",
            "The current user does not have access to the requested organization",
        ),
        500: _errors("root.unexpected_error", "An unexpected error occurred"),
    }
