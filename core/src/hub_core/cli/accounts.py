"""Linking and checking: ``hub link``, ``accounts``, ``relink``, ``unlink`` and ``check``."""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hub_core.cli import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    Shown,
    echo_json,
    joined,
    no_core_dumps,
    reports_errors,
    say,
    shown,
    state,
)
from hub_core.display_text import LONG_LIMIT, inert
from hub_core.errors import FieldError, HubError, ProviderUnavailable
from hub_core.status import Status

if TYPE_CHECKING:
    from hub_core.accounts import CheckRun
    from hub_core.model import Account, Field, Provider

STATUS_COLOURS = {
    Status.ACTIVE: "green",
    Status.EXPIRING: "yellow",
    Status.EXPIRED: "red",
    Status.INVALID: "red",
    Status.DENIED: "red",
    Status.ERROR: "magenta",
    Status.DAMAGED: "red",
}
ATTEMPTS = 3


#: How many allocations apart the collector visits its youngest objects during a run of
#: checks: ten times Python's default (700).
RUN_GC_THRESHOLD = 7000


def collect_less() -> None:
    """Keep Python's cyclic garbage collector out of a long run of checks, when ``hub`` is
    the program (a host that runs the commands in its own process keeps its settings).

    A run allocates objects by the million, nearly all freed by reference counting as their
    check ends; the collector still walked the youngest ones every 700 allocations and, at
    each full collection, every object start-up had made (modules, classes, plugins). Those
    are moved out of its way for good (`gc.freeze`), and the youngest generation is visited
    a tenth as often: over 10,000 checks, 200 ms of collections became about 20 (peak RSS
    unchanged). Cycles are still collected, only later.
    """
    if click.get_current_context().find_root().info_name != "hub":
        return
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, RUN_GC_THRESHOLD), middle, old)


def _env_name(field: Field) -> str:
    return f"HUB_FIELD_{field.name.upper()}"


def _where(field: Field) -> str:
    if field.secret:
        return f"{_env_name(field)} or --secret-stdin"
    return f"--set {field.name}=..."


