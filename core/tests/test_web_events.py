"""The web Hub tells `WebConfig(on_event=...)` what its pages changed (``via="dashboard"``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Mount, Route

import hub_core.web
from core.tests.web_helpers import CANARY, Web
from hub_core import (
    AccountChecked,
    AccountLinked,
    AccountRelinked,
    AccountUnlinked,
    Event,
    LinkFailed,
    Status,
)
from hub_core.testing import assert_no_secret, find_secret

WebFactory = Callable[..., Web]


class Events:
    """A sync on_event: what it got, and on which thread."""

    def __init__(self) -> None:
        self.got: list[Event] = []
        self.threads: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.got.append(event)
            self.threads.append(threading.current_thread().name)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.got if isinstance(e, kind)]

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.got) < count:
            assert time.monotonic() < deadline, self.got
            time.sleep(0.01)


def linked_id(page: Any) -> str:
    """The account id of a confirmation page's address."""
    found = re.search(r"/accounts/([^/]+)/linked", str(page.response.request.url))
    assert found, page
    return found.group(1)


def test_connect_relink_and_unlink_fire_their_events_with_via_dashboard(web: WebFactory) -> None:
    events = Events()
    w = web(on_event=events)
    account_id = linked_id(w.link("good"))
    [linked] = events.got
    assert isinstance(linked, AccountLinked)
    assert (linked.account_id, linked.provider_id, linked.label, linked.identity) == (
        account_id,
        "acme",
        "Seven",
        "org:7",
    )
    assert (linked.via, linked.updated) == ("dashboard", False)
    assert w.account_ids() == [account_id]
    w.link("good")  # the same organisation again: its account is updated
    assert [e.updated for e in events.of(AccountLinked)] == [False, True]

    w.provider.keys["new-key"] = (7, "Seven", None)
    answer = w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="new-key")
    assert answer.status == 303
    [relinked] = events.of(AccountRelinked)
    assert (relinked.account_id, relinked.via) == (account_id, "dashboard")

    answer = w.submit(w.get(f"/accounts/{account_id}/unlink"))
    assert answer.status == 303
    [unlinked] = events.of(AccountUnlinked)
    assert (unlinked.account_id, unlinked.label, unlinked.via) == (account_id, "Seven", "dashboard")
    assert w.account_ids() == []
    assert len(events.got) == 4


def test_a_failed_connect_fires_link_failed_and_no_account_linked(web: WebFactory) -> None:
    events = Events()
    w = web(on_event=events)
    refused = w.submit(w.get("/connect/acme"), api_key="refused-key")
    assert refused.status == 422
    denied = w.submit(w.get("/connect/acme"), api_key="denied")
    assert denied.status == 422
    assert [(e.provider_id, e.via, e.code, e.field) for e in events.got] == [
        ("acme", "dashboard", "invalid_credentials", "api_key"),
        ("acme", "dashboard", "permission_denied", None),
    ]
    assert all(isinstance(e, LinkFailed) for e in events.got)
    assert w.account_ids() == []
    account_id = linked_id(w.link("good"))
    events.got.clear()
    mismatch = w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="other")
    assert mismatch.status == 409
    [failed] = events.got
    assert isinstance(failed, LinkFailed)
    assert (failed.code, failed.account_id) == ("identity_mismatch", account_id)


def test_check_now_and_check_all_fire_account_checked_from_the_checker_thread(
    web: WebFactory,
) -> None:
    events = Events()
    w = web(on_event=events)
    first = linked_id(w.link("good"))
    second = linked_id(w.link("other"))
    events.got.clear()
    events.threads.clear()
    del w.provider.keys["other"]  # revoked at the provider
    answer = w.submit(w.get("/accounts"), f"/accounts/{second}/check")
    assert answer.status == 303
    [checked] = events.got
    assert isinstance(checked, AccountChecked)
    assert (checked.account_id, checked.via) == (second, "dashboard")
    assert (checked.previous_status, checked.status) == (Status.ACTIVE, Status.INVALID)
    assert checked.error_code == "invalid_credentials"

    answer = w.submit(w.get("/accounts"), "/accounts/check")
    assert answer.status == 303
    events.wait_for(3)
    by_account = {e.account_id: e for e in events.got[1:]}
    assert set(by_account) == {first, second}
    assert by_account[first].status is Status.ACTIVE
    assert by_account[second].previous_status is Status.INVALID
    assert {e.via for e in events.got} == {"dashboard"}
    assert set(events.threads) == {"hub-checker"}  # documented: the app's checker thread


