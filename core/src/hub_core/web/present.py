"""How the web Hub says things: times, statuses, error banners, guide text.

Everything a provider or a plugin wrote reaches a page through the templates' finalize step
(`shown`: `hub_core.display_text.inert`, then Jinja's escaping). `linked_text` is the one
place that builds markup from such text, and it escapes every piece it does not make itself.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

import attrs
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup, escape

from hub_core.display_text import LONG_LIMIT, inert, inert_lines
from hub_core.errors import (
    AccountNotFound,
    FieldError,
    HubError,
    IdentityMismatch,
    InvalidCredentials,
    PermissionDenied,
    PluginError,
    ProviderUnavailable,
    RateLimited,
    StoreError,
    UnexpectedResponse,
    UnknownProvider,
)
from hub_core.status import Status

if TYPE_CHECKING:
    from hub_core.model import Account
    from hub_core.store_types import ListingKey

__all__ = [
    "AccountRow",
    "Banner",
    "PageCursors",
    "PagePlace",
    "account_row",
    "attempts_banner",
    "banner",
    "expiry",
    "linked_text",
    "relative",
    "shown",
    "status_badge",
]


def shown(value: object) -> object:
    """Jinja's finalize: a plain string printed on a page is made inert first (markup is ours)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return inert(value, limit=LONG_LIMIT)
    return value


_URL = re.compile(r"https://[^\s<>\"'()]+[^\s<>\"'().,;:!?]")


@functools.lru_cache(maxsize=512)  # a guide's text is the same on every request
def linked_text(text: str) -> Markup:
    """Plugin prose as paragraphs, with its ``https:`` addresses as links (nothing else is)."""
    paragraphs = []
    for line in inert_lines(text):
        if not line:
            continue
        pieces, last = [], 0
        for match in _URL.finditer(line):
            pieces.append(escape(line[last : match.start()]))
            url = escape(match.group())
            pieces.append(Markup('<a href="{0}" rel="noreferrer noopener">{0}</a>').format(url))
            last = match.end()
        pieces.append(escape(line[last:]))
        paragraphs.append(Markup("<p>{}</p>").format(Markup("").join(pieces)))
    return Markup("").join(paragraphs)


#: Each status in words (never colour alone) and the class of its badge.
STATUS_TEXT = {
    Status.ACTIVE: ("Active", "The key works."),
    Status.EXPIRING: ("Expiring soon", "The key works but expires soon; link a new one."),
    Status.EXPIRED: ("Expired", "The key has expired; link a new one."),
    Status.INVALID: ("Key refused", "The provider no longer accepts this key."),
    Status.DENIED: ("Permission missing", "The key works but lacks a permission hub needs."),
    Status.ERROR: ("Check failed", "The last check could not reach a verdict."),
    Status.DAMAGED: ("Damaged", "hub cannot read this account as stored."),
}


def status_badge(status: Status) -> tuple[str, str]:
    """The badge text of *status* and what it means."""
    return STATUS_TEXT[status]


def relative(when: datetime, *, now: datetime | None = None) -> str:
    """*when* as a person says it: "in 23 hours", "3 days ago", "in 4 years", "just now".

    Days up to 60, then months (of 30 days) up to two years, then years (of 365 days).
    """
    now = datetime.now(UTC) if now is None else now
    seconds = (when - now).total_seconds()
    future = seconds > 0
    seconds = abs(seconds)
    if seconds < 60:
        return "in less than a minute" if future else "just now"
    day = 86400
    for unit, size, start in (
        ("year", 365 * day, 730 * day),
        ("month", 30 * day, 60 * day),
        ("day", day, day),
        ("hour", 3600, 3600),
        ("minute", 60, 60),
    ):
        if seconds >= start:
            count = math.floor(seconds / size)
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    raise AssertionError("unreachable")


@attrs.frozen
class Expiry:
    """When a key expires, for a page: the machine time and the words."""

    iso: str | None
    words: str
    exact: str | None
    #: Shorter-lived than a week from when it was linked (Qlik's 6-hour and 1-day keys).
    short_lived: bool = False


