"""`hub link`, `hub accounts`, `hub relink`, `hub unlink`, `hub check` through click's runner."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core import Hub, InvalidCredentials, Policy, Verified
from hub_core.cli import State, main
from hub_core.hookspecs import Flow
from hub_core.store import Store

from .test_cli_limits import _pause

CANARY = "hubcanary-cli-5b1e-SECRET"
KEYS = {  # key -> (status, organisation id)
    "good-key-1": (200, 7),
    "good-key-2": (200, 7),
    "other-org-key": (200, 8),
    CANARY: (200, 9),
}


def handler(request: httpx.Request) -> httpx.Response:
    key = request.headers["authorization"].removeprefix("Bearer ")
    if key == "down-key":
        return httpx.Response(503)
    status, org = KEYS.get(key, (401, 0))
    return httpx.Response(status, json={"id": org, "name": f"Org {org}"} if status == 200 else {})


def team_flow(credentials: Any) -> Flow:
    """Acme's flow, plus a team field that the provider can reject after the call."""
    response = yield httpx.Request(
        "GET",
        "https://api.acme.test/me",
        headers={"Authorization": f"Bearer {credentials['api_key']}"},
    )
    if response.status_code == 401:
        raise InvalidCredentials("Acme rejected the key", field="api_key")
    if response.status_code >= 500:
        from hub_core import ProviderUnavailable

        raise ProviderUnavailable("Acme is down")
    if credentials.get("team") == "ghost":
        from hub_core import FieldError

        raise FieldError("team", "Acme has no team 'ghost'")
    org = response.json()
    return Verified(f"org:{org['id']}", org["name"])


class Hubcli:
    """Invokes `hub` with an Acme hub over scripted responses and a store in a temp dir."""

    def __init__(self, tmp_path: Path, plugin: Any) -> None:
        self.path = tmp_path / "hub.db"
        self.key = Fernet.generate_key()
        self.hub = Hub(
            plugins=[plugin(team_flow)],
            load_entrypoints=False,
            policy=Policy(backoff=0),
            transport=httpx.MockTransport(handler),
        )
        self.outputs: list[str] = []

    def run(
        self,
        *args: str,
        input: str | bytes | IO[bytes] | None = None,
        interactive: bool = False,
        env: dict[str, str] | None = None,
    ) -> Result:
        store = Store(self.path, secret_key=self.key)
        try:
            state = State(hub=self.hub, store=store, interactive=interactive)
            result = CliRunner().invoke(main, list(args), obj=state, input=input, env=env)
        finally:
            store.close()
        self.outputs.append(result.output)
        return result

    def link(self, key: str, *extra: str) -> dict[str, Any]:
        result = self.run("link", "acme", "--json", *extra, env={"HUB_FIELD_API_KEY": key})
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.stdout)
        return data


@pytest.fixture
def cli(tmp_path: Path, acme_plugin: Any) -> Hubcli:
    return Hubcli(tmp_path, acme_plugin)


# --- link ---------------------------------------------------------------------------------------


def test_link_with_a_secret_from_the_environment_prints_the_account(cli: Hubcli) -> None:
    result = cli.run("link", "acme", "--set", "region=eu", env={"HUB_FIELD_API_KEY": "good-key-1"})
    assert result.exit_code == 0, result.output
    assert "Linked Org 7" in result.stdout
    assert "reaches   org:7" in result.stdout
    assert "expires   never / unknown" in result.stdout
    assert "Checking the key with Acme" in result.stderr


def test_link_json_is_the_documented_account_object(cli: Hubcli) -> None:
    data = cli.link("good-key-1", "--set", "team=ops")
    assert set(data) == {
        "id",
        "provider",
        "identity",
        "label",
        "status",
        "config",
        "linked_at",
        "checked_at",
        "expires_at",
        "last_error",
        "owner",
        "owner_name",
    }
    assert data["owner"] is None
    assert data["provider"] == "acme"
    assert data["status"] == "active"
    assert data["config"] == {"region": "us", "team": "ops"}
    assert data["linked_at"].endswith("Z")
    assert data["expires_at"] is None


