"""The web Hub in a real browser: Debian's Chromium (Playwright) against the real `hub serve`.

`hub serve` runs against the end-to-end fake providers behind the loopback proxy, so every
Connect is a live check whose requests the fakes count. Every page a test opens is also
audited (`Browsing.audit`): axe finds no WCAG 2.1 A/AA violation, at a wide and at a 375 px
viewport, and nothing scrolls sideways at 375 px. Every test ends with no console error, no
page error and no Content Security Policy violation in any page it opened (Chromium reports
CSP violations on the console).

Linking for others runs the same way: an auth link from the real `hub link-url`, opened in a
fresh context, and host sessions of ``tests/host_app.py`` (the `host_app` fixture: a Starlette
host mounting the Hub at ``/app/hub``, in its own uvicorn process beside the same fakes).

``HUB_SCREENSHOTS=1`` writes the two screenshots the README shows into ``docs/screenshots/``;
without it they are written to a temporary directory, so the code making them always runs.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 375, "height": 812}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
with_and_without_javascript = pytest.mark.parametrize(
    "javascript", [True, False], ids=["js", "no-js"]
)
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
#: Milliseconds any one browser action may wait.
WAIT = 15_000

QLIK_URL = "https://acme.eu.qlikcloud.com"
#: Who the Qlik test key reaches.
QLIK_LABEL = "Ada Lovelace @ acme.eu.qlikcloud.com"
#: A second Elastic key (another organization), valid once a test adds it to the fake.
GLOBEX_KEY = "essu_Z2xvYmV4LXRlc3Qta2V5OnNlY3JldC1wYXJ0LTk4NzY1NDMyMTA="
GLOBEX_ORG = {"id": "org2", "name": "Globex Corp"}
#: A name with no place to break it (a hostile or careless provider's).
LONG_NAME = "Vandelay" + "ImportExport" * 8

_axe: Any = None


def _axe_checker() -> Any:
    global _axe  # loads axe-core's 570 KB script once per run
    if _axe is None:
        from axe_playwright_python.sync_playwright import Axe

        _axe = Axe()
    return _axe


class Browsing:
    """One browser context signed in to one `hub serve`, watching everything its pages say.

    `problems` collects console errors and warnings, CSP violations and uncaught page errors;
    `posts` every form POST the browser sent; `documents` the status of every page loaded.
    """

    def __init__(self, browser: Any, server: Any, *, javascript: bool = True) -> None:
        self.server = server
        self.javascript = javascript
        self.context = browser.new_context(
            viewport=WIDE, java_script_enabled=javascript, base_url=server.base.rstrip("/")
        )
        self.context.set_default_timeout(WAIT)
        self.problems: list[str] = []
        self.posts: list[str] = []
        self.documents: dict[str, int] = {}
        self.audited: list[str] = []
        self.context.on("console", self._console)
        self.context.on("weberror", lambda error: self.problems.append(f"error: {error.error}"))
        self.context.on("request", self._request)
        self.context.on("response", self._response)
        self.page = self.context.new_page()

    def _request(self, request: Any) -> None:
        if request.method == "POST":
            self.posts.append(request.url)

    def _response(self, response: Any) -> None:
        if response.request.resource_type == "document":
            self.documents[response.url] = response.status

    def _console(self, message: Any) -> None:
        text = message.text
        where = message.location.get("url", "")
        failed = re.match(
            r"Failed to load resource: the server responded with a status of (\d+)", text
        )
        if failed and self.documents.get(where) == int(failed[1]):
            return  # an error page the test asked for, not a resource that failed
        if message.type in ("error", "warning") or "Content Security Policy" in text:
            self.problems.append(f"console {message.type} at {where}: {text}")

    def sign_in(self) -> None:
        """Open the address `hub serve` printed: the Providers page, without the token."""
        self.page.goto(self.server.sign_in)
        assert self.page.url == self.server.base
        assert "token" not in self.page.url

    def open(self, path: str, status: int = 200) -> None:
        answer = self.page.goto(path)
        assert answer is not None
        assert answer.status == status, f"{path}: {answer.status}"

    def submit(self, button: str) -> int:
        """Click the submit button named *button*; the status of the page it leads to."""
        with self.page.expect_navigation() as navigation:
            self.page.get_by_role("button", name=button, exact=True).click()
        answer = navigation.value
        return 0 if answer is None else int(answer.status)

    def audit(self, screen: str) -> None:
        """axe (WCAG 2.1 A/AA) finds nothing, wide and 375 px wide; nothing scrolls sideways.

        axe needs the page's JavaScript (its promises never settle without it): with
        JavaScript off only the width is checked. The markup is the same either way.
        """
        self.page.wait_for_load_state("load")
        for viewport in (WIDE, NARROW):
            self.page.set_viewport_size(viewport)
            try:
                if self.javascript:
                    options = {
                        "runOnly": {"type": "tag", "values": WCAG},
                        "resultTypes": ["violations"],
                    }
                    results = _axe_checker().run(self.page, options=options)
                    assert results.violations_count == 0, (
                        f"{screen} at {viewport['width']} px:\n{results.generate_report()}"
                    )
                if viewport is NARROW:
                    scroll, client = self.page.evaluate(
                        "[document.documentElement.scrollWidth,"
                        " document.documentElement.clientWidth]"
                    )
                    assert scroll <= client, (
                        f"{screen} scrolls sideways at 375 px: {scroll} > {client}"
                    )
            finally:
                self.page.set_viewport_size(WIDE)
        self.audited.append(screen)

    def screenshot(self, name: str, directory: Path, *, full_page: bool = False) -> Path:
        path = directory / name
        self.page.screenshot(
            path=str(path), full_page=full_page, animations="disabled", caret="hide"
        )
        return path

    def close(self) -> None:
        self.context.close()


def _contexts(chromium: Any, server: Any) -> Iterator[Callable[..., Browsing]]:
    """Opens `Browsing` contexts on *server*; after the test, each had no page problem."""
    opened: list[Browsing] = []

    def start(*, javascript: bool = True, signed_in: bool = True) -> Browsing:
        browsing = Browsing(chromium, server, javascript=javascript)
        opened.append(browsing)
        if signed_in:
            browsing.sign_in()
        return browsing

    try:
        yield start
    finally:
        problems = [problem for browsing in opened for problem in browsing.problems]
        for browsing in opened:
            browsing.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def browse(chromium: Any, hub_server: Any) -> Iterator[Callable[..., Browsing]]:
    """Opens `Browsing` contexts on the test's `hub serve`; each ends with no page problem."""
    yield from _contexts(chromium, hub_server)


