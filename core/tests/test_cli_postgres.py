"""The CLI on PostgreSQL: ``HUB_DATABASE_URL`` selects the backend (real ``hub`` processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

pytest.importorskip("psycopg")


HUB = str(Path(sys.executable).parent / "hub")


def hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HUB, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return {**clean, "HUB_HOME": str(tmp_path / "home"), "HUB_PLUGINS": ""}


def test_a_postgresql_url_selects_postgresql(postgres_url: str, env: dict[str, str]) -> None:
    from hub_core.model import Credentials, Verified
    from hub_core.store import Store

    key = Fernet.generate_key().decode()
    with Store.open(postgres_url, secret_key=key) as store:
        creds = Credentials({"api_key": "sekrit-value"}, secret=["api_key"])
        store.save("acme", Verified(identity="org:1", label="On PostgreSQL"), creds)
    env.update(HUB_DATABASE_URL=postgres_url, HUB_SECRET_KEY=key)
    listed = hub("accounts", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [row["label"] for row in json.loads(listed.stdout)] == ["On PostgreSQL"]
    assert not (Path(env["HUB_HOME"]) / "hub.db").exists()  # nothing made on SQLite


def test_without_a_key_the_cli_says_how_to_make_one(postgres_url: str, env: dict[str, str]) -> None:
    env.update(HUB_DATABASE_URL=postgres_url)
    refused = hub("accounts", env=env)
    assert refused.returncode != 0
    assert "hub keys new" in refused.stderr
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in refused.stderr + refused.stdout
    assert not (Path(env["HUB_HOME"]) / "hub.key").exists()


def test_anything_else_is_a_sqlite_file(tmp_path: Path, env: dict[str, str]) -> None:
    env.update(HUB_DATABASE_URL=str(tmp_path / "elsewhere.db"))
    assert hub("accounts", env=env).returncode == 0
    assert (tmp_path / "elsewhere.db").exists()


def test_the_sqlite_path_never_imports_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys; from hub_core.store import Store; "
        f"Store.open({str(tmp_path / 'x.db')!r}).close(); "
        "print('psycopg' in sys.modules, 'hub_core.store_postgres' in sys.modules)"
    )
    env = {**os.environ, "HUB_HOME": str(tmp_path)}
    env.pop("HUB_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_without_the_postgres_extra_a_url_says_what_to_install(env: dict[str, str]) -> None:
    # As on a machine with hub-core but not hub-core[postgres]: psycopg cannot be imported.
    blocked = (
        "import sys; sys.modules['psycopg'] = None; sys.argv = ['hub', 'accounts'];"
        " from hub_core.cli import main; main()"
    )
    env.update(
        HUB_DATABASE_URL="postgresql://hub:pw-not-shown@127.0.0.1:1/hub",
        HUB_SECRET_KEY=Fernet.generate_key().decode(),
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'hub-core[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert "pw-not-shown" not in done.stderr + done.stdout
