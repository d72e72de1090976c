"""Distributed checks: `hub check --all` on PostgreSQL with 1, 2 and 4 workers against SQLite.

Every run checks the same N stored accounts (each with a key of its own) against the bulk
section's fake Elastic Cloud (the same route and TLS: fake_elastic.py's app, served by
counting_elastic.py, which also counts the requests of each key). The configurations take
turns, the order rotating every round:

- **SQLite**: today's ``hub check --all --concurrency 50`` over a fresh copy of a SQLite store;
- **PostgreSQL, W workers** (W = 1, 2, 4): W ``hub check --all --concurrency 50`` processes
  started together against a fresh copy of a PostgreSQL database (``CREATE DATABASE ...
  TEMPLATE``), in a cluster this bench starts itself (`hub_core.testing.postgres`).

Then one more run of 4 workers with a short ``--lease``, one of them killed with SIGKILL
once half the verdicts are recorded: the time the others take to finish, and nothing lost.

Each run measures its wall time (the first spawn to the last exit), each worker's CPU (wait4)
and peak RSS (``VmHWM``, said by core/tests/peak_rss.py as it exits), PostgreSQL's CPU (its
processes, from /proc), the fake server's CPU, the statements PostgreSQL ran
(pg_stat_statements, else transactions from pg_stat_database), the verdicts recorded (a
trigger inserts one row per ``UPDATE`` of ``checked_at``) and the requests per key at the
server. See README.md, "Distributed", for what each figure means.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulk import Server, Unavailable, bulk_environ, fake_elastic
from measure import Figure
from storage import PEAK_RSS, key

SECTION = "distributed"
CONCURRENCY = 50
WORKERS = (1, 2, 4)
#: The kill run's lease: long enough for a batch of 500 checks with four workers sharing two
#: cores, short enough that the killed worker's accounts come back within the run.
KILL_LEASE = "10s"
TEMPLATE = "bench_template"
SQLITE, POSTGRES = "SQLite", "PostgreSQL"

#: Counts every recorded verdict: hub writes one as an UPDATE that sets checked_at (leasing
#: and releasing never set it). The same rows on both backends; its cost is in each path's
#: CPU (the worker's on SQLite, PostgreSQL's there).
SQLITE_TRIGGER = (
    "CREATE TABLE bench_verdicts (id TEXT NOT NULL)",
    "CREATE TRIGGER bench_count AFTER UPDATE OF checked_at ON accounts"
    " BEGIN INSERT INTO bench_verdicts VALUES (NEW.id); END",
)
POSTGRES_TRIGGER = (
    "CREATE TABLE bench_verdicts (id text NOT NULL)",
    "CREATE FUNCTION bench_count() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN INSERT INTO bench_verdicts VALUES (NEW.id); RETURN NULL; END $$",
    "CREATE TRIGGER bench_count AFTER UPDATE OF checked_at ON accounts"
    " FOR EACH ROW EXECUTE FUNCTION bench_count()",
)
COUNT_VERDICTS = "SELECT count(*), count(DISTINCT id) FROM bench_verdicts"
COUNT_LOST = "SELECT count(*) FROM accounts WHERE id NOT IN (SELECT id FROM bench_verdicts)"
#: The same on PostgreSQL, as an anti-join: its `NOT IN` hashes the subquery only when it fits in
#: work_mem, else compares each account with every verdict (hours at 1,000,000: `--full`).
COUNT_LOST_POSTGRES = (
    "SELECT count(*) FROM accounts AS a"
    " WHERE NOT EXISTS (SELECT 1 FROM bench_verdicts AS v WHERE v.id = a.id)"
)
CHECKED = re.compile(r"Checked (\d+) accounts?: \1 active\.")


# --- the fake provider, counting --------------------------------------------------------------


def server_control(server: Server, path: str) -> dict[str, Any]:
    """A control path of counting_elastic.py, over its TLS (the bench's own call, by address:
    the certificate names the provider's hosts, so only the host name check is off)."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    context.check_hostname = False
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(f"https://{server.address}{path}", timeout=30) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


# --- PostgreSQL -------------------------------------------------------------------------------


def _cluster() -> Any:
    """A `PostgresCluster` of the test kit, not yet started; `Unavailable` when there is none."""
    try:
        from hub_core.testing.postgres import PostgresCluster, find_bindir
    except ImportError as exc:  # pytest (the test kit's) or psycopg missing
        raise Unavailable(f"cannot import hub_core.testing.postgres: {exc}") from None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("psycopg is not installed: install hub-core[postgres]") from None
    bindir = find_bindir()
    if bindir is None:
        raise Unavailable("no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")

    class BenchCluster(PostgresCluster):
        """The test kit's throwaway cluster, with pg_stat_statements when it can be loaded."""

        statements = False

        def enable_statements(self) -> str:
            """Load pg_stat_statements (a restart); say why not when it cannot be."""
            import psycopg

            log = str(self.data.parent / "log")
            try:
                with self._admin() as conn:
                    conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
                # pg_ctl restart keeps the options the cluster was started with (postmaster.opts).
                self._run("pg_ctl", "restart", "-w", "-m", "fast", "-D", str(self.data), "-l", log)
                with self._admin() as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            except (RuntimeError, psycopg.Error) as exc:
                with contextlib.suppress(RuntimeError, psycopg.Error), self._admin() as conn:
                    conn.execute("ALTER SYSTEM RESET shared_preload_libraries")
                    self._run("pg_ctl", "restart", "-w", "-D", str(self.data), "-l", log)
                return f"pg_stat_statements could not be loaded ({exc})"
            self.statements = True
            return ""

        def postmaster(self) -> int:
            return int((self.data / "postmaster.pid").read_text().split()[0])

        def cpu_seconds(self) -> float:
            """CPU seconds of every PostgreSQL process so far: the postmaster's own, its live
            children's, and the children it has reaped (cutime: backends that have exited)."""
            postmaster = self.postmaster()
            total = 0.0
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    fields = _stat(int(entry.name))
                    if int(fields[1]) == postmaster:
                        total += _ticks(fields, 11, 12)
            fields = _stat(postmaster)
            return total + _ticks(fields, 11, 12, 13, 14)

        def connect(self, database: str) -> Any:
            import psycopg

            return psycopg.connect(self.url(database), autocommit=True, connect_timeout=10)

    return BenchCluster(bindir)


def _stat(pid: int) -> list[str]:
    # Fields after the command name: fields[0] is stat(5)'s field 3 (state), [1] the ppid.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _ticks(fields: Sequence[str], *indexes: int) -> float:
    return sum(int(fields[i]) for i in indexes) / os.sysconf("SC_CLK_TCK")


# --- filling the stores -----------------------------------------------------------------------


def _save_first(store: Any) -> None:
    """Account 0 through `Store.save`, as `hub link` stores it: the row the others copy."""
    from hub_core import Hub, Verified

    hub = Hub(enable=["elastic"])
    credentials = hub.validate("elastic", {"api_key": key(0)})
    verified = Verified(
        identity="org:0",
        label="Bench org 0",
        details={"organization_id": "0", "organization_name": "Bench"},
    )
    store.save("elastic", verified, credentials)


def encrypted_keys(ring: Any, count: int) -> list[tuple[int, bytes]]:
    """Each account's own key (1 to count − 1), encrypted as `Store.save` encrypts it."""
    return [
        (number, ring.encrypt(json.dumps({"api_key": key(number)}).encode("utf-8"))[1])
        for number in range(1, count)
    ]


def fill_sqlite(home: Path, secret_key: str, count: int) -> list[tuple[int, bytes]]:
    """*count* accounts in ``home/hub.db``: one saved, the rest copied from it in SQL, each
    with its own key, id, identity and label; then the verdict trigger. Returns the keys."""
    from hub_core.store import Store

    with Store(home / "hub.db", secret_key=secret_key) as store:
        _save_first(store)
        tokens = encrypted_keys(store.key_ring, count)
    conn = sqlite3.connect(home / "hub.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(accounts)")]
    made = {
        "id": "printf('%016x', k.x)",
        "identity": "'org:' || k.x",
        "label": "'Bench org ' || k.x",
        "details": "json_object('organization_id', CAST(k.x AS TEXT), 'organization_name',"
        " 'Bench')",
        "secrets": "k.secrets",
    }
    select = ", ".join(made.get(column, f"a.{column}") for column in columns)
    with conn:
        conn.execute("CREATE TEMP TABLE bench_keys (x INTEGER PRIMARY KEY, secrets BLOB)")
        conn.executemany("INSERT INTO bench_keys VALUES (?, ?)", tokens)
        conn.execute(
            f"INSERT INTO accounts ({', '.join(columns)}) SELECT {select}"  # noqa: S608 (no value in it)
            " FROM bench_keys AS k, (SELECT * FROM accounts ORDER BY rowid DESC LIMIT 1) AS a"
        )
        for statement in SQLITE_TRIGGER:
            conn.execute(statement)
    conn.execute("VACUUM")
    conn.close()
    return tokens


