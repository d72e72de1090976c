"""How `hub accounts` words an expiry: whole days behind, never one too many."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub_core.cli.accounts import CheckReport
from hub_core.model import Account
from hub_core.status import Status


def _expired(ago: timedelta) -> Account:
    return Account(
        id="3f9c2a81d0e4b7c5",
        provider_id="elastic",
        identity="org:acme",
        label="Acme Org",
        status=Status.EXPIRED,
        expires_at=datetime.now(UTC) - ago,
    )


def test_a_key_that_expired_25_hours_ago_reads_1_day_ago_not_2() -> None:
    """A key that expired a day and an hour ago reads "(1 day ago)", not "(2 days ago)"
    beside a date that is yesterday's."""
    report = CheckReport()
    report.add(_expired(timedelta(days=1, hours=1)))
    (_, line) = [shown.plain for shown in report.lines()]
    assert "(1 day ago)" in line, line


def test_a_key_that_expired_a_week_ago_reads_7_days_ago() -> None:
    report = CheckReport()
    report.add(_expired(timedelta(days=7, minutes=5)))
    (_, line) = [shown.plain for shown in report.lines()]
    assert "(7 days ago)" in line, line
