"""Short-lived keys: the key record's creation time, and a healthy 1-day key shown active.

Qlik recommends keys that expire in 6 hours or 1 day. The record the flow already reads
(``GET /api/v1/api-keys/{jti}``) says when the key was created (``created``), so hub knows the
key's lifetime and marks the account ``expiring`` only in its last fifth.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import hub_qlik
from hub_core import Accounts, Status, Store
from hub_core.testing import drive, mock_hub

PROVIDER = hub_qlik.make_provider()
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2025-05-04T03:02:01.000Z", datetime(2025, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2025-05-04T05:02:01+02:00", datetime(2025, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("2025-05-04T03:02:01", datetime(2025, 5, 4, 3, 2, 1, tzinfo=UTC)),
        ("yesterday", None),
        (1746327721, None),  # Qlik documents a date-time string: a number is no date of its
        (None, None),
        ("missing", None),
    ],
)
def test_the_keys_creation_time_comes_from_its_record(values, qlik, created, expected):
    if created == "missing":
        del qlik.keys[1]["created"]
    else:
        qlik.keys[1]["created"] = created

    result = drive(hub_qlik.verify(values), qlik, provider=PROVIDER).result

    assert result.created_at == expected
    assert result.expires_at == datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)


def test_another_keys_record_says_nothing_about_when_this_one_was_created(values, qlik):
    qlik.keys[1]["id"] = "key-other"
    qlik.keys.append({**qlik.keys[1], "id": "key-other"})

    result = drive(hub_qlik.verify(values), qlik, provider=PROVIDER).result

    assert (result.created_at, result.expires_at) == (None, None)


def test_no_key_record_leaves_the_creation_time_unknown(values, qlik, key_path, qlik_error):
    qlik.routes[key_path] = qlik_error(403, "Forbidden", "HTTP-403")

    result = drive(hub_qlik.verify(values), qlik, provider=PROVIDER).result

    assert result.created_at is None


@pytest.mark.parametrize(
    ("life", "last_part"),
    [
        (timedelta(days=1), timedelta(hours=4, minutes=48)),
        (timedelta(hours=6), timedelta(minutes=72)),
    ],
    ids=["1 day", "6 hours"],
)
def test_a_healthy_short_lived_key_is_active_until_the_last_fifth_of_its_life(
    tmp_path, values, qlik, life, last_part
):
    created = datetime.now(UTC) - timedelta(minutes=1)
    expires = created + life
    qlik.keys[1].update(created=created.isoformat(), expiry=expires.isoformat())
    store = Store(tmp_path / "hub.db")
    accounts = Accounts(mock_hub(hub_qlik, qlik), store)

    account = accounts.link("qlik", values)

    assert account.status is Status.ACTIVE
    assert account.expires_at == expires
    # A re-check of the same key records the same moment: still active.
    [checked] = asyncio.run(accounts.check())
    assert checked.status is Status.ACTIVE
    turns = expires - last_part
    for now, status in [
        (created, Status.ACTIVE),
        (turns - US, Status.ACTIVE),
        (turns, Status.EXPIRING),
        (expires - US, Status.EXPIRING),
        (expires, Status.EXPIRED),
        (expires + timedelta(days=1), Status.EXPIRED),
    ]:
        assert [a.status for a in store.accounts(now=now)] == [status], now
        page = store.page(status=status, now=now)
        assert [a.id for a in page.accounts] == [account.id], now
    store.close()


def test_without_its_creation_time_a_1_day_key_is_expiring_for_the_7_day_window(
    tmp_path, values, qlik
):
    # What hub did for every short-lived key before it read `created`: still the rule when
    # the record does not say.
    del qlik.keys[1]["created"]
    qlik.keys[1]["expiry"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    store = Store(tmp_path / "hub.db")

    account = Accounts(mock_hub(hub_qlik, qlik), store).link("qlik", values)

    assert account.status is Status.EXPIRING
    store.close()