def _parse_sets(provider: Provider, sets: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set takes name=value, got {item!r}")
        try:
            field = provider.field(name)
        except KeyError:
            names = ", ".join(f.name for f in provider.fields)
            message = f"{provider.name} has no field {name!r}; its fields: {names}"
            raise click.UsageError(message) from None
        if field.secret:
            raise click.UsageError(
                f"{field.label} is a secret and is never taken from the command line (it would "
                f"show in the process list and shell history); use {_where(field)}"
            )
        values[name] = value
    return values


def _prompt(field: Field) -> str:
    lines = []
    if field.help:
        lines.append(shown("  {help}", help=field.help, limit=LONG_LIMIT).styled(dim=True))
    lines += [
        shown("    {value:<6} {label}", value=choice.value, label=choice.label)
        for choice in field.choices
    ]
    if lines:
        say(*lines, err=True)

    from hub_core.fields import validate_field

    def convert(raw: str) -> str:
        try:
            return validate_field(field, raw)
        except FieldError as exc:
            raise click.BadParameter(inert(exc.message, limit=LONG_LIMIT)) from None

    default = field.default if field.default is not None else (None if field.required else "")
    # The default is shown by hub, made inert like the label; click would print it raw.
    text = shown(
        "{label} [{default}]" if default else "{label}", label=field.label, default=default
    )
    value: str = click.prompt(
        text.text,
        default=default,
        hide_input=field.secret,
        show_default=False,
        value_proc=convert,
        err=True,
    )
    return value


def _secret_line(stdin: Any, field: Field) -> str:
    """The next line of standard input, as *field*'s value: bounded, and decoded strictly.

    Read as bytes, at most what the field's length takes in UTF-8 (four bytes a character) and
    a line ending (``\r\n``): a line that never ends must not be read into memory whole, and
    bytes that are not text must be refused with a message, not a traceback (the text layer's
    decoding fails inside readline). Nothing of the line is shown: it is a secret.
    """
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:  # a text-only stream a host app put in place: bounded all the same
        limit = field.max_length + 2
        line: str = stdin.readline(limit)
        raw = line.encode("utf-8", "surrogateescape")
    else:  # bytes: a character may take four of them in UTF-8
        limit = 4 * field.max_length + 2
        raw = buffer.readline(limit)
    where = f"--secret-stdin: the line for {field.label}"
    if not raw:
        raise click.UsageError(f"--secret-stdin: no line left on standard input for {field.label}")
    if len(raw) >= limit and not raw.endswith(b"\n"):
        raise click.UsageError(
            f"{where} is too long (more than {field.max_length} characters); the rest of "
            "standard input was not read and nothing was stored"
        )
    encoding = getattr(stdin, "encoding", None) or "utf-8"
    try:
        text = raw.decode(encoding).rstrip("\r\n")
    except (UnicodeDecodeError, LookupError) as exc:
        at = f" (byte {exc.start + 1})" if isinstance(exc, UnicodeDecodeError) else ""
        raise click.UsageError(f"{where} is not {encoding} text{at}; nothing was stored") from None
    return text  # longer than the field takes, in characters: the field check says so


def _say_supplied(field: Field, value: str, source: Field) -> None:
    line = shown(
        "{label}: {value} (from {source})", label=field.label, value=value, source=source.label
    )
    say(line, err=True)


def gather(
    provider: Provider,
    fields: Iterable[Field],
    sets: Sequence[str],
    secret_stdin: bool,
    interactive: bool,
) -> dict[str, str]:
    """Collect the values of *fields*: --set, HUB_FIELD_<NAME>, standard input, then prompts.

    A field whose value an earlier one supplies (`Field.fills`: a pasted tenant address names
    the region) is not asked: the value is used, and shown at a terminal. A value given by
    --set or HUB_FIELD_<NAME> always wins.
    """
    if secret_stdin and sys.stdin.isatty():
        # Read from a terminal the line would echo the key on the screen and in scrollback.
        raise click.UsageError(
            "--secret-stdin reads secrets from a pipe or a file, and standard input is a "
            "terminal: leave it out, and hub asks for each secret without showing it"
        )
    given = _parse_sets(provider, sets)
    values: dict[str, str] = {}
    supplied: dict[str, tuple[str, Field]] = {}
    missing: list[Field] = []
    stdin = sys.stdin if secret_stdin else None
    for field in fields:
        if field.name in given:
            values[field.name] = given[field.name]
        elif (env := os.environ.get(_env_name(field))) is not None:
            values[field.name] = env
        elif field.secret and stdin is not None:
            values[field.name] = _secret_line(stdin, field)
        elif field.name in supplied:
            value, source = supplied[field.name]
            values[field.name] = value
            if interactive:
                _say_supplied(field, value, source)
        elif interactive:
            values[field.name] = _prompt(field)
        elif field.required and field.default is None:
            missing.append(field)
        if field.fills is not None and field.name in values:
            for name, value in provider.supplied(field.name, values[field.name]).items():
                supplied.setdefault(name, (value, field))
    if missing:
        wanted = "; ".join(f"{field.label} ({_where(field)})" for field in missing)
        raise click.UsageError(f"missing values, and standard input is not a terminal: {wanted}")
    return values


def _when(value: datetime | None, missing: str = "-") -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d") if value else missing


def _expiry(account: Account) -> str:
    if account.expires_at is None:
        return "never / unknown"
    days = (account.expires_at - datetime.now(UTC)).total_seconds() / 86400
    # "in 90 days" for a key made today with a 90-day expiry (a part day ahead counts); whole
    # days behind, never "0 days ago": 25 hours ago is "1 day ago", a week and a minute "7".
    count = math.ceil(days) if days >= 0 else max(1, math.floor(-days))
    unit = "day" if count == 1 else "days"
    ago = f"in {count} {unit}" if days >= 0 else f"{count} {unit} ago"
    return f"{_when(account.expires_at)} ({ago})"


def _status(status: Status) -> Shown:
    return shown("{status}", status=status.value).styled(fg=STATUS_COLOURS[status])


def _confirm_linked(provider: Provider, account: Account) -> None:
    # Linked before (the same identity again): its one account got the new key.
    updated = account.linked_at != account.checked_at
    title = (
        shown("Linked {label} again: the new key replaces the stored one", label=account.label)
        if updated
        else shown("Linked {label}", label=account.label)
    )
    say(
        title.styled(fg="green", bold=True),
        shown("  account   {id}", id=account.id),
        shown("  provider  {name}", name=provider.name),
        shown("  reaches   {identity}", identity=account.identity),
        shown("  expires   {expiry}", expiry=_expiry(account)),
    )


F = TypeVar("F", bound=Callable[..., Any])


def _link_options(command: F) -> F:
    """The options `link` and `relink` share: where values come from, and --json."""
    command = click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")(
        command
    )
    command = click.option(
        "--secret-stdin", is_flag=True, help="Read each secret field from a line of standard input."
    )(command)
    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="NAME=VALUE",
        help="A non-secret field's value (repeatable).",
    )(command)


