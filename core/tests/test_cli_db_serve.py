"""``hub db`` and ``hub serve`` where a person's setup is unusual: no PostgreSQL extra, an
unusable certificate, SIGTERM, a password libpq and urllib split differently."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core.cli import main

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

HUB = str(Path(sys.executable).parent / "hub")
TIMEOUT = 30
_ROLES = itertools.count(1)


def hub(*args: str, **env: str | None) -> Result:
    base = {"HUB_DATABASE_URL": None, "HUB_SECRET_KEYS": None}
    return CliRunner().invoke(main, list(args), env={**base, **env})


# --- hub db on PostgreSQL without hub-core[postgres] ---------------------------------------


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["upgrade"], ["upgrade", "--sql"]]
)
def test_hub_db_on_postgresql_without_psycopg_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    # As on a host where only hub-core is installed: `import psycopg` fails.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "hub_core.store_postgres", raising=False)
    url = "postgresql://hub:pw-never-shown@127.0.0.1:1/hub"
    # Every other command says this (`hub_core.store.open_store`):
    other = hub("accounts", HUB_DATABASE_URL=url, HUB_SECRET_KEY=Fernet.generate_key().decode())
    assert other.exit_code == 2
    assert "pip install 'hub-core[postgres]'" in other.stderr
    # And so does `hub db` (not a ModuleNotFoundError traceback).
    result = hub("db", *args, HUB_DATABASE_URL=url)
    assert not isinstance(result.exception, ImportError), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "pip install 'hub-core[postgres]'" in result.stderr
    assert "pw-never-shown" not in result.output


# --- hub serve: an unusable TLS certificate or key ------------------------------------------


def _tls_files(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    if kind == "garbage":
        cert_file.write_text("not a certificate\n")
        key_file.write_text("not a key\n")
    else:  # a real certificate with another certificate's private key
        ca = trustme.CA()
        ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(cert_file)
        ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(key_file)
    return cert_file, key_file


@pytest.mark.parametrize("kind", ["garbage", "mismatched key"])
def test_serve_with_an_unusable_certificate_is_refused_with_a_message(
    tmp_path: Path, kind: str
) -> None:
    cert_file, key_file = _tls_files(tmp_path, kind)
    result = hub(
        "serve",
        "--port",
        "0",
        "--ssl-certfile",
        str(cert_file),
        "--ssl-keyfile",
        str(key_file),
        HUB_SECRET_KEY=Fernet.generate_key().decode(),
        HUB_PLUGINS="",
    )
    # Refused before the sign-in address is printed, not as uvicorn's ssl.SSLError later.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, result.output
    assert "--ssl-certfile" in result.stderr or str(cert_file) in result.stderr
    assert "://" not in result.stdout  # refused before an address is printed: nothing listens


# --- hub serve: SIGTERM ---------------------------------------------------------------------


def _wait_until_it_answers(base: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            httpx.get(base, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env = {
        **clean,
        "HUB_HOME": str(tmp_path / "home"),
        "HUB_SECRET_KEY": Fernet.generate_key().decode(),
        "HUB_PLUGINS": "",
    }
    process = subprocess.Popen(
        [HUB, "serve", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=TIMEOUT), "hub serve printed no address"
        first = process.stdout.readline()
        assert "://" in first, first
        base = first.split(" at ", 1)[1].split("?", 1)[0]
        _wait_until_it_answers(base)  # uvicorn has its signal handlers by then
        process.send_signal(signal.SIGTERM)  # systemctl stop, docker stop, a supervisor
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # As Ctrl-C: exit 0 and "Stopped." after closing the app, its store and the webhook
    # sender (uvicorn sends SIGTERM again once shut down; it must not die of it, 143).
    assert process.returncode == 0, (process.returncode, out, err)
    assert "Stopped." in out
    assert "Traceback" not in err


# --- a PostgreSQL password that urllib splits differently from libpq -----------------------


def _schema_of(url: str) -> str:
    query = urllib.parse.urlsplit(url).query
    return urllib.parse.parse_qs(query)["options"][0].removeprefix("-csearch_path=")


@contextlib.contextmanager
def _role_with_password(url: str, password: str) -> Iterator[tuple[str, str]]:
    """A login role with *password* and USAGE on *url*'s schema: its URL and its name."""
    import psycopg

    name = f"hub_rv_{os.getpid()}_{next(_ROLES)}"
    schema = _schema_of(url)
    parts = urllib.parse.urlsplit(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {name}')
    # As a person writes it: the password as it is. libpq reads the user information up to
    # the '@', so a '?' or '#' in it is part of the password (the connection works).
    where = f"{parts.hostname}:{parts.port}{parts.path}?{parts.query}"
    try:
        yield f"postgresql://{name}:{password}@{where}", name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM {name}')
            conn.execute(f"DROP ROLE {name}")


@pytest.mark.parametrize("mark", ["?", "#"])
def test_a_password_holding_a_question_mark_or_hash_is_never_printed(
    postgres_url: str, mark: str
) -> None:
    before, after = "S3cr", secrets.token_hex(8)
    password = f"{before}{mark}{after}"
    with _role_with_password(postgres_url, password) as (role_url, name):
        for args in (["status"], ["status", "--json"]):
            result = hub("db", *args, HUB_DATABASE_URL=role_url)
            assert result.exit_code == 0, result.output  # libpq takes the URL as it is
            # Split as libpq splits it: urllib.parse would end the address at the '?' or '#'
            # and find no password to mask.
            assert password not in result.output
            assert f"{name}:{before}" not in result.output
            assert f"{name}:***@" in result.output


def test_a_password_holding_a_bracket_gives_a_message_not_a_traceback() -> None:
    pytest.importorskip("psycopg")
    # libpq accepts the URL (and tries 127.0.0.1:1); urllib.parse.urlsplit raises ValueError
    # ("Invalid IPv6 URL") in store_postgres._describe while the error is being written.
    url = "postgresql://hub:pa[ss-never-shown@127.0.0.1:1/hub"
    for args in (["status"], ["upgrade", "--sql"], ["upgrade"]):
        result = hub("db", *args, HUB_DATABASE_URL=url)
        assert not isinstance(result.exception, ValueError), repr(result.exception)
        assert result.exit_code == 2, result.output
        assert "cannot open the account database" in result.stderr
        assert "pa[ss-never-shown" not in result.output
