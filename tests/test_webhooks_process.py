"""Signed webhooks from real ``hub`` processes to a receiver on 127.0.0.1.

The events of a ``hub link`` and ``hub check`` run (against the loopback fake providers of
conftest.py) reach an HTTP receiver in the test process; each is checked with
`verify_signature` as a host's receiver would.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hub_core.webhooks import verify_signature

pytestmark = pytest.mark.slow

SECRET = "whsec-process-test-9a8b7c6d"


class Receiver(ThreadingHTTPServer):
    """Records each POST (headers, raw body); answers `statuses` in turn, then 200."""

    daemon_threads = True

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hub-events"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.deliveries]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.lock:
            self.server.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def webhook_env(receiver: Receiver) -> dict[str, str]:
    return {"HUB_WEBHOOK_URL": receiver.url, "HUB_WEBHOOK_SECRET": SECRET}


def assert_signed_and_secret_free(receiver: Receiver, *secrets: str) -> None:
    for headers, body in receiver.deliveries:
        assert verify_signature(SECRET, body, headers["hub-signature"]), headers
        event = json.loads(body)
        assert headers["hub-event-id"] == event["id"]
        assert headers["hub-event-type"] == event["type"]
        for secret in (SECRET, *secrets):
            assert secret not in body.decode()
            assert all(secret not in value for value in headers.values())


def test_a_hub_check_in_another_process_delivers_signed_events_with_stable_unique_ids(
    hub, elastic, keys, receiver
):
    env = webhook_env(receiver)
    linked = hub.run("link", "elastic", env={**env, "HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    assert [b["type"] for b in receiver.bodies()] == ["account.linked"]
    account_id = receiver.bodies()[0]["account"]

    checked = hub.run("check", env=env)
    assert checked.returncode == 0, checked.stderr
    elastic.keys.clear()  # the key is revoked at the provider
    rejected = hub.run("check", env=env)
    assert rejected.returncode == 1, rejected.stderr

    events = receiver.bodies()
    assert [e["type"] for e in events] == ["account.linked", "account.checked", "account.checked"]
    assert events[1]["status"] == "active"
    assert events[1]["error_code"] is None
    assert events[2]["account"] == account_id
    assert events[2]["status"] == "invalid"
    assert events[2]["previous_status"] == "active"
    assert events[2]["error_code"] == "invalid_credentials"
    assert {e["via"] for e in events} == {"cli"}
    assert len({e["id"] for e in events}) == 3
    assert_signed_and_secret_free(receiver, keys.elastic)
    assert "Webhooks" not in "".join(hub.transcript)  # all delivered: nothing to say
    assert SECRET not in "".join(hub.transcript)


def test_a_receiver_that_fails_first_is_retried_with_the_same_event_id(
    hub, elastic, keys, receiver
):
    env = webhook_env(receiver)
    receiver.statuses = [500]
    linked = hub.run("link", "elastic", env={**env, "HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr

    (first_headers, first_body), (again_headers, again_body) = receiver.deliveries
    assert first_headers["hub-event-id"] == again_headers["hub-event-id"]
    assert first_body == again_body
    assert [first_headers["hub-delivery-attempt"], again_headers["hub-delivery-attempt"]] == [
        "1",
        "2",
    ]
    assert_signed_and_secret_free(receiver, keys.elastic)


def test_a_receiver_that_is_down_never_fails_the_command_and_the_next_process_delivers(
    hub, elastic, keys, receiver
):
    env = webhook_env(receiver)
    receiver.statuses = [503] * 50
    linked = hub.run("link", "elastic", env={**env, "HUB_FIELD_API_KEY": keys.elastic}, timeout=30)
    assert linked.returncode == 0, linked.stderr
    assert "Linked Acme Org" in linked.stdout
    (line,) = [line for line in linked.stderr.splitlines() if line.startswith("Webhooks")]
    assert "1 event not delivered yet (last: HTTP 503)" in line
    assert "it waits in the outbox" in line

    status = hub.run("webhooks", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pending"] == 1

    receiver.statuses = []
    delivered = hub.run("webhooks", "deliver", env=env)
    assert delivered.returncode == 0, delivered.stderr
    ids = {headers["hub-event-id"] for headers, _ in receiver.deliveries}
    assert len(ids) == 1  # every attempt, in both processes, was the one event
    assert receiver.bodies()[-1]["type"] == "account.linked"
    assert_signed_and_secret_free(receiver, keys.elastic)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"HUB_WEBHOOK_URL": "http://hooks.example.invalid/x"}, "loopback host only"),
        ({"HUB_WEBHOOK_SECRET": None}, "HUB_WEBHOOK_SECRET must be too"),
    ],
)
def test_a_refused_configuration_is_exit_2_before_anything_is_linked(
    hub, elastic, keys, receiver, extra, expected
):
    env = {**webhook_env(receiver), **extra}
    done = hub.run("link", "elastic", env={**env, "HUB_FIELD_API_KEY": keys.elastic})
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert elastic.requests == []
    assert hub.json("accounts", "--json") == []


def test_a_worker_delivers_its_events_as_it_runs_not_when_it_stops(hub, elastic, keys, receiver):
    env = webhook_env(receiver)
    linked = hub.run("link", "elastic", env={**env, "HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    worker = hub.popen("worker", "--every", "1h", env=env)
    try:
        deadline = time.monotonic() + 30
        while len(receiver.deliveries) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Still running (due again only in an hour), and the check's event is delivered.
        assert worker.poll() is None
        assert [b["type"] for b in receiver.bodies()] == ["account.linked", "account.checked"]
    finally:
        worker.send_signal(signal.SIGTERM)
        done = hub.finish(worker, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Webhooks go to http://127.0.0.1:" in done.stderr
    assert_signed_and_secret_free(receiver, keys.elastic)
