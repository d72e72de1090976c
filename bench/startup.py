"""Cold start and plugin discovery: whole commands, timed from spawn to exit.

Every command runs in the bench virtual environment, hyperfine-style (`measure.compare`):
warm-up runs first, then the target and its baseline take turns, and the medians are compared.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence

from dummies import Dummies
from measure import Figure, Timing, child_environ, compare, which

SECTION_COLD = "cold start"
SECTION_DISCOVERY = "discovery"


def _figure(
    name: str, timings: dict[str, Timing], value: str, baseline: str, target: float
) -> Figure:
    return Figure(
        section=SECTION_COLD,
        name=name,
        value=timings[value].median,
        baseline=timings[baseline].median,
        unit="s",
        baseline_name=baseline,
        check="ratio<=",
        target=target,
        details={label: timing.summary() for label, timing in timings.items()},
    )


def cold_start(runs: int, warmups: int) -> list[Figure]:
    """`hub --help`, `hub providers` and `import hub_core`, each against its baseline."""
    python, hub, hello = sys.executable, which("hub"), which("bench-hello")
    with tempfile.TemporaryDirectory(prefix="hub-bench-home-") as home:
        env = child_environ({"HUB_HOME": home})
        figures = []
        pairs: Sequence[tuple[str, dict[str, list[str]], dict[str, str], float]] = (
            (
                "hub --help",
                {"hub --help": [hub, "--help"], "click hello world": [hello]},
                {"hub --help": "Usage: hub", "click hello world": "Hello, world!"},
                1.5,
            ),
            (
                "hub providers (2 plugins)",
                {
                    "hub providers": [hub, "providers"],
                    "import httpx, click, pluggy, attrs": [
                        python,
                        "-c",
                        "import httpx, click, pluggy, attrs",
                    ],
                },
                {"hub providers": "elastic"},
                1.3,
            ),
            (
                "import hub_core",
                {
                    "import hub_core": [python, "-c", "import hub_core"],
                    "import httpx": [python, "-c", "import httpx"],
                },
                {},
                1.2,
            ),
        )
        for name, commands, expect, target in pairs:
            timings = compare(commands, env, runs=runs, warmups=warmups, expect=expect)
            value, baseline = list(commands)
            figures.append(_figure(name, timings, value, baseline, target))
    return figures


def discovery(runs: int, warmups: int, count: int = 100) -> list[Figure]:
    """`hub providers` with *count* dummy plugin distributions installed, against without."""
    hub = which("hub")
    with_dummies = f"hub providers, 2 + {count} plugins"
    without = "hub providers, 2 plugins"
    with tempfile.TemporaryDirectory(prefix="hub-bench-home-") as home, Dummies(count) as dummies:
        env = child_environ({"HUB_HOME": home})
        timings = compare(
            {with_dummies: [hub, "providers"], without: [hub, "providers"]},
            env,
            runs=runs,
            warmups=warmups,
            expect={with_dummies: f"dummy{count - 1:03d}", without: "elastic"},
            before={with_dummies: dummies.install, without: dummies.remove},
            reject={without: "dummy000"},
        )
    return [
        Figure(
            section=SECTION_DISCOVERY,
            name=f"hub providers with {count} more plugins",
            value=timings[with_dummies].median,
            baseline=timings[without].median,
            unit="s",
            baseline_name=without,
            check="ratio<=",
            target=1.3,
            details={label: timing.summary() for label, timing in timings.items()},
        )
    ]
