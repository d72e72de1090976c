"""The interactive CLI as a person at a terminal meets it when something needs correcting:
``hub link`` asking again, ``--secret-stdin`` at a terminal, a key linked twice, wide labels.

Each test runs the real ``hub`` on a pseudo-terminal (pexpect), as tests/test_cli_pty.py does,
against the fake providers of conftest.py behind the loopback HTTPS proxy.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator

import pexpect
import pytest

from hub_core.testing.network import FakeProvider

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX only"),
]

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A second Elastic Cloud key, for another organization.
OTHER_ELASTIC_KEY = "essu_c2Vjb25kLWtleS1mb3ItYW5vdGhlci1vcmc6c2VjcmV0LXBhcnQtOTg3NjU0"
#: A prompt at the start of a line (the error messages also say "Tenant Name and Region: ").
PROMPT = re.compile(r"\n(Tenant Name|Region): ")


def screen(child) -> str:
    """Everything the terminal showed so far, without colours."""
    return ANSI.sub("", child.logfile_read.getvalue())


def finish(child, timeout: float = 30) -> int:
    try:
        child.expect_exact(pexpect.EOF, timeout=timeout)
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return child.exitstatus


@pytest.fixture
def us_tenant_host(qlik, proxy, ca) -> Iterator[str]:
    """``acme.us.qlikcloud.com`` answered by the fake Qlik Cloud (which has no such tenant, so
    it says 404, as Qlik does), with a certificate for ``*.us.qlikcloud.com``."""
    host = "acme.us.qlikcloud.com"
    with FakeProvider(["*.us.qlikcloud.com"], qlik, ca=ca) as server:
        proxy.route(host, server)
        yield host


def answer_prompts(child, answers: dict[str, str], limit: int = 4) -> list[str]:
    """Answer each Tenant Name / Region prompt hub asks again (at most *limit*); return them."""
    asked = []
    for _ in range(limit):
        index = child.expect([PROMPT, pexpect.EOF], timeout=15)
        if index == 1:
            break
        name = child.match.group(1)
        asked.append(name)
        child.sendline(answers[name])
    return asked


# --- the Region cannot be corrected after "There is no Qlik Cloud tenant ..." -------------


def correct_after_not_found(child, key: str) -> tuple[list[str], int, str]:
    """Give the API Key, meet Qlik's 404 for acme in us, then answer acme in eu to whatever
    is asked again: what was asked, the exit status, what the terminal showed."""
    child.expect_exact("API Key: ")
    assert child.waitnoecho(timeout=10)
    child.sendline(key)
    child.expect_exact("There is no Qlik Cloud tenant acme in region us")
    asked = answer_prompts(child, {"Tenant Name": "acme", "Region": "eu"})
    status = finish(child)
    return asked, status, screen(child)


def test_tenant_not_found_in_a_wrong_region_lets_the_person_correct_the_region(
    hub, qlik, us_tenant_host, keys
):
    """The 404 says "Check the Tenant Name and Region": both are asked again, so a person who
    picked the wrong Region can correct it (not type the right tenant name three times)."""
    child = hub.spawn("link", "qlik")
    child.expect_exact("Tenant Name: ")
    child.sendline("acme")
    child.expect_exact("Region: ")
    child.sendline("us")  # the mistake: the tenant is in eu
    asked, status, shown = correct_after_not_found(child, keys.qlik)
    assert "Region" in asked, f"only {asked} asked again; Region could not be corrected:\n{shown}"
    assert status == 0, shown
    assert f"Linked Ada Lovelace @ {keys.qlik_host}" in shown


def test_region_from_a_tenant_address_typed_over_is_not_kept(hub, qlik, us_tenant_host, keys):
    """A pasted address supplies Region (us), the tenant is not found there, and the person
    types the bare tenant name at the new Tenant Name prompt: the Region the discarded address
    supplied is asked for, not kept unseen (every try would check acme.us again)."""
    child = hub.spawn("link", "qlik")
    child.expect_exact("Tenant Name: ")
    child.sendline(f"https://{us_tenant_host}/hub")
    child.expect_exact("Region: us (from Tenant Name)")
    asked, status, shown = correct_after_not_found(child, keys.qlik)
    assert status == 0, f"asked again: {asked}\n{shown}"
    assert f"Linked Ada Lovelace @ {keys.qlik_host}" in shown
    (account,) = hub.json("accounts", "--json")
    assert account["config"] == {"tenant": "acme", "region": "eu"}


# --- --secret-stdin at a terminal -------------------------------------------------------------


def test_secret_stdin_at_a_terminal_never_echoes_the_key(hub, elastic, keys):
    """`hub link elastic --secret-stdin` with standard input a terminal must not read the key
    with the terminal's echo on (the whole key on the screen and in the scrollback)."""
    child = hub.spawn("link", "elastic", "--secret-stdin")
    child.expect_exact("hub guide elastic")
    try:
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=3) == 1:
            # Still running: it waits for the key. It must not be echoed.
            hidden = child.waitnoecho(timeout=5)
            child.sendline(keys.elastic)
            if child.expect([pexpect.EOF, r"Environment \[cloud\]: "], timeout=15) == 1:
                child.sendline("")
        else:
            hidden = True  # refused before reading anything: fine too
        status = finish(child)
    finally:
        if child.isalive():
            child.terminate(force=True)

    shown = screen(child)
    assert keys.elastic not in shown, f"the key was echoed (exit {status}):\n{shown}"
    assert hidden, "the terminal echoed while hub read the key"
    assert "Traceback" not in shown


# --- the same identity linked again ----------------------------------------------------------


def test_linking_an_account_already_linked_says_it_updated_it(hub, elastic, keys):
    """Linking a key whose organization is linked already updates that account (DESIGN.md
    §5), and the web Hub says so; so does `hub link`, not "Linked Acme Org" as for a new one."""
    first = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert first.returncode == 0, first.stderr

    child = hub.spawn("link", "elastic")
    child.expect_exact("Cloud API Key: ")
    assert child.waitnoecho(timeout=10)
    child.sendline(keys.elastic)
    child.expect_exact("Environment [cloud]: ")
    child.sendline("")
    child.expect_exact("Linked Acme Org")
    assert finish(child) == 0, screen(child)

    assert len(hub.json("accounts", "--json")) == 1  # one account, updated
    shown = screen(child)
    assert "Linked Acme Org again: the new key replaces the stored one" in shown, shown


# --- hub accounts with wide characters --------------------------------------------------------


def _columns(text: str) -> int:
    """How many terminal columns *text* takes (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_accounts_table_lines_up_labels_with_wide_characters(hub, elastic, keys):
    """The columns are measured in the cells a terminal gives them: a Japanese organization
    name (each character two cells wide) does not push PROVIDER, STATUS and the dates of its
    line to the right of their headers."""
    elastic.keys[OTHER_ELASTIC_KEY] = {"id": "org2", "name": "株式会社テスト"}
    for key in (keys.elastic, OTHER_ELASTIC_KEY):
        done = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": key})
        assert done.returncode == 0, done.stderr

    child = hub.spawn("accounts")
    assert finish(child) == 0
    lines = [line for line in screen(child).splitlines() if line.strip()]
    assert len(lines) == 3, lines
    header, *rows = lines
    where = _columns(header[: header.index("PROVIDER")])
    for row in rows:
        assert _columns(row[: row.index("elastic")]) == where, "\n".join(lines)
