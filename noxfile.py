"""Development sessions: ``nox`` runs the whole suite (tests, lint, typecheck, selective).

uv creates the virtual environments when it is installed (``pip install "nox[uv]"``); plain
venv otherwise.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CORE = "./core"
PLUGINS = sorted(f"./{p.parent.relative_to(ROOT)}" for p in ROOT.glob("plugins/*/pyproject.toml"))

nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["tests", "lint", "typecheck", "selective"]
nox.options.error_on_missing_interpreters = True


def group(name: str) -> list[str]:
    """The requirements of one dependency group of the root pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["dependency-groups"][name])


def editable(*paths: str) -> list[str]:
    return [arg for path in paths for arg in ("-e", path)]


@nox.session
def tests(session: nox.Session) -> None:
    """Run every test: core, each plugin under plugins/, and the cross-distribution tests."""
    session.install(*editable(f"{CORE}[web,postgres]", *PLUGINS), *group("test"))
    session.run("coverage", "erase")
    # On every core, each idle worker taking tests from the busiest: the slow process tests
    # wait on real commands and servers more than they compute.
    session.run(
        "coverage", "run", "-m", "pytest", "-n", "auto", "--dist", "worksteal", *session.posargs
    )
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report", "--fail-under=85")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every distribution's sources."""
    session.install(*editable(f"{CORE}[web,postgres]", *PLUGINS), *group("typecheck"))
    session.run("mypy", f"{CORE}/src", *(f"{plugin}/src" for plugin in PLUGINS))


# Each combination installs into a fresh venv (not editable) and proves that exactly its
# providers are discovered and that no other first-party plugin can be imported.
SELECTIVE = {"core": [], **{Path(path).name: [path] for path in PLUGINS}}


@nox.session
@nox.parametrize("combination", list(SELECTIVE))
def selective(session: nox.Session, combination: str) -> None:
    """Install hub-core alone or with one plugin and check what is discovered."""
    plugins = SELECTIVE[combination]
    session.install(CORE, *plugins)
    session.run("python", "tests/selective_check.py", *(Path(p).name for p in plugins))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (bench/README.md): a table of ratios and bench/results.json; not in `nox`.

    Installs the distributions as users get them (wheels, not editable), rebuilt every time.
    ``nox -s bench -- --quick`` runs fewer rounds; ``-- --update-readme`` records the results;
    ``-- --only distributed`` runs the PostgreSQL workers' section (not run by default).
    """
    # hub-core with its web extra (the web section serves the real web Hub) and its postgres
    # extra (the distributed section's workers).
    ours = [f"{CORE}[web,postgres]", *PLUGINS, "./bench/hello"]
    # pip writes bytecode as it installs, uv only when asked: without it the first timed run
    # of each command would also compile every module it imports.
    compiled = {"UV_COMPILE_BYTECODE": "1"}
    # The distributed section starts its PostgreSQL with the test kit's PostgresCluster, whose
    # module imports pytest; only then is it installed, so that the cold-start figures
    # (`hub providers` reads every installed distribution) keep the environment they had.
    distributed = any("distributed" in arg for arg in session.posargs)
    session.install(*ours, *group("bench"), *(["pytest>=8"] if distributed else []), env=compiled)
    # Local directories are cached by their pyproject.toml: rebuild them so the code is current.
    session.install("--force-reinstall", "--no-deps", *ours, env=compiled)
    session.run("python", "bench/run.py", *session.posargs)
