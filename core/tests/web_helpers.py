"""Helpers of the web Hub's TestClient tests: a parsed page, a signed-in client, a crawl.

The tests get them through the ``web`` fixture (``core/tests/conftest.py``), which builds one
app per call over a fresh store and a recording `httpx.MockTransport`, and closes it after.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
import httpx
import pytest
from cryptography.fernet import Fernet
from starlette.testclient import TestClient

from hub_core import (
    Field,
    Guide,
    Hub,
    InvalidCredentials,
    PermissionDenied,
    Policy,
    Provider,
    ProviderUnavailable,
    RateLimited,
    Section,
    Store,
    UnexpectedResponse,
    Verified,
)
from hub_core.errors import FieldError
from hub_core.hookspecs import Flow
from hub_core.web import HubApp, WebConfig, create_app

from .conftest import ACME, CANARY, AcmePlugin

__all__ = ["ACME", "BACKENDS", "BETA", "CANARY", "Page", "Web", "crawl"]

#: A web test marked with it runs once per store backend (the `web` fixture's store).
BACKENDS = pytest.mark.parametrize("web_backend", ["sqlite", "postgres"])

TOKEN = "dashboard-token-for-tests"
LOOPBACK = "http://127.0.0.1"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}

#: A second provider with every kind of field the form draws.
BETA = Provider(
    id="beta",
    name="Beta",
    fields=[
        Field("token", "Token", kind="secret", help="From the Beta console."),
        Field("site", "Site address", kind="url", placeholder="https://you.beta.test"),
        Field("plan", "Plan", kind="choice", choices=["free", "pro"], required=False),
    ],
    guide=Guide(sections=[Section("Get a token", content="See https://docs.beta.test/keys.")]),
    hosts=["api.beta.test"],
)


# --- the provider's side ----------------------------------------------------------------------


def scripted_flow(credentials: Any) -> Flow:
    """Acme's check: one GET; a key naming an error raises it, as a provider's answer would.

    The key ``good`` (and `CANARY`) reach ``org:7``/``org:9``; ``other`` reaches another
    organisation; a key named after an error below (or ending in ``-`` and its name) raises
    it; the provider's answer decides the rest (see `FakeAcme`).
    """
    key = credentials["api_key"]
    response = yield httpx.Request(
        "GET", "https://api.acme.test/me", headers={"Authorization": f"Bearer {key}"}
    )
    errors: dict[str, Exception] = {
        "denied": PermissionDenied("The key lacks the read:org permission"),
        "limited": RateLimited("Acme asked to slow down", retry_after=7.2),
        "down": ProviderUnavailable("Acme could not be reached", reason="connect"),
        "broken": ProviderUnavailable("Acme failed with HTTP 500", reason="server"),
        "weird": UnexpectedResponse("Acme's answer has no organisation"),
        "fields": FieldError.many({"team": "No such team", "region": "Not in this region"}),
        "crash": RuntimeError("Traceback-ish crash quoting the provider's body"),
    }
    for name, error in errors.items():
        if key == name or key.endswith(f"-{name}"):  # a key such as CANARY-denied too
            raise error
    if response.status_code == 401:
        raise InvalidCredentials("Acme rejected the key", field="api_key")
    if response.status_code >= 500:
        raise ProviderUnavailable(f"Acme failed with HTTP {response.status_code}")
    data = response.json()
    expires, created = data.get("expires_at"), data.get("created_at")
    return Verified(
        identity=f"org:{data['id']}",
        label=data["name"],
        expires_at=datetime.fromisoformat(expires) if expires else None,
        created_at=datetime.fromisoformat(created) if created else None,
    )


@attrs.define
class FakeAcme:
    """The provider behind the MockTransport: which keys it knows, and every request it got."""

    #: key -> (organisation id, name, expires_at or None)
    keys: dict[str, tuple[int, str, str | None]] = attrs.field(
        factory=lambda: {
            "good": (7, "Seven", None),
            "other": (8, "Eight", None),
            CANARY: (9, "Canary Org", None),
            "denied": (7, "Seven", None),
            "limited": (7, "Seven", None),
            "down": (7, "Seven", None),
            "broken": (7, "Seven", None),
            "weird": (7, "Seven", None),
            "fields": (7, "Seven", None),
            "crash": (7, "Seven", None),
        }
    )
    requests: list[httpx.Request] = attrs.field(factory=list)
    #: Replaces the answer when set (a hostile or broken provider).
    answer: Callable[[httpx.Request], httpx.Response] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answer is not None:
            return self.answer(request)
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key not in self.keys:
            return httpx.Response(401, text="RAW-PROVIDER-BODY: bad key")
        org, name, expires = self.keys[key]
        return httpx.Response(200, json={"id": org, "name": name, "expires_at": expires})

    def sent(self) -> int:
        """How many requests reached the provider."""
        return len(self.requests)


# --- pages ------------------------------------------------------------------------------------


@attrs.define(eq=False)
class Element:
    """One element of a parsed page."""

    tag: str
    attrs: dict[str, str]
    parent: Element | None = attrs.field(default=None, repr=False)
    children: list[Element | str] = attrs.field(factory=list, repr=False)

    @property
    def text(self) -> str:
        """The text inside, white space folded."""
        return " ".join("".join(self._texts()).split())

    def _texts(self) -> Iterator[str]:
        for child in self.children:
            if isinstance(child, str):
                yield child
            else:
                yield from child._texts()

    def iter(self) -> Iterator[Element]:
        """This element and every element inside it."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **wanted: str) -> list[Element]:
        """The elements inside with this tag and these attribute values (``class_`` for class)."""
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in wanted.items()}
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag)
            and all(
                v in e.attrs.get(k, "").split() if k == "class" else e.attrs.get(k) == v
                for k, v in wanted.items()
            )
        ]

    def find(self, tag: str | None = None, **wanted: str) -> Element:
        """The one element inside with this tag and attributes."""
        found = self.find_all(tag, **wanted)
        assert len(found) == 1, f"{len(found)} <{tag} {wanted}> found"
        return found[0]

    def closest(self, tag: str, class_: str | None = None) -> Element:
        """The nearest enclosing element with this tag (and class)."""
        node = self.parent
        while node is not None:
            if node.tag == tag and (
                class_ is None or class_ in node.attrs.get("class", "").split()
            ):
                return node
            node = node.parent
        raise AssertionError(f"no enclosing <{tag}>")


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.node = self.root

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attributes}, self.node)
        self.node.children.append(element)
        if tag not in VOID:
            self.node = element

    def handle_startendtag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attributes)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.node = node.parent

    def handle_data(self, data: str) -> None:
        self.node.children.append(data)


