"""hub_core.cli: how an error that ends a command becomes its exit code (docs/cli.md)."""

from __future__ import annotations

import inspect

import click
import pytest

from hub_core import errors
from hub_core.cli import EXIT_INPUT, EXIT_REJECTED, EXIT_UNREACHABLE, HubCommandError, exit_code
from hub_core.errors import (
    AccountNotFound,
    AmbiguousAccount,
    ConfigurationError,
    FieldError,
    HubError,
    IdentityMismatch,
    InvalidCredentials,
    PermissionDenied,
    PluginError,
    ProviderUnavailable,
    RateLimited,
    StoreError,
    UnexpectedResponse,
    UnknownProvider,
)

# Every error class of hub_core.errors, one instance each, with the exit code docs/cli.md gives.
EXIT_CODES: dict[type[HubError], tuple[HubError, int]] = {
    HubError: (HubError("something failed"), EXIT_REJECTED),
    FieldError: (FieldError("api_key", "must not be empty"), EXIT_INPUT),
    UnknownProvider: (UnknownProvider("nope", ["acme"]), EXIT_INPUT),
    StoreError: (StoreError("the key does not match this database"), EXIT_INPUT),
    AccountNotFound: (AccountNotFound("deadbeef"), EXIT_INPUT),
    AmbiguousAccount: (AmbiguousAccount("ab", ["ab1", "ab2"]), EXIT_INPUT),
    errors.LinkUsed: (errors.LinkUsed("0123abcd", "unknown"), EXIT_INPUT),
    ConfigurationError: (ConfigurationError("HTTPS_PROXY", "not a proxy"), EXIT_INPUT),
    InvalidCredentials: (InvalidCredentials("the key was rejected"), EXIT_REJECTED),
    PermissionDenied: (PermissionDenied("the key lacks a role"), EXIT_REJECTED),
    IdentityMismatch: (IdentityMismatch("the key reaches another org"), EXIT_REJECTED),
    PluginError: (PluginError("the plugin broke", plugin="acme"), EXIT_REJECTED),
    ProviderUnavailable: (ProviderUnavailable("down", reason="connect"), EXIT_UNREACHABLE),
    RateLimited: (RateLimited("slow down", retry_after=3), EXIT_UNREACHABLE),
    UnexpectedResponse: (UnexpectedResponse("not JSON"), EXIT_UNREACHABLE),
}


def test_every_error_class_has_its_exit_code_pinned() -> None:
    classes = {
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, HubError)
    }
    assert classes == set(EXIT_CODES)


@pytest.mark.parametrize("cls", list(EXIT_CODES), ids=lambda cls: cls.__name__)
def test_each_error_class_ends_a_command_with_its_exit_code(cls: type[HubError]) -> None:
    error, code = EXIT_CODES[cls]
    assert type(error) is cls
    assert exit_code(error) == code
    assert HubCommandError(error).exit_code == code


def test_an_error_is_matched_by_its_class_not_its_code() -> None:
    class Renamed(StoreError):
        code = "something_else"

    class Impostor(HubError):
        code = "account_not_found"

    assert exit_code(Renamed("x")) == EXIT_INPUT
    assert exit_code(Impostor("x")) == EXIT_REJECTED


def test_a_command_error_is_a_click_exception() -> None:
    assert isinstance(HubCommandError(AccountNotFound("abc")), click.ClickException)