@pytest.fixture
def browse_host(chromium: Any, host_app: Any) -> Iterator[Callable[..., Browsing]]:
    """Opens `Browsing` contexts on the test's host app (`host_app`), as its customer."""
    yield from _contexts(chromium, host_app)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: ``docs/screenshots`` with ``HUB_SCREENSHOTS=1``."""
    if os.environ.get("HUB_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


def _box(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not visible"
    return dict(box)


def _link_qlik(web: Browsing, keys: Any) -> None:
    """From Providers, link the Qlik key, pasting the whole tenant address."""
    page = web.page
    page.get_by_role("link", name="Connect Qlik Cloud").click()
    page.wait_for_url("**/connect/qlik")
    _fill_qlik(page, keys)
    assert web.submit("Connect") == 200
    assert re.search(r"/accounts/[^/]+/linked$", page.url), page.url


def _fill_qlik(form: Any, keys: Any) -> None:
    """On a Qlik Connect form (a page or a frame): paste the whole tenant address, leave
    Region empty, paste the key."""
    form.locator("#field-tenant").fill(QLIK_URL)
    assert form.locator("#field-region").input_value() == ""
    form.locator("#field-api_key").fill(keys.qlik)


def _link_elastic(web: Browsing, key: str) -> int:
    page = web.page
    web.open("/")
    page.get_by_role("link", name="Connect Elastic Cloud").click()
    page.wait_for_url("**/connect/elastic")
    page.locator("#field-api_key").fill(key)
    return web.submit("Connect")


# --- linking ---------------------------------------------------------------------------------


def test_link_qlik_with_its_guide_beside_the_form_then_elastic_to_the_accounts_page(
    browse: Callable[..., Browsing], qlik: Any, elastic: Any, keys: Any, screenshots: Path
) -> None:
    web = browse()
    page = web.page
    web.audit("providers")
    page.get_by_role("link", name="Connect Qlik Cloud").click()
    page.wait_for_url("**/connect/qlik")
    # Wide: the guide beside the form (left of it, the two side by side).
    guide, form = _box(page, ".guide"), _box(page, ".form-panel")
    assert guide["x"] + guide["width"] <= form["x"]
    assert form["y"] < guide["y"] + guide["height"]
    assert guide["y"] < form["y"] + form["height"]
    assert page.get_by_role("heading", name=re.compile("Where to find")).is_visible()
    web.screenshot("connect.png", screenshots)
    web.audit("connect (Qlik Cloud)")
    # Narrow: the guide above the form.
    page.set_viewport_size(NARROW)
    guide, form = _box(page, ".guide"), _box(page, ".form-panel")
    assert guide["y"] + guide["height"] <= form["y"]
    page.set_viewport_size(WIDE)

    page.locator("#field-tenant").fill(QLIK_URL)  # the whole address, Region left empty
    page.locator("#field-api_key").fill(keys.qlik)
    assert web.submit("Connect") == 200
    assert re.search(r"/accounts/[^/]+/linked$", page.url), page.url
    assert page.get_by_role("heading", name="Qlik Cloud account linked").is_visible()
    facts = page.locator("dl.facts").inner_text()
    assert "Ada Lovelace @ acme.eu.qlikcloud.com" in facts  # who the key reaches
    assert f"tenant:{keys.qlik_tenant_id}/user:{keys.qlik_user_id}" in facts
    assert "2031-05-04 03:02 UTC" in facts  # when it expires
    assert page.evaluate("document.activeElement.id") == "done-title"
    web.audit("confirmation (Qlik Cloud)")
    asked = len(qlik.requests)
    assert asked > 0
    page.reload()  # the confirmation is a GET: nothing is checked again
    assert page.get_by_role("heading", name="Qlik Cloud account linked").is_visible()
    assert len(qlik.requests) == asked

    assert _link_elastic(web, keys.elastic) == 200
    assert page.get_by_role("heading", name="Elastic Cloud account linked").is_visible()
    assert len(elastic.requests) == 1
    page.get_by_role("link", name="Go to the accounts").click()
    page.wait_for_url("**/accounts")
    rows = page.locator("table.accounts tbody tr")
    assert rows.count() == 2
    for name, label in (
        ("Qlik Cloud", "Ada Lovelace @ acme.eu.qlikcloud.com"),
        ("Elastic Cloud", "Acme Org"),
    ):
        row = rows.filter(has_text=name)
        assert row.count() == 1
        assert label in row.inner_text()
        assert row.locator(".badge").inner_text() == "Active"
    assert keys.qlik_canary not in page.content()
    assert len(qlik.requests) == asked
    assert len(elastic.requests) == 1
    assert len(web.posts) == 2  # one POST per Connect


@with_and_without_javascript
def test_a_wrong_key_shows_its_message_under_the_key_keeping_the_other_values(
    browse: Callable[..., Browsing], qlik: Any, keys: Any, javascript: bool
) -> None:
    web = browse(javascript=javascript)
    page = web.page
    web.open("/connect/qlik")
    page.locator("#field-tenant").fill("acme")
    page.locator("#field-region").select_option("eu")
    page.locator("#field-api_key").fill(keys.qlik.replace("CANARY", "WRONG"))
    assert web.submit("Connect") == 422
    asked = len(qlik.requests)
    assert asked > 0
    key = page.locator("#field-api_key")
    assert key.input_value() == ""
    assert key.get_attribute("aria-invalid") == "true"
    message = page.locator("#error-api_key")
    assert message.is_visible()
    assert message.inner_text().strip()
    # Under the key's input, and the input names it.
    assert _box(page, "#error-api_key")["y"] >= _box(page, "#field-api_key")["y"]
    assert "error-api_key" in (key.get_attribute("aria-describedby") or "")
    assert page.locator("#field-tenant").input_value() == "acme"
    assert page.locator("#field-region").input_value() == "eu"
    summary = page.get_by_role("alert")
    assert "Nothing was linked" in summary.inner_text()
    assert summary.locator("a[href='#field-api_key']").count() == 1
    assert "WRONG" not in page.content()
    # The summary leads the page, also on a phone where the long guide comes first.
    page.set_viewport_size(NARROW)
    page.reload()  # the same form again: answered with its first outcome, no new check
    assert len(web.posts) == 2
    assert _box(page, "[role=alert]")["y"] + _box(page, "[role=alert]")["height"] <= 812
    assert page.locator("#error-api_key").is_visible()
    assert len(qlik.requests) == asked
    page.set_viewport_size(WIDE)
    web.audit("connect with field errors")
    summary.locator("a[href='#field-api_key']").click()
    assert page.url.endswith("#field-api_key")


@with_and_without_javascript
def test_double_clicking_connect_then_reloading_makes_one_check(
    browse: Callable[..., Browsing], elastic: Any, keys: Any, javascript: bool
) -> None:
    web = browse(javascript=javascript)
    page = web.page
    web.open("/connect/elastic")
    page.locator("#field-api_key").fill(keys.elastic)
    if javascript:
        # What the person sees while the check runs, kept for after the page has gone
        # (Playwright cannot look at a page while its navigation is pending).
        page.evaluate(
            """() => {
              const form = document.querySelector("form.link-form");
              form.addEventListener("submit", () => setTimeout(() => sessionStorage.setItem(
                "checking", JSON.stringify([form.querySelector("button[type=submit]").disabled,
                  form.querySelector("[role=status]").textContent])), 50));
            }"""
        )
    elastic.held.add(keys.elastic)  # the check waits at the fake until released
    threading.Timer(1.0, elastic.release.set).start()
    page.get_by_role("button", name="Connect", exact=True).dblclick()
    # Not expect_navigation(): without JavaScript the second click's POST may abort the
    # first one's navigation (ERR_ABORTED), and the page that stays is the second answer;
    # a wait under way when that happens fails with it, so it waits again for that answer.
    linked = re.compile(r".*/accounts/[^/]+/linked$")
    for attempt in range(3):
        try:
            page.wait_for_url(linked)
            break
        except Exception as exc:  # playwright's Error, a module this file loads lazily
            if "ERR_ABORTED" not in str(exc) or attempt == 2:
                raise
    assert re.search(r"/accounts/[^/]+/linked$", page.url), page.url
    assert page.get_by_role("heading", name="Elastic Cloud account linked").is_visible()
    assert len(elastic.requests) == 1
    if javascript:
        checking = page.evaluate("JSON.parse(sessionStorage.getItem('checking'))")
        assert checking == [False, "Checking with Elastic Cloud…"]  # never locked
    # Sent twice, maybe (hub.js never locks the form, so a stopped page can be sent again):
    # the one-time form token makes that one check, as asserted above.
    assert 1 <= len(web.posts) <= 2
    page.reload()
    assert page.get_by_role("heading", name="Elastic Cloud account linked").is_visible()
    page.go_back()  # to a fresh Connect form, which works again
    assert page.url.endswith("/connect/elastic")
    assert page.get_by_role("button", name="Connect", exact=True).is_enabled()
    page.go_forward()
    assert page.get_by_role("heading", name="Elastic Cloud account linked").is_visible()
    assert len(elastic.requests) == 1


# --- the accounts ------------------------------------------------------------------------------


def _store(hub_home: Path) -> Any:
    """The store `hub serve` uses, opened in this process with the same key file."""
    from hub_core.store import Store

    key = (hub_home / "hub.key").read_bytes().strip()
    return Store(hub_home / "hub.db", secret_key=key)


def _save_elastic(store: Any, org: str, name: str, **verified: Any) -> str:
    from hub_core.model import Credentials, Verified

    credentials = Credentials({"api_key": f"essu_{org}-not-a-real-key"}, secret=["api_key"])
    found = Verified(identity=f"org:{org}", label=name, **verified)
    return str(store.save("elastic", found, credentials).id)


def _badges(page: Any) -> dict[str, str]:
    rows = page.locator("table.accounts tbody tr")
    return {
        rows.nth(i).locator("td strong").first.inner_text(): rows.nth(i)
        .locator(".badge")
        .inner_text()
        for i in range(rows.count())
    }


def test_accounts_in_every_status_check_relink_unlink_and_check_all(
    browse: Callable[..., Browsing],
    elastic: Any,
    qlik: Any,
    keys: Any,
    hub_home: Path,
    screenshots: Path,
) -> None:
    from hub_core.errors import PermissionDenied, ProviderUnavailable

    web = browse()
    page = web.page
    web.open("/accounts")
    assert page.get_by_role("heading", name="No account is linked yet").is_visible()
    web.audit("accounts (none yet)")
    web.open("/")
    _link_qlik(web, keys)
    assert _link_elastic(web, keys.elastic) == 200
    elastic.keys[GLOBEX_KEY] = GLOBEX_ORG
    elastic.expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    assert _link_elastic(web, GLOBEX_KEY) == 200  # expiring: its key ends in 3 days
    initech_key = GLOBEX_KEY.replace("Z2xv", "SW5p")
    elastic.keys[initech_key] = {"id": "org3", "name": "Initech"}
    assert _link_elastic(web, initech_key) == 200
    # Verdicts the fakes cannot give as easily, written where `hub serve` reads them.
    now = datetime.now(UTC)
    with _store(hub_home) as store:
        _save_elastic(store, "org4", "Umbrella Corp", expires_at=now - timedelta(days=2))
        hooli = _save_elastic(store, "org5", "Hooli")
        store.record(hooli, PermissionDenied("The key may not read the organization."))
        vandelay = _save_elastic(store, "org6", "Vandelay Industries")
        store.record(vandelay, ProviderUnavailable("Elastic Cloud timed out.", reason="timeout"))

    # Check now: Initech's key is refused from now on.
    del elastic.keys[initech_key]
    web.open("/accounts")
    row = page.locator("table.accounts tbody tr").filter(has_text="Initech")
    assert web.submit("Check now Initech") == 200
    assert page.get_by_role("status").filter(has_text="Checked Initech").is_visible()
    expected = {
        "Ada Lovelace @ acme.eu.qlikcloud.com": "Active",
        "Acme Org": "Active",
        "Globex Corp": "Expiring soon",
        "Initech": "Key refused",
        "Umbrella Corp": "Expired",
        "Hooli": "Permission missing",
        "Vandelay Industries": "Check failed",
    }
    assert _badges(page) == expected
    assert row.locator(".last-error").inner_text().strip()
    web.open("/accounts")  # without the notice, for the screenshot
    web.screenshot("accounts.png", screenshots, full_page=True)
    # A name with no place to break it must not push the page sideways either.
    with _store(hub_home) as store:
        _save_elastic(store, "org7", LONG_NAME, expires_at=now + timedelta(days=400))
    web.open("/accounts")
    assert _badges(page) == {**expected, LONG_NAME: "Active"}
    web.audit("accounts (several statuses)")

    # Filters.
    page.locator("#filter-status").select_option("invalid")
    assert web.submit("Filter") == 200
    assert _badges(page) == {"Initech": "Key refused"}
    page.locator("#filter-status").select_option("")
    page.locator("#filter-provider").select_option("qlik")
    assert web.submit("Filter") == 200
    assert list(_badges(page)) == ["Ada Lovelace @ acme.eu.qlikcloud.com"]
    web.open("/accounts?status=damaged")
    assert page.get_by_text("No account matches these filters.").is_visible()
    web.audit("accounts (nothing matches)")

    # Relink: another organization's key is refused with both labels; the same one works.
    web.open("/accounts")
    page.get_by_role("link", name="Relink Acme Org").click()
    assert page.get_by_role("heading", name="Relink Acme Org").is_visible()
    assert page.locator("#field-api_key").input_value() == ""
    web.audit("relink")
    page.locator("#field-api_key").fill(GLOBEX_KEY)
    assert web.submit("Check and relink") == 409
    alert = page.get_by_role("alert").inner_text()
    assert "Acme Org" in alert
    assert "Globex Corp" in alert
    web.audit("relink (another identity)")
    page.locator("#field-api_key").fill(keys.elastic)
    assert web.submit("Check and relink") == 200
    assert page.get_by_role("heading", name="Elastic Cloud key replaced").is_visible()
    web.audit("confirmation (relinked)")

    # Unlink, after a confirmation.
    web.open("/accounts")
    page.get_by_role("link", name="Unlink Initech").click()
    assert page.get_by_role("heading", name="Unlink Initech?").is_visible()
    web.audit("unlink")
    assert web.submit("Unlink") == 200
    assert page.get_by_role("status").filter(has_text="Unlinked Initech").is_visible()
    assert "Initech" not in _badges(page)

    # Check all runs in the background; hub.js reloads the page until it is done.
    elastic.held.add(GLOBEX_KEY)
    assert web.submit("Check all") == 200
    assert page.get_by_text(re.compile(r"Checking all accounts: \d of 7 done")).is_visible()
    assert page.get_by_role("button", name="Check all").is_disabled()
    web.audit("accounts (checking all)")
    elastic.release.set()
    with page.expect_navigation():  # hub.js reloads the page, now with the verdicts
        pass
    page.get_by_text(re.compile("Checked all 7 accounts")).wait_for()
    assert page.get_by_role("button", name="Check all").is_enabled()
    assert "need attention" in page.locator("#check-progress").inner_text()


def test_every_flow_works_without_javascript(
    browse: Callable[..., Browsing], elastic: Any, qlik: Any, keys: Any
) -> None:
    web = browse(javascript=False)
    page = web.page
    _link_qlik(web, keys)
    assert page.get_by_role("heading", name="Qlik Cloud account linked").is_visible()
    assert _link_elastic(web, keys.elastic) == 200
    page.get_by_role("link", name="Go to the accounts").click()
    assert _badges(page) == {
        "Ada Lovelace @ acme.eu.qlikcloud.com": "Active",
        "Acme Org": "Active",
    }
    asked = len(elastic.requests)
    assert web.submit("Check now Acme Org") == 200
    assert page.get_by_role("status").filter(has_text="Checked Acme Org: Active").is_visible()
    assert len(elastic.requests) == asked + 1
    page.get_by_role("link", name="Relink Acme Org").click()
    page.locator("#field-api_key").fill(keys.elastic)
    assert web.submit("Check and relink") == 200
    assert page.get_by_role("heading", name="Elastic Cloud key replaced").is_visible()
    web.open("/accounts")
    assert web.submit("Check all") == 200
    for _ in range(50):  # no hub.js: the person reloads until the run is done
        if page.get_by_text(re.compile("Checked all 2 accounts: all keys work")).count():
            break
        time.sleep(0.1)
        page.reload()
    else:
        pytest.fail("Check all did not finish")
    page.get_by_role("link", name="Unlink Acme Org").click()
    assert web.submit("Unlink") == 200
    assert list(_badges(page)) == ["Ada Lovelace @ acme.eu.qlikcloud.com"]


# --- error pages -------------------------------------------------------------------------------


def test_error_pages_are_calm_and_accessible(browse: Callable[..., Browsing]) -> None:
    stranger = browse(signed_in=False)
    stranger.open("/accounts", status=401)
    assert stranger.page.get_by_role("heading", name="Sign in to the Hub").is_visible()
    stranger.audit("sign-in needed (401)")
    stranger.open("/?token=not-the-token", status=401)
    stranger.audit("wrong sign-in address (401)")

    web = browse()
    page = web.page
    for path, status, title in [
        ("/connect/nothing-like-it", 404, "No such provider"),
        ("/accounts/0000dead/unlink", 404, "No such account"),
        ("/no/such/page", 404, "Page not found"),
        ("/accounts/check", 405, "Not allowed"),
    ]:
        web.open(path, status=status)
        assert page.get_by_role("heading", name=title).is_visible()
        assert page.get_by_role("link", name="Go to the providers").is_visible()
        web.audit(f"{title} ({status})")
    # A form of an older session (its token no longer the cookie's): refused.
    web.open("/accounts")
    page.evaluate(
        "for (const f of document.querySelectorAll('input[name=csrf_token]')) f.value = 'old'"
    )
    assert web.submit("Check all") == 403
    assert page.get_by_role("heading", name="The form expired").is_visible()
    web.audit("form expired (403)")


# --- linking for others: auth links and host sessions -------------------------------------


def _own_links(page: Any, base: str) -> list[str]:
    """The page's links to its own server: a link visitor's pages have none (no way into
    the dashboard), a host session's only those back to the host's ``return_url``. The
    skip link (``#main``) stays on the page, so it is not one."""
    hrefs: list[str] = page.eval_on_selector_all(
        "a[href]:not([href^='#'])", "links => links.map(a => a.href)"
    )
    return [href for href in hrefs if href.startswith(base)]


def test_an_auth_link_in_a_fresh_browser_links_one_qlik_account_then_says_it_was_used(
    browse: Callable[..., Browsing], hub: Any, hub_server: Any, qlik: Any, keys: Any
) -> None:
    base = hub_server.base.rstrip("/")
    made = hub.run("link-url", "qlik", "--note", "Ada at Acme", "--base-url", base, "--json")
    assert made.returncode == 0, made.stderr
    url = json.loads(made.stdout)["url"]
    token = url.rsplit("/l/", 1)[1]
    visitor = browse(signed_in=False)  # a fresh context: no dashboard cookie, only the link
    page = visitor.page
    assert visitor.context.cookies() == []
    for _ in range(2):  # a second GET before use works the same (mail scanners open links)
        visitor.open(url)
        assert page.url == f"{base}/link"  # the token left the address bar (cookie, 303)
        assert page.get_by_role("heading", name="Connect Qlik Cloud").is_visible()
        assert page.get_by_text("Link requested for Ada at Acme").is_visible()
        assert _own_links(page, base) == []
    assert token not in page.content()
    visitor.audit("link: connect as a visitor")

    # The link opens its own page only: every dashboard page refuses its visitor.
    for path in ("/", "/accounts", "/connect/elastic"):
        visitor.open(path, status=403)
        assert page.get_by_role("heading", name="This page is not part of your link").is_visible()
        assert _own_links(page, base) == []
    visitor.audit("link: a dashboard page (403)")

    visitor.open("/link")
    _fill_qlik(page, keys)
    assert visitor.submit("Connect") == 200
    assert page.url == f"{base}/link/done"
    assert page.get_by_role("heading", name="Qlik Cloud account linked").is_visible()
    assert "Ada Lovelace @ acme.eu.qlikcloud.com" in page.locator("dl.facts").inner_text()
    assert page.get_by_text("That is all: you may close this tab.").is_visible()
    assert _own_links(page, base) == []
    assert keys.qlik_canary not in page.content()
    visitor.audit("link: confirmation")
    assert len(visitor.posts) == 1
    visitor.open("/accounts", status=403)  # linking made the visitor no dashboard user

    visitor.open(url, status=410)
    assert page.get_by_role("heading", name="This link was used already").is_visible()
    assert page.get_by_text("Ask the person who sent it for a new link.").is_visible()
    assert _own_links(page, base) == []
    visitor.audit("link: already used (410)")
    linked = hub.json("accounts", "--json")
    assert [(a["provider"], a["label"], a["owner"]) for a in linked] == [
        ("qlik", "Ada Lovelace @ acme.eu.qlikcloud.com", None)
    ]
    assert hub_server.stop().returncode == 0
    assert token not in hub_server.stdout + hub_server.log  # the access log hides it


def _host_state(web: Browsing) -> str:
    """The ``state`` the host app gave the session it sent this browser to (its cookie)."""
    return next(c["value"] for c in web.context.cookies() if c["name"] == "host_state")


def _session_tokens(web: Browsing) -> list[str]:
    """Collects the tokens of the session addresses (``/l/<token>``) the browser requests."""
    tokens: list[str] = []
    found = re.compile(r"/app/hub/l/([^/?#]+)")
    web.context.on(
        "request", lambda request: tokens.extend(found.findall(request.url.split("?")[0]))
    )
    return tokens


def test_a_host_session_links_for_the_hosts_customer_and_leads_back_to_the_host_page(
    browse_host: Callable[..., Browsing], host_app: Any, hub: Any, qlik: Any, keys: Any
) -> None:
    base = host_app.base.rstrip("/")
    web = browse_host(signed_in=False)
    page = web.page
    tokens = _session_tokens(web)
    web.open("/app/connect")  # the host creates a session and redirects to it
    assert page.url == f"{base}/app/hub/link"
    assert len(tokens) == 1
    assert page.get_by_role("heading", name="Connect Qlik Cloud").is_visible()
    state = _host_state(web)
    cancel = f"{base}/app/back?hub_result=cancelled&state={state}"
    assert _own_links(page, base) == [cancel]  # Cancel, to the host: nothing of the dashboard
    web.audit("session: connect")
    _fill_qlik(page, keys)
    assert web.submit("Connect") == 200
    assert page.url == f"{base}/app/hub/link/done"
    assert page.get_by_role("heading", name="Qlik Cloud account linked").is_visible()
    assert page.get_by_text("you may close this tab").count() == 0  # the host takes them back
    web.audit("session: confirmation")
    [account] = hub.json("accounts", "--json")
    assert (account["provider"], account["label"]) == ("qlik", QLIK_LABEL)
    assert (account["owner"], account["owner_name"]) == ("cust-1", "Customer One")
    back = f"{base}/app/back?hub_result=linked&hub_account={account['id']}&hub_provider=qlik"
    assert _own_links(page, base) == [f"{back}&state={state}"]

    page.get_by_role("link", name="Back to the app").click()
    page.wait_for_url(f"{base}/app/back?**")
    assert page.get_by_role("heading", name="Account linked").is_visible()
    # The host checked the state and found the account among its customer's.
    assert page.locator("#result").inner_text() == f"{QLIK_LABEL} (qlik)"

    web.open(f"/app/hub/l/{tokens[0]}", status=410)  # a session links once
    assert page.get_by_role("heading", name="This link was used already").is_visible()
    web.open("/app/hub/accounts", status=403)  # the host's authorize= lets nobody in
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    assert host_app.stop().returncode == 0
    assert tokens[0] not in host_app.stdout + host_app.log  # the access log hides it


def test_cancel_on_a_host_sessions_connect_page_leads_back_with_hub_result_cancelled(
    browse_host: Callable[..., Browsing], hub: Any, qlik: Any
) -> None:
    web = browse_host(signed_in=False)
    page = web.page
    web.open("/app/connect")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url("**/app/back?**")
    assert page.url.endswith(f"/app/back?hub_result=cancelled&state={_host_state(web)}")
    assert page.get_by_role("heading", name="Nothing was linked").is_visible()
    assert web.posts == []
    assert qlik.requests == []
    assert hub.json("accounts", "--json") == []


def test_a_host_framing_the_hub_hears_from_hub_js_that_the_account_is_linked(
    browse_host: Callable[..., Browsing], hub: Any, qlik: Any, keys: Any
) -> None:
    web = browse_host(signed_in=False)
    page = web.page
    web.open("/app/framed")  # the host's page, the session's Connect page in its iframe
    frame = page.frame_locator("iframe")
    frame.get_by_role("heading", name="Connect Qlik Cloud").wait_for()
    _fill_qlik(frame, keys)
    frame.get_by_role("button", name="Connect", exact=True).click()
    frame.get_by_role("heading", name="Qlik Cloud account linked").wait_for()
    message = page.locator("#message")
    message.filter(has_text="hub_result").wait_for()
    [account] = hub.json("accounts", "--json")
    assert account["owner"] == "cust-1"
    assert json.loads(message.inner_text()) == {
        "hub_result": "linked",
        "hub_account": account["id"],
        "hub_provider": "qlik",
        "state": _host_state(web),
    }
