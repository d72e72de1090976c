"""The web Hub's threading model: a slow provider on one Connect holds up no other page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from hub_core import Hub, Store
from hub_core.web import HubApp, WebConfig, create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def gate() -> dict[str, asyncio.Event]:
    return {}


@pytest.fixture
def app(tmp_path: Path, acme_plugin: Any, gate: dict[str, asyncio.Event]) -> Iterator[HubApp]:
    async def slow_provider(request: httpx.Request) -> httpx.Response:
        gate["started"].set()
        await gate["release"].wait()
        return httpx.Response(200, json={"id": 7, "name": "Seven"})

    transport = httpx.MockTransport(slow_provider)
    hub = Hub(plugins=[acme_plugin()], load_entrypoints=False, transport=transport)
    store = Store(tmp_path / "hub.db", secret_key=Fernet.generate_key())
    web = create_app(hub, store, config=WebConfig(no_auth=True))
    yield web
    web.close()
    store.close()


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found, f"no {name} in the form"
    return found.group(1)


async def _filled_connect_form(client: httpx.AsyncClient) -> dict[str, str]:
    form = (await client.get("/connect/acme")).text
    return {
        "csrf_token": _hidden(form, "csrf_token"),
        "form_id": _hidden(form, "form_id"),
        "api_key": "good",
        "region": "us",
    }


async def test_pages_answer_while_a_connect_waits_on_its_provider(
    app: HubApp, gate: dict[str, asyncio.Event]
) -> None:
    gate["started"], gate["release"] = asyncio.Event(), asyncio.Event()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        values = await _filled_connect_form(client)
        connect = asyncio.create_task(client.post("/connect/acme", data=values))
        await asyncio.wait_for(gate["started"].wait(), 10)  # the check is at the provider
        # Both pages read the store (on its thread) while the check holds its request open.
        for path in ("/accounts", "/"):
            page = await asyncio.wait_for(client.get(path), 10)
            assert page.status_code == 200
        assert not connect.done()
        gate["release"].set()
        linked = await asyncio.wait_for(connect, 10)
    assert linked.status_code == 303
    assert "/linked" in linked.headers["location"]


async def test_a_double_submit_waits_for_the_first_check_and_shares_its_outcome(
    app: HubApp, gate: dict[str, asyncio.Event]
) -> None:
    gate["started"], gate["release"] = asyncio.Event(), asyncio.Event()
    calls = 0
    original = gate["started"].set

    def count() -> None:
        nonlocal calls
        calls += 1
        original()

    gate["started"].set = count  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        values = await _filled_connect_form(client)
        first = asyncio.create_task(client.post("/connect/acme", data=values))
        await asyncio.wait_for(gate["started"].wait(), 10)
        second = asyncio.create_task(client.post("/connect/acme", data=values))
        await asyncio.sleep(0.2)  # the second is waiting on the first, not at the provider
        assert not second.done()
        gate["release"].set()
        answers = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert calls == 1
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["location"] == answers[1].headers["location"]
