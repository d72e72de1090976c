from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import attrs
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_core import Field, FieldError, Guide, PluginError, Provider
from hub_core.fields import json_schema, validate_field, validate_values
from hub_core.plugins import watching_interrupts

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


# --- Field.normalize ---------------------------------------------------------------------------

KEY = "k3y-0123456789-abcdef"


def _bare_key(value: str) -> str:
    """A plugin's normalize: the key from a pasted ``Authorization: Bearer <key>`` line."""
    value = value.removeprefix("Authorization:").strip()
    if value.startswith("Basic "):
        raise FieldError("api_key", f"API Key uses Basic, not Bearer: {value!r}")
    if value.startswith("Token "):
        raise ValueError(f"not a key: {value}")
    return value.removeprefix("Bearer ")


def _with(**normalizers: Callable[[str], Any]) -> Provider:
    """`PROVIDER` with these fields normalized."""
    fields = [
        attrs.evolve(field, normalize=normalizers[field.name])
        if field.name in normalizers
        else field
        for field in PROVIDER.fields
    ]
    return attrs.evolve(PROVIDER, fields=fields)


def test_normalize_gives_the_value_that_is_checked_and_kept() -> None:
    provider = _with(api_key=_bare_key, team=lambda value: value.removeprefix("team:"))

    credentials = validate_values(
        provider, {"api_key": f"  Authorization: Bearer {KEY}\n", "team": "team: sales"}
    )

    assert dict(credentials) == {"api_key": KEY, "region": "us", "team": "sales"}
    assert credentials.secret_values() == (KEY,)  # what every message of a check is masked by
    # The pattern ([a-z]+) and the length (at most 12) are those of the normalized value.
    team = provider.field("team")
    assert validate_field(team, "team:" + "a" * 12) == "a" * 12
    with pytest.raises(FieldError, match="at most 12"):
        validate_field(team, "team:" + "a" * 13)
    with pytest.raises(FieldError, match="expected format: 'sales1'"):
        validate_field(team, "team:sales1")


def test_normalize_is_given_the_stripped_value_and_an_empty_result_is_no_value() -> None:
    seen: list[str] = []

    def normalize(value: str) -> str:
        seen.append(value)
        return value.removeprefix("Bearer")

    provider = _with(api_key=normalize, region=lambda value: "")
    key = provider.field("api_key")

    assert validate_field(key, "  Bearer  k ") == "k"
    with pytest.raises(FieldError, match="API Key is required"):
        validate_field(key, " Bearer ")
    with pytest.raises(FieldError, match="API Key is required"):
        validate_field(key, "   ")  # nothing typed: not given to normalize
    with pytest.raises(FieldError, match="a line break"):
        validate_field(key, "Bearer a\nb")  # refused as typed, by the core's own words
    assert seen == ["Bearer  k", "Bearer"]
    assert validate_field(provider.field("region"), "eu") == "us"  # no value: the default


def test_a_refusal_of_normalize_is_the_fields_error_with_the_typed_secret_masked() -> None:
    provider = _with(api_key=_bare_key, team=lambda value: str(int(value)))

    with pytest.raises(FieldError) as caught:
        validate_values(provider, {"api_key": f"Authorization: Basic {KEY}", "team": "x1"})

    assert set(caught.value.errors) == {"api_key", "team"}  # every field at once, as ever
    message = caught.value.errors["api_key"]
    assert message == "API Key uses Basic, not Bearer[redacted]'"  # it quoted what was typed
    # A ValueError too; a text field's message is the plugin's, unmasked.
    assert caught.value.errors["team"] == "invalid literal for int() with base 10: 'x1'"
    with pytest.raises(FieldError) as caught:
        validate_field(provider.field("api_key"), f"Token {KEY}")
    assert caught.value.field == "api_key"
    assert caught.value.errors["api_key"].startswith("not a key: ")
    assert KEY[:8] not in str(caught.value)


def _raises(exc: BaseException) -> Callable[[str], str]:
    def normalize(value: str) -> str:
        raise exc

    return normalize


@pytest.mark.parametrize(
    ("normalize", "what"),
    [
        (lambda value: None, "returned NoneType, not a string"),
        (lambda value: value.encode(), "returned bytes, not a string"),
        (lambda value: value.nosuch(), "failed (AttributeError)"),
        (_raises(RuntimeError(f"bad {KEY}")), "failed (RuntimeError)"),
        (_raises(PluginError(f"bad {KEY}")), "failed (PluginError)"),
        (_raises(SystemExit(f"bad {KEY}")), "failed (SystemExit)"),
    ],
)
def test_a_broken_normalize_is_a_plugin_error_naming_the_field_not_the_value(
    normalize: Callable[[str], Any], what: str
) -> None:
    provider = _with(api_key=normalize)

    with pytest.raises(PluginError) as caught:
        validate_values(provider, {"api_key": KEY})

    assert str(caught.value) == (
        f"the normalize function of field 'api_key' {what}; this is a bug in the plugin"
    )
    # The plugin's exception, whose text may quote the key, is not shown with it.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_a_plugins_own_keyboard_interrupt_is_its_bug_where_ctrl_c_is_watched() -> None:
    # Every check validates inside `watching_interrupts`: there, only a real Ctrl-C stops hub.
    key = _with(api_key=_raises(KeyboardInterrupt(KEY))).field("api_key")

    with watching_interrupts(), pytest.raises(PluginError) as caught:
        validate_field(key, KEY)

    assert str(caught.value) == (
        "the normalize function of field 'api_key' failed (KeyboardInterrupt); "
        "this is a bug in the plugin"
    )
    with pytest.raises(KeyboardInterrupt):  # unwatched, it cannot be told from a Ctrl-C
        validate_field(key, KEY)


def test_a_real_ctrl_c_in_normalize_stops_validation() -> None:
    def normalize(value: str) -> str:
        os.kill(os.getpid(), signal.SIGINT)  # the person presses Ctrl-C
        return value

    key = _with(api_key=normalize).field("api_key")
    with watching_interrupts(), pytest.raises(KeyboardInterrupt):
        validate_field(key, KEY)


def test_json_schema_does_not_depend_on_normalize() -> None:
    provider = _with(api_key=_bare_key, team=str.lower)
    assert json_schema(provider) == json_schema(PROVIDER)


def test_supplied_values_are_normalized_and_a_broken_normalize_supplies_nothing() -> None:
    provider = Provider(
        id="acme",
        name="Acme",
        fields=[
            Field("address", "Address", fills=lambda value: {"region": "in EU", "team": "t"}),
            Field(
                "region",
                "Region",
                kind="choice",
                choices=["us", "eu"],
                required=False,
                normalize=lambda value: value.removeprefix("in "),
            ),
            Field("team", "Team", required=False, normalize=_raises(RuntimeError())),
            Field("api_key", "API Key", kind="secret"),
        ],
        guide=Guide(),
        hosts=["api.acme.test"],
    )

    assert provider.supplied("address", "anything") == {"region": "eu"}
