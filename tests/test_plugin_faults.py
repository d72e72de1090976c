"""A third-party plugin that raises BaseException subclasses, or hangs at import; a real Ctrl-C.

The plugin is a real distribution on the path (a module and its ``.dist-info`` with a ``hub``
entry point), loaded by `Hub` in this process and by the real ``hub`` command. ``FAULTY_AT``
says where it misbehaves (``import``, ``hub_providers``, ``hub_validate_credentials``,
``flow``, ``flow after a response``, ``hub_account_display``) and ``FAULTY_RAISES`` what it
does there: raise ``SystemExit(0)``, ``KeyboardInterrupt``, ``GeneratorExit`` or its own
``BaseException`` subclass; ``sigint``: send this process a real SIGINT (a Ctrl-C arriving
while plugin code runs); ``hang``: sleep for a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub_core import Hub, PluginError, Verified
from hub_core.plugins import is_interrupt, watching_interrupts
from hub_core.testing import sample_account

FAULTY = textwrap.dedent(
    '''
    import os
    import signal
    import time

    import httpx

    from hub_core import AccountDisplay, Field, Guide, Provider, Verified, hookimpl


    class PluginBoom(BaseException):
        """The plugin's own BaseException."""


    def fault(where):
        if os.environ.get("FAULTY_AT") != where:
            return
        what = os.environ["FAULTY_RAISES"]
        if what == "sigint":
            signal.raise_signal(signal.SIGINT)
            return
        if what == "hang":
            time.sleep(60)
        raise {
            "SystemExit": SystemExit(0),
            "KeyboardInterrupt": KeyboardInterrupt(),
            "GeneratorExit": GeneratorExit(),
            "PluginBoom": PluginBoom("boom"),
        }[what]


    fault("import")

    PROVIDER = Provider(
        id="faulty",
        name="Faulty",
        fields=[Field("api_key", "API Key", kind="secret")],
        guide=Guide(),
        hosts=["api.faulty.invalid"],
    )


    @hookimpl
    def hub_providers():
        fault("hub_providers")
        return [PROVIDER]


    @hookimpl
    def hub_validate_credentials(provider, credentials):
        if provider.id != "faulty":
            return None
        fault("hub_validate_credentials")

        def flow():
            fault("flow")
            if os.environ.get("FAULTY_SENDS"):
                yield httpx.Request("GET", "https://api.faulty.invalid/me")
                fault("flow after a response")
            return Verified(identity="user:1", label="Faulty user")

        return flow()


    @hookimpl
    def hub_account_display(provider, account):
        if provider.id != "faulty":
            return None
        fault("hub_account_display")
        return AccountDisplay(title="Faulty account")
    '''
)

RAISES = ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "PluginBoom"]
#: How each raise is named in the plugin's error.
NAMED = {"SystemExit": "SystemExit: 0", "PluginBoom": "PluginBoom: boom"}


@pytest.fixture
def faulty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The faulty plugin installed as the distribution hub-faulty (entry point ``faulty``)."""
    where = tmp_path / "site"
    where.mkdir()
    module = f"hub_faulty_{os.getpid()}_{id(where)}"
    (where / f"{module}.py").write_text(FAULTY)
    info = where / "hub_faulty-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hub-faulty\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[hub]\nfaulty = {module}\n")
    monkeypatch.syspath_prepend(str(where))
    for name in ("HUB_PLUGINS", "HUB_DISABLE_PLUGINS", "FAULTY_AT", "FAULTY_RAISES"):
        monkeypatch.delenv(name, raising=False)
    yield where
    sys.modules.pop(module, None)


def misbehave(monkeypatch: pytest.MonkeyPatch, where: str, what: str) -> None:
    monkeypatch.setenv("FAULTY_AT", where)
    monkeypatch.setenv("FAULTY_RAISES", what)


def answering(request: httpx.Request) -> httpx.Response:
    if request.url.host == "api.elastic-cloud.com":
        return httpx.Response(200, json={"organizations": [{"id": "o1", "name": "Org"}]})
    return httpx.Response(200, json={})


def hub_with_faulty(**kwargs: Any) -> Hub:
    return Hub(enable={"faulty", "elastic"}, transport=httpx.MockTransport(answering), **kwargs)


ELASTIC = ("elastic", {"api_key": "essu_" + "k" * 40})
FAULTY_KEY = ("faulty", {"api_key": "faulty-key-1234567890"})


# --- in this process, through Hub --------------------------------------------------------


@pytest.mark.parametrize("what", RAISES)
@pytest.mark.parametrize("where", ["import", "hub_providers"])
def test_a_base_exception_at_import_or_in_hub_providers_is_a_broken_plugin(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, where: str, what: str
) -> None:
    misbehave(monkeypatch, where, what)
    hub = hub_with_faulty()
    reports = {report.name: report for report in hub.plugins()}
    assert NAMED.get(what, what) in (reports["faulty"].error or "")
    assert reports["elastic"].error is None
    assert [p.id for p in hub.providers()] == ["elastic"]
    assert hub.verify(*ELASTIC).label == "Org"


@pytest.mark.parametrize("what", RAISES)
@pytest.mark.parametrize("where", ["hub_validate_credentials", "flow", "flow after a response"])
@pytest.mark.parametrize("runner", ["verify", "averify"])
def test_a_base_exception_in_a_check_is_a_plugin_error(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, where: str, what: str, runner: str
) -> None:
    misbehave(monkeypatch, where, what)
    monkeypatch.setenv("FAULTY_SENDS", "1")
    hub = hub_with_faulty()
    check = hub.verify if runner == "verify" else lambda *a: asyncio.run(hub.averify(*a))
    with pytest.raises(PluginError, match=NAMED.get(what, what)) as caught:
        check(*FAULTY_KEY)
    assert "hub-faulty 1.0" in str(caught.value)
    assert FAULTY_KEY[1]["api_key"] not in str(caught.value)


@pytest.mark.parametrize("what", RAISES)
@pytest.mark.parametrize("where", ["hub_validate_credentials", "flow", "flow after a response"])
def test_check_many_gives_every_account_its_result_when_a_plugin_raises_a_base_exception(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, where: str, what: str
) -> None:
    misbehave(monkeypatch, where, what)
    monkeypatch.setenv("FAULTY_SENDS", "1")
    hub = hub_with_faulty()
    items = [ELASTIC, FAULTY_KEY, ELASTIC, FAULTY_KEY, ELASTIC]
    results = asyncio.run(hub.check_many(items, concurrency=2))
    assert [type(r) for r in results] == [Verified, PluginError] * 2 + [Verified]
    assert NAMED.get(what, what) in str(results[1])


@pytest.mark.parametrize("what", RAISES)
def test_a_base_exception_in_hub_account_display_shows_the_default(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    misbehave(monkeypatch, "hub_account_display", what)
    hub = hub_with_faulty()
    account = sample_account(hub.provider("faulty"), Verified(identity="u:1", label="Faulty user"))
    assert hub.display(account).title == "Faulty user"  # the default, not "Faulty account"


@pytest.mark.parametrize("where", ["import", "hub_providers", "hub_validate_credentials", "flow"])
def test_a_real_ctrl_c_in_plugin_code_still_stops_hub(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    misbehave(monkeypatch, where, "sigint")
    with pytest.raises(KeyboardInterrupt):
        hub_with_faulty().verify(*FAULTY_KEY)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_real_ctrl_c_during_a_check_keeps_the_verdicts_already_reached(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # asyncio.run's own handler cancels the batch (a plugin's KeyboardInterrupt would not):
    # the verdicts reached before, still waiting for their batch to be written, are kept.
    from cryptography.fernet import Fernet

    from hub_core.accounts import Accounts
    from hub_core.store import Store

    accounts = Accounts(
        hub_with_faulty(), Store(tmp_path / "hub.db", secret_key=Fernet.generate_key())
    )
    linked = [accounts.link(*ELASTIC), accounts.link(*FAULTY_KEY)]
    misbehave(monkeypatch, "flow", "sigint")  # the second check gets a Ctrl-C, then finishes
    before = [account.checked_at for account in linked]
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(accounts.check([account.id for account in linked], concurrency=1))
    after = [accounts.store.get(account.id).checked_at for account in linked]
    assert after[0] > before[0]
    assert after[1] > before[1]


def test_a_keyboard_interrupt_off_the_main_thread_is_never_a_ctrl_c() -> None:
    seen: list[bool] = []

    def elsewhere() -> None:
        with watching_interrupts():
            seen.append(is_interrupt(KeyboardInterrupt()))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [False]
    with watching_interrupts():
        assert not is_interrupt(KeyboardInterrupt())
        assert not is_interrupt(SystemExit(0))
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- the real hub command -----------------------------------------------------------------


@pytest.fixture
def faulty_hub(hub: Any, faulty: Path) -> Any:
    """The `hub` fixture's command, with the faulty plugin on its path."""
    hub.env["PYTHONPATH"] = str(faulty)
    return hub


def accounts(hub: Any) -> list[dict[str, Any]]:
    return hub.json("accounts", "--json")  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("what", RAISES)
@pytest.mark.parametrize("where", ["import", "hub_providers"])
def test_hub_link_works_and_hub_plugins_names_a_plugin_that_raises_at_start(
    faulty_hub: Any, keys: Any, where: str, what: str
) -> None:
    env = {"FAULTY_AT": where, "FAULTY_RAISES": what}
    listed = faulty_hub.run("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "hub-faulty" in listed.stdout
    assert NAMED.get(what, what) in listed.stdout
    assert "Aborted" not in listed.stdout + listed.stderr

    linked = faulty_hub.run("link", "elastic", env={**env, "HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    assert "Linked Acme Org" in linked.stdout
    assert [a["provider"] for a in accounts(faulty_hub)] == ["elastic"]


@pytest.mark.slow
@pytest.mark.parametrize("what", RAISES)
@pytest.mark.parametrize("where", ["hub_validate_credentials", "flow"])
def test_hub_link_reports_a_plugin_that_raises_in_its_check_and_stores_nothing(
    faulty_hub: Any, where: str, what: str
) -> None:
    env = {"FAULTY_AT": where, "FAULTY_RAISES": what, "HUB_FIELD_API_KEY": FAULTY_KEY[1]["api_key"]}
    linked = faulty_hub.run("link", "faulty", env=env)
    assert linked.returncode == 1, linked.stdout + linked.stderr
    assert "Error: the plugin hub-faulty 1.0 failed" in linked.stderr
    assert NAMED.get(what, what) in linked.stderr
    assert accounts(faulty_hub) == []


@pytest.mark.slow
@pytest.mark.parametrize("what", RAISES)
def test_hub_check_records_every_verdict_when_a_plugin_raises_in_a_flow(
    faulty_hub: Any, elastic: Any, keys: Any, what: str
) -> None:
    other = "essu_b3RoZXIta2V5LWZvci1hLXNlY29uZC1vcmc6c2VjcmV0LXBhcnQ"
    elastic.keys[other] = {"id": "org2", "name": "Second Org"}
    for key in (keys.elastic, other):
        done = faulty_hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": key})
        assert done.returncode == 0, done.stderr
    done = faulty_hub.run("link", "faulty", env={"HUB_FIELD_API_KEY": FAULTY_KEY[1]["api_key"]})
    assert done.returncode == 0, done.stderr
    del elastic.keys[other]  # revoked: its verdict must be recorded

    checked = faulty_hub.run("check", env={"FAULTY_AT": "flow", "FAULTY_RAISES": what})
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Aborted" not in checked.stderr
    statuses = {a["label"]: a["status"] for a in accounts(faulty_hub)}
    assert statuses == {"Acme Org": "active", "Second Org": "invalid", "Faulty user": "error"}
    (faulty_account,) = [a for a in accounts(faulty_hub) if a["provider"] == "faulty"]
    assert NAMED.get(what, what) in faulty_account["last_error"]


@pytest.mark.slow
def test_hub_accounts_show_uses_the_default_display_when_the_plugin_raises(
    faulty_hub: Any,
) -> None:
    done = faulty_hub.run("link", "faulty", env={"HUB_FIELD_API_KEY": FAULTY_KEY[1]["api_key"]})
    assert done.returncode == 0, done.stderr
    (account,) = accounts(faulty_hub)
    env = {"FAULTY_AT": "hub_account_display", "FAULTY_RAISES": "SystemExit"}
    shown = faulty_hub.run("accounts", "show", account["id"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "Faulty user"


@pytest.mark.slow
def test_ctrl_c_during_hub_check_keeps_the_verdicts_reached_and_exits_130(
    hub: Any, elastic: Any, keys: Any
) -> None:
    # Accounts are checked in label order, one at a time: A's verdict is reached before B's
    # request arrives at the fake, which holds it until Ctrl-C.
    key_a = "essu_YS1maXJzdC1rZXktY2hlY2tlZC1iZWZvcmUtY3RybC1jOnNlY3JldA"
    key_b = "essu_Yi1zZWNvbmQta2V5LWhlbGQtYnktdGhlLWZha2U6c2VjcmV0LXBhcnQ"
    elastic.keys = {key_a: {"id": "a", "name": "A Org"}, key_b: {"id": "b", "name": "B Org"}}
    for key in (key_a, key_b):
        done = hub.run("link", "elastic", env={"HUB_FIELD_API_KEY": key})
        assert done.returncode == 0, done.stderr
    del elastic.keys[key_a]  # revoked since: the verdict to keep
    elastic.held = {key_b}
    before = len(elastic.requests)
    process = hub.popen("check", "--concurrency", "1")
    try:
        deadline = time.monotonic() + 20
        while len(elastic.requests) < before + 2:  # B's request is there, and held
            assert process.poll() is None, hub.finish(process)
            assert time.monotonic() < deadline, "the held check never reached the fake"
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        done = hub.finish(process, timeout=15)
    finally:
        elastic.release.set()
    assert done.returncode == 130, done.stdout + done.stderr
    assert done.stderr.rstrip().endswith("Interrupted.")
    assert "Traceback" not in done.stderr
    statuses = {a["label"]: a["status"] for a in json.loads(hub.run("accounts", "--json").stdout)}
    assert statuses == {"A Org": "invalid", "B Org": "active"}


@pytest.mark.slow
def test_a_plugin_whose_import_hangs_is_named_and_ctrl_c_stops_hub(faulty_hub: Any) -> None:
    process = faulty_hub.popen("providers", env={"FAULTY_AT": "import", "FAULTY_RAISES": "hang"})
    started = time.monotonic()
    said: list[str] = []
    killer = threading.Timer(25, process.kill)
    killer.start()
    try:
        assert process.stderr is not None
        for line in process.stderr:
            said.append(line)
            if "HUB_DISABLE_PLUGINS" in line:
                break
        waited = time.monotonic() - started
        process.send_signal(signal.SIGINT)
        done = faulty_hub.finish(process, timeout=15)
    finally:
        killer.cancel()
    message = "".join(said)
    assert "still importing the plugin faulty (hub-faulty 1.0)" in message, message + done.stderr
    assert "HUB_DISABLE_PLUGINS=faulty" in message
    assert "HUB_PLUGINS" in message
    assert 2.5 < waited < 20
    assert done.returncode == 130, done.stderr
    assert "Interrupted." in done.stderr

    skipped = faulty_hub.run(
        "providers",
        env={"FAULTY_AT": "import", "FAULTY_RAISES": "hang", "HUB_DISABLE_PLUGINS": "faulty"},
        timeout=15,
    )
    assert skipped.returncode == 0
    assert "elastic" in skipped.stdout
    assert "still importing" not in skipped.stderr
