"""``hub link qlik`` typed at a terminal: the real command on a pseudo-terminal (pexpect).

The prompts ask each field by its label, re-ask a value that is not valid, and hide the key:
what the terminal shows is searched for it. The check runs through the HTTPS proxy to a fake
Qlik Cloud tenant (see conftest.py).
"""

from __future__ import annotations

import re
import sys

import pexpect
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX only"),
]

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def screen(child) -> str:
    """Everything the terminal showed so far, without colours."""
    return ANSI.sub("", child.logfile_read.getvalue())


def finish(child) -> int:
    child.expect_exact(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return child.exitstatus


def key_pieces(key: str) -> list[str]:
    header, payload, signature = key.split(".")
    return [key, header + "." + payload, payload, signature]


def test_link_qlik_prompts_by_label_hides_the_key_and_checks_the_tenant(hub, qlik, proxy, keys):
    child = hub.spawn("link", "qlik")

    child.expect_exact("Link Qlik Cloud")
    child.expect_exact("hub guide qlik")
    child.expect_exact("You can also paste the whole address.")  # the field's help
    child.expect_exact("Tenant Name: ")
    child.sendline(f"https://{keys.qlik_host}/hub")
    # The pasted address names the region: it is shown, not asked.
    child.expect_exact("Region: eu (from Tenant Name)")
    child.expect_exact("API Key: ")
    assert child.waitnoecho(timeout=10)  # the terminal stopped echoing before the key is typed
    child.sendline(keys.qlik)
    child.expect_exact("Checking the key with Qlik Cloud...")
    child.expect_exact(f"Linked Ada Lovelace @ {keys.qlik_host}")
    child.expect(r"expires\s+2031-05-04")
    assert finish(child) == 0, screen(child)

    shown = screen(child)
    for piece in key_pieces(keys.qlik):
        assert piece not in shown
    assert keys.qlik_canary not in shown
    # Only the visible answers were echoed; after the hidden prompt comes the bare newline.
    assert re.search(r"API Key: \r?\n", shown), shown
    assert shown.count("Region: ") == 1
    assert "Ireland (eu)" not in shown  # the choices were never listed
    assert f"Tenant Name: https://{keys.qlik_host}/hub" in shown  # visible answers do echo

    user = f"/api/v1/users/{keys.qlik_user_id}"
    tenant = f"/api/v1/tenants/{keys.qlik_tenant_id}"
    assert [(r.method, r.target) for r in qlik.requests] == [
        ("GET", "/api/v1/users/me"),
        ("GET", user),
        ("GET", "/api/v1/tenants/me"),
        ("GET", tenant),
        ("GET", f"/api/v1/api-keys/{keys.qlik_key_id}"),
    ]
    assert [e.reply.status for e in qlik.server.exchanges] == [301, 200, 302, 200, 200]
    for request in qlik.requests:
        assert request.headers.get_list("authorization") == [f"Bearer {keys.qlik}"]
        assert request.headers["host"] == keys.qlik_host
    assert set(proxy.hosts) == {keys.qlik_host}

    (account,) = hub.json("accounts", "--json")
    assert account["provider"] == "qlik"
    assert account["identity"] == f"tenant:{keys.qlik_tenant_id}/user:{keys.qlik_user_id}"
    assert account["label"] == f"Ada Lovelace @ {keys.qlik_host}"
    assert account["status"] == "active"
    assert account["expires_at"] == "2031-05-04T03:02:01Z"
    # The pasted tenant URL is stored as the tenant name and region it stands for.
    assert account["config"] == {"tenant": keys.qlik_host.split(".")[0], "region": "eu"}

    # The re-check runs the same flow on the async driver, redirects included.
    checked = hub.run("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [r.target for r in qlik.requests[5:]] == [r.target for r in qlik.requests[:5]]
    shown = hub.run("accounts", "show", account["id"]).stdout
    assert shown.splitlines()[:2] == ["Ada Lovelace (ada@example.com)", keys.qlik_host]
    assert re.search(r"Tenant name\s+Acme Analytics", shown)
    assert re.search(r"Key expiry\s+2031-05-04 03:02 UTC", shown)


def test_tenant_the_provider_does_not_know_is_asked_again_at_the_terminal(hub, qlik, keys):
    child = hub.spawn("link", "qlik")

    child.expect_exact("Tenant Name: ")
    child.sendline("https://nosuch.eu.qlikcloud.com")
    child.expect_exact("Region: eu (from Tenant Name)")
    child.expect_exact("API Key: ")
    assert child.waitnoecho(timeout=10)
    child.sendline(keys.qlik)
    child.expect_exact("There is no Qlik Cloud tenant nosuch in region eu")
    child.expect_exact("Tenant Name: ")  # only the field at fault is asked again
    child.sendline(keys.qlik_host)
    child.expect_exact(f"Linked Ada Lovelace @ {keys.qlik_host}")
    assert finish(child) == 0, screen(child)

    shown = screen(child)
    assert shown.count("API Key: ") == 1
    assert keys.qlik not in shown
    hosts = [r.headers["host"] for r in qlik.requests]
    assert hosts[0] == "nosuch.eu.qlikcloud.com"
    assert set(hosts[1:]) == {keys.qlik_host}


def test_tenant_the_proxy_cannot_route_ends_with_a_clear_message(hub, qlik, proxy, keys):
    host = "nosuch.us.qlikcloudgov.com"  # a Qlik host, but nowhere the proxy can reach
    child = hub.spawn("link", "qlik")

    child.expect_exact("Tenant Name: ")
    child.sendline(host)
    child.expect_exact("Region: us-gov (from Tenant Name)")
    child.expect_exact("API Key: ")
    assert child.waitnoecho(timeout=10)
    child.sendline(keys.qlik)
    # Unreachable, with the likely cause; at a terminal the tenant is asked again.
    for _ in range(2):
        child.expect_exact("Tenant Name: ")
        child.sendline(host)
    status = finish(child)

    shown = screen(child)
    assert status == 3, shown
    assert (
        f"Error: Qlik Cloud could not be reached: the HTTPS proxy could not open a connection "
        f"to {host}. Check the Tenant Name and Region" in shown
    )
    assert "If they are right, check your connection" in shown
    assert shown.count("API Key: ") == 1
    assert "Traceback" not in shown
    assert keys.qlik not in shown
    assert [(c.host, c.routed) for c in proxy.connects] == [(host, False)] * 3
    assert qlik.requests == []
    assert hub.json("accounts", "--json") == []


def test_a_bare_tenant_name_asks_the_region_and_asks_again_for_a_wrong_one(hub, qlik, keys):
    child = hub.spawn("link", "qlik")

    child.expect_exact("Tenant Name: ")
    child.sendline(keys.qlik_host.split(".")[0])  # a name alone says nothing of the region
    child.expect_exact("eu     Ireland (eu)")
    child.expect_exact("Region: ")
    child.sendline("mars")
    child.expect_exact("Error: Region must be one of: us, eu,")
    child.expect_exact("Region: ")  # asked again
    child.sendline("eu")
    child.expect_exact("API Key: ")
    assert child.waitnoecho(timeout=10)
    child.sendline(keys.qlik)
    child.expect_exact(f"Linked Ada Lovelace @ {keys.qlik_host}")
    assert finish(child) == 0, screen(child)
    assert "(from Tenant Name)" not in screen(child)


def test_a_value_given_on_the_command_line_wins_over_a_supplied_one(hub, qlik, keys):
    child = hub.spawn("link", "qlik", "--set", "region=us")

    child.expect_exact("Tenant Name: ")
    child.sendline(f"https://{keys.qlik_host}/hub")
    child.expect_exact("API Key: ")  # Region is neither asked nor replaced
    assert child.waitnoecho(timeout=10)
    child.sendline(keys.qlik)
    # The plugin sees both and says they disagree; Region is asked again.
    child.expect_exact("Region is United States (us), but the tenant address")
    child.expect_exact("Region: ")
    child.sendline("eu")
    child.expect_exact(f"Linked Ada Lovelace @ {keys.qlik_host}")
    assert finish(child) == 0, screen(child)
    assert "(from Tenant Name)" not in screen(child)


def test_check_on_a_terminal_shows_a_progress_bar_and_a_summary(hub, elastic, keys):
    linked = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr

    child = hub.spawn("check")
    child.expect(r"Checking\s+\[#+\]\s+1/1")
    assert finish(child) == 0, screen(child)
    assert "Checked 1 account: 1 active." in screen(child)  # coloured on a terminal
    assert keys.elastic not in screen(child)
