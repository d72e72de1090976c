"""Host sessions (WEB.md §3): a host's one-time address for one of its users, and owners."""

from __future__ import annotations

import inspect
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from hub_core import AccountNotFound, UnknownProvider
from hub_core.events import AccountLinked, AccountRelinked, LinkFailed
from hub_core.model import Credentials, Verified
from hub_core.web import HostSession
from hub_core.web.sessions import return_link

from .conftest import ACME, CANARY
from .web_helpers import BACKENDS, BETA, LOOPBACK, Page, Web, everything

APP = "https://app.example.invalid"
BACK = f"{APP}/settings/integrations?tab=keys"


def host(web: Any, **config: Any) -> Web:
    """A web Hub as a host application configures it for sessions."""
    config.setdefault("base_url", f"{LOOPBACK}/")
    config.setdefault("allowed_return_origins", [APP])
    hub: Web = web(**config)
    return hub


def session(hub: Web, **options: Any) -> HostSession:
    options.setdefault("owner", "cust-a")
    return hub.app.create_session(**options)


def open_session(hub: Web, made: HostSession) -> tuple[Any, Page]:
    """A fresh browser opens the session's address: its client, and the page it lands on."""
    assert made.url.startswith(f"{LOOPBACK}/l/")
    client = hub.new_client()
    first = hub.get(made.url.removeprefix(LOOPBACK), client=client)
    assert first.status == 303
    return client, hub.follow(first, client=client)


def query(url: str) -> dict[str, list[str]]:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == APP
    return parse_qs(parts.query)


@BACKENDS
def test_a_session_links_for_its_owner_and_links_back(web: Any) -> None:
    seen: list[Any] = []
    hub = host(web, on_event=seen.append)
    made = session(
        hub,
        provider="acme",
        owner="cust-a",
        owner_name="Ann Example",
        note="Ann at Example",
        return_url=BACK,
        state="opaque-42",
    )
    assert made.expires_at - hub.store.link(made.id).created_at == timedelta(minutes=30)
    assert made.url not in repr(made)
    client, page = open_session(hub, made)
    assert page.status == 200
    assert "Link requested for Ann at Example" in page.text
    assert not page.find_all("nav")
    cancel = page.find("a", class_="button").attrs["href"]
    assert query(cancel) == {"tab": ["keys"], "hub_result": ["cancelled"], "state": ["opaque-42"]}
    done = hub.submit(page, client=client, api_key="good", region="us")
    assert done.status == 303
    confirmation = hub.follow(done, client=client)
    assert confirmation.status == 200
    [account] = hub.store.accounts()
    assert (account.owner, account.owner_name) == ("cust-a", "Ann Example")
    back = confirmation.find("a", class_="primary").attrs["href"]
    assert query(back) == {
        "tab": ["keys"],
        "hub_result": ["linked"],
        "hub_account": [account.id],
        "hub_provider": ["acme"],
        "state": ["opaque-42"],
    }
    assert "Back to the app" in confirmation.text
    assert "close this tab" not in confirmation.text
    # Not framed by an allowed origin: no message for a parent window.
    assert "data-post-message" not in confirmation.text
    assert hub.store.link(made.id).state() == "used"
    [linked] = [e for e in seen if isinstance(e, AccountLinked)]
    assert (linked.via, linked.owner, linked.source_id, linked.state, linked.updated) == (
        "session",
        "cust-a",
        made.id,
        "opaque-42",
        False,
    )
    # Used up: the address answers "already used" now.
    assert hub.get(made.url.removeprefix(LOOPBACK), client=hub.new_client()).status == 410


