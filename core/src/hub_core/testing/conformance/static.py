"""The checks that read a plugin without running a flow: schema, JSON Schema, guide, hosts,
the sample values, and that its hooks answer only for its own providers."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hub_core.errors import FieldError, HubError, describe
from hub_core.fields import json_schema, validate_field, validate_values
from hub_core.model import Credentials, Field, Guide, Provider, Section, host_problem
from hub_core.plugins import Registry
from hub_core.testing import CANARY, sample_account, sample_values

from .report import Findings

if TYPE_CHECKING:
    from . import Sample


def check_provider(
    provider: Provider, sample: Sample, findings: Findings
) -> tuple[dict[str, str], Credentials] | None:
    """Check *provider*'s declaration; return the sample values and credentials, if valid."""
    findings.add("schema", schema_problems(provider), f"{len(provider.fields)} fields")
    findings.add(
        "guide", guide_problems(provider.guide), f"{len(provider.guide.sections)} sections"
    )
    findings.add("hosts", host_problems(provider), ", ".join(provider.hosts))
    try:
        values = sample_values(provider, **sample.values)
    except ValueError as exc:
        findings.add("sample", str(exc))
        return None
    try:
        credentials = validate_values(provider, values)
    except FieldError as exc:
        check_json_schema(provider, values, findings, validated=False)
        findings.add(
            "sample",
            f"the sample values {public(values, provider)} do not pass the schema ({exc}); "
            "pass Sample(values={...}) with values that do",
        )
        return None
    check_json_schema(provider, values, findings)
    findings.add("sample", None, str(public(values, provider)))
    return values, credentials


def public(values: Mapping[str, str], provider: Provider) -> dict[str, str]:
    """*values* with every secret masked, fit for a finding's message."""
    secret = set(provider.secret_fields)
    return {name: ("***" if name in secret else value) for name, value in values.items()}


def schema_problems(provider: Provider) -> list[str]:
    """What is wrong with *provider*'s fields and docs link."""
    problems: list[str] = []
    if not provider.secret_fields:
        problems.append(
            "no field has kind='secret': the API key must be one, so it is hidden when typed, "
            "encrypted at rest and never shown"
        )
    for field in provider.fields:
        if field.default is not None and field.default:
            try:
                validate_field(field, field.default)
            except HubError as exc:  # a FieldError, or a PluginError from its normalize
                problems.append(f"the default of {field.name!r} fails its own validation: {exc}")
    labels = [field.label.casefold() for field in provider.fields]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        problems.append(f"several fields share the label(s) {', '.join(map(repr, repeated))}")
    if provider.docs_url is not None and not provider.docs_url.startswith("https://"):
        problems.append(f"docs_url {provider.docs_url!r} is not an https:// address")
    return problems


def check_json_schema(
    provider: Provider, values: Mapping[str, str], findings: Findings, *, validated: bool = True
) -> None:
    """Check the exported JSON Schema is valid and accepts *values*; skip without jsonschema.

    *validated*: whether *values* pass hub's own validation (the message says so only then).
    """
    try:
        # Optional (hub-core[testing]) and untyped: imported by name, used as Any.
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        findings.skip(
            "json-schema", "install jsonschema (pip install 'hub-core[testing]') to check it"
        )
        return
    schema = json_schema(provider)
    validator_class = jsonschema.Draft202012Validator
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        findings.add("json-schema", f"the exported schema is not valid JSON Schema: {exc.message}")
        return
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(dict(values)), key=lambda e: list(e.path))
    findings.add(
        "json-schema",
        [
            (
                "the sample values pass hub's validation but not the exported JSON Schema: "
                if validated
                else "the sample values do not pass the exported JSON Schema either: "
            )
            + "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors)
        ]
        if errors
        else None,
        "valid draft 2020-12; accepts the sample values",
    )


def guide_problems(guide: Guide) -> list[str]:
    """What is missing from a provider's guide."""
    if not guide.sections:
        return [
            "the guide has no sections: tell people where to create the key and what to paste where"
        ]
    return [
        f"the guide section {section.title!r} has neither text nor steps"
        for section in guide.sections
        if not section.content.strip() and not section.steps
    ]


def host_problems(provider: Provider) -> list[str]:
    """Declared hosts that are not a provider's DNS names: `Provider`'s own rule, reported."""
    return [problem for pattern in provider.hosts if (problem := host_problem(pattern))]


_OTHER = Provider(
    id="conformance-other",
    name="Another provider",
    fields=[Field("api_key", "API Key", kind="secret")],
    guide=Guide(sections=[Section("Create a key", "In its settings.")]),
    hosts=["api.other.invalid"],
)


def foreign_problems(registry: Registry, hooks: set[str]) -> list[str]:
    """A firstresult hook that answers for another plugin's provider hijacks it."""
    credentials = Credentials({"api_key": CANARY}, secret=["api_key"])
    account = sample_account(_OTHER)
    hook = registry.manager.hook
    calls: dict[str, Callable[[], object]] = {
        "hub_validate_credentials": lambda: hook.hub_validate_credentials(
            provider=_OTHER, credentials=credentials
        ),
        "hub_account_display": lambda: hook.hub_account_display(provider=_OTHER, account=account),
    }
    problems: list[str] = []
    for name, call in calls.items():
        if name not in hooks:
            continue
        try:
            result = call()
        except Exception as exc:
            problems.append(f"{name} raised {describe(exc)} for another plugin's provider")
            continue
        close = getattr(result, "close", None)
        if callable(close):
            close()
        if result is not None:
            problems.append(
                f"{name} answered {type(result).__name__} for another plugin's provider; "
                "return None unless provider.id is one of yours"
            )
    return problems
