"""The plugin under a whole Hub: registry, entry point, allowlist, redaction, display."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

import hub_elastic
from hub_core import (
    Account,
    FieldError,
    Hub,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    UnexpectedResponse,
)
from hub_core.responses import MASK
from hub_core.testing import mock_hub

Handler = Callable[[httpx.Request], httpx.Response]
ORGS = {"organizations": [{"id": "1234567890", "name": "Acme Observability"}]}


def hub_with(handler: Handler) -> Hub:
    """A Hub with only this plugin, over *handler*, sending each request once (no retries)."""
    return mock_hub(hub_elastic, handler)


def test_verify_through_the_driver(canary: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=ORGS, headers={"X-Elastic-Api-Key-Expiration": "2031-05-04T03:02:01Z"}
        )

    result = hub_with(handler).verify("elastic", {"api_key": f"  ApiKey {canary}  "})
    assert result.identity == "org:1234567890"
    assert result.expires_at is not None
    assert result.expires_at.year == 2031
    assert [str(r.url) for r in seen] == ["https://api.elastic-cloud.com/api/v1/organizations"]
    assert seen[0].headers["Authorization"] == f"ApiKey {canary}"


def test_government_environment_through_the_driver() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200, json=ORGS)

    hub_with(handler).verify("elastic", {"api_key": "essu_k", "environment": "gov"})
    assert hosts == ["api.us-gov-east-1.aws.elastic-cloud.com"]


def test_bad_input_sends_nothing() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=ORGS)

    with pytest.raises(FieldError) as caught:
        hub_with(handler).verify("elastic", {"api_key": "essu_abc def"})
    assert caught.value.field == "api_key"
    assert sent == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, InvalidCredentials),
        (403, PermissionDenied),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (404, UnexpectedResponse),
    ],
)
def test_error_statuses_through_the_driver(canary: str, status: int, error: type) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # A hostile answer that quotes the key: neither the plugin nor the core may show it.
        body = {"errors": [{"code": "x", "message": request.headers["Authorization"]}]}
        return httpx.Response(status, json=body)

    with pytest.raises(error) as caught:
        hub_with(handler).verify("elastic", {"api_key": canary})
    assert canary not in str(caught.value)
    assert canary not in repr(caught.value)


def test_unreachable_host_is_provider_unavailable(canary: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable) as caught:
        hub_with(handler).verify("elastic", {"api_key": canary})
    assert caught.value.reason == "connect"
    assert canary not in str(caught.value)


def test_hub_lists_the_provider_and_uses_our_display() -> None:
    hub = hub_with(lambda request: httpx.Response(200, json=ORGS))
    assert [p.id for p in hub.providers()] == ["elastic"]
    account = Account(
        id="a",
        provider_id="elastic",
        identity="org:1234567890",
        label="Acme Observability",
        status="active",
        config={"environment": "cloud"},
        details={"organization_id": "1234567890", "organization_count": 1},
    )
    assert hub.display(account).subtitle == "Elastic Cloud organization 1234567890"


def test_installed_entry_point_provides_elastic() -> None:
    hub = Hub(enable=["elastic"])
    assert [p.id for p in hub.providers()] == ["elastic"]
    (report,) = hub.plugins()
    assert (report.distribution, report.version, report.error) == (
        "hub-elastic",
        hub_elastic.__version__,
        None,
    )


def test_check_many_builds_each_keys_redactor_once() -> None:
    # The driver and the plugin's own cleaning both mask with the key: with 50 checks in
    # flight, the second must find the first's redactor, not build its forms again.
    from hub_core import errors
    from hub_core.policy import Policy

    keys = [f"essu_{n:04d}_{'k' * 30}" for n in range(200)]

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.002)  # keeps many checks in flight at once
        return httpx.Response(200, json=ORGS)

    hub = Hub(
        plugins=[hub_elastic],
        load_entrypoints=False,
        transport=httpx.MockTransport(slow_answer),
        policy=Policy(retries=0, backoff=0.0),
    )
    errors._cached.cache_clear()
    checks = [("elastic", {"api_key": k}) for k in keys]
    results = asyncio.run(hub.check_many(checks, concurrency=50))
    assert all(result.identity == "org:1234567890" for result in results)  # type: ignore[union-attr]
    assert errors._cached.cache_info().misses == len(keys)


@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
def test_a_pasted_header_line_with_another_scheme_names_it_under_the_driver(
    canary: str, scheme: str
) -> None:
    # Every message of a check is masked by the value as typed; the scheme named in the
    # message must not read as a piece of it ("starts with[redacted]which").
    hub = hub_with(lambda request: httpx.Response(500))

    with pytest.raises(FieldError) as caught:
        hub.verify("elastic", {"api_key": f"Authorization: {scheme} {canary}"})

    message = caught.value.errors["api_key"]
    assert "[redacted]" not in message
    assert f"starts with “{scheme}”, which Elastic Cloud does not use" in message


def test_pasted_header_line_keeps_elastic_error_code_readable(canary: str) -> None:
    # The guide says a whole 'Authorization: ApiKey …' line may be pasted. Elastic's own
    # code "root.unauthorized" holds no piece of the key, so it must be quoted as sent, not
    # as "root.un[redacted]ed" (the header name typed in front of the key is no secret).
    body = {"errors": [{"code": "root.unauthorized", "message": "The supplied key is invalid"}]}
    hub = hub_with(lambda request: httpx.Response(401, json=body))

    with pytest.raises(InvalidCredentials) as caught:
        hub.verify("elastic", {"api_key": f"Authorization: ApiKey {canary}"})

    assert caught.value.field == "api_key"
    assert MASK not in str(caught.value)
    assert 'said: "root.unauthorized: The supplied key is invalid"' in str(caught.value)


def test_a_pasted_header_line_is_kept_as_the_bare_key(canary: str) -> None:
    # The key is what is stored and masked, not the header name typed in front of it.
    hub = hub_with(lambda request: httpx.Response(200, json=ORGS))

    credentials = hub.validate("elastic", {"api_key": f" 'Authorization: ApiKey {canary}' "})

    assert credentials["api_key"] == canary
    assert credentials.secret_values() == (canary,)


def test_accounts_stored_with_a_pasted_header_line_still_check(canary: str) -> None:
    # Accounts linked before the field normalized its value hold the line as typed.
    seen: list[httpx.Request] = []
    body = {"errors": [{"code": "root.unauthorized", "message": "The supplied key is invalid"}]}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["Authorization"] == f"ApiKey {canary}":
            return httpx.Response(200, json=ORGS)
        return httpx.Response(401, json=body)

    stored = [
        ("elastic", {"api_key": f"Authorization: ApiKey {key}", "environment": "cloud"})
        for key in (canary, "essu_revoked0123456789")
    ]
    checked, rejected = asyncio.run(hub_with(handler).check_many(stored))

    assert not isinstance(checked, Exception)
    assert checked.identity == "org:1234567890"
    assert seen[0].headers["Authorization"] == f"ApiKey {canary}"
    assert isinstance(rejected, InvalidCredentials)
    assert 'said: "root.unauthorized: The supplied key is invalid"' in str(rejected)