@attrs.define
class Form:
    """A form of a page: where it goes and what it would send as it is."""

    action: str
    method: str
    values: dict[str, str]
    element: Element


class Page:
    """A response and its parsed HTML."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.html = response.text
        builder = _Builder()
        builder.feed(self.html)
        builder.close()
        self.root = builder.root

    def __repr__(self) -> str:
        return f"<Page {self.status} {self.response.request.url}>"

    @property
    def text(self) -> str:
        """The page's text (the body's), folded."""
        bodies = self.root.find_all("body")
        return bodies[0].text if bodies else self.root.text

    def find_all(self, tag: str | None = None, **wanted: str) -> list[Element]:
        """See `Element.find_all`."""
        return self.root.find_all(tag, **wanted)

    def find(self, tag: str | None = None, **wanted: str) -> Element:
        """See `Element.find`."""
        return self.root.find(tag, **wanted)

    def by_id(self, ident: str) -> Element:
        """The element with this id."""
        return self.root.find(None, id=ident)

    def links(self) -> list[str]:
        """Every URL the page names: links, form actions, scripts and style sheets."""
        urls = [e.attrs["href"] for e in self.root.find_all("a") if "href" in e.attrs]
        urls += [e.attrs["href"] for e in self.root.find_all("link") if "href" in e.attrs]
        urls += [e.attrs["src"] for e in self.root.iter() if "src" in e.attrs]
        urls += [e.attrs.get("action", "") for e in self.root.find_all("form")]
        return urls

    def forms(self) -> list[Form]:
        """Every form, with what it would send unchanged (hidden fields, values, selections)."""
        forms = []
        for element in self.root.find_all("form"):
            values: dict[str, str] = {}
            for field in element.iter():
                name = field.attrs.get("name")
                if not name:
                    continue
                if field.tag == "input":
                    values[name] = field.attrs.get("value", "")
                elif field.tag == "select":
                    options = field.find_all("option")
                    chosen = [o for o in options if "selected" in o.attrs] or options[:1]
                    values[name] = chosen[0].attrs.get("value", chosen[0].text) if chosen else ""
            forms.append(
                Form(
                    element.attrs.get("action", ""),
                    element.attrs.get("method", "get").lower(),
                    values,
                    element,
                )
            )
        return forms

    def form(self, action: str | None = None) -> Form:
        """The one POST form (going to *action*, when given)."""
        found = [f for f in self.forms() if f.method == "post" and action in (None, f.action)]
        assert len(found) == 1, f"{len(found)} POST forms to {action} on {self}"
        return found[0]


# --- the app and its client -------------------------------------------------------------------


def _plugin_of(provider: Provider, flow: Callable[[Any], Flow]) -> AcmePlugin:
    plugin = AcmePlugin(flow, provider=provider)
    plugin.__name__ = f"AcmePlugin-{provider.id}"  # one registered name per provider
    return plugin


class Web:
    """One web Hub app over a fresh store, and a client signed in to it (or not)."""

    def __init__(
        self,
        directory: Path,
        *,
        providers: Iterable[Provider] = (),
        plugins: Iterable[object] = (),
        flow: Callable[[Any], Flow] = scripted_flow,
        client_url: str = LOOPBACK,
        sign_in: bool = True,
        database: str | None = None,
        **config: Any,
    ) -> None:
        self.provider = FakeAcme()
        self.hub = Hub(
            plugins=[*(_plugin_of(p, flow) for p in providers), *plugins],
            load_entrypoints=False,
            transport=httpx.MockTransport(self.provider),
            policy=Policy(backoff=0),
        )
        #: A ``postgresql://`` URL (the `web_backend` fixture's), else a SQLite file here.
        self.database = database or str(directory / "hub.db")
        self.store = Store.open(self.database, secret_key=Fernet.generate_key())
        self.config = WebConfig(**{"auth_token": TOKEN, **config})
        self.app: HubApp = create_app(self.hub, self.store, config=self.config)
        self.base_url = client_url
        self.client = self.new_client()
        if sign_in and self.config.authorize is None and not self.config.no_auth:
            self.sign_in(self.client)

    def new_client(self, app: Any = None, base_url: str | None = None) -> TestClient:
        """Another browser (no cookies yet)."""
        return TestClient(
            app or self.app,
            base_url=base_url or self.base_url,
            raise_server_exceptions=False,
            follow_redirects=False,
        )

    def sign_in(self, client: TestClient, prefix: str = "") -> httpx.Response:
        """Open the address `hub serve` prints; return its 303."""
        response = client.get(f"{prefix}/?token={TOKEN}")
        assert response.status_code == 303, response.text
        return response

    def close(self) -> None:
        """Close the app, its hub and its store."""
        self.client.close()
        self.app.close()
        self.hub.close()
        self.store.close()

    # --- requests ---

    def get(self, path: str, client: TestClient | None = None, **kwargs: Any) -> Page:
        """GET *path* as a browser would show it (no redirect followed)."""
        return Page((client or self.client).get(path, **kwargs))

    def post(
        self, path: str, data: Mapping[str, str], client: TestClient | None = None, **kw: Any
    ) -> Page:
        """POST *data* to *path*, as a same-origin browser form would."""
        headers = {
            "Origin": self.base_url,
            "Sec-Fetch-Site": "same-origin",
            **kw.pop("headers", {}),
        }
        return Page((client or self.client).post(path, data=data, headers=headers, **kw))

    def submit(
        self, page: Page, action: str | None = None, client: TestClient | None = None, **values: str
    ) -> Page:
        """Fill the POST form of *page* (to *action*) with *values* and send it."""
        form = page.form(action)
        return self.post(form.action, {**form.values, **values}, client=client)

    def follow(self, page: Page, client: TestClient | None = None) -> Page:
        """The page a 303 sends the browser to."""
        assert page.status == 303, (page, page.text)
        return self.get(page.response.headers["location"], client=client)

    def link(self, key: str = "good", provider: str = "acme", **values: str) -> Page:
        """Connect an account through the pages; return the confirmation page."""
        page = self.get(f"/connect/{provider}")
        answer = self.submit(page, api_key=key, **values)
        assert answer.status == 303, answer.text
        return self.follow(answer)

    def account_ids(self) -> list[str]:
        """The ids of the stored accounts, read with the test's own connection."""
        return [account.id for account in self.store.accounts()]

    def dump(self) -> list[tuple[Any, ...]]:
        """Every row of the accounts table, read by a separate connection."""
        if self.database.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(self.database) as pg:
                return pg.execute("SELECT * FROM accounts ORDER BY id").fetchall()
        with sqlite3.connect(self.store.path) as conn:
            return conn.execute("SELECT * FROM accounts ORDER BY id").fetchall()


