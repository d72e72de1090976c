"""`hub serve`: the real command, on a free loopback port, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import re
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from click.testing import CliRunner

from hub_core.cli import main
from hub_core.web.serving import TokenFilter, redact_tokens

pytestmark = pytest.mark.slow


def test_it_prints_a_sign_in_address_that_trades_its_token_for_a_cookie(hub_server: Any) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{40,}", hub_server.sign_in)
    with httpx.Client(timeout=10) as client:
        assert client.get(hub_server.base).status_code == 401  # no token, no cookie
        signed_in = client.get(hub_server.sign_in, follow_redirects=False)
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/"
        assert "hub_session" in signed_in.cookies
        page = client.get(hub_server.base)
        assert page.status_code == 200
        assert "Connect Elastic Cloud" in page.text
        assert "Connect Qlik Cloud" in page.text
    done = hub_server.stop()
    assert done.returncode == 0, done.stderr
    token = hub_server.sign_in.split("token=", 1)[1]
    # The access log (uvicorn writes it to stdout) shows the request, never the token.
    after_the_address = hub_server.stdout.split("\n", 1)[1] + hub_server.log
    assert '"GET /?token=… HTTP/1.1" 303' in after_the_address
    assert token not in after_the_address
    assert "Stopped." in hub_server.stdout


def test_ctrl_c_stops_it_cleanly_while_a_browser_keeps_a_connection_open(
    hub_server: Any,
) -> None:
    with httpx.Client(timeout=10) as client:  # a kept-alive connection, as browsers hold
        client.get(hub_server.sign_in)
        done = hub_server.stop(timeout=15)
    assert done.returncode == 0
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "over plain http"),  # noqa: S104
        (["--host", "0.0.0.0", "--no-auth", "--proxy-headers"], "loopback addresses only"),  # noqa: S104
        (["--ssl-certfile", __file__], "give both --ssl-certfile and --ssl-keyfile"),
    ],
)
def test_unsafe_addresses_are_refused_before_it_listens(
    hub: Any, args: list[str], message: str
) -> None:
    done = hub.run("serve", "--port", "0", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "://" not in done.stdout  # no address was printed: nothing listens


def test_off_loopback_it_serves_over_tls(start_hub_server: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    server = start_hub_server(
        "--host",
        "0.0.0.0",  # noqa: S104
        "--ssl-certfile",
        str(cert_file),
        "--ssl-keyfile",
        str(key_file),
    )
    try:
        assert server.sign_in.startswith("https://")
        port = server.base.rsplit(":", 1)[1].rstrip("/")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with httpx.Client(verify=context, timeout=10, follow_redirects=True) as client:
            answer = client.get(f"https://127.0.0.1:{port}/?{server.sign_in.split('?', 1)[1]}")
            assert answer.status_code == 200  # followed the 303
            cookie = answer.history[0].headers["set-cookie"]
            assert "Secure" in cookie
            assert "HttpOnly" in cookie
    finally:
        assert server.stop().returncode == 0


def test_without_the_web_extra_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "pip install 'hub-core[web]'" in result.output


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/?token=abc123", "/?token=…"),
        ("/accounts?page=2&token=abc&x=1", "/accounts?page=2&token=…&x=1"),
        ("/l/IjEyMyI.abc-def?x=1", "/l/…?x=1"),
        ("/accounts?page=2", "/accounts?page=2"),
    ],
)
def test_tokens_are_hidden_in_access_log_paths(path: str, shown: str) -> None:
    assert redact_tokens(path) == shown
    import logging

    record = logging.LogRecord("uvicorn.access", 20, "", 0, "%s %s", ("GET", path), None)
    TokenFilter().filter(record)
    assert record.getMessage() == f"GET {shown}"


def test_a_link_visit_leaves_no_link_token_in_the_access_log(hub: Any, hub_server: Any) -> None:
    base = hub_server.base.rstrip("/")
    made = hub.run("link-url", "elastic", "--base-url", base, "--json")
    assert made.returncode == 0, made.stderr
    url = json.loads(made.stdout)["url"]
    token = url.rsplit("/l/", 1)[1]
    with httpx.Client(timeout=10) as client:
        opened = client.get(url, follow_redirects=False)
        assert opened.status_code == 303
        assert opened.headers["location"] == "/link"
        assert client.get(f"{base}/link").status_code == 200  # the visitor's Connect page
    assert hub_server.stop().returncode == 0
    after_the_address = hub_server.stdout.split("\n", 1)[1] + hub_server.log
    assert '"GET /l/… HTTP/1.1" 303' in after_the_address
    assert token not in after_the_address
