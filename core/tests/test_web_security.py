"""The web Hub's security rules (WEB.md §3, §4): secrets, escaping, CSRF, headers, sign-in."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.requests import Request

import hub_core.web
from core.tests.web_helpers import (
    CANARY,
    CSP,
    TOKEN,
    Page,
    Web,
    cookie_payloads,
    crawl,
    everything,
    pieces,
    tampered,
)
from hub_core import Field, Guide, InvalidCredentials, Provider, Section, Step, Verified, hookimpl
from hub_core.errors import FieldError
from hub_core.hookspecs import Flow
from hub_core.model import Credentials
from hub_core.web import WebConfig, create_app
from hub_core.web.security import SessionCookies

WebFactory = Callable[..., Web]
TEMPLATES = Path(hub_core.web.__file__).parent / "templates"


def linked_account(w: Web, key: str = "good") -> str:
    page = w.link(key)
    return page.response.request.url.path.split("/")[2]


def every_kind_of_answer(w: Web, account_id: str) -> list[httpx.Response]:
    """Answers a crawl of links does not reach: POST results and error pages."""
    form = w.get("/connect/acme").form()
    csrf = form.values["csrf_token"]
    answers = [
        w.post(form.action, {**form.values, "api_key": CANARY, "team": "Bad!"}),  # 422 fields
        w.submit(w.get("/connect/acme"), api_key=CANARY, region="eu"),  # 409: another place
        w.submit(w.get(f"/accounts/{account_id}/relink"), api_key="other"),  # 409
        w.submit(w.get(f"/accounts/{account_id}/relink"), api_key=CANARY),  # 303 relinked
        w.post(f"/accounts/{account_id}/check", {"csrf_token": csrf}),  # 303 + notice
        w.post("/accounts/check", {"csrf_token": csrf}),  # 303
        w.post(form.action, {**form.values, "api_key": CANARY, "csrf_token": "x"}),  # 403
        w.get("/nowhere"),  # 404
    ]
    return [a.response for a in answers]


# --- secrets ----------------------------------------------------------------------------------


def test_a_linked_key_never_shows_in_any_page_header_or_cookie(web: WebFactory) -> None:
    w = web()
    confirmation = w.link(CANARY)
    account_id = confirmation.response.request.url.path.split("/")[2]
    assert w.store.credentials(account_id)["api_key"] == CANARY  # it is the canary's account
    answers = [confirmation.response, *every_kind_of_answer(w, account_id)]
    answers += crawl(w, ["/", "/accounts"]).values()
    assert len(answers) > 15
    visited = {str(a.request.url) for a in answers}
    assert any(f"/accounts/{account_id}/relink" in url for url in visited)
    assert any(f"/accounts/{account_id}/unlink" in url for url in visited)
    for answer in answers:
        text = everything(answer)
        for piece in pieces(CANARY):
            assert piece not in text, (answer.request.url, piece)


def test_a_submitted_key_is_never_drawn_back_on_an_error(web: WebFactory) -> None:
    w = web()
    for key in ("wrong", "denied", "limited", "down", "broken", "weird", "fields", "crash"):
        answer = w.submit(w.get("/connect/acme"), api_key=f"{CANARY}-{key}", team="ok")
        assert answer.status >= 400
        for piece in pieces(CANARY):
            assert piece not in everything(answer.response), key


# --- hostile provider and plugin text ---------------------------------------------------------

EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>\"' onmouseover=alert(3) \x1b[31m\x07"
KEPT = '"><script>alert(13)</script>'
EVIL_URL = 'https://ok.test/"onmouseover=alert(4)'
HOSTILE = Provider(
    id="evil",
    name="Evil <b>Corp</b>",
    fields=[
        Field(
            "api_key",
            f"Key {EVIL}",
            kind="secret",
            help=f"Help {EVIL} javascript:alert(5)",
            placeholder='"><script>alert(6)</script>',
        ),
        Field(
            "region",
            f"Region {EVIL}",
            kind="choice",
            choices=[('x"><script>alert(7)</script>', f"Label {EVIL}"), "us"],
            required=False,
        ),
        Field("team", f"Team {EVIL}", required=False, placeholder=EVIL),
    ],
    guide=Guide(
        warning=f"Warn {EVIL} {EVIL_URL} javascript:alert(8)",
        sections=[
            Section(
                f"Section {EVIL}",
                content=f"<a href='javascript:alert(9)'>x</a> [y](javascript:alert(10)) {EVIL}",
                steps=[Step(f"Step {EVIL}", f"Step text {EVIL} https://fine.test/a?b=<i>")],
            )
        ],
    ),
    hosts=["api.evil.test"],
    docs_url='https://docs.evil.test/"><script>alert(11)</script>',
)


def hostile_flow(credentials: Any) -> Flow:
    key = credentials["api_key"]
    yield httpx.Request("GET", "https://api.evil.test/me")
    if key == "wrong":
        raise InvalidCredentials(f"Refused {EVIL} javascript:alert(12)", field="api_key")
    if key == "fields":
        raise FieldError.many({"region": f"Region bad {EVIL}", "team": f"Team bad {EVIL}"})
    return Verified(identity=f"org:{EVIL}{key}", label=f"{EVIL}{key}")


def assert_inert(page: Page) -> None:
    """Nothing on *page* runs, loads or links anywhere hub did not put it."""
    where = page.response.request.url
    assert "\x1b" not in page.html, where
    assert "\x07" not in page.html, where
    scripts = page.find_all("script")
    assert [s.attrs.get("src") for s in scripts] == [scripts[0].attrs["src"]], where
    assert scripts[0].attrs["src"].endswith("/static/hub.js")
    assert not scripts[0].text
    assert not page.find_all("style"), where
    assert not page.find_all("img"), where
    assert not page.find_all("b"), where  # the provider's own markup stays text
    for element in page.root.iter():
        for name, value in element.attrs.items():
            assert not name.startswith("on"), (where, element)
            assert name != "style", (where, element)
            if name in ("href", "src", "action"):
                assert value.startswith(("/", "#", "https://")), (where, value)


def test_hostile_provider_and_plugin_text_is_inert_on_every_page(web: WebFactory) -> None:
    broken = ModuleType("hub_evil_plugin")

    @hookimpl
    def hub_providers() -> list[Any]:
        raise RuntimeError(f"failed {EVIL}")

    broken.hub_providers = hub_providers  # type: ignore[attr-defined]
    w = web(providers=[HOSTILE], flow=hostile_flow, plugins=[broken])
    pages = [w.get("/"), w.get("/connect/evil")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].html  # the broken plugin's reason
    assert "<script>alert(1)</script>" in pages[0].text
    for key in ("wrong", "fields"):
        pages.append(w.submit(w.get("/connect/evil"), api_key=key, region="us", team=KEPT))
    assert pages[-2].status == 422
    assert "Refused <script>alert(1)</script>" in pages[-2].by_id("error-api_key").text
    assert pages[-2].find("input", id="field-team").attrs["value"] == KEPT
    assert "Region bad <script>" in pages[-1].by_id("error-region").text
    control = w.submit(w.get("/connect/evil"), api_key="wrong", team=EVIL)  # ESC in a value
    assert control.status == 422
    assert "invisible character" in control.by_id("error-team").text
    pages.append(control)
    confirmation = w.link("first", provider="evil")
    assert "reaches <script>alert(1)</script><img src=x" in confirmation.find("dl").text
    pages.append(confirmation)
    account_id = confirmation.response.request.url.path.split("/")[2]
    relink = w.get(f"/accounts/{account_id}/relink")
    mismatch = w.submit(relink, api_key="second")
    assert mismatch.status == 409
    pages += [relink, mismatch, w.get(f"/accounts/{account_id}/unlink")]
    pages.append(w.follow(w.submit(w.get("/accounts"), f"/accounts/{account_id}/check")))
    assert "Checked <script>alert(1)</script>" in pages[-1].find("p", class_="notice").text
    pages.append(w.get("/accounts?provider=evil"))
    pages.append(
        w.follow(
            w.submit(w.get(f"/accounts/{account_id}/unlink"), f"/accounts/{account_id}/unlink")
        )
    )
    for page in pages:
        assert_inert(page)
    guide = pages[1].find("section", class_="guide")
    # only https addresses become links (cut before markup); javascript: stays text
    assert [a.attrs["href"] for a in guide.find_all("a")] == [
        "https://ok.test/",
        "https://fine.test/a?b=",
        HOSTILE.docs_url,  # escaped in its attribute: still one harmless address
    ]
    assert "javascript:alert(8)" in guide.text
    assert "<a href='javascript:alert(9)'>x</a>" in guide.text


def test_hostile_stored_account_text_is_inert_on_the_accounts_page(web: WebFactory) -> None:
    """An account stored by an older or hostile plugin: its label, identity and last error."""
    w = web()
    account = w.store.save(
        "acme",
        Verified(f"org:{EVIL}", EVIL),
        Credentials({"api_key": "k", "region": "us"}, secret=frozenset({"api_key"})),
    )
    w.store.record(account.id, InvalidCredentials(f"Revoked {EVIL}"))
    page = w.get("/accounts")
    assert_inert(page)
    assert "Revoked <script>alert(1)</script>" in page.find("span", class_="last-error").text
    for path in ("linked", "relink", "unlink"):
        assert_inert(w.get(f"/accounts/{account.id}/{path}"))


# --- CSRF -------------------------------------------------------------------------------------


REFUSALS = {
    "missing token": ({"csrf_token": None}, {}),
    "wrong token": ({"csrf_token": "forged"}, {}),
    "cross-site": ({}, {"Sec-Fetch-Site": "cross-site"}),
    "same-site": ({}, {"Sec-Fetch-Site": "same-site"}),
    "foreign origin": ({}, {"Origin": "https://evil.example.test"}),
    "null origin, wrong token": ({"csrf_token": "forged"}, {"Origin": "null"}),
    "other port": ({}, {"Origin": "http://127.0.0.1:8080"}),
}


def post_routes(w: Web, account_id: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Every POST route, each with a form that would change something if it were accepted."""
    connect = w.get("/connect/acme").form()
    relink = w.get(f"/accounts/{account_id}/relink").form()
    csrf = connect.values["csrf_token"]
    return {
        "connect": (connect.action, {**connect.values, "api_key": "other"}),
        "relink": (relink.action, {**relink.values, "api_key": "good"}),
        "check": (f"/accounts/{account_id}/check", {"csrf_token": csrf}),
        "check all": ("/accounts/check", {"csrf_token": csrf}),
        "unlink": (f"/accounts/{account_id}/unlink", {"csrf_token": csrf}),
    }


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_every_post_route_refuses_a_cross_site_or_tokenless_form(
    web: WebFactory, refusal: str
) -> None:
    w = web()
    account_id = linked_account(w)
    rows, sent = w.dump(), w.provider.sent()
    form_changes, header_changes = REFUSALS[refusal]
    for route, (action, values) in post_routes(w, account_id).items():
        data = {k: v for k, v in {**values, **form_changes}.items() if v is not None}
        answer = w.post(action, data, headers=header_changes)
        assert answer.status == 403, (route, answer.text)
        assert answer.find("h1").text == "The form expired", route
        assert "Reload the page" in answer.text
        assert (w.dump(), w.provider.sent()) == (rows, sent), route
    assert w.app.checker.check_all is None


