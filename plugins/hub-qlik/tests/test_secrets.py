"""The key never shows: not in any message, repr or result, whatever the tenant answers."""

from __future__ import annotations

import json

import httpx
import pytest

import hub_qlik
from hub_core import Credentials, HubError, ProviderUnavailable
from hub_core.policy import Policy
from hub_core.testing import drive, drive_error

(PROVIDER,) = hub_qlik.hub_providers()


def _answers(key: str, canary: str) -> dict[str, httpx.Response]:
    def echo(status: int, text: str) -> httpx.Response:
        body = {"errors": [{"code": text, "title": text, "status": str(status)}], "traceId": text}
        return httpx.Response(status, json=body)

    return {
        "401-echo-key": echo(401, f"bad token {key}"),
        "401-echo-bearer": echo(401, f"Authorization: Bearer {key} refused"),
        "401-echo-signature": echo(401, f"signature {key.split('.')[2]} invalid"),
        "401-echo-payload": echo(401, f"claims {key.split('.')[1]}"),
        "403-echo-key": echo(403, key * 3),
        "404-echo-key": echo(404, key),
        "429-echo-key": echo(429, key),
        "500-echo-key": echo(500, f"{canary} {key}"),
        "400-echo-key": echo(400, key),
        "200-not-json": httpx.Response(200, text=f"<html>{key}</html>"),
        "200-wrong-shape": httpx.Response(200, json={"token": key}),
        "redirect-elsewhere": httpx.Response(
            302, headers={"location": f"https://evil.example.net/?k={key}"}
        ),
    }


CASES = [
    "401-echo-key",
    "401-echo-bearer",
    "401-echo-signature",
    "401-echo-payload",
    "403-echo-key",
    "404-echo-key",
    "429-echo-key",
    "500-echo-key",
    "400-echo-key",
    "200-not-json",
    "200-wrong-shape",
    "redirect-elsewhere",
]


@pytest.mark.parametrize("case", CASES)
def test_key_echoed_by_the_tenant_never_reaches_a_message(
    values, qlik, api_key, canary, exposed, case
):
    qlik.routes["/api/v1/users/me"] = _answers(api_key, canary)[case]

    # No secrets= for the driver: the flow must mask the key itself, as it does in any runner.
    failed = drive_error(hub_qlik.verify(values), qlik, HubError, provider=PROVIDER)

    text = exposed(failed.error)
    assert canary not in text
    assert api_key not in text


@pytest.mark.parametrize("case", ["401-echo-key", "200-not-json", "200-wrong-shape"])
def test_key_echoed_by_a_lookup_never_reaches_the_result(
    values, qlik, api_key, canary, key_path, case
):
    qlik.routes["/api/v1/tenants/me"] = _answers(api_key, canary)[case]
    qlik.routes[key_path] = _answers(api_key, canary)[case]

    result = drive(hub_qlik.verify(values), qlik, provider=PROVIDER).result

    text = repr(result) + json.dumps(result.details)
    assert canary not in text


def test_key_is_not_in_the_result(values, qlik, api_key, canary):
    qlik.user["name"] = f"Ada {api_key}"  # even a user name that repeats it
    qlik.keys[1]["description"] = api_key
    qlik.tenant["hostnames"] = [api_key.split(".")[2], *qlik.tenant["hostnames"]]

    result = drive(hub_qlik.verify(values), qlik, provider=PROVIDER).result

    text = repr(result) + json.dumps(result.details) + result.label + result.identity
    assert canary not in text
    assert "Ada [redacted]" in result.details["user_name"]
    assert result.details["key_description"] == "[redacted]"
    assert result.details["hostnames"][0] == "[redacted]"
    assert "permanent_host" not in result.details


@pytest.mark.parametrize(
    "wrong",
    [
        {"tenant": "my_company"},
        {"tenant": "{key}"},
        {"tenant": "https://{key}@my-company.eu.qlikcloud.com/"},
        {"tenant": "{key}.eu.qlikcloud.com"},
        {"region": "{key}"},
        {"api_key": "{key} {key}"},
        {"api_key": "Bearer {key}\u00e9"},
        {"api_key": "{key}.extra"},
    ],
)
def test_key_is_not_in_input_errors(values, api_key, canary, exposed, field_error, wrong):
    values.update({name: text.format(key=api_key) for name, text in wrong.items()})

    error = field_error(values)

    text = exposed(error)
    assert canary not in text
    assert api_key not in text


def test_key_is_not_in_a_transport_error_message(values, api_key, canary, exposed):
    failure = ProviderUnavailable(f"connect failed for {api_key}", reason="connect")

    failed = drive_error(
        hub_qlik.verify(values),
        [failure],
        ProviderUnavailable,
        provider=PROVIDER,
        policy=Policy(retries=0),
    )

    assert canary not in exposed(failed.error)


def test_credentials_and_flow_do_not_show_the_key(values, api_key, canary):
    credentials = Credentials(values, secret=["api_key"])
    flow = hub_qlik.hub_validate_credentials(next(iter(hub_qlik.hub_providers())), credentials)

    assert canary not in repr(credentials)
    assert canary not in repr(flow)
    flow.close()
