"""hub-core's pytest plugin: the conformance check for plugin test suites. Opt-in.

pytest loads this module whenever hub-core is installed (entry point ``hub`` in group
``pytest11``), so it changes nothing by itself: it adds

- the ``hub_conformance`` fixture, for tests that ask for it::

      def test_plugin_conforms(hub_conformance):
          hub_conformance(hub_acme, happy=Routes({"GET /v1/me": respond(json={...})}))

- the option ``--hub-conformance=PLUGIN`` (repeatable), which adds one test item checking
  PLUGIN: the name of an installed ``hub`` entry point, or a module to import.

Loading it imports neither httpx nor trustme nor jsonschema: the check itself is imported only
when a test uses it. Disable it with ``-p no:hub``; without autoloading
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), enable it with ``-p hub_core.testing.pytest_plugin``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hub_core.testing.conformance import ConformanceReport

__all__ = ["HubConformanceItem", "hub_conformance"]

_OPTION = "--hub-conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--hub-conformance=PLUGIN``."""
    group = parser.getgroup("hub", "hub provider plugins")
    group.addoption(
        _OPTION,
        action="append",
        default=[],
        metavar="PLUGIN",
        dest="hub_conformance",
        help="also run hub's conformance check on PLUGIN: an installed 'hub' entry point "
        "name or a module name (repeatable)",
    )


@pytest.fixture
def hub_conformance() -> Callable[..., ConformanceReport]:
    """The conformance check: ``hub_conformance(plugin, **sample)`` fails the test with every
    broken point of the contract listed, and returns the report when all is well.

    It takes the arguments of `hub_core.testing.conformance.assert_conforms`.
    """
    from hub_core.testing.conformance import assert_conforms

    return assert_conforms


class HubConformanceItem(pytest.Item):
    """A test item that runs the conformance check on one plugin named on the command line."""

    def __init__(self, *, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target

    def runtest(self) -> None:
        """Load the plugin and check it; a failure lists every broken point."""
        from hub_core.testing.conformance import assert_conforms, load_plugin

        assert_conforms(load_plugin(self.target))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """Show the conformance report rather than a traceback into the check."""
        from hub_core.testing.conformance import ConformanceError

        if isinstance(excinfo.value, ConformanceError | LookupError):  # a report, or no plugin
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Name the item after the plugin it checks."""
        return self.path, None, f"hub conformance of {self.target}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add one conformance item per ``--hub-conformance`` plugin (none without the option)."""
    for target in config.getoption("hub_conformance", default=None) or ():
        items.append(
            HubConformanceItem.from_parent(
                session,
                name=f"hub-conformance[{target}]",
                nodeid=f"hub-conformance[{target}]",
                target=target,
            )
        )