def test_a_form_from_another_session_is_refused(web: WebFactory) -> None:
    w = web()
    stolen = w.get("/connect/acme").form()
    other = w.new_client()
    w.sign_in(other)
    answer = w.post(stolen.action, {**stolen.values, "api_key": "good"}, client=other)
    assert answer.status == 403
    assert w.account_ids() == []


def test_without_sign_in_a_post_needs_its_session_cookie(web: WebFactory) -> None:
    w = web(no_auth=True)
    form = w.get("/connect/acme").form()
    cookieless = w.new_client()
    answer = w.post(form.action, {**form.values, "api_key": "good"}, client=cookieless)
    assert answer.status == 403
    assert w.provider.sent() == 0
    # the browser that drew the form may post it
    assert w.post(form.action, {**form.values, "api_key": "good"}).status == 303


def test_a_post_without_fetch_metadata_but_with_the_token_is_accepted(web: WebFactory) -> None:
    """Older browsers send neither header: the token alone decides."""
    w = web()
    form = w.get("/connect/acme").form()
    answer = Page(w.client.post(form.action, data={**form.values, "api_key": "good"}))
    assert answer.status == 303


def test_a_same_origin_post_with_origin_null_is_decided_by_its_token(web: WebFactory) -> None:
    """Under ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null`` on every form."""
    w = web()
    form = w.get("/connect/acme").form()
    browser = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    forged = w.post(form.action, {**form.values, "csrf_token": "forged"}, headers=browser)
    assert forged.status == 403
    assert w.provider.sent() == 0
    answer = w.post(form.action, {**form.values, "api_key": "good"}, headers=browser)
    assert answer.status == 303


