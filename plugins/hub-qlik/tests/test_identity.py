"""Who a key reaches, and what is no verdict on it: the tenant's ids, and an unreachable tenant.

A tenant's answers name the identity an account is stored under, so a tenant that names
another tenant's ids must not reach that tenant's account; and a tenant that cannot be looked
up (no DNS, a proxy that cannot connect) is unreachable, never proof that the values are wrong.
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

import hub_qlik
from hub_core import (
    Accounts,
    FieldError,
    Hub,
    IdentityMismatch,
    Policy,
    ProviderUnavailable,
    Store,
    UnexpectedResponse,
)
from hub_core.testing import drive, drive_error

PROVIDER = hub_qlik.make_provider()


def hub_for(handler) -> Hub:
    return Hub(
        plugins=[hub_qlik],
        load_entrypoints=False,
        transport=httpx.MockTransport(handler),
        policy=Policy(backoff=0.0, retries=0),
    )


def unresolved(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno -2] Name or service not known") from socket.gaierror(
        -2, "Name or service not known"
    )


# --- tenants/me must be the tenant users/me names -------------------------------------------


def test_tenant_naming_another_tenant_than_the_keys_is_a_tenant_error(values, qlik, ids):
    qlik.tenant["id"] = "tnt-victim"  # users/me and the key say tnt-9f3a

    failed = drive_error(hub_qlik.verify(values), qlik, FieldError, provider=PROVIDER)

    message = failed.error.errors["tenant"]
    assert ids.tenant_id in message
    assert "tnt-victim" in message
    assert ids.host in message


def test_tenant_contradicting_its_user_is_unexpected_without_a_tenant_claim(values, qlik, make_key):
    qlik.key = values["api_key"] = make_key(tenantId=None)
    qlik.tenant["id"] = "tnt-victim"

    failed = drive_error(hub_qlik.verify(values), qlik, UnexpectedResponse, provider=PROVIDER)

    assert "tnt-victim" in str(failed.error)
    assert "contradicts itself" in str(failed.error)


@pytest.mark.parametrize("tenant_id", [None, "", 42])
def test_tenant_without_a_readable_id_says_nothing_against_the_key(values, qlik, ids, tenant_id):
    if tenant_id is None:
        del qlik.tenant["id"]
        qlik.routes["/api/v1/tenants/me"] = httpx.Response(200, json=qlik.tenant)
    else:
        qlik.tenant["id"] = tenant_id
        qlik.routes["/api/v1/tenants/me"] = httpx.Response(200, json=qlik.tenant)

    result = drive(hub_qlik.verify(values), qlik, provider=PROVIDER).result

    assert result.identity == f"tenant:{ids.tenant_id}/user:{ids.user_id}"


def test_a_tenant_claiming_another_tenants_ids_cannot_replace_its_account(
    tmp_path, values, qlik, ids, make_key
):
    victim_key = values["api_key"]
    store = Store(tmp_path / "hub.db")
    accounts = Accounts(hub_for(qlik), store)
    victim = accounts.link("qlik", values)

    # Another tenant answers (and signs nothing) with the victim's tenant and user ids.
    attacker_key = make_key(jti="key-evil")
    hostile = hub_qlik_fake(qlik, host="attacker.us.qlikcloud.com", key=attacker_key)
    attacked = Accounts(hub_for(hostile), store)
    with pytest.raises(IdentityMismatch) as caught:
        attacked.link(
            "qlik",
            {"tenant": "https://attacker.us.qlikcloud.com/hub", "api_key": attacker_key},
        )

    message = str(caught.value)
    assert "attacker.us.qlikcloud.com" in message  # the label of the answer
    for place in ("tenant my-company", "region eu", "tenant attacker", "region us"):
        assert place in message  # the stored account's, and this key's
    assert "nothing was changed" in message
    assert attacker_key not in message
    # Nothing changed: the victim's account still holds the victim's key and tenant.
    (only,) = store.accounts()
    assert only.id == victim.id
    assert only.config == {"tenant": "my-company", "region": "eu"}
    assert store.credentials(victim.id)["api_key"] == victim_key

    # The same tenant, typed another way (the pasted address), still updates the account.
    again = accounts.link("qlik", {"tenant": f"https://{ids.host}/hub", "api_key": victim_key})
    assert again.id == victim.id


def hub_qlik_fake(qlik, *, host: str, key: str):
    """A copy of *qlik* at *host*, accepting *key*, answering the same ids."""
    import attrs

    return attrs.evolve(qlik, host=host, key=key, seen=[], routes=dict(qlik.routes))


# --- an unreachable tenant is not an unknown tenant ------------------------------------------


def test_proxy_that_cannot_reach_the_tenant_adds_the_likely_cause(values, ids):
    failure = ProviderUnavailable(
        f"Qlik Cloud could not be reached: the HTTPS proxy could not open a connection to "
        f"{ids.host}",
        reason="proxy",
    )

    failed = drive_error(hub_qlik.verify(values), [failure], ProviderUnavailable, provider=PROVIDER)

    error = failed.error
    assert (error.reason, error.field) == ("proxy", "tenant")
    assert str(error).startswith(str(failure))
    assert "Check the Tenant Name and Region" in str(error)


def test_proxy_itself_out_of_reach_is_not_blamed_on_the_tenant(values):
    failure = ProviderUnavailable(
        "Qlik Cloud could not be reached: the HTTPS proxy proxy.invalid:3128 (from "
        "HTTPS_PROXY) does not resolve",
        reason="proxy",
    )

    failed = drive_error(hub_qlik.verify(values), [failure], ProviderUnavailable, provider=PROVIDER)

    assert failed.error is failure
    assert failed.error.field is None


def test_offline_check_records_error_never_invalid(tmp_path, values, qlik):
    store = Store(tmp_path / "hub.db")
    account = Accounts(hub_for(qlik), store).link("qlik", values)

    offline = Accounts(hub_for(unresolved), store)
    (checked,) = asyncio.run(offline.check())

    assert checked.status.value == "error"
    assert "does not resolve" in (checked.last_error or "")
    assert checked.details["previous_status"] == "active"
    assert store.get(account.id).status.value == "error"


def test_unresolved_tenant_at_link_stores_nothing(tmp_path, values):
    store = Store(tmp_path / "hub.db")

    with pytest.raises(ProviderUnavailable):
        Accounts(hub_for(unresolved), store).link("qlik", values)

    assert store.accounts() == []


# --- a pasted address supplies the Region -----------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "supplied"),
    [
        ("https://acme.eu.qlikcloud.com/hub", {"region": "eu"}),
        ("acme.de.qlikcloud.com", {"region": "de"}),
        ("//acme.us.qlikcloudgov.com", {"region": "us-gov"}),
        ("acme", {}),  # a bare name says nothing about the region
        ("https://acme.mars.qlikcloud.com", {}),  # the flow explains what is wrong
        ("javascript:alert(1)", {}),
    ],
)
def test_tenant_address_supplies_the_region(typed, supplied):
    assert PROVIDER.supplied("tenant", typed) == supplied
