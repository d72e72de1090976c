"""What the environment configures: ``SSL_CERT_FILE``, ``HTTPS_PROXY``, ``HUB_SECRET_KEY``.

Every Hub entry point (`verify`, `averify`, `check_many`) and the CLI must turn an unusable
value into a `ConfigurationError` naming the variable (exit 2) before any request, and a proxy
that cannot be reached into a `ProviderUnavailable` that blames the proxy (exit 3). Hubs here
have no transport of their own, so they read the environment; nothing resolves a real name:
proxies are ``.invalid`` names or a closed loopback port.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from click.testing import CliRunner
from cryptography.fernet import Fernet

from hub_core import ConfigurationError, Hub, HubError, ProviderUnavailable, StoreError
from hub_core.cli import EXIT_INPUT, EXIT_UNREACHABLE, State, main
from hub_core.store import Store
from hub_core.testing.network import PROXY_VARIABLES

PASSWORD = "pr0xyPassw0rd-SECRET"
VALUES = {"api_key": "good-key-1"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)


@pytest.fixture
def hub(acme_plugin: Any) -> Hub:
    return Hub(plugins=[acme_plugin()], load_entrypoints=False)


def _verify(hub: Hub) -> object:
    return hub.verify("acme", VALUES)


def _averify(hub: Hub) -> object:
    return asyncio.run(hub.averify("acme", VALUES))


def _check_many(hub: Hub) -> object:
    (result,) = asyncio.run(hub.check_many([("acme", VALUES)]))
    if isinstance(result, HubError):
        raise result
    return result


ENTRY_POINTS: dict[str, Callable[[Hub], object]] = {
    "verify": _verify,
    "averify": _averify,
    "check_many": _check_many,
}


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- HTTPS_PROXY: malformed --------------------------------------------------------------------

MALFORMED_PROXIES = {
    "ftp": ("ftp://proxy.invalid:21", "through an http:// or https:// proxy only"),
    "socks5": ("socks5://proxy.invalid:1080", "SOCKS is not supported"),
    "socks5h-with-password": (
        f"socks5h://ada:{PASSWORD}@proxy.invalid:1080",
        "SOCKS is not supported",
    ),
    "port-too-large": ("http://proxy.invalid:99999", "port must be a number from 1 to 65535"),
    "port-zero": ("http://proxy.invalid:0", "port must be a number from 1 to 65535"),
    "port-negative": ("http://proxy.invalid:-1", "port must be a number from 1 to 65535"),
    "port-not-a-number": ("http://proxy.invalid:80a", "port must be a number from 1 to 65535"),
    "port-with-password": (
        f"http://ada:{PASSWORD}@proxy.invalid:70000",
        "port must be a number from 1 to 65535",
    ),
    # The password holds a scheme's separator: masked from the first "://" on, not the last.
    "password-with-a-scheme-in-it": (
        f"http://ada:s3://{PASSWORD}@proxy.invalid:70000",
        "port must be a number from 1 to 65535",
    ),
    "no-host": ("http://:3128", "names no valid host name"),
    "space-in-host": ("http://proxy .invalid:3128", "names no valid host name"),
    "schemeless-bad-port": ("proxy.invalid:http", "port must be a number from 1 to 65535"),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", MALFORMED_PROXIES)
def test_a_malformed_proxy_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, hub: Hub, name: str, entry: str
) -> None:
    value, why = MALFORMED_PROXIES[name]
    monkeypatch.setenv("HTTPS_PROXY", value)

    with pytest.raises(ConfigurationError) as caught:
        ENTRY_POINTS[entry](hub)

    error = caught.value
    assert error.variable == "HTTPS_PROXY"
    assert error.code == "configuration_error"
    assert str(error).startswith("HTTPS_PROXY=")
    assert why in str(error)
    assert PASSWORD not in str(error) + repr(error)
    if PASSWORD in value:
        assert "***@proxy.invalid" in str(error)
        assert "ada" not in str(error)


@pytest.mark.parametrize("variable", ["https_proxy", "ALL_PROXY", "all_proxy"])
def test_the_message_names_the_variable_the_proxy_came_from(
    monkeypatch: pytest.MonkeyPatch, hub: Hub, variable: str
) -> None:
    monkeypatch.setenv(variable, "ftp://proxy.invalid:21")
    with pytest.raises(ConfigurationError) as caught:
        hub.verify("acme", VALUES)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}=ftp://proxy.invalid:21 : ")


def test_the_environment_is_checked_when_the_first_client_is_built(
    monkeypatch: pytest.MonkeyPatch, hub: Hub
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "ftp://proxy.invalid:21")
    hub.providers()  # listing providers needs no client, so no check
    with pytest.raises(ConfigurationError):
        hub.__enter__()


def test_an_http_proxy_for_plain_http_is_not_used_and_not_an_error(
    monkeypatch: pytest.MonkeyPatch, hub: Hub
) -> None:
    # hub only sends HTTPS: a SOCKS HTTP_PROXY must not break it (httpx used to build it, and fail).
    monkeypatch.setenv("HTTP_PROXY", "socks5://proxy.invalid:1080")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderUnavailable) as caught:
        hub.verify("acme", VALUES)
    assert caught.value.reason == "proxy"


# --- HTTPS_PROXY: well formed, out of reach ----------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("value", "shown", "what"),
    [
        ("proxy.invalid:3128", "proxy.invalid:3128", "does not resolve"),
        ("garbage.invalid", "garbage.invalid", "does not resolve"),
        (
            f"http://ada:{PASSWORD}@proxy.invalid:3128",
            "http://***@proxy.invalid:3128",
            "does not resolve",
        ),
        ("http://127.0.0.1:{port}", "http://127.0.0.1:{port}", "refused the connection"),
        (
            f"http://ada:{PASSWORD}@127.0.0.1:{{port}}",
            "http://***@127.0.0.1:{port}",
            "refused the connection",
        ),
    ],
)
def test_a_proxy_out_of_reach_is_blamed_not_the_provider(
    monkeypatch: pytest.MonkeyPatch, hub: Hub, value: str, shown: str, what: str, entry: str
) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", value.format(port=port))

    with pytest.raises(ProviderUnavailable) as caught:
        ENTRY_POINTS[entry](hub)

    message = str(caught.value)
    assert caught.value.reason == "proxy"
    assert message == (
        f"Acme could not be reached: the HTTPS proxy {shown.format(port=port)} "
        f"(from HTTPS_PROXY) {what}"
    )
    assert "api.acme.test" not in message
    assert PASSWORD not in message


def test_no_proxy_sends_a_host_direct_in_the_blocking_client_too(
    monkeypatch: pytest.MonkeyPatch, hub: Hub
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "api.acme.test")
    with pytest.raises(ProviderUnavailable) as caught:
        hub.verify("acme", VALUES)
    # Direct: the reserved name api.acme.test itself does not resolve; the proxy is not involved.
    assert caught.value.reason == "unresolved"
    assert "api.acme.test" in str(caught.value)


# --- SSL_CERT_FILE / SSL_CERT_DIR --------------------------------------------------------------


def _ca_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pem"
    ca = trustme.CA()
    contents = {
        "empty": b"",
        "garbage": b"this is not a certificate\n\x00\xff",
        "key-only": ca.private_key_pem.bytes(),
        "broken-pem": b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    }
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
        return path
    path.write_bytes(contents[kind])
    return path


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("missing", "no such file"),
        ("directory", "a directory, not a file of PEM certificates"),
        ("empty", "holds no PEM certificate"),
        ("garbage", "holds no PEM certificate"),
        ("key-only", "holds no PEM certificate"),
        ("broken-pem", "holds no PEM certificate"),
    ],
)
def test_an_unusable_ca_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Hub, kind: str, why: str, entry: str
) -> None:
    path = _ca_file(tmp_path, kind)
    monkeypatch.setenv("SSL_CERT_FILE", str(path))

    with pytest.raises(ConfigurationError) as caught:
        ENTRY_POINTS[entry](hub)

    assert caught.value.variable == "SSL_CERT_FILE"
    assert str(caught.value).startswith(f"SSL_CERT_FILE={path} : ")
    assert why in str(caught.value)


def test_a_ca_directory_that_is_not_one_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Hub
) -> None:
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match=r"SSL_CERT_DIR=.*nowhere : not a directory"):
        hub.verify("acme", VALUES)


def test_a_good_ca_file_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Hub) -> None:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.setenv("HTTPS_PROXY", "proxy.invalid:3128")
    # Past the CA check: the request is tried, and fails at the proxy.
    with pytest.raises(ProviderUnavailable, match=r"the HTTPS proxy proxy\.invalid:3128"):
        hub.verify("acme", VALUES)


# --- HUB_SECRET_KEY ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_an_empty_hub_secret_key_is_an_error_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY", value)
    home = tmp_path / "home"
    with pytest.raises(StoreError, match="HUB_SECRET_KEY is set but empty") as caught:
        Store(home / "hub.db")
    assert "unset it to use the key file" in str(caught.value)
    assert not home.exists()


def test_an_empty_hub_secret_key_does_not_fall_back_to_an_existing_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Store(tmp_path / "hub.db").close()  # made with a key file
    monkeypatch.setenv("HUB_SECRET_KEY", "")
    with pytest.raises(StoreError, match="set but empty"):
        Store(tmp_path / "hub.db")


# --- through the CLI ---------------------------------------------------------------------------


class Cli:
    """`hub` through click's runner, over one store, with any Hub."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "hub.db"
        self.key = Fernet.generate_key()

    def run(self, hub: Hub, *args: str) -> Any:
        store = Store(self.path, secret_key=self.key)
        try:
            state = State(hub=hub, store=store, interactive=False)
            env = {"HUB_FIELD_API_KEY": "good-key-1"}
            return CliRunner().invoke(main, list(args), obj=state, env=env)
        finally:
            store.close()


