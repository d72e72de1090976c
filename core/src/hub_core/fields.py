"""Field validation from a provider's schema, and its export to JSON Schema.

Every value is checked before any request is made, and every problem of one submission is
reported at once, each on its own field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import FieldError
from .model import Credentials, Field, Provider

__all__ = ["json_schema", "validate_field", "validate_values"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Characters that have no place in a typed value: they split headers (CR, LF), end C strings
# (NUL), or hide text (bidi overrides, zero-width characters).
_INVISIBLE = {"\u2028", "\u2029", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}


def _forbidden_character(value: str) -> str | None:
    if value.isascii() and value.isprintable():  # the usual key: no control character at all
        return None
    for char in value:
        category = unicodedata.category(char)
        if (
            category in ("Cc", "Cs")
            or (category == "Cf" and char != "\u00ad")
            or (char in _INVISIBLE)
        ):
            return char
    return None


def _describe(char: str) -> str:
    names = {"\r": "a carriage return", "\n": "a line break", "\t": "a tab", "\x00": "a NUL byte"}
    return names.get(char, f"the invisible character U+{ord(char):04X}")


def _check(field: Field, value: str) -> str:
    """Return the normalised value of *field*, or raise ValueError with the message."""
    bad = _forbidden_character(value)
    if bad is not None:
        raise ValueError(f"{field.label} contains {_describe(bad)}; type or paste it again")
    if len(value) > field.max_length:
        raise ValueError(
            f"{field.label} is too long ({len(value)} characters, at most {field.max_length})"
        )
    if field.kind == "choice":
        # A person may type the value ("eu") or the label they read ("Europe"), in any case.
        names = {choice.label.casefold(): choice.value for choice in field.choices}
        names.update({choice.value.casefold(): choice.value for choice in field.choices})
        found = names.get(value.casefold())
        if found is None:
            allowed = ", ".join(choice.value for choice in field.choices)
            raise ValueError(f"{field.label} must be one of: {allowed}")
        value = found
    if field.kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{field.label} must be a web address starting with https://")
    if field.pattern is not None and not re.fullmatch(field.pattern, value):
        if field.secret:
            raise ValueError(f"{field.label} does not have the expected format")
        raise ValueError(f"{field.label} does not have the expected format: {value!r}")
    return value


def validate_field(field: Field, raw: str) -> str:
    """Validate one typed value of *field*; return it normalised or raise `FieldError`.

    For forms and prompts that check a value as soon as it is entered.
    """
    value = raw.strip()
    if not value:
        if field.default is not None:
            return field.default
        if field.required:
            raise FieldError(field.name, f"{field.label} is required")
        return ""
    try:
        return _check(field, value)
    except ValueError as exc:
        raise FieldError(field.name, str(exc)) from None


def validate_values(provider: Provider, values: Mapping[str, Any]) -> Credentials:
    """Validate the submitted *values* against *provider*'s fields.

    Strips surrounding whitespace, applies defaults, resolves choices case-insensitively, and
    refuses missing required values, unknown fields, values that are too long, do not match
    the field's pattern, or contain control characters. Raise `FieldError` naming every field
    at fault; return the `Credentials` otherwise.
    """
    errors: dict[str, str] = {}
    known = {field.name for field in provider.fields}
    for name in values:
        if name not in known:
            errors[str(name)] = (
                f"{provider.name} has no field {name!r}; its fields are: {', '.join(sorted(known))}"
            )
    clean: dict[str, str] = {}
    for field in provider.fields:
        raw = values.get(field.name)
        if raw is not None and not isinstance(raw, str):
            errors[field.name] = f"{field.label} must be text"
            continue
        try:
            value = validate_field(field, raw or "")
        except FieldError as exc:
            errors[field.name] = exc.message
            continue
        if value:
            clean[field.name] = value
    if errors:
        raise FieldError.many(errors)
    return Credentials(clean, secret=provider.secret_fields)


def _field_schema(field: Field) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "title": field.label, "maxLength": field.max_length}
    if field.help:
        schema["description"] = field.help
    if field.placeholder:
        schema["examples"] = [field.placeholder]
    if field.default is not None:
        schema["default"] = field.default
    if field.pattern is not None:
        # JSON Schema patterns are not anchored; ours must match the whole value.
        schema["pattern"] = f"^(?:{field.pattern})$"
    if field.kind == "secret":
        schema.update(writeOnly=True, format="password")
    elif field.kind == "url":
        schema["format"] = "uri"
    elif field.kind == "choice":
        schema["oneOf"] = [{"const": c.value, "title": c.label} for c in field.choices]
        if not field.required or field.default is not None:
            # A form posts "" for an untouched optional choice; validation accepts it too.
            schema["oneOf"].append({"const": "", "title": "(none)"})
    if field.required and field.default is None:
        schema["minLength"] = 1
    return schema


def json_schema(provider: Provider) -> dict[str, Any]:
    """Return the link form of *provider* as a JSON Schema (draft 2020-12) object schema."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:hub:provider:{provider.id}",
        "title": provider.name,
        "type": "object",
        "properties": {field.name: _field_schema(field) for field in provider.fields},
        "required": [f.name for f in provider.fields if f.required and f.default is None],
        "additionalProperties": False,
    }
