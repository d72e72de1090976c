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