def fill_postgres(
    cluster: Any, secret_key: str, count: int, tokens: Sequence[tuple[int, bytes]]
) -> None:
    """The same *count* accounts in the database TEMPLATE of *cluster* (the copy of each run)."""
    from hub_core.store_postgres import PostgresStore

    with cluster.connect("postgres") as admin:
        admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    with PostgresStore(cluster.url(TEMPLATE), secret_key=secret_key) as store:
        _save_first(store)
    with cluster.connect(TEMPLATE) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bench_keys (x bigint PRIMARY KEY, secrets bytea)")
        with cur.copy("COPY bench_keys (x, secrets) FROM STDIN") as copy:
            for row in tokens:
                copy.write_row(row)
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'accounts'"
            " AND table_schema = current_schema() ORDER BY ordinal_position"
        )
        columns = [row[0] for row in cur.fetchall() if row[0] != "seq"]
        made = {
            "id": "lpad(to_hex(k.x), 16, '0')",
            "identity": "'org:' || k.x",
            "label": "'Bench org ' || k.x",
            "details": "json_build_object('organization_id', k.x::text,"
            " 'organization_name', 'Bench')::text",
            "secrets": "k.secrets",
        }
        select = ", ".join(made.get(column, f"a.{column}") for column in columns)
        cur.execute(
            f"INSERT INTO accounts ({', '.join(columns)}) SELECT {select}"  # noqa: S608 (no value in it)
            " FROM bench_keys AS k, (SELECT * FROM accounts ORDER BY seq DESC LIMIT 1) AS a"
        )
        for statement in POSTGRES_TRIGGER:
            cur.execute(statement)
        cur.execute("VACUUM ANALYZE")


