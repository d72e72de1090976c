"""The PostgreSQL the test suite starts itself (`hub_core.testing.postgres`, SCALE.md §4)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hub_core.testing import postgres
from hub_core.testing.postgres import PostgresCluster, find_bindir, unavailable

# The fixtures, from the shipped kit, as a host application's suite would load them.


def test_each_test_gets_a_fresh_schema_on_loopback(
    postgres_server: PostgresCluster, postgres_url: str
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)
        conn.execute("CREATE TABLE mine (x int)")
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    for make, drop in [
        (postgres_server.create_schema, postgres_server.drop_schema),
        (postgres_server.create_database, postgres_server.drop_database),
    ]:
        other = make()
        try:
            with psycopg.connect(other) as conn:
                assert conn.execute("SELECT to_regclass('mine')").fetchone() == (None,)
                conn.execute("CREATE TABLE mine (x int)")  # its own: no clash
        finally:
            drop(other)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM mine").fetchone() == (0,)


def test_the_cluster_wants_its_password(postgres_server: PostgresCluster) -> None:
    import psycopg

    wrong = postgres_server.url().replace(postgres_server.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_a_stopped_cluster_is_gone(postgres_server: PostgresCluster) -> None:
    cluster = PostgresCluster(postgres_server.bindir)
    cluster.start()
    data = cluster.data
    port = cluster.port
    cluster.stop()
    cluster.stop()  # twice: harmless
    assert not data.exists()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_a_restart_and_a_crash_keep_the_data_and_the_port(
    postgres_server: PostgresCluster,
) -> None:
    import psycopg

    cluster = PostgresCluster(postgres_server.bindir, settings={"synchronous_commit": "on"})
    cluster.start()
    try:
        port = cluster.port
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (1)")
        for fault in (cluster.restart, cluster.crash):
            before = psycopg.connect(cluster.url(), autocommit=True)
            fault()
            if fault == cluster.crash:
                with pytest.raises(psycopg.OperationalError):
                    psycopg.connect(cluster.url(), connect_timeout=5)
                cluster.start_again()
            with pytest.raises(psycopg.OperationalError):
                before.execute("SELECT 1")  # its session ended with the server
            before.close()
            assert cluster.port == port
            with psycopg.connect(cluster.url()) as conn:
                assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
                assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        cluster.stop()


def test_binaries_are_found_by_variable_and_missing_ones_are_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("initdb", "pg_ctl"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv(postgres.BINDIR_ENV, str(tmp_path))
    assert find_bindir() == tmp_path
    monkeypatch.setenv(postgres.BINDIR_ENV, str(tmp_path / "none"))
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    assert find_bindir() is None


@pytest.mark.parametrize(("ci", "outcome"), [("true", "fail"), (None, "skip")])
def test_without_postgresql_tests_skip_except_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: str
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="no binaries"):
        unavailable("no binaries")