@pytest.fixture
def linked(tmp_path: Path, acme_plugin: Any) -> Cli:
    """A store with one Acme account, linked over a scripted transport."""
    answer = httpx.Response(200, json={"id": 7, "name": "Org 7"})
    cli = Cli(tmp_path)
    scripted = Hub(
        plugins=[acme_plugin()],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda request: answer),
    )
    assert cli.run(scripted, "link", "acme").exit_code == 0
    return cli


@pytest.mark.parametrize(
    ("variable", "value", "code", "expected"),
    [
        ("HTTPS_PROXY", "ftp://proxy.invalid:21", EXIT_INPUT, "http:// or https:// proxy only"),
        ("HTTPS_PROXY", "socks5://proxy.invalid:1", EXIT_INPUT, "SOCKS is not supported"),
        ("HTTPS_PROXY", "http://proxy.invalid:99999", EXIT_INPUT, "port must be a number"),
        ("HTTPS_PROXY", "proxy.invalid", EXIT_UNREACHABLE, "proxy.invalid (from HTTPS_PROXY)"),
        ("SSL_CERT_FILE", "/nonexistent/ca.pem", EXIT_INPUT, "no such file"),
    ],
)
@pytest.mark.parametrize("command", ["link", "check"])
def test_the_cli_names_the_variable_and_exits_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
    linked: Cli,
    hub: Hub,
    command: str,
    variable: str,
    value: str,
    code: int,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)

    result = linked.run(hub, *(["link", "acme"] if command == "link" else ["check"]))

    assert result.exit_code == code, result.output
    assert expected in result.stderr + result.stdout
    if code == EXIT_INPUT:
        assert f"Error: {variable}={value} : " in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # handled, not raised
    (account,) = json.loads(linked.run(hub, "accounts", "--json").stdout)
    # A configuration error is nobody's verdict: the account keeps its status. A proxy out of
    # reach is a failed check like any other.
    assert account["status"] == ("error" if command == "check" and code == 3 else "active")
