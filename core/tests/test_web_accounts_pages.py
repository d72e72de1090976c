"""The Accounts page, paged by keyset: signed cursors, forward and back, filters, bad cursors."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from core.tests.web_helpers import ACME, BACKENDS, BETA, CANARY, Page, Web, tampered
from hub_core import Store, Verified
from hub_core.errors import InvalidCredentials
from hub_core.model import Credentials
from hub_core.web.present import PageCursors

WebFactory = Callable[..., Web]

REFUSED = "That address does not name a page of this list"
GONE = "were unlinked meanwhile; this is the first page"


def store_account(w: Web, org: int, name: str, *, provider: str = "acme") -> str:
    """An account saved straight into the store (as if linked earlier); its id."""
    values = {"api_key": f"k{org}", "region": "us"} if provider == "acme" else {"token": "t"}
    secret = {"api_key"} if provider == "acme" else {"token"}
    account = w.store.save(
        provider, Verified(f"org:{org}", name), Credentials(values, secret=frozenset(secret))
    )
    return account.id


def labels(page: Page) -> list[str]:
    """The labels of the page's rows, in order."""
    if not page.find_all("tbody"):
        return []
    return [row.find("strong").text for row in page.find("tbody").find_all("tr")]


def pager_link(page: Page, rel: str) -> str | None:
    """The href of the pager's link *rel* (``next``, ``prev``), or None when there is none."""
    found = page.find_all("a", rel=rel)
    assert len(found) <= 1
    return found[0].attrs["href"] if found else None


def first_link(page: Page) -> str | None:
    found = page.find_all("a", class_="first")
    return found[0].attrs["href"] if found else None


def notice(page: Page) -> str:
    found = page.find_all("p", class_="notice")
    return found[0].text if found else ""


def seven_accounts(w: Web) -> list[str]:
    """Five Acme and two Beta accounts; their labels in the listing's order."""
    for n in range(5):
        store_account(w, n, f"Acme {n}")
    store_account(w, 50, "Beta one", provider="beta")
    store_account(w, 51, "Beta two", provider="beta")
    return [account.label for account in w.store.accounts()]


def walk(w: Web, start: str) -> list[Page]:
    """Every page from *start* on, following Next."""
    pages = [w.get(start)]
    while (url := pager_link(pages[-1], "next")) is not None:
        pages.append(w.get(url))
        assert len(pages) < 100, "Next never ends"
    return pages


@BACKENDS
def test_next_walks_every_account_once_with_counts(web: WebFactory) -> None:
    w = web(providers=[ACME, BETA], page_size=2)
    everything = seven_accounts(w)
    pages = walk(w, "/accounts")
    assert [labels(p) for p in pages] == [everything[i : i + 2] for i in range(0, 7, 2)]
    for n, page in enumerate(pages, 1):
        assert page.status == 200
        assert f"Page {n} of 4" in page.find("nav", class_="pager").text
        shown = f"{2 * n - 1}–{min(2 * n, 7)} of 7"
        assert shown in page.find("p", class_="meta").text
        assert not notice(page)
        query = parse_qs(urlsplit(str(page.response.request.url)).query)
        assert ("after" in query) is (n > 1)
        assert "page" not in query  # keyset: no offset in the address
    assert pager_link(pages[0], "prev") is None
    assert first_link(pages[0]) is None
    assert first_link(pages[1]) is None
    assert first_link(pages[2]) == "/accounts"


@BACKENDS
def test_previous_walks_back_to_the_first_page(web: WebFactory) -> None:
    w = web(providers=[ACME, BETA], page_size=2)
    seven_accounts(w)
    forward = walk(w, "/accounts")
    back = [forward[-1]]
    while (url := pager_link(back[-1], "prev")) is not None:
        back.append(w.get(url))
        assert len(back) < 100
    assert [labels(p) for p in back] == [labels(p) for p in reversed(forward)]
    assert str(back[-1].response.request.url).endswith("/accounts")
    # Back, then forward again: the same pages.
    again = w.get(pager_link(back[2], "next") or "")
    assert labels(again) == labels(forward[2])
    assert "Page 3 of 4" in again.find("nav", class_="pager").text


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ("provider=acme", lambda a: a.provider_id == "acme"),
        ("status=invalid", lambda a: a.status.value == "invalid"),
        (
            "provider=acme&status=active",
            lambda a: a.provider_id == "acme" and a.status.value == "active",
        ),
    ],
)
@BACKENDS
def test_filters_are_kept_across_pages(web: WebFactory, query: str, wanted: Any) -> None:
    w = web(providers=[ACME, BETA], page_size=2)
    for n in range(9):
        account_id = store_account(w, n, f"Acme {n}")
        if n % 2:
            w.store.record(account_id, InvalidCredentials("revoked"))
    for n in range(3):
        store_account(w, 50 + n, f"Beta {n}", provider="beta")
    expected = [a.label for a in w.store.accounts() if wanted(a)]
    filters = parse_qs(query)
    pages = walk(w, f"/accounts?{query}")
    assert len(pages) > 1
    assert [label for p in pages for label in labels(p)] == expected
    for page in pages:
        assert f"of {len(expected)}" in page.find("p", class_="meta").text
        for rel in ("next", "prev"):
            url = pager_link(page, rel)
            if url is not None:
                got = parse_qs(urlsplit(url).query)
                assert {k: got[k] for k in filters} == filters
        for name, select in (("provider", "filter-provider"), ("status", "filter-status")):
            options = page.find("select", id=select).find_all("option")
            chosen = [o.attrs["value"] for o in options if "selected" in o.attrs]
            assert chosen == filters.get(name, [])
    back = pages[-1]
    while (url := pager_link(back, "prev")) is not None:
        assert {k: parse_qs(urlsplit(url).query)[k] for k in filters} == filters
        back = w.get(url)
    assert labels(back) == labels(pages[0])