@click.command()
@click.argument("provider_id", metavar="PROVIDER")
@_link_options
@reports_errors
def link(provider_id: str, sets: tuple[str, ...], secret_stdin: bool, as_json: bool) -> None:
    """Link an account: enter its key, hub checks it live, then stores it.

    Secrets are prompted without echo, or read from HUB_FIELD_<NAME> or --secret-stdin;
    they are never accepted as arguments.
    """
    no_core_dumps()
    current = state()
    provider = current.hub.provider(provider_id)
    interactive = current.interactive
    if interactive:
        say(
            shown("Link {name}", name=provider.name).styled(bold=True),
            shown("Where to find these values: `hub guide {id}`.", id=provider.id),
            err=True,
        )
    values = gather(provider, provider.fields, sets, secret_stdin, interactive)
    account = _check_and_store(
        provider,
        values,
        interactive,
        lambda v: current.accounts.link(provider.id, v, on_request=_checking(provider)),
    )
    if as_json:
        echo_json(account.to_json())
    else:
        _confirm_linked(provider, account)


def _checking(provider: Provider) -> Callable[[], None]:
    """What to say when a check's first request leaves: not before, so input refused
    without a request is not announced as a check."""

    def checking() -> None:
        say(shown("Checking the key with {name}...", name=provider.name), err=True)

    return checking


