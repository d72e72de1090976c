"""Property tests: whatever is typed, and whatever the tenant answers, the flow stays in bounds.

Typed input ends either in a `FieldError` before any request, or in a first request to exactly
``<tenant>.<region>.qlikcloud.com`` (or the Government domain). Any answer, run through the
core's own driver as in production, ends in `Verified` or a `HubError` that is not a plugin
bug, and never sends the key anywhere else.
"""

from __future__ import annotations

import json
import re
import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hub_qlik
from hub_core import FieldError, HubError, PluginError, Verified
from hub_core.testing import drive
from hub_qlik.tenant import REGIONS

REGION_VALUES = [region.value for region in REGIONS]
COMMERCIAL = "|".join(v for v in REGION_VALUES if v != "us-gov")
TENANT_HOST = re.compile(
    r"(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    rf"\.(?:(?:{COMMERCIAL})\.qlikcloud\.com|us\.qlikcloudgov\.com)"
)
FIXTURES = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

labels = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=0, max_size=12)
hosts = st.builds(
    lambda parts, suffix: ".".join(parts) + suffix,
    st.lists(labels, min_size=1, max_size=4),
    st.sampled_from(
        [
            "",
            ".us.qlikcloud.com",
            ".eu.qlikcloud.com",
            ".xx.qlikcloud.com",
            ".qlikcloud.com",
            ".us.qlikcloudgov.com",
            ".eu.qlikcloudgov.com",
            ".us.qlikcloud.com.example.net",
            ".example.net",
            ".",
        ]
    ),
)
addresses = st.builds(
    lambda scheme, userinfo, host, port, path: f"{scheme}{userinfo}{host}{port}{path}",
    st.sampled_from(["", "https://", "HTTPS://", "http://", "//", "ftp://", "javascript:", "\\\\"]),
    st.sampled_from(["", "user@", "user:pw@", "@"]),
    hosts,
    st.sampled_from(["", ":443", ":8443", ":", ":x"]),
    st.sampled_from(["", "/", "/hub", "/hub?x=1#y", "?q", "#f", "\\evil", "/%2e%2e"]),
)
tenants = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.printable, max_size=80),
    st.text(alphabet="abcxyz019-._:/@%[]\\?#~ ", max_size=60),
    hosts,
    addresses,
)
regions = st.one_of(
    st.none(),
    st.sampled_from([*REGION_VALUES, "", "xx", "US", " eu ", "US-GOV", "gov"]),
    st.text(max_size=8),
)


def keys(make_key):
    claim = st.one_of(st.none(), st.text(max_size=20), st.integers(), st.booleans())
    return st.one_of(
        st.text(max_size=120),
        st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=0, max_size=200),
        st.builds(lambda t, j, s: make_key(tenantId=t, jti=j, sub=s), claim, claim, claim),
        st.builds(
            lambda p, k: p + k, st.sampled_from(["essu_", "Bearer ", "eyJ", "sk-"]), st.text()
        ),
    )


@FIXTURES
@given(data=st.data())
def test_any_input_ends_in_a_field_error_or_a_request_to_a_tenant(data, make_key, provider):
    values = {
        "tenant": data.draw(tenants, label="tenant"),
        "api_key": data.draw(keys(make_key), label="api_key"),
    }
    region = data.draw(regions, label="region")
    if region is not None:
        values["region"] = region
    flow = hub_qlik.verify(values)
    request: httpx.Request | None = None
    error: FieldError | None = None
    try:
        request = next(flow)
    except FieldError as exc:
        error = exc
    finally:
        flow.close()
    if error is not None:
        assert error.errors
        assert set(error.errors) <= {"tenant", "region", "api_key"}
        assert all(isinstance(m, str) and m for m in error.errors.values())
        key = values["api_key"].strip()
        if len(key) >= 8:
            assert key not in str(error)
        return
    assert request is not None
    url = request.url
    assert url.scheme == "https"
    assert TENANT_HOST.fullmatch(url.host), url.host
    assert url.port is None
    assert url.userinfo == b""
    assert url.raw_path == b"/api/v1/users/me"
    assert provider.allows_host(url.host)
    assert request.headers["authorization"].startswith("Bearer ")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
user_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=10), st.integers()),
        "tenantId": st.one_of(st.just("tnt-9f3a"), st.text(max_size=10), st.none()),
        "name": json_values,
        "email": json_values,
        "status": json_values,
        "assignedRoles": json_values,
        "roles": json_values,
        "hostnames": st.one_of(
            json_values,
            st.lists(
                st.sampled_from(
                    ["acme.eu.qlikcloud.com", "evil.example.net", "x.us.qlikcloudgov.com", ""]
                ),
                max_size=3,
            ),
        ),
        # The key's own record (api-keys/{id}) is drawn from the same answers.
        "expiry": st.one_of(
            st.text(max_size=30),
            st.sampled_from(
                ["2031-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"]
            ),
        ),
        "description": json_values,
        "errors": json_values,
        "traceId": json_values,
    },
)


locations = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "/api/v1/users/u1",
            "https://my-company.eu.qlikcloud.com/api/v1/tenants/t1",
            "https://evil.example.net/",
            "http://my-company.eu.qlikcloud.com/",
            "//other.eu.qlikcloud.com/x",
            "https://my-company.eu.qlikcloud.com:444/",
        ]
    ),
)


def _outcome_in_bounds(values, answer, provider, canary) -> Verified | HubError:
    """Run the flow under the core's driver: `Verified` or a documented error, no key in it."""
    outcome: Verified | HubError
    try:
        outcome = drive(hub_qlik.verify(values), answer, provider=provider).result
    except HubError as exc:
        outcome = exc
    assert isinstance(outcome, Verified | HubError)
    assert not isinstance(outcome, PluginError), outcome  # a crash in the flow
    shown = repr(outcome) + str(outcome)
    if isinstance(outcome, Verified):
        shown += repr(outcome.details)
    assert canary not in shown
    return outcome


