"""What every benchmark shares: figures, timed child processes, the machine, the table.

A `Figure` is one line of the table: a measured value, the baseline measured in the same run,
their ratio, and the target the ratio (or, for memory, the value) must meet. Times are never
compared with a fixed number: the machines this runs on are shared and noisy.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

#: How a figure passes: its ratio at most / at least the target, or its value at most it.
Check = Literal["ratio<=", "ratio>=", "value<=", "info"]


@dataclass
class Figure:
    """One measured figure: ``value`` against ``baseline``, as ``ratio = value / baseline``."""

    section: str
    name: str
    value: float
    baseline: float
    unit: str
    baseline_name: str
    check: Check = "info"
    target: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    #: A baseline this small is "nothing measurable": no ratio is shown (RSS growth of a
    #: client that keeps nothing, for instance).
    negligible: float = 0.0

    @property
    def ratio(self) -> float:
        if self.baseline <= max(self.negligible, 0.0):
            return float("nan")
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        """Whether the target is met; None for a figure reported for information only."""
        if self.check == "info" or self.target is None:
            return None
        if self.check == "ratio<=":
            return self.ratio <= self.target
        if self.check == "ratio>=":
            return self.ratio >= self.target
        return self.value <= self.target

    @property
    def target_text(self) -> str:
        if self.check == "info" or self.target is None:
            return "-"
        if self.check == "value<=":
            return f"≤ {self.target:g} {self.unit}"
        return f"{'≤' if self.check == 'ratio<=' else '≥'} {self.target:g}×"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        ratio = round(self.ratio, 4) if math.isfinite(self.ratio) else None
        data.update(ratio=ratio, target_text=self.target_text, passed=self.passed)
        return data


# --- child processes ------------------------------------------------------------------------


@dataclass
class Run:
    """One finished child process: wall and CPU seconds, peak RSS, exit status, output."""

    wall: float
    cpu: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


def which(name: str) -> str:
    """The absolute path of *name*: next to this interpreter first (the bench venv), else PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: {name} is not installed; run the benchmarks with `nox -s bench`")
    return found


def child_environ(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A clean environment for timed children: no PYTHON* or HUB_* settings leak in."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "HUB_")) and name not in ("VIRTUAL_ENV",)
    }
    env["PYTHONHASHSEED"] = "0"
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> Run:
    """Run *argv* to its end; time it from spawn to reap, and take its rusage from wait4.

    ``posix_spawn`` and ``wait4`` rather than `subprocess`: the child's own CPU time and peak
    RSS come with its exit status, and the parent does as little as possible meanwhile.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        open(os.devnull, "rb") as stdin,
    ):
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin.fileno(), 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        started = time.perf_counter()
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Run(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            max_rss_kib=usage.ru_maxrss,
            returncode=os.waitstatus_to_exitcode(status),
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def await_listening(
    process: subprocess.Popen[bytes], address: tuple[str, int], timeout: float
) -> str | None:
    """Wait until a server child accepts connections at *address*; else say why it did not."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            return "exited"
        with contextlib.suppress(OSError), socket.create_connection(address, 0.2):
            return None
        if time.monotonic() > deadline:
            return f"did not start listening within {timeout:g} s"
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server child: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """The CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check(run: Run, what: str) -> Run:
    """Fail loudly when a timed command failed: a ratio of a broken run means nothing."""
    if run.returncode != 0:
        raise SystemExit(
            f"bench: {what} exited with {run.returncode}\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
        )
    return run


@dataclass
class Timing:
    """Repeated runs of one command: the median wall and CPU time, and the spread."""

    label: str
    walls: list[float]
    cpus: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpus)

    def summary(self) -> dict[str, Any]:
        walls = sorted(self.walls)
        return {
            "runs": len(walls),
            "median_s": round(self.median, 5),
            "min_s": round(walls[0], 5),
            "max_s": round(walls[-1], 5),
            "stdev_s": round(statistics.stdev(walls), 5) if len(walls) > 1 else 0.0,
            "cpu_median_s": round(self.cpu_median, 5),
        }


def compare(
    commands: Mapping[str, Sequence[str]],
    env: Mapping[str, str],
    *,
    runs: int,
    warmups: int,
    expect: Mapping[str, str] | None = None,
    reject: Mapping[str, str] | None = None,
    before: Mapping[str, Callable[[], None]] | None = None,
) -> dict[str, Timing]:
    """Time several commands hyperfine-style, interleaved so that drift hits each alike.

    Each command first runs *warmups* times untimed (bytecode caches, page cache), then the
    commands take turns, *runs* rounds, the order rotating every round. *before[label]* runs
    (untimed) before each run of that command. A command that exits non-zero, whose output
    lacks its *expect* text or holds its *reject* text, stops the benchmark: a ratio of a
    broken run means nothing.
    """
    labels = list(commands)

    def one(label: str) -> Run:
        if before and label in before:
            before[label]()
        run = check(spawn(commands[label], env), label)
        wanted = (expect or {}).get(label)
        if wanted is not None and wanted not in run.stdout:
            raise SystemExit(f"bench: {label} did not print {wanted!r}:\n{run.stdout[-2000:]}")
        unwanted = (reject or {}).get(label)
        if unwanted is not None and unwanted in run.stdout:
            raise SystemExit(f"bench: {label} printed {unwanted!r}:\n{run.stdout[-2000:]}")
        return run

    for label in labels:
        for _ in range(warmups):
            one(label)
    timings = {label: Timing(label, [], []) for label in labels}
    for round_ in range(runs):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            run = one(label)
            timings[label].walls.append(run.wall)
            timings[label].cpus.append(run.cpu)
    return timings


# --- the machine and the report -------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures come from: the README quotes this with the results."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def table(figures: Sequence[Figure]) -> str:
    """The figures as a Markdown table (what the README shows and the session prints)."""
    header = ("figure", "value", "baseline", "ratio", "target", "pass")
    rows = [header, tuple("---" for _ in header)]
    for figure in figures:
        verdict = {True: "yes", False: "**NO**", None: "-"}[figure.passed]
        rows.append(
            (
                figure.name,
                _amount(figure.value, figure.unit),
                f"{_amount(figure.baseline, figure.unit)} ({figure.baseline_name})",
                f"{figure.ratio:.2f}×" if math.isfinite(figure.ratio) else "n/a",
                figure.target_text,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    )


def _amount(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "KiB":
        return f"{value:.2f} KiB"
    if unit == "µs":
        return f"{value:.0f} µs"
    return f"{value:.3g} {unit}"