# --- the workers ------------------------------------------------------------------------------


@dataclass
class Worker:
    """One `hub check --all` process: spawned, then reaped with its rusage."""

    pid: int
    out: Any
    err: Any
    ended: float = 0.0
    cpu: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def peak_kib(self) -> int | None:
        found = re.findall(r"VmHWM:\s+(\d+) kB", self.stderr)
        return int(found[-1]) if found else None

    @property
    def checked(self) -> int:
        found = CHECKED.search(self.stdout)
        if found:
            return int(found.group(1))
        # A worker that joins when the others have leased everything checks nothing; the
        # CLI then says "Checked 0 accounts: ." (a small run only).
        if "No linked account to check." in self.stdout or "Checked 0 accounts" in self.stdout:
            return 0
        raise SystemExit(
            f"bench: a worker did not report all active ({self.returncode}):\n"
            f"{self.stdout[-1500:]}{self.stderr[-1500:]}"
        )


def start_worker(argv: Sequence[str], env: dict[str, str]) -> Worker:
    # Read and closed by `reap` when the worker has exited.
    out = tempfile.TemporaryFile()  # noqa: SIM115
    err = tempfile.TemporaryFile()  # noqa: SIM115
    with open(os.devnull, "rb") as stdin:
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions)
    return Worker(pid, out, err)


def reap(workers: Sequence[Worker], tick: Callable[[], None] | None = None) -> None:
    """Wait for every worker (polling, so that *tick* can run meanwhile)."""
    pending = list(workers)
    while pending:
        for worker in list(pending):
            pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
            if pid == 0:
                continue
            worker.ended = time.perf_counter()
            worker.cpu = usage.ru_utime + usage.ru_stime
            worker.returncode = os.waitstatus_to_exitcode(status)
            for stream, name in ((worker.out, "stdout"), (worker.err, "stderr")):
                stream.seek(0)
                setattr(worker, name, stream.read().decode("utf-8", "replace"))
                stream.close()
            pending.remove(worker)
        if pending:
            if tick is not None:
                tick()
            time.sleep(0.02)


def stop_workers(workers: Sequence[Worker]) -> None:
    """SIGKILL every worker still running and wait for it."""
    for worker in workers:
        if worker.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
            worker.out.close()
            worker.err.close()


