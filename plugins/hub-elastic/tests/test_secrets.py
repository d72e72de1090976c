"""The key never leaks, and no input, however odd, breaks the flow's contract."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hub_elastic
from hub_core import FieldError, Flow, HubError, Verified
from hub_core.fields import validate_values
from hub_core.policy import Policy
from hub_core.responses import MASK
from hub_core.testing import drive, respond

Start = Callable[..., Flow]

ONCE = Policy(retries=0)
# What h11 and the HTTP spec allow in a header value, with no whitespace inside the key.
AUTHORIZATION = re.compile(rb"ApiKey [\x21-\x7e]+")


def pieces(key: str, size: int = 10) -> Iterator[str]:
    """Every run of *size* characters of the key: a leak of any of them is a leak."""
    for i in range(max(1, len(key) - size + 1)):
        yield key[i : i + size]


def texts(outcome: object) -> list[str]:
    """Everything a person, a log or a store could see of a result or an error."""
    found = [str(outcome), repr(outcome)]
    if isinstance(outcome, BaseException):
        found += [str(arg) for arg in outcome.args]
        found += [str(value) for value in getattr(outcome, "__dict__", {}).values()]
    if isinstance(outcome, FieldError):
        found += list(outcome.errors.values())
    if isinstance(outcome, Verified):
        found += [outcome.identity, outcome.label, json.dumps(outcome.details)]
    return found


def assert_no_leak(outcome: object, key: str) -> None:
    for text in texts(outcome):
        for piece in pieces(key):
            assert piece not in text, f"{type(outcome).__name__} shows part of the key: {text}"


def outcome_of(flow: Flow, response: httpx.Response) -> Verified | HubError:
    """What *flow* ends in under the core's driver, the one answer sent once (no retries)."""
    try:
        return drive(flow, [response], provider=hub_elastic.PROVIDER, policy=ONCE).result
    except HubError as error:
        return error


def echo_responses(key: str) -> list[httpx.Response]:
    """Answers that repeat the key back, whole or in part, in every place hub reads."""
    said = {"errors": [{"code": "root.unauthorized", "message": f"Key {key} is not valid"}]}
    partial = {"errors": [{"code": "x", "message": f"bad key {key[:20]}…"}]}
    # Long enough that cutting the message to length would leave a piece of the key behind.
    tail = {"errors": [{"code": "x", "message": "word " * 39 + key}]}
    return [
        respond(401, json=said),
        respond(403, json=said),
        respond(429, json=said),
        respond(500, json=said),
        respond(404, json=said),
        respond(200, json=said),
        respond(401, json=partial),
        respond(403, json=tail),
        respond(401, headers={"x-cloud-error-codes": key}),
        respond(200, json={"organizations": [{"id": "1", "name": f"Org {key}"}]}),
        respond(200, json={"organizations": [{"id": key[:100], "name": "Org"}]}),
        respond(
            200,
            json={"organizations": [{"id": "1", "name": "Org"}]},
            headers={"x-ratelimit-limit": key, "x-ratelimit-interval": key[5:30]},
        ),
    ]


def ordinary_responses() -> list[httpx.Response]:
    return [
        respond(200, json={"organizations": [{"id": "1", "name": "Org"}]}),
        respond(200, json={"organizations": []}),
        respond(200, text="not json"),
        respond(401),
        respond(403),
        respond(429, headers={"Retry-After": "3"}),
        respond(503),
    ]


@pytest.mark.parametrize("index", range(len(echo_responses("k")) + len(ordinary_responses())))
def test_canary_never_appears_in_any_outcome(start: Start, canary: str, index: int) -> None:
    response = (echo_responses(canary) + ordinary_responses())[index]
    outcome = outcome_of(start(canary), response)
    assert_no_leak(outcome, canary)


def test_provider_text_that_quotes_the_key_is_quoted_with_the_key_masked(
    start: Start, canary: str
) -> None:
    outcome = outcome_of(start(canary), echo_responses(canary)[0])
    assert isinstance(outcome, HubError)
    assert f'said: "root.unauthorized: Key {MASK} is not valid"' in str(outcome)


def test_provider_text_that_is_nothing_but_the_key_is_not_quoted(start: Start, canary: str) -> None:
    outcome = outcome_of(start(canary), echo_responses(canary)[8])
    assert isinstance(outcome, HubError)
    assert "said:" not in str(outcome)


def test_key_echoed_in_an_organization_name_is_masked(start: Start, canary: str) -> None:
    outcome = outcome_of(start(canary), echo_responses(canary)[9])
    assert isinstance(outcome, Verified)
    assert outcome.label == f"Org {MASK}"


