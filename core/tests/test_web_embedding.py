"""The web Hub embedded in a host application, as a host developer reads docs/embedding.md."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub_core.web import HostSession
from hub_core.web.app import _frames

from .web_helpers import LOOPBACK, Page, Web

APP = "https://app.example.invalid"
BACK = f"{APP}/settings/integrations"


def host(web: Any, **config: Any) -> Web:
    """A web Hub as a host application configures it for sessions (docs/embedding.md)."""
    config.setdefault("base_url", f"{LOOPBACK}/")
    config.setdefault("allowed_return_origins", [APP])
    hub: Web = web(**config)
    return hub


def open_session(hub: Web, made: HostSession, client: Any = None) -> tuple[Any, Page]:
    """A browser opens the session's address: its client, and the page it lands on."""
    client = client or hub.new_client()
    base = hub.base_url
    first = hub.get(made.url.removeprefix(base), client=client)
    assert first.status == 303, first.text
    return client, hub.follow(first, client=client)


# --- one browser, two sessions ----------------------------------------------------------------


def test_a_form_of_one_session_never_links_through_another_opened_since(web: Any) -> None:
    """The link cookie is the browser's, not the page's. Mallory (a customer of the same host)
    gets a session of her own and has Alice's browser open its address (any top-level
    navigation sets the SameSite=Lax cookie); Alice then submits the Connect page her host
    opened for her: her key must not be stored as Mallory's account."""
    hub = host(web)
    alice = hub.app.create_session("acme", owner="alice", return_url=BACK, state="a")
    mallory = hub.app.create_session("acme", owner="mallory", return_url=BACK, state="m")
    client, alices_page = open_session(hub, alice)
    assert alices_page.status == 200
    # Another tab (or a page Mallory made Alice open) opens Mallory's session address.
    open_session(hub, mallory, client=client)
    answer = hub.submit(alices_page, client=client, api_key="good", region="us")
    assert hub.store.accounts(owner="mallory") == [], "Alice's key was linked for Mallory"
    assert hub.store.link(mallory.id).state() == "open"
    assert answer.status in (403, 409, 410), answer.status


# --- the message to a framing host ------------------------------------------------------------


@pytest.mark.parametrize(
    "frame_ancestors",
    [
        "'self'",  # the Hub mounted in the host's own origin, framed by its own pages
        f"{APP}/",  # a CSP host-source may end in a slash
        "HTTPS://App.Example.Invalid",  # CSP host matching ignores case
        f"{APP}:443",  # the default port, written out
    ],
)
def test_a_framed_confirmation_posts_to_an_allowed_origin_however_it_is_written(
    web: Any, frame_ancestors: str
) -> None:
    """docs/embedding.md "Framing": hub.js posts to the parent "only when that origin is one
    frame_ancestors lists", each written as CSP reads it: the CSP lets each of these frame
    the Hub from APP."""
    hub = host(
        web,
        client_url=APP,
        base_url=APP,
        frame_ancestors=frame_ancestors,
    )
    made = hub.app.create_session("acme", owner="cust-a", return_url=BACK, state="st")
    client, page = open_session(hub, made)
    assert page.status == 200
    done = hub.follow(hub.submit(page, client=client, api_key="good", region="us"), client=client)
    assert done.status == 200
    assert f"frame-ancestors {frame_ancestors};" in done.response.headers["content-security-policy"]
    back = done.find("a", class_="primary")
    assert back.attrs.get("data-post-origin") == APP, back.attrs
    assert json.loads(back.attrs["data-post-message"])["state"] == "st"


# --- the error pages a host's user sees -------------------------------------------------------


def test_a_session_visitors_error_pages_offer_no_way_into_the_dashboard(web: Any) -> None:
    """docs/web.md "Links for others": "No navigation into the dashboard". A host session's
    visitor who lands on an error page (a provider that is not installed, an address that is
    not one) is offered no link that answers 403 "This page is not part of your link"."""
    hub = host(web)
    made = hub.app.create_session(None, owner="cust-a", return_url=BACK)
    client, choice = open_session(hub, made)
    assert choice.status == 200
    for url in ("/link?provider=nope", "/nowhere"):
        page = hub.get(url, client=client)
        assert page.status == 404, url
        for href in page.links():
            if href.startswith("/") and not href.startswith("/static/"):
                assert hub.get(href, client=client).status < 400, (url, href)


# --- a host with several worker processes -----------------------------------------------------


def test_a_session_works_when_the_hosts_workers_take_turns(web: Any) -> None:
    """A host runs its app in several processes (``uvicorn --workers 4``, replicas behind a
    load balancer), each its own `create_app` over the one store, configured alike: the
    session cookie, which carries the form's CSRF token, is read by every one of them, as
    the session's token and link cookie are (keys derived from the store)."""
    from hub_core.web import WebConfig, create_app

    hub = host(web)
    other = create_app(
        hub.hub,
        hub.store,
        config=WebConfig(base_url=f"{LOOPBACK}/", allowed_return_origins=[APP]),
    )
    workers = [hub.app, other]
    turn = [0]

    async def balancer(scope: Any, receive: Any, send: Any) -> None:
        worker = workers[turn[0] % 2]
        if scope["type"] == "http":
            turn[0] += 1
        await worker(scope, receive, send)

    try:
        made = hub.app.create_session("acme", owner="cust-a", return_url=BACK)
        client = hub.new_client(app=balancer)
        _, page = open_session(hub, made, client=client)  # /l/... on one, /link on the other
        assert page.status == 200
        done = hub.submit(page, client=client, api_key="good", region="us")  # the first again
        assert done.status == 303, (done.status, done.find("h1").text)
        assert [a.owner for a in hub.store.accounts()] == ["cust-a"]
    finally:
        other.close()


@pytest.mark.parametrize(
    ("frame_ancestors", "origin", "frames"),
    [
        ("https://*.example.invalid", "https://app.example.invalid", True),
        ("https://*.example.invalid", "https://example.invalid", False),  # not a subdomain
        ("https://*.example.invalid", "https://evilexample.invalid", False),
        ("https://*.example.invalid", "http://app.example.invalid", False),  # another scheme
        ("https://app.example.invalid:8443", "https://app.example.invalid", False),
        ("'none'", APP, False),
        ("'self'", "https://hub.example.invalid", True),  # the Hub's own origin
        ("'self' https://other.invalid", APP, False),
    ],
)
def test_which_origins_frame_ancestors_lets_frame_the_hub(
    frame_ancestors: str, origin: str, frames: bool
) -> None:
    assert _frames(frame_ancestors, origin, "https://hub.example.invalid") is frames
