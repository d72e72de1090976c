"""The operator's dashboard in a real browser: the Check all refresh and a stopped Connect.

Driven like ``tests/test_web_browser.py`` (its `browse` fixture and helpers): Debian's
Chromium under Playwright against the real `hub serve` and the fake providers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from test_web_browser import Browsing, _link_elastic, browse  # noqa: F401 (browse: a fixture)

pytestmark = pytest.mark.slow


def test_check_all_refreshing_keeps_the_keyboard_focus_on_a_link(
    browse: Callable[..., Browsing],  # noqa: F811
    elastic: Any,
    keys: Any,
) -> None:
    """While Check all runs, hub.js reloads the Accounts page every 3 s, but not while
    anything has the focus: a keyboard user who has tabbed to "Relink …" (a link, not a
    form) is not sent back to the top of a new page (WCAG 2.2.1, 2.4.3)."""
    web = browse()
    page = web.page
    assert _link_elastic(web, keys.elastic) == 200
    elastic.held.add(keys.elastic)  # the run's check waits at the fake until released
    try:
        web.open("/accounts")
        assert web.submit("Check all") == 200
        assert page.locator("#check-progress").get_attribute("data-refresh") == "3"
        relink = page.get_by_role("link", name="Relink Acme Org")
        relink.focus()
        page.evaluate("window.hubPageMarker = 1")  # gone if the page is loaded again
        time.sleep(4.5)  # past one refresh
        focused = page.evaluate(
            "(e => e === document.body ? '<body>' : e.textContent.trim())(document.activeElement)"
        )
        reloaded = page.evaluate("window.hubPageMarker === undefined")
        assert (focused, reloaded) == ("Relink Acme Org", False)
    finally:
        elastic.release.set()


def test_a_connect_stopped_while_checking_can_be_sent_again(
    browse: Callable[..., Browsing],  # noqa: F811
    elastic: Any,
    keys: Any,
) -> None:
    """A person who stops the page while the check runs (Esc, the Stop button: what one does
    when a provider is slow) can send the form again: hub.js never locks it, and the server
    makes one check of a form sent twice (its one-time form id)."""
    web = browse()
    page = web.page
    web.open("/connect/elastic")
    page.locator("#field-api_key").fill(keys.elastic)
    elastic.held.add(keys.elastic)
    try:
        page.evaluate("setTimeout(() => window.stop(), 500)")  # the person presses Esc
        page.get_by_role("button", name="Connect", exact=True).click(no_wait_after=True)
        time.sleep(1.5)
        assert page.url.endswith("/connect/elastic")
        button = page.get_by_role("button", name="Connect", exact=True)
        assert button.is_enabled(), "stopped, yet the form is locked"
        elastic.release.set()
        with page.expect_navigation():
            button.click()  # sent again: the one check of this form answers it
        assert page.get_by_role("heading", name="Elastic Cloud account linked").is_visible()
        assert len(elastic.requests) == 1
    finally:
        elastic.release.set()
