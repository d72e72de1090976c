"""``hub link-url``: one-time auth links for someone who should link their own account.

A link is a row in the store and a signed token carrying only the row's random id
(`hub_core.web.security.LinkTokens`, keyed from the store's secret key), so the `hub serve`
of the same store accepts it. Everything but click loads when the command runs.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from hub_core.cli import echo_json, json_time, reports_errors, say, shown, state
from hub_core.errors import ConfigurationError

if TYPE_CHECKING:
    from hub_core.store_protocol import AccountStore

__all__ = ["link_url", "parse_duration"]

_BASE_ENV = "HUB_BASE_URL"
_DEFAULT_BASE = "http://127.0.0.1:8765"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, *, what: str = "a link lasts", at_most: int = 30) -> timedelta:
    """``30s``, ``30m``, ``12h`` or ``7d`` as a timedelta; `ValueError` for anything else,
    for zero, or past *at_most* days (the message says "{what} at most …")."""
    found = re.fullmatch(r"\s*(\d{1,6})\s*([smhd])\s*", text.lower())
    if found is None:
        raise ValueError(f"{text!r} is not a duration: write it as 30m, 12h or 7d")
    amount = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if amount <= timedelta(0):
        raise ValueError(f"{text} is too short: give at least 1s")
    if amount > timedelta(days=at_most):
        raise ValueError(f"{text} is too long: {what} at most {at_most} days ({at_most}d)")
    return amount


@click.command("link-url")
@click.argument("provider_id", metavar="PROVIDER", required=False)
@click.option(
    "--expires",
    default="7d",
    show_default=True,
    help="How long the link works (30m, 12h, 7d; at most 30d).",
)
@click.option("--note", help='Who it is for; the visitor sees "Link requested for NOTE".')
@click.option(
    "--owner",
    metavar="ID",
    help="Your id of whom the account is for: it is theirs (one identity per owner).",
)
@click.option("--owner-name", metavar="NAME", help="The owner's name, shown beside the account.")
@click.option(
    "--relink", "account_id", metavar="ACCOUNT", help="A link to replace this account's key."
)
@click.option(
    "--base-url",
    help=f"The Hub's address for the visitor (default: ${_BASE_ENV}, else {_DEFAULT_BASE}).",
)
@click.option("--list", "listing", is_flag=True, help="List the open links.")
@click.option(
    "--all",
    "include_closed",
    is_flag=True,
    help="With --list: used, withdrawn and expired links too.",
)
@click.option("--revoke", metavar="ID", help="Withdraw the link with this id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def link_url(
    provider_id: str | None,
    expires: str,
    note: str | None,
    owner: str | None,
    owner_name: str | None,
    account_id: str | None,
    base_url: str | None,
    listing: bool,
    include_closed: bool,
    revoke: str | None,
    as_json: bool,
) -> None:
    """Print a one-time link for someone to link their own PROVIDER account."""
    current = state()
    if listing:
        _list(current.store, include_closed, as_json)
        return
    if revoke is not None:
        link = current.store.revoke_link(revoke)
        if as_json:
            echo_json(_json(link))
        elif link.state() == "used":
            say(shown("Link {id} was used already; nothing to withdraw.", id=link.id))
        else:
            say(shown("Withdrew link {id}: it no longer works.", id=link.id))
        return
    if provider_id is None:
        raise click.UsageError("give a PROVIDER (or --list, or --revoke ID)")
    try:
        lifetime = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    try:
        from hub_core.web.security import LinkTokens
    except ImportError as exc:
        raise ConfigurationError(
            "hub-core[web]",
            f"links are opened in the web Hub, which needs the web extra ({exc.name} is "
            "missing): pip install 'hub-core[web]'",
        ) from None
    provider = current.hub.provider(provider_id)
    base = (base_url or os.environ.get(_BASE_ENV) or _DEFAULT_BASE).rstrip("/")
    if not re.match(r"https?://[^/\s]+", base):
        raise click.BadParameter(f"{base!r} is not an http(s) address", param_hint="--base-url")
    store = current.store
    try:
        link = store.create_link(
            provider.id,
            expires_in=lifetime,
            note=note,
            account_id=account_id,
            owner=owner,
            owner_name=owner_name,
        )
    except ValueError as exc:  # a bad --owner or --owner-name: nothing was stored
        hint = "--owner-name" if "owner_name" in str(exc) else "--owner"
        raise click.BadParameter(str(exc), param_hint=hint) from None
    token = LinkTokens(store.derive_key(LinkTokens.PURPOSE)).dumps(link.id)
    url = f"{base}/l/{token}"
    if as_json:
        echo_json({**_json(link), "url": url})
        return
    say(shown("{url}", url=url))
    say(
        shown(
            "One {provider} account can be linked with it until {expires} (link {id}).",
            provider=provider.name,
            expires=f"{link.expires_at:%Y-%m-%d %H:%M} UTC",
            id=link.id,
        ),
        err=True,
    )


def _json(link: object) -> dict[str, object]:
    from hub_core.store import Link

    assert isinstance(link, Link)
    return {
        "id": link.id,
        "kind": link.kind,
        "provider": link.provider_id,
        "account": link.account_id,
        "note": link.note,
        "owner": link.owner,
        "owner_name": link.owner_name,
        "created_at": json_time(link.created_at),
        "expires_at": json_time(link.expires_at),
        "state": link.state(),
        "attempts": link.failed_attempts,
        "used": link.used_at is not None,
        "used_account": link.used_account_id,
    }


def _list(store: AccountStore, include_closed: bool, as_json: bool) -> None:
    links = store.links(include_closed=include_closed)
    if as_json:
        echo_json([_json(link) for link in links])
        return
    if not links:
        say(shown("No open links. Make one with `hub link-url PROVIDER`."))
        return
    for link in links:
        say(
            shown(
                "{id}  {provider}  {state}  expires {expires}  attempts {attempts}  {owner}{note}",
                id=link.id,
                provider=link.provider_id or "any provider",
                owner=f"for {link.owner}  " if link.owner else "",
                state=link.state(),
                expires=f"{link.expires_at:%Y-%m-%d %H:%M} UTC",
                attempts=link.failed_attempts,
                note=link.note or "",
            )
        )


COMMANDS = [link_url]
