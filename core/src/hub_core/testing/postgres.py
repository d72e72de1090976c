"""A real PostgreSQL for tests: one throwaway cluster per test session, a fresh database per test.

    from hub_core.testing.postgres import postgres_server, postgres_url  # fixtures

    def test_something(postgres_url: str) -> None:
        store = Store.open(postgres_url, secret_key=key)

`postgres_server` (session scope) finds PostgreSQL's binaries (``HUB_PG_BINDIR``, else
``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``), runs ``initdb`` and
``pg_ctl start`` in a temporary directory, listening on 127.0.0.1 only on a free port, and
stops and removes it at the end of the session, also when the session is interrupted (SIGTERM
becomes the KeyboardInterrupt pytest tears down after; an ``atexit`` hook stops a cluster the
fixture could not). ``initdb`` refuses to run as root: as root, the directory is given to the
``postgres`` user and both run through ``runuser -u postgres --``. Without the binaries the
tests that need it skip, saying so, except under ``CI=true``, where they fail: a CI that cannot
run them must not pass.

`postgres_url` gives each test its own empty schema, the only one its connections see
(``search_path`` in the URL), dropped after the test: a few milliseconds, where ``CREATE
DATABASE`` takes up to a second on a busy machine (`PostgresCluster.create_database` makes one
for a test that needs a whole database). Connections use a password (the cluster
refuses others on TCP), so the URL carries a secret the way a deployment's does.

It lives in the shipped test kit, beside `hub_core.testing.network`, so that ``core/tests``,
``tests/`` and a host application's own suite can all use it (conftests of different test trees
cannot import one another under ``--import-mode=importlib``). Importing it imports the standard
library only; psycopg is imported when a database is made.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["PostgresCluster", "find_bindir", "postgres_server", "postgres_url", "unavailable"]

BINDIR_ENV = "HUB_PG_BINDIR"
_USER = "hub"
_START_TIMEOUT = 30


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when there is none."""
    candidates: list[str] = []
    if os.environ.get(BINDIR_ENV):
        candidates.append(os.environ[BINDIR_ENV])
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(  # noqa: S603 (our own argv, no shell)
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """One PostgreSQL cluster in a temporary directory, on 127.0.0.1, for tests only.

    `start` makes and starts it; `stop` stops it and removes the directory (harmless twice).
    `url` is a connection URL (with its password) to one of its databases; `create_database`
    and `drop_database` make and remove databases for one test each.
    """

    def __init__(self, bindir: Path, *, settings: Mapping[str, str] | None = None) -> None:
        self.bindir = bindir
        self.password = secrets.token_hex(16)
        self.port = 0
        #: Server settings over the test defaults (``{"synchronous_commit": "on"}`` for a
        #: test whose crash must not lose a commit the client was told of).
        self.settings = dict(settings or {})
        self._options = ""
        self._root: Path | None = None
        self._names = itertools.count(1)

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        assert self._root is not None, "the cluster is not started"
        return self._root / "data"

    def _run(self, *argv: str, timeout: float = _START_TIMEOUT) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(  # noqa: S603 (our own argv, no shell)
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {said}")

    def start(self) -> None:
        """Create the cluster (``initdb``) and start it on a free port of 127.0.0.1."""
        root = Path(tempfile.mkdtemp(prefix="hub-pg-"))
        self._root = root
        atexit.register(self.stop)
        pwfile = root / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        root.chmod(0o700)
        pwfile.chmod(0o600)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            _USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=reject",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        pwfile.unlink()
        # A free port can be taken between the look and the start: try a few.
        for attempt in range(5):
            self.port = _free_port()
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.port),
                "unix_socket_directories": "''",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
                **self.settings,
            }
            self._options = " ".join(f"-c {name}={value}" for name, value in settings.items())
            try:
                self.start_again()
                return
            except RuntimeError:
                if attempt == 4:
                    log = (root / "log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None

    # --- faults (SCALE.md §4): the cluster's data stays, its port too ----------------------

    def start_again(self) -> None:
        """Start the server (after `crash`) on the same port, with the same settings."""
        log = str(self.data.parent / "log")
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", log, "-o", self._options)

    def restart(self) -> None:
        """``pg_ctl restart``: a fast shutdown (every session ended) and a start again."""
        log = str(self.data.parent / "log")
        self._run(
            "pg_ctl", "restart", "-w", "-m", "fast", "-D", str(self.data), "-l", log,
            "-o", self._options,
        )  # fmt: skip

    def crash(self) -> None:
        """Stop the server as a crash does (``pg_ctl stop -m immediate``: no shutdown
        checkpoint, so the next start recovers from the WAL); `start_again` brings it back."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its directory; harmless twice."""
        root, self._root = self._root, None
        if root is None:
            return
        atexit.unregister(self.stop)
        if (root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self._root = root
                try:
                    self._run("pg_ctl", "stop", "-D", str(root / "data"), "-m", "fast", "-w")
                finally:
                    self._root = None
        shutil.rmtree(root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL to *database* of this cluster, password included."""
        return f"postgresql://{_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url(), autocommit=True, connect_timeout=10)

    def create_database(self) -> str:
        """A new empty database of its own: its URL."""
        name = f"hub_test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Remove the database of *url*, ending any connection still open to it."""
        name = urllib.parse.urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_schema(self) -> str:
        """A new empty schema in the cluster's shared test database: a URL whose connections
        see only it (``search_path``). A few milliseconds, where a database takes a second
        on a busy machine."""
        name = f"hub_test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        options = urllib.parse.quote(f"-csearch_path={name}")
        return f"{self.url()}?options={options}"

    def drop_schema(self, url: str) -> None:
        """Remove the schema of a `create_schema` URL and everything in it."""
        options = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["options"][0]
        name = options.removeprefix("-csearch_path=")
        with self._admin() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def __repr__(self) -> str:
        return f"<PostgresCluster 127.0.0.1:{self.port} bindir={self.bindir}>"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def unavailable(reason: str) -> NoReturn:
    """Skip the test for *reason*; under ``CI=true`` fail it: CI must run every test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, and the PostgreSQL tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the whole test session (skips, or fails under CI, without one)."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql package, or "
            f"set {BINDIR_ENV} to the directory holding them"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install 'hub-core[postgres]'")
    cluster = PostgresCluster(bindir)
    # SIGTERM (a CI timeout, a killed job) would end the session without its teardown and
    # leave the server running: turn it into the KeyboardInterrupt pytest tears down after.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def postgres_url(postgres_server: PostgresCluster) -> Iterator[str]:
    """A fresh, empty schema of `postgres_server` for one test: a URL (with a password) whose
    connections see only that schema."""
    url = postgres_server.create_schema()
    try:
        yield url
    finally:
        postgres_server.drop_schema(url)
