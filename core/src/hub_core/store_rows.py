"""Rows of the SQLite account store, read into `Account`, `Link` and `OutboxEntry` values.

`account_from_row` reads every column a hand edit can break on its own, so a broken row shows
as one ``damaged`` account instead of failing a listing (a row as hub writes it is read in one
pass, by position, into an `Account` built without re-checking what the store wrote itself:
listing 10,000 accounts reads 10,000 rows); `account_id_of` and `by_id` give such a
row an id (``#<rowid>``) that `get` and `delete` find again. The small converters beside them
(`iso`, `parse_time`, `json_object`, `text_or_none`) are how every time and JSON column is
written and read: stored times have a fixed width, so they also sort as text.

SQLite only (`sqlite3.Row`); no query runs here.
"""

from __future__ import annotations

import json
import operator
import shlex
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .model import Account, Status, trusted_account
from .status import status_at
from .store_types import Link, OutboxEntry

__all__ = [
    "Written",
    "account_from_row",
    "account_id_of",
    "accounts_from_rows",
    "by_id",
    "iso",
    "json_object",
    "link_from_row",
    "outbox_entry_from_row",
    "parse_time",
    "read_accounts",
    "recorded_account",
    "status_of",
    "text_or_none",
    "unlink_command",
]


def unlink_command(account_id: str) -> str:
    """The ``hub unlink`` command for *account_id*, as a shell runs it: a broken row's id
    (``#12``) is quoted, or the shell would read it as a comment."""
    return f"hub unlink {shlex.quote(account_id)}"


def iso(value: datetime | None) -> str | None:
    """*value* as stored: ISO 8601 in UTC, always with microseconds (None stays None)."""
    # Fixed width (always microseconds, always +00:00), so stored times also sort as text.
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: str | datetime | None) -> datetime | None:
    """A stored time back as an aware UTC datetime (None stays None; bad text: ValueError).

    A datetime (a PostgreSQL ``timestamptz``, read by psycopg) is taken as it is, in UTC.
    """
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def account_id_of(row: sqlite3.Row) -> str:
    """The id a row is shown and found by (``#<rowid>`` when its id was broken by hand)."""
    # An id `get` can find again; else "#<rowid>", so a row whose id was edited to NULL, a
    # number or bytes can still be shown and unlinked. Account queries select the rowid as
    # row_number for this.
    value = row["id"]
    if isinstance(value, str) and value and value == value.strip().lower():
        return value
    return f"#{row['row_number']}"


def by_id(account_id: str) -> tuple[str | None, int | None]:
    """The parameters of ``(id = ? OR rowid = ?)`` that find *account_id* (see `_account_id`)."""
    if account_id.startswith("#") and account_id[1:].isdigit():
        return None, int(account_id[1:])
    return account_id, None


def json_object(value: object) -> dict[str, Any] | None:
    """*value* parsed as a JSON object, or None when it is not one."""
    if not isinstance(value, str | bytes):
        return None
    try:
        parsed = json.loads(value)
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def status_of(
    verdict: str, expires_at: datetime | None, expiring_at: datetime | None, now: datetime
) -> Status:
    """The status of a stored verdict and expiry as of *now* (`hub_core.status.status_at`)."""
    # The rule `_STATUS_SQL` says in SQL; an unknown expiring_at is the 7-day window in both.
    return status_at(verdict, now, expires_at=expires_at, expiring_at=expiring_at)


def text_or_none(value: object) -> str | None:
    """A stored text column, or None when it is empty or not text."""
    # '' is the stored "no owner"; a value edited by hand to another type is no owner either,
    # so it matches no host's owner filter.
    return value if isinstance(value, str) and value else None


def link_from_row(row: sqlite3.Row) -> Link:
    """The `Link` a ``links`` row holds."""
    expires_at = parse_time(row["expires_at"])
    created_at = parse_time(row["created_at"])
    assert expires_at is not None  # NOT NULL columns
    assert created_at is not None
    return Link(
        id=row["id"],
        provider_id=row["provider_id"],
        account_id=row["account_id"],
        note=row["note"],
        created_at=created_at,
        expires_at=expires_at,
        used_at=parse_time(row["used_at"]),
        used_account_id=row["used_account_id"],
        revoked_at=parse_time(row["revoked_at"]),
        failed_attempts=int(row["failed_attempts"]),
        kind=row["kind"],
        owner=text_or_none(row["owner"]),
        owner_name=row["owner_name"],
        return_url=row["return_url"],
        return_state=row["state"],
    )


def account_from_row(row: sqlite3.Row, now: datetime) -> Account:
    """The account a row holds; a row that cannot be read whole is a ``damaged`` account.

    Every column a hand edit can break is read on its own, so one broken value shows as
    damaged (naming the columns) instead of failing every listing.
    """
    # Most rows are as hub wrote them: read straight through, and only a row with anything
    # unexpected in it is read column by column (the same account either way).
    account = _as_written(row, now)
    return account if account is not None else _read_closely(row, now)


