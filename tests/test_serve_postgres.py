"""`hub serve` on PostgreSQL (``HUB_DATABASE_URL``): real processes, the web Hub unchanged.

The account linked by `hub link` in one process shows on the Accounts page of a `hub serve`
in another; an auth link made by `hub link-url` (a third) is used once through that server,
then answers 410. Neither the database's password nor the link's token is printed.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

pytest.importorskip("psycopg")


pytestmark = pytest.mark.slow


def post_form(client: httpx.Client, page: httpx.Response, base: str, **values: str) -> Any:
    """Send the page's one POST form as a browser would, with *values* filled in."""
    [form] = re.findall(r'<form[^>]*method="post"[^>]*>.*?</form>', page.text, flags=re.S)
    action = html.unescape(re.search(r'action="([^"]*)"', form).group(1))  # type: ignore[union-attr]
    hidden = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    }
    origin = base.rstrip("/")
    return client.post(
        urllib.parse.urljoin(str(page.url), action),
        data={**hidden, **values},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )


def test_hub_serve_on_postgresql_serves_accounts_and_a_link_used_once(
    hub: Any, start_hub_server: Any, postgres_url: str, elastic: Any, keys: Any
) -> None:
    hub.env.update(HUB_DATABASE_URL=postgres_url, HUB_SECRET_KEY=Fernet.generate_key().decode())
    password = urllib.parse.urlsplit(postgres_url).password
    assert password
    linked = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    [account] = hub.json("accounts", "--json")
    server = start_hub_server()
    base = server.base
    with httpx.Client(timeout=10) as browser:
        assert browser.get(server.sign_in).status_code == 303
        page = browser.get(f"{base}accounts")
        assert page.status_code == 200
        assert html.escape(account["label"]) in page.text
        assert f"/accounts/{account['id']}" in page.text  # its row links to it
    made = hub.run("link-url", "elastic", "--base-url", base.rstrip("/"), "--json")
    assert made.returncode == 0, made.stderr
    url = json.loads(made.stdout)["url"]
    with httpx.Client(timeout=10) as visitor:
        opened = visitor.get(url, follow_redirects=False)
        assert opened.status_code == 303
        form = visitor.get(f"{base}link")
        assert form.status_code == 200
        sent = post_form(visitor, form, base, api_key=keys.elastic)
        assert sent.status_code == 303, sent.text
        done = visitor.get(urllib.parse.urljoin(base, sent.headers["location"]))
        assert done.status_code == 200
        assert "you may close this tab" in done.text.lower()
    with httpx.Client(timeout=10) as later:
        again = later.get(url, follow_redirects=False)
        assert again.status_code == 410
        assert "used already" in again.text
    [still] = hub.json("accounts", "--json")  # the same organisation: the same account
    assert still["id"] == account["id"]
    assert server.stop().returncode == 0
    printed = "".join(hub.transcript) + server.stdout + server.log
    assert password not in printed
    assert url.rsplit("/l/", 1)[1] not in server.stdout.split("\n", 1)[1] + server.log
