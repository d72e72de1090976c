"""`hub_core.requests.request` builds the very request ``httpx.Request`` would, only cheaper."""

from __future__ import annotations

import httpx
import pytest

from hub_core.requests import request

URL = "https://api.example.invalid/api/v1/things?page=2"


def _same(built: httpx.Request, expected: httpx.Request) -> None:
    assert built.method == expected.method
    assert built.url == expected.url
    assert built.headers.raw == expected.headers.raw
    assert built.content == expected.content == b""
    assert built.extensions == expected.extensions


@pytest.mark.parametrize("method", ["GET", "get", "HEAD", "DELETE", "OPTIONS", "POST", "put"])
@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"Authorization": "ApiKey abc", "Accept": "application/json"},
        {"host": "other.example.invalid", "X-Key": "k"},
        {"Content-Length": "0"},
        {"Transfer-Encoding": "chunked"},
    ],
)
@pytest.mark.parametrize("ready", [True, False], ids=["httpx.URL", "str"])
def test_a_request_is_the_one_httpx_builds(
    method: str, headers: dict[str, str] | None, ready: bool
) -> None:
    url = httpx.URL(URL) if ready else URL
    _same(request(method, url, headers=headers), httpx.Request(method, url, headers=headers))


def test_a_url_with_a_port_keeps_it_in_the_host_header() -> None:
    url = "https://api.example.invalid:8443/x"
    _same(request("GET", url), httpx.Request("GET", url))
    assert request("GET", url).headers["host"] == "api.example.invalid:8443"


@pytest.mark.parametrize("headers", [{"X-Name": "café"}, {"Naïve": "1"}])
def test_a_header_that_is_not_ascii_is_refused_as_httpx_refuses_it(
    headers: dict[str, str],
) -> None:
    with pytest.raises(UnicodeEncodeError):
        httpx.Request("GET", URL, headers=headers)
    with pytest.raises(UnicodeEncodeError):
        request("GET", URL, headers=headers)


def test_a_request_goes_through_an_httpx_client_as_httpx_s_own_does() -> None:
    seen: list[httpx.Request] = []

    def answer(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        response = client.send(request("POST", URL, headers={"Authorization": "Bearer t"}))
    assert response.json() == {"ok": True}
    assert seen[0].headers["authorization"] == "Bearer t"
    assert seen[0].headers["content-length"] == "0"


def test_each_request_is_its_own_object() -> None:
    first, second = request("GET", URL), request("GET", URL)
    first.headers["X-Only"] = "first"
    assert "x-only" not in second.headers
