"""Submitting the Connect form: one check per form, attempts limited (WEB.md §2, §4)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from core.tests.web_helpers import BACKENDS, LOOPBACK, Page, Web

WebFactory = Callable[..., Web]


def test_a_resubmitted_form_makes_one_check_and_gets_the_same_answer(web: WebFactory) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    values = {**form.values, "api_key": "good"}
    first = w.post(form.action, values)
    again = w.post(form.action, values)  # a double click, or Back then Connect
    assert first.status == again.status == 303
    assert again.response.headers["location"] == first.response.headers["location"]
    assert w.provider.sent() == 1
    assert len(w.account_ids()) == 1
    # ... and the confirmation it leads to is the first link's, not "updated"
    assert "updated" not in again.response.headers["location"]


def test_a_resubmitted_failure_shows_the_same_errors_without_a_new_check(
    web: WebFactory,
) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    values = {**form.values, "api_key": "wrong", "team": "ops"}
    first = w.post(form.action, values)
    again = w.post(form.action, values)
    assert first.status == again.status == 422
    assert again.by_id("error-api_key").text == first.by_id("error-api_key").text
    assert again.find("input", id="field-team").attrs["value"] == "ops"
    assert "value" not in again.find("input", id="field-api_key").attrs
    assert w.provider.sent() == 1
    # the page drawn again carries a fresh form token: correcting the key is a new attempt
    fixed = w.submit(again, api_key="good")
    assert fixed.status == 303
    assert w.provider.sent() == 2


def test_the_same_form_with_other_values_is_a_new_attempt(web: WebFactory) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    assert w.post(form.action, {**form.values, "api_key": "wrong"}).status == 422
    assert w.post(form.action, {**form.values, "api_key": "good"}).status == 303
    assert w.provider.sent() == 2


def test_the_same_form_token_in_another_session_is_its_own_attempt(web: WebFactory) -> None:
    w = web()
    form = w.get("/connect/acme").form()
    other = w.new_client()
    w.sign_in(other)
    other_form = w.get("/connect/acme", client=other).form()
    values = {"api_key": "good", "region": "us", "form_id": form.values["form_id"]}
    assert w.post(form.action, {**form.values, **values}).status == 303
    answer = w.post(form.action, {**other_form.values, **values}, client=other)
    assert answer.status == 303
    assert w.provider.sent() == 2  # not another session's outcome


def test_two_concurrent_submits_of_one_form_make_one_check(web: WebFactory) -> None:
    """A double click: the second POST arrives while the first is still being checked.

    Both run on one event loop, as under uvicorn; the provider answers after a pause.
    """
    w = web()
    form = w.get("/connect/acme").form()
    values = {**form.values, "api_key": "good"}
    plain = w.provider.answer

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        w.provider.answer = plain
        w.provider.requests.pop()  # counted once, by the call below
        return w.provider(request)

    w.provider.answer = slow  # type: ignore[assignment]

    async def double_click() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=w.app),
            base_url=LOOPBACK,
            cookies=dict(w.client.cookies),
            headers={"Origin": LOOPBACK, "Sec-Fetch-Site": "same-origin"},
        ) as client:
            first = asyncio.create_task(client.post(form.action, data=values))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(client.post(form.action, data=values))
            return list(await asyncio.gather(first, second))

    first, second = asyncio.run(double_click())
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert w.provider.sent() == 1
    assert len(w.account_ids()) == 1


@BACKENDS
def test_two_concurrent_submits_from_two_threads_make_one_check(web: WebFactory) -> None:
    """The same, with each POST on its own thread and loop (a threaded server)."""
    w = web()
    form = w.get("/connect/acme").form()
    values = {**form.values, "api_key": "good"}
    plain = w.provider.answer

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        w.provider.answer = plain
        w.provider.requests.pop()
        return w.provider(request)

    w.provider.answer = slow
    answers: list[Page] = []

    def click() -> None:
        answers.append(w.post(form.action, values))

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(10)
    assert [a.status for a in answers] == [303, 303]
    assert len({a.response.headers["location"] for a in answers}) == 1
    assert w.provider.sent() == 1


# --- attempts limited -------------------------------------------------------------------------


def attempt(w: Web, key: str = "wrong", client: Any = None) -> Page:
    return w.submit(w.get("/connect/acme", client=client), client=client, api_key=key)


def test_after_the_session_limit_a_429_and_nothing_is_sent(web: WebFactory) -> None:
    w = web(session_attempts=2, attempt_window=30)
    assert [attempt(w).status for _ in range(2)] == [422, 422]
    refused = attempt(w, "good")
    assert refused.status == 429
    retry = int(refused.response.headers["retry-after"])
    assert 1 <= retry <= 30
    alert = refused.find("div", role="alert").text
    assert "Too many attempts from here" in alert
    assert "hub sent nothing to Acme" in alert
    assert "Acme asked" not in alert
    assert w.provider.sent() == 2
    assert w.account_ids() == []
    assert "value" not in refused.find("input", id="field-api_key").attrs
    # another session may still try: the limit is per session ...
    other = w.new_client()
    w.sign_in(other)
    assert attempt(w, "good", client=other).status == 303


def test_the_provider_limit_counts_every_session(web: WebFactory) -> None:
    w = web(provider_attempts=2, attempt_window=30)
    clients = [w.client]
    for _ in range(2):
        clients.append(w.new_client())
        w.sign_in(clients[-1])
    assert attempt(w, client=clients[0]).status == 422
    assert attempt(w, client=clients[1]).status == 422
    refused = attempt(w, "good", client=clients[2])
    assert refused.status == 429
    assert "retry-after" in refused.response.headers
    assert w.provider.sent() == 2


def test_attempts_come_back_after_the_window(web: WebFactory) -> None:
    w = web(session_attempts=1, attempt_window=0.3)
    assert attempt(w).status == 422
    assert attempt(w).status == 429
    time.sleep(0.35)
    assert attempt(w, "good").status == 303


def test_relink_attempts_are_limited_too(web: WebFactory) -> None:
    w = web(session_attempts=2, attempt_window=30)
    w.link("good")
    [account_id] = w.account_ids()
    page = w.get(f"/accounts/{account_id}/relink")
    assert w.submit(page, api_key="wrong").status == 422
    refused = w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="good")
    assert refused.status == 429
    assert w.provider.sent() == 2