def worker_argv(lease: str) -> list[str]:
    # core/tests/peak_rss.py runs hub's CLI as the `hub` script does and says its VmHWM.
    return [
        sys.executable, str(PEAK_RSS), "check", "--all",
        "--concurrency", str(CONCURRENCY), "--lease", lease,
    ]  # fmt: skip


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Sample:
    """One run of one configuration."""

    backend: str
    workers: int
    count: int
    wall: float
    worker_cpu: float
    server_cpu: float
    pg_cpu: float
    peaks_kib: list[int]
    checked: list[int]
    verdicts: int
    distinct: int
    lost: int
    server: dict[str, Any]
    statements: int | None = None
    top_statements: list[tuple[int, str]] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    killed_after: float | None = None
    after_kill: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.wall

    @property
    def cpu(self) -> float:
        return self.worker_cpu + self.server_cpu + self.pg_cpu

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "wall_s": round(self.wall, 3),
            "checks_per_s": round(self.rate, 1),
            "cpu_per_check_us": {
                "workers": round(self.worker_cpu / self.count * 1e6, 1),
                "postgresql": round(self.pg_cpu / self.count * 1e6, 1),
                "server": round(self.server_cpu / self.count * 1e6, 1),
            },
            "cores_busy": round(self.cpu / self.wall, 2),
            "peak_rss_mib": [round(peak / 1024, 1) for peak in self.peaks_kib],
            "checked_per_worker": self.checked,
            "verdicts": self.verdicts,
            "duplicates": self.verdicts - self.distinct,
            "lost": self.lost,
            "server": self.server,
            "statements": self.statements,
            "top_statements": self.top_statements,
            "load_average_1m": list(self.load),
            "killed_after_s": self.killed_after,
            "finished_after_kill_s": self.after_kill,
        }