# --- headers on every response ----------------------------------------------------------------


def all_kinds_of_responses(w: Web) -> list[httpx.Response]:
    account_id = linked_account(w)
    answers = list(crawl(w, ["/", "/accounts"]).values())
    answers += every_kind_of_answer(w, account_id)
    answers += [
        w.client.request("PUT", "/connect/acme"),  # 405
        w.new_client().get("/accounts"),  # 401
        w.client.get("/static/hub.css"),
        w.client.get("/static/hub.js"),
        w.client.get("/static/nothing.js"),  # 404 from the static files
    ]
    w.hub.providers = lambda: 1 / 0  # type: ignore[assignment,method-assign]
    answers.append(w.client.get("/"))  # 500
    return answers


def test_every_response_carries_the_security_headers(web: WebFactory) -> None:
    w = web()
    answers = all_kinds_of_responses(w)
    statuses = {a.status_code for a in answers}
    assert {200, 303, 401, 403, 404, 405, 409, 422, 500} <= statuses
    for answer in answers:
        where = (answer.request.method, answer.request.url, answer.status_code)
        headers = answer.headers
        assert headers["content-security-policy"] == CSP, where
        assert headers["x-content-type-options"] == "nosniff", where
        assert headers["referrer-policy"] == "no-referrer", where
        assert headers["cross-origin-opener-policy"] == "same-origin", where
        static = "/static/" in answer.request.url.path and answer.status_code == 200
        if not static:
            assert headers["cache-control"] == "no-store", where


