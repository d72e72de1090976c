"""A minimal click command: the cold-start baseline `hub --help` is measured against."""

from __future__ import annotations

import click


@click.command()
@click.option("--name", default="world", help="Who to greet.")
def main(name: str) -> None:
    """Say hello."""
    click.echo(f"Hello, {name}!")
