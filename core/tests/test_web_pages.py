"""The web Hub's pages: every route, state and error code (WEB.md §2)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest

from core.tests.web_helpers import ACME, BACKENDS, BETA, CANARY, Page, Web
from hub_core import InvalidCredentials, PermissionDenied, Verified, hookimpl
from hub_core.errors import ProviderUnavailable, StoreError
from hub_core.model import Credentials

WebFactory = Callable[..., Web]


def store_account(
    w: Web, org: int, name: str, *, provider: str = "acme", expires: datetime | None = None
) -> str:
    """An account saved straight into the store (as if linked earlier); its id."""
    values = {"api_key": f"k{org}", "region": "us"} if provider == "acme" else {"token": "t"}
    secret = {"api_key"} if provider == "acme" else {"token"}
    account = w.store.save(
        provider,
        Verified(f"org:{org}", name, expires_at=expires),
        Credentials(values, secret=frozenset(secret)),
    )
    return account.id


# --- providers --------------------------------------------------------------------------------


@BACKENDS
def test_providers_lists_each_provider_with_its_count_and_connect(web: WebFactory) -> None:
    w = web()
    w2 = web()
    store_account(w2, 1, "One")
    page = w2.get("/")
    assert page.status == 200
    card = page.find("li", class_="card")
    assert card.find("h2").text == "Acme"
    assert "1 account linked" in card.text
    assert card.find("a", class_="primary").attrs["href"] == "/connect/acme"
    assert card.find_all("a")[-1].attrs["href"] == "/accounts?provider=acme"
    store_account(w2, 2, "Two")
    assert "2 accounts linked" in w2.get("/").text
    assert "No accounts linked" in w.get("/").text


def test_providers_empty_state_names_the_pip_command(web: WebFactory) -> None:
    page = web(providers=[]).get("/")
    assert page.status == 200
    assert "No provider is installed" in page.text
    assert page.find("pre").text == "pip install hub-elastic"


def test_a_broken_plugin_is_listed_with_its_reason(web: WebFactory) -> None:
    module = ModuleType("hub_broken_test")

    @hookimpl
    def hub_providers() -> list[Any]:
        raise RuntimeError("its schema cannot load")

    module.hub_providers = hub_providers  # type: ignore[attr-defined]
    page = web(plugins=[module]).get("/")
    warning = page.find("section", class_="warning")
    assert "hub_broken_test" in warning.text
    assert "hub_providers() failed: RuntimeError: its schema cannot load" in warning.text
    assert page.find("li", class_="card").find("h2").text == "Acme"  # the others still work


# --- connect: the form from the schema --------------------------------------------------------


def test_connect_draws_the_form_from_the_schema(web: WebFactory) -> None:
    w = web(providers=[BETA])
    page = w.get("/connect/beta")
    assert page.status == 200
    assert page.response.headers["cache-control"] == "no-store"
    form = page.form("/connect/beta")
    token = form.element.find("input", id="field-token")
    assert token.attrs["type"] == "password"
    assert token.attrs["autocomplete"] == "new-password"
    assert token.attrs["spellcheck"] == "false"
    assert token.attrs["autocapitalize"] == "off"
    assert "value" not in token.attrs
    assert "required" in token.attrs
    site = form.element.find("input", id="field-site")
    assert site.attrs["type"] == "url"
    assert site.attrs["autocomplete"] == "off"
    assert site.attrs["placeholder"] == "https://you.beta.test"
    for name in ("token", "site", "plan"):
        label = form.element.find("label", for_=f"field-{name}")
        assert label.find_all(class_="required" if name != "plan" else "optional")
    # help tied to its input
    assert page.by_id("help-token").text == "From the Beta console."
    assert "help-token" in token.attrs["aria-describedby"].split()
    # an optional choice: a <select> with an empty option first
    plan = form.element.find("select", id="field-plan")
    options = plan.find_all("option")
    assert [o.attrs["value"] for o in options] == ["", "free", "pro"]
    assert "required" not in plan.attrs
    assert form.values["csrf_token"]
    assert form.values["form_id"]
    # the guide beside it, its https address a link
    guide = page.find("section", class_="guide")
    assert guide.find("a").attrs["href"] == "https://docs.beta.test/keys"


def test_connect_with_a_required_choice_has_its_default_selected(web: WebFactory) -> None:
    page = web().get("/connect/acme")
    region = page.find("select", id="field-region")
    assert "required" in region.attrs
    assert [o.attrs["value"] for o in region.find_all("option") if "selected" in o.attrs] == ["us"]
    assert page.find("input", id="field-team").attrs["autocomplete"] == "off"
    guide = page.find("section", class_="guide")
    assert "Only admins can create keys." in guide.text
    assert [li.find("strong").text for li in guide.find_all("li")] == ["Open Settings"]


# --- field errors -----------------------------------------------------------------------------


def test_field_errors_422_each_under_its_field_values_kept_secret_empty(web: WebFactory) -> None:
    w = web()
    page = w.get("/connect/acme")
    answer = w.submit(page, api_key=CANARY, region="eu", team="Not-Valid!")
    assert answer.status == 422
    assert w.provider.sent() == 0  # refused before any request
    summary = answer.find("div", role="alert")
    assert "Nothing was linked" in summary.text
    assert [a.attrs["href"] for a in summary.find_all("a")] == ["#field-team"]
    team = answer.find("input", id="field-team")
    assert team.attrs["aria-invalid"] == "true"
    assert team.attrs["value"] == "Not-Valid!"
    error = answer.by_id("error-team")
    assert error.attrs["class"] == "field-error"
    assert error.parent is team.parent  # under its own field
    assert "error-team" in team.attrs["aria-describedby"].split()
    region = answer.find("select", id="field-region")
    assert [o.attrs["value"] for o in region.find_all("option") if "selected" in o.attrs] == ["eu"]
    key = answer.find("input", id="field-api_key")
    assert "value" not in key.attrs
    assert "aria-invalid" not in key.attrs
    assert "Paste the key again" in answer.by_id("note-api_key").text
    assert CANARY not in answer.html


def test_a_missing_required_field_is_a_field_error(web: WebFactory) -> None:
    w = web()
    answer = w.submit(w.get("/connect/acme"), api_key="")
    assert answer.status == 422
    assert answer.find("input", id="field-api_key").attrs["aria-invalid"] == "true"
    assert answer.by_id("error-api_key").text
    assert w.provider.sent() == 0


def test_field_error_errors_become_one_message_per_field(web: WebFactory) -> None:
    w = web()
    answer = w.submit(w.get("/connect/acme"), api_key="fields", team="sales")
    assert answer.status == 422
    links = [a.attrs["href"] for a in answer.find("div", role="alert").find_all("a")]
    assert sorted(links) == ["#field-region", "#field-team"]
    assert answer.by_id("error-team").text == "No such team"
    assert answer.by_id("error-region").text == "Not in this region"
    assert answer.find("input", id="field-team").attrs["value"] == "sales"


def test_an_error_with_a_field_is_shown_under_that_field(web: WebFactory) -> None:
    w = web()
    answer = w.submit(w.get("/connect/acme"), api_key="wrong", team="ops")
    assert answer.status == 422
    assert "Acme refused the key" in answer.find("div", role="alert").text
    key = answer.find("input", id="field-api_key")
    assert key.attrs["aria-invalid"] == "true"
    assert "value" not in key.attrs
    assert answer.by_id("error-api_key").text == "Acme rejected the key"
    assert answer.find("input", id="field-team").attrs["value"] == "ops"
    assert "RAW-PROVIDER-BODY" not in answer.html


# --- other errors, by class -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "status", "title", "detail"),
    [
        ("denied", 422, "The key lacks a permission Acme requires", "read:org"),
        ("limited", 429, "Acme asked hub to slow down", "Try again in 8 s"),
        ("down", 503, "Acme could not be reached", "could not be reached"),
        ("broken", 502, "Acme could not be reached", "HTTP 500"),
        ("weird", 502, "Acme gave an answer hub does not understand", "no organisation"),
        ("crash", 500, "The Acme plugin failed", "nothing was linked"),
    ],
)
def test_each_error_class_has_its_banner_and_status(
    web: WebFactory, key: str, status: int, title: str, detail: str
) -> None:
    w = web()
    answer = w.submit(w.get("/connect/acme"), api_key=key, team="kept")
    assert answer.status == status
    banner = answer.find("div", role="alert")
    assert title in banner.find("h2").text
    assert detail in banner.text
    assert answer.find("input", id="field-team").attrs["value"] == "kept"
    assert w.account_ids() == []
    if key == "limited":
        assert answer.response.headers["retry-after"] == "8"
    else:
        assert "retry-after" not in answer.response.headers
    for leak in ("Traceback", "RuntimeError", "quoting the provider", "RAW-PROVIDER-BODY"):
        assert leak not in answer.html


def test_the_providers_raw_body_never_shows(web: WebFactory) -> None:
    w = web()
    w.provider.answer = lambda request: httpx.Response(
        200, text="<html>RAW-PROVIDER-BODY not json</html>"
    )
    answer = w.submit(w.get("/connect/acme"), api_key="good")
    assert answer.status in (500, 502)
    assert "RAW-PROVIDER-BODY" not in answer.html
    assert "Traceback" not in answer.html


@pytest.mark.parametrize(
    "path",
    [
        "/nowhere",
        "/connect/nope",
        "/accounts/nope/linked",
        "/accounts/nope/relink",
        "/accounts/nope/unlink",
        "/static/nothing.css",
    ],
)
def test_unknown_pages_are_404_in_the_hubs_layout(web: WebFactory, path: str) -> None:
    page = web().get(path)
    assert page.status == 404
    assert page.find("h1", id="error-title").text
    assert page.find("a", class_="brand").attrs["href"] == "/"


@pytest.mark.parametrize("action", ["check", "relink"])
def test_posts_about_an_unknown_account_are_404(web: WebFactory, action: str) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    answer = w.post(f"/accounts/nope/{action}", {"csrf_token": form.values["csrf_token"]})
    assert answer.status == 404
    assert "No such account" in answer.text


def test_a_post_to_an_unknown_provider_is_404(web: WebFactory) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    answer = w.post("/connect/nope", {**form.values, "api_key": "good"})
    assert answer.status == 404
    assert w.provider.sent() == 0


@pytest.mark.parametrize("kind", ["a huge value", "too many fields", "a file"])
def test_a_form_hub_cannot_read_is_400_and_nothing_is_used(web: WebFactory, kind: str) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    values = {**form.values, "api_key": "good"}
    if kind == "a huge value":
        answer = w.post(form.action, {**values, "team": "x" * 100_000})
    elif kind == "too many fields":
        answer = w.post(form.action, {**values, **{f"extra{n}": "1" for n in range(100)}})
    else:
        answer = Page(w.client.post(form.action, data=values, files={"f": ("a.txt", b"x")}))
    assert answer.status == 400
    assert answer.find("h1").text == "The form could not be read"
    assert "hub used none of it" in answer.text
    assert w.provider.sent() == 0
    assert w.account_ids() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/"), ("GET", "/accounts/check"), ("PUT", "/connect/acme"), ("DELETE", "/accounts")],
)
def test_a_wrong_method_is_405(web: WebFactory, method: str, path: str) -> None:
    w = web()
    page = Page(w.client.request(method, path))
    assert page.status == 405
    assert "Not allowed" in page.find("h1").text
    assert "allow" in page.response.headers


def test_an_unexpected_exception_is_500_without_a_traceback(web: WebFactory) -> None:
    w = web()

    def fail() -> Any:
        raise RuntimeError(f"internal detail {CANARY}")

    w.hub.providers = fail  # type: ignore[method-assign]
    page = w.get("/")
    assert page.status == 500
    assert page.find("h1").text == "Something went wrong"
    for leak in ("Traceback", "RuntimeError", "internal detail", CANARY):
        assert leak not in page.html


def test_an_unexpected_exception_reaches_no_log_of_the_server_but_hubs_line(
    web: WebFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Starlette raises it on after the 500 page for the server to log it whole (uvicorn
    # does), and its text may quote a submitted value: hub logs its type and place instead.
    w = web()

    def fail() -> Any:
        raise RuntimeError(f"internal detail {CANARY}")

    w.hub.providers = fail  # type: ignore[method-assign]

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=w.app)  # raises what the app raises
        cookies = dict(w.client.cookies)
        async with httpx.AsyncClient(
            transport=transport, base_url=w.base_url, cookies=cookies
        ) as client:
            return await client.get("/")

    with caplog.at_level("ERROR"):
        answer = asyncio.run(fetch())
    assert answer.status_code == 500
    [record] = [r for r in caplog.records if r.name == "hub_core.web"]
    assert record.getMessage().startswith("GET / failed: RuntimeError at ")
    assert record.exc_info is None
    assert CANARY not in caplog.text


def test_the_log_line_of_a_failed_link_page_does_not_show_the_links_token(
    web: WebFactory, caplog: pytest.LogCaptureFixture
) -> None:
    w = web()

    async def fail(token: str) -> Any:
        raise RuntimeError("internal")

    w.app._usable_link = fail  # type: ignore[method-assign]
    with caplog.at_level("ERROR"):
        assert w.get("/l/the-links-secret-token").status == 500
    [record] = [r for r in caplog.records if r.name == "hub_core.web"]
    assert record.getMessage().startswith("GET /l/… failed: RuntimeError")
    assert "the-links-secret-token" not in caplog.text


# --- confirmation -----------------------------------------------------------------------------


@BACKENDS
def test_confirmation_says_who_and_never(web: WebFactory) -> None:
    w = web()
    page = w.link("good")
    assert page.status == 200
    assert page.find("h1").text == "Acme account linked"
    assert page.find("h1").attrs.get("data-focus") == ""
    facts = page.find("dl", class_="facts")
    assert "Seven" in facts.text
    assert "(org:7)" in facts.text
    assert facts.find_all("dd")[1].text == "never"
    assert "updated the existing account" not in page.text
    assert not page.find_all(class_="note")


def test_confirmation_of_a_short_lived_key(web: WebFactory) -> None:
    w = web()
    expires = datetime.now(UTC) + timedelta(hours=23, minutes=30)
    w.provider.keys["good"] = (7, "Seven", expires.isoformat())
    page = w.link("good")
    time_ = page.find("dl", class_="facts").find("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", time_.attrs["datetime"])
    assert time_.text == "in 23 hours"
    assert "short-lived" in page.find("p", class_="note").text


@pytest.mark.parametrize(
    ("age", "badge"),
    [(timedelta(minutes=1), "Active"), (timedelta(hours=20), "Expiring soon")],
    ids=["just created", "in its last fifth"],
)
def test_a_1_day_key_whose_creation_is_known_is_active_until_its_last_fifth(
    web: WebFactory, age: timedelta, badge: str
) -> None:
    w = web()
    created = datetime.now(UTC) - age
    body = {
        "id": 7,
        "name": "Seven",
        "expires_at": (created + timedelta(days=1)).isoformat(),
        "created_at": created.isoformat(),
    }
    w.provider.answer = lambda request: httpx.Response(200, json=body)
    page = w.link("good")
    # The calm note stays true: hub marks the account expiring before the key expires.
    assert "hub will mark it as expiring before then" in page.find("p", class_="note").text
    [row] = w.get("/accounts").find("table", class_="accounts").find("tbody").find_all("tr")
    assert row.find("span", class_="badge").text == badge
    status = "active" if badge == "Active" else "expiring"
    chosen = w.get(f"/accounts?status={status}").find("table", class_="accounts")
    assert chosen is not None
    assert len(chosen.find("tbody").find_all("tr")) == 1


def test_a_key_linked_after_its_end_is_said_to_have_expired_not_to_be_short_lived(
    web: WebFactory,
) -> None:
    w = web()
    w.provider.keys["old"] = (11, "Old", (datetime.now(UTC) - timedelta(days=2)).isoformat())
    page = w.link("old")
    [note] = page.find_all("p", class_="note")
    assert "has expired already" in note.text
    assert "short-lived" not in page.text


def test_a_key_valid_for_weeks_is_not_called_short_lived(web: WebFactory) -> None:
    w = web()
    w.provider.keys["good"] = (7, "Seven", (datetime.now(UTC) + timedelta(days=90)).isoformat())
    page = w.link("good")
    assert page.find("dl", class_="facts").find("time").text == "in 2 months"
    assert not page.find_all("p", class_="note")


@BACKENDS
def test_linking_a_known_identity_says_it_updated_the_account(web: WebFactory) -> None:
    w = web()
    first = w.link("good")
    again = w.link("good")
    assert again.response.request.url.params["updated"] == "1"
    assert "updated the existing account" in again.text
    assert len(w.account_ids()) == 1
    assert "updated" not in first.text


@BACKENDS
def test_reloading_the_confirmation_changes_nothing(web: WebFactory) -> None:
    w = web()
    page = w.link("good")
    sent, rows = w.provider.sent(), w.dump()
    again = w.get(str(page.response.request.url))
    assert again.status == 200
    assert again.find("h1").text == page.find("h1").text
    assert (w.provider.sent(), w.dump()) == (sent, rows)


# --- accounts ---------------------------------------------------------------------------------


def accounts_in_every_status(w: Web) -> dict[str, str]:
    """One account per status; account id by status."""
    now = datetime.now(UTC)
    ids = {
        "active": store_account(w, 1, "Active org"),
        "expiring": store_account(w, 2, "Expiring org", expires=now + timedelta(days=2)),
        "expired": store_account(w, 3, "Expired org", expires=now - timedelta(days=2)),
        "invalid": store_account(w, 4, "Invalid org"),
        "denied": store_account(w, 5, "Denied org"),
        "error": store_account(w, 6, "Error org"),
        "damaged": store_account(w, 11, "Damaged org"),
    }
    w.store.record(ids["invalid"], InvalidCredentials("The key was revoked"))
    w.store.record(ids["denied"], PermissionDenied("Needs read:org"))
    w.store.record(ids["error"], ProviderUnavailable("Acme was down"))
    # What a re-check records when it cannot read the stored key.
    w.store.record(ids["damaged"], StoreError("The stored key cannot be decrypted"))
    return ids


BADGES = {
    "active": "Active",
    "expiring": "Expiring soon",
    "expired": "Expired",
    "invalid": "Key refused",
    "denied": "Permission missing",
    "error": "Check failed",
    "damaged": "Damaged",
}


def test_accounts_shows_a_badge_with_text_for_each_status(web: WebFactory) -> None:
    w = web()
    ids = accounts_in_every_status(w)
    page = w.get("/accounts")
    assert page.status == 200
    rows = page.find("table", class_="accounts").find("tbody").find_all("tr")
    assert len(rows) == len(ids)
    for status, account_id in ids.items():
        [row] = [r for r in rows if r.find_all("a", href=f"/accounts/{account_id}/relink")]
        badge = row.find("span", class_="badge")
        assert badge.attrs["class"].split() == ["badge", f"badge-{status}"]
        assert badge.text == BADGES[status], status
        assert badge.attrs["title"]
        assert row.find_all("form", action=f"/accounts/{account_id}/check")
        assert row.find_all("a", href=f"/accounts/{account_id}/unlink")
    invalid = next(r for r in rows if "Invalid org" in r.text)
    assert invalid.find("span", class_="last-error").text == "The key was revoked"
    expiring = next(r for r in rows if "Expiring org" in r.text)
    assert expiring.find("td", data_label="Expires").find("time").text == "in 1 day"


@pytest.mark.parametrize("status", sorted(BADGES))
def test_accounts_filter_by_status(web: WebFactory, status: str) -> None:
    w = web()
    ids = accounts_in_every_status(w)
    page = w.get(f"/accounts?status={status}")
    links = [a.attrs["href"] for a in page.find_all("a") if a.text.startswith("Relink")]
    assert links == [f"/accounts/{ids[status]}/relink"]
    chosen = page.find("select", id="filter-status").find_all("option")
    assert [o.attrs["value"] for o in chosen if "selected" in o.attrs] == [status]


@BACKENDS
def test_accounts_filter_by_provider_and_pages(web: WebFactory) -> None:
    w = web(providers=[ACME, BETA], page_size=2)
    for n in range(5):
        store_account(w, n, f"Acme {n}")
    store_account(w, 50, "Beta one", provider="beta")
    page = w.get("/accounts?provider=beta")
    assert [r.find("strong").text for r in page.find("tbody").find_all("tr")] == ["Beta one"]
    assert not page.find_all("nav", class_="pager")

    first = w.get("/accounts?provider=acme")
    assert len(first.find("tbody").find_all("tr")) == 2
    assert "1–2 of 5" in first.find("p", class_="meta").text
    assert not first.find_all("a", rel="prev")
    assert "Page 1 of 3" in first.find("nav", class_="pager").text
    everything = w.get("/accounts")
    assert "of 6" in everything.find("p", class_="meta").text
    # Walking the pages (keyset cursors): test_web_accounts_pages.py.


def test_accounts_empty_states(web: WebFactory) -> None:
    w = web()
    empty = w.get("/accounts")
    assert "No account is linked yet" in empty.text
    assert empty.find("section", class_="empty").find("a").attrs["href"] == "/"
    store_account(w, 1, "One")
    none = w.get("/accounts?status=expired")
    assert "No account matches these filters." in none.text
    assert not none.find_all("table")


def three_accounts_two_a_page(web: WebFactory, query: str) -> Page:
    w = web(page_size=2)
    for n in range(3):
        store_account(w, n, f"Org {n}")
    page = w.get(f"/accounts?{query}")
    assert page.status == 200
    return page


@pytest.mark.parametrize("query", ["status=bogus", "status=%00", "provider=%00", "page=x"])
def test_accounts_ignores_a_bad_status_or_provider(web: WebFactory, query: str) -> None:
    page = three_accounts_two_a_page(web, query)
    if "provider" not in query:
        assert "Page 1 of 2" in page.find("nav", class_="pager").text


# --- check now, check all ---------------------------------------------------------------------


@BACKENDS
def test_check_now_records_the_verdict_and_says_it(web: WebFactory) -> None:
    w = web()
    account_id = store_account(w, 7, "Seven")  # key k7: the provider does not know it
    page = w.get("/accounts")
    answer = w.submit(page, f"/accounts/{account_id}/check")
    assert answer.status == 303
    assert answer.response.headers["location"].startswith("/accounts?notice=")
    after = w.follow(answer)
    assert after.find("p", class_="notice").text == "Checked Seven: Key refused."
    assert after.find("span", class_="badge").text == "Key refused"
    assert w.provider.sent() == 1
    # the notice is shown once
    assert not w.get(answer.response.headers["location"]).find_all("p", class_="notice")


@BACKENDS
def test_check_all_runs_in_the_background_and_shows_progress(web: WebFactory) -> None:
    w = web()
    for n in range(3):
        store_account(w, n, f"Org {n}")
    w.provider.keys.update({f"k{n}": (n, f"Org {n}", None) for n in range(3)})
    release = threading.Event()
    plain = w.provider.answer

    def held(request: Any) -> Any:
        release.wait(10)
        w.provider.answer = plain
        return w.provider(request)

    w.provider.answer = held
    answer = w.submit(w.get("/accounts"), "/accounts/check")
    assert answer.status == 303
    assert answer.response.headers["location"] == "/accounts"
    running = w.follow(answer)
    progress = running.by_id("check-progress")
    assert progress.attrs["data-refresh"] == "3"
    assert "Checking all accounts: 0 of 3 done." in progress.text
    assert "disabled" in running.form("/accounts/check").element.find("button").attrs
    release.set()
    deadline = time.monotonic() + 10
    while "Checked all" not in (done := w.get("/accounts")).text:
        assert time.monotonic() < deadline, done.text
        time.sleep(0.02)
    assert "Checked all 3 accounts: all keys work." in done.by_id("check-progress").text
    assert "data-refresh" not in done.by_id("check-progress").attrs
    assert all(a.checked_at is not None for a in w.store.accounts())


def test_check_all_counts_the_accounts_that_need_attention(web: WebFactory) -> None:
    w = web()
    store_account(w, 1, "One")  # k1: refused
    w.submit(w.get("/accounts"), "/accounts/check")
    deadline = time.monotonic() + 10
    while "Checked all" not in (done := w.get("/accounts")).text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "Checked all 1 accounts: 1 need attention." in done.text
    assert done.find("span", class_="badge").text == "Key refused"


# --- relink -----------------------------------------------------------------------------------


def linked(w: Web, key: str = "good", **values: str) -> str:
    page = w.link(key, **values)
    return str(page.response.request.url.path).split("/")[2]


def test_relink_page_prefills_the_identity_fields_and_not_the_key(web: WebFactory) -> None:
    w = web()
    account_id = linked(w, region="eu", team="ops")
    page = w.get(f"/accounts/{account_id}/relink")
    assert page.status == 200
    assert page.find("h1").text == "Relink Seven"
    form = page.form(f"/accounts/{account_id}/relink")
    assert form.values["region"] == "eu"
    assert form.values["team"] == "ops"
    key = form.element.find("input", id="field-api_key")
    assert "value" not in key.attrs
    assert page.by_id("note-api_key").text == "A key is stored; paste the new one."
    assert "(org:7)" in page.text


@BACKENDS
def test_relink_with_the_same_identity(web: WebFactory) -> None:
    w = web()
    account_id = linked(w)
    w.provider.keys["new-key"] = (7, "Seven renamed", None)
    answer = w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="new-key")
    assert answer.status == 303
    assert answer.response.headers["location"] == f"/accounts/{account_id}/linked?relinked=1"
    done = w.follow(answer)
    assert done.find("h1").text == "Acme key replaced"
    assert w.store.credentials(account_id)["api_key"] == "new-key"


@BACKENDS
def test_relink_to_another_identity_is_409_and_changes_nothing(web: WebFactory) -> None:
    w = web()
    account_id = linked(w)
    rows = w.dump()
    answer = w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="other")
    assert answer.status == 409
    alert = answer.find("div", role="alert")
    assert [s.text for s in alert.find_all("strong")] == ["Seven", "Eight"]
    assert w.dump() == rows
    assert w.store.credentials(account_id)["api_key"] == "good"


def test_relink_without_the_key_is_422(web: WebFactory) -> None:
    w = web()
    account_id = linked(w)
    answer = w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="")
    assert answer.status == 422
    assert answer.find("input", id="field-api_key").attrs["aria-invalid"] == "true"
    assert "Paste the new API Key" in answer.by_id("error-api_key").text
    assert w.provider.sent() == 1  # the link only


def test_relink_of_an_account_unlinked_during_the_check_is_404(web: WebFactory) -> None:
    w = web()
    account_id = linked(w)
    page = w.get(f"/accounts/{account_id}/relink")

    def unlinked_meanwhile(request: httpx.Request) -> httpx.Response:
        with sqlite3.connect(w.store.path) as conn:  # another tab, or `hub unlink`
            conn.execute("DELETE FROM accounts")
        return httpx.Response(200, json={"id": 7, "name": "Seven"})

    w.provider.answer = unlinked_meanwhile
    answer = w.submit(page, api_key="good")
    assert answer.status == 404
    assert "The account was unlinked meanwhile" in answer.find("div", role="alert").text
    assert w.account_ids() == []


def test_check_now_of_an_account_unlinked_meanwhile_is_404(web: WebFactory) -> None:
    w = web()
    account_id = linked(w)
    page = w.get("/accounts")
    w.store.delete(account_id)
    answer = w.submit(page, f"/accounts/{account_id}/check")
    assert answer.status == 404
    assert w.provider.sent() == 1


# --- unlink -----------------------------------------------------------------------------------


@BACKENDS
def test_unlink_asks_then_forgets_the_account(web: WebFactory) -> None:
    w = web()
    account_id = linked(w)
    page = w.get(f"/accounts/{account_id}/unlink")
    assert page.status == 200
    assert page.find("h1").text == "Unlink Seven?"
    assert "keeps working at Acme until you revoke it there" in page.text
    assert page.find("a", class_="button").attrs["href"] == "/accounts"
    assert w.account_ids() == [account_id]  # the GET changed nothing
    answer = w.submit(page, f"/accounts/{account_id}/unlink")
    assert answer.status == 303
    after = w.follow(answer)
    assert "Unlinked Seven" in after.find("p", class_="notice").text
    assert w.account_ids() == []
    assert w.get(f"/accounts/{account_id}/unlink").status == 404


def test_unlinking_twice_says_it_is_gone_already(web: WebFactory) -> None:
    """A double click on Unlink: the second POST finds nothing to unlink, calmly."""
    w = web()
    account_id = linked(w)
    page = w.get(f"/accounts/{account_id}/unlink")
    assert w.submit(page, f"/accounts/{account_id}/unlink").status == 303
    again = w.submit(page, f"/accounts/{account_id}/unlink")
    assert again.status == 303
    assert "not linked any more" in w.follow(again).find("p", class_="notice").text
    assert w.account_ids() == []


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(seconds=20), "in less than a minute"),
        (timedelta(seconds=-20), "just now"),
        (timedelta(minutes=5, seconds=3), "in 5 minutes"),
        (timedelta(hours=-1), "1 hour ago"),
        (timedelta(hours=23, minutes=59), "in 23 hours"),
        (timedelta(days=59), "in 59 days"),
        (timedelta(days=61), "in 2 months"),
        (timedelta(days=-400), "13 months ago"),
        (timedelta(days=1614), "in 4 years"),
    ],
)
def test_times_are_said_as_a_person_says_them(delta: timedelta, words: str) -> None:
    from hub_core.web.present import relative

    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert relative(now + delta, now=now) == words


def test_a_plugin_failure_is_logged_for_the_operator_without_the_key(
    web: WebFactory, caplog: pytest.LogCaptureFixture
) -> None:
    w = web()
    with caplog.at_level(logging.WARNING, logger="hub_core.web"):
        answer = w.submit(w.get("/connect/acme"), api_key="crash", team="kept")
    assert answer.status == 500
    assert "server's log" in answer.find("div", role="alert").text
    (record,) = [r for r in caplog.records if "failed in its plugin" in r.getMessage()]
    assert "a check of acme failed in its plugin: the plugin" in record.getMessage()
    assert "RuntimeError" in record.getMessage()  # what failed, for the operator
