"""One-time auth links in the web Hub (WEB.md §2 "Link not usable", §3 auth links)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub_core import Hub, Policy
from hub_core.store import LINK_ATTEMPTS
from hub_core.web import create_app
from hub_core.web.security import LinkTokens

from .conftest import ACME, AcmePlugin
from .web_helpers import BACKENDS, BETA, LOOPBACK, Page, Web, everything, scripted_flow


def make_link(web: Web, provider: str = "acme", **options: Any) -> tuple[str, str]:
    """A link as `hub link-url` makes it: its path and its id."""
    link = web.store.create_link(provider, **options)
    token = LinkTokens(web.store.derive_key(LinkTokens.PURPOSE)).dumps(link.id)
    return f"/l/{token}", link.id


def visitor(web: Web) -> Any:
    """A fresh browser with no dashboard cookie."""
    return web.new_client()


@BACKENDS
def test_the_link_lifecycle(web: Any) -> None:
    hub = web()
    path, link_id = make_link(hub, note="Dana at Example")
    token = path.rsplit("/", 1)[1]
    client = visitor(hub)
    first = hub.get(path, client=client)
    assert first.status == 303
    assert first.response.headers["location"] == "/link"
    cookie = next(c for c in first.response.headers.get_list("set-cookie") if "hub_link=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    page = hub.follow(first, client=client)
    assert page.status == 200
    assert "Link requested for Dana at Example" in page.text
    assert page.find("section", class_="guide")  # the guide beside the form
    assert not page.find_all("nav")  # no way into the dashboard
    assert hub.get(path, client=client).status == 303  # a second GET still works
    for seen in (first, page):
        assert token not in everything(seen.response).replace(f"/l/{token}", "")
    done = hub.submit(page, client=client, api_key="good", region="us")
    assert done.status == 303
    confirmation = hub.follow(done, client=client)
    assert confirmation.status == 200
    assert "you may close this tab" in confirmation.text.lower()
    assert "Seven" in confirmation.text
    assert token not in everything(confirmation.response)
    assert hub.store.link(link_id).state() == "used"
    assert len(hub.account_ids()) == 1
    again = hub.get(path, client=visitor(hub))
    assert again.status == 410
    assert "used already" in again.text
    assert "Seven" not in again.text  # no account details


@BACKENDS
def test_an_expired_link_says_when(web: Any) -> None:
    hub = web()
    past = datetime.now(UTC) - timedelta(days=8)
    path, _ = make_link(hub, now=past)
    page = hub.get(path, client=visitor(hub))
    assert page.status == 410
    assert "expired" in page.text
    assert f"{past + timedelta(days=7):%d %B %Y}" in page.text
    assert "new link" in page.text


def test_a_withdrawn_link_and_a_changed_signature(web: Any) -> None:
    hub = web()
    path, link_id = make_link(hub)
    client = visitor(hub)
    assert hub.get(path, client=client).status == 303
    hub.store.revoke_link(link_id)
    for url in (path, "/link"):
        page = hub.get(url, client=client)
        assert page.status == 410
        assert "withdrawn" in page.text
    other, _ = make_link(hub)
    # Not the last character: its low bits are base64 padding, which a decoder ignores.
    byte = other[-3]
    forged = other[:-3] + ("A" if byte != "A" else "B") + other[-2:]
    page = hub.get(forged, client=visitor(hub))
    assert page.status == 404
    assert "not valid" in page.text
    assert hub.get("/l/not-a-token", client=visitor(hub)).status == 404
    assert hub.get("/link", client=visitor(hub)).status == 404  # no link cookie at all


def test_a_link_visitor_never_reaches_the_dashboard(web: Any) -> None:
    hub = web(providers=[ACME, BETA])
    path, _ = make_link(hub, provider="acme")
    client = visitor(hub)
    hub.get(path, client=client)
    for url in ("/", "/accounts", "/connect/beta", "/connect/acme"):
        page = hub.get(url, client=client)
        assert page.status == 403, url
        assert "/accounts" not in page.links()
    # The dashboard's own session still works as before.
    assert hub.get("/accounts").status == 200
    assert hub.get("/link").status == 404


@BACKENDS
def test_a_failed_attempt_counts_and_the_link_locks(web: Any) -> None:
    hub = web(session_attempts=100)
    path, link_id = make_link(hub)
    client = visitor(hub)
    page = hub.follow(hub.get(path, client=client), client=client)
    for attempt in range(LINK_ATTEMPTS - 1):
        page = hub.submit(page, client=client, api_key="wrong", region="us")
        assert page.status == 422, attempt
    assert hub.store.link(link_id).failed_attempts == LINK_ATTEMPTS - 1
    locked = hub.submit(page, client=client, api_key="wrong", region="us")
    assert locked.status == 403
    assert "locked" in locked.text
    assert hub.get(path, client=visitor(hub)).status == 403
    assert hub.account_ids() == []


def test_a_link_post_needs_its_form_token_and_origin(web: Any) -> None:
    hub = web()
    path, link_id = make_link(hub)
    client = visitor(hub)
    page = hub.follow(hub.get(path, client=client), client=client)
    values = {**page.form().values, "api_key": "good", "region": "us"}
    assert hub.post("/link", {**values, "csrf_token": "x"}, client=client).status == 403
    cross = hub.post("/link", values, client=client, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    assert hub.provider.sent() == 0
    assert hub.store.link(link_id).state() == "open"


@BACKENDS
def test_a_relink_link_shows_its_account_only(web: Any) -> None:
    hub = web()
    hub.link("good", region="us")
    (account_id,) = hub.account_ids()
    path, link_id = make_link(hub, account_id=account_id)
    client = visitor(hub)
    page = hub.follow(hub.get(path, client=client), client=client)
    assert page.status == 200
    assert "Relink Seven" in page.text
    done = hub.submit(page, client=client, api_key="good")
    assert done.status == 303
    assert "key replaced" in hub.follow(done, client=client).text
    assert hub.store.link(link_id).used_account_id == account_id


@pytest.mark.anyio
async def test_two_racing_submits_on_one_link_give_one_account(web: Any) -> None:
    hub = web()
    arrived = 0
    both = asyncio.Event()

    async def provider(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)  # both checks pass before either saves
        org = int(request.headers["authorization"][-1])  # key-1, key-2: two organisations
        return httpx.Response(200, json={"id": org, "name": f"Org {org}"})

    racing = Hub(
        plugins=[AcmePlugin(scripted_flow, provider=ACME)],
        load_entrypoints=False,
        transport=httpx.MockTransport(provider),
        policy=Policy(backoff=0),
    )
    app = create_app(racing, hub.store, config=hub.config)
    path, link_id = make_link(hub)
    transport = httpx.ASGITransport(app=app)
    forms = []
    clients = [httpx.AsyncClient(transport=transport, base_url=LOOPBACK) for _ in range(2)]
    try:
        for n, client in enumerate(clients, start=1):
            opened = await client.get(path)
            assert opened.status_code == 303
            page = Page(await client.get("/link"))
            forms.append({**page.form().values, "api_key": f"key-{n}", "region": "us"})
        answers = await asyncio.gather(
            *(
                client.post("/link", data=form, headers={"Origin": LOOPBACK})
                for client, form in zip(clients, forms, strict=True)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
        app.close()
        racing.close()
    assert sorted(a.status_code for a in answers) == [303, 410]
    refused = next(a for a in answers if a.status_code == 410)
    assert "used already" in refused.text
    assert len(hub.store.accounts()) == 1
    assert hub.store.link(link_id).state() == "used"


@BACKENDS
def test_the_same_form_sent_again_after_it_linked_shows_the_confirmation(web: Any) -> None:
    """A double click or a reload of the answer: the visitor's own submit used the link."""
    hub = web()
    path, _ = make_link(hub)
    client = visitor(hub)
    page = hub.follow(hub.get(path, client=client), client=client)
    first = hub.submit(page, client=client, api_key="good", region="us")
    assert first.status == 303
    again = hub.submit(page, client=client, api_key="good", region="us")
    assert again.status == 303
    assert again.response.headers["location"] == first.response.headers["location"]
    assert "you may close this tab" in hub.follow(again, client=client).text.lower()
    assert len(hub.account_ids()) == 1
    # Another visitor's resubmit of a used link is still "used already".
    other = visitor(hub)
    assert hub.get(path, client=other).status == 410


