"""What the flow makes of the pasted key and the environment, before any request."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from hub_core import Credentials, FieldError, Flow, Provider
from hub_core.testing import drive, respond
from hub_elastic.flow import normalize_key, verify


def first_request(flow: Flow) -> httpx.Request:
    request = next(flow)
    flow.close()
    return request


@pytest.mark.parametrize(
    "pasted",
    [
        "essu_abc123==",
        "ApiKey essu_abc123==",
        "apikey   essu_abc123==",
        "Authorization: ApiKey essu_abc123==",
        "authorization:ApiKey essu_abc123==",
        "AUTHORIZATION :  APIKEY essu_abc123==",
        '"essu_abc123=="',
        "'ApiKey essu_abc123=='",
        "Authorization: ApiKey `essu_abc123==`",
    ],
)
def test_pasted_header_and_quotes_are_reduced_to_the_key(
    start: Callable[..., Flow], pasted: str
) -> None:
    request = first_request(start(pasted))
    assert request.headers["Authorization"] == "ApiKey essu_abc123=="


def test_request_lists_organizations_on_elastic_cloud_by_default(
    start: Callable[..., Flow], canary: str
) -> None:
    request = first_request(start(canary))
    assert request.method == "GET"
    assert str(request.url) == "https://api.elastic-cloud.com/api/v1/organizations"
    assert request.headers["Authorization"] == f"ApiKey {canary}"
    assert request.headers["Accept"] == "application/json"


def test_government_environment_asks_the_government_host(start: Callable[..., Flow]) -> None:
    request = first_request(start("essu_k", environment="gov"))
    assert (
        str(request.url) == "https://api.us-gov-east-1.aws.elastic-cloud.com/api/v1/organizations"
    )


def test_a_key_named_like_the_scheme_is_not_cut(start: Callable[..., Flow]) -> None:
    # Only "ApiKey" followed by a space is a prefix; a key may start with those letters.
    assert first_request(start("ApiKeyXYZ")).headers["Authorization"] == "ApiKey ApiKeyXYZ"


@pytest.mark.parametrize(
    ("pasted", "words"),
    [
        ("ApiKey", "only the 'ApiKey' prefix"),
        ("Authorization: ApiKey", "only the 'ApiKey' prefix"),
        ("Authorization:", "only the 'ApiKey' prefix"),
        ('""', "only the 'ApiKey' prefix"),
        ("essu_abc def", "space or line break"),
        ("ApiKey essu_abc def", "space or line break"),
        ("essu_abc\u00a0def", "space or line break"),
        ("essu_abc\u3000def", "space or line break"),
        ("Bearer essu_abc", "“Bearer”"),
        ("Authorization: Basic essu_abc", "“Basic”"),
        ("essu_abcé", "character 9"),
        ("essu_\u200babc", "invisible"),  # refused by the core's schema check already
        ("essu_abc\ndef", "line break"),  # likewise
    ],
)
def test_malformed_key_is_a_field_error_before_any_request(
    start: Callable[..., Flow], pasted: str, words: str
) -> None:
    with pytest.raises(FieldError) as caught:
        next(start(pasted))
    assert caught.value.field == "api_key"
    assert set(caught.value.errors) == {"api_key"}
    assert "Cloud API Key" in str(caught.value)
    assert words in str(caught.value)


def test_missing_key_is_a_field_error() -> None:
    with pytest.raises(FieldError, match="required") as caught:
        next(verify(Credentials({})))
    assert caught.value.field == "api_key"


def test_environment_missing_from_credentials_means_elastic_cloud() -> None:
    request = first_request(verify(Credentials({"api_key": "essu_k"}, secret=["api_key"])))
    assert request.url.host == "api.elastic-cloud.com"


def test_unknown_environment_is_a_field_error_on_environment() -> None:
    flow = verify(Credentials({"api_key": "essu_k", "environment": "mars"}))
    with pytest.raises(FieldError, match="cloud, gov") as caught:
        next(flow)
    assert caught.value.field == "environment"


def test_field_error_makes_no_request(start: Callable[..., Flow], provider: Provider) -> None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return respond(200)

    with pytest.raises(FieldError):
        drive(start("essu_a b"), answer, provider=provider)
    assert asked == []


def test_normalize_key_keeps_a_plain_key_unchanged() -> None:
    assert normalize_key("essu_" + "A" * 80 + "==") == "essu_" + "A" * 80 + "=="


@pytest.mark.parametrize(
    "pasted", ["Authorization: ApiKey essu_abc123==", "'ApiKey essu_abc123=='", "essu_abc123=="]
)
def test_the_field_keeps_the_key_the_flow_sends(
    provider: Provider, credentials: Callable[..., Credentials], pasted: str
) -> None:
    # The core gives the flow what the field's normalize returns: the flow's own reading of
    # the key must leave it as it is.
    assert provider.field("api_key").normalize is normalize_key
    assert credentials(pasted)["api_key"] == "essu_abc123=="
    assert normalize_key(normalize_key(pasted)) == normalize_key(pasted) == "essu_abc123=="
