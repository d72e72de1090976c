"""The operator's dashboard (WEB.md §2, docs/web.md) where it meets budgets, tabs, long
labels and many pages."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from core.tests.web_helpers import ACME, BETA, Page, Web
from hub_core import Verified
from hub_core.model import Credentials

WebFactory = Callable[..., Web]


def store_account(w: Web, org: int, name: str, *, provider: str = "acme") -> str:
    """An account saved straight into the store (as if linked earlier); its id."""
    values = {"api_key": f"k{org}", "region": "us"} if provider == "acme" else {"token": "t"}
    secret = {"api_key"} if provider == "acme" else {"token"}
    account = w.store.save(
        provider, Verified(f"org:{org}", name), Credentials(values, secret=frozenset(secret))
    )
    return account.id


def notice(page: Page) -> str:
    found = page.find_all("p", class_="notice")
    return found[0].text if found else ""


# --- Check all and the providers' budgets -----------------------------------------------------


def test_check_all_keeps_to_the_providers_check_budget(web: WebFactory) -> None:
    """docs/web.md: Check all runs "as `hub check --all` does"; docs/cli.md: a provider's
    budget (`hub limits set`) is shared by every checker of the store, the dashboard's too:
    it leases, draws from the budget and says what it waits for."""
    w = web()
    for n in range(6):
        store_account(w, n, f"Org {n}")
        w.provider.keys[f"k{n}"] = (n, f"Org {n}", None)
    w.store.set_limit("acme", 0.01, burst=1)  # one check now, the next in 100 s
    answer = w.submit(w.get("/accounts"), "/accounts/check")
    assert answer.status == 303
    time.sleep(1.5)
    assert w.provider.sent() <= 1, f"{w.provider.sent()} checks sent within a budget of one"
    assert "for the check budget of acme" in w.get("/accounts").find(id="check-progress").text


# --- two tabs: opening the printed address again ----------------------------------------------


def test_opening_the_sign_in_address_again_keeps_the_forms_of_open_tabs(web: WebFactory) -> None:
    """Opening the address `hub serve` printed in a second tab (or clicking it again in the
    terminal) keeps the session of a browser signed in already: the forms open in the first
    tab still go through (a new session each time would refuse them, "The form expired")."""
    w = web()
    first_tab = w.get("/connect/acme")
    w.sign_in(w.client)  # the second tab
    answer = w.submit(first_tab, api_key="good")
    assert answer.status == 303, answer.find("h1").text
    assert w.provider.sent() == 1


# --- notices after an action, with a long label -----------------------------------------------


def test_check_now_says_the_verdict_of_an_account_with_a_long_label(web: WebFactory) -> None:
    """The notice "Checked {label}: {verdict}." is clipped whole by the page: the label is
    clipped on its own first, so a long one (a provider's) never cuts the verdict off."""
    w = web()
    account_id = store_account(w, 7, "Seven " + "x" * 2500)  # k7: the provider refuses it
    answer = w.submit(w.get("/accounts"), f"/accounts/{account_id}/check")
    assert answer.status == 303
    assert "Key refused" in notice(w.follow(answer))


def test_unlink_keeps_its_warning_for_an_account_with_a_long_label(web: WebFactory) -> None:
    """WEB.md §2 Unlink: the key keeps working at the provider until revoked there. The
    notice after Unlink says so after the label, however long the label."""
    w = web()
    account_id = store_account(w, 7, "Seven " + "x" * 2500)
    page = w.get(f"/accounts/{account_id}/unlink")
    answer = w.submit(page, f"/accounts/{account_id}/unlink")
    assert answer.status == 303
    assert "until you revoke it there" in notice(w.follow(answer))


# --- Check now on a deep or filtered page -----------------------------------------------------


def test_check_now_comes_back_to_the_page_and_filters_it_was_pressed_on(web: WebFactory) -> None:
    """With many accounts, Check now on page 2 of "Provider: Acme" comes back there, not to
    the first page of every provider, where the account just checked is not shown."""
    w = web(providers=[ACME, BETA], page_size=2)
    for n in range(5):
        store_account(w, n, f"Acme {n}")
    store_account(w, 50, "Beta one", provider="beta")
    first = w.get("/accounts?provider=acme")
    second = w.get(first.find("a", rel="next").attrs["href"])
    row = second.find("tbody").find_all("tr")[0]
    action = row.find("form").attrs["action"]
    answer = w.submit(second, action)
    assert answer.status == 303
    query = parse_qs(urlsplit(answer.response.headers["location"]).query)
    assert query.get("provider") == ["acme"]
    back = w.follow(answer)
    assert "Page 2 of 3" in back.find("nav", class_="pager").text