def test_frame_ancestors_is_configurable(web: WebFactory) -> None:
    w = web(frame_ancestors="https://host.example.test")
    csp = w.get("/").response.headers["content-security-policy"]
    assert "frame-ancestors https://host.example.test;" in csp
    assert "'none'; script-src" in csp


def test_no_page_holds_inline_script_style_or_handlers(web: WebFactory) -> None:
    w = web()
    for answer in all_kinds_of_responses(w):
        if "text/html" not in answer.headers.get("content-type", ""):
            continue
        page = Page(answer)
        for script in page.find_all("script"):
            assert script.attrs.get("src"), answer.request.url
            assert not script.text.strip()
        assert not page.find_all("style")
        for element in page.root.iter():
            assert not any(n.startswith("on") or n == "style" for n in element.attrs), element


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*")))
def test_templates_hold_no_inline_code_and_no_safe_filter(template: str) -> None:
    source = (TEMPLATES / template).read_text()
    assert template.endswith(".html")  # Jinja2Templates autoescapes by name
    assert not re.search(r"<script(?![^>]*\bsrc=)", source)
    assert "<style" not in source
    assert not re.search(r"\sstyle=", source)
    assert not re.search(r"\son[a-z]+=", source)
    assert "|safe" not in source.replace(" ", "")
    assert "autoescape false" not in source


