"""hub's benchmarks: ``nox -s bench`` runs this in a fresh environment (see README.md).

Prints a table and writes bench/results.json. Every figure is a ratio to a baseline measured
in the same run on the same machine; only memory also has an absolute ceiling.

    python bench/run.py [--quick | --full] [--only cold,discovery,store,bulk,web] [--update-readme]
    python bench/run.py --only distributed [--quick | --full]

The distributed section (PostgreSQL workers, about 15 minutes) runs only when named.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from measure import BENCH, Figure, machine, table

SECTIONS = ("cold", "discovery", "store", "bulk", "web", "distributed")
#: What runs without --only: the distributed section takes longer than all the others.
DEFAULT = SECTIONS[:-1]
README = BENCH / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller bulk sizes")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"sections to run ({','.join(SECTIONS)}; default {','.join(DEFAULT)})",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="bulk: also the peak RSS of hub check --all over 1,000,000 accounts (about 30"
        " minutes); distributed: 1,000,000 accounts (default 100,000) and the peak RSS ceiling",
    )
    parser.add_argument("--runs", type=int, help="timed runs per command (default 20, quick 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="distributed: rounds of the four configurations (default 2, --full 1)",
    )
    parser.add_argument("--output", type=Path, default=BENCH / "results.json")
    parser.add_argument(
        "--update-readme", action="store_true", help="write the results into bench/README.md"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    options = parser.parse_args(argv)
    options.only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = set(options.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    return options


def main(argv: Sequence[str]) -> int:
    options = parse(argv)
    quick = options.quick
    runs = options.runs or (5 if quick else 20)
    warmups = 1 if quick else 3
    sizes = (200, 1000) if quick else (1000, 10000)
    settings = {
        "quick": quick,
        "runs": runs,
        "warmups": warmups,
        "bulk_sizes": list(sizes),
        "bulk_reps": 1 if quick else 5,
        # As many `hub check --all` runs as check_many's: this machine's speed drifts by a
        # fifth from one run to the next, and two runs left the ratio to chance.
        "cli_reps": 1 if quick else 5,
        # One `hub check --all` over each, for its peak RSS (100,000: about 3 minutes).
        "rss_sizes": [] if quick else [100_000] + ([1_000_000] if options.full else []),
        # httpx's own pool manages ~170 requests/s here: at 10,000 it runs once, not 3 times.
        "httpx_max": sizes[-1],
        # The web section: load runs per page and server, requests per run (16 connections);
        # then one request at a time for the page time at 10,000 accounts.
        "web_reps": 2 if quick else 5,
        "web_requests": 500 if quick else 3000,
        "web_latency_requests": 100 if quick else 300,
        # The distributed section: accounts, and rounds of the four configurations.
        "distributed_accounts": 5000 if quick else 1_000_000 if options.full else 100_000,
        "distributed_reps": options.rounds or (1 if options.full else 2),
    }
    figures: list[Figure] = []
    skipped: dict[str, str] = {}
    started = time.monotonic()
    about = machine()
    print(f"bench: {about['cpu_model']}, {about['nproc']} CPUs, Python {about['python']}")

    if "cold" in options.only:
        _section("cold start")
        from startup import cold_start

        figures += _shown(cold_start(runs, warmups))
    if "discovery" in options.only:
        _section("discovery")
        from startup import discovery

        figures += _shown(discovery(runs, warmups))
    if "store" in options.only:
        _section("store")
        from storage import accounts_json, accounts_memory, populate

        with tempfile.TemporaryDirectory(prefix="hub-bench-store-") as tmp:
            seconds = populate(Path(tmp), 10000)
            print(f"  stored 10,000 accounts in {seconds:.1f} s (Store.save)")
            figures += _shown(accounts_json(Path(tmp), 10000, runs, warmups))
            figures += _shown(accounts_memory(Path(tmp), 10000, 100000))
    if "bulk" in options.only:
        _section("bulk checks")
        from bulk import Unavailable, bulk

        try:
            figures += _shown(
                bulk(
                    sizes,
                    reps=settings["bulk_reps"],
                    httpx_max=settings["httpx_max"],
                    cli_reps=settings["cli_reps"],
                    rss_sizes=settings["rss_sizes"],
                )
            )
        except Unavailable as exc:
            skipped["bulk"] = str(exc)
            print(f"  skipped: {exc}")

    if "web" in options.only:
        _section("web")
        from web import web

        figures += _shown(
            web(
                reps=settings["web_reps"],
                count=settings["web_requests"],
                latency_count=settings["web_latency_requests"],
            )
        )

    if "distributed" in options.only:
        _section("distributed")
        from bulk import Unavailable
        from distributed import distributed

        try:
            found, notes = distributed(
                settings["distributed_accounts"],
                settings["distributed_reps"],
                full=options.full,
            )
            figures += _shown(found)
            settings["distributed_notes"] = notes
        except Unavailable as exc:
            skipped["distributed"] = str(exc)
            print(f"  skipped: {exc}")

    elapsed = time.monotonic() - started
    about["load_average_end"] = list(machine()["load_average"])
    report = _report(about, settings, figures, skipped, elapsed)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    text = table(figures)
    print()
    print(text)
    missed = [figure.name for figure in figures if figure.passed is False]
    print()
    print(f"{len(figures)} figures in {elapsed:.0f} s; results in {options.output}")
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    for section, reason in skipped.items():
        print(f"section {section} skipped: {reason}")
    if options.update_readme:
        _update_readme(about, settings, text, report["finished_at"])
        print(f"results written into {README}")
    return 1 if options.strict and missed else 0


def _section(name: str) -> None:
    print(f"\n== {name}", flush=True)


def _shown(figures: list[Figure]) -> list[Figure]:
    for figure in figures:
        verdict = {True: "ok", False: "MISSED", None: ""}[figure.passed]
        ratio = f"{figure.ratio:.2f}×" if math.isfinite(figure.ratio) else "n/a"
        print(f"  {figure.name}: {ratio} {figure.baseline_name} {verdict}", flush=True)
    return figures


def _report(
    about: dict[str, Any],
    settings: dict[str, Any],
    figures: Sequence[Figure],
    skipped: dict[str, str],
    elapsed: float,
) -> dict[str, Any]:
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seconds": round(elapsed, 1),
        "machine": about,
        "settings": settings,
        "skipped": skipped,
        "passed": all(figure.passed is not False for figure in figures),
        "figures": [figure.to_json() for figure in figures],
    }


def _update_readme(about: dict[str, Any], settings: dict[str, Any], text: str, when: str) -> None:
    readme = README.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"bench: {README} has no {START} ... {END} block")
    load = ", ".join(f"{x:g}" for x in about["load_average"])
    block = "\n".join(
        [
            START,
            f"Measured {when[:10]} on {about['cpu_model']}, `nproc` {about['nproc']}, "
            f"Python {about['python']} ({about['platform']}); load average at the start "
            f"{load}; {settings['runs']} timed runs per command"
            f"{' (--quick)' if settings['quick'] else ''}.",
            "",
            text,
            END,
        ]
    )
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(head + block + tail)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