def test_a_session_for_any_provider_lets_its_visitor_choose(web: Any) -> None:
    hub = host(web, providers=[ACME, BETA])
    made = session(hub, owner="cust-b")
    client, choice = open_session(hub, made)
    assert choice.status == 200
    links = [href for href in choice.links() if "provider=" in href]
    assert sorted(links) == ["/link?provider=acme", "/link?provider=beta"]
    assert hub.get("/link?provider=nope", client=client).status == 404
    page = hub.get("/link?provider=acme", client=client)
    assert page.form().action == "/link?provider=acme"
    done = hub.submit(page, client=client, api_key="good", region="us")
    assert done.status == 303
    [account] = hub.store.accounts()
    assert (account.provider_id, account.owner) == ("acme", "cust-b")
    # A form posted without a provider links nothing.
    again = session(hub, owner="cust-b")
    client, choice = open_session(hub, again)
    refused = hub.post("/link", {"api_key": "good"}, client=client)
    assert refused.status == 403
    assert len(hub.store.accounts()) == 1


@BACKENDS
def test_two_owners_linking_one_organisation_get_two_accounts(web: Any) -> None:
    hub = host(web)
    ids = []
    for owner in ("cust-a", "cust-b"):
        client, page = open_session(hub, session(hub, provider="acme", owner=owner))
        assert hub.submit(page, client=client, api_key="good", region="us").status == 303
        ids.append(hub.store.accounts(owner=owner)[0].id)
    assert len(set(ids)) == 2
    assert {a.owner for a in hub.store.accounts()} == {"cust-a", "cust-b"}
    # The dashboard lists both, each with whom it is for.
    listing = hub.get("/accounts")
    assert listing.status == 200
    owners = [span.text for span in listing.find_all("span", class_="owner")]
    assert sorted(owners) == ["For cust-a", "For cust-b"]


def test_the_accounts_page_names_the_owner_inertly(web: Any) -> None:
    hub = host(web)
    hub.store.save(
        "acme",
        Verified(identity="org:7", label="Seven"),
        Credentials({"api_key": "k", "region": "us"}, secret=["api_key"]),
        owner="<b>cust</b>",
        owner_name="Ann <script>",
    )
    listing = hub.get("/accounts")
    [owner] = listing.find_all("span", class_="owner")
    assert owner.text == "For Ann <script> (<b>cust</b>)"
    assert "Ann &lt;script&gt; (&lt;b&gt;cust&lt;/b&gt;)" in listing.response.text


@BACKENDS
def test_one_owners_session_cannot_reach_anothers_account(web: Any) -> None:
    hub = host(web)
    theirs = hub.store.save(
        "acme",
        Verified(identity="org:7", label="Seven"),
        Credentials({"api_key": "theirs", "region": "us"}, secret=["api_key"]),
        owner="cust-b",
    )
    with pytest.raises(AccountNotFound):
        session(hub, owner="cust-a", account_id=theirs.id)
    assert hub.store.links(include_closed=True) == []
    # A's own session: no listing, no other account's pages, no unlink.
    client, _ = open_session(hub, session(hub, provider="acme", owner="cust-a"))
    for url in ("/accounts", f"/accounts/{theirs.id}/relink", f"/accounts/{theirs.id}/unlink"):
        assert hub.get(url, client=client).status == 403, url
    refused = hub.post(f"/accounts/{theirs.id}/unlink", {}, client=client)
    assert refused.status == 403
    assert hub.store.credentials(theirs.id)["api_key"] == "theirs"


@BACKENDS
def test_a_relink_session_replaces_its_owners_key_only(web: Any) -> None:
    seen: list[Any] = []
    hub = host(web, on_event=seen.append)
    mine = hub.store.save(
        "acme",
        Verified(identity="org:7", label="Seven"),
        Credentials({"api_key": "old", "region": "us"}, secret=["api_key"]),
        owner="cust-a",
    )
    made = session(hub, owner="cust-a", account_id=mine.id, return_url=BACK, state="s")
    client, page = open_session(hub, made)
    assert "Seven" in page.text
    done = hub.submit(page, client=client, api_key="good")
    assert done.status == 303
    assert hub.store.credentials(mine.id)["api_key"] == "good"
    [relinked] = [e for e in seen if isinstance(e, AccountRelinked)]
    assert (relinked.via, relinked.owner, relinked.source_id, relinked.state) == (
        "session",
        "cust-a",
        made.id,
        "s",
    )


