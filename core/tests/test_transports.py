"""AsyncSender: the async driver's requests go straight to a transport, via the env's proxy."""

from __future__ import annotations

import httpx
import pytest

from hub_core.transports import AsyncSender


def request(host: str) -> httpx.Request:
    return httpx.Request("GET", f"https://{host}/")


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_proxy_every_request_goes_direct() -> None:
    sender = AsyncSender()
    assert sender._proxied is None
    assert sender._transport_for(request("api.acme.test")) is sender._direct


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "direct.acme.test")
    sender = AsyncSender()
    assert sender._transport_for(request("api.acme.test")) is sender._proxied
    assert sender._transport_for(request("direct.acme.test")) is sender._direct


@pytest.mark.anyio
async def test_a_given_transport_is_used_as_it_is() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(204))
    sender = AsyncSender(transport)
    response = await sender.send(request("api.acme.test"))
    assert response.status_code == 204
    await sender.aclose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
