"""Reading an API key before it is sent: claims, prefixes, and keys that cannot be Qlik's."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from hub_core import FieldError
from hub_qlik.apikey import looks_like_key, read_key
from hub_qlik.pasted import bare_token


def test_claims_are_read_without_verifying(api_key, ids):
    key = read_key(api_key)

    assert key.token == api_key
    assert key.tenant_id == ids.tenant_id
    assert key.subject == ids.user_id
    assert key.key_id == ids.key_id
    assert key.expires_at is None


def test_repr_hides_the_key(api_key, canary):
    key = read_key(api_key)

    assert canary not in repr(key)
    assert api_key not in repr(key)
    assert "tnt-9f3a" in repr(key)


def test_claims_of_the_wrong_type_are_ignored(make_key):
    key = read_key(make_key(tenantId=42, jti=["x"], sub="", exp="tomorrow"))

    assert (key.tenant_id, key.key_id, key.subject, key.expires_at) == (None, None, None, None)


@pytest.mark.parametrize("exp", [True, 10**30, float("inf")])
def test_unreadable_exp_claim_is_ignored(make_key, exp):
    assert read_key(make_key(exp=exp)).expires_at is None


def test_exp_claim_becomes_an_aware_expiry(make_key):
    assert read_key(make_key(exp=1_900_000_000)).expires_at == datetime.fromtimestamp(
        1_900_000_000, tz=UTC
    )


@pytest.mark.parametrize(
    "pasted",
    ["Bearer {key}", "bearer {key}", "BEARER   {key}", '"{key}"', "'{key}'", "  {key}  "],
)
def test_key_pasted_with_decoration_is_cleaned(api_key, pasted):
    assert read_key(pasted.format(key=api_key)).token == api_key


@pytest.mark.parametrize(
    "pasted",
    ["{key}", "Authorization: Bearer {key}", "authorization:bearer\t{key}", '"Bearer {key}"'],
)
def test_the_fields_normalize_gives_the_token_read_key_sends_and_keeps_it(
    api_key, provider, pasted
):
    # The core gives the flow what normalize returns; read_key must take it unchanged.
    normalize = provider.field("api_key").normalize
    assert normalize is bare_token

    token = bare_token(pasted.format(key=api_key))

    assert token == api_key
    assert bare_token(token) == token
    assert read_key(token).token == read_key(pasted.format(key=api_key)).token == token


def test_opaque_token_is_kept_as_is():
    token = "0123456789abcdefghijABCDEFGHIJ"

    key = read_key(token)

    assert key.token == token
    assert key.tenant_id is None


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("essu_" + "Q" * 60, "Elastic Cloud"),
        ("ghp_" + "a" * 36, "GitHub"),
        ("github_pat_" + "a" * 60, "GitHub"),
        ("xoxb-1234-5678-abcdefghijkl", "Slack"),
        ("sk-" + "a" * 40, "OpenAI"),
        ("AKIAIOSFODNN7EXAMPLE", "AWS"),
    ],
)
def test_another_services_key_is_refused_with_a_hint(value, hint):
    with pytest.raises(FieldError) as caught:
        read_key(value)

    message = caught.value.errors["api_key"]
    assert hint in message
    assert "Qlik Cloud" in message
    assert value not in message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "required"),
        ("Bearer ", "required"),
        ('""', "required"),
        ("short", "too short"),
        ("eyJhbGciOiJFUzM4NCJ9 eyJzdWIiOiJ4In0.sig", "a space"),
        ("eyJhbGciOiJFUzM4NCJ9\u00a0eyJzdWIiOiJ4In0.sig", "a space"),
        ("eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.sïg-000000", "no API key contains"),
        ("eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.sig\x00", "no API key contains"),
        ("eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0", "cut off"),
        ("eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.", "cut off"),
        ("eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ4In0.sig.extra", "cut off"),
        ("eyJhbGciOiJFUzM4NCJ9.bm90IGpzb24.signature", "cut off"),
        ("eyJhbGciOiJFUzM4NCJ9.WzEsMl0.signature", "cut off"),
        ("eyJub3QganNvbg.eyJzdWIiOiJ4In0.signature", "cut off"),
        ("eyJhbGciOiJFUzM4NCJ9.eyJzd!IiOiJ4In0.signature", "cut off"),
        ("eyJhbGciOiJFUzM4NCJ9.e.signature", "cut off"),
    ],
)
def test_value_that_cannot_be_a_key_is_refused(value, words):
    with pytest.raises(FieldError) as caught:
        read_key(value)

    assert set(caught.value.errors) == {"api_key"}
    assert words in caught.value.errors["api_key"]


def test_position_of_a_bad_character_is_given():
    with pytest.raises(FieldError, match="position 4"):
        read_key("abc def" + "x" * 30)


def _segment(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_jwt_without_qlik_claims_is_still_sent():
    token = f"{_segment({'alg': 'RS256'})}.{_segment({'sub': 'someone'})}.c2lnbmF0dXJl"

    key = read_key(token)

    assert key.token == token
    assert key.subject == "someone"
    assert key.tenant_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eyJhbGciOiJFUzM4NCIsImtpZCI6ImExYjJjMyJ9.e30.c2ln", True),
        ("essu_abc", True),
        ("github_pat_x", True),
        ("Bearer abc", True),
        ("my-company", False),
        ("sk-shop", False),
        ("xoxo-boutique", False),
        ("eyJ", False),
        ("https://my-company.eu.qlikcloud.com", False),
    ],
)
def test_keys_typed_in_another_field_are_recognised(value, expected):
    assert looks_like_key(value) is expected
