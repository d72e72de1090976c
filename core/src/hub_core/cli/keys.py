"""``hub keys``: the store's secret keys: which accounts each holds, rotating, making a new one.

The keys are a key ring (`hub_core.keyring`): ``HUB_SECRET_KEYS="new,old"`` (the first
encrypts), ``HUB_SECRET_KEY`` or the key file. Nothing here prints a key except ``hub keys
new``, which prints the one it made, to standard output only. Everything but click loads when
the command runs.
"""

from __future__ import annotations

import sys
import time

import click

from hub_core.cli import EXIT_REJECTED, echo_json, joined, reports_errors, say, shown, state

__all__ = ["keys"]

#: How often a long `hub keys rotate` says how far it got, on standard error.
_PROGRESS_EVERY = 2.0
#: How many of the accounts a rotation could not re-encrypt it names (then "and N more").
_NAMED = 20


@click.group()
def keys() -> None:
    """The secret keys of the store: status, rotation to a new key, a new key."""


@keys.command()
@click.option("--json", "as_json", is_flag=True, help="Print the key ids and counts as JSON.")
@reports_errors
def status(as_json: bool) -> None:
    """Show how many accounts are on each key id, and which key encrypts new ones."""
    report = state().store.key_status()
    if as_json:
        echo_json(
            {
                "encrypts": report.encrypts,
                "to_rotate": report.to_rotate,
                "keys": [
                    {
                        "id": key.id,
                        "accounts": key.accounts,
                        "position": key.position,
                        "configured": key.configured,
                        "checked": key.checked,
                    }
                    for key in report.keys
                ],
            }
        )
        return
    lines = []
    for key in report.keys:
        if key.id == report.encrypts:
            role = shown("{where}: encrypts new accounts", where=key.configured)
        elif key.configured is not None:
            role = shown("{where}: decrypts only", where=key.configured)
        else:
            role = shown("not configured")
        lines.append(
            shown(
                "{id}  {n:>8} account{s}  {role}",
                id=key.id,
                n=key.accounts,
                s=" " if key.accounts == 1 else "s",
                role=role,
            )
        )
    if report.to_rotate:
        lines.append(
            shown(
                "{n} account{s} not on the key that encrypts: run `hub keys rotate`.",
                n=report.to_rotate,
                s="s" * (report.to_rotate != 1),
            )
        )
    else:
        lines.append(shown("Every account is on the key that encrypts."))
    say(*lines)


@keys.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=300,
    show_default=True,
    help="Accounts re-encrypted per transaction.",
)
@reports_errors
def rotate(batch_size: int) -> None:
    """Re-encrypt every account not on the first key with it (safe to stop and run again)."""
    store = state().store
    last_shown: list[float] = []

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        # The first batch always, then every few seconds: a long run shows it is moving.
        if not last_shown or now - last_shown[0] >= _PROGRESS_EVERY:
            last_shown[:] = [now]
            say(
                shown("Re-encrypted {done} of {total} accounts...", done=done, total=total),
                err=True,
            )
            sys.stderr.flush()

    report = store.rotate_keys(batch_size=batch_size, progress=progress)
    say(
        shown(
            "Re-encrypted {n} account{s} with key {id}.",
            n=report.rotated,
            s="s" * (report.rotated != 1),
            id=report.key_id,
        )
    )
    if report.unreadable:
        count = len(report.unreadable)
        many = count != 1
        # Each id clipped on its own: one line clipped as a whole cut the list mid-id.
        ids = joined((shown("{id}", id=i) for i in report.unreadable[:_NAMED]), ", ")
        more = shown(" and {n} more", n=count - _NAMED) if count > _NAMED else shown("")
        say(
            shown(
                "{n} account{s} could not be decrypted with {their} key and {was} left as "
                "{it} {was}: {ids}{more}. Give {them} {their} key again with `hub relink ID`, "
                "or unlink {them}.",
                n=count,
                s="s" * many,
                their="their" if many else "its",
                was="were" if many else "was",
                it="they" if many else "it",
                them="them" if many else "it",
                ids=ids,
                more=more,
            ),
            err=True,
        )
        raise SystemExit(EXIT_REJECTED)


@keys.command()
def new() -> None:
    """Print a new random key (for HUB_SECRET_KEYS), to standard output only."""
    from hub_core.keyring import generate_key

    # Through `say` like every output: url-safe base64 is inert as it is.
    say(shown("{key}", key=generate_key()))


COMMANDS = [keys]