def test_a_failed_attempt_in_a_session_is_told_with_its_id(web: Any) -> None:
    seen: list[Any] = []
    hub = host(web, on_event=seen.append)
    made = session(hub, provider="acme")
    client, page = open_session(hub, made)
    failed = hub.submit(page, client=client, api_key=CANARY + "x", region="us")
    assert failed.status == 422
    [event] = seen
    assert isinstance(event, LinkFailed)
    assert (event.via, event.source_id, event.code) == ("session", made.id, "invalid_credentials")
    assert CANARY not in json.dumps(event.to_json())
    assert CANARY not in everything(failed.response)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"return_url": "https://evil.example.invalid/x"}, "not one of"),
        ({"return_url": "https://app.example.invalid.evil.invalid/"}, "not one of"),
        ({"return_url": "http://app.example.invalid/"}, "not one of"),  # another scheme
        ({"return_url": "https://app.example.invalid:8443/"}, "not one of"),
        ({"return_url": "javascript:alert(1)"}, "absolute"),
        ({"return_url": "//app.example.invalid/"}, "absolute"),
        ({"return_url": "https://user@app.example.invalid/"}, "user name"),
        ({"return_url": "https://app.example.invalid/\nx"}, "absolute"),
        ({"state": "x" * 1001}, "state"),
        ({"state": "a\x00b"}, "state"),
        ({"owner": None}, "owner"),
        ({"owner": ""}, "owner"),
        ({"owner": "cust", "owner_name": "A\nB"}, "owner_name"),
        ({"expires_in": 0}, "future"),
        ({"expires_in": timedelta(days=31)}, "30 days"),
        ({"expires_in": float("inf")}, "30 days"),  # no timedelta holds it: still ValueError
        ({"expires_in": 1e300}, "30 days"),
        ({"note": "n" * 201}, "note"),
    ],
)
def test_a_bad_session_is_refused_and_nothing_is_stored(
    web: Any, options: dict[str, Any], message: str
) -> None:
    hub = host(web)
    with pytest.raises(ValueError, match=message):
        session(hub, **{"owner": "cust-a", **options})
    assert hub.store.links(include_closed=True) == []


def test_a_session_needs_the_hubs_address_and_an_installed_provider(web: Any) -> None:
    hub = web()
    with pytest.raises(ValueError, match="base_url"):
        session(hub)
    hub = host(web)
    with pytest.raises(UnknownProvider):
        session(hub, provider="nope")
    assert hub.store.links(include_closed=True) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"base_url": "ftp://x.invalid/hub"}, "base_url"),
        ({"base_url": "https://x.invalid/hub?x=1"}, "base_url"),
        ({"allowed_return_origins": ["https://app.invalid/path"]}, "origins"),
        ({"allowed_return_origins": ["app.invalid"]}, "origins"),
    ],
)
def test_a_bad_host_configuration_is_refused(config: dict[str, Any], message: str) -> None:
    from hub_core.web import WebConfig

    with pytest.raises(ValueError, match=message):
        WebConfig(**config)


def test_allowed_origins_compare_as_origins() -> None:
    from hub_core.web import WebConfig

    config = WebConfig(allowed_return_origins=["HTTPS://App.Example.Invalid:443"])
    assert config.allowed_return_origins == frozenset({APP})


def test_a_session_under_a_mount_uses_the_configured_base(web: Any) -> None:
    hub = host(web, base_url="https://hub.example.invalid/integrations/hub")
    made = session(hub, provider="acme")
    assert made.url.startswith("https://hub.example.invalid/integrations/hub/l/")


