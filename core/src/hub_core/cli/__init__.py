"""The ``hub`` command: a thin layer over `hub_core.Hub`.

Commands parse, call the library, print. Errors become exit codes: 0 ok, 1 a key was rejected
or an account is not active, 2 usage or input error, 3 provider unreachable, 130 Ctrl-C.

What a command prints to a person is built by `shown` from a template of hub's own words and
values that are made inert (`hub_core.display_text`): a provider's name or error message cannot
move the cursor, retitle the window or reorder the line. `say` prints only `Shown` text, so
an output that skips `shown` does not type-check. ``--json`` goes through `echo_json`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from hub_core.display_text import LIMIT, LONG_LIMIT, columns, inert
from hub_core.errors import (
    ConfigurationError,
    FieldError,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    StoreError,
    UnexpectedResponse,
    UnknownProvider,
)

if TYPE_CHECKING:
    from hub_core.accounts import Accounts
    from hub_core.hub import Hub
    from hub_core.store_protocol import AccountStore
    from hub_core.webhooks import Outbox

__all__ = [
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "Shown",
    "State",
    "joined",
    "main",
    "say",
    "shown",
]

EXIT_OK, EXIT_REJECTED, EXIT_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3
#: How long a command may spend delivering webhooks as it ends (`State.finish`).
WEBHOOK_DELIVERY_SECONDS = 5.0
#: Ctrl-C: 128 + SIGINT, as shells report a command a signal ended.
EXIT_INTERRUPTED = 130

P = ParamSpec("P")
R = TypeVar("R")


def exit_code(error: HubError) -> int:
    """The exit code for an error that ended a command.

    Input and set-up errors are 2: a bad value, an unknown provider, a `ConfigurationError`
    (an unusable ``SSL_CERT_FILE`` or ``HTTPS_PROXY``) and every `StoreError` (an account id
    that is not there or matches several, a store key that is missing, empty or wrong). A
    provider out of reach is 3, and so is a proxy out of reach. A rejected key, and anything
    else, is 1.
    """
    if isinstance(error, FieldError | UnknownProvider | StoreError | ConfigurationError):
        return EXIT_INPUT
    if isinstance(error, ProviderUnavailable | RateLimited | UnexpectedResponse):
        return EXIT_UNREACHABLE
    if isinstance(error, InvalidCredentials | PermissionDenied):
        return EXIT_REJECTED
    return EXIT_REJECTED


def no_core_dumps() -> None:
    """Make sure this process never writes a core dump: it is about to hold secrets.

    A crash would otherwise write the process's memory (the key being linked, the decrypted
    keys of a check, the store's key) to ``./core`` or the system's crash collector. When
    ``hub`` is the program, both limits go to 0, so nothing in the process can raise them
    again. When a host runs the commands in its own process (``main(...)`` from Python, as
    tests do), only the soft limit goes to 0, which is what stops a dump: the hard limit is
    the host's, and without privileges it could never be raised back. Where the limit cannot
    be set (Windows, a sandbox that forbids it) nothing changes.
    """
    import contextlib

    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    context = click.get_current_context(silent=True)
    if context is None:  # not a command: a host's own use of State, its limits its own
        return
    program = context.find_root().info_name == "hub"
    with contextlib.suppress(ValueError, OSError):  # refused by the platform: nothing to do
        hard = 0 if program else resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


#: A format spec that only aligns: ``<12``, ``>6``, ``^8``, ``12``.
_ALIGNED = re.compile(r"([<>^]?)(\d+)")


class Shown:
    """Text fit for a terminal: hub's own words, untrusted values already made inert.

    Made by `shown`, printed by `say`, and put as it is into another `shown` line. ``text``
    may hold hub's own colours; ``plain`` is the same without them, for widths.
    """

    __slots__ = ("plain", "text")

    def __init__(self, plain: str, text: str | None = None) -> None:
        self.plain = plain
        self.text = plain if text is None else text

    def styled(self, **styles: Any) -> Shown:
        """The same text in click's *styles* (``fg="red"``, ``bold=True``)."""
        return Shown(self.plain, click.style(self.text, **styles))

    @property
    def width(self) -> int:
        """The terminal columns it takes (a wide character two; colour codes none)."""
        return columns(self.plain)

    def __format__(self, spec: str) -> str:
        # Pad by the columns on the screen: colour codes take none, a wide character two.
        aligned = _ALIGNED.fullmatch(spec)
        if aligned is None:
            return format(self.plain, spec).replace(self.plain, self.text, 1)
        pad = max(0, int(aligned.group(2)) - self.width)
        left = {"": 0, "<": 0, ">": pad, "^": pad // 2}[aligned.group(1)]
        return " " * left + self.text + " " * (pad - left)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Shown({self.plain!r})"


def shown(template: str, /, *, limit: int = LIMIT, **values: object) -> Shown:
    """*template* (hub's words, ``str.format`` syntax) filled with *values* made inert.

    A `Shown` value goes in as it is and a number as formatted; anything else, whoever wrote
    it, is made inert and clipped to *limit* characters first.
    """
    return Shown(template.format_map({name: _fit(v, limit) for name, v in values.items()}))


def _fit(value: object, limit: int) -> object:
    # Exact types: a subclass from a plugin could format itself into anything.
    if type(value) in (Shown, int, float):
        return value
    return inert(value, limit=limit)


def joined(parts: Iterable[Shown], separator: str = "") -> Shown:
    """*parts* joined by *separator* (hub's own), colours kept."""
    items = list(parts)
    return Shown(
        separator.join(part.plain for part in items), separator.join(part.text for part in items)
    )


def say(*lines: Shown, err: bool = False) -> None:
    """Print *lines* in one write (with many lines, a flushed write per line shows)."""
    click.echo("\n".join(line.text for line in lines), err=err)


class HubCommandError(click.ClickException):
    """A `HubError` shown to the person, with its exit code."""

    def __init__(self, error: HubError) -> None:
        super().__init__(str(error))
        self.error = error
        self.exit_code = exit_code(error)  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        error = self.error
        if isinstance(error, FieldError) and len(error.errors) > 1:
            say(
                shown("Error: some values are not right:").styled(fg="red"),
                *(
                    shown("  {name}: {message}", name=name, message=message, limit=LONG_LIMIT)
                    for name, message in error.errors.items()
                ),
                err=True,
            )
        else:
            say(
                shown("Error: {error}", error=str(error), limit=LONG_LIMIT).styled(fg="red"),
                err=True,
            )


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a `HubError` raised by a command into a clean message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HubError as exc:
            raise HubCommandError(exc) from None
        except click.ClickException as exc:
            # A usage error may quote a plugin's field label or provider name; click prints
            # its message as it is.
            exc.message = inert(exc.message, limit=LONG_LIMIT)  # type: ignore[misc]
            raise

    return wrapper


class State:
    """What one invocation works with: a Hub and a Store, each built on first use.

    A host app or a test passes its own: ``main(obj=State(hub=..., store=...))``.
    """

    def __init__(
        self,
        hub: Hub | None = None,
        store: AccountStore | None = None,
        interactive: bool | None = None,
    ) -> None:
        self._hub = hub
        self._store = store
        self._interactive = interactive
        self._outbox: Outbox | None = None

    @property
    def interactive(self) -> bool:
        """Whether to prompt: standard input is a terminal (never wait on a pipe)."""
        if self._interactive is None:
            self._interactive = sys.stdin is not None and sys.stdin.isatty()
        return self._interactive

    @property
    def hub(self) -> Hub:
        """Every installed plugin, filtered by ``HUB_PLUGINS`` / ``HUB_DISABLE_PLUGINS``."""
        if self._hub is None:
            from hub_core.hub import Hub

            self._hub = Hub()
        return self._hub

    @property
    def store(self) -> AccountStore:
        """The account store: ``HUB_DATABASE_URL`` (a ``postgresql://`` URL selects PostgreSQL,
        anything else is a SQLite file), else ``hub.db`` at ``HUB_HOME`` or the user data
        directory."""
        # A store holds its key, and soon decrypted ones: the command that asks for it (a
        # store given ready made included) writes no core dump from here on.
        no_core_dumps()
        if self._store is None:
            from hub_core.store import open_store

            self._store = open_store()
        return self._store

    @property
    def accounts(self) -> Accounts:
        """Linked accounts over this state's hub and store."""
        from hub_core.accounts import Accounts

        outbox = self.outbox
        return Accounts(
            self.hub, self.store, via="cli", on_event=outbox.on_event if outbox else None
        )

    @property
    def outbox(self) -> Outbox | None:
        """The webhook outbox when ``HUB_WEBHOOK_URL`` is set (`hub_core.webhooks`), else None.

        A URL hub refuses, or a missing ``HUB_WEBHOOK_SECRET``, is a `ConfigurationError`
        (exit 2) before anything changes. What it holds is delivered as the command ends
        (`finish`).
        """
        if self._outbox is None and os.environ.get("HUB_WEBHOOK_URL", "").strip():
            from hub_core.webhooks import Outbox, WebhookConfig

            config = WebhookConfig.from_env()  # checked before the store is opened
            if config is not None:
                self._outbox = Outbox(self.store, config)
        return self._outbox

    def finish(self, *, interrupted: bool = False) -> None:
        """As the command ends: deliver the webhooks that are due, for a short bounded time.

        What is not delivered waits in the outbox for the next process; one calm line on
        standard error says so, and the command's own outcome and exit code never change.
        After Ctrl-C nothing is sent: the person asked to stop.
        """
        outbox, self._outbox = self._outbox, None
        if outbox is None:
            return
        try:
            if not interrupted:
                report = outbox.deliver(timeout=WEBHOOK_DELIVERY_SECONDS)
                if report.pending:
                    say(
                        shown(
                            "Webhooks: {n} event{s} not delivered yet{why}; {they} in the outbox "
                            "for the next hub command (or `hub webhooks deliver`).",
                            n=report.pending,
                            s="s" * (report.pending != 1),
                            why=shown(" (last: {error})", error=report.last_error)
                            if report.last_error
                            else shown(""),
                            they="they wait" if report.pending != 1 else "it waits",
                        ),
                        err=True,
                    )
        except (Exception, KeyboardInterrupt) as exc:
            say(
                shown(
                    "Webhooks: not delivered now ({kind}); the events wait in the outbox.",
                    kind=type(exc).__name__,
                ),
                err=True,
            )
        finally:
            outbox.close()


def state() -> State:
    """The `State` of the running command."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def current_hub() -> Hub:
    """The Hub of the running command."""
    return state().hub


def json_time(value: datetime | None) -> str | None:
    """*value* as every ``--json`` writes a time: ISO 8601 in UTC with ``Z`` (None: null),
    as `Account.to_json` does."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def echo_json(data: object, *, gather: int = 1) -> None:
    """Print *data* as the one JSON document of a ``--json`` command (an iterator: as a
    list, each item written as it comes).

    Values are never altered, but the text is ASCII: every other character is a ``\\u``
    escape, so a C1 control or a bidi override in a provider's string is data to a JSON
    reader and nothing to a terminal, and a lone surrogate cannot fail the write. The text is
    exactly ``json.dumps(data, indent=2, ensure_ascii=True)``'s. With *gather*, an iterator's
    items are written *gather* at a time (a listing read in batches); the default writes each
    one as it comes, for a stream whose items take their time (checks).
    """
    if not isinstance(data, Iterator):
        click.echo(_indented(data, "\n"))
        return
    # An iterator is the same list, written as it yields (gather items a write): a listing never
    # sits whole in memory, and a reader sees the same document.
    pieces: list[str] = []
    opening = "[\n  "
    for item in data:
        pieces += (opening, _indented(item, "\n  "))
        opening = ",\n  "
        if len(pieces) >= 2 * gather:
            click.echo("".join(pieces), nl=False)
            pieces.clear()
    pieces.append("[]" if opening == "[\n  " else "\n]")
    click.echo("".join(pieces))


#: json's encoder in C, without an indent: json.dumps never uses it with one (Python 3.11).
_ENCODE = json.JSONEncoder(ensure_ascii=True).encode
_STRING = json.encoder.encode_basestring_ascii


def _indented(value: object, newline: str) -> str:
    """*value* as ``json.dumps(value, indent=2, ensure_ascii=True)`` writes it, each new line
    starting with *newline* (a line break and the indent of where *value* is written).

    The same text, built from the C encoder's value by value: with an indent, json.dumps
    runs its encoder in Python, the most of a long listing's time.
    """
    if isinstance(value, str):
        return _STRING(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = newline + "  "
        members = []
        for key, item in value.items():
            if not isinstance(key, str):  # json's own rules (and errors) for such a key
                return json.dumps(value, indent=2, ensure_ascii=True).replace("\n", newline)
            # Text and null, most of a listing's values, without a call.
            if isinstance(item, str):
                members.append(_STRING(key) + ": " + _STRING(item))
            elif item is None:
                members.append(_STRING(key) + ": null")
            else:
                members.append(_STRING(key) + ": " + _indented(item, inner))
        return "{" + inner + ("," + inner).join(members) + newline + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        inner = newline + "  "
        return "[" + inner + ("," + inner).join(_indented(v, inner) for v in value) + newline + "]"
    # Numbers and booleans are the same text at any indent; anything else is json's error.
    return _ENCODE(value)


class _HubGroup(click.Group):
    """The ``hub`` group: Ctrl-C ends any command with a short line and exit code 130.

    A plugin's own KeyboardInterrupt never gets here: it is that plugin's failure
    (`hub_core.plugins.is_interrupt`). click would print "Aborted!" and exit 1, which a
    script cannot tell from a rejected key.
    """

    def invoke(self, ctx: click.Context) -> Any:
        interrupted = False
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted = True
            say(shown("\nInterrupted."), err=True)  # a new line first: the terminal's ^C
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        finally:
            # Whatever the command's outcome (an error, sys.exit(1)): its events were stored.
            if isinstance(ctx.obj, State):
                ctx.obj.finish(interrupted=interrupted)


@click.group(cls=_HubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub-core", prog_name="hub")
def main() -> None:
    """Link SaaS accounts by API key and check every key live with its provider."""


def _register() -> None:
    from hub_core.cli import accounts, catalog, db, keys, limits, links, serve, webhooks, worker

    for command in (
        *catalog.COMMANDS,
        *accounts.COMMANDS,
        *serve.COMMANDS,
        *links.COMMANDS,
        *webhooks.COMMANDS,
        *worker.COMMANDS,
        *keys.COMMANDS,
        *limits.COMMANDS,
        *db.COMMANDS,
    ):
        main.add_command(command)


_register()
