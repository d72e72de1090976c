from __future__ import annotations

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_core import Field, FieldError, Guide, Provider
from hub_core.fields import json_schema, validate_values

PROVIDER = Provider(
    id="acme",
    name="Acme",
    fields=[
        Field("api_key", "API Key", kind="secret", help="From Settings → Keys."),
        Field(
            "region", "Region", kind="choice", choices=[("us", "United States"), "eu"], default="us"
        ),
        Field(
            "team", "Team", required=False, pattern=r"[a-z]+", max_length=12, placeholder="sales"
        ),
        Field("site", "Site", kind="url", required=False),
    ],
    guide=Guide(),
    hosts=["api.acme.test"],
)


def test_values_are_stripped_and_defaults_applied() -> None:
    credentials = validate_values(PROVIDER, {"api_key": "  k3y\n", "team": " sales "})
    assert dict(credentials) == {"api_key": "k3y", "region": "us", "team": "sales"}
    assert credentials.secret_names == {"api_key"}


def test_choices_match_case_insensitively_and_return_the_declared_value() -> None:
    assert validate_values(PROVIDER, {"api_key": "k", "region": "EU"})["region"] == "eu"


def test_choices_also_match_their_label() -> None:
    assert validate_values(PROVIDER, {"api_key": "k", "region": "united states"})["region"] == "us"


def test_every_field_error_is_reported_at_once_each_on_its_field() -> None:
    with pytest.raises(FieldError) as caught:
        validate_values(PROVIDER, {"region": "mars", "team": "Sales!", "site": "ftp://x"})
    assert set(caught.value.errors) == {"api_key", "region", "team", "site"}
    assert caught.value.errors["api_key"] == "API Key is required"
    assert "us, eu" in caught.value.errors["region"]
    assert "expected format" in caught.value.errors["team"]
    assert "https://" in caught.value.errors["site"]


@pytest.mark.parametrize(
    "bad", ["a\rb", "a\nb", "a\x00b", "a\x1bb", "a\u2028b", "a\u202eb", "a\u200bb"]
)
def test_control_and_invisible_characters_are_refused_anywhere_inside(bad: str) -> None:
    with pytest.raises(FieldError) as caught:
        validate_values(PROVIDER, {"api_key": bad})
    assert caught.value.field == "api_key"
    assert "type or paste it again" in caught.value.errors["api_key"]


def test_a_nul_at_the_edge_is_not_stripped_away() -> None:
    with pytest.raises(FieldError, match="NUL"):
        validate_values(PROVIDER, {"api_key": "key\x00"})


def test_length_is_limited_and_the_message_does_not_echo_a_secret() -> None:
    with pytest.raises(FieldError) as caught:
        validate_values(PROVIDER, {"api_key": "k", "team": "a" * 13})
    assert "at most 12" in str(caught.value)
    secret = "s" * 300
    with pytest.raises(FieldError) as caught:
        validate_values(PROVIDER, {"api_key": secret})
    assert secret not in str(caught.value)
    assert "at most 256" in caught.value.errors["api_key"]


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(FieldError) as caught:
        validate_values(PROVIDER, {"api_key": "k", "tenant": "x"})
    assert "no field 'tenant'" in caught.value.errors["tenant"]


def test_non_text_values_are_refused() -> None:
    with pytest.raises(FieldError, match="must be text"):
        validate_values(PROVIDER, {"api_key": 42})  # type: ignore[dict-item]


def test_pattern_must_match_the_whole_value() -> None:
    with pytest.raises(FieldError):
        validate_values(PROVIDER, {"api_key": "k", "team": "sales1"})


def test_field_error_many_needs_at_least_one_field() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FieldError.many({})


def test_json_schema_is_valid_draft_2020_12() -> None:
    schema = json_schema(PROVIDER)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    key = schema["properties"]["api_key"]
    assert key["writeOnly"] is True
    assert key["format"] == "password"
    assert schema["required"] == ["api_key"]
    assert schema["properties"]["region"]["oneOf"][0] == {"const": "us", "title": "United States"}
    assert schema["properties"]["team"]["examples"] == ["sales"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("values", "valid"),
    [
        ({"api_key": "k"}, True),
        ({"api_key": "k", "region": "eu", "team": "ops"}, True),
        ({}, False),
        ({"api_key": ""}, False),
        ({"api_key": "k", "region": "mars"}, False),
        ({"api_key": "k", "team": "Ops1"}, False),
        ({"api_key": "k", "other": "x"}, False),
        ({"api_key": "k", "region": ""}, True),
    ],
)
def test_json_schema_agrees_with_validation(values: dict[str, str], valid: bool) -> None:
    validator = jsonschema.Draft202012Validator(json_schema(PROVIDER))
    assert validator.is_valid(values) is valid
    try:
        validate_values(PROVIDER, values)
    except FieldError:
        accepted = False
    else:
        accepted = True
    assert accepted is valid


@given(st.dictionaries(st.sampled_from(["api_key", "region", "team", "site", "x"]), st.text()))
def test_any_input_either_validates_or_raises_field_error(values: dict[str, str]) -> None:
    try:
        credentials = validate_values(PROVIDER, values)
    except FieldError as error:
        messages = error.errors
    else:
        for value in credentials.values():
            assert value == value.strip()
            assert not any(ord(c) < 32 or ord(c) == 127 for c in value)
        return
    assert messages
    assert all(isinstance(message, str) and message for message in messages.values())