def _check_and_store(
    provider: Provider,
    values: dict[str, str],
    interactive: bool,
    store: Callable[[dict[str, str]], Account],
) -> Account:
    """Check with the provider; in a terminal, re-ask the fields the provider found wrong."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return store(values)
        except (FieldError, ProviderUnavailable) as exc:
            # An unreachable provider blamed on a field (a tenant name that does not resolve:
            # mistyped, or no network) is worth asking again too.
            if not interactive or attempt == ATTEMPTS or exc.field is None:
                raise
            errors = exc.errors if isinstance(exc, FieldError) else {exc.field: exc.message}
            _ask_again(provider, values, errors, exc)
    raise AssertionError("unreachable")  # pragma: no cover


def _ask_again(
    provider: Provider, values: dict[str, str], errors: Mapping[str, str], exc: HubError
) -> None:
    """Ask again for each field in *errors*, saying why, and for what its old value supplied.

    What the new value supplies replaces what the old one did (the region of a tenant address
    typed again), so the two cannot disagree; a value the old one supplied and the new one
    does not (a bare tenant name typed over an address) is asked for, never kept unseen. A
    field supplied anew is not asked for after that.
    """
    settled: set[str] = set()
    for name, message in errors.items():
        if name in settled:
            continue
        say(shown("{message}", message=message, limit=LONG_LIMIT).styled(fg="red"), err=True)
        try:
            field = provider.field(name)
        except KeyError:
            raise exc from None
        old = values.get(name, "")
        before = provider.supplied(name, old) if old else {}
        values[name] = _prompt(field)
        after = provider.supplied(name, values[name])
        for target, value in after.items():
            if target in values and values[target] != value:
                values[target] = value
                _say_supplied(provider.field(target), value, field)
            settled.add(target)
        for target, value in before.items():
            if target not in after and values.get(target) == value and target not in settled:
                values[target] = _prompt(provider.field(target))
                settled.add(target)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (documented in docs/cli.md).")
@click.option(
    "--provider", "provider_id", metavar="PROVIDER", help="Only this provider's accounts."
)
@click.option(
    "--status", type=click.Choice([s.value for s in Status]), help="Only accounts in this status."
)
@click.pass_context
@reports_errors
def accounts(
    ctx: click.Context, as_json: bool, provider_id: str | None, status: str | None
) -> None:
    """List the linked accounts and their status."""
    if ctx.invoked_subcommand is not None:
        return
    no_core_dumps()  # the store's key is in memory once it is open
    # Read as printed, a batch at a time: a store of any size lists in the memory of a batch.
    found = state().store.iter_accounts(provider=provider_id, status=status)
    if as_json:
        # A store batch read is written in a few writes, not one per account.
        echo_json((account.to_json() for account in found), gather=_JSON_GATHER)
        return
    headers = ("ACCOUNT", "PROVIDER", "STATUS", "EXPIRES", "LINKED", "CHECKED")
    # The widths are measured on the first rows only (all of them in a listing that short);
    # a wider value further down pushes the rest of its own line, and no line is cut.
    first = list(itertools.islice(found, _MEASURED_ROWS))
    if not first:
        say(shown("No linked account. Link one with `hub link PROVIDER` (see `hub providers`)."))
        return
    rows = [[shown("{header}", header=header) for header in headers]]
    rows += [_account_cells(a) for a in first]
    widths = [max(row[i].width for row in rows) for i in range(len(headers))]
    say(*(_table_row(row, widths) for row in rows))
    for account in found:
        say(_table_row(_account_cells(account), widths))


#: How many rows `hub accounts` reads before it prints, to measure its columns.
_MEASURED_ROWS = 1000
#: How many accounts `hub accounts --json` writes at a time (the store reads 500).
_JSON_GATHER = 100


def _account_cells(a: Account) -> list[Shown]:
    return [
        shown("{id}  {label}", id=a.id, label=a.label),
        shown("{provider}", provider=a.provider_id),
        _status(a.status),
        shown("{when}", when=_when(a.expires_at, "never")),
        shown("{when}", when=_when(a.linked_at)),
        shown("{when}", when=_when(a.checked_at)),
    ]


@accounts.command()
@click.argument("account_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
@reports_errors
def show(account_id: str, as_json: bool) -> None:
    """Show one account as its provider describes it (never its key)."""
    no_core_dumps()
    current = state()
    account = current.store.get(account_id)
    if as_json:
        echo_json(account.to_json())
        return
    # A damaged row is not handed to its plugin: what it would describe cannot be read.
    display = None if account.status is Status.DAMAGED else current.hub.display(account)
    title = display.title if display else account.label
    display_rows = display.rows if display else ()
    lines = [shown("{title}", title=title).styled(bold=True)]
    if display and display.subtitle:
        lines.append(shown("{subtitle}", subtitle=display.subtitle))
    rows: list[tuple[Shown, object]] = [
        (shown("Account"), account.id),
        (shown("Status"), _status(account.status)),
        *((shown("{label}", label=label), value) for label, value in display_rows),
        (shown("Linked"), _when(account.linked_at)),
        (shown("Checked"), _when(account.checked_at)),
    ]
    if account.owner:
        name = f"{account.owner_name} ({account.owner})" if account.owner_name else account.owner
        rows.append((shown("For"), shown("{name}", name=name)))
    if account.last_error:
        rows.append((shown("Last error"), shown("{e}", e=account.last_error, limit=LONG_LIMIT)))
    if display and display.url:
        rows.append((shown("Open"), display.url))
    width = max(label.width for label, _ in rows)
    lines += [
        shown("  {label:<{width}}  {value}", label=label, width=width, value=value)
        for label, value in rows
    ]
    say(*lines)


@click.command()
@click.argument("account_id", metavar="ID")
@_link_options
@reports_errors
def relink(account_id: str, sets: tuple[str, ...], secret_stdin: bool, as_json: bool) -> None:
    """Give an account a new key; it must reach the same organisation, user or tenant."""
    no_core_dumps()
    current = state()
    account = current.store.get(account_id)
    provider = current.hub.provider(account.provider_id)
    interactive = current.interactive
    if interactive:
        line = shown("New key for {label} ({name})", label=account.label, name=provider.name)
        say(line.styled(bold=True), err=True)
    secret_fields = [field for field in provider.fields if field.secret]
    # A non-secret field keeps its stored value unless HUB_FIELD_<NAME> or --set (which wins)
    # gives another, as `hub link` takes them.
    from_env = {
        field.name: value
        for field in provider.fields
        if not field.secret and (value := os.environ.get(_env_name(field))) is not None
    }
    values = {
        **from_env,
        **_parse_sets(provider, sets),
        **gather(provider, secret_fields, (), secret_stdin, interactive),
    }
    updated = _check_and_store(
        provider,
        values,
        interactive,
        lambda v: current.accounts.relink(account.id, v, on_request=_checking(provider)),
    )
    if as_json:
        echo_json(updated.to_json())
    else:
        _confirm_linked(provider, updated)


@click.command()
@click.argument("account_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def unlink(account_id: str, yes: bool) -> None:
    """Forget an account and its key."""
    no_core_dumps()
    current = state()
    account = current.store.get(account_id)
    if not yes:
        if not current.interactive:
            raise click.UsageError("standard input is not a terminal: add --yes to confirm")
        question = shown(
            "Unlink {label} ({provider}, {id})?",
            label=account.label,
            provider=account.provider_id,
            id=account.id,
        )
        click.confirm(question.text, abort=True, err=True)
    current.accounts.unlink(account.id)
    say(
        shown(
            "Unlinked {label} ({id}). The key itself still works until you revoke it with the "
            "provider.",
            label=account.label,
            id=account.id,
        )
    )


def _table_row(cells: Sequence[Shown], widths: Sequence[int]) -> Shown:
    # The last column is not padded: no line ends in spaces.
    padded = [
        shown("{cell:<{width}}", cell=cell, width=width)
        for cell, width in zip(cells, widths, strict=True)
    ]
    return joined([*padded[:-1], cells[-1]], "  ")


def check_exit_code(checked: Sequence[Account] | CheckReport) -> int:
    """1 when a key was rejected or has expired, or an account is damaged, else 3 when a
    provider was unreachable."""
    if isinstance(checked, CheckReport):
        statuses = checked.statuses
    else:
        statuses = {account.status for account in checked}
    if statuses & {Status.INVALID, Status.DENIED, Status.EXPIRED, Status.DAMAGED}:
        return EXIT_REJECTED
    if Status.ERROR in statuses:
        return EXIT_UNREACHABLE
    return EXIT_OK


#: The options `hub check` and `hub worker` share.
concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(1, 500),
    default=20,
    show_default=True,
    help="How many checks run at once.",
)
lease_option = click.option(
    "--lease",
    default="5m",
    show_default=True,
    metavar="DURATION",
    help="How long a batch is held (30s, 5m): a killed checker's accounts return after it.",
)


@click.command()
@click.argument("account_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Check every account (the default).")
@concurrency_option
@click.option("--json", "as_json", is_flag=True, help="Print the checked accounts as JSON.")
@lease_option
@reports_errors
def check(
    account_ids: tuple[str, ...], check_all: bool, concurrency: int, as_json: bool, lease: str
) -> None:
    """Re-check linked keys live and flag expired or revoked ones.

    Without ids, every account is checked once, in leased batches shared with any other
    `hub check` or `hub worker` of the same store.
    """
    if account_ids and check_all:
        raise click.UsageError("give account ids or --all, not both")
    lease_for = lease_duration(lease)
    no_core_dumps()
    current = state()
    import asyncio  # only the checking commands run an event loop; --help need not load it

    if account_ids:
        # Each account once, however many of the ids (a full id, a prefix) name it.
        targets = {a.id: a for a in (current.store.get(i) for i in account_ids)}
        report = CheckReport()
        with _progress(len(targets)) as bar, _json_stream(as_json) as stream:

            def checked(account: Account) -> None:
                bar.update(1)
                report.add(account)
                if stream is not None:
                    stream.put(account.to_json())

            asyncio.run(
                current.accounts.check(list(targets), concurrency=concurrency, on_result=checked)
            )
    else:
        total = current.store.due_count()
        if not total:
            say(shown("No linked account to check."), err=as_json)
            if as_json:
                echo_json([])
            return
        accounts = current.accounts  # built before the collector freezes start-up
        collect_less()
        with _progress(total) as bar, _json_stream(as_json) as stream:

            def reported(account: Account) -> None:
                bar.update(1)
                if stream is not None:
                    stream.put(account.to_json())

            told: list[tuple[str, ...]] = []

            def waiting(providers: tuple[str, ...], wait: timedelta) -> None:
                # Once per set of providers: a budget refills many times a minute.
                if providers and providers not in told:
                    told.append(providers)
                    bar.interrupt()  # the bar's line is not the message's
                    say(
                        shown(
                            "Waiting for {names}: its check budget or a pause after rate "
                            "limits holds the rest back (`hub limits` shows them).",
                            names=", ".join(providers),
                        ),
                        err=True,
                    )

            # The run counts what it reports: the report reads its counts, not a copy of them.
            report = CheckReport(
                asyncio.run(
                    accounts.check_all(
                        concurrency=concurrency,
                        lease_for=lease_for,
                        on_result=reported,
                        on_wait=waiting,
                    )
                )
            )
    # With --json, standard output holds the document alone: the summary goes to stderr.
    say(*report.lines(), err=as_json)
    code = check_exit_code(report)
    if code:
        sys.exit(code)


def lease_duration(text: str) -> timedelta:
    """``--lease``'s value, or a usage error (exit 2)."""
    from hub_core.cli.links import parse_duration

    try:
        return parse_duration(text, what="a lease lasts", at_most=1)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lease") from None