@pytest.mark.anyio
async def test_acreate_session_does_not_need_a_thread_of_its_own(web: Any) -> None:
    hub = host(web)
    made = await hub.app.acreate_session("acme", owner="cust-a")
    assert hub.store.link(made.id).kind == "session"
    assert hub.store.link(made.id).owner == "cust-a"


@pytest.mark.anyio
async def test_create_session_and_acreate_session_take_every_argument_alike(web: Any) -> None:
    hub = host(web)
    account_id = hub.store.save(
        "acme",
        Verified("org:7", "Seven"),
        Credentials({"api_key": "k", "region": "us"}, secret=["api_key"]),
        owner="cust-a",
    ).id
    options: dict[str, Any] = {
        "owner": "cust-a",
        "owner_name": "Ann Example",
        "note": "Ann's key",
        "account_id": account_id,
        "return_url": BACK,
        "state": "st-1",
        "expires_in": 600,
    }
    made = [hub.app.create_session("acme", **options)]
    made.append(await hub.app.acreate_session("acme", **options))
    links = [hub.store.link(m.id) for m in made]
    for link, m in zip(links, made, strict=True):
        assert (link.provider_id, link.kind, link.owner, link.owner_name) == (
            "acme",
            "session",
            "cust-a",
            "Ann Example",
        )
        assert (link.note, link.account_id, link.return_url, link.return_state) == (
            "Ann's key",
            account_id,
            BACK,
            "st-1",
        )
        assert m.expires_at - link.created_at == timedelta(seconds=600)
    # The same refusals, before anything is stored.
    for bad, error in (
        ({"owner": "cust-a", "return_url": "https://evil.example.invalid/"}, ValueError),
        ({"owner": "cust-a", "expires": 5}, TypeError),
        ({}, TypeError),
    ):
        with pytest.raises(error):
            hub.app.create_session("acme", **bad)
        with pytest.raises(error):
            await hub.app.acreate_session("acme", **bad)
    with pytest.raises(UnknownProvider):
        await hub.app.acreate_session("nope", owner="cust-a")
    assert len(hub.store.links()) == 2
    for method in (hub.app.create_session, hub.app.acreate_session):
        assert list(inspect.signature(method).parameters) == ["provider", *options]
        assert method.__doc__


def test_a_framed_confirmation_posts_only_to_the_return_urls_origin(web: Any) -> None:
    hub = host(web, frame_ancestors=APP)
    made = session(hub, provider="acme", return_url=BACK, state="st")
    client, page = open_session(hub, made)
    done = hub.follow(hub.submit(page, client=client, api_key="good", region="us"), client=client)
    back = done.find("a", class_="primary")
    assert back.attrs["data-post-origin"] == APP
    message = json.loads(back.attrs["data-post-message"])
    assert message["hub_result"] == "linked"
    assert message["state"] == "st"
    assert (
        "frame-ancestors https://app.example.invalid"
        in done.response.headers["content-security-policy"]
    )


def test_return_link_replaces_look_alike_parameters() -> None:
    url = return_link(
        "https://app.example.invalid/cb?hub_result=linked&keep=1#frag", "s", result="cancelled"
    )
    parts = urlsplit(url)
    assert parse_qs(parts.query) == {"keep": ["1"], "hub_result": ["cancelled"], "state": ["s"]}
    assert parts.fragment == "frag"
    # A name hub may send, though not this time, is dropped too: a Cancel names no account.
    back = return_link("https://app.example.invalid/cb?hub_account=x&state=old", None, result="x")
    assert parse_qs(urlsplit(back).query) == {"hub_result": ["x"]}


def test_a_framed_visit_without_the_link_cookie_says_to_open_a_tab(web: Any) -> None:
    hub = host(web)
    client = hub.new_client()
    framed = hub.get("/link", client=client, headers={"Sec-Fetch-Dest": "iframe"})
    assert framed.status == 400
    assert "in its own tab" in framed.text
    # Top-level, the same visit is a link that is not valid.
    assert hub.get("/link", client=client).status == 404