def test_events_of_a_link_say_it_came_through_that_link(web: Any) -> None:
    seen: list[Any] = []
    hub = web(on_event=seen.append)
    path, link_id = make_link(hub)
    client = visitor(hub)
    page = hub.follow(hub.get(path, client=client), client=client)
    failed = hub.submit(page, client=client, api_key="bad", region="us")
    assert failed.status == 422
    hub.submit(failed, client=client, api_key="good", region="us")
    kinds = [(type(e).__name__, e.via) for e in seen]
    assert kinds == [("LinkFailed", "link"), ("AccountLinked", "link")]
    assert seen[1].source_id == link_id


def test_link_attempts_are_rate_limited_and_a_refused_one_sends_nothing(web: Any) -> None:
    hub = web(session_attempts=2)
    path, _ = make_link(hub)
    client = visitor(hub)
    page = hub.follow(hub.get(path, client=client), client=client)
    for _ in range(2):
        page = hub.submit(page, client=client, api_key="bad", region="us")
        assert page.status == 422
    sent = hub.provider.sent()
    refused = hub.submit(page, client=client, api_key="good", region="us")
    assert refused.status == 429
    assert refused.response.headers["retry-after"].isdigit()
    assert hub.provider.sent() == sent
    assert hub.account_ids() == []


