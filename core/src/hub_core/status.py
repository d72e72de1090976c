"""The status of a linked account and the rules that decide it: plain and cheap to import.

The CLI's options use `Status`; the store decides each account's status with `status_at`, and
stores `expiring_from` beside the expiry so its queries decide it too. Nothing here imports
more than the standard library's enum and datetime.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

__all__ = ["EXPIRING_SHARE", "EXPIRING_WINDOW", "Status", "expiring_from", "status_at"]


class Status(enum.StrEnum):
    """The state of a linked account after its last check."""

    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    INVALID = "invalid"
    DENIED = "denied"
    ERROR = "error"
    #: hub cannot use the account as stored: its row was changed outside hub, or its key does
    #: not decrypt with the store's secret key. Nothing is checked; unlink or relink it.
    DAMAGED = "damaged"


#: The longest an account is ``expiring`` before its key expires; also the whole window when
#: the key's creation time is not known (Elastic's keys).
EXPIRING_WINDOW = timedelta(days=7)
#: An account is ``expiring`` in the last 1/EXPIRING_SHARE of its key's life (at most
#: `EXPIRING_WINDOW`): a 1-day key in its last 4.8 hours, a 6-hour key in its last 72 minutes.
EXPIRING_SHARE = 5

_EARLIEST = datetime.min.replace(tzinfo=UTC)


def expiring_from(
    expires_at: datetime | None, created_at: datetime | None = None
) -> datetime | None:
    """The moment an account whose key expires at *expires_at* turns ``expiring`` (in UTC).

    That is the start of the last fifth of the key's life (from *created_at* to *expires_at*),
    but never more than 7 days before it expires. A key of 90 days turns expiring 7 days
    before, a 1-day key 4.8 hours before, a 6-hour key 72 minutes before. When *created_at* is
    None, or is not before *expires_at* (a creation time that says nothing sound about the
    key's life), the window is the full 7 days. None when the key never expires (or hub is
    not told when). Naive datetimes are refused (`ValueError`): they name no moment.
    """
    if expires_at is None:
        return None
    expires_at = _aware(expires_at, "expires_at")
    window = EXPIRING_WINDOW
    if created_at is not None:
        lifetime = expires_at - _aware(created_at, "created_at")
        if lifetime > timedelta(0):
            window = min(window, lifetime / EXPIRING_SHARE)
    try:
        return (expires_at - window).astimezone(UTC)
    except OverflowError:  # a key said to expire in year 1: expiring since ever
        return _EARLIEST


def status_at(
    verdict: Status | str,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    expiring_at: datetime | None = None,
) -> Status:
    """The status, as of *now*, of an account whose last check gave *verdict*.

    An ``active`` verdict whose key has expired (*expires_at* at or before *now*) is
    ``expired``; one whose key is in the last part of its life (*expiring_at*, from
    `expiring_from`, at or before *now*) is ``expiring``. When *expiring_at* is not known, the
    7-day window applies. Any other verdict is its own status. `ValueError` for a verdict that
    is no status, or a naive datetime.
    """
    status = Status(verdict)
    now = _aware(now, "now")
    if status is not Status.ACTIVE or expires_at is None:
        return status
    if _aware(expires_at, "expires_at") <= now:
        return Status.EXPIRED
    turns = expiring_from(expires_at) if expiring_at is None else _aware(expiring_at, "expiring_at")
    if turns is not None and turns <= now:
        return Status.EXPIRING
    return status


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value