def test_key_echoed_in_an_organization_id_is_refused(start: Start, canary: str) -> None:
    outcome = outcome_of(start(canary), echo_responses(canary)[10])
    assert isinstance(outcome, HubError)
    assert "repeats the Cloud API Key" in str(outcome)


def test_rate_limit_headers_that_quote_the_key_are_masked(start: Start, canary: str) -> None:
    outcome = outcome_of(start(canary), echo_responses(canary)[11])
    assert isinstance(outcome, Verified)
    assert outcome.details["rate_limit"] == {"limit": MASK, "interval": MASK}


@pytest.mark.parametrize(
    "template",
    [
        "ApiKey {key} trailing",
        "Bearer {key}",
        "{key}é",
        "Authorization: ApiKey {key}\u00a0x",
        "{key} {key}",
    ],
)
def test_canary_never_appears_in_input_errors(start: Start, canary: str, template: str) -> None:
    with pytest.raises(FieldError) as caught:
        next(start(template.format(key=canary)))
    assert_no_leak(caught.value, canary)


def test_credentials_repr_masks_the_key(credentials: Callable[..., Any], canary: str) -> None:
    assert_no_leak(credentials(canary), canary)


# --- fuzzing -----------------------------------------------------------------------------

_PASTE = st.sampled_from(["", "ApiKey ", "apikey\t", "Authorization: ApiKey ", "Bearer ", '"'])
_KEYS = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="ascii"), max_size=80),
    st.builds(lambda a, b, c: a + b + c, _PASTE, st.text(max_size=60), st.sampled_from(["", '"'])),
)
_RESPONSES = st.sampled_from(
    [
        (200, {"organizations": [{"id": "1", "name": "Org"}]}),
        (200, {"organizations": []}),
        (200, {"errors": [{"code": "x", "message": "y"}]}),
        (200, None),
        (401, {"errors": [{"code": "root.unauthenticated", "message": "invalid"}]}),
        (403, {"errors": [{"code": "organization.invalid_access", "message": "no"}]}),
        (429, None),
        (500, None),
        (404, None),
    ]
)


def _response(spec: tuple[int, Any]) -> httpx.Response:
    status, body = spec
    return respond(status, json=body) if body is not None else respond(status, text="oops")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(api_key=_KEYS, spec=_RESPONSES)
@example(api_key="ApiKey ", spec=(200, None))
@example(api_key="Authorization: ApiKey essu_a\u00a0b", spec=(200, None))
@example(api_key="essu_\u0130", spec=(200, None))
@example(api_key="essu_\x7f", spec=(200, None))
def test_any_key_ends_in_a_hub_error_or_a_well_formed_request(
    api_key: str, spec: tuple[int, Any]
) -> None:
    provider = hub_elastic.PROVIDER
    try:
        credentials = validate_values(provider, {"api_key": api_key})
    except FieldError:
        return  # the core refused it from the schema; the plugin never sees it
    flow = hub_elastic.hub_validate_credentials(provider=provider, credentials=credentials)
    assert flow is not None
    first: httpx.Request | FieldError
    try:
        first = next(flow)
    except FieldError as error:
        first = error
    if isinstance(first, FieldError):
        assert first.field == "api_key"
        return
    raw = dict(first.headers.raw)[b"Authorization"]
    assert AUTHORIZATION.fullmatch(raw), raw
    assert first.url.host in provider.hosts
    final: object
    try:
        final = flow.send(_response(spec))
    except StopIteration as stop:
        final = stop.value
    except HubError as error:
        final = error
    # Anything else, including a second request, breaks the contract.
    assert isinstance(final, Verified | HubError), final


@settings(max_examples=150, deadline=None)
@given(
    secret=st.binary(min_size=24, max_size=64),
    spec=_RESPONSES,
    echo=st.booleans(),
)
def test_realistic_keys_never_leak(secret: bytes, spec: tuple[int, Any], echo: bool) -> None:
    key = "essu_" + base64.b64encode(secret).decode()
    provider = hub_elastic.PROVIDER
    credentials = validate_values(provider, {"api_key": f"ApiKey {key}"})
    flow = hub_elastic.hub_validate_credentials(provider=provider, credentials=credentials)
    assert flow is not None
    status, body = spec
    if echo:
        body = {"errors": [{"code": "x", "message": f"key {key} refused"}]}
    outcome = outcome_of(flow, _response((status, body)))
    assert_no_leak(outcome, key)
