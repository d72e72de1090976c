"""``hub link-url``: print, list and withdraw one-time auth links."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from hub_core.cli import State, main
from hub_core.cli.links import parse_duration
from hub_core.web.security import LinkTokens

from .web_helpers import Web


@pytest.fixture
def hub(web: Any) -> Web:
    built: Web = web()
    return built


def run(hub: Web, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(
        main, list(args), obj=State(hub=hub.hub, store=hub.store), env=env or {}
    )


def test_a_printed_link_opens_in_the_web_hub(hub: Web) -> None:
    result = run(
        hub, "link-url", "acme", "--note", "Dana", "--base-url", "https://hub.example.invalid/"
    )
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith("https://hub.example.invalid/l/")
    token = url.rsplit("/", 1)[1]
    link_id = LinkTokens(hub.store.derive_key(LinkTokens.PURPOSE)).loads(token)
    assert link_id is not None
    assert "Dana" not in token  # the token carries only the random id
    assert hub.get(f"/l/{token}", client=hub.new_client()).status == 303


def test_the_base_url_comes_from_hub_base_url(hub: Web) -> None:
    result = run(hub, "link-url", "acme", env={"HUB_BASE_URL": "https://proxy.example.invalid"})
    assert result.stdout.startswith("https://proxy.example.invalid/l/")
    assert run(hub, "link-url", "acme").stdout.startswith("http://127.0.0.1:8765/l/")


@pytest.mark.parametrize("expires", ["31d", "721h", "0m", "soon", "7 days"])
def test_a_bad_or_too_long_expiry_is_a_usage_error(hub: Web, expires: str) -> None:
    result = run(hub, "link-url", "acme", "--expires", expires)
    assert result.exit_code == 2
    assert "--expires" in result.output
    assert hub.store.links(include_closed=True) == []


def test_durations() -> None:
    assert parse_duration("30m").total_seconds() == 1800
    assert parse_duration("12h").total_seconds() == 12 * 3600
    assert parse_duration("30d").days == 30


def test_list_and_revoke(hub: Web) -> None:
    run(hub, "link-url", "acme", "--note", "Dana")
    listed = json.loads(run(hub, "link-url", "--list", "--json").stdout)
    assert [(row["provider"], row["note"], row["used"], row["attempts"]) for row in listed] == [
        ("acme", "Dana", False, 0)
    ]
    link_id = listed[0]["id"]
    assert link_id in run(hub, "link-url", "--list").stdout
    revoked = run(hub, "link-url", "--revoke", link_id)
    assert revoked.exit_code == 0
    assert "Withdrew" in revoked.stdout
    assert json.loads(run(hub, "link-url", "--list", "--json").stdout) == []
    assert "No open links" in run(hub, "link-url", "--list").stdout
    assert run(hub, "link-url", "--revoke", "nope").exit_code == 2


def test_an_unknown_provider_makes_no_link(hub: Web) -> None:
    result = run(hub, "link-url", "nosuch")
    assert result.exit_code != 0
    assert hub.store.links(include_closed=True) == []


def test_a_link_for_an_owner_links_their_account(hub: Web) -> None:
    result = run(hub, "link-url", "acme", "--owner", "cust-9", "--owner-name", "Nine", "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert (made["owner"], made["owner_name"], made["kind"]) == ("cust-9", "Nine", "link")
    client = hub.new_client()
    page = hub.follow(hub.get(made["url"].split("8765", 1)[1], client=client), client=client)
    assert hub.submit(page, client=client, api_key="good", region="us").status == 303
    [account] = hub.store.accounts()
    assert (account.owner, account.owner_name) == ("cust-9", "Nine")
    listing = run(hub, "link-url", "--list", "--all")
    assert "for cust-9" in listing.stdout
    accounts = json.loads(run(hub, "accounts", "--json").stdout)
    assert [(a["owner"], a["owner_name"]) for a in accounts] == [("cust-9", "Nine")]


@pytest.mark.parametrize(
    ("option", "value"), [("--owner", " "), ("--owner", "a\x1bb"), ("--owner-name", "x" * 201)]
)
def test_a_bad_owner_is_a_usage_error(hub: Web, option: str, value: str) -> None:
    arguments = ["link-url", "acme", option, value]
    if option == "--owner-name":
        arguments += ["--owner", "cust"]
    result = run(hub, *arguments)
    assert result.exit_code == 2
    assert option in result.stderr
    assert hub.store.links(include_closed=True) == []


def test_accounts_show_says_whom_an_account_is_for(hub: Web) -> None:
    from hub_core.model import Credentials, Verified

    account = hub.store.save(
        "acme",
        Verified(identity="org:7", label="Seven"),
        Credentials({"api_key": "k", "region": "us"}, secret=["api_key"]),
        owner="cust-9",
        owner_name="Nine",
    )
    shown = run(hub, "accounts", "show", account.id)
    assert shown.exit_code == 0, shown.output
    assert "For      Nine (cust-9)" in shown.stdout
