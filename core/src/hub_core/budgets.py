"""Per-provider check budgets shared by every checker of a store (SCALE.md §2).

A provider's budget is a token bucket: it holds at most *burst* checks and refills at *rate*
checks per second. A checker draws from it once per lease (`draw`): it leases no more of the
provider's accounts than the draw grants, so every checker of one store together stays within
the rate, on one host or many. The bucket lives in the store (one row per provider, updated in
the lease's transaction); these are the rules, the same for every backend.

Apart from the budget a provider can be *paused*: a provider that rate-limits one key says
nothing about the others (Elastic Cloud and Qlik Cloud limit per user), but several accounts
of one provider rate-limited close together mean a limit on all of them (per IP, per tenant,
global). Then every checker leaves that provider alone until the pause ends
(`note_rate_limited`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import attrs

from .errors import StoreError

__all__ = [
    "PAUSE_AFTER",
    "PAUSE_MAX",
    "PAUSE_MIN",
    "PAUSE_WINDOW",
    "Budget",
    "Draw",
    "LeasePlan",
    "Pause",
    "ProviderLimit",
    "check_rate",
    "draw",
    "held_back",
    "limit_from_row",
    "note_rate_limited",
    "plan_lease",
]

#: Rate-limited checks of one provider within `PAUSE_WINDOW` that pause the whole provider.
PAUSE_AFTER = 3
PAUSE_WINDOW = timedelta(seconds=60)
#: The shortest pause, when the provider's answers gave no (longer) Retry-After, and the
#: longest, whatever a provider's Retry-After says (a hostile one could say a century).
PAUSE_MIN = timedelta(seconds=30)
PAUSE_MAX = timedelta(hours=1)
#: Rates and bursts beyond these are typing mistakes, not budgets.
_MAX_RATE = 100_000.0
_MAX_BURST = 1_000_000


def check_rate(rate: float, burst: int | None = None) -> tuple[float, int]:
    """Validate a budget: *rate* checks per second (> 0) and *burst* (>= 1, default: one
    second's worth, at least 1). Return both; `ValueError` with a message for a person."""
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not math.isfinite(rate):
        raise ValueError(f"the rate must be a number of checks per second, not {rate!r}")
    if not 0 < rate <= _MAX_RATE:
        raise ValueError(f"the rate must be more than 0 and at most {_MAX_RATE:,.0f} per second")
    if burst is None:
        burst = max(1, math.ceil(rate))
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= _MAX_BURST:
        raise ValueError(f"the burst must be a whole number from 1 to {_MAX_BURST:,}")
    return float(rate), burst


@attrs.frozen
class Budget:
    """A provider's bucket as stored: *tokens* checks left at *refilled_at*."""

    rate: float
    burst: int
    tokens: float
    refilled_at: datetime

    def tokens_at(self, now: datetime) -> float:
        """The tokens the bucket holds at *now* (refilled since `refilled_at`, up to burst)."""
        elapsed = max(0.0, (now - self.refilled_at).total_seconds())
        return min(float(self.burst), self.tokens + elapsed * self.rate)


@attrs.frozen
class Draw:
    """What a draw grants: *granted* checks now, the bucket after it, and when to ask again."""

    granted: int
    budget: Budget
    #: When nothing was granted: how long until one check's token is there.
    wait: timedelta | None = None


def draw(budget: Budget, wanted: int, now: datetime) -> Draw:
    """Take up to *wanted* whole tokens from *budget* at *now*.

    Grants what the bucket holds (never more than *wanted*, never a fraction of a check); the
    rest of the tokens stay for the next draw. With nothing to grant, *wait* says when one
    token will be there.
    """
    if wanted < 0:
        raise ValueError("cannot draw a negative number of checks")
    tokens = budget.tokens_at(now)
    granted = min(wanted, math.floor(tokens + 1e-9))
    # Never back: a lease draws at the moment its transaction began, and one that began
    # before the last draw may take the bucket's lock after it; the refill between the two
    # moments is in the bucket already and would be counted again.
    refilled_at = max(now, budget.refilled_at)
    after = attrs.evolve(budget, tokens=max(0.0, tokens - granted), refilled_at=refilled_at)
    wait = None
    if granted == 0 and wanted > 0:
        wait = timedelta(seconds=max(0.0, 1.0 - after.tokens) / budget.rate)
    return Draw(granted=granted, budget=after, wait=wait)


@attrs.frozen
class Pause:
    """A provider's rate-limit record: recent 429s counted since *since*, and any pause."""

    count: int = 0
    since: datetime | None = None
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        """Whether checks of this provider wait at *now*."""
        return self.until is not None and now < self.until


def note_rate_limited(pause: Pause, now: datetime, retry_after: float | None) -> Pause:
    """*pause* after one more of the provider's checks was rate-limited at *now*.

    The `PAUSE_AFTER`-th within `PAUSE_WINDOW` pauses the provider for its Retry-After (from
    `PAUSE_MIN` to `PAUSE_MAX`) and starts a new count; an older count starts again from one.
    """
    if pause.since is None or now - pause.since > PAUSE_WINDOW:
        pause = Pause(count=0, since=now, until=pause.until)
    count = pause.count + 1
    if count < PAUSE_AFTER:
        return attrs.evolve(pause, count=count)
    seconds = retry_after if retry_after is not None and math.isfinite(retry_after) else 0.0
    seconds = min(max(seconds, PAUSE_MIN.total_seconds()), PAUSE_MAX.total_seconds())
    until = now + timedelta(seconds=seconds)
    if pause.until is not None and pause.until > until:
        until = pause.until  # a pause only grows
    return Pause(count=0, since=None, until=until)


@attrs.frozen
class ProviderLimit:
    """What a store holds for one provider: its budget (None: unlimited) and its pause."""

    provider_id: str
    budget: Budget | None = None
    pause: Pause = Pause()


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, a psycopg dict row)."""

    def __getitem__(self, key: str, /) -> Any: ...


def limit_from_row(row: Row) -> ProviderLimit:
    """A store's ``provider_limits`` row read back (times as ISO text or datetimes).

    A row edited outside hub into values no budget has is a `StoreError` naming the provider
    and the way out, never an unlimited provider by accident.
    """
    provider_id = str(row["provider_id"])
    try:
        budget = None
        if row["rate"] is not None:
            rate, burst = check_rate(row["rate"], row["burst"])
            tokens = float(row["tokens"])
            refilled_at = _time(row["refilled_at"])
            if refilled_at is None or not 0 <= tokens <= burst:
                raise ValueError("its bucket is out of range")
            budget = Budget(rate=rate, burst=burst, tokens=tokens, refilled_at=refilled_at)
        count = row["limited_count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("its count of rate limits is not a count")
        pause = Pause(
            count=count, since=_time(row["limited_since"]), until=_time(row["paused_until"])
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise StoreError(
            f"the check budget of provider {provider_id!r} is damaged ({exc}): set it again with "
            f"`hub limits set {provider_id} RATE`"
        ) from None
    return ProviderLimit(provider_id=provider_id, budget=budget, pause=pause)


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise TypeError(f"{type(value).__name__} is not a time")
    if moment.tzinfo is None:
        raise ValueError("a time without its time zone")
    return moment.astimezone(UTC)


@attrs.frozen
class LeasePlan:
    """How one lease shares out the budgets and pauses of the providers at *now*.

    The providers in *limited* are leased apart from the others: each in *caps* at most its
    number of accounts, each in *held* none until its time (its bucket is empty), each in
    *paused* none until its pause after rate limits ends.
    """

    limited: frozenset[str]
    caps: Mapping[str, int]
    held: Mapping[str, datetime]
    budgets: Mapping[str, Budget]
    paused: Mapping[str, datetime] = attrs.field(factory=dict)

    def settle(self, taken: Mapping[str, int], now: datetime) -> dict[str, Budget]:
        """The buckets after the lease took *taken* accounts of each capped provider."""
        return {
            provider_id: draw(self.budgets[provider_id], taken.get(provider_id, 0), now).budget
            for provider_id in self.caps
        }

    def wait(self, now: datetime, waiting: Iterable[str]) -> timedelta | None:
        """How long until one of the *waiting* providers (held or paused) may be leased again
        (None: none)."""
        times = [self.held.get(p) or self.paused[p] for p in waiting]
        return max(min(times) - now, timedelta(0)) if times else None


def plan_lease(limits: Iterable[ProviderLimit], limit: int, now: datetime) -> LeasePlan:
    """Share a lease of up to *limit* accounts among the providers' *limits* at *now*.

    A paused provider gets none until its pause ends; a budgeted one at most the whole
    checks its bucket holds (so a burst smaller than a batch makes the batch smaller), none
    when it holds less than one; the others are not limited here.
    """
    limited: set[str] = set()
    caps: dict[str, int] = {}
    held: dict[str, datetime] = {}
    paused: dict[str, datetime] = {}
    budgets: dict[str, Budget] = {}
    for entry in limits:
        provider_id, budget, pause = entry.provider_id, entry.budget, entry.pause
        if pause.active(now) and pause.until is not None:
            limited.add(provider_id)
            paused[provider_id] = pause.until
        elif budget is not None:
            limited.add(provider_id)
            drawn = draw(budget, limit, now)
            if drawn.granted:
                caps[provider_id] = drawn.granted
                budgets[provider_id] = budget
            else:
                held[provider_id] = now + (drawn.wait or timedelta(0))
    return LeasePlan(frozenset(limited), caps, held, budgets, paused)


def held_back(plan: LeasePlan, now: datetime, has_due: Callable[[str], bool]) -> dict[str, Any]:
    """What an empty lease tells its checker (the `hub_core.leases.Lease` fields ``wait``,
    ``waiting_for``, ``paused``, ``paused_until``): the held and paused providers of *plan*
    that have accounts due (*has_due* asks the store), and when each kind may go on."""
    waiting = tuple(p for p in sorted(plan.held) if has_due(p))
    paused = tuple(p for p in sorted(plan.paused) if has_due(p))
    return {
        "wait": plan.wait(now, waiting),
        "waiting_for": waiting,
        "paused": paused,
        "paused_until": min((plan.paused[p] for p in paused), default=None),
    }