def _slow_provider(w: Web, delay: float = 0.3) -> None:
    plain = w.provider.answer

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay)
        w.provider.answer = plain
        w.provider.requests.pop()  # counted once, by the call below
        return w.provider(request)

    w.provider.answer = slow  # type: ignore[assignment]


def _double_click(w: Web, client: Any, values: dict[str, str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=w.app),
            base_url=LOOPBACK,
            cookies=dict(client.cookies),
            headers={"Origin": LOOPBACK, "Sec-Fetch-Site": "same-origin"},
        ) as ac:
            first = asyncio.create_task(ac.post("/link", data=values))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(ac.post("/link", data=values))
            return list(await asyncio.gather(first, second))

    return asyncio.run(run())


def _double_clicked(w: Web, key: str) -> tuple[str, list[httpx.Response]]:
    """A link's form filled with *key*, sent twice while its (slow) check runs."""
    path, link_id = make_link(w)
    client = w.new_client()
    page = w.follow(w.get(path, client=client), client=client)
    values = {**page.form().values, "api_key": key, "region": "us"}
    _slow_provider(w)
    return link_id, _double_click(w, client, values)


def test_a_double_click_on_a_link_form_makes_one_check(web: Any) -> None:
    # WEB.md §2 "Checking": a double submit makes one check, as the dashboard's form does.
    w = web()
    _, (first, second) = _double_clicked(w, "good")
    assert first.status_code == 303
    assert w.provider.sent() == 1
    assert second.status_code == 303
    assert second.headers["location"] == first.headers["location"]


def test_a_double_click_with_a_wrong_key_counts_one_failed_attempt(web: Any) -> None:
    # One person's double click is one attempt towards the link's lock, not two.
    w = web()
    link_id, (first, second) = _double_clicked(w, "wrong")
    assert first.status_code == second.status_code == 422
    assert w.store.link(link_id).failed_attempts == 1
    assert w.provider.sent() == 1


def test_a_link_visitors_error_page_has_no_way_into_the_dashboard(web: Any) -> None:
    # WEB.md §3: a link visitor sees no navigation into the dashboard, error pages included.
    w = web(base_url=f"{LOOPBACK}/")
    made = w.app.create_session(owner="cust-a")  # any provider: the visitor chooses
    client = w.new_client()
    w.follow(w.get(made.url.removeprefix(LOOPBACK), client=client), client=client)
    page = w.get("/link?provider=nope", client=client)
    assert page.status == 404
    assert "/accounts" not in page.links()
    assert not page.find_all("nav")
    assert w.get("/no-such-page", client=client).find_all("nav") == []
    assert w.get("/no-such-page").find_all("nav")  # the dashboard's own user has it