STATUSES = [200, 200, 200, 201, 301, 302, 307, 400, 401, 403, 404, 429, 500, 503]
RETRY_AFTERS = ["3", "x", "", "Wed, 21 Oct 2015 07:28:00 GMT"]


def _response(data) -> httpx.Response:
    status = data.draw(st.sampled_from(STATUSES))
    headers = {}
    if status in (301, 302, 307) or data.draw(st.booleans()):
        headers["location"] = data.draw(locations).encode()
    if status == 429:
        headers["retry-after"] = data.draw(st.sampled_from(RETRY_AFTERS))
    body = data.draw(st.one_of(user_like, json_values, st.binary(max_size=40)))
    if isinstance(body, bytes):
        return httpx.Response(status, headers=headers, content=body)
    return httpx.Response(status, headers=headers, json=body)


@FIXTURES
@given(data=st.data())
def test_any_answer_ends_in_verified_or_a_hub_error(data, values, api_key, canary, provider):
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assert len(sent) < 60, "the flow does not end"
        sent.append(request)
        return _response(data)

    _outcome_in_bounds(values, answer, provider, canary)
    # Redirects are followed by the driver, within the tenant's own origin only.
    assert {r.url.host for r in sent} == {"my-company.eu.qlikcloud.com"}
    assert all(r.url.scheme == "https" and r.url.port is None for r in sent)
    assert all(r.headers["authorization"] == f"Bearer {api_key}" for r in sent)


# --- bodies from Qlik's published schemas --------------------------------------------------
# users/{id}, tenants/{id} and api-keys/{id} as Qlik Cloud's REST reference types them, with
# extra fields, wrong types, huge numbers, odd dates and lone surrogates mixed in.

schema_texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(["", "\x1b]0;x\x07", "\u202e", "é" * 300]),
)
schema_odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**400),
    st.floats(allow_nan=False),
    schema_texts,
    st.just([]),
    st.just({}),
)
schema_dates = st.one_of(
    st.sampled_from(
        [
            "2031-01-01T00:00:00Z",
            "2031-01-01T00:00:00.123456789Z",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+14:00",
            "Sun, 04 May 2031 03:02:01 GMT",
            "1999999999",
        ]
    ),
    st.integers(min_value=-(10**20), max_value=10**20),
    schema_odd,
)
extras = st.dictionaries(st.text(max_size=6), json_values, max_size=3)


def _schema(required: dict, optional: dict):
    # Each field as the schema types it, or anything else; then extra fields.
    fields = st.fixed_dictionaries(
        {k: st.one_of(v, schema_odd) for k, v in required.items()},
        optional={k: st.one_of(v, schema_odd) for k, v in optional.items()},
    )
    return st.builds(lambda extra, body: {**extra, **body}, extras, fields)


role = st.fixed_dictionaries(
    {"id": st.text(max_size=8), "name": schema_texts},
    optional={"type": st.sampled_from(["default", "custom"]), "level": st.just("admin")},
)
user_records = _schema(
    {"id": st.just("u-1"), "tenantId": st.just("tnt-9f3a")},
    {
        "name": schema_texts,
        "email": schema_texts,
        "status": st.sampled_from(["active", "invited", "disabled", "deleted"]),
        "subject": schema_texts,
        "assignedRoles": st.lists(role, max_size=3),
        "createdAt": schema_dates,
        "lastUpdatedAt": schema_dates,
    },
)
tenant_records = _schema(
    {"id": st.just("tnt-9f3a")},
    {
        "name": schema_texts,
        "hostnames": st.lists(
            st.sampled_from(
                ["my-company.eu.qlikcloud.com", "x.us.qlikcloudgov.com", "evil.example"]
            ),
            max_size=3,
        ),
        "datacenter": schema_texts,
        "status": st.sampled_from(["active", "disabled", "deleted"]),
        "created": schema_dates,
    },
)
key_records = _schema(
    {"id": st.text(max_size=12), "tenantId": st.just("tnt-9f3a")},
    {
        "description": schema_texts,
        "status": st.sampled_from(["active", "expired", "revoked"]),
        "sub": schema_texts,
        "expiry": schema_dates,
        "created": schema_dates,
    },
)


def _schema_response(data, request: httpx.Request, key_id: str | None) -> httpx.Response:
    path = request.url.path
    if path.endswith("/users/me"):
        body = data.draw(user_records, label="users/me")
    elif "/tenants/" in path:
        body = data.draw(tenant_records, label="tenants/me")
    else:
        body = data.draw(key_records, label="api-keys/{id}")
        if key_id is not None and data.draw(st.booleans()):
            body["id"] = key_id  # the key's own record, as Qlik answers it
    status = data.draw(st.sampled_from([200, 200, 200, 200, 403, 404]))
    # json.dumps escapes lone surrogates, as a provider's JSON may ("\ud800").
    return httpx.Response(
        status, headers={"Content-Type": "application/json"}, content=json.dumps(body).encode()
    )


@FIXTURES
@given(data=st.data())
def test_any_answer_from_the_schemas_ends_in_verified_or_a_documented_error(
    data, values, canary, provider
):
    key_id = "key-77e0"  # the jti of the conftest key

    def answer(request: httpx.Request) -> httpx.Response:
        return _schema_response(data, request, key_id)

    outcome = _outcome_in_bounds(values, answer, provider, canary)
    if isinstance(outcome, Verified):
        assert outcome.expires_at is None or outcome.expires_at.tzinfo is not None