def test_a_cursor_is_bound_to_its_filters(web: WebFactory) -> None:
    w = web(providers=[ACME, BETA], page_size=2)
    seven_accounts(w)
    second = pager_link(w.get("/accounts?provider=acme"), "next")
    assert second is not None
    cursor = parse_qs(urlsplit(second).query)["after"][0]
    for other in ("provider=beta", "", "status=active", "provider=acme&status=active"):
        page = w.get(f"/accounts?{other}&after={cursor}")
        assert page.status == 200
        assert REFUSED in notice(page)
        first = w.get(f"/accounts?{other}")
        assert labels(page) == labels(first)


def hostile_cursors(w: Web, other: Web) -> list[str]:
    """Cursors the app did not make for these filters, or made to say something wrong."""
    good = pager_link(w.get("/accounts"), "next")
    assert good is not None
    cursor = parse_qs(urlsplit(good).query)["after"][0]
    signed = w.app.cursors._serializer.dumps  # a forged payload, signed with the right key
    other_cursor = parse_qs(urlsplit(pager_link(other.get("/accounts"), "next") or "").query)
    key = ["acme", "Acme 1", "ff", 2]
    return [
        "x",
        "%00",
        f'"><script>alert(1)</script>{CANARY}',
        tampered(cursor),
        cursor[: len(cursor) // 2],  # truncated
        cursor.replace(".", "", 1),  # the payload changed
        "." + cursor,
        cursor * 2,
        "A" * 20_000,
        other_cursor["after"][0],  # another store's
        tampered(signed({"n": 2, "f": [None, None], "t": [key], "x": 1})),
        signed("just text"),
        signed([2, [None, None], [key]]),
        signed({"n": 0, "f": [None, None], "t": [key]}),
        signed({"n": True, "f": [None, None], "t": [key]}),
        signed({"n": 10**30, "f": [None, None], "t": [key]}),
        signed({"n": 2, "f": [None, None], "t": []}),
        signed({"n": 2, "f": [None, None], "t": [key, key]}),  # more keys than pages
        signed({"n": 2, "f": [None, None], "t": [key[:3]]}),
        signed({"n": 2, "f": [None, None], "t": [[*key[:3], True]]}),
        signed({"n": 2, "f": [None, None], "t": [[*key[:3], {"b": "%%%"}]]}),
        signed({"n": 2, "f": [None, None], "t": [[*key[:3], [1, 2]]]}),
        signed({"n": 2, "f": [None, None], "t": [[*key[:3], {"b": "AA", "x": 1}]]}),
        signed({"n": 2, "f": [None, None], "t": "abc"}),
        signed({"n": 30, "f": [None, None], "t": [key] * 21}),  # a longer trail than kept
        signed({"n": 2, "f": None, "t": [key]}),
    ]


@BACKENDS
def test_a_tampered_or_foreign_cursor_shows_the_first_page_calmly(web: WebFactory) -> None:
    w = web(providers=[ACME, BETA], page_size=2)
    other = web(providers=[ACME, BETA], page_size=2)
    seven_accounts(w)
    seven_accounts(other)
    first = labels(w.get("/accounts"))
    for cursor in hostile_cursors(w, other):
        page = w.get("/accounts", params={"after": cursor})
        assert page.status == 200, cursor
        assert labels(page) == first, cursor
        assert REFUSED in notice(page), cursor
        assert "Page 1 of 4" in page.find("nav", class_="pager").text
        # Nothing of what was sent comes back: the pager's links carry the app's own.
        sent = [parse_qs(urlsplit(url).query).get("after") for url in page.links()]
        assert [cursor] not in sent, cursor
        assert CANARY not in page.html
        assert "<script>alert" not in page.html


def test_an_old_offset_address_shows_the_first_page(web: WebFactory) -> None:
    w = web(page_size=2)
    for n in range(3):
        store_account(w, n, f"Org {n}")
    page = w.get("/accounts?page=2")
    assert labels(page) == ["Org 0", "Org 1"]
    assert "Page 1 of 2" in page.find("nav", class_="pager").text


def test_the_cursor_in_a_link_is_escaped_with_hostile_labels_and_filters(
    web: WebFactory,
) -> None:
    w = web(page_size=1)
    hostile = f'<b>"&amp;{CANARY}'
    for n in range(3):
        store_account(w, n, f"{hostile} {n}")
    for query in ("", "provider=acme"):
        page = w.get(f"/accounts?{query}")
        next_url = pager_link(page, "next")
        assert next_url is not None
        for raw in ('"&amp;', "<b>", CANARY):
            assert raw not in next_url
        # The href as parsed is the address the app serves: the second page, then the third.
        second = w.get(next_url)
        assert labels(second) == [f"{hostile} 1"]
        assert not notice(second)
        assert labels(w.get(pager_link(second, "next") or "")) == [f"{hostile} 2"]
    # A hostile provider filter travels in the links percent-encoded, never as markup.
    filtered = w.get("/accounts", params={"provider": f'"><script>{CANARY}'})
    assert "<script>" + CANARY not in filtered.html


@BACKENDS
def test_a_cursor_survives_unlinks_and_links_meanwhile(web: WebFactory) -> None:
    w = web(page_size=2)
    ids = [store_account(w, n, f"Org {n}") for n in range(6)]
    second = pager_link(w.get("/accounts"), "next")
    assert second is not None
    w.store.delete(ids[1])  # the row the cursor starts after
    store_account(w, 40, "Org 0a")  # one before the cursor
    page = w.get(second)
    assert labels(page) == ["Org 2", "Org 3"]
    assert not notice(page)
    assert "of 6" in page.find("p", class_="meta").text


def test_a_cursor_past_every_account_left_shows_the_first_page(web: WebFactory) -> None:
    w = web(page_size=2)
    ids = [store_account(w, n, f"Org {n}") for n in range(5)]
    second = pager_link(w.get("/accounts"), "next")
    assert second is not None
    for account_id in ids[2:]:
        w.store.delete(account_id)
    page = w.get(second)
    assert page.status == 200
    assert labels(page) == ["Org 0", "Org 1"]
    assert GONE in notice(page)
    assert "Page 1 of 1" not in page.text  # one page: no pager
    assert "1–2 of 2" in page.find("p", class_="meta").text


def test_numbers_stay_within_the_accounts_left(web: WebFactory) -> None:
    w = web(page_size=2)
    ids = [store_account(w, n, f"Org {n}") for n in range(7)]
    third = pager_link(w.get(pager_link(w.get("/accounts"), "next") or ""), "next")
    assert third is not None
    for account_id in ids[:4]:
        w.store.delete(account_id)
    page = w.get(third)
    assert labels(page) == ["Org 4", "Org 5"]
    # Where the page is among those left is not known without counting them: the range
    # shown is within them, never "5–6 of 3".
    first, last = page.find("p", class_="meta").text.split(" of ")[0].split("–")
    assert int(first) >= 1
    assert int(last) - int(first) == 1
    assert int(last) <= 3
    assert page.find("p", class_="meta").text.endswith(" of 3")
    assert "Page 2 of 2" in page.find("nav", class_="pager").text


def test_previous_reaches_back_as_far_as_the_trail_then_first(web: WebFactory) -> None:
    w = web(page_size=1)
    count = PageCursors.TRAIL + 6
    for n in range(count):
        store_account(w, n, f"Org {n:02}")
    pages = walk(w, "/accounts")
    assert len(pages) == count
    last = pages[-1]
    assert labels(last) == [f"Org {count - 1:02}"]
    assert len(last.response.request.url.query) < 4000  # an address every browser takes
    back, steps = last, 0
    while (url := pager_link(back, "prev")) is not None:
        back = w.get(url)
        steps += 1
        assert labels(back) == [f"Org {count - 1 - steps:02}"]
    assert steps == PageCursors.TRAIL - 1
    assert first_link(back) == "/accounts"
    assert labels(w.get("/accounts")) == ["Org 00"]


def test_each_page_reads_the_store_on_the_store_thread(
    web: WebFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = web(page_size=2)
    for n in range(5):
        store_account(w, n, f"Org {n}")
    threads: list[str] = []
    page_after = Store.page_after

    def recorded(self: Store, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return page_after(self, *args, **kwargs)

    monkeypatch.setattr(Store, "page_after", recorded)
    walk(w, "/accounts")
    assert len(threads) == 3
    assert all(name.startswith("hub-store") for name in threads), threads


@pytest.mark.parametrize(
    "edit", ["label = X'00ff3c62'", "id = NULL", "provider_id = X'61'", "label = 7.5"]
)
def test_rows_edited_by_hand_page_like_the_others(web: WebFactory, edit: str) -> None:
    """A hand edit may leave bytes, NULL or a number in the listing key: the cursors carry
    each as it is stored, and no account is skipped or shown twice."""
    w = web(page_size=1)
    ids = [store_account(w, n, f"Org {n}") for n in range(4)]
    with sqlite3.connect(w.store.path) as conn:
        conn.execute(f"UPDATE accounts SET {edit} WHERE id IN (?, ?)", ids[1:3])  # noqa: S608
    pages = walk(w, "/accounts")
    assert len(pages) == 4
    assert all(p.status == 200 and not notice(p) for p in pages)
    back = pages[-1]
    while (url := pager_link(back, "prev")) is not None:
        back = w.get(url)
        assert back.status == 200
        assert not notice(back)
    assert labels(back) == labels(pages[0])
