"""How a linked Qlik Cloud account is shown."""

from __future__ import annotations

from datetime import UTC, datetime

import hub_qlik
from hub_core import Account
from hub_core.testing import drive


def _account(**changes):
    fields = {
        "id": "acc-1",
        "provider_id": "qlik",
        "identity": "tenant:t1/user:u1",
        "label": "Ada Lovelace @ my-company.eu.qlikcloud.com",
        "status": "active",
        "config": {"tenant": "my-company", "region": "eu"},
        "expires_at": datetime(2031, 5, 4, 3, 2, tzinfo=UTC),
        "details": {
            "user_name": "Ada Lovelace",
            "email": "ada@example.com",
            "user_status": "active",
            "roles": ["TenantAdmin", "Developer"],
            "tenant_name": "Acme Analytics",
            "tenant_host": "my-company.eu.qlikcloud.com",
            "region": "eu",
        },
    }
    fields.update(changes)
    return Account(**fields)


def test_display_shows_user_tenant_region_roles_expiry_and_status(provider):
    shown = hub_qlik.hub_account_display(provider, _account())

    assert shown.title == "Ada Lovelace (ada@example.com)"
    assert shown.subtitle == "my-company.eu.qlikcloud.com"
    assert shown.url == "https://my-company.eu.qlikcloud.com"
    assert shown.rows == (
        ("Region", "Ireland (eu)"),
        ("Tenant name", "Acme Analytics"),
        ("Roles", "TenantAdmin, Developer"),
        ("Key expiry", "2031-05-04 03:02 UTC"),
        ("User status", "active"),
    )


def test_display_of_a_fresh_check_result(provider, values, qlik):
    result = drive(hub_qlik.verify(values), qlik, provider=provider).result
    account = _account(
        label=result.label, expires_at=result.expires_at, details=result.details, config={}
    )

    shown = hub_qlik.hub_account_display(provider, account)

    assert shown.title == "Ada Lovelace (ada@example.com)"
    assert ("Key expiry", "2031-05-04 03:02 UTC") in shown.rows
    # The tenant's permanent host is the one typed: no second row for the same host.
    assert all(label != "Permanent host" for label, _value in shown.rows)


def test_display_shows_the_permanent_host_when_an_alias_was_typed(provider):
    details = {**_account().details, "permanent_host": "tx81ab3d0f.eu.qlikcloud.com"}

    shown = hub_qlik.hub_account_display(provider, _account(details=details))

    assert shown.subtitle == "my-company.eu.qlikcloud.com"  # still the address typed
    assert shown.url == "https://my-company.eu.qlikcloud.com"
    assert ("Permanent host", "tx81ab3d0f.eu.qlikcloud.com") in shown.rows
    assert shown.rows.index(("Permanent host", "tx81ab3d0f.eu.qlikcloud.com")) == 2


def test_display_leaves_out_a_stored_permanent_host_that_is_not_a_tenant_host(provider):
    for stored in ("evil.example.net", "javascript:alert(1)", 7, ""):
        details = {**_account().details, "permanent_host": stored}

        shown = hub_qlik.hub_account_display(provider, _account(details=details))

        assert all(label != "Permanent host" for label, _value in shown.rows), stored


def test_display_without_details_falls_back_to_the_stored_fields(provider):
    account = _account(
        details={},
        expires_at=None,
        config={"tenant": "https://my-company.us.qlikcloud.com/hub", "region": ""},
    )

    shown = hub_qlik.hub_account_display(provider, account)

    assert shown.title == account.label
    assert shown.subtitle == "my-company.us.qlikcloud.com"
    assert shown.url == "https://my-company.us.qlikcloud.com"
    assert shown.rows == (("Region", "United States (us)"), ("Key expiry", "not known"))


def test_display_of_a_government_tenant(provider):
    account = _account(
        details={"tenant_host": "x.us.qlikcloudgov.com", "region": "us-gov", "email": "a@b.c"},
        config={},
    )

    shown = hub_qlik.hub_account_display(provider, account)

    assert shown.title == "a@b.c"
    assert shown.url == "https://x.us.qlikcloudgov.com"
    assert shown.rows[0] == ("Region", "Qlik Cloud Government (us-gov)")


def test_display_never_links_to_a_stored_host_that_is_not_a_tenant(provider):
    account = _account(
        details={"tenant_host": "evil.example.net", "user_name": "Ada"},
        config={"tenant": "javascript:alert(1)"},
    )

    shown = hub_qlik.hub_account_display(provider, account)

    assert shown.url is None
    assert shown.subtitle is None
    assert shown.title == "Ada"


def test_display_of_a_user_without_roles_says_none(provider):
    account = _account(details={"roles": [], "tenant_host": "x.eu.qlikcloud.com"})

    shown = hub_qlik.hub_account_display(provider, account)

    assert ("Roles", "none") in shown.rows