def test_static_files_are_served_with_their_types(web: WebFactory) -> None:
    w = web()
    css, js = w.client.get("/static/hub.css"), w.client.get("/static/hub.js")
    assert css.headers["content-type"].startswith("text/css")
    assert "javascript" in js.headers["content-type"]


# --- cookies ----------------------------------------------------------------------------------


def session_cookie(response: httpx.Response) -> dict[str, str]:
    [header] = response.headers.get_list("set-cookie")
    name_value, *attributes = (part.strip() for part in header.split(";"))
    cookie = {"": name_value}
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        cookie[key.lower()] = value
    return cookie


@pytest.mark.parametrize(
    ("base_url", "secure_cookies", "secure"),
    [
        ("http://127.0.0.1", None, False),
        ("http://localhost:8765", None, False),
        ("http://[::1]:8765", None, False),
        ("https://127.0.0.1", None, True),
        ("http://hub.example.test", None, True),
        ("http://10.1.2.3:8765", None, True),
        ("http://hub.example.test", False, False),
        ("http://127.0.0.1", True, True),
    ],
)
def test_the_session_cookie(
    web: WebFactory, base_url: str, secure_cookies: bool | None, secure: bool
) -> None:
    w = web(client_url=base_url, secure_cookies=secure_cookies, sign_in=False)
    answer = w.sign_in(w.client)
    cookie = session_cookie(answer)
    assert cookie[""].startswith("hub_session=")
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert "domain" not in cookie
    assert ("secure" in cookie) is secure
    assert "max-age" not in cookie
    assert "expires" not in cookie


@pytest.mark.parametrize(("token", "signed_in"), [(TOKEN, True), ("another-run's-token", False)])
def test_a_dashboard_session_holds_in_every_app_of_the_store_with_its_token_only(
    web: WebFactory, token: str, signed_in: bool
) -> None:
    # Another process of the same app over the same store (the key is the store's): it reads
    # the sign-in of its sibling; one with another token (a new `hub serve` run) does not.
    w = web()
    other = create_app(w.hub, w.store, config=WebConfig(auth_token=token))
    try:
        client = w.new_client(app=other)
        client.cookies.set("hub_session", w.client.cookies["hub_session"])
        assert (client.get("/").status_code == 200) is signed_in
    finally:
        other.close()


def test_the_session_cookie_holds_no_token_or_key(web: WebFactory) -> None:
    w = web(sign_in=False)
    answer = w.sign_in(w.client)
    for text in cookie_payloads(answer):
        assert TOKEN not in text
        assert w.app.cookies._serializer.secret_key.hex() not in text  # type: ignore[attr-defined]


# --- no GET changes anything ------------------------------------------------------------------


def test_no_get_changes_the_store(web: WebFactory) -> None:
    w = web()
    account_id = linked_account(w)
    w.link("other")
    rows, sent = w.dump(), w.provider.sent()
    seen = crawl(w, ["/", "/accounts", f"/accounts/{account_id}/linked?updated=1"])
    assert any(r.status_code == 405 for r in seen.values())  # POST actions were tried as GETs
    for path in ("/accounts/check", f"/accounts/{account_id}/check"):
        assert w.client.get(path).status_code == 405
    assert w.client.head("/accounts").status_code == 200
    assert (w.dump(), w.provider.sent()) == (rows, sent)
    assert w.app.checker.check_all is None


