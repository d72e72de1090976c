"""Shared fixtures: the provider, sample credentials, and a scripted Example API."""

from __future__ import annotations

import pytest
from hub_core import Credentials, Provider
from hub_core.testing import Routes, respond, sample_credentials

import hub_example

#: What GET /v1/me answers for a good key, as the Example API documents it.
ME = {
    "account": {"id": "acc_42", "name": "Ada's team", "plan": "pro"},
    "key": {"expires_at": "2031-05-04T03:02:01+00:00"},
}


@pytest.fixture
def provider() -> Provider:
    return hub_example.PROVIDER


@pytest.fixture
def credentials(provider: Provider) -> Credentials:
    """Validated sample values; the key is hub_core.testing.CANARY."""
    return sample_credentials(provider)


@pytest.fixture
def api() -> Routes:
    """The Example API when the key is good: every region answers GET /v1/me."""
    return Routes({"GET /v1/me": respond(200, json=ME)})