class Bench:
    """The fixtures every run shares: the server, the cluster, the filled stores."""

    def __init__(self, work: Path, server: Server, cluster: Any, secret_key: str, count: int):
        self.work, self.server, self.cluster = work, server, cluster
        self.secret_key, self.count = secret_key, count
        self.runs = 0

    def environ(self, home: Path, url: str | None) -> dict[str, str]:
        env = bulk_environ(self.server, home)
        env["HUB_SECRET_KEY"] = self.secret_key
        if url is not None:
            env["HUB_DATABASE_URL"] = url
        return env

    def run(
        self, backend: str, workers: int, *, lease: str = "5m", kill_at: float | None = None
    ) -> Sample:
        self.runs += 1
        home = self.work / f"run-{self.runs}"
        database = f"bench_run_{self.runs}"
        if backend == SQLITE:
            shutil.copytree(self.work / "sqlite", home)
            url = None
        else:
            home.mkdir()
            with self.cluster.connect("postgres") as admin:
                admin.execute(
                    f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY'
                )
            url = self.cluster.url(database)
            if self.cluster.statements:
                with self.cluster.connect("postgres") as admin:
                    admin.execute("SELECT pg_stat_statements_reset()")
        server_control(self.server, f"/_bench/reset?keys={self.count}")
        env = self.environ(home, url)
        argv = worker_argv(lease)
        watch = self.cluster.connect(database) if kill_at is not None else None
        killed: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        pg_before = self.cluster.cpu_seconds()
        server_before = self.server.cpu_seconds()
        started = time.perf_counter()
        spawned = [start_worker(argv, env) for _ in range(workers)]

        def tick() -> None:
            # The kill run: SIGKILL the first worker once half the verdicts are recorded.
            if watch is None or killed or kill_at is None:
                return
            (recorded,) = watch.execute("SELECT count(*) FROM bench_verdicts").fetchone()
            if recorded >= kill_at * self.count:
                os.kill(spawned[0].pid, signal.SIGKILL)
                killed["at"] = time.perf_counter()

        try:
            reap(spawned, tick)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the workers go too, rather than check on alone
            # for an hour against a server and a store that are gone.
            stop_workers(spawned)
            raise
        ended = max(worker.ended for worker in spawned)
        wall = ended - started
        time.sleep(0.2)  # the backends of the workers' connections end and are reaped
        server_cpu = self.server.cpu_seconds() - server_before
        pg_cpu = self.cluster.cpu_seconds() - pg_before
        if watch is not None:
            watch.close()
        survivors = [w for w in spawned if not (killed and w is spawned[0])]
        for worker in survivors:
            if worker.returncode != 0:
                raise SystemExit(
                    f"bench: a {backend} worker exited with {worker.returncode}:\n"
                    f"{worker.stdout[-1500:]}{worker.stderr[-1500:]}"
                )
        if kill_at is not None and not killed:
            raise SystemExit("bench: the kill run ended before a worker could be killed")
        checked = [worker.checked for worker in survivors]
        if not killed and sum(checked) != self.count:
            raise SystemExit(f"bench: {backend} x{workers} checked {sum(checked)} accounts")
        counts = server_control(self.server, "/_bench/counts")
        sample = Sample(
            backend=backend,
            workers=workers,
            count=self.count,
            wall=wall,
            worker_cpu=sum(worker.cpu for worker in spawned),
            server_cpu=server_cpu,
            pg_cpu=pg_cpu,
            peaks_kib=[peak for worker in survivors if (peak := worker.peak_kib) is not None],
            checked=checked,
            verdicts=0,
            distinct=0,
            lost=0,
            server=counts,
            load=(round(load_before, 2), round(os.getloadavg()[0], 2)),
        )
        if killed:
            sample.killed_after = round(killed["at"] - started, 2)
            sample.after_kill = round(ended - killed["at"], 2)
        if backend == SQLITE:
            conn = sqlite3.connect(home / "hub.db")
            sample.verdicts, sample.distinct = conn.execute(COUNT_VERDICTS).fetchone()
            (sample.lost,) = conn.execute(COUNT_LOST).fetchone()
            conn.close()
            shutil.rmtree(home, ignore_errors=True)
        else:
            self._postgres_counts(sample, database)
        _progress(sample)
        return sample

    def _postgres_counts(self, sample: Sample, database: str) -> None:
        with self.cluster.connect(database) as conn:
            sample.verdicts, sample.distinct = conn.execute(COUNT_VERDICTS).fetchone()
            (sample.lost,) = conn.execute(COUNT_LOST_POSTGRES).fetchone()
        with self.cluster.connect("postgres") as admin:
            if self.cluster.statements:
                rows = admin.execute(
                    "SELECT s.calls, s.query FROM pg_stat_statements s"
                    " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s"
                    " ORDER BY s.calls DESC",
                    (database,),
                ).fetchall()
                sample.statements = sum(calls for calls, _ in rows)
                sample.top_statements = [
                    (calls, " ".join(query.split())[:100]) for calls, query in rows[:10]
                ]
            else:
                # Counted when each backend ends: they have ended with their workers.
                time.sleep(1.0)
                (xacts,) = admin.execute(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                    (database,),
                ).fetchone()
                sample.statements = int(xacts)
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def _progress(sample: Sample) -> None:
    what = f"{sample.backend} x{sample.workers}"
    if sample.after_kill is not None:
        what += f" (1 killed at {sample.killed_after:.1f} s)"
    per_check = sample.cpu / sample.count * 1e6
    peak = max(sample.peaks_kib, default=0) / 1024
    print(
        f"  {what:<32} {sample.rate:7,.0f} checks/s  {per_check:5.0f} µs CPU/check  "
        f"verdicts {sample.verdicts:,} (lost {sample.lost}, twice "
        f"{sample.verdicts - sample.distinct})  server repeated {sample.server['repeated']}, "
        f"missing {sample.server['missing']}  peak RSS {peak:.1f} MiB  "
        f"load {sample.load[0]:.1f}",
        flush=True,
    )


# --- the section ------------------------------------------------------------------------------


def distributed(count: int, reps: int, *, full: bool) -> tuple[list[Figure], dict[str, Any]]:
    """Every distributed figure, and notes (how statements were counted, the fill time);
    raise `Unavailable` without port 443 or PostgreSQL."""
    # SIGTERM (a killed job) becomes KeyboardInterrupt, so that the cluster and the server stop.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _distributed(count, reps, full=full)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _distributed(count: int, reps: int, *, full: bool) -> tuple[list[Figure], dict[str, Any]]:
    from hub_core.keyring import generate_key

    cluster = _cluster()
    secret_key = generate_key()
    notes: dict[str, Any] = {}
    configurations = [(SQLITE, 1)] + [(POSTGRES, workers) for workers in WORKERS]
    samples: dict[tuple[str, int], list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="hub-bench-distributed-") as tmp:
        work = Path(tmp)
        with fake_elastic(work, script="counting_elastic.py") as server:
            cluster.start()
            try:
                notes["statements"] = cluster.enable_statements() or "pg_stat_statements"
                started = time.perf_counter()
                (work / "sqlite").mkdir()
                tokens = fill_sqlite(work / "sqlite", secret_key, count)
                fill_postgres(cluster, secret_key, count, tokens)
                del tokens
                notes["fill_s"] = round(time.perf_counter() - started, 1)
                print(f"  stored {count:,} accounts in both stores in {notes['fill_s']} s")
                print(f"  statements counted by {notes['statements']}", flush=True)
                bench = Bench(work, server, cluster, secret_key, count)
                for rep in range(reps):
                    shift = rep % len(configurations)
                    for backend, workers in configurations[shift:] + configurations[:shift]:
                        sample = bench.run(backend, workers)
                        samples.setdefault((backend, workers), []).append(sample)
                kill = bench.run(POSTGRES, 4, lease=KILL_LEASE, kill_at=0.5)
            finally:
                cluster.stop()
    return _figures(count, samples, kill, notes, full=full), notes


