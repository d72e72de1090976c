"""What is installed: ``hub providers``, ``hub plugins``, ``hub fields``, ``hub guide``."""

from __future__ import annotations

import shutil
import textwrap
from typing import TYPE_CHECKING

import click

from hub_core.cli import current_hub, echo_json, reports_errors

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
        click.echo("No provider plugin is installed. Install one, e.g. `pip install hub-qlik`.")
        return
    width = max(len(p.id) for p in found)
    # One write: with many plugins installed, a flushed write per line shows.
    click.echo("\n".join(f"{provider.id:<{width}}  {provider.name}" for provider in found))


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
        click.echo("No plugin is installed.")
        return
    for report in reports:
        provided = ", ".join(report.providers) or "no providers"
        click.echo(f"{report.name}  {report.label}  ({provided})")
        if report.error:
            click.secho(f"  error: {report.error}", fg="red")


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
    click.secho(provider.name, bold=True)
    for field in provider.fields:
        flags = [field.kind, "required" if field.required else "optional"]
        if field.default:
            flags.append(f"default {field.default}")
        click.echo(f"  {field.name}  {field.label}  ({', '.join(flags)})")
        if field.help:
            click.echo(textwrap.indent(_wrap(field.help, 6), " " * 6))
        for choice in field.choices:
            click.echo(f"      {choice.value:<6} {choice.label}")


def _wrap(text: str, indent: int = 0) -> str:
    width = min(shutil.get_terminal_size((88, 24)).columns, 100) - indent
    # Never break inside a URL or a hyphenated host name: people copy them.
    return "\n".join(
        textwrap.fill(p, width=max(width, 40), break_on_hyphens=False, break_long_words=False)
        for p in text.split("\n")
    )


def render_guide(provider: Provider, guide: Guide) -> str:
    """The guide as text for a terminal: sections, numbered steps, the warning first."""
    lines = [click.style(f"Linking {provider.name}", bold=True), ""]
    if guide.warning:
        note = _wrap(f"Note: {guide.warning}")
        lines += [click.style("Note:", fg="yellow", bold=True) + note[len("Note:") :], ""]
    for section in guide.sections:
        lines.append(click.style(section.title, bold=True, underline=True))
        if section.content:
            lines.append(_wrap(section.content))
        for number, step in enumerate(section.steps, start=1):
            lines.append(f"  {number}. " + click.style(step.title, bold=True))
            if step.content:
                lines.append(textwrap.indent(_wrap(step.content, 5), " " * 5))
        lines.append("")
    fields = ", ".join(field.label for field in provider.fields)
    lines.append(f"Then run `hub link {provider.id}` and fill in: {fields}.")
    if provider.docs_url:
        lines.append(f"Provider documentation: {provider.docs_url}")
    return "\n".join(lines)


@click.command()
@click.argument("provider_id", metavar="PROVIDER")
@reports_errors
def guide(provider_id: str) -> None:
    """Explain where to create a provider's key and find its values."""
    provider = current_hub().provider(provider_id)
    click.echo(render_guide(provider, provider.guide))


COMMANDS = [providers, plugins, fields, guide]
