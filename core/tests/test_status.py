"""The status rules: when an account turns ``expiring`` (the last fifth of its key's life, at
most 7 days), and the status of a verdict at a moment."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub_core.status import EXPIRING_WINDOW, Status, expiring_from, status_at

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("lifetime", "window"),
    [
        (timedelta(hours=6), timedelta(minutes=72)),
        (timedelta(days=1), timedelta(hours=4, minutes=48)),
        (timedelta(days=30), timedelta(days=6)),
        (timedelta(days=35), timedelta(days=7)),  # where a fifth reaches the cap
        (timedelta(days=35, seconds=5), timedelta(days=7)),
        (timedelta(days=90), timedelta(days=7)),
        (timedelta(days=3650), timedelta(days=7)),
        (timedelta(seconds=5), timedelta(seconds=1)),
        (US * 5, US),
    ],
)
def test_an_account_turns_expiring_in_the_last_fifth_of_its_keys_life(
    lifetime: timedelta, window: timedelta
) -> None:
    expires = T0 + lifetime
    assert expiring_from(expires, T0) == expires - window


@pytest.mark.parametrize(
    "created",
    [None, T0 + timedelta(days=1), T0 + timedelta(days=2)],
    ids=["unknown", "created-at-expiry", "created-after-expiry"],
)
def test_without_a_sound_creation_time_the_window_is_7_days(created: datetime | None) -> None:
    expires = T0 + timedelta(days=1)
    assert expiring_from(expires, created) == expires - EXPIRING_WINDOW == T0 - timedelta(days=6)


def test_a_key_that_never_expires_never_turns_expiring() -> None:
    assert expiring_from(None) is None
    assert expiring_from(None, T0) is None


def test_times_in_other_zones_are_the_same_moments_and_the_answer_is_utc() -> None:
    created = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    expires = (T0 + timedelta(days=1)).astimezone(timezone(timedelta(hours=-3)))
    moment = expiring_from(expires, created)
    assert moment == T0 + timedelta(hours=19, minutes=12)
    assert moment is not None
    assert moment.tzinfo is UTC


@pytest.mark.parametrize(
    ("expires", "created"),
    [
        (datetime(2025, 3, 2, 12, 0), None),
        (datetime(2025, 3, 2, 12, 0), T0),
        (T0 + timedelta(days=1), datetime(2025, 3, 1, 12, 0)),
    ],
    ids=["naive-expiry", "naive-expiry-aware-creation", "naive-creation"],
)
def test_naive_times_are_refused(expires: datetime, created: datetime | None) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        expiring_from(expires, created)


def test_an_expiry_at_the_start_of_the_calendar_is_expiring_since_ever() -> None:
    first = datetime.min.replace(tzinfo=UTC)
    assert expiring_from(first + timedelta(days=1)) == first


# --- the status of a verdict at a moment ----------------------------------------------------


def test_an_active_one_day_key_is_active_then_expiring_then_expired() -> None:
    expires = T0 + timedelta(days=1)
    turns = expiring_from(expires, T0)
    assert turns == expires - timedelta(hours=4, minutes=48)

    def at(now: datetime) -> Status:
        return status_at("active", now, expires_at=expires, expiring_at=turns)

    assert at(T0) is Status.ACTIVE
    assert at(turns - US) is Status.ACTIVE
    assert at(turns) is Status.EXPIRING
    assert at(expires - US) is Status.EXPIRING
    assert at(expires) is Status.EXPIRED
    assert at(expires + timedelta(days=400)) is Status.EXPIRED


def test_an_unknown_expiring_moment_is_the_7_day_window() -> None:
    expires = T0 + timedelta(days=30)
    week = expires - timedelta(days=7)
    assert status_at(Status.ACTIVE, week - US, expires_at=expires) is Status.ACTIVE
    assert status_at(Status.ACTIVE, week, expires_at=expires) is Status.EXPIRING


def test_a_key_that_never_expires_stays_active() -> None:
    far = datetime.max.replace(tzinfo=UTC)
    assert status_at("active", far) is Status.ACTIVE
    assert status_at("active", far, expiring_at=T0) is Status.ACTIVE  # no expiry: no window


@pytest.mark.parametrize("verdict", [s for s in Status if s is not Status.ACTIVE])
def test_any_other_verdict_is_its_own_status_whatever_the_dates(verdict: Status) -> None:
    past = T0 - timedelta(days=1)
    assert status_at(verdict.value, T0, expires_at=past, expiring_at=past) is verdict
    assert status_at(verdict, T0, expires_at=T0 + timedelta(hours=1)) is verdict


def test_times_in_other_zones_compare_as_moments() -> None:
    plus2 = timezone(timedelta(hours=2))
    expires = (T0 + timedelta(days=1)).astimezone(plus2)
    turns = (T0 + timedelta(hours=20)).astimezone(plus2)
    now = (T0 + timedelta(hours=20)).astimezone(timezone(timedelta(hours=-8)))
    assert status_at("active", now - US, expires_at=expires, expiring_at=turns) is Status.ACTIVE
    assert status_at("active", now, expires_at=expires, expiring_at=turns) is Status.EXPIRING


@pytest.mark.parametrize("which", ["now", "expires_at", "expiring_at"])
def test_status_refuses_naive_times(which: str) -> None:
    times = {"now": T0, "expires_at": T0 + timedelta(days=1), "expiring_at": T0}
    times[which] = times[which].replace(tzinfo=None)
    with pytest.raises(ValueError, match=f"{which} must be a timezone-aware"):
        status_at(
            "active", times["now"], expires_at=times["expires_at"], expiring_at=times["expiring_at"]
        )


def test_a_verdict_that_is_no_status_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        status_at("bogus", T0)


def test_the_rules_import_nothing_heavy() -> None:
    # The CLI's options import this module: it must stay as cheap as the enum alone.
    code = (
        "import sys, hub_core.status; "
        "print(sorted(m for m in ('attrs', 'sqlite3', 'httpx', 'cryptography', 'pluggy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
