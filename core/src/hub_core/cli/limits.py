"""``hub limits``: the check budgets every checker of the store shares, per provider.

A budget is a number of checks per second (a check is one verification: one request to
Elastic Cloud, up to three to Qlik Cloud), with a burst; every ``hub check`` and ``hub worker``
of the store, on any host, leases no more of a provider's accounts than its budget grants
(`hub_core.budgets`). A provider that rate-limits several accounts within a minute is paused
for every checker; ``hub limits resume`` ends that pause early.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from hub_core.cli import Shown, echo_json, json_time, reports_errors, say, shown, state

if TYPE_CHECKING:
    from hub_core.budgets import ProviderLimit

__all__ = ["limits"]


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the budgets and pauses as JSON.")
@click.pass_context
@reports_errors
def limits(ctx: click.Context, as_json: bool) -> None:
    """Show or set the check budget of each provider, shared by every checker."""
    if ctx.invoked_subcommand is not None:
        return
    now = datetime.now(UTC)
    found = state().store.limits()
    if as_json:
        echo_json([_as_json(limit, now) for limit in found])
        return
    if not found:
        say(shown("No provider has a budget: checks run as fast as --concurrency allows."))
        return
    say(*(_line(limit, now) for limit in found))


@limits.command(name="set")
@click.argument("provider")
@click.argument("rate", type=float)
@click.option(
    "--burst",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Checks that may start at once after a quiet time (default: one second's worth).",
)
@reports_errors
def set_limit(provider: str, rate: float, burst: int | None) -> None:
    """Let PROVIDER's accounts be checked at most RATE times per second, by all checkers."""
    current = state()
    known = current.hub.provider(provider)  # an unknown provider: exit 2, nothing stored
    try:
        limit = current.store.set_limit(known.id, rate, burst)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE or --burst") from None
    say(_line(limit, datetime.now(UTC)))


@limits.command()
@click.argument("provider")
@reports_errors
def remove(provider: str) -> None:
    """Remove PROVIDER's budget (a pause after rate limits stays until it ends)."""
    _known(provider)
    limit = state().store.set_limit(provider, None)
    say(_line(limit, datetime.now(UTC)))


@limits.command()
@click.argument("provider")
@reports_errors
def resume(provider: str) -> None:
    """End PROVIDER's pause after rate limits now, for every checker."""
    _known(provider)
    limit = state().store.lift_pause(provider)
    if limit is None:
        say(shown("{provider} has no pause and no budget.", provider=provider))
        return
    say(_line(limit, datetime.now(UTC)))


def _known(provider: str) -> None:
    """Refuse a provider that is neither installed nor in the store (a typo: exit 2).

    One the store has a record of is let through: its plugin may be installed elsewhere.
    """
    current = state()
    if all(limit.provider_id != provider for limit in current.store.limits()):
        current.hub.provider(provider)  # UnknownProvider


def _line(limit: ProviderLimit, now: datetime) -> Shown:
    budget = limit.budget
    if budget is None:
        what = shown("no budget")
    else:
        what = shown(
            "{rate:g} check{s}/s, burst {burst} ({ready} ready now)",
            rate=budget.rate,
            s="s" * (budget.rate != 1),
            burst=budget.burst,
            ready=int(budget.tokens_at(now)),
        )
    pause = limit.pause
    if pause.until is not None and pause.active(now):
        what = shown(
            "{what}; paused until {until} after rate limits (`hub limits resume {provider}`)",
            what=what,
            until=pause.until.strftime("%Y-%m-%d %H:%M:%S UTC"),
            provider=limit.provider_id,
        )
    return shown("{provider:<12} {what}", provider=limit.provider_id, what=what)


def _as_json(limit: ProviderLimit, now: datetime) -> dict[str, Any]:
    budget, pause = limit.budget, limit.pause
    return {
        "provider": limit.provider_id,
        "rate": budget.rate if budget else None,
        "burst": budget.burst if budget else None,
        "tokens": round(budget.tokens_at(now), 3) if budget else None,
        "paused_until": json_time(pause.until) if pause.active(now) else None,
    }


COMMANDS = [limits]
