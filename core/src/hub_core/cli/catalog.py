"""What is installed: ``hub providers``, ``hub plugins``, ``hub fields``, ``hub guide``."""

from __future__ import annotations

import shutil
import textwrap
from typing import TYPE_CHECKING

import click

from hub_core.cli import Shown, current_hub, echo_json, reports_errors, say, shown
from hub_core.display_text import LONG_LIMIT, inert_lines

if TYPE_CHECKING:
    from hub_core.model import Guide, Provider


def _provider_json(provider: Provider) -> dict[str, object]:
    return {
        "id": provider.id,
        "name": provider.name,
        "fields": [field.name for field in provider.fields],
        "hosts": list(provider.hosts),
        "docs_url": provider.docs_url,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def providers(as_json: bool) -> None:
    """List the providers accounts can be linked with."""
    hub = current_hub()
    found = hub.providers()
    if as_json:
        echo_json([_provider_json(p) for p in found])
        return
    if not found:
        broken = sum(report.error is not None for report in hub.plugins())
        if broken:
            say(
                shown(
                    "No provider is usable: {n} installed plugin{s} cannot be used. "
                    "`hub plugins` says why.",
                    n=broken,
                    s="s" * (broken != 1),
                )
            )
        else:
            say(shown("No provider plugin is installed. Install one, e.g. `pip install hub-qlik`."))
        return
    ids = [shown("{id}", id=provider.id) for provider in found]
    width = max(shown_id.width for shown_id in ids)
    say(
        *(
            shown("{id:<{width}}  {name}", id=shown_id, width=width, name=provider.name)
            for shown_id, provider in zip(ids, found, strict=True)
        )
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a list.")
def plugins(as_json: bool) -> None:
    """List the installed plugins, with their versions and any error."""
    reports = current_hub().plugins()
    if as_json:
        echo_json(
            [
                {
                    "name": r.name,
                    "distribution": r.distribution,
                    "version": r.version,
                    "providers": list(r.providers),
                    "error": r.error,
                }
                for r in reports
            ]
        )
        return
    if not reports:
        say(shown("No plugin is installed."))
        return
    lines: list[Shown] = []
    for report in reports:
        provided = ", ".join(report.providers) or "no providers"
        lines.append(
            shown(
                "{name}  {label}  ({provided})",
                name=report.name,
                label=report.label,
                provided=provided,
            )
        )
        if report.error:
            error = shown("  error: {error}", error=report.error, limit=LONG_LIMIT)
            lines.append(error.styled(fg="red"))
    say(*lines)


@click.command()
@click.argument("provider_id", metavar="PROVIDER")
@click.option("--json-schema", is_flag=True, help="Print the fields as JSON Schema (2020-12).")
@reports_errors
def fields(provider_id: str, json_schema: bool) -> None:
    """Show the fields a provider's link form asks for."""
    hub = current_hub()
    if json_schema:
        echo_json(hub.json_schema(provider_id))
        return
    provider = hub.provider(provider_id)
    lines = [shown("{name}", name=provider.name).styled(bold=True)]
    for field in provider.fields:
        flags = [field.kind, "required" if field.required else "optional"]
        if field.default:
            flags.append(f"default {field.default}")
        lines.append(
            shown(
                "  {name}  {label}  ({flags})",
                name=field.name,
                label=field.label,
                flags=", ".join(flags),
            )
        )
        if field.help:
            lines += _wrap(field.help, 6)
        for choice in field.choices:
            lines.append(shown("      {value:<6} {label}", value=choice.value, label=choice.label))
    say(*lines)


def _wrap(text: str, indent: int = 0) -> list[Shown]:
    """*text* made inert, its paragraphs wrapped to the terminal and indented."""
    width = max(min(shutil.get_terminal_size((88, 24)).columns, 100) - indent, 40)
    lines: list[Shown] = []
    for paragraph in inert_lines(text, limit=LONG_LIMIT):
        # Never break inside a URL or a hyphenated host name: people copy them.
        wrapped = textwrap.wrap(
            paragraph, width=width, break_on_hyphens=False, break_long_words=False
        )
        lines += [
            # The indent is hub's own text (a Shown): a value made inert loses leading spaces.
            shown("{indent}{line}", indent=Shown(" " * indent), line=line, limit=LONG_LIMIT)
            for line in wrapped or [""]
        ]
    return lines


def render_guide(provider: Provider, guide: Guide) -> list[Shown]:
    """The guide as lines for a terminal: sections, numbered steps, the warning first."""
    lines = [shown("Linking {name}", name=provider.name).styled(bold=True), shown("")]
    if guide.warning:
        first, *rest = _wrap(f"Note: {guide.warning}")
        note = shown("Note:").styled(fg="yellow", bold=True)
        # The first line starts with "Note: " as wrapped; only the word is hub's to colour.
        lines += [shown("{note} {text}", note=note, text=first.plain[len("Note: ") :]), *rest]
        lines.append(shown(""))
    for section in guide.sections:
        lines.append(shown("{title}", title=section.title).styled(bold=True, underline=True))
        if section.content:
            lines += _wrap(section.content)
        for number, step in enumerate(section.steps, start=1):
            title = shown("{title}", title=step.title).styled(bold=True)
            lines.append(shown("  {number}. {title}", number=number, title=title))
            if step.content:
                lines += _wrap(step.content, 5)
        lines.append(shown(""))
    lines.append(
        shown(
            "Then run `hub link {id}` and fill in: {fields}.",
            id=provider.id,
            fields=", ".join(field.label for field in provider.fields),
            limit=LONG_LIMIT,
        )
    )
    if provider.docs_url:
        lines.append(shown("Provider documentation: {url}", url=provider.docs_url))
    return lines


@click.command()
@click.argument("provider_id", metavar="PROVIDER")
@reports_errors
def guide(provider_id: str) -> None:
    """Explain where to create a provider's key and find its values."""
    provider = current_hub().provider(provider_id)
    say(*render_guide(provider, provider.guide))


COMMANDS = [providers, plugins, fields, guide]
