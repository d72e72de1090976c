"""``hub limits``: show, set and remove the check budgets; end a pause."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from hub_core.budgets import PAUSE_AFTER, Pause
from hub_core.cli import State, main
from hub_core.store import Store

from .conftest import CANARY


@pytest.fixture
def hub(make_hub: Any) -> Any:
    return make_hub()


def run(hub: Any, store: Store, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), obj=State(hub=hub, store=store))


def test_no_budget_says_so(hub: Any, store: Store) -> None:
    result = run(hub, store, "limits")
    assert result.exit_code == 0
    assert "No provider has a budget" in result.stdout
    assert json.loads(run(hub, store, "limits", "--json").stdout) == []


def test_a_budget_set_is_shown_and_in_json(hub: Any, store: Store) -> None:
    result = run(hub, store, "limits", "set", "acme", "2.5", "--burst", "10")
    assert result.exit_code == 0, result.output
    assert "acme" in result.stdout
    assert "2.5 checks/s, burst 10 (10 ready now)" in result.stdout
    [shown] = json.loads(run(hub, store, "limits", "--json").stdout)
    assert shown == {
        "provider": "acme",
        "rate": 2.5,
        "burst": 10,
        "tokens": 10.0,
        "paused_until": None,
    }
    assert "2.5 checks/s" in run(hub, store, "limits").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nope", "5"], "no provider 'nope'"),
        (["acme", "0"], "more than 0"),
        (["acme", "fast"], "not a valid float"),
        (["acme", "5", "--burst", "0"], "--burst"),
    ],
)
def test_a_bad_budget_is_exit_2_and_nothing_stored(
    hub: Any, store: Store, args: list[str], says: str
) -> None:
    result = run(hub, store, "limits", "set", *args)
    assert result.exit_code == 2
    assert says in result.output
    assert store.limits() == []


def test_remove_takes_the_budget_away(hub: Any, store: Store) -> None:
    run(hub, store, "limits", "set", "acme", "3")
    result = run(hub, store, "limits", "remove", "acme")
    assert result.exit_code == 0
    assert "no budget" in result.stdout
    assert store.limits() == []


def test_a_pause_is_shown_and_resume_ends_it(hub: Any, store: Store) -> None:
    now = datetime.now(UTC)
    pause = _pause(store, "acme", now)
    result = run(hub, store, "limits")
    assert "paused until" in result.stdout
    assert "hub limits resume acme" in result.stdout
    [shown] = json.loads(run(hub, store, "limits", "--json").stdout)
    assert datetime.fromisoformat(shown["paused_until"]) == pause.until
    assert "paused" not in run(hub, store, "limits", "resume", "acme").stdout
    assert store.limits()[0].pause == Pause()
    again = run(hub, store, "limits", "resume", "acme")  # nothing left to end: said so
    assert (again.exit_code, again.stdout.split()) == (0, ["acme", "no", "budget"])


@pytest.mark.parametrize("command", ["remove", "resume"])
def test_a_provider_neither_installed_nor_stored_is_a_typo_exit_2(
    hub: Any, store: Store, command: str
) -> None:
    result = run(hub, store, "limits", command, "acmee")
    assert result.exit_code == 2
    assert "no provider 'acmee'" in result.output
    assert store.limits() == []


def test_a_provider_the_store_knows_is_let_through_though_not_installed_here(
    hub: Any, store: Store
) -> None:
    store.set_limit("elsewhere", 2.0)  # its plugin is installed on the workers, not here
    result = run(hub, store, "limits", "remove", "elsewhere")
    assert result.exit_code == 0, result.output
    assert "no budget" in result.stdout


def test_provider_text_from_the_store_is_inert(hub: Any, store: Store) -> None:
    store.set_limit(f"x\x1b[2J{CANARY}", 1)
    result = run(hub, store, "limits")
    assert "\x1b" not in result.stdout


def _pause(store: Store, provider_id: str, now: datetime) -> Pause:
    with store._write() as conn:  # what rate limits of several accounts leave behind
        until = now + timedelta(minutes=5)
        conn.execute(
            "INSERT INTO provider_limits (provider_id, limited_count, paused_until)"
            " VALUES (?, 0, ?)",
            (provider_id, until.isoformat()),
        )
    assert PAUSE_AFTER > 1
    return Pause(until=until)


def test_a_run_that_checked_nothing_says_so_and_why() -> None:
    from hub_core.accounts import CheckRun
    from hub_core.cli.accounts import CheckReport

    run = CheckRun(paused=("acme",), paused_until=datetime(2026, 12, 1, 14, 2, 11, tzinfo=UTC))
    lines = [line.plain for line in CheckReport(run).lines()]
    assert lines[0] == "Checked no account."
    assert "the accounts of acme, paused after rate limits until 14:02:11 UTC" in lines[-1]