def expiry(
    expires_at: datetime | None, *, linked_at: datetime | None = None, known: bool = True
) -> Expiry:
    """*expires_at* for a page; *known* false when the provider does not say."""
    if expires_at is None:
        return Expiry(None, "never" if known else "unknown", None)
    # A key already past its end is expired, not short-lived.
    short = linked_at is not None and timedelta(0) < expires_at - linked_at < timedelta(days=7)
    return Expiry(
        expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        relative(expires_at),
        expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        short,
    )


def when(value: datetime | None) -> Expiry:
    """A past time (linked, last checked) for a page."""
    return expiry(value, known=False) if value is None else expiry(value)


@attrs.frozen(slots=True)
class AccountRow:
    """One row of the Accounts page, every value ready to print (a page draws fifty)."""

    id: str
    label: str
    provider_name: str
    identity: str
    status: str
    badge: str
    badge_title: str
    last_error: str | None
    expires: Expiry
    linked: Expiry
    checked: Expiry
    check_url: str
    relink_url: str
    unlink_url: str
    #: Whom a host linked it for: the owner's name and id, or None for the operator's own.
    owner: str | None = None


def account_row(account: Account, provider_name: str, urls: Mapping[str, str]) -> AccountRow:
    """The row of *account*; *urls* maps ``check``, ``relink`` and ``unlink`` to their paths,
    each with ``{account}`` to fill in."""
    badge, title = STATUS_TEXT[account.status]
    quoted = quote(account.id, safe="")
    error = account.last_error
    return AccountRow(
        id=account.id,
        label=account.label,
        provider_name=provider_name,
        identity=account.identity,
        status=account.status.value,
        badge=badge,
        badge_title=title,
        last_error=error if error is None or len(error) <= 160 else error[:159] + "…",
        expires=expiry(account.expires_at),
        linked=when(account.linked_at),
        checked=when(account.checked_at),
        check_url=urls["check"].format(account=quoted),
        relink_url=urls["relink"].format(account=quoted),
        unlink_url=urls["unlink"].format(account=quoted),
        owner=_owner_text(account),
    )


def _owner_text(account: Account) -> str | None:
    if account.owner is None:
        return None
    if account.owner_name and account.owner_name != account.owner:
        return f"{account.owner_name} ({account.owner})"
    return account.owner


@attrs.frozen
class PagePlace:
    """Where one page of the Accounts listing is: its number and the keys that reach it.

    *trail* holds the `ListingKey` after which each page from the first to this one starts
    (`AccountStore.page_after`'s *after*), at most `PageCursors.TRAIL` of them, this page's
    last; the first page's is empty. Walking back pops it: the store reads forward only.
    """

    number: int = 1
    trail: tuple[ListingKey, ...] = ()

    @property
    def after(self) -> ListingKey | None:
        """The key this page starts after (None: the first page)."""
        return self.trail[-1] if self.trail else None

    def next(self, after: ListingKey) -> PagePlace:
        """The page that starts after *after* (the last key of this one)."""
        return PagePlace(self.number + 1, (*self.trail, after)[-PageCursors.TRAIL :])

    def previous(self) -> PagePlace | None:
        """The page before, or None when the trail no longer reaches it (only "First")."""
        if self.number <= 2:
            return PagePlace()
        if len(self.trail) < 2:
            return None
        return PagePlace(self.number - 1, self.trail[:-1])


class PageCursors:
    """The Accounts page's cursors: a `PagePlace` and the filters it was made for, signed.

    A cursor is opaque to the person and bound to its filters; its listing keys hold the
    last row's provider, label and id (no secret: signing is not encryption). `loads` gives
    None for anything it did not sign for these filters (changed, truncated, another
    store's, one from before the store's first key changed), so the page starts again at
    the first. The key is the store's ``derive_key(PURPOSE)``: a cursor keeps working across
    a restart and on every server over the same store.
    """

    PURPOSE = "accounts page cursors"
    #: Pages a cursor remembers behind it; "Previous" goes back this far, "First" always.
    TRAIL = 20
    #: Longer than any cursor `dumps` writes (20 keys of long labels, compressed).
    LIMIT = 16_000

    def __init__(self, key: bytes) -> None:
        self._serializer = URLSafeSerializer(key, salt="hub.accounts-page")

    def dumps(self, place: PagePlace, filters: tuple[str | None, ...]) -> str:
        """The cursor of *place* in the listing with *filters*."""
        keys = [[_key_part(part) for part in key] for key in place.trail]
        return str(self._serializer.dumps({"n": place.number, "f": list(filters), "t": keys}))

    def loads(self, cursor: str, filters: tuple[str | None, ...]) -> PagePlace | None:
        """The place *cursor* names, or None when it is not one of ours for *filters*."""
        if len(cursor) > self.LIMIT:
            return None
        try:
            data = self._serializer.loads(cursor)
        except (BadSignature, ValueError):  # ValueError: a payload that is not JSON
            return None
        if not isinstance(data, dict) or data.get("f") != list(filters):
            return None
        number, keys = data.get("n"), data.get("t")
        if (
            type(number) is not int
            or not isinstance(keys, list)
            or not 1 <= len(keys) <= self.TRAIL
            or not len(keys) < number <= _MAX_PAGE
        ):
            return None
        trail = []
        for key in keys:
            if not isinstance(key, list) or len(key) != _KEY_LENGTH:
                return None
            parts = [_key_value(part) for part in key]
            if any(part is _NOT_A_KEY for part in parts):
                return None
            trail.append(tuple(parts))
        return PagePlace(number, tuple(trail))  # type: ignore[arg-type]


