"""The ``hub`` command: a thin layer over `hub_core.Hub`.

Commands parse, call the library, print. Errors become exit codes: 0 ok, 1 a key was rejected
or an account is not active, 2 usage or input error, 3 provider unreachable.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

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
    from hub_core.store import Store

__all__ = ["EXIT_INPUT", "EXIT_OK", "EXIT_REJECTED", "EXIT_UNREACHABLE", "State", "main"]

EXIT_OK, EXIT_REJECTED, EXIT_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3

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


class HubCommandError(click.ClickException):
    """A `HubError` shown to the person, with its exit code."""

    def __init__(self, error: HubError) -> None:
        super().__init__(str(error))
        self.error = error
        self.exit_code = exit_code(error)  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        error = self.error
        if isinstance(error, FieldError) and len(error.errors) > 1:
            click.secho("Error: some values are not right:", fg="red", err=True)
            for name, message in error.errors.items():
                click.echo(f"  {name}: {message}", err=True)
        else:
            click.secho(f"Error: {error}", fg="red", err=True)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a `HubError` raised by a command into a clean message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HubError as exc:
            raise HubCommandError(exc) from None

    return wrapper


class State:
    """What one invocation works with: a Hub and a Store, each built on first use.

    A host app or a test passes its own: ``main(obj=State(hub=..., store=...))``.
    """

    def __init__(
        self, hub: Hub | None = None, store: Store | None = None, interactive: bool | None = None
    ) -> None:
        self._hub = hub
        self._store = store
        self._interactive = interactive

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
    def store(self) -> Store:
        """The account store at ``HUB_HOME`` or the user data directory."""
        if self._store is None:
            from hub_core.store import Store

            self._store = Store()
        return self._store

    @property
    def accounts(self) -> Accounts:
        """Linked accounts over this state's hub and store."""
        from hub_core.accounts import Accounts

        return Accounts(self.hub, self.store)


def state() -> State:
    """The `State` of the running command."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def current_hub() -> Hub:
    """The Hub of the running command."""
    return state().hub


def echo_json(data: object) -> None:
    """Print *data* as the one JSON document of a ``--json`` command."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub-core", prog_name="hub")
def main() -> None:
    """Link SaaS accounts by API key and check every key live with its provider."""


def _register() -> None:
    from hub_core.cli import accounts, catalog

    for command in (*catalog.COMMANDS, *accounts.COMMANDS):
        main.add_command(command)


_register()
