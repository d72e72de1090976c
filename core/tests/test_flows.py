"""The flow driver's guarantees, each proved under the sync and the async runner."""

from __future__ import annotations

import asyncio
import gzip
import socket
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from hub_core import (
    FieldError,
    Hub,
    HubError,
    InvalidCredentials,
    PluginError,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    Verified,
)
from hub_core.flows import Policy, _request_budget, retry_after_seconds
from hub_core.hookspecs import Flow

from .conftest import CANARY

MiB = 1024 * 1024
GOOD = {"api_key": "good"}
Check = Callable[[Hub, dict[str, str]], Verified]


@pytest.fixture(params=["sync", "async"])
def check(request: pytest.FixtureRequest) -> Check:
    """Run one check with Hub.verify or Hub.averify."""
    if request.param == "sync":
        return lambda hub, values: hub.verify("acme", values)
    return lambda hub, values: asyncio.run(hub.averify("acme", values))


def get(url: str, key: str = "good", method: str = "GET") -> Callable[[Any], Flow]:
    """A flow that sends one request to *url* and returns its JSON as a label."""

    def flow(credentials: Any) -> Flow:
        response = yield httpx.Request(method, url, headers={"Authorization": f"Bearer {key}"})
        return Verified("id:1", f"{response.status_code} {response.text[:40]}")

    return flow


# --- egress: HTTPS and the allowlist ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/steal",
        "https://api.acme.test.evil.test/",
        "https://eu.acme.test/",
        "https://api.acme.test:8443/",
        "https://user:pw@api.acme.test/",
        "https://127.0.0.1/",
    ],
)
def test_a_request_outside_the_allowlist_is_refused_before_anything_is_sent(
    make_hub: Callable[..., Hub], recorder: Any, check: Check, url: str
) -> None:
    hub = make_hub(get(url))
    with pytest.raises(PluginError) as caught:
        check(hub, GOOD)
    assert recorder.requests == []
    assert "was not sent" in str(caught.value)
    assert "api.acme.test, *.eu.acme.test" in str(caught.value)
    assert caught.value.plugin == "AcmePlugin"


@pytest.mark.parametrize("host", ["evil.test", "api.acme.test.evil.test", "api.acme.test:8443"])
def test_a_host_header_naming_another_host_is_refused_before_anything_is_sent(
    make_hub: Callable[..., Hub], recorder: Any, check: Check, host: str
) -> None:
    def flow(credentials: Any) -> Flow:
        yield httpx.Request("GET", "https://api.acme.test/me", headers={"Host": host})
        return Verified("id:1", "never")

    with pytest.raises(PluginError, match=r"set the Host header .* so it was not sent"):
        check(make_hub(flow), GOOD)
    assert recorder.requests == []


