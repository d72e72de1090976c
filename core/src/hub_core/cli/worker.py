"""``hub worker``: re-check accounts as they fall due, until stopped (SCALE.md §2).

Any number of workers (and ``hub check`` runs) share one store through leases: each due
account is checked once. SIGTERM or Ctrl-C stops leasing, cancels the batch in flight (the
verdicts it reached are kept) and releases what it had not started, then exits 0.
"""

from __future__ import annotations

import click

from hub_core.cli import no_core_dumps, reports_errors, say, shown, state
from hub_core.cli.accounts import (
    CheckReport,
    collect_less,
    concurrency_option,
    lease_duration,
    lease_option,
)

__all__ = ["worker"]

#: Seconds without a verdict after which `hub worker` tells the verdicts since its last line.
_QUIET = 1.0


@click.command()
@click.option(
    "--every",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How long after its last check an account is due again (30m, 12h, 7d).",
)
@concurrency_option
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="How many due accounts one lease takes.",
)
@lease_option
@reports_errors
def worker(every: str, concurrency: int, batch: int, lease: str) -> None:
    """Re-check linked keys as they fall due, until stopped (SIGTERM or Ctrl-C)."""
    import asyncio
    import signal
    from datetime import timedelta

    from hub_core.cli.links import parse_duration

    try:
        interval = parse_duration(every, what="--every is", at_most=365)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if interval < timedelta(minutes=1):
        raise click.BadParameter("give at least 1m", param_hint="--every")
    lease_for = lease_duration(lease)
    no_core_dumps()
    current = state()
    accounts = current.accounts  # built before the collector freezes start-up
    # A worker runs for days: its events go out as they happen, not when it stops.
    outbox = current.outbox
    if outbox is not None:
        outbox.start()
        say(shown("Webhooks go to {url}, signed.", url=outbox.config.shown_url), err=True)

    def batch_done(report: CheckReport) -> None:
        say(*report.lines(), err=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        report = CheckReport()
        pending = 0
        last = loop.time()

        def checked(account: object) -> None:
            nonlocal pending, report, last
            report.add(account)  # type: ignore[arg-type]
            pending += 1
            last = loop.time()
            if pending >= batch:
                batch_done(report)
                report, pending = CheckReport(), 0

        async def report_when_quiet() -> None:
            # Fewer due accounts than --batch: their verdicts (a revoked key among them) are
            # told once the checks fall quiet, not only at SIGTERM.
            nonlocal pending, report
            while True:
                await asyncio.sleep(_QUIET / 2)
                if pending and loop.time() - last >= _QUIET:
                    batch_done(report)
                    report, pending = CheckReport(), 0

        say(
            shown("Checking each account every {every}; SIGTERM or Ctrl-C stops.", every=every),
            err=True,
        )
        told: set[tuple[str, ...]] = set()

        def waiting(providers: tuple[str, ...], wait: timedelta) -> None:
            # Once per set of providers and wait: a budget refills many times a minute, and a
            # worker is not to fill its journal with the same line.
            if providers and providers not in told:
                told.add(providers)
                say(
                    shown(
                        "Waiting for {names}: its check budget or a pause after rate limits "
                        "holds its due accounts back for {seconds} s (`hub limits` shows them).",
                        names=", ".join(providers),
                        seconds=max(1, round(wait.total_seconds())),
                    ),
                    err=True,
                )

        quiet = asyncio.create_task(report_when_quiet())
        try:
            await accounts.work(
                every=interval,
                stop=stop,
                concurrency=concurrency,
                batch=batch,
                lease_for=lease_for,
                on_result=checked,
                on_wait=waiting,
            )
        finally:
            quiet.cancel()
        if pending:
            batch_done(report)

    collect_less()
    try:
        asyncio.run(run())
    finally:
        if outbox is not None:
            outbox.stop()  # the command's end delivers what is due, then closes it
    say(shown("Stopped."), err=True)


COMMANDS = [worker]