def test_an_async_callback_is_awaited_on_the_servers_loop_and_the_checkers(
    web: WebFactory,
) -> None:
    got: list[tuple[str, str]] = []

    async def on_event(event: Event) -> None:
        await asyncio.sleep(0)
        got.append((event.type, threading.current_thread().name))

    w = web(on_event=on_event)
    account_id = linked_id(w.link("good"))
    assert got[0][0] == "account.linked"  # delivered before the confirmation was answered
    w.submit(w.get("/accounts"), f"/accounts/{account_id}/check")
    assert got[1] == ("account.checked", "hub-checker")


def test_a_raising_callback_changes_nothing_the_person_sees(
    web: WebFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def on_event(event: Event) -> None:
        raise RuntimeError(f"host bug holding {CANARY}")

    caplog.set_level(logging.DEBUG)
    plain = web()
    w = web(on_event=on_event)
    page = w.link(CANARY)
    assert page.status == 200
    expected = plain.link(CANARY)  # the same app without a callback
    assert page.find("h1").text == expected.find("h1").text
    assert page.text.replace(linked_id(page), "ID") == expected.text.replace(
        linked_id(expected), "ID"
    )
    assert [a.label for a in w.store.accounts()] == ["Canary Org"]
    account_id = w.account_ids()[0]
    checked = w.submit(w.get("/accounts"), f"/accounts/{account_id}/check")
    assert checked.status == 303
    assert "Checked Canary Org" in w.follow(checked).text
    refused = w.submit(w.get("/connect/acme"), api_key=CANARY + "-refused")
    assert refused.status == 422  # its own error page, not a 500
    unlinked = w.submit(w.get(f"/accounts/{account_id}/unlink"))
    assert unlinked.status == 303
    assert w.account_ids() == []
    failures = [r for r in caplog.records if r.name == "hub_core.events"]
    assert [r.getMessage().split()[5] for r in failures] == [
        "account.linked",
        "account.checked",
        "link.failed",
        "account.unlinked",
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert find_secret(text, [CANARY]) is None, text


def test_no_dashboard_event_holds_a_piece_of_the_key(web: WebFactory) -> None:
    events = Events()
    w = web(on_event=events)
    account_id = linked_id(w.link(CANARY))
    w.submit(w.get(f"/accounts/{account_id}/relink"), api_key=CANARY)
    w.submit(w.get("/connect/acme"), api_key=CANARY + "-denied")
    w.submit(w.get("/accounts"), f"/accounts/{account_id}/check")
    w.submit(w.get(f"/accounts/{account_id}/unlink"))
    assert {type(e) for e in events.got} == {
        AccountLinked,
        AccountRelinked,
        LinkFailed,
        AccountChecked,
        AccountUnlinked,
    }
    for event in events.got:
        assert_no_secret(event, [CANARY])
        assert find_secret(json.dumps(event.to_json()), [CANARY]) is None


def test_no_page_reads_a_key_through_credentials(web: WebFactory) -> None:
    w = web()
    reads = re.compile(r"\b(a?credentials)\s*\(")
    for route in w.app.starlette.routes:
        if isinstance(route, Mount):
            continue  # static files
        assert isinstance(route, Route)
        source = inspect.getsource(route.endpoint)
        assert not reads.search(source), route.path
    package = Path(hub_core.web.__file__).parent
    files = [*package.glob("*.py"), *package.glob("templates/*.html"), *package.glob("static/*")]
    assert len(files) > 5
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert not re.search(r"\.a?credentials\s*\(", text), file
        assert "acredentials" not in text, file