#: Seconds between two drawings of the progress bar. click draws it at every step, and on a
#: terminal each drawing is a write: about 12 µs per account checked, a few per cent of a check.
PROGRESS_EVERY = 0.1


class Progress:
    """A click progress bar told every step, drawn at most every `PROGRESS_EVERY` seconds
    and once more at the end; with no bar (None: not a terminal), nothing is drawn."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._steps = 0
        self._drawn = time.monotonic()

    def update(self, steps: int) -> None:
        """*steps* more done; drawn when the last drawing is old enough."""
        self._steps += steps
        if self._bar is not None and time.monotonic() - self._drawn >= PROGRESS_EVERY:
            self.draw()

    def interrupt(self) -> None:
        """Start a new line for a message, when a bar is drawn on this one."""
        if self._bar is not None:
            self.draw()
            say(shown(""), err=True)

    def draw(self) -> None:
        """Draw the steps done since the last drawing, now."""
        if self._bar is None:
            return
        if self._steps:
            self._bar.update(self._steps)
            self._steps = 0
        self._drawn = time.monotonic()


@contextlib.contextmanager
def _progress(length: int) -> Iterator[Progress]:
    if not sys.stderr.isatty():
        # No bar off a terminal: click would still write its label, and cron mails whatever
        # a run writes, so a run where every key works must write nothing there.
        yield Progress(None)
        return
    with click.progressbar(length=length, label="Checking", file=sys.stderr, show_pos=True) as bar:
        progress = Progress(bar)
        try:
            yield progress
        finally:
            progress.draw()


class CheckReport:
    """What `hub check` says at the end, read from the run's counts (`accounts.CheckRun`):
    counts by status, and each account not active (the first `accounts.FLAGGED_KEPT`; the
    others are counted, "and K more", so memory stays flat however many a run reports)."""

    def __init__(self, run: CheckRun | None = None) -> None:
        from hub_core.accounts import CheckRun

        self.run = CheckRun() if run is None else run

    def add(self, account: Account) -> None:
        """Count *account*; keep it for the listing when it is not active."""
        self.run.count(account)

    @property
    def statuses(self) -> set[Status]:
        """The statuses seen, those a 429 left standing included (an account it left invalid
        is still one, for the exit code)."""
        return set(self.run.statuses) | self.run.standing

    def lines(self) -> list[Shown]:
        """The summary line, then one line per account that is not active."""
        n = self.run.checked
        summary = joined(
            (
                shown("{n} {status}", n=count, status=_status(s))
                for s, count in sorted(self.run.statuses.items())
            ),
            ", ",
        )
        lines = [
            shown("Checked {n} account{s}: {summary}.", n=n, s="s" * (n != 1), summary=summary)
            if n
            else shown("Checked no account.")
        ]
        lines += [
            shown(
                "  {id}  {label}: {status} - {reason}",
                id=account.id,
                label=shown("{label}", label=account.label),
                status=_status(account.status),
                reason=account.last_error or _expiry(account),
                limit=LONG_LIMIT,
            )
            for account in self.run.flagged
        ]
        if self.run.more_flagged:
            lines.append(
                shown(
                    "  and {n} more not active: `hub accounts --status STATUS` lists them.",
                    n=self.run.more_flagged,
                )
            )
        if self.run.limited:
            n = sum(self.run.limited.values())
            lines.append(
                shown(
                    "Not checked now: {n} account{s} of {names}, which asked hub to slow down "
                    "(HTTP 429); {their} verdict{s} stand{v}, and {they} {are} due again after its "
                    "Retry-After.",
                    n=n,
                    s="s" * (n != 1),
                    v="" if n != 1 else "s",
                    their="their" if n != 1 else "its",
                    they="they" if n != 1 else "it",
                    are="are" if n != 1 else "is",
                    names=", ".join(sorted(self.run.limited)),
                )
            )
        if self.run.paused and self.run.paused_until is not None:
            lines.append(
                shown(
                    "Not checked now: the accounts of {names}, paused after rate limits until "
                    "{until} (`hub worker` checks them then; `hub limits resume` ends a pause).",
                    names=", ".join(self.run.paused),
                    until=self.run.paused_until.astimezone(UTC).strftime("%H:%M:%S UTC"),
                )
            )
        return lines


@contextlib.contextmanager
def _json_stream(wanted: bool) -> Iterator[queue.Queue[object] | None]:
    """A queue whose items `echo_json` writes as one JSON list while the check runs (on a
    thread of its own: the check's loop never waits on the terminal). Closed on the way out,
    Ctrl-C included, so the list is always whole."""
    if not wanted:
        yield None
        return
    items: queue.Queue[object] = queue.Queue()
    end = object()

    def write() -> None:
        try:
            echo_json(iter(items.get, end))
        except BrokenPipeError:
            # The reader went away (`| head`): the run goes on, its verdicts recorded, with
            # nothing more written; stdout's last flush as hub exits must not fail either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            for _ in iter(items.get, end):
                pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield items
    finally:
        items.put(end)
        writer.join()


COMMANDS = [link, accounts, relink, unlink, check]