def test_link_reads_secrets_from_stdin(cli: Hubcli) -> None:
    result = cli.run("link", "acme", "--secret-stdin", "--json", input="good-key-1\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["identity"] == "org:7"


#: The Acme API key field's max_length (the default), and what --secret-stdin reads at most.
MAX_KEY = 256
# The value in UTF-8 (up to four bytes a character) and a line ending of two bytes (\r\n).
READ_LIMIT = 4 * MAX_KEY + 2


@pytest.mark.parametrize(
    "line",
    [
        b"\xff\n",  # never valid in UTF-8
        b"good-key-1\x80\n",  # a continuation byte with no lead byte
        b"\xc3\x28-key\n",  # a lead byte followed by no continuation byte
        b"\xed\xa0\x80-key\n",  # an encoded surrogate
        b"\xf8\x88\x80\x80\x80\n",  # a five-byte sequence
        b"\xc0\xaf-overlong\n",  # an overlong "/"
        b"good-key-\xe2\x82",  # cut off inside a character, at the end of input
        b"latin-1 cl\xe9\n",
    ],
    ids=[
        "ff",
        "lone-continuation",
        "bad-continuation",
        "surrogate",
        "5-byte",
        "overlong",
        "truncated",
        "latin-1",
    ],
)
def test_a_secret_line_that_is_not_utf8_is_refused_and_nothing_is_stored(
    cli: Hubcli, line: bytes
) -> None:
    result = cli.run("link", "acme", "--secret-stdin", input=line)

    assert result.exit_code == 2, result.output
    assert "--secret-stdin: the line for API Key is not utf-8 text (byte " in result.stderr
    assert "nothing was stored" in result.stderr
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "Traceback" not in result.output
    assert cli.run("accounts", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize("length", [READ_LIMIT, READ_LIMIT + 1, 10_000, 5 * 1024 * 1024])
@pytest.mark.parametrize("ending", [b"", b"\n"])
def test_a_secret_line_too_long_is_refused_after_reading_at_most_the_limit(
    cli: Hubcli, length: int, ending: bytes
) -> None:
    stdin = io.BytesIO(b"k" * length + ending)

    result = cli.run("link", "acme", "--secret-stdin", input=stdin)

    assert result.exit_code == 2, result.output
    assert f"the line for API Key is too long (more than {MAX_KEY} characters)" in result.stderr
    assert "nothing was stored" in result.stderr
    assert stdin.tell() == READ_LIMIT  # the rest of standard input was never read
    assert cli.run("accounts", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
@pytest.mark.parametrize("length", [MAX_KEY - 1, MAX_KEY])
def test_a_secret_line_of_the_longest_allowed_length_reaches_the_provider(
    cli: Hubcli, length: int, ending: bytes
) -> None:
    result = cli.run("link", "acme", "--secret-stdin", input=b"k" * length + ending)

    # Not refused as too long: checked with the provider, which rejects this made-up key.
    assert result.exit_code == 1, result.output
    assert "too long" not in result.output


def test_a_secret_one_character_too_long_is_refused_by_the_field_check(cli: Hubcli) -> None:
    result = cli.run("link", "acme", "--secret-stdin", input=b"k" * (MAX_KEY + 1) + b"\n")
    assert result.exit_code == 2, result.output
    assert f"API Key is too long ({MAX_KEY + 1} characters, at most {MAX_KEY})" in result.stderr


def test_two_secret_lines_are_read_one_after_the_other(cli: Hubcli) -> None:
    first = cli.run("link", "acme", "--secret-stdin", "--json", input=b"good-key-1\ngood-key-2\n")
    assert first.exit_code == 0, first.output
    account = json.loads(first.stdout)["id"]
    again = cli.run("relink", account, "--secret-stdin", input=b"good-key-2\r\n")
    assert again.exit_code == 0, again.output


def test_a_secret_on_the_command_line_is_refused(cli: Hubcli) -> None:
    result = cli.run("link", "acme", "--set", "api_key=good-key-1")
    assert result.exit_code == 2
    assert "never taken from the command line" in result.output
    assert "HUB_FIELD_API_KEY or --secret-stdin" in result.output


def test_missing_values_without_a_terminal_are_a_usage_error_not_a_prompt(cli: Hubcli) -> None:
    result = cli.run("link", "acme")
    assert result.exit_code == 2
    assert "missing values, and standard input is not a terminal: API Key" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--set", "colour=blue"], "has no field 'colour'"), (["--set", "team"], "takes name=value")],
)
def test_bad_set_options_are_usage_errors(cli: Hubcli, args: list[str], message: str) -> None:
    result = cli.run("link", "acme", *args, env={"HUB_FIELD_API_KEY": "good-key-1"})
    assert result.exit_code == 2
    assert message in result.output


def test_a_rejected_key_exits_1_and_stores_nothing(cli: Hubcli) -> None:
    result = cli.run("link", "acme", env={"HUB_FIELD_API_KEY": "wrong-key"})
    assert result.exit_code == 1
    assert "Error: Acme rejected the key" in result.output
    assert json.loads(cli.run("accounts", "--json").stdout) == []


def test_invalid_values_exit_2_naming_each_field(cli: Hubcli) -> None:
    result = cli.run(
        "link",
        "acme",
        "--set",
        "region=mars",
        "--set",
        "team=x1",
        env={"HUB_FIELD_API_KEY": "good-key-1"},
    )
    assert result.exit_code == 2
    assert "region: Region must be one of: us, eu" in result.output
    assert "team: Team does not have the expected format" in result.output


def test_an_unreachable_provider_exits_3(cli: Hubcli) -> None:
    result = cli.run("link", "acme", env={"HUB_FIELD_API_KEY": "down-key"})
    assert result.exit_code == 3
    assert "Acme is down" in result.output


def test_the_prompt_asks_each_field_and_reasks_an_invalid_value(cli: Hubcli) -> None:
    # region: "mars" is refused and asked again; team: empty is fine (optional).
    result = cli.run("link", "acme", interactive=True, input="good-key-1\nmars\neu\n\n")
    assert result.exit_code == 0, result.output
    assert "Where to find these values: `hub guide acme`" in result.output
    assert "Region must be one of: us, eu" in result.output
    assert "united states" not in result.output.lower() or "United States" in result.output
    assert "Linked Org 7" in result.output
    assert "good-key-1" not in result.output  # the secret prompt does not echo


def test_a_field_the_provider_rejects_is_asked_again(cli: Hubcli) -> None:
    result = cli.run("link", "acme", interactive=True, input="good-key-1\nus\nghost\nops\n")
    assert result.exit_code == 0, result.output
    assert "Acme has no team 'ghost'" in result.output
    assert json.loads(cli.run("accounts", "--json").stdout)[0]["config"]["team"] == "ops"


def test_linking_the_same_identity_again_updates_the_account(cli: Hubcli) -> None:
    first = cli.link("good-key-1")
    second = cli.link("good-key-2")
    assert first["id"] == second["id"]
    assert len(json.loads(cli.run("accounts", "--json").stdout)) == 1


# --- accounts -----------------------------------------------------------------------------------


def test_accounts_lists_columns_and_filters(cli: Hubcli) -> None:
    cli.link("good-key-1")
    cli.link("other-org-key")
    result = cli.run("accounts")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ACCOUNT", "PROVIDER", "STATUS", "EXPIRES", "LINKED", "CHECKED"]
    assert len(lines) == 3
    assert all("acme" in line and "active" in line for line in lines[1:])
    assert json.loads(cli.run("accounts", "--json", "--provider", "nope").stdout) == []
    assert len(json.loads(cli.run("accounts", "--json", "--status", "active").stdout)) == 2
    assert cli.run("accounts", "--status", "bogus").exit_code == 2


def test_accounts_when_empty_says_how_to_link(cli: Hubcli) -> None:
    assert "No linked account" in cli.run("accounts").stdout


def test_accounts_show_uses_the_display_and_accepts_a_prefix(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    result = cli.run("accounts", "show", account["id"][:3])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Org 7"
    assert "Acme · org:7" in result.stdout
    assert f"Account  {account['id']}" in result.stdout
    shown = json.loads(cli.run("accounts", "show", account["id"], "--json").stdout)
    assert shown == {**account, "checked_at": shown["checked_at"]}


def test_an_unknown_account_id_is_a_usage_error(cli: Hubcli) -> None:
    result = cli.run("accounts", "show", "zzzzzzzz")
    assert result.exit_code == 2
    assert "no account" in result.output


# --- relink and unlink --------------------------------------------------------------------------


def test_relink_replaces_the_key_of_the_same_identity(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    result = cli.run("relink", account["id"], "--secret-stdin", input="good-key-2\n")
    assert result.exit_code == 0, result.output
    assert f"account   {account['id']}" in result.stdout


def test_relink_takes_other_fields_from_the_environment_and_set_wins(cli: Hubcli) -> None:
    account = cli.link("good-key-1", "--set", "team=ops")
    by_env = cli.run("relink", account["id"], "--json", env=_env("good-key-2", TEAM="qa"))
    assert json.loads(by_env.stdout)["config"]["team"] == "qa"
    both = cli.run(
        "relink", account["id"], "--json", "--set", "team=dev", env=_env("good-key-1", TEAM="qa")
    )
    assert json.loads(both.stdout)["config"]["team"] == "dev"
    kept = cli.run("relink", account["id"], "--json", env=_env("good-key-2"))
    assert json.loads(kept.stdout)["config"]["team"] == "dev"  # none given: the stored one


def _env(key: str, **fields: str) -> dict[str, str]:
    return {"HUB_FIELD_API_KEY": key, **{f"HUB_FIELD_{name}": v for name, v in fields.items()}}


def test_relink_refuses_a_key_of_another_identity(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    result = cli.run("relink", account["id"], env={"HUB_FIELD_API_KEY": "other-org-key"})
    assert result.exit_code == 1
    assert "reaches Org 8 (org:8), but account" in result.output
    assert "hub link acme" in result.output


def test_unlink_needs_yes_without_a_terminal_and_then_forgets(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    assert cli.run("unlink", account["id"]).exit_code == 2
    result = cli.run("unlink", account["id"], "--yes")
    assert result.exit_code == 0
    assert "still works until you revoke it" in result.stdout
    assert json.loads(cli.run("accounts", "--json").stdout) == []


def test_unlink_asks_in_a_terminal(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    assert cli.run("unlink", account["id"], interactive=True, input="n\n").exit_code == 1
    assert cli.run("unlink", account["id"], interactive=True, input="y\n").exit_code == 0


# --- check ----------------------------------------------------------------------------------


def test_check_all_re_verifies_and_summarises(cli: Hubcli) -> None:
    cli.link("good-key-1")
    result = cli.run("check", "--all")
    assert result.exit_code == 0, result.output
    assert "Checked 1 account: 1 active." in result.stdout


def test_check_flags_a_revoked_key_and_exits_1(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    del KEYS["good-key-1"]
    try:
        result = cli.run("check", account["id"], "--json")
    finally:
        KEYS["good-key-1"] = (200, 7)
    assert result.exit_code == 1
    [checked] = json.loads(result.stdout)
    assert checked["status"] == "invalid"
    assert checked["last_error"] == "Acme rejected the key"


def test_check_with_ids_and_all_is_a_usage_error(cli: Hubcli) -> None:
    assert cli.run("check", "abc", "--all").exit_code == 2


def test_check_with_no_account(cli: Hubcli) -> None:
    assert cli.run("check").stdout == "No linked account to check.\n"
    result = cli.run("check", "--json")  # still the one document, the message on stderr
    assert (json.loads(result.stdout), result.exit_code) == ([], 0)
    assert "No linked account to check." in result.stderr


def test_an_account_named_twice_is_checked_once(cli: Hubcli) -> None:
    account = cli.link("good-key-1")
    result = cli.run("check", account["id"], account["id"][:6], "--json")
    assert result.exit_code == 0, result.output
    assert [checked["id"] for checked in json.loads(result.stdout)] == [account["id"]]
    assert "Checked 1 account: 1 active." in result.stderr


def test_check_json_says_on_stderr_what_a_paused_provider_left_unchecked(cli: Hubcli) -> None:
    cli.link("good-key-1")
    with Store(cli.path, secret_key=cli.key) as store:  # paused by another checker's 429s
        _pause(store, "acme", datetime.now(UTC))
    result = cli.run("check", "--all", "--json")
    assert json.loads(result.stdout) == []
    assert "Not checked now: the accounts of acme, paused" in result.stderr


# --- secrets ----------------------------------------------------------------------------------


def test_the_canary_key_never_appears_in_output_or_the_database(cli: Hubcli) -> None:
    account = cli.link(CANARY)
    cli.run("accounts")
    cli.run("accounts", "--json")
    cli.run("accounts", "show", account["id"])
    cli.run("check", "--json")
    cli.run("relink", account["id"], "--secret-stdin", input=f"{CANARY}\n")
    assert all(CANARY not in output for output in cli.outputs)
    for path in cli.path.parent.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path


def test_check_report_lists_a_bounded_number_of_accounts_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from hub_core import accounts as accounts_module
    from hub_core.cli.accounts import CheckReport
    from hub_core.model import Account, Status

    # The report lists what the run kept: one limit, `accounts.FLAGGED_KEPT`.
    monkeypatch.setattr(accounts_module, "FLAGGED_KEPT", 2)
    report = CheckReport()
    for n in range(5):
        report.add(
            Account(
                id=f"{n:016x}",
                provider_id="acme",
                identity=f"org:{n}",
                label=f"Org {n}",
                status=Status.INVALID if n else Status.ACTIVE,
                config={},
                linked_at=datetime(2026, 1, 1, tzinfo=UTC),
                last_error="rejected",
            )
        )
    text = [click.unstyle(str(line)) for line in report.lines()]
    assert text[0] == "Checked 5 accounts: 1 active, 4 invalid."
    assert len(text) == 4  # the summary, two accounts, and the rest counted
    assert "and 2 more not active" in text[-1]


def test_a_secret_of_characters_that_take_several_bytes_is_read_whole(cli: Hubcli) -> None:
    # The limit counts characters: MAX_KEY of them, four bytes each in UTF-8, are one value.
    result = cli.run("link", "acme", "--secret-stdin", input=("𝕜" * MAX_KEY + "\n").encode())
    assert result.exit_code == 1, result.output  # checked with the provider, which refuses it
    assert "too long" not in result.output
