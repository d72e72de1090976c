"""Key rotation with the real ``hub`` command: ``hub keys rotate`` killed with SIGKILL mid-run.

A few thousand accounts are stored with the old key; ``hub keys rotate`` runs with
``new,old`` in small batches and is killed (kill -9) once it has said how far it got. Every
account must still decrypt with the ring, and a second run finishes the rest.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub_core.keyring import KeyRing
from hub_core.model import Credentials, Verified
from hub_core.store import Store

pytestmark = pytest.mark.slow

ACCOUNTS = 4000


def fill(db: Path, key: str) -> dict[str, int]:
    with Store(db, secret_key=key) as store:
        # Test set-up only: without a sync per commit, thousands of saves take a second.
        store._db.execute("PRAGMA synchronous = OFF")
        ids = {}
        for n in range(ACCOUNTS):
            credentials = Credentials({"api_key": f"secret-{n:05d}-value"}, secret=["api_key"])
            account = store.save(
                "acme", Verified(identity=f"org:{n}", label=f"Org {n}"), credentials
            )
            ids[account.id] = n
    return ids


def status(hub, keys: str) -> dict[str, int]:
    done = hub.run("keys", "status", "--json", env={"HUB_SECRET_KEYS": keys})
    assert done.returncode == 0, done.stderr
    return {key["id"]: key["accounts"] for key in json.loads(done.stdout)["keys"]}


def every_account_decrypts(db: Path, keys: list[str], ids: dict[str, int]) -> None:
    with Store(db, secret_key=keys) as store:
        for account_id, n in ids.items():
            assert store.credentials(account_id)["api_key"] == f"secret-{n:05d}-value"


def test_rotation_killed_mid_run_leaves_every_account_readable_and_resumes(hub, hub_home):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    db = hub_home / "hub.db"
    ids = fill(db, old)
    old_id, new_id = (KeyRing(key, source="test").primary_id for key in (old, new))
    # `old,new` on every host first: the new key gets its check, encrypts nothing yet.
    assert status(hub, f"{old},{new}") == {old_id: ACCOUNTS, new_id: 0}

    rotate = hub.popen(
        "keys", "rotate", "--batch-size", "20", env={"HUB_SECRET_KEYS": f"{new},{old}"}
    )
    assert rotate.stderr is not None
    line = rotate.stderr.readline()
    assert line.startswith("Re-encrypted 20 of 4000 accounts"), line
    rotate.send_signal(signal.SIGKILL)
    killed = hub.finish(rotate)
    assert killed.returncode == -signal.SIGKILL

    during = status(hub, f"{new},{old}")
    assert sum(during.values()) == ACCOUNTS
    assert 0 < during[new_id] < ACCOUNTS, during  # it was stopped part-way
    every_account_decrypts(db, [new, old], ids)

    again = hub.run("keys", "rotate", env={"HUB_SECRET_KEYS": f"{new},{old}"})
    assert again.returncode == 0, again.stderr
    assert f"Re-encrypted {during[old_id]} accounts with key {new_id}." in again.stdout
    assert status(hub, f"{new},{old}") == {new_id: ACCOUNTS, old_id: 0}

    # The old key dropped: every account opens with the new one alone.
    every_account_decrypts(db, [new], ids)
    assert status(hub, new) == {new_id: ACCOUNTS, old_id: 0}
    for text in hub.transcript:
        assert old not in text
        assert new not in text


def test_hub_keys_new_prints_a_new_key_to_stdout_only(hub):
    first, second = hub.run("keys", "new"), hub.run("keys", "new")
    assert first.returncode == 0
    assert first.stderr == ""
    key = first.stdout.strip()
    Fernet(key)
    assert key != second.stdout.strip()