# --- sign-in ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/accounts", "/connect/acme", "/accounts/x/linked"])
def test_without_a_session_every_page_asks_to_sign_in(web: WebFactory, path: str) -> None:
    w = web(sign_in=False)
    page = w.get(path)
    assert page.status == 401
    assert "Sign in to the Hub" in page.find("h1").text
    assert "?token=" in page.text
    assert "set-cookie" not in page.response.headers


def test_a_post_without_a_session_is_401_and_sends_nothing(web: WebFactory) -> None:
    w = web(sign_in=False)
    answer = w.post("/connect/acme", {"api_key": "good", "region": "us"})
    assert answer.status == 401
    assert w.provider.sent() == 0
    assert w.account_ids() == []


@pytest.mark.parametrize("token", ["wrong", "", TOKEN + "x", TOKEN[:-1]])
def test_a_wrong_sign_in_token_is_401(web: WebFactory, token: str) -> None:
    w = web(sign_in=False)
    page = w.get(f"/?token={token}")
    assert page.status == 401
    assert "set-cookie" not in page.response.headers
    assert w.get("/").status == 401


def test_the_right_token_signs_in_and_leaves_the_address(web: WebFactory) -> None:
    w = web(sign_in=False)
    answer = w.get(f"/?token={TOKEN}")
    assert answer.status == 303
    assert answer.response.headers["location"] == "/"
    assert "hub_session" in w.client.cookies
    assert w.get("/").status == 200
    assert w.get("/accounts").status == 200
    keep = w.get(f"/?provider=acme&token={TOKEN}")
    assert keep.response.headers["location"] == "/?provider=acme"


def test_a_forged_or_tampered_session_cookie_is_not_accepted(web: WebFactory) -> None:
    w = web()
    value = w.client.cookies["hub_session"]
    for forged in (tampered(value), "e30.forged", value.split(".")[0]):
        client = w.new_client()
        client.cookies.set("hub_session", forged)
        assert w.get("/", client=client).status == 401


def test_a_session_from_another_app_is_not_accepted(web: WebFactory) -> None:
    one, two = web(), web()
    stranger = two.new_client()
    stranger.cookies.set("hub_session", one.client.cookies["hub_session"])
    assert two.get("/", client=stranger).status == 401


# --- a host's authorize -----------------------------------------------------------------------


def admins_only(request: Request) -> bool:
    return request.headers.get("x-user") == "admin"


async def admins_only_async(request: Request) -> bool:
    return admins_only(request)


@pytest.mark.parametrize("authorize", [admins_only, admins_only_async])
def test_a_hosts_authorize_decides_and_the_token_is_not_accepted(
    web: WebFactory, authorize: Any
) -> None:
    w = web(authorize=authorize)
    assert w.get("/").status == 403
    assert "Not allowed" in w.get("/accounts").find("h1").text
    refused = w.get(f"/?token={TOKEN}")
    assert refused.status == 403  # hub's own token does not let anyone in
    assert "set-cookie" not in refused.response.headers
    admin = {"X-User": "admin"}
    assert w.get("/", headers=admin).status == 200
    # ... and a host's user can link (the form's session cookie came with the page)
    page = w.get("/connect/acme", headers=admin)
    form = page.form()
    answer = w.post(form.action, {**form.values, "api_key": "good"}, headers=admin)
    assert answer.status == 303
    assert w.post(form.action, {**form.values, "api_key": "other"}).status == 403
    assert len(w.account_ids()) == 1


def test_an_authorized_request_with_the_token_does_not_mint_a_dashboard_session(
    web: WebFactory,
) -> None:
    w = web(authorize=admins_only)
    page = w.get(f"/?token={TOKEN}", headers={"X-User": "admin"})
    assert page.status == 200  # the host said yes; the token played no part
    # the cookie it got is not a dashboard session: an app without authorize refuses it
    plain = web(secret_key=w.store.derive_key(SessionCookies.PURPOSE))  # the cookie's key
    client = plain.new_client()
    client.cookies.set("hub_session", w.client.cookies["hub_session"])
    assert plain.get("/", client=client).status == 401