def accounts_from_rows(rows: Sequence[sqlite3.Row], now: datetime) -> list[Account]:
    """`account_from_row` of each of *rows*, the rows of one query (one order of columns,
    looked up once instead of once per row)."""
    return [account for account, _ in read_accounts(rows, now)]


def read_accounts(rows: Sequence[sqlite3.Row], now: datetime) -> list[tuple[Account, bool]]:
    """`accounts_from_rows` of *rows*, each with whether its row holds exactly what hub
    writes (read in one pass; `recorded_account` may then build it again without reading)."""
    if not rows:
        return []
    # A PostgreSQL row (a dict) looks its columns up by name at C speed.
    getter = _getter(rows[0]) if isinstance(rows[0], sqlite3.Row) else _written_columns
    if getter is None:  # a column is missing: `_read_closely` says which, row by row
        return [(account_from_row(row, now), False) for row in rows]
    accounts = []
    for row in rows:
        account = _as_written(row, now, getter(row))
        if account is None:
            accounts.append((_read_closely(row, now), False))
        else:
            accounts.append((account, True))
    return accounts


class Written(NamedTuple):
    """The columns a verdict writes on an account's row, as stored (times: text on SQLite,
    datetimes on PostgreSQL)."""

    label: str
    verdict: str
    checked_at: str | datetime
    expires_at: str | datetime | None
    #: As `recorded_expiry` gives it: the stored value when it stands, whatever it holds.
    expiring_at: object
    last_error: str | None
    details: str


def recorded_account(held: Account, written: Written, now: datetime) -> Account | None:
    """The account *held*, read from a row exactly as hub writes it (`read_accounts`), once
    the verdict *written* is on that row and nothing else has changed it: what reading the
    row back gives, without reading it. None when that is not certain: read it back.

    The columns the verdict wrote are checked as `_as_written` checks them; the others are
    *held*'s, which passed those checks when it was read.
    """
    status = _STATUSES.get(written.verdict)
    label, last_error, details_text = written.label, written.last_error, written.details
    expiring_text = written.expiring_at
    if (
        status is None
        or type(label) is not str
        or not label
        or (last_error is not None and type(last_error) is not str)
        or type(details_text) is not str
        or (expiring_text is not None and not isinstance(expiring_text, str | datetime))
    ):
        return None
    try:
        checked_at = parse_time(written.checked_at)
        expires_at = parse_time(written.expires_at)
        expiring_at = parse_time(expiring_text)
        details, end = _raw_decode(details_text)
    except (TypeError, ValueError, OverflowError):  # JSONDecodeError is a ValueError
        return None
    if end != len(details_text) or type(details) is not dict:
        return None
    if status is Status.ACTIVE and expires_at is not None:
        status = status_at(status, now, expires_at=expires_at, expiring_at=expiring_at)
    return trusted_account(
        held.id,
        held.provider_id,
        held.identity,
        label,
        status,
        dict(held.config),
        held.linked_at,
        checked_at,
        expires_at,
        last_error,
        details,
        held.owner,
        held.owner_name,
    )


#: Every status by its stored text.
_STATUSES = {status.value: status for status in Status}
#: JSON's C scanner behind a public call (json.loads adds two regex searches and a frame).
_raw_decode = json.JSONDecoder().raw_decode
#: The columns `_as_written` reads, in the order it takes them.
_WRITTEN = (
    "id",
    "provider_id",
    "identity",
    "label",
    "verdict",
    "last_error",
    "secrets",
    "linked_at",
    "checked_at",
    "expires_at",
    "expiring_at",
    "config",
    "details",
    "owner",
    "owner_name",
)
_BY_NAME = operator.itemgetter(*_WRITTEN)
#: An itemgetter of `_WRITTEN` per order of a query's columns (None: one is missing).
_GETTERS: dict[tuple[str, ...], Callable[[sqlite3.Row], tuple[Any, ...]] | None] = {}


def _written_columns(row: sqlite3.Row | Mapping[str, Any]) -> tuple[Any, ...] | None:
    # A Row looks a name up by comparing it with every column's, which was most of the time
    # of reading a row; by position it is one C call. ``*`` of a table migrated from an older
    # schema has another order: one getter per order, a handful.
    if not isinstance(row, sqlite3.Row):  # a PostgreSQL row: a dict looks names up at C speed
        try:
            return tuple(_BY_NAME(row))
        except KeyError:  # a column is missing: `_read_closely` says which
            return None
    getter = _getter(row)
    return None if getter is None else getter(row)


def _getter(row: sqlite3.Row) -> Callable[[sqlite3.Row], tuple[Any, ...]] | None:
    """The itemgetter of `_WRITTEN` for the order of *row*'s columns (None: one is missing)."""
    names = tuple(row.keys())
    try:
        return _GETTERS[names]
    except KeyError:
        if len(_GETTERS) > 32:
            _GETTERS.clear()
        try:
            getter = operator.itemgetter(*(names.index(name) for name in _WRITTEN))
        except ValueError:  # a column is missing: `_read_closely` says which
            getter = None
        _GETTERS[names] = getter
        return getter


