"""``hub webhooks``: what the webhook outbox holds, and sending it now (`hub_core.webhooks`)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from hub_core.cli import echo_json, reports_errors, say, shown, state

if TYPE_CHECKING:
    from hub_core.webhooks import DeliveryReport, Outbox

__all__ = ["webhooks"]


def _outbox() -> Outbox | None:
    """An outbox of this command's own (not the one `State.finish` delivers at the end)."""
    if not os.environ.get("HUB_WEBHOOK_URL", "").strip():
        return None
    from hub_core.webhooks import Outbox, WebhookConfig

    config = WebhookConfig.from_env()
    return None if config is None else Outbox(state().store, config)


def _when(seconds: float | None) -> str | None:
    from datetime import UTC, datetime

    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _not_set() -> None:
    say(shown("No webhook URL is set (HUB_WEBHOOK_URL): no event is put in the outbox."))


@click.group()
def webhooks() -> None:
    """Signed webhooks: the outbox of events bound for HUB_WEBHOOK_URL."""


@webhooks.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts and failed events as JSON.")
@reports_errors
def status(as_json: bool) -> None:
    """Show where webhooks go, how many events wait, and those whose retries ran out."""
    outbox = _outbox()
    if outbox is None:
        counts = state().store.outbox_counts()
        if as_json:
            echo_json({"url": None, **counts, "failed_events": []})
            return
        _not_set()
        if counts["pending"] or counts["failed"]:
            say(
                shown(
                    "The outbox still holds {p} pending and {f} failed event(s) from before.",
                    p=counts["pending"],
                    f=counts["failed"],
                )
            )
        return
    with outbox:
        counts = outbox.counts()
        failed = outbox.entries("failed")
        pending = outbox.entries("pending", limit=1)
    if as_json:
        echo_json(
            {
                "url": outbox.config.shown_url,
                **counts,
                "failed_events": [
                    {
                        "id": row.event_id,
                        "type": row.event_type,
                        "attempts": row.attempts,
                        "last_error": row.last_error,
                        "created_at": _when(row.created_at),
                        "failed_at": _when(row.failed_at),
                    }
                    for row in failed
                ],
            }
        )
        return
    lines = [
        shown("Webhooks go to {url}", url=outbox.config.shown_url),
        shown(
            "{p} pending, {f} failed, {d} delivered (kept a week).",
            p=counts["pending"],
            f=counts["failed"],
            d=counts["delivered"],
        ),
    ]
    if pending:
        row = pending[0]
        lines.append(
            shown(
                "Oldest pending: {type} {id} from {at}, {n} attempt(s){why}.",
                type=row.event_type,
                id=row.event_id,
                at=_when(row.created_at),
                n=row.attempts,
                why=shown(" (last: {e})", e=row.last_error) if row.last_error else shown(""),
            )
        )
    for row in failed:
        lines.append(
            shown(
                "  failed: {type} {id} after {n} attempts ({why})",
                type=row.event_type,
                id=row.event_id,
                n=row.attempts,
                why=row.last_error,
            )
        )
    if failed:
        lines.append(shown("`hub webhooks retry` sends the failed events again."))
    say(*lines)


def _report(report: DeliveryReport) -> None:
    say(
        shown(
            "Delivered {d}, {r} to retry later, {g} given up; {p} pending.",
            d=report.delivered,
            r=report.retried,
            g=report.gave_up,
            p=report.pending,
        )
    )
    if report.last_error:
        say(shown("Last failure: {error}", error=report.last_error), err=True)
    if report.retried or report.gave_up:
        sys.exit(1)


_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to keep sending (and retrying what fails).",
)


def _send(retry_failed: bool, timeout: float) -> None:
    outbox = _outbox()
    if outbox is None:
        _not_set()
        return
    with outbox:
        if retry_failed:
            count = outbox.retry_failed()
            say(shown("{n} failed event(s) are due again.", n=count))
        report = outbox.deliver(timeout=timeout)
    _report(report)


@webhooks.command()
@_TIMEOUT
@reports_errors
def deliver(timeout: float) -> None:
    """Send the events that are due now. Exit 1 when an attempt failed."""
    _send(False, timeout)


@webhooks.command()
@_TIMEOUT
@reports_errors
def retry(timeout: float) -> None:
    """Send the failed events (retries exhausted) again, with a fresh count of attempts."""
    _send(True, timeout)


COMMANDS = [webhooks]
