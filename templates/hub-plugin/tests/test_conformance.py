"""hub's conformance check: the whole plugin contract, in one test.

``hub_conformance`` is a fixture of hub-core's pytest plugin (installed with hub-core). It
fails with every broken point listed: schema, guide, hosts, the flow's answers to 401, 403,
429, 5xx, timeouts, bad bodies, secrets in messages, the account display.
"""

from __future__ import annotations

from collections.abc import Callable

from hub_core.testing import Routes
from hub_core.testing.conformance import ConformanceReport

import hub_example


def test_the_plugin_keeps_the_hub_contract(
    hub_conformance: Callable[..., ConformanceReport], api: Routes
) -> None:
    report = hub_conformance(hub_example, happy=api)
    assert not report.skipped, report
