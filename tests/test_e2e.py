"""The real ``hub`` command, end to end, against fake Elastic Cloud and Qlik Cloud servers.

Each test runs the installed console script as a subprocess with the installed plugins; its
checks travel through the HTTPS proxy of ``HTTPS_PROXY`` to loopback servers trusted through
``SSL_CERT_FILE`` (see conftest.py). Nothing in the product is switched off for the tests.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub_core.testing.network import ConnectRecord

pytestmark = pytest.mark.slow

#: What `hub accounts --json` documents for an account (docs/cli.md, "JSON output").
ACCOUNT_KEYS = {
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
}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def day(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def authorizations(fake) -> list[list[str]]:
    return [request.headers.get_list("authorization") for request in fake.requests]


def assert_documented_account(account: dict) -> None:
    assert set(account) >= ACCOUNT_KEYS, account
    for name in ("linked_at", "checked_at", "expires_at"):
        assert account[name] is None or ISO_UTC.fullmatch(account[name]), (name, account[name])


# --- 1. Elastic Cloud, non-interactive -----------------------------------------------------


@pytest.mark.parametrize("source", ["environment", "stdin"])
def test_link_elastic_without_a_terminal_confirms_organization_and_expiry(
    hub, elastic, proxy, keys, source
):
    if source == "environment":
        done = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic})
    else:
        done = hub.run("link", "elastic", "--secret-stdin", input=keys.elastic + "\n")

    assert done.returncode == 0, done.stderr
    assert "Linked Acme Org" in done.stdout
    assert re.search(rf"expires\s+{day(elastic.expires_at)} \(in (89|90) days\)", done.stdout)
    assert "Checking the key with Elastic Cloud" in done.stderr
    assert [(r.method, r.target) for r in elastic.requests] == [("GET", "/api/v1/organizations")]
    assert authorizations(elastic) == [[f"ApiKey {keys.elastic}"]]
    assert proxy.connects == [ConnectRecord(keys.elastic_host, 443, routed=True)]


def test_elastic_account_lifecycle_link_list_show_check_reject_unlink(hub, elastic, keys):
    linked = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr

    (account,) = hub.json("accounts", "--json")
    assert_documented_account(account)
    assert account["provider"] == "elastic"
    assert account["identity"] == "org:org1"
    assert account["label"] == "Acme Org"
    assert account["status"] == "active"
    assert account["config"] == {"environment": "cloud"}
    assert account["expires_at"] == elastic.expires_at.isoformat().replace("+00:00", "Z")
    assert account["last_error"] is None
    assert account["id"] in linked.stdout
    account_id = account["id"]

    table = hub.run("accounts")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["ACCOUNT", "PROVIDER", "STATUS", "EXPIRES", "LINKED", "CHECKED"]
    today = day(datetime.now(UTC))
    assert row.split() == [
        account_id,
        "Acme",
        "Org",
        "elastic",
        "active",
        day(elastic.expires_at),
        today,
        today,
    ]

    shown = hub.run("accounts", "show", account_id[:4])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "Acme Org"
    assert "Elastic Cloud organization org1" in shown.stdout
    assert re.search(r"Status\s+active", shown.stdout)
    assert f"Key expires              {elastic.expires_at:%Y-%m-%d %H:%M} UTC" in shown.stdout
    assert "api.elastic-cloud.com" in shown.stdout

    checked = hub.run("check", "--all")
    assert checked.returncode == 0, checked.stderr
    assert "Checked 1 account: 1 active." in checked.stdout
    assert authorizations(elastic) == [[f"ApiKey {keys.elastic}"]] * 2

    elastic.keys.clear()  # the key was revoked in the Cloud console
    rejected = hub.run("check", "--all")
    assert rejected.returncode == 1, rejected.stdout + rejected.stderr
    assert f"{account_id}  Acme Org: invalid" in rejected.stdout
    assert "rejected the Cloud API Key" in rejected.stdout
    (account,) = hub.json("accounts", "--json")
    assert account["status"] == "invalid"
    assert "Elastic Cloud rejected the Cloud API Key" in account["last_error"]
    assert "root.unauthenticated" in account["last_error"]
    assert len(elastic.requests) == 3

    unlinked = hub.run("unlink", account_id, "--yes")
    assert unlinked.returncode == 0, unlinked.stderr
    assert f"Unlinked Acme Org ({account_id})" in unlinked.stdout
    assert hub.json("accounts", "--json") == []
    assert "No linked account" in hub.run("accounts").stdout


# --- 2. Qlik Cloud at a terminal: see test_cli_pty.py ------------------------------------------

# --- 3. no terminal and a missing value ------------------------------------------------------


def test_link_without_a_terminal_and_without_values_fails_at_once_naming_the_fields(hub, proxy):
    started = time.monotonic()
    done = hub.run("link", "qlik", stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started

    assert done.returncode == 2, done.stdout + done.stderr
    assert elapsed < 10
    assert "missing values" in done.stderr
    assert "Tenant Name (--set tenant=...)" in done.stderr
    assert "API Key (HUB_FIELD_API_KEY or --secret-stdin)" in done.stderr
    assert "Region" not in done.stderr  # optional: a pasted address names it
    assert done.stdout == ""
    assert proxy.connects == []


def test_link_never_waits_on_an_open_pipe_that_is_not_a_terminal(hub, elastic, proxy):
    process = hub.popen("link", "elastic")  # stdin is a pipe nobody writes to or closes
    try:
        done = hub.finish(process, timeout=15)
    finally:
        process.stdin.close()

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Cloud API Key (HUB_FIELD_API_KEY or --secret-stdin)" in done.stderr
    assert elastic.requests == []


# --- 4. provider unreachable -----------------------------------------------------------------


def test_provider_failing_with_503_is_exit_3_and_nothing_is_stored(hub, elastic, keys):
    elastic.status = 503

    done = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic})

    assert done.returncode == 3, done.stdout + done.stderr
    assert "Error: Elastic Cloud (api.elastic-cloud.com) failed on its side with HTTP 503" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert 2 <= len(elastic.requests) <= 3  # retried, but boundedly
    assert hub.json("accounts", "--json") == []


def test_host_the_proxy_cannot_reach_is_exit_3_with_a_readable_message(hub, elastic, proxy, keys):
    done = hub.run(
        "link", "elastic", "--set", "environment=gov", env={"HUB_FIELD_API_KEY": keys.elastic}
    )

    assert done.returncode == 3, done.stdout + done.stderr
    host = "api.us-gov-east-1.aws.elastic-cloud.com"
    assert (
        "Elastic Cloud could not be reached: the HTTPS proxy could not open a connection to "
        f"{host}" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert proxy.connects == [ConnectRecord(host, 443, routed=False)]
    assert elastic.requests == []
    assert hub.json("accounts", "--json") == []


def test_provider_certificate_not_trusted_is_exit_3_and_no_request_is_sent(hub, elastic, keys):
    done = hub.run(
        "link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic, "SSL_CERT_FILE": None}
    )

    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        "Elastic Cloud could not be reached: the secure connection to api.elastic-cloud.com "
        "could not be verified" in done.stderr
    )
    assert elastic.server.tls_failures
    assert elastic.requests == []
    assert hub.json("accounts", "--json") == []


def test_check_that_cannot_reach_the_provider_is_exit_3_and_records_an_error(hub, elastic, keys):
    assert hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic}).returncode == 0
    elastic.status = 503

    done = hub.run("check")

    assert done.returncode == 3, done.stdout + done.stderr
    assert "Acme Org: error - Elastic Cloud (api.elastic-cloud.com) failed" in done.stdout
    (account,) = hub.json("accounts", "--json")
    assert account["status"] == "error"
    assert "HTTP 503" in account["last_error"]

    elastic.status = None
    assert hub.run("check").returncode == 0
    (account,) = hub.json("accounts", "--json")
    assert (account["status"], account["last_error"]) == ("active", None)


# --- 5. a secret in argv -----------------------------------------------------------------------


def test_secret_given_with_set_is_refused_with_the_reason(hub, elastic, keys):
    done = hub.run("link", "elastic", "--set", f"api_key={keys.elastic}")

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Cloud API Key is a secret and is never taken from the command line" in done.stderr
    assert "process list" in done.stderr
    assert "HUB_FIELD_API_KEY or --secret-stdin" in done.stderr
    assert keys.elastic not in done.stdout + done.stderr
    assert elastic.requests == []


# --- 6. two processes link the same organization at once ----------------------------------------


def test_two_simultaneous_links_of_one_organization_store_one_account(hub, elastic, keys):
    # Both checks are held until both arrived: the two processes verify, then save, together.
    elastic.gate = threading.Barrier(2, timeout=15)
    env = {"HUB_FIELD_API_KEY": keys.elastic}
    first = hub.popen("link", "elastic", "--json", env=env)
    second = hub.popen("link", "elastic", "--json", env=env)
    results = [hub.finish(first), hub.finish(second)]
    elastic.gate = None

    for done in results:
        assert done.returncode == 0, done.stderr
    linked = [json.loads(done.stdout) for done in results]
    assert linked[0]["id"] == linked[1]["id"]
    (account,) = hub.json("accounts", "--json")
    assert account["id"] == linked[0]["id"]
    assert account["status"] == "active"
    assert len(elastic.requests) == 2
    assert hub.run("check", "--all").returncode == 0  # the one stored key decrypts


# --- 7. a canary key never shows ---------------------------------------------------------------


CANARY = "essu_Q0FOQVJZLWUyZS1rZXk6ZGlzdGluY3RpdmUtc2VjcmV0LTdmM2E5YzFl"
CANARY_RELINKED = "essu_Q0FOQVJZLXNlY29uZC1rZXk6YW5vdGhlci1zZWNyZXQtNGQ1ZTZmN2E4"
OTHER_KEY = "essu_b3RoZXItb3JnLWtleTpub3QtYS1jYW5hcnktYnV0LXN0aWxsLXNlY3JldA"


def assert_no_canary(data: str | bytes, where: object) -> None:
    for secret in (CANARY, CANARY_RELINKED):
        # The whole key, and its distinctive part without the common prefix.
        for piece in (secret, secret.removeprefix("essu_")[:20]):
            needle = piece.encode() if isinstance(data, bytes) else piece
            assert needle not in data, f"{piece[:12]}... found in {where}"


def store_files(hub_home: Path) -> dict[str, Path]:
    return {path.name: path for path in hub_home.rglob("*") if path.is_file()}


def test_canary_key_never_appears_in_output_or_on_disk(hub, elastic, hub_home):
    elastic.keys = {
        CANARY: {"id": "org1", "name": "Acme Org"},
        CANARY_RELINKED: {"id": "org1", "name": "Acme Org"},
        OTHER_KEY: {"id": "org2", "name": "Other Org"},
    }
    elastic.echo_key = True

    done = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": CANARY})
    assert done.returncode == 0, done.stderr
    done = hub.run("link", "elastic", "--secret-stdin", "--json", input=OTHER_KEY + "\n")
    assert done.returncode == 0, done.stderr
    other_id = json.loads(done.stdout)["id"]
    (account_id,) = [a["id"] for a in hub.json("accounts", "--json") if a["id"] != other_id]
    for args in (
        ("accounts",),
        ("accounts", "--json"),
        ("accounts", "show", account_id),
        ("accounts", "show", account_id, "--json"),
        ("check", "--all"),
        ("check", account_id, "--json"),
    ):
        done = hub.run(*args)
        assert done.returncode == 0, (args, done.stderr)

    mismatch = hub.run("relink", account_id, env={"HUB_FIELD_API_KEY": OTHER_KEY})
    assert mismatch.returncode == 1, mismatch.stdout + mismatch.stderr
    assert (
        f"the new key reaches Other Org (org:org2), but account {account_id} is Acme Org "
        "(org:org1); nothing was changed" in mismatch.stderr
    )

    # While one process holds the store open (its check is held by the fake), another relinks:
    # the relink's writes stay in the -wal file, which is searched too.
    elastic.held = {OTHER_KEY}
    seen = len(elastic.requests)
    holder = hub.popen("check", other_id)
    deadline = time.monotonic() + 15
    while len(elastic.requests) == seen:
        assert time.monotonic() < deadline, "the held check never reached the fake"
        time.sleep(0.05)
    assert authorizations(elastic)[seen:] == [[f"ApiKey {OTHER_KEY}"]]
    relinked = hub.run("relink", account_id[:5], "--secret-stdin", input=CANARY_RELINKED + "\n")
    assert relinked.returncode == 0, relinked.stderr
    assert "Linked Acme Org" in relinked.stdout
    files = store_files(hub_home)
    assert {"hub.db", "hub.key", "hub.db-wal", "hub.db-shm"} <= set(files), sorted(files)
    assert files["hub.db-wal"].stat().st_size > 0
    for name, path in files.items():
        assert_no_canary(path.read_bytes(), name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    elastic.release.set()
    assert hub.finish(holder).returncode == 0

    elastic.keys = {}  # every key revoked; the fake quotes the key it was sent in its error
    rejected = hub.run("check", "--all", "--json")
    assert rejected.returncode == 1, rejected.stderr
    assert {a["status"] for a in json.loads(rejected.stdout)} == {"invalid"}
    hub.run("accounts", "show", account_id)
    hub.run("accounts")
    wrong = hub.run("relink", account_id, env={"HUB_FIELD_API_KEY": CANARY})
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert authorizations(elastic)[-1] == [f"ApiKey {CANARY}"]

    assert_no_canary("\n".join(hub.transcript), "the output of a hub command")
    files = store_files(hub_home)
    assert {"hub.db", "hub.key"} <= set(files), sorted(files)
    for name, path in files.items():
        assert_no_canary(path.read_bytes(), name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert stat.S_IMODE(hub_home.stat().st_mode) == 0o700


def test_store_key_from_hub_secret_key_is_required_again_and_a_wrong_one_changes_nothing(
    hub, elastic, keys, hub_home
):
    secret_key = Fernet.generate_key().decode()
    linked = hub.run(
        "link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic, "HUB_SECRET_KEY": secret_key}
    )
    assert linked.returncode == 0, linked.stderr
    assert set(store_files(hub_home)) == {"hub.db"}  # no key file when the key is given
    before = (hub_home / "hub.db").read_bytes()

    missing = hub.run("accounts")
    wrong = hub.run("check", env={"HUB_SECRET_KEY": Fernet.generate_key().decode()})

    assert missing.returncode != 0
    assert "no secret key for the account database" in missing.stderr
    assert "HUB_SECRET_KEY" in missing.stderr
    assert wrong.returncode != 0
    assert "the secret key from HUB_SECRET_KEY does not match this database" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr
    assert set(store_files(hub_home)) == {"hub.db"}
    assert (hub_home / "hub.db").read_bytes() == before
    assert len(elastic.requests) == 1
    listed = hub.run("accounts", "--json", env={"HUB_SECRET_KEY": secret_key})
    assert [a["label"] for a in json.loads(listed.stdout)] == ["Acme Org"]


# --- 7b. bad input and a bad environment ----------------------------------------------------------

#: The Elastic Cloud API key field's max_length.
ELASTIC_MAX_KEY = 512


def test_secret_stdin_that_is_not_utf8_is_exit_2_and_nothing_is_sent_or_stored(
    hub, elastic, proxy, hub_home
):
    process = hub.popen("link", "elastic", "--secret-stdin")
    process.stdin.buffer.write(b"essu_\xff\xfe-not-text\n")
    done = hub.finish(process)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "--secret-stdin: the line for Cloud API Key is not utf-8 text (byte 6)" in done.stderr
    assert "Traceback" not in done.stderr
    assert proxy.connects == []
    assert elastic.requests == []
    assert hub.json("accounts", "--json") == []


def test_secret_stdin_without_a_line_end_is_refused_after_reading_a_bounded_amount(
    hub, elastic, proxy
):
    """50 MB with no newline: hub takes what fits in the field and stops reading at once."""
    process = hub.popen("link", "elastic", "--secret-stdin")
    fd = process.stdin.fileno()
    chunk, total, written = b"k" * 4096, 50 * 1024 * 1024, 0
    try:
        while written < total:
            written += os.write(fd, chunk)
    except BrokenPipeError:  # hub stopped reading and exited
        pass
    done = hub.finish(process)

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"is too long (more than {ELASTIC_MAX_KEY} characters)" in done.stderr
    assert "Traceback" not in done.stderr
    # What hub read (max_length + 2 bytes, plus at most one read of Python's stdin buffer),
    # and what the pipe holds unread (64 KiB on Linux), is all that could be written.
    assert written < 1024 * 1024, written
    assert elastic.requests == []
    assert hub.json("accounts", "--json") == []


@pytest.mark.parametrize("kind", ["missing", "garbage", "empty", "directory"])
def test_unusable_ssl_cert_file_is_exit_2_naming_it_and_nothing_is_sent(
    hub, elastic, proxy, keys, tmp_path, kind
):
    path = tmp_path / "ca.pem"
    if kind == "garbage":
        path.write_bytes(b"not a certificate\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()

    done = hub.run(
        "link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic, "SSL_CERT_FILE": str(path)}
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Error: SSL_CERT_FILE={path} : " in done.stderr
    assert "Traceback" not in done.stderr
    assert proxy.connects == []
    assert hub.json("accounts", "--json") == []


PASSWORD = "pr0xy-Passw0rd-e2e"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ftp://proxy.invalid:21", "hub reaches providers through an http:// or https:// proxy"),
        ("socks5://proxy.invalid:1080", "SOCKS is not supported"),
        (f"http://ada:{PASSWORD}@proxy.invalid:99999", "port must be a number from 1 to 65535"),
        ("http://proxy.invalid:port", "port must be a number from 1 to 65535"),
    ],
)
def test_malformed_https_proxy_is_exit_2_naming_it(hub, elastic, keys, value, expected):
    env = {"HUB_FIELD_API_KEY": keys.elastic, "HTTPS_PROXY": value, "https_proxy": None}

    done = hub.run("link", "elastic", env=env)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Error: HTTPS_PROXY=" in done.stderr
    assert expected in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert elastic.requests == []
    assert hub.json("accounts", "--json") == []


@pytest.mark.parametrize("command", ["link", "check"])
@pytest.mark.parametrize("value", ["garbage", "http://proxy.invalid:3128"])
def test_https_proxy_that_does_not_resolve_is_exit_3_blaming_the_proxy(
    hub, elastic, keys, value, command
):
    if command == "check":
        assert hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic}).returncode == 0
    env = {"HUB_FIELD_API_KEY": keys.elastic, "HTTPS_PROXY": value, "https_proxy": None}

    done = hub.run(*(["link", "elastic"] if command == "link" else ["check"]), env=env)

    assert done.returncode == 3, done.stdout + done.stderr
    blame = f"the HTTPS proxy {value} (from HTTPS_PROXY) does not resolve"
    assert blame in done.stdout + done.stderr
    assert "api.elastic-cloud.com" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_empty_hub_secret_key_is_exit_2_and_makes_no_key_file(hub, elastic, keys, hub_home):
    for command in (["link", "elastic"], ["accounts"]):
        done = hub.run(*command, env={"HUB_FIELD_API_KEY": keys.elastic, "HUB_SECRET_KEY": ""})

        assert done.returncode == 2, done.stdout + done.stderr
        assert "Error: HUB_SECRET_KEY is set but empty" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (hub_home / "hub.key").exists()
    assert hub.json("accounts", "--json") == []


# --- 8. what is installed ------------------------------------------------------------------------


def test_help_and_plugins_list_both_plugins_with_their_versions(hub):
    helped = hub.run("--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("link", "accounts", "check", "relink", "unlink", "plugins", "providers"):
        assert re.search(rf"^\s+{command}\s", helped.stdout, re.MULTILINE), command

    listed = hub.run("plugins")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    for name, distribution in (("elastic", "hub-elastic"), ("qlik", "hub-qlik")):
        expected = f"{name}  {distribution} {version(distribution)}  ({name})"
        assert expected in lines, listed.stdout
    reports = hub.json("plugins", "--json")
    assert {
        (r["distribution"], r["version"], tuple(r["providers"]), r["error"]) for r in reports
    } == {
        ("hub-elastic", version("hub-elastic"), ("elastic",), None),
        ("hub-qlik", version("hub-qlik"), ("qlik",), None),
    }
    assert {p["id"] for p in hub.json("providers", "--json")} == {"elastic", "qlik"}
