"""The ``hub`` command: a thin layer over `hub_core.Hub`.

Commands parse, call the library, print. Errors become exit codes: 0 ok, 1 a key was rejected
or an account is not active, 2 usage or input error, 3 provider unreachable.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from hub_core.errors import (
    FieldError,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    UnknownProvider,
)

if TYPE_CHECKING:
    from hub_core.hub import Hub

__all__ = ["EXIT_INPUT", "EXIT_OK", "EXIT_REJECTED", "EXIT_UNREACHABLE", "main"]

EXIT_OK, EXIT_REJECTED, EXIT_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3

P = ParamSpec("P")
R = TypeVar("R")


def exit_code(error: HubError) -> int:
    """The exit code for an error that ended a command."""
    if isinstance(error, FieldError | UnknownProvider):
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


def current_hub() -> Hub:
    """The Hub this invocation works with.

    ``main(obj=hub)`` (a host app, a test) supplies one; otherwise it is built from every
    installed plugin, filtered by ``HUB_PLUGINS`` / ``HUB_DISABLE_PLUGINS``.
    """
    from hub_core.hub import Hub

    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Hub):
        root.obj = Hub()
    return root.obj


def echo_json(data: object) -> None:
    """Print *data* as the one JSON document of a ``--json`` command."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hub-core", prog_name="hub")
def main() -> None:
    """Link SaaS accounts by API key and check every key live with its provider."""


def _register() -> None:
    from hub_core.cli import catalog

    for command in catalog.COMMANDS:
        main.add_command(command)


_register()