# --- the figures ------------------------------------------------------------------------------


def _median(samples: Sequence[Sample], value: Callable[[Sample], float]) -> float:
    return statistics.median(value(sample) for sample in samples)


def _figures(
    count: int,
    samples: dict[tuple[str, int], list[Sample]],
    kill: Sample,
    notes: dict[str, Any],
    *,
    full: bool,
) -> list[Figure]:
    sqlite = samples[(SQLITE, 1)]
    pg = {workers: samples[(POSTGRES, workers)] for workers in WORKERS}
    everything = [sample for runs in samples.values() for sample in runs]

    def rate(runs: Sequence[Sample]) -> float:
        return count / _median(runs, lambda sample: sample.wall)

    def per_check(runs: Sequence[Sample], part: Callable[[Sample], float]) -> float:
        """Median CPU µs per check of *part* over *runs*."""
        return _median(runs, part) / count * 1e6

    def total(sample: Sample) -> float:
        return sample.cpu

    def hub_cpu(sample: Sample) -> float:
        return sample.worker_cpu

    def runs_json(runs: Sequence[Sample]) -> list[dict[str, Any]]:
        return [sample.to_json() for sample in runs]

    def workers(n: int) -> str:
        return f"{n} PostgreSQL worker{'s' * (n != 1)}"

    sqlite_name = "hub check --all on SQLite"
    figures = [
        Figure(
            section=SECTION,
            name=f"checks/s, 1 PostgreSQL worker, {count:,} accounts",
            value=rate(pg[1]),
            baseline=rate(sqlite),
            unit="req/s",
            baseline_name=sqlite_name,
            check="ratio>=",
            target=0.9,
            details={"postgresql": runs_json(pg[1]), "sqlite": runs_json(sqlite)},
        )
    ]
    for n in WORKERS[1:]:
        figures.append(
            Figure(
                section=SECTION,
                name=f"checks/s, {workers(n)} together",
                value=rate(pg[n]),
                baseline=rate(pg[1]),
                unit="req/s",
                baseline_name="1 PostgreSQL worker",
                details={"runs": runs_json(pg[n]), "vs SQLite": rate(pg[n]) / rate(sqlite)},
            )
        )
    for n in WORKERS:
        figures.append(
            Figure(
                section=SECTION,
                name=f"CPU per check (workers + PostgreSQL + server), {workers(n)}",
                value=per_check(pg[n], total),
                baseline=per_check(sqlite, total),
                unit="µs",
                baseline_name="SQLite: the worker + server",
                details={
                    "workers_us": per_check(pg[n], hub_cpu),
                    "postgresql_us": per_check(pg[n], lambda sample: sample.pg_cpu),
                    "server_us": per_check(pg[n], lambda sample: sample.server_cpu),
                    "sqlite_worker_us": per_check(sqlite, hub_cpu),
                    "sqlite_server_us": per_check(sqlite, lambda sample: sample.server_cpu),
                },
            )
        )
    for n in (1, WORKERS[-1]):
        overhead = per_check(pg[n], total) - per_check(sqlite, total)
        figures.append(
            Figure(
                section=SECTION,
                name=f"lease overhead per check, {workers(n)}",
                value=overhead,
                baseline=per_check(sqlite, hub_cpu),
                unit="µs",
                baseline_name="hub's CPU per check on SQLite",
                check="ratio<=" if n == 1 else "info",
                target=0.15 if n == 1 else None,
                details={
                    "of_the_whole_sqlite_check": overhead / per_check(sqlite, total),
                    "sqlite_total_us": per_check(sqlite, total),
                },
            )
        )
    source = notes["statements"]
    unit, counter = "statements", "pg_stat_statements"
    if source != "pg_stat_statements":
        unit, counter = "transactions", "pg_stat_database"
    for n in (1, WORKERS[-1]):
        counted = [sample for sample in pg[n] if sample.statements is not None]
        figures.append(
            Figure(
                section=SECTION,
                name=f"{unit} per check ({counter}), {workers(n)}",
                value=_median(counted, lambda sample: sample.statements or 0) / count,
                baseline=1.0,
                unit=unit,
                baseline_name="one check",
                details={"top_statements": counted[0].top_statements, "source": source},
            )
        )
    duplicates = sum(sample.verdicts - sample.distinct for sample in [*everything, kill])
    lost = sum(sample.lost for sample in [*everything, kill])
    checked = count * (len(everything) + 1)
    figures += [
        Figure(
            section=SECTION,
            name="verdicts recorded twice, every run and the kill",
            value=duplicates,
            baseline=checked,
            unit="verdicts",
            baseline_name="accounts checked",
            check="value<=",
            target=0,
        ),
        Figure(
            section=SECTION,
            name="accounts lost (no verdict), every run and the kill",
            value=lost,
            baseline=checked,
            unit="accounts",
            baseline_name="accounts checked",
            check="value<=",
            target=0,
        ),
        Figure(
            section=SECTION,
            name="keys asked twice at the server, every run but the kill",
            value=sum(sample.server["repeated"] for sample in everything),
            baseline=count * len(everything),
            unit="keys",
            baseline_name="keys",
            check="value<=",
            target=0,
            details={"runs": [sample.server for sample in everything]},
        ),
        Figure(
            section=SECTION,
            name="keys never asked at the server, every run and the kill",
            value=sum(sample.server["missing"] for sample in [*everything, kill]),
            baseline=checked,
            unit="keys",
            baseline_name="keys",
            check="value<=",
            target=0,
        ),
    ]
    pg_peaks = [peak / 1024 for n in WORKERS for sample in pg[n] for peak in sample.peaks_kib]
    sqlite_peaks = [peak / 1024 for sample in sqlite for peak in sample.peaks_kib]
    figures.append(
        Figure(
            section=SECTION,
            name=f"peak RSS per PostgreSQL worker, {count:,} accounts",
            value=max(pg_peaks),
            baseline=max(sqlite_peaks),
            unit="MiB",
            baseline_name="the SQLite worker",
            # The ceiling is for a million accounts (--full); smaller runs show the figure.
            check="value<=" if full else "info",
            target=150 if full else None,
            details={"postgresql_mib": pg_peaks, "sqlite_mib": sqlite_peaks},
        )
    )
    assert kill.killed_after is not None
    assert kill.after_kill is not None
    figures += [
        Figure(
            section=SECTION,
            name=f"finish after 1 of 4 workers is killed (--lease {KILL_LEASE})",
            value=kill.after_kill,
            # Killed at half the verdicts: three workers do the other half, and the killed
            # one's leases come back when they expire.
            baseline=kill.killed_after,
            unit="s",
            baseline_name="the first half, 4 workers",
            details={"run": kill.to_json()},
        ),
        Figure(
            section=SECTION,
            name="keys asked again after the kill",
            value=kill.server["repeated"],
            # A worker holds at most two leases of 500 (the batch in flight and the next).
            baseline=1000,
            unit="keys",
            baseline_name="two leases of 500",
        ),
    ]
    # On their own hosts each worker has a core of its own; PostgreSQL its host's cores.
    hub_per_check = _median(pg[1], hub_cpu) / count
    pg_per_check = _median(pg[WORKERS[-1]], lambda sample: sample.pg_cpu) / count
    cores = os.cpu_count() or 1
    for n in WORKERS:
        projected = min(n / hub_per_check, cores / pg_per_check)
        figures.append(
            Figure(
                section=SECTION,
                name=f"projected checks/s, {n} worker{'s' * (n != 1)} on hosts of their own",
                value=projected,
                baseline=rate(pg[n]),
                unit="req/s",
                baseline_name="measured here, sharing 2 cores",
                details={
                    "worker_cpu_per_check_us": hub_per_check * 1e6,
                    "postgresql_cpu_per_check_us": pg_per_check * 1e6,
                    "postgresql_cores": cores,
                    "postgresql_ceiling": cores / pg_per_check,
                },
            )
        )
    return figures