def test_a_host_header_naming_the_address_host_in_any_case_is_sent(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    def flow(credentials: Any) -> Flow:
        yield httpx.Request("GET", "https://api.acme.test/me", headers={"Host": "API.Acme.test"})
        return Verified("id:1", "sent")

    hub = make_hub(flow, handler=lambda r: httpx.Response(200))
    assert check(hub, GOOD).label == "sent"
    assert len(recorder.requests) == 1


def test_plain_http_is_refused(make_hub: Callable[..., Hub], recorder: Any, check: Check) -> None:
    hub = make_hub(get("http://api.acme.test/me"))
    with pytest.raises(PluginError, match="over http; hub sends keys over HTTPS only"):
        check(hub, GOOD)
    assert recorder.requests == []


def test_a_flow_yielding_something_else_than_a_request_is_a_plugin_error(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    def flow(credentials: Any) -> Flow:
        yield "https://api.acme.test/"  # type: ignore[misc]
        return Verified("a", "b")

    with pytest.raises(PluginError, match=r"yielded str, not an httpx\.Request"):
        check(make_hub(flow), GOOD)


def test_allowed_suffix_hosts_are_reached(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    hub = make_hub(get("https://tenant.eu.acme.test/me"), handler=lambda r: httpx.Response(200))
    assert check(hub, GOOD).label == "200 "
    assert recorder.requests[0].url.host == "tenant.eu.acme.test"


# --- redirects ----------------------------------------------------------------------------------


def test_same_origin_redirects_are_followed_with_the_key(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/users/me":
            return httpx.Response(301, headers={"location": "/users/42"})
        return httpx.Response(200, text=request.url.path)

    result = check(make_hub(get("https://api.acme.test/users/me"), handler=handler), GOOD)
    assert result.label == "200 /users/42"
    assert [r.url.path for r in recorder.requests] == ["/users/me", "/users/42"]
    assert recorder.requests[1].headers["authorization"] == "Bearer good"


@pytest.mark.parametrize(
    ("location", "where"),
    [
        ("https://evil.test/MARK", "evil.test"),
        ("https://x.eu.acme.test/MARK", "x.eu.acme.test"),
        ("http://api.acme.test/MARK", "an unencrypted http:// address"),
        ("//evil.test/MARK", "evil.test"),
        ("https://api.acme.test:444/MARK", "api.acme.test:444"),
        ("//user:MARK@api.acme.test/x", "an address with a user name in it"),
        ("https://MARK:pw@api.acme.test/x", "an address with a user name in it"),
        ("javascript:alert('MARK')", "an address hub cannot use"),
        ("data:text/html,MARK", "an address hub cannot use"),
        ("ftp://api.acme.test/MARK", "an address hub cannot use"),
        # Locations httpx cannot parse: a bad A-label, a bad IDN, a control character, a port.
        ("https://xn--zz.test/MARK", "an address hub cannot use"),
        ("https://\u0080MARK.test/", "an address hub cannot use"),
        ("\x1fMARK", "an address hub cannot use"),
        ("https://[::1/MARK", "an address hub cannot use"),
    ],
)
def test_a_redirect_elsewhere_is_refused_and_blamed_on_the_provider(
    make_hub: Callable[..., Hub], recorder: Any, check: Check, location: str, where: str
) -> None:
    hub = make_hub(
        get("https://api.acme.test/me"),
        handler=lambda r: httpx.Response(302, headers={"location": location.encode()}),
    )
    with pytest.raises(UnexpectedResponse) as info:
        check(hub, GOOD)
    message = str(info.value)
    assert message.startswith("Acme redirected the check from api.acme.test to ")
    assert where in message
    assert "so the key was not sent there" in message
    assert "MARK" not in message  # the Location is never quoted: it may hold anything
    assert info.value.__cause__ is None
    assert len(recorder.requests) == 1
    assert recorder.requests[0].url.host == "api.acme.test"


def test_a_redirect_loop_ends_after_five_hops(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    hub = make_hub(
        get("https://api.acme.test/a"),
        handler=lambda r: httpx.Response(302, headers={"location": "/a"}),
    )
    with pytest.raises(UnexpectedResponse, match="more than 5 times"):
        check(hub, GOOD)
    assert len(recorder.requests) == 6


def test_303_turns_a_post_into_a_get_without_body(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    def flow(credentials: Any) -> Flow:
        yield httpx.Request("POST", "https://api.acme.test/login", json={"k": "v"})
        return Verified("a", "b")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            return httpx.Response(303, headers={"location": "/done"})
        return httpx.Response(200)

    check(make_hub(flow, handler=handler), GOOD)
    done = recorder.requests[1]
    assert (done.method, done.content, "content-type" in done.headers) == ("GET", b"", False)


# --- bodies -------------------------------------------------------------------------------------


class BigStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Ten mebibytes in 64 KiB chunks, without a Content-Length; counts what was read."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(10 * 16):
            self.sent += 65536
            yield b"x" * 65536

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


@pytest.mark.parametrize("declared", [True, False])
def test_a_ten_mebibyte_body_is_refused(
    make_hub: Callable[..., Hub], check: Check, declared: bool
) -> None:
    stream = BigStream()

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=b"x" * (10 * MiB))
        return httpx.Response(200, stream=stream)

    with pytest.raises(UnexpectedResponse, match="more than 1024 KiB"):
        check(make_hub(get("https://api.acme.test/"), handler=handler), GOOD)
    assert stream.sent <= 2 * MiB  # reading stopped at the cap


def test_a_body_of_exactly_the_cap_is_accepted(make_hub: Callable[..., Hub], check: Check) -> None:
    hub = make_hub(
        get("https://api.acme.test/"), handler=lambda r: httpx.Response(200, content=b"y" * MiB)
    )
    assert check(hub, GOOD).label.startswith("200 yyyy")


def test_compressed_bodies_reach_the_flow_decoded(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    body = gzip.compress(b'{"id": 7, "name": "Zipped"}')
    hub = make_hub(
        handler=lambda r: httpx.Response(
            200,
            content=body,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        )
    )
    assert check(hub, GOOD).label == "Zipped"


def test_a_non_json_200_is_an_unexpected_response(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    hub = make_hub(handler=lambda r: httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(
        UnexpectedResponse, match=r"Acme answered \(HTTP 200\) with something that is not JSON"
    ):
        check(hub, GOOD)


@pytest.mark.parametrize(
    "body", [b'{"id": 7, "name": "\xff\xfe"}', b"[" * 200_000], ids=["not-utf8", "too-deep"]
)
def test_json_that_response_json_cannot_read_is_the_providers_fault(
    make_hub: Callable[..., Hub], check: Check, body: bytes
) -> None:
    # UnicodeDecodeError and RecursionError from response.json(), not the plugin's bug.
    answer = httpx.Response(200, content=body, headers={"content-type": "application/json"})
    hub = make_hub(handler=lambda r: answer)
    with pytest.raises(UnexpectedResponse, match="with something that is not JSON"):
        check(hub, GOOD)


def test_a_plugins_own_recursion_is_its_bug(make_hub: Callable[..., Hub], check: Check) -> None:
    def deep(n: int) -> int:
        return deep(n + 1)

    def flow(credentials: Any) -> Flow:
        yield httpx.Request("GET", "https://api.acme.test/me")
        deep(0)
        raise AssertionError("unreachable")

    hub = make_hub(handler=lambda r: httpx.Response(200, json={}), flow=flow)
    with pytest.raises(PluginError, match="RecursionError"):
        check(hub, GOOD)


# --- retries and rate limits --------------------------------------------------------------------


def scripted(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def test_503_on_get_is_retried_then_succeeds(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    handler = scripted(
        httpx.Response(503),
        httpx.Response(502),
        httpx.Response(200, json={"id": 1, "name": "Back"}),
    )
    assert check(make_hub(handler=handler), GOOD).label == "Back"
    assert len(recorder.requests) == 3


def test_retries_are_bounded_and_the_flow_sees_the_last_answer(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    with pytest.raises(ProviderUnavailable, match="HTTP 504"):
        check(make_hub(handler=scripted(httpx.Response(504))), GOOD)
    assert len(recorder.requests) == 3


def test_a_post_is_not_retried(make_hub: Callable[..., Hub], recorder: Any, check: Check) -> None:
    hub = make_hub(
        get("https://api.acme.test/", method="POST"), handler=scripted(httpx.Response(503))
    )
    assert check(hub, GOOD).label == "503 "
    assert len(recorder.requests) == 1


def test_connection_errors_are_retried_then_reported(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    hub = make_hub(handler=scripted(httpx.ConnectError("refused")))
    with pytest.raises(ProviderUnavailable) as caught:
        check(hub, GOOD)
    assert caught.value.reason == "connect"
    assert str(caught.value) == "Acme could not be reached: could not connect to api.acme.test"
    assert len(recorder.requests) == 3


def test_a_connection_error_then_success(make_hub: Callable[..., Hub], check: Check) -> None:
    handler = scripted(httpx.ReadTimeout("slow"), httpx.Response(200, json={"id": 1, "name": "Ok"}))
    assert check(make_hub(handler=handler), GOOD).label == "Ok"


def unresolved() -> httpx.ConnectError:
    try:
        raise socket.gaierror(-2, "Name or service not known")
    except socket.gaierror as cause:
        error = httpx.ConnectError("[Errno -2] Name or service not known")
        error.__cause__ = cause
        return error


def test_an_unresolved_host_is_not_retried_and_says_so(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        check(make_hub(handler=scripted(unresolved())), GOOD)
    assert caught.value.reason == "unresolved"
    assert "the name api.acme.test does not resolve" in str(caught.value)
    assert len(recorder.requests) == 1


def test_transport_errors_are_thrown_into_the_flow_which_may_translate_them(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    def flow(credentials: Any) -> Flow:
        try:
            yield httpx.Request("GET", "https://api.acme.test/")
        except ProviderUnavailable as exc:
            if exc.reason == "unresolved":
                raise FieldError("team", "no such team") from exc
            raise
        return Verified("a", "b")

    with pytest.raises(FieldError) as caught:
        check(make_hub(flow, handler=scripted(unresolved())), GOOD)
    assert caught.value.errors == {"team": "no such team"}


def test_retry_after_within_the_cap_is_honoured(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    handler = scripted(
        httpx.Response(429, headers={"retry-after": "0"}),
        httpx.Response(200, json={"id": 1, "name": "Later"}),
    )
    assert check(make_hub(handler=handler), GOOD).label == "Later"
    assert len(recorder.requests) == 2


def test_a_huge_retry_after_is_not_waited_for(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    hub = make_hub(handler=scripted(httpx.Response(429, headers={"retry-after": "999999"})))
    with pytest.raises(RateLimited) as caught:
        check(hub, GOOD)
    # Eleven days asked: a day at most, when the store has the account checked again.
    assert caught.value.retry_after == 86_400
    assert "try again in about 24 hours" in str(caught.value)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("value", ["soon", "-1", "1e9", "Mon, 99 Foo 2026", ""])
def test_a_garbage_retry_after_falls_back_to_bounded_backoff(
    make_hub: Callable[..., Hub], recorder: Any, check: Check, value: str
) -> None:
    hub = make_hub(handler=scripted(httpx.Response(429, headers={"retry-after": value})))
    with pytest.raises(RateLimited) as caught:
        check(hub, GOOD)
    assert caught.value.retry_after is None
    assert "try again in a few minutes" in str(caught.value)
    assert len(recorder.requests) == 3


def test_a_wait_longer_than_the_flow_deadline_ends_the_check_at_once(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    hub = make_hub(
        handler=scripted(httpx.Response(429, headers={"retry-after": "20"})), flow_timeout=1
    )
    with pytest.raises(ProviderUnavailable, match="did not finish answering within 1 seconds"):
        check(hub, GOOD)
    assert len(recorder.requests) == 1


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60
    assert retry_after_seconds("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("1.5") is None
    # At most a day: a longer wait, or more digits than a float holds (inf), is a day.
    assert retry_after_seconds("9" * 400) == retry_after_seconds("31536000") == 86_400
    assert retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT", now=now) == 86_400


def test_a_retry_after_of_400_digits_is_a_rate_limit(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    # float("9" * 400) is inf, which no message can round: a day, as any wait past one.
    hub = make_hub(handler=scripted(httpx.Response(429, headers={"retry-after": "9" * 400})))
    with pytest.raises(RateLimited, match="about 24 hours") as raised:
        check(hub, GOOD)
    assert raised.value.retry_after == 86_400


@pytest.mark.parametrize("value", ["²", "٣", "１２", "9\u0663", "-5", "1e9", "Thu, 99 Foo", "\x00"])
def test_retry_after_that_is_not_ascii_seconds_or_a_date_is_unknown(value: str) -> None:
    # str.isdigit() is True for superscripts and other scripts' digits, which float() refuses.
    assert retry_after_seconds(value) is None


def test_backoff_grows_with_full_jitter_and_is_capped() -> None:
    policy = Policy(backoff=1, max_backoff=3)
    delays = [policy.backoff_delay(attempt) for attempt in range(1, 8) for _ in range(50)]
    assert all(0 <= d <= 3 for d in delays)
    assert max(policy.backoff_delay(1) for _ in range(200)) <= 1


# --- requests as sent -------------------------------------------------------------------------


def test_every_request_carries_the_timeouts_and_a_user_agent(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    check(make_hub(timeout=7, flow_timeout=20), GOOD)
    sent = recorder.requests[0]
    assert sent.extensions["timeout"]["read"] <= 7
    assert sent.headers["user-agent"].startswith("hub/")


def test_invalid_fields_make_no_request(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    with pytest.raises(FieldError):
        check(make_hub(), {"api_key": "", "region": "mars"})
    assert recorder.requests == []


# --- plugin failures ------------------------------------------------------------------------------


def test_a_plugin_raising_key_error_becomes_plugin_error_with_the_cause_chained(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    hub = make_hub(handler=lambda r: httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(PluginError) as caught:
        check(hub, GOOD)
    assert "the plugin AcmePlugin failed while checking the key (KeyError: 'id')" in str(
        caught.value
    )
    assert isinstance(caught.value.__cause__, KeyError)


def test_a_flow_returning_something_else_than_verified_is_a_plugin_error(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    def flow(credentials: Any) -> Flow:
        yield httpx.Request("GET", "https://api.acme.test/")
        return {"identity": "x"}  # type: ignore[return-value]

    with pytest.raises(PluginError, match="finished the check with dict, not Verified"):
        check(make_hub(flow), GOOD)


def test_a_hook_returning_no_generator_is_a_plugin_error(
    make_hub: Callable[..., Hub], check: Check
) -> None:
    with pytest.raises(PluginError, match="returned list from hub_validate_credentials"):
        check(make_hub(lambda credentials: []), GOOD)


def test_a_hook_that_raises_is_a_plugin_error(make_hub: Callable[..., Hub], check: Check) -> None:
    def explode(credentials: Any) -> Flow:
        raise ZeroDivisionError("oops")

    with pytest.raises(PluginError, match="failed in hub_validate_credentials: ZeroDivisionError"):
        check(make_hub(explode), GOOD)


def test_errors_from_the_flow_pass_unchanged(make_hub: Callable[..., Hub], check: Check) -> None:
    with pytest.raises(InvalidCredentials, match="Acme rejected the key") as caught:
        check(make_hub(), {"api_key": "wrong-key"})
    assert caught.value.field == "api_key"


# --- async specifics ------------------------------------------------------------------------


def test_a_sync_only_transport_cannot_run_async_checks() -> None:
    class SyncOnly(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

    hub = Hub(load_entrypoints=False, transport=SyncOnly())
    with pytest.raises(TypeError, match="sync-only"):
        asyncio.run(hub.__aenter__())


def test_hub_errors_are_hub_errors() -> None:
    assert issubclass(PluginError, HubError)


def test_a_flow_stuck_in_a_loop_is_stopped_after_the_request_cap(
    make_hub: Callable[..., Hub], recorder: Any, check: Check
) -> None:
    def loop(credentials: Any) -> Flow:
        while True:
            yield httpx.Request("GET", "https://api.acme.test/again")

    with pytest.raises(PluginError, match="more than 25 requests in one check"):
        check(make_hub(loop, handler=lambda r: httpx.Response(200)), GOOD)
    assert len(recorder.requests) == 25


@pytest.mark.parametrize(
    ("timeout", "budget"),
    [
        (httpx.Timeout(10.0, connect=5.0), 15.0),
        (httpx.Timeout(2.0), 4.0),
        (httpx.Timeout(None, connect=5.0), float("inf")),
        (httpx.Timeout(10.0, connect=None), float("inf")),
    ],
)
def test_an_async_request_may_take_its_connect_and_read_timeouts_together(
    timeout: httpx.Timeout, budget: float
) -> None:
    assert _request_budget(Policy(timeout=timeout)) == budget


def _counting_flow(credentials: Any) -> Flow:
    key = credentials["api_key"]
    response = yield httpx.Request(
        "GET", "https://api.acme.test/me", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        count = int(response.headers["x-count"])  # ValueError quoting the header's value
    except ValueError:  # the ValueError, quoting the header, stays chained as the context
        raise RuntimeError("could not read the count")  # noqa: B904
    return Verified("id:1", f"n={count}")


def test_a_key_in_an_exception_chained_behind_a_plugins_failure_is_masked(
    make_hub: Callable[..., Hub],
) -> None:
    echo = httpx.Response(200, headers={"x-count": f"key {CANARY} is fine"}, json={})
    hub = make_hub(_counting_flow, handler=lambda request: echo)
    with pytest.raises(PluginError) as caught:
        hub.verify("acme", {"api_key": CANARY})
    assert CANARY not in str(caught.value)
    shown = "".join(traceback.format_exception(caught.value))
    assert CANARY not in shown
    assert "ValueError" in shown  # still chained, for whoever debugs the plugin


@pytest.mark.parametrize("location", [f"/login?token={CANARY}", f"/login?t={CANARY[::-1]}"])
def test_a_redirect_to_an_address_holding_the_key_is_the_providers_doing(
    make_hub: Callable[..., Hub], recorder: Any, check: Check, location: str
) -> None:
    hub = make_hub(handler=lambda request: httpx.Response(302, headers={"location": location}))
    with pytest.raises(UnexpectedResponse, match="redirected the check to an address that"):
        check(hub, {"api_key": CANARY})
    assert len(recorder.requests) == 1  # not followed
