"""Text from a hostile provider or plugin reaches the terminal inert, through every command.

One plugin puts a hostile string in everything it controls: its provider's name, field labels,
help, choices and guide, the label, identity and details of what a key reaches, the account
display, every error message, and (through a failing check) the stored ``last_error``. Every
command that prints any of it is run with every class of hostile string, with and without
colour; the output may hold printable characters, line ends and, with colour on, only the
SGR colour codes hub writes itself.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core import (
    AccountDisplay,
    Field,
    FieldError,
    Guide,
    Hub,
    InvalidCredentials,
    Policy,
    Provider,
    ProviderUnavailable,
    Section,
    Step,
    Verified,
    hookimpl,
)
from hub_core.cli import State, main
from hub_core.display_text import LIMIT, LONG_LIMIT, inert, unsafe
from hub_core.hookspecs import Flow
from hub_core.store import Store

from .test_display_text import HOSTILE

HOSTILE = {**HOSTILE, "long": "L" * 10_000}
# What hub itself writes with colour on: SGR sequences only.
SGR = re.compile(r"\x1b\[[0-9;]*m")


class Evil:
    """A plugin whose every string holds *text*; what its flow does depends on the key."""

    def __init__(self, text: str) -> None:
        self.text = text
        # The store cannot write a lone surrogate yet (sqlite3 encodes UTF-8 strictly): what
        # the account keeps gets the escape spelled out instead.
        self.kept = text.encode("utf-8", "backslashreplace").decode()
        self.down = False

    def say(self, words: str) -> str:
        return f"{words} {self.text} end"

    def keep(self, words: str) -> str:
        return f"{words} {self.kept} end"

    @hookimpl
    def hub_providers(self) -> list[Provider]:
        say = self.say
        return [
            Provider(
                id="evil",
                name=say("Evil"),
                fields=[
                    Field("api_key", say("Key"), kind="secret", help=say("Help")),
                    Field(
                        "region",
                        say("Region"),
                        kind="choice",
                        choices=[("us", say("Choice"))],
                        default="us",
                    ),
                ],
                guide=Guide(
                    warning=say("Warning"),
                    sections=[
                        Section(
                            say("Section"), say("Content"), steps=[Step(say("Step"), say("Do"))]
                        )
                    ],
                ),
                hosts=["api.evil.test"],
                docs_url=say("https://docs.evil.test/"),
            )
        ]

    @hookimpl
    def hub_validate_credentials(self, provider: Provider, credentials: Any) -> Flow | None:
        return self.flow(credentials["api_key"]) if provider.id == "evil" else None

    def flow(self, key: str) -> Flow:
        yield httpx.Request("GET", "https://api.evil.test/me")
        if self.down:
            raise ProviderUnavailable(self.keep("Down"))
        if key == "bad":
            raise InvalidCredentials(self.say("Rejected"), field="api_key")
        if key == "fields":
            raise FieldError.many({"api_key": self.say("Wrong"), "region": self.say("Also")})
        return Verified(
            identity=self.keep("org:"), label=self.keep("Org"), details={"role": self.say("Role")}
        )

    @hookimpl
    def hub_account_display(self, provider: Provider, account: Any) -> AccountDisplay:
        say = self.say
        return AccountDisplay(
            title=say("Title"),
            subtitle=say("Subtitle"),
            rows=[(say("Row"), say("Value")), ("Role", account.details.get("role"))],
            url=say("https://evil.test/"),
        )


class Broken:
    """A plugin that fails to start with a hostile message."""

    def __init__(self, text: str) -> None:
        self.text = text

    @hookimpl
    def hub_providers(self) -> list[Provider]:
        raise RuntimeError(f"Boom {self.text} end")


class Session:
    """`hub` over the Evil plugin and a store in a temp dir, one linked account."""

    def __init__(self, tmp_path: Path, text: str) -> None:
        self.plugin = Evil(text)
        self.hub = Hub(
            plugins=[self.plugin, Broken(text)],
            load_entrypoints=False,
            policy=Policy(backoff=0),
            transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        )
        self.path = tmp_path / "hub.db"
        self.key = Fernet.generate_key()
        self.link()

    def link(self) -> None:
        linked = self.run("link", "evil", "--json", env={"HUB_FIELD_API_KEY": "good"})
        assert linked.exit_code == 0, linked.output
        self.account: dict[str, Any] = json.loads(linked.stdout)

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        interactive: bool = False,
        color: bool = False,
    ) -> Result:
        store = Store(self.path, secret_key=self.key)
        try:
            state = State(hub=self.hub, store=store, interactive=interactive)
            return CliRunner().invoke(
                main, list(args), obj=state, env=env, input=input, color=color
            )
        finally:
            store.close()


def key(value: str) -> dict[str, str]:
    return {"env": {"HUB_FIELD_API_KEY": value}}


# Each command that prints provider or plugin text, as (arguments, options, exit code); "ID"
# is the linked account; "prepare" sets the session up before each run.
def _down(session: Session) -> None:
    session.plugin.down = True


def _linked(session: Session) -> None:
    session.link()


COMMANDS: dict[str, tuple[tuple[str, ...], dict[str, Any], int]] = {
    "providers": (("providers",), {}, 0),
    "plugins": (("plugins",), {}, 0),
    "fields": (("fields", "evil"), {}, 0),
    "guide": (("guide", "evil"), {}, 0),
    "link": (("link", "evil"), key("good"), 0),
    "link-rejected": (("link", "evil"), key("bad"), 1),
    "link-fields": (("link", "evil"), key("fields"), 2),
    "link-prompted": (
        ("link", "evil"),
        {"input": "fields\nus\ngood\nus\n", "interactive": True},
        0,
    ),
    "link-usage": (("link", "evil", "--set", "nope=1"), {}, 2),
    "accounts": (("accounts",), {}, 0),
    "accounts-show": (("accounts", "show", "ID"), {}, 0),
    "check-down": (("check",), {"prepare": _down}, 3),
    "relink": (("relink", "ID"), key("good"), 0),
    "relink-rejected": (("relink", "ID"), key("bad"), 1),
    "relink-prompted": (("relink", "ID"), {"input": "good\n", "interactive": True}, 0),
    "unlink": (("unlink", "ID", "--yes"), {"prepare": _linked}, 0),
    "unlink-confirmed": (
        ("unlink", "ID"),
        {"input": "y\n", "interactive": True, "prepare": _linked},
        0,
    ),
}


@pytest.fixture(params=list(HOSTILE), ids=list(HOSTILE))
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    session = Session(tmp_path, HOSTILE[request.param])
    yield session
    session.hub.close()


def outputs(session: Session, command: str) -> Callable[[bool], dict[str, str]]:
    """A runner of *command*: its standard output and error, the account id written ID."""
    args, options, code = COMMANDS[command]
    options = dict(options)
    prepare = options.pop("prepare", None)

    def run(color: bool) -> dict[str, str]:
        if prepare is not None:
            prepare(session)
        given = (session.account["id"] if arg == "ID" else arg for arg in args)
        result = session.run(*given, color=color, **options)
        assert result.exit_code == code, (result.output, result.exception)
        return {
            name: getattr(result, name).replace(session.account["id"], "ID")
            for name in ("stdout", "stderr")
        }

    return run


def assert_inert(text: str) -> None:
    bad = {char for char in text if unsafe(char) or (char.isspace() and char not in " \n")}
    assert not bad, sorted(map(hex, map(ord, bad)))
    # A line holds a few values, none longer than LONG_LIMIT.
    longest = max(map(len, text.splitlines()), default=0)
    assert longest <= LONG_LIMIT + 2 * LIMIT, longest


@pytest.mark.parametrize("command", list(COMMANDS))
def test_provider_text_reaches_the_terminal_inert(session: Session, command: str) -> None:
    run = outputs(session, command)
    plain, coloured = run(False), run(True)
    for name, text in plain.items():
        assert_inert(text)
        assert "\x1b" not in text
        # With colour on, the only difference is hub's own SGR codes.
        assert SGR.sub("", coloured[name]) == text
    # A person sees what the provider sent, escaped, not nothing.
    assert inert(session.plugin.text)[:8] in plain["stdout"] + plain["stderr"]


@pytest.mark.parametrize("command", ["link", "accounts", "accounts-show", "guide"])
def test_hub_still_colours_its_own_words(session: Session, command: str) -> None:
    coloured = outputs(session, command)(True)
    assert SGR.search(coloured["stdout"])


def test_a_long_value_is_clipped_where_it_is_shown(tmp_path: Path) -> None:
    session = Session(tmp_path, "L" * 10_000)
    shown = session.run("accounts").stdout
    assert "L" * 300 not in shown
    assert "…" in shown


JSON_COMMANDS = {
    "providers": (("providers", "--json"), lambda data, s: data[0]["name"], "Evil"),
    "plugins": (("plugins", "--json"), lambda data, s: data[1]["error"], None),
    "accounts": (("accounts", "--json"), lambda data, s: data[0]["label"], "Org"),
    "show": (("accounts", "show", "ID", "--json"), lambda data, s: data["identity"], "org:"),
    "link": (("link", "evil", "--json"), lambda data, s: data["label"], "Org"),
}


@pytest.mark.parametrize("command", list(JSON_COMMANDS))
def test_json_is_ascii_and_gives_back_exactly_what_the_provider_sent(
    session: Session, command: str
) -> None:
    args, pick, words = JSON_COMMANDS[command]
    args = tuple(session.account["id"] if arg == "ID" else arg for arg in args)
    result = session.run(*args, env={"HUB_FIELD_API_KEY": "good"})
    assert result.exit_code == 0, result.output
    assert result.stdout.isascii()
    assert all(char.isprintable() or char == "\n" for char in result.stdout)
    value = pick(json.loads(result.stdout), session)
    text = session.plugin.kept if command in {"accounts", "show", "link"} else session.plugin.text
    if words is None:  # the broken plugin's error names what it raised, message and all
        assert f"Boom {text} end" in value
    else:
        assert value == f"{words} {text} end"


# --- structure: every output goes through shown / say / echo_json ------------------------------

CLI = Path(__import__("hub_core.cli", fromlist=["x"]).__file__).parent


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def _literal(node: ast.expr) -> bool:
    if isinstance(node, ast.IfExp):
        return _literal(node.body) and _literal(node.orelse)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


@pytest.mark.parametrize("module", sorted(CLI.glob("*.py")), ids=lambda path: path.name)
def test_the_cli_prints_only_through_its_inert_helpers(module: Path) -> None:
    tree = ast.parse(module.read_text())
    printers = {"click.echo", "click.secho", "print", "sys.stdout.write", "sys.stderr.write"}
    allowed = {"say", "echo_json"}  # the two helpers that print
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and function.name not in allowed:
            for name, call in _calls(function):
                assert name not in printers, f"{module.name}:{call.lineno} {name}"
                if name == "shown":
                    # The template is hub's own words; untrusted text goes in as a value.
                    assert _literal(call.args[0]), f"{module.name}:{call.lineno}"
                if name in {"click.prompt", "click.confirm"}:
                    assert ast.unparse(call.args[0]).endswith(".text"), call.lineno
