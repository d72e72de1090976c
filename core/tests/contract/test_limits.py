"""The contract of every store's check budgets and provider pauses (`hub_core.budgets`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub_core.budgets import Budget, Pause, ProviderLimit
from hub_core.store_protocol import AccountStore

from .conftest import Backend

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_a_budget_starts_full_and_is_listed_by_provider(store: AccountStore) -> None:
    assert store.limits() == []
    set_qlik = store.set_limit("qlik", 0.5, now=NOW)
    store.set_limit("elastic", 5, burst=10, now=NOW)
    assert set_qlik == ProviderLimit("qlik", Budget(rate=0.5, burst=1, tokens=1.0, refilled_at=NOW))
    assert store.limits() == [
        ProviderLimit("elastic", Budget(rate=5.0, burst=10, tokens=10.0, refilled_at=NOW)),
        set_qlik,
    ]


def test_setting_a_budget_again_replaces_it(store: AccountStore) -> None:
    store.set_limit("elastic", 5, burst=10, now=NOW)
    store.set_limit("elastic", 2, now=NOW + timedelta(hours=1))
    [limit] = store.limits()
    later = NOW + timedelta(hours=1)
    assert limit.budget == Budget(rate=2.0, burst=2, tokens=2.0, refilled_at=later)


def test_removing_a_budget_leaves_nothing_behind(store: AccountStore) -> None:
    store.set_limit("elastic", 5, now=NOW)
    assert store.set_limit("elastic", None, now=NOW) == ProviderLimit("elastic")
    assert store.limits() == []
    assert store.lift_pause("elastic") is None


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-2, None), (float("nan"), None), (3, 0)])
def test_a_bad_budget_is_refused_and_nothing_is_written(
    store: AccountStore, rate: float, burst: int | None
) -> None:
    store.set_limit("elastic", 5, now=NOW)
    with pytest.raises(ValueError, match=r"rate|burst"):
        store.set_limit("elastic", rate, burst, now=NOW)
    assert [limit.budget.rate for limit in store.limits() if limit.budget] == [5.0]


def test_another_connection_sees_the_budget(backend: Backend, store: AccountStore) -> None:
    store.set_limit("elastic", 7, now=NOW)
    other = backend.open()
    assert [limit.provider_id for limit in other.limits()] == ["elastic"]
    assert other.limits()[0].pause == Pause()


def fill(store: AccountStore, provider: str, n: int) -> list[str]:
    """*n* due accounts of *provider*, linked (and last checked) two days ago."""
    from hub_core.model import Credentials, Verified

    return [
        store.save(
            provider,
            Verified(identity=f"org:{provider}{i}", label=f"Org {i}"),
            Credentials({"api_key": f"{provider}-key-{i:04d}"}, secret=["api_key"]),
            now=NOW - timedelta(days=2),
        ).id
        for i in range(n)
    ]


def providers_of(lease: object) -> list[str]:
    return sorted(item.account.provider_id for item in lease.accounts)  # type: ignore[attr-defined]


def test_a_lease_takes_no_more_of_a_provider_than_its_bucket_holds(store: AccountStore) -> None:
    fill(store, "acme", 10)
    store.set_limit("acme", 4, burst=3, now=NOW)
    first = store.lease(10, now=NOW)
    assert providers_of(first) == ["acme"] * 3  # a burst smaller than the batch shrinks it
    empty = store.lease(10, now=NOW)
    assert empty.accounts == []
    assert empty.waiting_for == ("acme",)
    assert empty.wait == timedelta(seconds=0.25)  # one check's token at 4 a second
    assert len(store.lease(10, now=NOW + timedelta(seconds=0.5)).accounts) == 2
    [limit] = store.limits()
    assert limit.budget is not None
    assert limit.budget.tokens == 0.0


def test_providers_without_a_budget_are_not_held_back(store: AccountStore) -> None:
    fill(store, "acme", 5)
    fill(store, "other", 5)
    store.set_limit("acme", 1, burst=2, now=NOW)
    lease = store.lease(10, now=NOW)
    assert providers_of(lease) == ["acme"] * 2 + ["other"] * 5
    assert lease.wait is None


def test_a_budget_is_shared_by_every_connection(backend: Backend, store: AccountStore) -> None:
    fill(store, "acme", 20)
    store.set_limit("acme", 1, burst=5, now=NOW)
    other = backend.open()
    taken = [len(s.lease(3, now=NOW).accounts) for s in (store, other, store, other)]
    assert sum(taken) == 5


def test_an_empty_provider_with_a_budget_makes_no_one_wait(store: AccountStore) -> None:
    fill(store, "other", 2)
    store.set_limit("acme", 1, burst=1, now=NOW)
    store.lease(10, now=NOW)
    store.set_limit("acme", 1, burst=1, now=NOW)
    done = store.lease(10, now=NOW)  # nothing due at all: done, not waiting
    assert (done.accounts, done.wait, done.waiting_for) == ([], None, ())


def test_rate_limits_of_several_accounts_pause_their_provider(store: AccountStore) -> None:
    from hub_core.budgets import PAUSE_AFTER
    from hub_core.errors import RateLimited

    ids = fill(store, "acme", PAUSE_AFTER + 2)
    fill(store, "other", 2)
    lease = store.lease(PAUSE_AFTER, now=NOW)
    assert providers_of(lease) == ["acme"] * PAUSE_AFTER
    verdicts = [store.get(item.account.id).status for item in lease.accounts]
    outcomes = store.record_many(
        [(item.account.id, RateLimited("slow down", retry_after=120)) for item in lease.accounts],
        lease=lease.token,
        now=NOW,
    )
    assert [o.status for o in outcomes] == verdicts  # type: ignore[union-attr]  # unchanged
    [paused] = [limit for limit in store.limits() if limit.provider_id == "acme"]
    assert paused.pause.until == NOW + timedelta(seconds=120)
    # The other provider goes on; acme's two still due wait for the pause.
    assert providers_of(store.lease(10, now=NOW + timedelta(seconds=1))) == ["other"] * 2
    held = store.lease(10, now=NOW + timedelta(seconds=2))
    assert (held.accounts, held.paused) == ([], ("acme",))
    assert held.paused_until == NOW + timedelta(seconds=120)
    assert (held.wait, held.waiting_for) == (None, ())  # a pause is not a budget's short wait
    assert store.lift_pause("acme") is not None
    assert len(store.lease(10, now=NOW + timedelta(seconds=3)).accounts) == 2
    assert set(ids) >= {item.account.id for item in lease.accounts}


def test_one_rate_limited_key_pauses_nothing(store: AccountStore) -> None:
    from hub_core.errors import RateLimited

    fill(store, "acme", 3)
    lease = store.lease(1, now=NOW)
    store.record_many(
        [(lease.accounts[0].account.id, RateLimited("slow down", retry_after=60))],
        lease=lease.token,
        now=NOW,
    )
    assert len(store.lease(10, now=NOW + timedelta(seconds=1)).accounts) == 2
    [record] = store.limits()
    assert not record.pause.active(NOW + timedelta(seconds=1))
    assert record.pause.count == 1


@pytest.mark.parametrize("retry_after", [1e15, float("inf"), float("nan")])
def test_a_hostile_retry_after_holds_an_account_back_a_day_at_most(
    store: AccountStore, retry_after: float
) -> None:
    from hub_core.errors import RateLimited

    [account_id] = fill(store, "acme", 1)
    lease = store.lease(1, now=NOW)
    [outcome] = store.record_many(
        [(account_id, RateLimited("slow down", retry_after=retry_after))],
        lease=lease.token,
        now=NOW,
    )
    assert not isinstance(outcome, Exception)
    assert store.lease(1, now=NOW + timedelta(days=1, hours=7)).accounts != []