#: The highest page number a cursor may name (10,000 accounts are 200 pages of 50).
_MAX_PAGE = 1_000_000
#: A `ListingKey`'s parts: provider, label, id, row.
_KEY_LENGTH = 4
_NOT_A_KEY = object()


def _key_part(value: object) -> object:
    # A key holds the stored values as they are: a hand edit may have made one bytes or NULL.
    if isinstance(value, bytes):
        return {"b": base64.urlsafe_b64encode(value).decode()}
    return value


def _key_value(part: object) -> object:
    if part is None or type(part) in (str, int, float):
        return part
    if isinstance(part, dict) and set(part) == {"b"} and isinstance(part["b"], str):
        try:
            return base64.b64decode(part["b"].encode(), altchars=b"-_", validate=True)
        except ValueError:
            return _NOT_A_KEY
    return _NOT_A_KEY


@attrs.frozen
class Banner:
    """One error, in plain words, for the top of a page."""

    status: int
    title: str
    detail: str
    retry_after: int | None = None


def attempts_banner(provider_name: str, seconds: int) -> Banner:
    """What a page says when hub itself refuses a Connect attempt (too many from here)."""
    return Banner(
        429,
        "Too many attempts from here",
        f"hub sent nothing to {provider_name}. Try again in {seconds} s.",
        retry_after=seconds,
    )


def banner(error: HubError, provider_name: str) -> Banner:
    """What a page says for *error*, and its status code; the provider's body never shows."""
    detail = error.message
    if isinstance(error, FieldError):
        return Banner(422, "Some values are not right", "Fix the fields marked below.")
    if isinstance(error, InvalidCredentials):
        return Banner(422, f"{provider_name} refused the key", detail)
    if isinstance(error, PermissionDenied):
        return Banner(422, f"The key lacks a permission {provider_name} requires", detail)
    if isinstance(error, RateLimited):
        wait = max(1, math.ceil(error.retry_after)) if error.retry_after is not None else 60
        return Banner(
            429,
            f"{provider_name} asked hub to slow down",
            f"Nothing was linked. Try again in {wait} s.",
            retry_after=wait,
        )
    if isinstance(error, ProviderUnavailable):
        status = 502 if error.reason == "server" else 503
        return Banner(status, f"{provider_name} could not be reached", detail)
    if isinstance(error, UnexpectedResponse):
        return Banner(502, f"{provider_name} gave an answer hub does not understand", detail)
    if isinstance(error, PluginError):
        return Banner(
            500,
            f"The {provider_name} plugin failed",
            "Its check stopped with an error; nothing was linked. The operator finds why in "
            "the server's log.",
        )
    if isinstance(error, UnknownProvider):
        return Banner(404, "No such provider", detail)
    if isinstance(error, IdentityMismatch):
        return Banner(409, "This key belongs to another account", detail)
    if isinstance(error, AccountNotFound):  # unlinked while a relink's key was checked
        return Banner(
            404,
            "The account was unlinked meanwhile",
            "Nothing was stored. To keep the key, link it as a new account from the providers "
            "page.",
        )
    if isinstance(error, StoreError):
        return Banner(500, "The account store failed", detail)
    return Banner(500, "The check failed", detail)
