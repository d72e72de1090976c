"""How a linked organization is shown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import hub_elastic
from hub_core import Account, Provider
from hub_elastic.display import account_display

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def account(
    config: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> Account:
    return Account(
        id="acc-1",
        provider_id="elastic",
        identity="org:1234567890",
        label="Acme Observability",
        status="active",
        config=config if config is not None else {"environment": "cloud"},
        expires_at=expires_at,
        details=details
        if details is not None
        else {
            "environment": "cloud",
            "organization_id": "1234567890",
            "organization_name": "Acme Observability",
            "organization_count": 1,
        },
    )


def test_display_through_the_hook(provider: Provider) -> None:
    shown = hub_elastic.hub_account_display(provider=provider, account=account())
    assert shown is not None
    assert shown.title == "Acme Observability"
    assert shown.subtitle == "Elastic Cloud organization 1234567890"
    assert shown.url == "https://cloud.elastic.co"
    assert dict(shown.rows) == {
        "Environment": "Elastic Cloud (api.elastic-cloud.com)",
        "Key expires": "never / unknown",
        "Organizations reachable": "1: Acme Observability",
    }


def test_expiry_is_shown_in_utc_and_flagged_when_past() -> None:
    later = datetime(2031, 5, 4, 3, 2, tzinfo=UTC)
    assert dict(account_display(account(expires_at=later), NOW).rows)["Key expires"] == (
        "2031-05-04 03:02 UTC"
    )
    earlier = datetime(2029, 12, 31, tzinfo=UTC)
    assert dict(account_display(account(expires_at=earlier), NOW).rows)["Key expires"] == (
        "2029-12-31 00:00 UTC (expired)"
    )


def test_several_organizations_are_counted_and_named() -> None:
    details = {
        "organization_id": "1",
        "organization_name": "Main",
        "organization_count": 7,
        "other_organizations": [{"id": str(i), "name": f"Org {i}"} for i in range(2, 8)],
        "more_organizations": True,
    }
    rows = dict(account_display(account(details=details), NOW).rows)
    assert rows["Organizations reachable"] == "7+: Main, Org 2, Org 3, Org 4, Org 5 and 2 more"


def test_government_environment_shows_its_host_and_links_its_console() -> None:
    shown = account_display(account(config={"environment": "gov"}), NOW)
    assert dict(shown.rows)["Environment"] == (
        "Elastic Cloud for US government (api.us-gov-east-1.aws.elastic-cloud.com)"
    )
    assert shown.url == "https://console.us-gov-east-1.aws.elastic-cloud.com"


def test_account_without_details_falls_back_to_identity_and_label() -> None:
    shown = account_display(account(config={}, details={}), NOW)
    assert shown.title == "Acme Observability"
    assert shown.subtitle == "Elastic Cloud organization 1234567890"
    assert dict(shown.rows)["Organizations reachable"] == "unknown"
    assert dict(shown.rows)["Environment"] == "Elastic Cloud (api.elastic-cloud.com)"


def test_odd_details_do_not_break_the_display() -> None:
    details = {
        "organization_id": 5,
        "organization_name": ["x"],
        "organization_count": True,
        "other_organizations": "nope",
    }
    shown = account_display(account(config={"environment": "moon"}, details=details), NOW)
    assert shown.title == "Acme Observability"
    assert dict(shown.rows)["Environment"] == "moon"
    assert dict(shown.rows)["Organizations reachable"] == "unknown"
    assert shown.url is None
