"""Property tests: bodies and headers drawn from Elastic Cloud's published schema, and worse.

``GET /api/v1/organizations`` answers an ``OrganizationList``: ``{"organizations": [
Organization], "next_page": string}``, each Organization with ``id`` and ``name`` (strings) and
contact lists, booleans and nested objects the plugin does not read. Each draw mixes in extra
fields, wrong types, huge numbers, odd dates and lone surrogates, and arbitrary values for the
``X-Elastic-Api-Key-Expiration`` and ``x-ratelimit-*`` headers. Run through the core's real
driver, every answer ends in `Verified` or a documented `HubError`, never a `PluginError`, and
never with the key in what comes back.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub_core import HubError, PluginError, Provider, Verified
from hub_core.testing import drive
from hub_elastic.flow import verify

FIXTURES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text as JSON can carry it: lone surrogates included (json.dumps escapes them).
texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(["", " ", "\x1b[2J", "\u202e", "Org\x00", "é" * 300]),
)
huge = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
)
odd = st.one_of(
    st.none(), st.booleans(), huge, texts, st.lists(st.integers(), max_size=3), st.just({})
)
json_values = st.recursive(
    st.none() | st.booleans() | huge | texts,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
organizations = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(alphabet="0123456789", min_size=1, max_size=12), odd),
        "name": st.one_of(texts, odd),
    },
    optional={
        "billing_contacts": st.one_of(st.lists(st.emails(), max_size=2), odd),
        "operational_contacts": st.one_of(st.lists(st.emails(), max_size=2), odd),
        "notifications_allowed_email_domains": st.one_of(st.lists(texts, max_size=2), odd),
        "default_disk_usage_alerts_enabled": st.one_of(st.booleans(), odd),
        "extra": json_values,
    },
)
# As published: an id of digits, a name, the contact lists; extra fields of any kind.
valid_organizations = st.fixed_dictionaries(
    {"id": st.text(alphabet="0123456789", min_size=1, max_size=12), "name": texts},
    optional={
        "billing_contacts": st.lists(st.emails(), max_size=2),
        "notifications_allowed_email_domains": st.lists(st.text(max_size=10), max_size=2),
        "extra": json_values,
    },
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"organizations": st.lists(valid_organizations, min_size=1, max_size=3)},
        optional={"next_page": st.one_of(st.none(), texts)},
    ),
    st.fixed_dictionaries(
        {"organizations": st.lists(st.one_of(organizations, odd), max_size=4)},
        optional={"next_page": st.one_of(texts, odd), "errors": json_values, "extra": json_values},
    ),
    json_values,
)
dates = st.one_of(
    st.sampled_from(
        [
            "2031-05-04T03:02:01Z",
            "Sun, 04 May 2031 03:02:01 GMT",
            "1999999999",
            "99999999999999999999",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+14:00",
            "-1",
            "²",
            "nan",
        ]
    ),
    st.text(max_size=40),
)
counts = st.one_of(
    st.sampled_from(["²", "١٢", "9" * 5000, "+3", "1_000"]),
    st.integers().map(str),
    st.sampled_from(["²", "١٢", "1e9", "9" * 5000, "-5", " 7 ", "0x10", ""]),
    st.text(max_size=12),
)


def _header(value: str) -> bytes:
    # What a server can put in a header: any byte but CR and LF.
    return value.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def responses(draw: Any) -> httpx.Response:
    status = draw(st.sampled_from([200, 200, 200, 200, 200, 400, 401, 403, 404, 500]))
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.booleans()):
        headers.append((b"X-Elastic-Api-Key-Expiration", _header(draw(dates))))
    for name in ("limit", "remaining", "interval"):
        if draw(st.booleans()):
            headers.append((f"x-ratelimit-{name}".encode(), _header(draw(counts))))
    body = draw(st.one_of(bodies, st.binary(max_size=40)))
    if isinstance(body, bytes):
        return httpx.Response(status, headers=headers, content=body)
    # json.dumps escapes lone surrogates, as a provider's JSON may ("\\ud800").
    headers.append((b"Content-Type", b"application/json"))
    return httpx.Response(status, headers=headers, content=json.dumps(body).encode())


@FIXTURES
@given(answer=responses())
def test_any_answer_from_the_schema_ends_in_verified_or_a_documented_error(
    answer: httpx.Response, canary: str, provider: Provider
) -> None:
    outcome: object
    try:
        outcome = drive(verify({"api_key": canary}), [answer], provider=provider).result
    except HubError as exc:
        outcome = exc
    assert isinstance(outcome, Verified | HubError)
    assert not isinstance(outcome, PluginError), outcome
    shown = repr(outcome) + str(outcome)
    if isinstance(outcome, Verified):
        shown += repr(outcome.details)
        rate_limit = outcome.details.get("rate_limit", {})
        assert all(isinstance(v, int | str) for v in rate_limit.values())
        assert all(not isinstance(v, int) or 0 <= v < 2**63 for v in rate_limit.values())
    assert canary not in shown
