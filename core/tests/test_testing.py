"""hub_core.testing.drive: the plugin author's way to run a flow with scripted responses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub_core import FieldError, ProviderUnavailable, Verified
from hub_core.hookspecs import Flow
from hub_core.testing import UnusedResponses, drive, respond


def flow(credentials: Any = None) -> Flow:
    try:
        response = yield httpx.Request("GET", "https://api.acme.test/me")
    except ProviderUnavailable as exc:
        raise FieldError("tenant", "no such tenant") from exc
    second = yield httpx.Request("GET", "https://api.acme.test/more")
    return Verified(f"id:{response.json()['id']}", second.text)


def test_drive_answers_in_order_and_records_requests() -> None:
    run = drive(flow(), [respond(json={"id": 3}), respond(text="Three")])
    assert run.result == Verified("id:3", "Three")
    assert [str(r.url) for r in run.requests] == [
        "https://api.acme.test/me",
        "https://api.acme.test/more",
    ]


def test_drive_accepts_a_responder_function() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return respond(json={"id": 1}) if request.url.path == "/me" else respond(text="x")

    run = drive(flow(), answer)
    assert run.result.identity == "id:1"


def test_an_exception_in_the_script_is_thrown_into_the_flow() -> None:
    with pytest.raises(FieldError, match="no such tenant"):
        drive(flow(), [ProviderUnavailable("down", reason="unresolved")])


def test_running_out_of_responses_names_the_request() -> None:
    with pytest.raises(
        AssertionError, match=r"no scripted response left for GET https://api\.acme\.test/more"
    ):
        drive(flow(), [respond(json={"id": 3})])


def test_unused_responses_fail_the_test() -> None:
    with pytest.raises(UnusedResponses, match="1 scripted response"):
        drive(flow(), [respond(json={"id": 3}), respond(text="x"), respond()])


def test_respond_sets_json_content_type() -> None:
    response = respond(201, json={"a": 1}, headers={"x-id": "7"})
    assert (response.status_code, response.headers["content-type"], response.headers["x-id"]) == (
        201,
        "application/json",
        "7",
    )
