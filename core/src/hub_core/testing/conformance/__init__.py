"""The conformance check: does a provider plugin keep the contract of `hub_core.hookspecs`?

    from hub_core.testing.conformance import check_plugin

    report = check_plugin(hub_acme, happy=Routes({"GET /v1/me": respond(json={...})}))
    assert report.ok, report

or, in a test suite with hub-core installed, the ``hub_conformance`` fixture, which fails the
test with every violation listed. For each provider the plugin declares, the check covers:

- the plugin registers, implements the hooks it needs, and answers only for its own providers;
- the schema: a secret field, defaults that pass their own validation, distinct labels, an
  HTTPS ``docs_url``; the exported JSON Schema is valid draft 2020-12 (with ``jsonschema``,
  from ``hub-core[testing]``) and accepts the sample values;
- a guide with sections, every section saying something; hosts that are DNS names;
- the flow, run with sample credentials whose secret is `hub_core.testing.CANARY`:
  it asks the provider at least once, sends only HTTPS requests to declared hosts, never puts
  a secret into a URL; with a happy-path responder it returns a `Verified` holding no secret;
- each standard answer (`SCENARIOS`: 401, 403, 404, 429 with Retry-After, 500, 503, a
  timeout, a refused connection, an unresolvable host, a 200 that is not JSON, an empty 200,
  a 200 of another shape, a redirect to another host) ends in the documented error, and a
  redirect within the same origin, which the core follows, still ends in `Verified`. Every
  flow runs as production runs it, under the core's own driver (`hub_core.flows.drive`) with
  the production `Policy`, against scripted answers on a virtual clock: retries, Retry-After,
  redirects and transport errors (real ``httpx`` exceptions) are the driver's, and no flow is
  asked to handle them itself. Error bodies echo the key, as some providers do; no error,
  repr, result or log record may show any piece of it. Errors name only declared fields. With
  a happy path of several requests, each failure is also injected at every later request:
  the flow must end in `Verified` or a documented error, never crash;
- the account display: a valid `AccountDisplay` (or None, for the default) for a sample
  account built from the happy path's result, for a bare account and for an expired one;
  links are HTTPS.

The check lives in one module per idea: `report` (what it found), `scenarios` (the standard
answers), `static` (what it reads without running a flow) and `dynamic` (what it runs).
Importing it imports httpx; `hub_core.testing.pytest_plugin` imports it only when a test asks
for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Iterable, Mapping
from importlib.metadata import entry_points

import attrs

from hub_core.errors import HubError, describe
from hub_core.hookspecs import PROJECT
from hub_core.plugins import Registry
from hub_core.testing import Responder

from .dynamic import ProviderCheck
from .report import ConformanceError, ConformanceReport, Finding, Findings
from .scenarios import DOCUMENTED_ERRORS, SCENARIOS, Scenario
from .static import check_provider, foreign_problems

__all__ = [
    "DOCUMENTED_ERRORS",
    "SCENARIOS",
    "ConformanceError",
    "ConformanceReport",
    "Finding",
    "Sample",
    "Scenario",
    "assert_conforms",
    "check_plugin",
    "load_plugin",
]

Expectation = type[HubError] | tuple[type[HubError], ...]


def _values(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


def _names_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _expectations(value: Mapping[str, Expectation]) -> dict[str, tuple[type[HubError], ...]]:
    return {name: kinds if isinstance(kinds, tuple) else (kinds,) for name, kinds in value.items()}


@attrs.frozen
class Sample:
    """What the check cannot guess from a provider's schema.

    *values* override `hub_core.testing.sample_values` (a tenant that fits a pattern, a key
    with a fixed prefix: keep `CANARY` inside secrets, so leaks are found). *happy* answers
    every request of a successful check (a `hub_core.testing.Routes`, or any function from
    request to response); without it the happy path, the same-origin redirect and the
    later-request checks are skipped. *expect* maps a scenario name to the error(s) this
    provider documents instead (say ``{"403": InvalidCredentials}``); *skip* names scenarios
    that cannot apply.
    """

    values: Mapping[str, str] = attrs.field(factory=dict, converter=_values)
    happy: Responder | None = None
    expect: Mapping[str, tuple[type[HubError], ...]] = attrs.field(
        factory=dict, converter=_expectations
    )
    skip: frozenset[str] = attrs.field(default=frozenset(), converter=_names_set)

    def __attrs_post_init__(self) -> None:
        known = {scenario.name for scenario in SCENARIOS}
        unknown = sorted((set(self.expect) | self.skip) - known)
        if unknown:
            raise ValueError(
                f"unknown scenario {', '.join(map(repr, unknown))}; scenarios are: "
                f"{', '.join(sorted(known))}"
            )
        for name, kinds in self.expect.items():
            if not kinds or not all(isinstance(k, type) and issubclass(k, HubError) for k in kinds):
                raise TypeError(f"expect[{name!r}] must be HubError subclasses")


def load_plugin(name: str) -> object:
    """The plugin called *name*: an installed ``hub`` entry point, or else a module to import.

    `LookupError` says which, in one line, when neither can be loaded.
    """
    installed = list(entry_points(group=PROJECT))
    for entry_point in installed:
        if entry_point.name == name:
            try:
                return entry_point.load()
            except Exception as exc:
                raise LookupError(
                    f"the hub entry point {name!r} ({entry_point.value}) cannot be loaded: "
                    f"{describe(exc)}"
                ) from exc
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not name.startswith(exc.name):
            raise  # the module exists; something it imports does not
        names = ", ".join(sorted(entry_point.name for entry_point in installed)) or "none"
        raise LookupError(
            f"no installed hub entry point and no module is named {name!r} (the installed "
            f"entry points: {names})"
        ) from None


def check_plugin(
    plugin: object,
    sample: Sample | Mapping[str, Sample] | None = None,
    *,
    values: Mapping[str, str] | None = None,
    happy: Responder | None = None,
    expect: Mapping[str, Expectation] | None = None,
    skip: Collection[str] = (),
) -> ConformanceReport:
    """Check *plugin* (a module or object holding hook implementations) against the contract.

    *sample* is one `Sample` for every provider of the plugin, or a mapping of provider id to
    `Sample`; or pass the fields of one `Sample` as keywords (*values*, *happy*, *expect*,
    *skip*). Return the `ConformanceReport`; nothing is raised for a failing check (see
    `assert_conforms`). No request leaves the process.
    """
    if sample is None:
        sample = Sample(values=values or {}, happy=happy, expect=expect or {}, skip=skip)
    elif values is not None or happy is not None or expect is not None or skip:
        raise TypeError("pass either a Sample or its fields as keywords, not both")
    findings = Findings()
    _check(plugin, sample, findings)
    return ConformanceReport(plugin=_label(plugin), findings=tuple(findings.items))


def assert_conforms(
    plugin: object,
    sample: Sample | Mapping[str, Sample] | None = None,
    *,
    values: Mapping[str, str] | None = None,
    happy: Responder | None = None,
    expect: Mapping[str, Expectation] | None = None,
    skip: Collection[str] = (),
) -> ConformanceReport:
    """Run `check_plugin` and raise `ConformanceError` listing every failure; else the report."""
    report = check_plugin(plugin, sample, values=values, happy=happy, expect=expect, skip=skip)
    report.raise_for_failures()
    return report


def _label(plugin: object) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


def _check(plugin: object, sample: Sample | Mapping[str, Sample], findings: Findings) -> None:
    registry = Registry([plugin], load_entrypoints=False)
    (report,) = registry.reports()
    if not findings.add("contract", report.error, "registers with the hub hook specs"):
        return
    hooks = {caller.name for caller in registry.manager.get_hookcallers(plugin) or ()}
    missing = sorted({"hub_providers", "hub_validate_credentials"} - hooks)
    findings.add(
        "hooks",
        f"implements no {' and no '.join(missing)}: a provider plugin declares its providers "
        "and checks their keys"
        if missing
        else None,
        ", ".join(sorted(hooks)),
    )
    providers = registry.providers()
    if not findings.add(
        "providers",
        None if providers else "hub_providers() declares no provider",
        ", ".join(p.id for p in providers),
    ):
        return
    if not isinstance(sample, Sample):
        extra = sorted(set(sample) - {p.id for p in providers})
        if extra:
            findings.add(
                "samples", f"samples are given for {', '.join(extra)}, which the plugin lacks"
            )
    findings.add("own-providers-only", foreign_problems(registry, hooks))
    for provider in providers:
        own = sample if isinstance(sample, Sample) else sample.get(provider.id, Sample())
        filed = findings.for_provider(provider.id)
        checked = check_provider(provider, own, filed)
        if checked is None:
            continue
        values, credentials = checked
        ProviderCheck(
            registry=registry,
            label=report.label,
            provider=provider,
            sample=own,
            hooks=hooks,
            values=values,
            credentials=credentials,
            findings=filed,
        ).run()