def crawl(
    web: Web, start: Iterable[str], client: TestClient | None = None, prefix: str = ""
) -> dict[str, httpx.Response]:
    """GET every page reachable from *start*: each link and form action (POST ones too: a GET
    of those is a 405 page). Only the app's own paths; the answer of each, by URL."""
    seen: dict[str, httpx.Response] = {}
    queue = list(start)
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        response = (client or web.client).get(url)
        seen[url] = response
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        page = Page(response)
        for found in page.links():
            target = urljoin(url, found)
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or not parts.path.startswith(prefix + "/"):
                continue  # another site: the guide's links out
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            if path not in seen:
                queue.append(path)
    return seen


def cookie_payloads(response: httpx.Response) -> list[str]:
    """Each Set-Cookie header as sent, and its signed value decoded (itsdangerous base64)."""
    found = []
    for header in response.headers.get_list("set-cookie"):
        found.append(header)
        value = header.split(";", 1)[0].split("=", 1)[-1]
        payload = value.split(".", 1)[0]
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            found.append(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode())
    return found


def tampered(token: str) -> str:
    """The signed token with the first character of its signature changed.

    Never the last characters: base64 ignores the low bits of the last one, so a change there
    can leave the signature as it was.
    """
    payload, signature = token.rsplit(".", 1)
    return f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def pieces(secret: str, size: int = 8) -> list[str]:
    """Every *size*-character piece of *secret*."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def everything(response: httpx.Response) -> str:
    """A response as one text: status, headers (cookies decoded) and body."""
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
    return "\n".join(
        [str(response.status_code), headers, *cookie_payloads(response), response.text]
    )
