"""The web benchmark's baseline: a bare Starlette + Jinja2 app drawing the same pages.

``python bench/web_bare.py DB PAGES_JSON PORT``, run by `web.py` in a process of its own,
under uvicorn with the same settings as hub's server (`server_options`). It imports nothing of
hub: it is what a person would write to show the same rows without hub's framework.

- ``GET /accounts?page=N``: the same page of the same accounts as the web Hub's Accounts page
  (``page_size`` 50, the same order, the same columns: label, provider, identity, status in
  words, last error, expiry, linked, last checked as ``<time>`` with words, and the Check now /
  Relink / Unlink controls), read with ``sqlite3`` on the event loop from one connection
  opened at start, the count and the page as two queries.
- ``GET /connect/<provider>``: the provider's guide beside its form, from PAGES_JSON (the
  installed providers' names, and one provider's guide and fields, written by `web.py`).

What it leaves out is what hub pays for on every page: sign-in (a signed session cookie), the
security headers and CSP, the store thread (hub never runs sqlite on the server's loop), the
inert-text rule on every printed string, the one-time form token, links built by ``url_for``.
The templates (web_templates/) are hub's own markup for these two pages, cut down to what a
page without that machinery draws.
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

PAGE_SIZE = 50
TEMPLATES = Path(__file__).resolve().parent / "web_templates"

STATUS_TEXT = {
    "active": ("Active", "The key works."),
    "expiring": ("Expiring soon", "The key works but expires soon; link a new one."),
    "expired": ("Expired", "The key has expired; link a new one."),
    "invalid": ("Key refused", "The provider no longer accepts this key."),
    "denied": ("Permission missing", "The key works but lacks a permission hub needs."),
    "error": ("Check failed", "The last check could not reach a verdict."),
    "damaged": ("Damaged", "hub cannot read this account as stored."),
}

STATUS_SQL = (
    "(CASE WHEN verdict = 'active' AND expires_at IS NOT NULL AND expires_at <= :now"
    " THEN 'expired' WHEN verdict = 'active' AND expires_at IS NOT NULL AND expires_at <= :soon"
    " THEN 'expiring' ELSE verdict END)"
)


def relative(when: datetime, now: datetime) -> str:
    """*when* in words, the way the Accounts page says it.

    A copy of `hub_core.web.present.relative`: the baseline imports nothing of hub, and it
    must print the same words for the pages to be the same job.
    """
    seconds = (when - now).total_seconds()
    future, seconds = seconds > 0, abs(seconds)
    if seconds < 60:
        return "in less than a minute" if future else "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = math.floor(seconds / size)
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    raise AssertionError("unreachable")


def shown_time(value: str | None, now: datetime) -> tuple[str, str, str] | None:
    """(ISO time, words, exact) of a stored time, or None."""
    if not value:
        return None
    when = datetime.fromisoformat(value).astimezone(UTC)
    return (
        when.isoformat().replace("+00:00", "Z"),
        relative(when, now),
        when.strftime("%Y-%m-%d %H:%M UTC"),
    )


def build(db_path: str, pages: dict[str, Any]) -> Starlette:
    """The baseline app over the database at *db_path*; *pages*: see `web.provider_pages`."""
    db = sqlite3.connect(db_path, check_same_thread=False)
    db.row_factory = sqlite3.Row
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
    )
    accounts_page, connect_page = (
        env.get_template("accounts.html"),
        env.get_template("connect.html"),
    )
    provider = pages["connect"]
    names = dict(pages["providers"])
    statuses = list(STATUS_TEXT.items())

    async def accounts(request: Request) -> HTMLResponse:
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1
        offset = (number - 1) * PAGE_SIZE
        now = datetime.now(UTC)
        params = {
            "now": now.isoformat(),
            "soon": (now + timedelta(days=7)).isoformat(),
            "limit": PAGE_SIZE,
            "offset": offset,
        }
        total = db.execute("SELECT count(*) FROM accounts").fetchone()[0]
        rows = db.execute(
            f"SELECT id, provider_id, identity, label, {STATUS_SQL} AS status, last_error,"  # noqa: S608
            " linked_at, checked_at, expires_at FROM accounts"
            " ORDER BY provider_id, label, id LIMIT :limit OFFSET :offset",
            params,
        ).fetchall()
        shown = [
            {
                "id": row["id"],
                "label": row["label"],
                "identity": row["identity"],
                "provider_name": names.get(row["provider_id"], row["provider_id"]),
                "status": row["status"],
                "badge": STATUS_TEXT.get(row["status"], STATUS_TEXT["damaged"]),
                "last_error": row["last_error"],
                "expires": shown_time(row["expires_at"], now),
                "linked": shown_time(row["linked_at"], now),
                "checked": shown_time(row["checked_at"], now),
            }
            for row in rows
        ]
        html = accounts_page.render(
            rows=shown,
            total=total,
            offset=offset,
            number=number,
            pages=max(1, math.ceil(total / PAGE_SIZE)),
            providers=sorted(names.items(), key=lambda item: item[1].lower()),
            statuses=statuses,
            csrf=secrets.token_urlsafe(16),
        )
        return HTMLResponse(html)

    async def connect(request: Request) -> HTMLResponse:
        if request.path_params["provider"] != provider["id"]:
            return HTMLResponse("<h1>No such provider</h1>", status_code=404)
        html = connect_page.render(
            p=provider, csrf=secrets.token_urlsafe(16), form_id=secrets.token_urlsafe(16)
        )
        return HTMLResponse(html)

    return Starlette(routes=[Route("/accounts", accounts), Route("/connect/{provider}", connect)])


def server_options() -> dict[str, object]:
    """The uvicorn settings both servers of the web benchmark share (web_hub.py too)."""
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "backlog": 1024,
        "timeout_keep_alive": 30,
    }
    # The choice uvicorn's "auto" makes, said out loud so that results.json can report it.
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        options["http"] = "h11"
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        options["loop"] = "asyncio"
    return options


def main(argv: list[str]) -> None:
    import uvicorn

    db_path, pages_json, port = argv
    with open(pages_json, encoding="utf-8") as file:
        app = build(db_path, json.load(file))
    uvicorn.run(app, port=int(port), lifespan="off", **server_options())  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1:])
