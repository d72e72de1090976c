"""Fixtures: an in-code test provider (Acme) whose flow each test can script."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.fernet import Fernet

from hub_core import (
    Field,
    Guide,
    Hub,
    InvalidCredentials,
    Policy,
    Provider,
    ProviderUnavailable,
    Section,
    Step,
    Verified,
    hookimpl,
)
from hub_core.hookspecs import Flow

# The session's PostgreSQL for every test here (started on first use only), one definition so
# that one cluster serves them all.

CANARY = "hubcanary-7f3a9c-SECRET"

ACME = Provider(
    id="acme",
    name="Acme",
    fields=[
        Field("api_key", "API Key", kind="secret", help="Create it under Settings."),
        Field(
            "region", "Region", kind="choice", choices=[("us", "United States"), "eu"], default="us"
        ),
        Field("team", "Team", required=False, pattern=r"[a-z]+", max_length=12),
    ],
    guide=Guide(
        warning="Only admins can create keys.",
        sections=[Section("Create a key", steps=[Step("Open Settings", "Click Keys.")])],
    ),
    hosts=["api.acme.test", "*.eu.acme.test"],
)


def acme_flow(credentials: Any, path: str = "/me") -> Flow:
    """The reference flow: one GET with a bearer key; 401 is InvalidCredentials."""
    key = credentials["api_key"]
    response = yield httpx.Request(
        "GET", f"https://api.acme.test{path}", headers={"Authorization": f"Bearer {key}"}
    )
    if response.status_code == 401:
        raise InvalidCredentials("Acme rejected the key", field="api_key")
    if response.status_code >= 500:
        raise ProviderUnavailable(f"Acme failed with HTTP {response.status_code}")
    data = response.json()
    return Verified(identity=f"org:{data['id']}", label=data["name"])


class AcmePlugin:
    """An in-code plugin; *flow* replaces the reference flow."""

    def __init__(self, flow: Callable[..., Flow] = acme_flow, provider: Provider = ACME) -> None:
        self.flow = flow
        self.provider = provider

    @hookimpl
    def hub_providers(self) -> list[Provider]:
        return [self.provider]

    @hookimpl
    def hub_validate_credentials(self, provider: Provider, credentials: Any) -> Flow | None:
        return self.flow(credentials) if provider.id == self.provider.id else None


Handler = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request) -> httpx.Response:
    """A provider that accepts the key `good` only."""
    if request.headers.get("authorization") == "Bearer good":
        return httpx.Response(200, json={"id": 7, "name": "Seven"})
    return httpx.Response(401, json={"error": "bad key"})


class Recorder:
    """A MockTransport handler that records every request it is sent."""

    def __init__(self, handler: Handler = ok) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Any]:
    """A `PostgresStore` on a fresh schema of the test kit's PostgreSQL, with a key of its own."""
    pytest.importorskip("psycopg")
    from hub_core.store_postgres import PostgresStore

    with PostgresStore(postgres_url, secret_key=Fernet.generate_key().decode()) as store:
        yield store


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_hub(recorder: Recorder) -> Iterator[Callable[..., Hub]]:
    """Build a Hub with the Acme plugin over a recording MockTransport (no backoff waits)."""
    hubs: list[Hub] = []

    def build(
        flow: Callable[..., Flow] = acme_flow, handler: Handler | None = None, **limits: Any
    ) -> Hub:
        # *limits* are `Policy` fields.
        if handler is not None:
            recorder.handler = handler
        hub = Hub(
            plugins=[AcmePlugin(flow)],
            load_entrypoints=False,
            transport=httpx.MockTransport(recorder),
            policy=Policy(**{"backoff": 0, **limits}),
        )
        hubs.append(hub)
        return hub

    yield build
    for hub in hubs:
        hub.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority, trusted by the loopback providers' tests."""
    return trustme.CA()


@pytest.fixture
def acme_plugin() -> type[AcmePlugin]:
    """The in-code plugin class, for tests that build their own Hub."""
    return AcmePlugin


@pytest.fixture
def web_backend() -> str:
    """The store backend of the `web` fixture's apps: SQLite, unless a test is parametrized
    over both (``@BACKENDS`` from ``web_helpers``)."""
    return "sqlite"


@pytest.fixture
def web(
    tmp_path: Any, web_backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """Build web Hub apps (`core/tests/web_helpers.py`'s `Web`), each over its own store.

    ``web()`` is the Acme provider's dashboard, signed in; keyword arguments are `Web`'s (other
    providers, a flow) and `hub_core.web.WebConfig` fields. Every app is closed after the test.
    With `web_backend` ``"postgres"`` each app's store is a schema of its own on the session's
    PostgreSQL.
    """
    from core.tests.web_helpers import Web

    built: list[Any] = []
    schemas: list[str] = []
    server = request.getfixturevalue("postgres_server") if web_backend == "postgres" else None

    def build(**options: Any) -> Any:
        options.setdefault("providers", [ACME])
        if server is not None and "database" not in options:
            schemas.append(server.create_schema())
            options["database"] = schemas[-1]
        app = Web(tmp_path / f"web{len(built)}", **options)
        built.append(app)
        return app

    yield build
    for app in built:
        app.close()
    for schema in schemas:
        server.drop_schema(schema)


# --- a store of its own, for the store's tests ----------------------------------------------


@pytest.fixture
def hermetic_store_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read a developer's key, never write to the real user data directory."""
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    monkeypatch.delenv("HUB_SECRET_KEYS", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))


@pytest.fixture
def key() -> str:
    """A new secret key for a test store."""
    return Fernet.generate_key().decode()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where a test store's database goes (its directory does not exist yet)."""
    return tmp_path / "data" / "hub.db"


@pytest.fixture
def store(db: Path, key: str) -> Iterator[Any]:
    """An open store at `db` with `key`."""
    from hub_core.store import Store

    with Store(db, secret_key=key) as opened:
        yield opened
