"""The web Hub inside a host application, and two Hubs in one process (WEB.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from core.tests.web_helpers import TOKEN, Page, Web, crawl

WebFactory = Callable[..., Web]
PREFIX = "/integrations/hub"


def host_app(w: Web) -> Starlette:
    """A host with its own page, the Hub mounted under `PREFIX`."""

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host's own page")

    return Starlette(routes=[Route("/", home), Mount(PREFIX, app=w.app)])


def own_urls(page: Page) -> list[str]:
    """Every URL of *page* that is not a link out or an anchor."""
    return [u for u in page.links() if not u.startswith(("https://", "#"))]


def assert_under_prefix(answer: httpx.Response) -> None:
    where = answer.request.url
    location = answer.headers.get("location")
    if location is not None:
        assert urlsplit(location).path.startswith(f"{PREFIX}/"), (where, location)
    for header in answer.headers.get_list("set-cookie"):
        assert f"Path={PREFIX}/" in header, (where, header)
    if "text/html" in answer.headers.get("content-type", ""):
        urls = own_urls(Page(answer))
        assert urls, where
        for url in urls:
            assert url.startswith(f"{PREFIX}/"), (where, url)


def test_the_whole_flow_works_under_a_prefix(web: WebFactory) -> None:
    w = web(sign_in=False)
    client = w.new_client(app=host_app(w))
    assert client.get("/").text == "the host's own page"
    assert client.get(f"{PREFIX}/").status_code == 401
    signed_in = client.get(f"{PREFIX}/?token={TOKEN}")
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == f"{PREFIX}/"
    assert_under_prefix(signed_in)
    answers = [signed_in]

    providers = w.get(f"{PREFIX}/", client=client)
    assert providers.status == 200
    connect_url = providers.find("a", class_="primary").attrs["href"]
    assert connect_url == f"{PREFIX}/connect/acme"
    connect = w.get(connect_url, client=client)
    failed = w.submit(connect, client=client, api_key="wrong")
    assert failed.status == 422
    assert failed.form().action == f"{PREFIX}/connect/acme"
    linked = w.submit(failed, client=client, api_key="good")
    assert linked.status == 303
    confirmation = w.follow(linked, client=client)
    assert confirmation.find("h1").text == "Acme account linked"
    [account_id] = w.account_ids()
    accounts = w.get(confirmation.find("a", class_="primary").attrs["href"], client=client)
    assert accounts.response.request.url.path == f"{PREFIX}/accounts"
    assert "Seven" in accounts.find("tbody").text
    checked = w.submit(accounts, f"{PREFIX}/accounts/{account_id}/check", client=client)
    relink = w.get(f"{PREFIX}/accounts/{account_id}/relink", client=client)
    relinked = w.submit(relink, client=client, api_key="good")
    assert relinked.response.headers["location"] == (
        f"{PREFIX}/accounts/{account_id}/linked?relinked=1"
    )
    unlink = w.get(f"{PREFIX}/accounts/{account_id}/unlink", client=client)
    unlinked = w.submit(unlink, client=client)
    assert w.account_ids() == []
    answers += [p.response for p in (providers, connect, failed, linked, confirmation, accounts)]
    answers += [p.response for p in (checked, relink, relinked, unlink, unlinked)]
    answers += [w.follow(unlinked, client=client).response]
    answers += [client.get(f"{PREFIX}/nowhere"), client.request("PUT", f"{PREFIX}/accounts")]
    answers += [client.get(f"{PREFIX}/static/nothing.css")]  # drawn inside hub's static mount
    for answer in answers:
        assert_under_prefix(answer)


def test_every_page_under_a_prefix_links_under_it(web: WebFactory) -> None:
    w = web(sign_in=False)
    client = w.new_client(app=host_app(w))
    cookie = client.get(f"{PREFIX}/?token={TOKEN}").headers["set-cookie"]
    assert f"Path={PREFIX}/" in cookie
    w.sign_in(w.client)
    w.link("good", provider="acme")  # through the unmounted app: the same store
    seen = crawl(w, [f"{PREFIX}/", f"{PREFIX}/accounts"], client=client, prefix=PREFIX)
    assert len(seen) > 8
    assert {r.status_code for r in seen.values()} >= {200, 405}
    for answer in seen.values():
        assert_under_prefix(answer)
    assert client.get(f"{PREFIX}/static/hub.css").status_code == 200


def test_the_session_cookie_is_not_sent_to_the_hosts_other_pages(web: WebFactory) -> None:
    w = web(sign_in=False)
    client = w.new_client(app=host_app(w))
    client.get(f"{PREFIX}/?token={TOKEN}")
    [cookie] = list(client.cookies.jar)
    assert cookie.path == f"{PREFIX}/"
    assert not cookie.domain_specified


def test_a_session_started_on_any_page_is_for_the_whole_hub(web: WebFactory) -> None:
    """Without sign-in, the first page seen sets the cookie: its Path is the Hub's root."""
    w = web(no_auth=True)
    client = w.new_client(app=host_app(w))
    for path in ("/accounts/x/linked", "/connect/acme", "/accounts"):
        answer = client.get(f"{PREFIX}{path}")
        assert f"Path={PREFIX}/;" in answer.headers.get("set-cookie", ""), path
        assert_under_prefix(answer)
        client.cookies.clear()


# --- two apps ---------------------------------------------------------------------------------


def test_two_apps_over_two_stores_are_independent(web: WebFactory) -> None:
    one, two = web(session_attempts=1, attempt_window=60), web()
    one.link("good")
    assert len(one.account_ids()) == 1
    assert two.account_ids() == []
    assert "No account is linked yet" in two.get("/accounts").text
    assert "1 account linked" in one.get("/").text
    assert "No accounts linked" in two.get("/").text
    # one's attempt limit, outcomes and sessions are its own
    assert one.submit(one.get("/connect/acme"), api_key="other").status == 429
    assert two.submit(two.get("/connect/acme"), api_key="other").status == 303
    form = one.get("/connect/acme").form()
    assert two.post("/connect/acme", {**form.values, "api_key": "good"}).status == 403
    # closing one leaves the other working
    one.app.close()
    assert two.get("/accounts").status == 200
    assert len(two.account_ids()) == 1


def test_two_apps_in_one_host(web: WebFactory) -> None:
    one, two = web(sign_in=False), web(sign_in=False)
    host = Starlette(routes=[Mount("/one", app=one.app), Mount("/two", app=two.app)])
    client = one.new_client(app=host)
    client.get(f"/one/?token={TOKEN}")
    assert client.get("/one/accounts").status_code == 200
    assert client.get("/two/accounts").status_code == 401  # its cookie is for /one/ only
