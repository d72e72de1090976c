"""100 dummy plugin distributions for the discovery benchmark, installed the way pip would.

Each dummy is what a small third-party plugin looks like once installed: a package in
site-packages (one provider with one secret field, two hook implementations) and its
``.dist-info`` directory (``METADATA``, ``entry_points.txt`` naming it in group ``hub``,
``RECORD``, ``INSTALLER``). They are written once into a staging directory beside
site-packages and moved in and out of it by renaming, so the benchmark can alternate between
"2 plugins" and "2 + 100 plugins" without rewriting files; `Dummies.remove` always runs.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path
from types import TracebackType

MODULE = '''"""Dummy hub plugin {number:03d} of the discovery benchmark (bench/dummies.py)."""

from hub_core import Field, Guide, Provider, hookimpl

PROVIDER = Provider(
    id="dummy{number:03d}",
    name="Dummy provider {number:03d}",
    fields=(Field(name="api_key", label="API key", kind="secret"),),
    guide=Guide(warning="A provider of hub's discovery benchmark; it checks nothing."),
    hosts=("api.dummy{number:03d}.example",),
)


@hookimpl
def hub_providers():
    return [PROVIDER]


@hookimpl
def hub_validate_credentials(provider, credentials):
    return None
'''

METADATA = """Metadata-Version: 2.3
Name: hub-bench-dummy-{number:03d}
Version: 0.1.0
Summary: Dummy hub plugin {number:03d} of the discovery benchmark.
Requires-Python: >=3.11
Requires-Dist: hub-core
"""


def site_packages() -> Path:
    """The bench virtual environment's site-packages; refuses a system Python."""
    if sys.prefix == sys.base_prefix:
        raise SystemExit(
            "bench: the discovery benchmark writes into site-packages; run it in a venv"
        )
    return Path(sysconfig.get_paths()["purelib"])


class Dummies:
    """*count* dummy plugin distributions, installed into site-packages while inside ``with``."""

    def __init__(self, count: int = 100, site: Path | None = None) -> None:
        self.count = count
        self.site = site or site_packages()
        self.staging = self.site.parent / "hub-bench-dummies"
        self._names: list[str] = []

    def __enter__(self) -> Dummies:
        # Leftovers of a run that was killed half-way would skew every later baseline.
        for leftover in self.site.glob("hub_bench_dummy_*"):
            shutil.rmtree(leftover)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        for number in range(self.count):
            self._names += self._write(number)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
        shutil.rmtree(self.staging, ignore_errors=True)

    @property
    def installed(self) -> bool:
        return bool(self._names) and (self.site / self._names[0]).exists()

    def install(self) -> None:
        """Move every dummy into site-packages (a no-op when they are there)."""
        if not self.installed:
            for name in self._names:
                (self.staging / name).rename(self.site / name)

    def remove(self) -> None:
        """Move every dummy back out of site-packages (a no-op when they are not there)."""
        for name in self._names:
            if (self.site / name).exists():
                (self.site / name).rename(self.staging / name)

    def _write(self, number: int) -> list[str]:
        package = f"hub_bench_dummy_{number:03d}"
        dist_info = f"{package}-0.1.0.dist-info"
        (self.staging / package).mkdir()
        (self.staging / package / "__init__.py").write_text(MODULE.format(number=number))
        info = self.staging / dist_info
        info.mkdir()
        (info / "METADATA").write_text(METADATA.format(number=number))
        (info / "entry_points.txt").write_text(f"[hub]\ndummy{number:03d} = {package}\n")
        (info / "INSTALLER").write_text("hub-bench\n")
        (info / "top_level.txt").write_text(f"{package}\n")
        record = [f"{package}/__init__.py,,"] + [
            f"{dist_info}/{name},," for name in ("METADATA", "entry_points.txt", "INSTALLER")
        ]
        (info / "RECORD").write_text("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n")
        return [package, dist_info]
