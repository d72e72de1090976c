"""hub_core.webhooks: signing, the outbox, retries and what a delivery never holds."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from core.tests.conftest import CANARY, AcmePlugin
from hub_core import Accounts, Hub, Store
from hub_core.cli import State, main
from hub_core.errors import ConfigurationError
from hub_core.events import AccountChecked
from hub_core.webhooks import (
    Outbox,
    WebhookConfig,
    backoff,
    chain,
    check_url,
    sign,
    verify_signature,
)

SECRET = "whsec-test-5f1e2d3c"
URL = "https://hooks.example.invalid/hub"


def provider(request: httpx.Request) -> httpx.Response:
    if request.headers.get("authorization") in (f"Bearer {CANARY}", "Bearer good"):
        return httpx.Response(200, json={"id": 7, "name": "Seven"})
    return httpx.Response(401)


class Receiver:
    """A webhook receiver behind a MockTransport: answers *statuses* in turn, then 200."""

    def __init__(self, *statuses: int | Exception) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.statuses.pop(0) if self.statuses else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, text="receiver body never read")

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "hub.db", secret_key=Fernet.generate_key()) as opened:
        yield opened


@pytest.fixture
def hub() -> Any:
    built = Hub(
        plugins=[AcmePlugin()], load_entrypoints=False, transport=httpx.MockTransport(provider)
    )
    yield built
    built.close()


def outbox(store: Store, receiver: Receiver, clock: Clock | None = None, **config: Any) -> Outbox:
    options: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Outbox(
        store,
        WebhookConfig(url=URL, secret=SECRET, **config),
        transport=httpx.MockTransport(receiver),
        **options,
    )


# --- signing ---------------------------------------------------------------------------------


def test_a_signature_verifies_and_any_change_refuses_it() -> None:
    body = b'{"id":"e1","type":"account.checked"}'
    header = sign(SECRET, body, timestamp=1000)
    assert verify_signature(SECRET, body, header, now=1000)
    assert verify_signature(SECRET, body.decode(), header, now=1100)
    assert not verify_signature(SECRET, body.replace(b"e1", b"e2"), header, now=1000)
    assert not verify_signature("another-secret", body, header, now=1000)
    # The timestamp is signed too: moving it forward breaks the MAC.
    assert not verify_signature(SECRET, body, header.replace("t=1000", "t=1200"), now=1200)
    for broken in (None, "", "v1=abc", "t=1000", "t=abc,v1=00", header[:-1] + "0"):
        assert not verify_signature(SECRET, body, broken, now=1000), broken


def test_a_stale_or_future_timestamp_is_refused() -> None:
    body = b"{}"
    header = sign(SECRET, body, timestamp=1000)
    assert verify_signature(SECRET, body, header, now=1300)
    assert not verify_signature(SECRET, body, header, now=1301)
    assert not verify_signature(SECRET, body, header, now=699)
    assert verify_signature(SECRET, body, header, now=1500, tolerance=600)


def test_any_v1_in_the_header_may_match_for_a_secret_rotation() -> None:
    header = sign(SECRET, b"{}", timestamp=5)
    rotated = f"{sign('old-secret', b'{}', timestamp=5)},{header.split(',')[1]}"
    assert verify_signature(SECRET, b"{}", rotated, now=5)
    assert verify_signature("old-secret", b"{}", rotated, now=5)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.invalid/x",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:9/hook",
        "http://localhost/hook",
        "http://127.5.0.1/",
    ],
)
def test_https_or_loopback_http_is_accepted(url: str) -> None:
    assert check_url(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.invalid/x", "loopback host only"),
        ("http://10.0.0.1/x", "loopback host only"),
        ("http://127.0.0.1.example.invalid/x", "loopback host only"),
        ("ftp://hooks.example.invalid/x", "https://"),
        ("hooks.example.invalid/x", "https://"),
        ("https://user:pw-in-url@hooks.example.invalid/x", "no user name or password"),
        ("https://exa mple.invalid/x", "not a valid URL"),
        ("https://hooks.example.invalid:99999/x", "not a valid URL"),
    ],
)
def test_other_urls_are_refused_naming_the_variable(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match="HUB_WEBHOOK_URL") as caught:
        check_url(url)
    assert why in str(caught.value)
    assert "pw-in-url" not in str(caught.value)


def test_the_secret_is_required_with_a_url_and_never_in_the_repr() -> None:
    assert WebhookConfig.from_env({}) is None
    assert WebhookConfig.from_env({"HUB_WEBHOOK_URL": " "}) is None
    with pytest.raises(ConfigurationError, match="HUB_WEBHOOK_SECRET must be too"):
        WebhookConfig.from_env({"HUB_WEBHOOK_URL": URL})
    with pytest.raises(ConfigurationError, match="HUB_WEBHOOK_SECRET"):
        WebhookConfig.from_env({"HUB_WEBHOOK_URL": URL, "HUB_WEBHOOK_SECRET": "  "})
    config = WebhookConfig.from_env({"HUB_WEBHOOK_URL": URL, "HUB_WEBHOOK_SECRET": SECRET})
    assert config is not None
    assert config.secret == SECRET
    assert SECRET not in repr(config)
    query = WebhookConfig(url=URL + "?token=receiver-token", secret=SECRET)
    assert "receiver-token" not in query.shown_url


def test_cli_refuses_a_plain_http_url_with_exit_2_before_anything_changes(
    tmp_path: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_WEBHOOK_URL", "http://hooks.example.invalid/x")
    monkeypatch.setenv("HUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HUB_FIELD_API_KEY", "good")
    store = Store(tmp_path / "hub.db", secret_key=Fernet.generate_key())
    done = CliRunner().invoke(main, ["link", "acme"], obj=State(hub=hub, store=store))
    assert done.exit_code == 2, done.output
    assert "HUB_WEBHOOK_URL" in done.output
    assert "loopback" in done.output
    assert SECRET not in done.output
    assert Store.accounts(store) == []


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_in_its_upper_half_up_to_the_cap() -> None:
    assert [backoff(n, rand=0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert [backoff(n, rand=0.999999) for n in range(1, 4)] == pytest.approx([1, 2, 4], abs=1e-5)
    assert backoff(40, cap=3600, rand=0.0) == 1800
    assert backoff(10_000, base=2, cap=60, rand=0.5) == 45
    draws = {backoff(3) for _ in range(50)}
    assert len(draws) > 1
    assert all(2 <= d <= 4 for d in draws)


# --- the outbox ------------------------------------------------------------------------------


def test_each_change_is_in_the_outbox_when_the_method_returns_and_is_delivered_signed(
    store: Store, hub: Hub
) -> None:
    receiver = Receiver()
    box = outbox(store, receiver)
    accounts = Accounts(hub, store, on_event=box.on_event, via="cli")
    account = accounts.link("acme", {"api_key": "good"})
    assert box.counts() == {"pending": 1, "failed": 0, "delivered": 0}
    asyncio.run(accounts.check())
    accounts.unlink(account.id)
    assert box.counts()["pending"] == 3
    assert receiver.requests == []  # enqueueing sends nothing

    report = box.deliver(timeout=5)
    assert report.delivered == 3
    assert report.pending == 0
    assert [b["type"] for b in receiver.bodies()] == [
        "account.linked",
        "account.checked",
        "account.unlinked",
    ]
    for request in receiver.requests:
        assert request.method == "POST"
        assert str(request.url) == URL
        assert request.headers["content-type"] == "application/json"
        body = json.loads(request.content)
        assert request.headers["hub-event-id"] == body["id"]
        assert request.headers["hub-event-type"] == body["type"]
        assert verify_signature(SECRET, request.content, request.headers["hub-signature"])
    assert len({r.headers["hub-event-id"] for r in receiver.requests}) == 3
    assert box.deliver(timeout=1).delivered == 0  # delivered rows are not sent again
    box.close()


def test_a_failed_delivery_is_retried_with_backoff_under_the_same_event_id(store: Store) -> None:
    clock = Clock()
    receiver = Receiver(500, httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), 302)
    box = outbox(store, receiver, clock)
    box.enqueue([AccountChecked("acc1", "acme", "invalid", "active", "invalid_credentials", "cli")])

    waits = []
    for expected in ("HTTP 500", "could not connect", "timed out", "HTTP 302 (a redirect"):
        report = box.deliver(timeout=1, wait_for_retries=False)
        assert report.retried == 1
        assert report.delivered == 0
        assert report.last_error is not None
        assert report.last_error.startswith(expected)
        (row,) = box.entries("pending")
        waits.append(row.next_attempt_at - clock.now)
        # Not due yet: nothing is sent before its backoff.
        assert box.deliver(timeout=1, wait_for_retries=False).retried == 0
        clock.now = row.next_attempt_at
    assert [0.5 <= waits[0] <= 1, 1 <= waits[1] <= 2, 2 <= waits[2] <= 4, 4 <= waits[3] <= 8]
    assert all(waits)
    assert box.deliver(timeout=1).delivered == 1
    assert len({r.headers["hub-event-id"] for r in receiver.requests}) == 1
    assert [r.headers["hub-delivery-attempt"] for r in receiver.requests] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    assert len({r.content for r in receiver.requests}) == 1  # the same bytes each time
    assert box.counts() == {"pending": 0, "failed": 0, "delivered": 1}
    box.close()


def test_deliver_waits_for_a_retry_due_within_its_time(store: Store) -> None:
    receiver = Receiver(503)
    box = outbox(store, receiver, backoff_base=0.1)
    box.enqueue([AccountChecked("acc1", "acme", "active", "active", None, "cli")])
    report = box.deliver(timeout=3)
    assert report.delivered == 1
    assert report.retried == 1
    assert report.pending == 0
    box.close()


def test_exhausted_retries_stay_visible_and_retry_failed_sends_them_again(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    receiver = Receiver(500, 500)
    box = outbox(store, receiver, clock, max_attempts=2)
    box.enqueue([AccountChecked("acc1", "acme", "invalid", "active", "invalid_credentials", "cli")])
    box.deliver(timeout=1, wait_for_retries=False)
    clock.now += 10
    with caplog.at_level(logging.WARNING, logger="hub_core.webhooks"):
        report = box.deliver(timeout=1, wait_for_retries=False)
    assert report.gave_up == 1
    assert report.pending == 0
    assert "gave up after 2 attempts" in caplog.text
    (failed,) = box.entries("failed")
    assert failed.attempts == 2
    assert failed.last_error == "HTTP 500"
    clock.now += 100_000
    assert box.deliver(timeout=1, wait_for_retries=False).delivered == 0  # not silently resent
    assert box.retry_failed() == 1
    assert box.deliver(timeout=1).delivered == 1
    assert box.counts() == {"pending": 0, "failed": 0, "delivered": 1}
    box.close()


def test_delivered_rows_are_pruned_after_keep_delivered(store: Store) -> None:
    clock = Clock()
    box = outbox(store, Receiver(), clock, keep_delivered=60)
    box.enqueue([AccountChecked("acc1", "acme", "active", "active", None, "cli")])
    box.deliver(timeout=1)
    clock.now += 30
    box.deliver(timeout=1)
    assert box.counts()["delivered"] == 1
    clock.now += 31
    box.deliver(timeout=1)
    assert box.counts()["delivered"] == 0
    box.close()


def test_a_leased_row_is_not_sent_by_a_second_sender_until_the_lease_ends(store: Store) -> None:
    box = outbox(store, Receiver())
    box.enqueue([AccountChecked("acc1", "acme", "active", "active", None, "cli")])
    now = 1_800_000_000.0
    assert len(store.outbox_claim(now=now, limit=10, lease=40)) == 1
    assert store.outbox_claim(now=now + 39, limit=10, lease=40) == []
    assert len(store.outbox_claim(now=now + 40, limit=10, lease=40)) == 1
    box.close()


def test_a_check_writes_its_verdicts_in_batches_not_a_transaction_each(
    store: Store, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = Accounts(hub, store)
    for n in range(30):
        store.save(
            "acme",
            __import__("hub_core").Verified(identity=f"org:{n}", label=f"Org {n}"),
            __import__("hub_core").Credentials({"api_key": "good"}, secret=["api_key"]),
        )
    writes: list[int] = []
    add = Store.outbox_add

    def counted(self: Store, rows: Any, *, now: float) -> int:
        rows = list(rows)
        writes.append(len(rows))
        return add(self, rows, now=now)

    monkeypatch.setattr(Store, "outbox_add", counted)
    box = outbox(store, Receiver())
    accounts = Accounts(hub, store, on_event=box.on_event)
    asyncio.run(accounts.check())
    assert sum(writes) == 30
    assert box.counts()["pending"] == 30
    assert len(writes) <= 3, writes
    box.close()


def test_no_secret_in_any_delivery_body_header_or_log(
    store: Store, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(500)
    box = outbox(store, receiver, backoff_base=0.05)
    accounts = Accounts(hub, store, on_event=box.on_event)
    with caplog.at_level(logging.DEBUG):
        account = accounts.link("acme", {"api_key": CANARY})
        accounts.relink(account.id, {"api_key": CANARY})
        accounts.credentials(account.id, reader="test")
        asyncio.run(accounts.check())
        with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal
            accounts.link("acme", {"api_key": "wrong-" + CANARY})
        box.deliver(timeout=3)
    assert {b["type"] for b in receiver.bodies()} == {
        "account.linked",
        "account.relinked",
        "credentials.read",
        "account.checked",
        "link.failed",
    }
    for secret in (CANARY, SECRET):
        for request in receiver.requests:
            assert secret not in request.content.decode()
            assert all(secret not in value for value in request.headers.values())
        assert secret not in caplog.text
        assert all(secret not in row.body for row in box.entries("delivered"))
    assert SECRET not in repr(box)
    box.close()
    assert CANARY.encode() not in (Path(store.path)).read_bytes()


def test_a_receiver_or_store_failure_changes_nothing_for_the_person(
    store: Store, hub: Hub, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver(*([500] * 20))
    box = outbox(store, receiver)
    accounts = Accounts(hub, store, on_event=box.on_event)
    account = accounts.link("acme", {"api_key": "good"})
    assert box.deliver(timeout=0.5, wait_for_retries=False).retried == 1
    assert store.get(account.id).label == "Seven"

    def broken(*args: Any, **kwargs: Any) -> int:
        raise __import__("hub_core").StoreError("the outbox is broken")

    monkeypatch.setattr(Store, "outbox_add", broken)
    with caplog.at_level(logging.ERROR, logger="hub_core.webhooks"):
        relinked = accounts.relink(account.id, {"api_key": "good"})
    assert relinked.id == account.id
    assert "could not be written to the outbox" in caplog.text
    box.close()


def test_chain_calls_every_handler_and_one_failing_stops_none(store: Store, hub: Hub) -> None:
    seen: list[str] = []

    def failing(event: Any) -> None:
        raise RuntimeError("host bug")

    async def later(event: Any) -> None:
        seen.append(event.type)

    box = outbox(store, Receiver())
    accounts = Accounts(hub, store, on_event=chain(box.on_event, failing, None, later))
    accounts.link("acme", {"api_key": "good"})
    assert seen == ["account.linked"]
    assert box.counts()["pending"] == 1
    box.close()


def test_the_background_sender_delivers_soon_after_each_event(store: Store, hub: Hub) -> None:
    receiver = Receiver()
    box = outbox(store, receiver)
    box.start(poll=30)
    accounts = Accounts(hub, store, on_event=box.on_event)
    accounts.link("acme", {"api_key": "good"})
    for _ in range(200):
        if receiver.requests:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert [b["type"] for b in receiver.bodies()] == ["account.linked"]
    box.close()


def test_nothing_is_enqueued_without_a_webhook_url(
    tmp_path: Path, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("HUB_FIELD_API_KEY", "good")
    store = Store(tmp_path / "hub.db", secret_key=Fernet.generate_key())
    done = CliRunner().invoke(main, ["link", "acme"], obj=State(hub=hub, store=store))
    assert done.exit_code == 0, done.output
    assert store.outbox_counts() == {"pending": 0, "failed": 0, "delivered": 0}


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("https://bob:pa/ss@hooks.example/hub", "pa/ss"),  # an unencoded "/" in the password
        ("https://bob:s3cr?et@hooks.example/hub", "s3cr"),  # an unencoded "?"
        ("https://bob:hunt#er2@hooks.example/hub", "hunt"),  # an unencoded "#"
    ],
)
def test_a_refused_url_never_shows_its_password(url: str, password: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_url(url)
    assert password not in str(refused.value)
    assert "bob" not in str(refused.value)
    assert "hooks.example/hub" in str(refused.value)


def test_a_timestamp_past_any_clock_is_a_malformed_header() -> None:
    assert verify_signature(SECRET, b"{}", "t=" + "9" * 400 + ",v1=00") is False  # no overflow


def test_a_secret_read_with_a_newline_still_verifies() -> None:
    config = WebhookConfig.from_env({"HUB_WEBHOOK_URL": URL, "HUB_WEBHOOK_SECRET": f"{SECRET}\n"})
    assert config is not None
    body = json.dumps({"id": "x"}).encode()
    assert verify_signature(f"{SECRET}\n", body, sign(config.secret, body))  # a .env line
    assert verify_signature(SECRET, body, sign(f" {SECRET} ", body))


def _events(n: int) -> list[AccountChecked]:
    return [AccountChecked(f"acc{i}", "acme", "active", "active", None, "cli") for i in range(n)]


def test_deliver_timeout_bounds_the_whole_call_with_a_black_hole_receiver(store: Store) -> None:
    # hub's commands deliver for at most 5 seconds at their end: a receiver that never answers
    # must not make that a minute, whatever is pending (a round is `concurrency` rows).

    async def black_hole(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        return httpx.Response(200)

    box = Outbox(
        store,
        WebhookConfig(url=URL, secret=SECRET),
        transport=httpx.MockTransport(black_hole),
    )
    box.enqueue(_events(40))
    began = time.monotonic()
    report = box.deliver(timeout=1)
    elapsed = time.monotonic() - began
    box.close()
    assert elapsed < 2.5
    assert (report.retried, report.pending) == (8, 40)  # one round tried; none lost


def test_a_second_sender_never_sends_what_a_slow_first_one_claimed(
    store: Store,
) -> None:
    # A receiver answering each request in 9 s (the clock moved on by hand): every row a
    # sender claimed is sent before its lease (the timeout plus 30 s) ends.
    clock = Clock()
    sent: list[tuple[str, str]] = []  # (sender, event id)
    config = WebhookConfig(url=URL, secret=SECRET, concurrency=1)
    second_ran = False

    def second_receiver(request: httpx.Request) -> httpx.Response:
        sent.append(("B", request.headers["hub-event-id"]))
        return httpx.Response(200)

    second = Outbox(store, config, transport=httpx.MockTransport(second_receiver), clock=clock)

    def first_receiver(request: httpx.Request) -> httpx.Response:
        nonlocal second_ran
        sent.append(("A", request.headers["hub-event-id"]))
        clock.now += 9  # the receiver took 9 s to answer
        if not second_ran and len(sent) == 5:
            second_ran = True  # e.g. `hub serve`'s poll, or a cron `hub webhooks deliver`
            second.deliver(timeout=1, wait_for_retries=False)
        return httpx.Response(200)

    first = Outbox(store, config, transport=httpx.MockTransport(first_receiver), clock=clock)
    first.enqueue(_events(10))
    first.deliver(timeout=1000, wait_for_retries=False)
    first.close()
    second.close()
    ids = [event_id for _, event_id in sent]
    twice = {i for i in ids if ids.count(i) > 1}
    assert not twice
    assert len(set(ids)) == 10