def _as_written(
    row: sqlite3.Row, now: datetime, columns: tuple[Any, ...] | None = None
) -> Account | None:
    """The account of a row that holds exactly what hub writes, or None for any other;
    *columns* are its `_WRITTEN` columns, when they were read already.

    None does not mean damaged: `_read_closely` decides. What this accepts reads as the same
    account there: each check below is one of its checks, or stricter (exact types).
    """
    if columns is None:
        columns = _written_columns(row)
    if columns is None:
        return None
    (
        account_id,
        provider_id,
        identity,
        label,
        verdict,
        last_error,
        secret_values,
        linked_text,
        checked_text,
        expires_text,
        expiring_text,
        config_text,
        details_text,
        owner,
        owner_name,
    ) = columns
    status = _STATUSES.get(verdict)
    if (
        status is None
        or type(account_id) is not str
        or not account_id
        or account_id != account_id.strip().lower()
        or type(provider_id) is not str
        or not provider_id
        or type(identity) is not str
        or not identity
        or type(label) is not str
        or not label
        or (last_error is not None and type(last_error) is not str)
        or type(secret_values) is not bytes
        or linked_text is None
        or not isinstance(now, datetime)
        or now.utcoffset() is None  # status_at refuses a naive now
    ):
        return None
    try:
        linked_at = parse_time(linked_text)
        checked_at = parse_time(checked_text)
        expires_at = parse_time(expires_text)
        expiring_at = parse_time(expiring_text)
        config, end = _raw_decode(config_text)
        if end != len(config_text) or type(config) is not dict:
            return None
        details, end = _raw_decode(details_text)
        if end != len(details_text) or type(details) is not dict:
            return None
    except (TypeError, ValueError, OverflowError):  # JSONDecodeError is a ValueError
        return None
    for value in config.values():
        if type(value) is not str:
            return None
    if status is Status.ACTIVE and expires_at is not None:
        status = status_at(status, now, expires_at=expires_at, expiring_at=expiring_at)
    return trusted_account(
        account_id,
        provider_id,
        identity,
        label,
        status,
        config,
        linked_at,
        checked_at,
        expires_at,
        last_error,
        details,
        owner if isinstance(owner, str) and owner else None,
        owner_name if isinstance(owner_name, str) and owner_name else None,
    )


def _read_closely(row: sqlite3.Row, now: datetime) -> Account:
    """`account_from_row`, every column read on its own: what is broken is named."""
    broken: list[str] = []

    def text(name: str, required: bool = True) -> str | None:
        value = row[name]
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return None
        broken.append(name)
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return None if value is None else str(value)

    def when(name: str, required: bool = False) -> datetime | None:
        value = row[name]
        if value is None and not required:
            return None
        try:
            parsed = parse_time(value)
            if parsed is not None:
                return parsed
        except (TypeError, ValueError, OverflowError):
            pass
        broken.append(name)
        return None

    def mapping(name: str) -> dict[str, Any]:
        value = json_object(row[name])
        if value is None or (
            name == "config" and not all(isinstance(v, str) for v in value.values())
        ):
            broken.append(name)
            return {}
        return value

    account_id = account_id_of(row)
    if account_id != row["id"]:
        broken.append("id")
    provider_id = text("provider_id") or ""
    identity = text("identity") or ""
    label = text("label") or account_id
    expires_at = when("expires_at")
    expiring_at = when("expiring_at")
    linked_at = when("linked_at", required=True)
    checked_at = when("checked_at")
    config = mapping("config")
    details = mapping("details")
    last_error = text("last_error", required=False)
    verdict = row["verdict"]
    status = Status.DAMAGED
    try:
        status = status_of(verdict, expires_at, expiring_at, now)
    except (ValueError, TypeError):
        broken.append("verdict")
    if not isinstance(row["secrets"], bytes):
        broken.append("secrets")
    if broken:
        status = Status.DAMAGED
        last_error = (
            f"hub cannot read this account as stored ({', '.join(broken)} changed outside "
            f"hub): unlink it with `{unlink_command(account_id)}` and link it again"
        )
    return Account(
        id=account_id,
        provider_id=provider_id,
        identity=identity,
        label=label,
        status=status,
        config=config,
        linked_at=linked_at,
        checked_at=checked_at,
        expires_at=expires_at,
        last_error=last_error,
        details=details,
        owner=text_or_none(row["owner"]),
        owner_name=text_or_none(row["owner_name"]),
    )


def outbox_entry_from_row(row: sqlite3.Row) -> OutboxEntry:
    """The `OutboxEntry` a ``webhook_outbox`` row holds."""
    return OutboxEntry(
        seq=row["seq"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        body=row["body"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        failed_at=row["failed_at"],
    )
