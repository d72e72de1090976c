"""Shared fixtures: test API keys, and a fake Qlik Cloud tenant that answers flow requests.

Tests import nothing from each other (pytest runs with --import-mode=importlib); everything
shared is a fixture here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import attrs
import httpx
import pytest

import hub_qlik
from hub_core import FieldError, Provider

#: Text that must never appear in any message, repr or result: it is inside every test key.
CANARY = "CANARYsEcReT9f8e7d6c5b4a"

HOST = "my-company.eu.qlikcloud.com"
TENANT_ID = "tnt-9f3a"
USER_ID = "usr-4b21"
KEY_ID = "key-77e0"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def build_key(**claims: Any) -> str:
    """A JWT shaped like a Qlik Cloud API key (ES384, unverifiable dummy signature)."""
    header = {"alg": "ES384", "kid": "a1b2c3", "typ": "JWT"}
    payload = {
        "sub": USER_ID,
        "subType": "user",
        "tenantId": TENANT_ID,
        "jti": KEY_ID,
        "aud": "qlik.api",
        "iss": "qlik.api/api-keys",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    signature = f"{CANARY}-Zm9vYmFyYmF6cXV4_{CANARY}"
    return f"{_b64(header)}.{_b64(payload)}.{signature}"


@pytest.fixture
def canary() -> str:
    return CANARY


@pytest.fixture
def ids() -> SimpleNamespace:
    """The fake tenant's host and ids, as the default test key and `FakeQlik` use them."""
    return SimpleNamespace(host=HOST, tenant_id=TENANT_ID, user_id=USER_ID, key_id=KEY_ID)


@pytest.fixture
def make_key() -> Callable[..., str]:
    """Build a test key; pass claims to override (None removes a claim)."""
    return build_key


@pytest.fixture
def api_key() -> str:
    return build_key()


@pytest.fixture
def values(api_key: str) -> dict[str, str]:
    """What a person types for the fake tenant."""
    return {"tenant": "my-company", "region": "eu", "api_key": api_key}


@pytest.fixture
def provider() -> Provider:
    (provider,) = hub_qlik.hub_providers()
    return provider


@attrs.define
class FakeQlik:
    """A Qlik Cloud tenant in memory, as a responder for `drive` or `httpx.MockTransport`.

    It answers like the real API: ``users/me`` redirects (301) to the user, ``tenants/me``
    (302) to the tenant, ``api-keys/<id>`` is one of ``keys`` (404 for an id it does not
    hold). ``routes`` overrides a path with a fixed response (or a callable, which may also
    return an exception for the driver to throw in); every request is recorded in ``seen``.
    """

    key: str
    host: str = HOST
    user: dict[str, Any] = attrs.Factory(
        lambda: {
            "id": USER_ID,
            "tenantId": TENANT_ID,
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "status": "active",
            "subject": "auth0|ada",
            "assignedRoles": [
                {"id": "r1", "name": "TenantAdmin", "type": "default", "level": "admin"},
                {"id": "r2", "name": "Developer", "type": "default", "level": "user"},
            ],
        }
    )
    tenant: dict[str, Any] = attrs.Factory(
        lambda: {
            "id": TENANT_ID,
            "name": "Acme Analytics",
            "hostnames": [HOST, "acme.eu.qlikcloud.com"],
            "status": "active",
        }
    )
    keys: list[dict[str, Any]] = attrs.Factory(
        lambda: [
            {
                "id": "key-0001",
                "description": "old",
                "sub": USER_ID,
                "status": "expired",
                "expiry": "2024-01-01T00:00:00.000Z",
            },
            {
                "id": KEY_ID,
                "description": "hub",
                "sub": USER_ID,
                "status": "active",
                "expiry": "2031-05-04T03:02:01.000Z",
                "created": "2025-05-04T03:02:01.000Z",
            },
        ]
    )
    routes: dict[str, Any] = attrs.Factory(dict)
    seen: list[httpx.Request] = attrs.Factory(list)

    def __call__(self, request: httpx.Request) -> httpx.Response | BaseException:
        self.seen.append(request)
        path = request.url.path
        if path in self.routes:
            route = self.routes[path]
            return route(request) if callable(route) else route
        if request.url.host != self.host:
            return httpx.Response(404, text="no such host")
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return self.error(401, "Unauthorized", "HTTP-401")
        user_path = f"/api/v1/users/{self.user.get('id')}"
        tenant_path = f"/api/v1/tenants/{self.tenant.get('id')}"
        if path == "/api/v1/users/me":
            return httpx.Response(301, headers={"location": user_path})
        if path == user_path:
            return httpx.Response(200, json=self.user)
        if path == "/api/v1/tenants/me":
            return httpx.Response(302, headers={"location": tenant_path})
        if path == tenant_path:
            return httpx.Response(200, json=self.tenant)
        if path.startswith("/api/v1/api-keys/"):
            wanted = path.removeprefix("/api/v1/api-keys/")
            for key in self.keys:
                if key.get("id") == wanted:
                    return httpx.Response(200, json=key)
        return self.error(404, "Not found", "HTTP-404")

    @staticmethod
    def error(status: int, title: str, code: str, trace: str = "trace-123") -> httpx.Response:
        body = {"errors": [{"code": code, "title": title, "status": str(status)}], "traceId": trace}
        return httpx.Response(status, json=body)

    def paths(self) -> list[str]:
        return [request.url.path for request in self.seen]


@pytest.fixture
def key_path() -> str:
    """The path of the default test key's own record: ``/api/v1/api-keys/<jti>``."""
    return f"/api/v1/api-keys/{KEY_ID}"


@pytest.fixture
def qlik(api_key: str) -> FakeQlik:
    return FakeQlik(key=api_key)


@pytest.fixture
def qlik_error() -> Callable[..., httpx.Response]:
    """Build a Qlik error response: ``qlik_error(401, "Unauthorized", "HTTP-401")``."""
    return FakeQlik.error


@pytest.fixture
def first_request() -> Callable[[dict[str, str]], httpx.Request]:
    """Start a flow for *values* and return its first request (or raise what it raises)."""

    def start(values: dict[str, str]) -> httpx.Request:
        flow = hub_qlik.verify(values)
        try:
            return next(flow)
        finally:
            flow.close()

    return start


@pytest.fixture
def field_error() -> Callable[[dict[str, str]], FieldError]:
    """Start a flow that must fail on its input: return the FieldError, having sent nothing."""

    def start(values: dict[str, str]) -> FieldError:
        flow = hub_qlik.verify(values)
        sent: list[httpx.Request] = []
        try:
            sent.append(next(flow))
        except FieldError as exc:
            return exc
        finally:
            flow.close()
        raise AssertionError(f"expected a FieldError before any request, got {sent[0].url}")

    return start


def texts_of(error: BaseException) -> Iterator[str]:
    """Every piece of text an error exposes."""
    yield str(error)
    yield repr(error)
    yield from (str(arg) for arg in error.args)
    yield from getattr(error, "errors", {}).values()


@pytest.fixture
def exposed() -> Callable[[BaseException], str]:
    """All text an error shows, joined: for checking that no secret is in it."""
    return lambda error: "\n".join(texts_of(error))
