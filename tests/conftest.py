"""Fixtures for the end-to-end tests: the real ``hub`` command against fake providers.

Every test runs the ``hub`` console script of this interpreter's environment as a subprocess,
with the installed hub-elastic and hub-qlik plugins. Its traffic goes where production traffic
goes: through the HTTPS proxy named by ``HTTPS_PROXY`` (a `ConnectProxy` on 127.0.0.1), which
tunnels ``api.elastic-cloud.com`` and ``*.qlikcloud.com`` to fake providers whose certificates
come from a test CA trusted only through ``SSL_CERT_FILE``. The store lives in a temporary
``HUB_HOME``. Every subprocess has a timeout, so a hang fails instead of blocking the run.

Tests import nothing from each other (pytest runs with --import-mode=importlib); everything
shared is a fixture here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

from hub_core.testing.network import (
    ConnectProxy,
    FakeProvider,
    Received,
    Reply,
    merged_environ,
    proxy_environment,
)

#: The ``hub`` console script installed beside the interpreter running the tests.
HUB = Path(sys.executable).parent / ("hub.exe" if os.name == "nt" else "hub")
#: Seconds any one ``hub`` process may take before the test fails.
TIMEOUT = 30

ELASTIC_HOST = "api.elastic-cloud.com"
#: A Cloud API key shaped like a real one (``essu_`` + base64).
ELASTIC_KEY = "essu_ZTJlLXRlc3Qta2V5LW9uZTpzZWNyZXQtcGFydC0xMjM0NTY3ODkw"
ACME_ORG = {"id": "org1", "name": "Acme Org"}

QLIK_HOST = "acme.eu.qlikcloud.com"
QLIK_TENANT_ID = "tnt-9f3a"
QLIK_USER_ID = "usr-4b21"
QLIK_KEY_ID = "key-77e0"
#: Inside the signature of every Qlik test key: must never show anywhere.
QLIK_CANARY = "CANARYqLiKsEcReT4e5f6a7b8c"


# A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored
# across exec: the Ctrl-C tests would then send it to `hub` processes deaf to it. The suite
# restores Python's own handler; the processes it starts then begin with the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# --- keys ----------------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def qlik_key(**claims: Any) -> str:
    """A JWT shaped like a Qlik Cloud API key (ES384 header, claims, dummy signature)."""
    payload = {
        "sub": QLIK_USER_ID,
        "subType": "user",
        "tenantId": QLIK_TENANT_ID,
        "jti": QLIK_KEY_ID,
        "aud": "qlik.api",
        "iss": "qlik.api/api-keys",
        **claims,
    }
    header = {"alg": "ES384", "kid": "e2e-kid", "typ": "JWT"}
    signature = f"{QLIK_CANARY}-Zm9vYmFyYmF6cXV4_{QLIK_CANARY}"
    return f"{_b64(header)}.{_b64(payload)}.{signature}"


# --- fake providers ------------------------------------------------------------------------


class FakeElastic:
    """Elastic Cloud's ``GET /api/v1/organizations``, as a `FakeProvider` handler.

    `keys` maps each valid key to the organization it belongs to: ``Authorization: ApiKey <k>``
    gets that organization and the key's expiry in ``X-Elastic-Api-Key-Expiration``; any other
    key a documented 401. `status` forces that status (with Elastic's error body) on every
    request; `echo_key` makes the 401 quote the key it was sent, as a careless server might;
    `gate` (a barrier) holds each request until that many have arrived; a request with a key
    in `held` waits until `release` is set.
    """

    def __init__(self, keys: Mapping[str, Mapping[str, str]]) -> None:
        self.keys = dict(keys)
        self.expires_at = (datetime.now(UTC) + timedelta(days=90)).replace(microsecond=0)
        self.status: int | None = None
        self.echo_key = False
        self.gate: threading.Barrier | None = None
        self.held: set[str] = set()
        self.release = threading.Event()
        self.limited: dict[str, int] = {}
        #: When each request arrived (monotonic seconds), to measure rates at the server.
        self.arrivals: list[float] = []
        self.server: FakeProvider

    @property
    def requests(self) -> list[Received]:
        return self.server.requests

    @staticmethod
    def error(status: int, code: str, message: str) -> Reply:
        return Reply.json({"errors": [{"code": code, "message": message}]}, status=status)

    def __call__(self, request: Received) -> Reply:
        self.arrivals.append(time.monotonic())
        if self.gate is not None:
            self.gate.wait()
        if request.method != "GET" or request.path != "/api/v1/organizations":
            return self.error(404, "root.not_found", "Not found")
        if self.status is not None:
            return self.error(self.status, "root.unexpected_error", "Something went wrong")
        authorization = request.headers.get("authorization", "")
        key = authorization.removeprefix("ApiKey ")
        if key in self.held:
            self.release.wait(TIMEOUT)
        if key in self.limited:
            body = {"errors": [{"code": "root.too_many_requests", "message": "Slow down"}]}
            return Reply.json(body, status=429, headers={"Retry-After": str(self.limited[key])})
        if key not in self.keys:
            message = "The supplied authentication is invalid"
            if self.echo_key:
                message += f" ({authorization})"
            return self.error(401, "root.unauthenticated", message)
        expiry = self.expires_at.isoformat().replace("+00:00", "Z")
        return Reply.json(
            {"organizations": [self.keys[key]]},
            headers={"X-Elastic-Api-Key-Expiration": expiry},
        )


def qlik_error(status: int, title: str, code: str) -> Reply:
    body = {"errors": [{"code": code, "title": title, "status": str(status)}], "traceId": "tr-1"}
    return Reply.json(body, status=status)


class FakeQlikTenant:
    """One Qlik Cloud tenant (`QLIK_HOST`), as a `FakeProvider` handler.

    It answers like the real API: ``users/me`` redirects (301) to the user, ``tenants/me``
    (302) to the tenant, ``api-keys/<id>`` is the key's own record. A request for any other
    tenant host gets 404, a key other than `key` 401.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.host = QLIK_HOST
        self.user = {
            "id": QLIK_USER_ID,
            "tenantId": QLIK_TENANT_ID,
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "status": "active",
            "assignedRoles": [{"id": "r1", "name": "TenantAdmin", "type": "default"}],
        }
        self.tenant = {"id": QLIK_TENANT_ID, "name": "Acme Analytics", "hostnames": [QLIK_HOST]}
        self.key_entry = {
            "id": QLIK_KEY_ID,
            "description": "hub",
            "sub": QLIK_USER_ID,
            "status": "active",
            "expiry": "2031-05-04T03:02:01.000Z",
        }
        self.server: FakeProvider

    @property
    def requests(self) -> list[Received]:
        return self.server.requests

    def __call__(self, request: Received) -> Reply:
        host = request.headers.get("host", "").partition(":")[0].lower()
        if host != self.host:
            return qlik_error(404, "Not found", "HTTP-404")
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return qlik_error(401, "Unauthorized", "HTTP-401")
        path = request.path
        if path == "/api/v1/users/me":
            return Reply.redirect(f"/api/v1/users/{QLIK_USER_ID}", status=301)
        if path == f"/api/v1/users/{QLIK_USER_ID}":
            return Reply.json(self.user)
        if path == "/api/v1/tenants/me":
            return Reply.redirect(f"/api/v1/tenants/{QLIK_TENANT_ID}", status=302)
        if path == f"/api/v1/tenants/{QLIK_TENANT_ID}":
            return Reply.json(self.tenant)
        if path == f"/api/v1/api-keys/{QLIK_KEY_ID}":
            return Reply.json(self.key_entry)
        return qlik_error(404, "Not found", "HTTP-404")


# --- the loopback network ------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def elastic(ca: trustme.CA) -> Iterator[FakeElastic]:
    fake = FakeElastic({ELASTIC_KEY: ACME_ORG})
    with FakeProvider([ELASTIC_HOST], fake, ca=ca) as server:
        fake.server = server
        yield fake


@pytest.fixture
def qlik(ca: trustme.CA) -> Iterator[FakeQlikTenant]:
    fake = FakeQlikTenant(qlik_key())
    with FakeProvider(["*.eu.qlikcloud.com"], fake, ca=ca) as server:
        fake.server = server
        yield fake


@pytest.fixture
def proxy(elastic: FakeElastic, qlik: FakeQlikTenant) -> Iterator[ConnectProxy]:
    routes = {ELASTIC_HOST: elastic.server, "*.qlikcloud.com": qlik.server}
    with ConnectProxy(routes) as server:
        yield server


@pytest.fixture
def hub_home(tmp_path: Path) -> Path:
    """Where the store lives (``HUB_HOME``); hub creates it."""
    return tmp_path / "hub-home"


@pytest.fixture
def hub_env(proxy: ConnectProxy, ca: trustme.CA, hub_home: Path) -> Iterator[dict[str, str | None]]:
    """The environment changes every ``hub`` process runs with (None means unset)."""
    with proxy_environment(proxy, ca) as env:
        inherited = [name for name in os.environ if name.startswith("HUB_")]
        yield {
            **dict.fromkeys(inherited),
            **env,
            "HUB_HOME": str(hub_home),
            "HUB_SECRET_KEY": None,
            "PYTHONIOENCODING": "utf-8",
        }


class HubCommand:
    """Runs the real ``hub`` command; keeps every byte it printed in `transcript`."""

    def __init__(self, env: Mapping[str, str | None]) -> None:
        self.env = dict(env)
        self.transcript: list[str] = []

    def environ(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        return merged_environ({**self.env, **(extra or {})})

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        timeout: float = TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hub *args`` to its end (stdin: *input*, else /dev/null) and return it."""
        done = subprocess.run(
            [str(HUB), *args],
            input=input,
            stdin=None if input is not None else stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=self.environ(env),
            timeout=timeout,
            check=False,
        )
        self.transcript += [done.stdout, done.stderr]
        return done

    def popen(
        self, *args: str, env: Mapping[str, str | None] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``hub *args`` with pipes for all three streams; `finish` collects it."""
        return subprocess.Popen(
            [str(HUB), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=self.environ(env),
        )

    def finish(
        self, process: subprocess.Popen[str], timeout: float = TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Wait for a `popen` process (killing it on timeout) and return what it did."""
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            self.transcript += [stdout, stderr]
            pytest.fail(f"{process.args} did not finish within {timeout} s:\n{stdout}{stderr}")
        self.transcript += [stdout, stderr]
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def spawn(self, *args: str, env: Mapping[str, str | None] | None = None) -> Any:
        """Start ``hub *args`` on a pseudo-terminal (pexpect); its output lands in `log`."""
        import pexpect

        child = pexpect.spawn(
            str(HUB),
            list(args),
            env=self.environ(env),
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(40, 200),
        )
        child.logfile_read = io.StringIO()
        return child

    def json(self, *args: str) -> Any:
        """Run a ``--json`` command that must succeed and return its parsed output."""
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def hub(hub_env: dict[str, str | None]) -> HubCommand:
    return HubCommand(hub_env)


@pytest.fixture
def hub_on_postgres(hub_env: dict[str, str | None]) -> Any:
    """Makes a `HubCommand` on the PostgreSQL of a URL (``HUB_DATABASE_URL``), with a key ring of
    one new key (``HUB_SECRET_KEYS``; its ``env`` holds both)."""
    from cryptography.fernet import Fernet

    def make(url: str) -> HubCommand:
        key = Fernet.generate_key().decode()
        return HubCommand({**hub_env, "HUB_DATABASE_URL": url, "HUB_SECRET_KEYS": key})

    return make


@pytest.fixture
def pg_hub(hub_on_postgres: Any, postgres_url: str) -> HubCommand:
    """`HubCommand` on a fresh schema of the session's PostgreSQL (see `hub_on_postgres`)."""
    made: HubCommand = hub_on_postgres(postgres_url)
    return made


@pytest.fixture
def keys() -> SimpleNamespace:
    """The test keys and the ids the fake providers answer with."""
    return SimpleNamespace(
        elastic=ELASTIC_KEY,
        elastic_host=ELASTIC_HOST,
        qlik=qlik_key(),
        qlik_canary=QLIK_CANARY,
        qlik_host=QLIK_HOST,
        qlik_user_id=QLIK_USER_ID,
        qlik_tenant_id=QLIK_TENANT_ID,
        qlik_key_id=QLIK_KEY_ID,
    )


# --- another user (for the store's ownership and read-only tests) --------------------------


class OtherUser:
    """Runs the real ``hub`` as the unprivileged user ``nobody`` (uid/gid 65534).

    Permission bits mean nothing to root, which CI runs as, so a test of "refuse a file another
    user can write" or "read a store you cannot write" must run hub as someone else. `setpriv`
    (util-linux) drops to uid 65534 with no groups. When that user cannot reach this
    environment's interpreter (it often lives under ``/root``, mode 0700), the process keeps
    one ambient capability, ``CAP_DAC_READ_SEARCH``: it may read and traverse what it could not,
    so Python starts, but every *write* permission check and every owner (``st_uid``) check
    applies to it as to any user; nothing is copied and the environment is left as it is.
    `base` is a directory under the system temp dir that the user can traverse.
    """

    uid = 65534
    gid = 65534

    def __init__(self, prefix: list[str], base: Path) -> None:
        self.prefix = prefix
        self.base = base

    def run(
        self, home: Path, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hub *args`` as this user with ``HUB_HOME=home`` and a minimal environment."""
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "HUB_HOME": str(home),
            "PYTHONIOENCODING": "utf-8",
            **(env or {}),
        }
        return subprocess.run(
            [*self.prefix, str(HUB), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=environ,
            stdin=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
            cwd=self.base,
        )

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.uid, self.gid)


def _other_user_prefix() -> list[str] | str:
    """The command prefix that runs a program as nobody, or why there is none."""
    import shutil

    if os.name != "posix" or os.geteuid() != 0:
        return "running hub as another user needs root (setpriv)"
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return "setpriv (util-linux) is not installed"
    plain = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    reading = [*plain, "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    for prefix in (plain, reading):
        probe = subprocess.run(
            [*prefix, str(HUB), "--version"],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
            cwd="/",
        )
        if probe.returncode == 0:
            return prefix
    return f"nobody cannot run {HUB}: {probe.stderr.decode(errors='replace')[-300:]}"


@pytest.fixture
def other_user() -> Iterator[OtherUser]:
    """`OtherUser`; skipped where it cannot exist, but a failure under ``CI=true``."""
    import shutil
    import tempfile

    prefix = _other_user_prefix()
    if isinstance(prefix, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the permission tests as another user: {prefix}")
        pytest.skip(prefix)
    base = Path(tempfile.mkdtemp(prefix="hub-other-user-"))
    base.chmod(0o755)  # the other user must reach what is inside
    try:
        yield OtherUser(prefix, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


class HubServer:
    """A real ``hub serve`` process on a free loopback port (see the `hub_server` fixture).

    ``sign_in`` is the address it printed (with its token), ``base`` the same without the
    token; ``log`` holds what it wrote to stderr once it has stopped.
    """

    #: What the test calls the server in a failure.
    name = "hub serve"

    def __init__(self, hub: HubCommand, *args: str) -> None:
        import selectors

        self.process = self.start(hub, *args)
        self.hub = hub
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=TIMEOUT):
            self.process.kill()
            pytest.fail(f"{self.name} printed no address within {TIMEOUT} s")
        first = self.process.stdout.readline()
        if "://" not in first:
            self.process.kill()
            _, err = self.process.communicate()
            pytest.fail(f"{self.name} did not start: {first}{err}")
        self.sign_in = first.split(" at ", 1)[1].strip()
        self.base = self.sign_in.split("?", 1)[0]
        self.stdout = first
        self.log = ""
        self.done: subprocess.CompletedProcess[str] | None = None

    def start(self, hub: HubCommand, *args: str) -> subprocess.Popen[str]:
        """The server process; it prints ``... at <address>`` on its first line."""
        return hub.popen("serve", "--port", "0", *args)

    def stop(self, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Ctrl-C (SIGINT), as a person stops it; wait for it to exit (once)."""
        import signal

        if self.done is not None:
            return self.done
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        done = self.hub.finish(self.process, timeout=timeout)
        self.stdout += done.stdout
        self.log = done.stderr
        self.done = done
        return done


@pytest.fixture
def start_hub_server(hub: HubCommand) -> Iterator[Any]:
    """Starts `HubServer`s with extra ``hub serve`` arguments; stops them after the test."""
    servers: list[HubServer] = []

    def start(*args: str) -> HubServer:
        servers.append(HubServer(hub, *args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def hub_server(start_hub_server: Any) -> HubServer:
    """`hub serve` against the end-to-end fake providers (through the loopback proxy)."""
    server: HubServer = start_hub_server()
    return server


class HostApp(HubServer):
    """``tests/host_app.py``: a host application mounting the Hub at ``/app/hub``, run like
    `hub serve` (a real uvicorn process on a free loopback port, the same environment).

    ``base`` is its root (``http://127.0.0.1:PORT/``); see that module for its pages.
    """

    name = "the host app"
    SCRIPT = Path(__file__).parent / "host_app.py"

    def start(self, hub: HubCommand, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(self.SCRIPT), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=hub.environ(),
        )


@pytest.fixture
def host_app(hub: HubCommand) -> Iterator[HostApp]:
    """`HostApp` against the end-to-end fake providers; stopped (Ctrl-C) after the test."""
    server = HostApp(hub)
    yield server
    server.stop()


# --- a real browser (Playwright driving Debian's Chromium) ---------------------------------

#: Debian's Chromium: the only browser the browser tests use (`playwright install` would
#: download one, which this network cannot reach).
CHROMIUM = Path("/usr/bin/chromium")
#: Keep Chromium off the network except for the pages it is sent to.
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]


def _chromium_version() -> str:
    """What ``chromium --version`` says, or why there is no browser to test with."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        done = subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=TIMEOUT
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{CHROMIUM} does not run: {exc}"
    return done.stdout.strip() or done.stderr.strip()[-200:]


def pytest_report_header(config: pytest.Config) -> str:
    """The browser the browser tests drive, in the test header."""
    try:
        from importlib.metadata import version

        playwright = f"playwright {version('playwright')}"
    except Exception:
        playwright = "playwright is not installed"
    return f"browser: {_chromium_version()}; {playwright}"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright, one per module; skipped where it is missing, but a
    failure under ``CI=true`` (`.ci/run` installs it).

    Not one per session: while Playwright's sync API runs, its event loop counts as running in
    this thread, so any later test of the same worker calling `asyncio.run` would fail.
    """
    reason = None
    if not CHROMIUM.exists():
        reason = f"the browser tests need Debian's Chromium: {CHROMIUM} is missing"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the browser tests need playwright (the test dependency group)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
