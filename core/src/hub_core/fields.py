"""Field validation from a provider's schema, and its export to JSON Schema.

Every value is checked before any request is made, and every problem of one submission is
reported at once, each on its own field.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import FieldError, PluginError, redact
from .model import Choice, Credentials, Field, Provider

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


@functools.lru_cache(maxsize=256)
def _choice_names(choices: tuple[Choice, ...]) -> dict[str, str]:
    """What a person may type for a choice, folded, to its value: the value ("eu") or the
    label they read ("Europe"), in any case. Made once per set of choices: every check of a
    stored account validates its choice again."""
    names = {choice.label.casefold(): choice.value for choice in choices}
    names.update({choice.value.casefold(): choice.value for choice in choices})
    return names


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
        found = _choice_names(field.choices).get(value.casefold())
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


def _normalized(field: Field, normalize: Callable[[str], str], value: str) -> str:
    """*value* as *field*'s ``normalize`` gives it back, stripped; `FieldError` if refused.

    The function is a plugin's code: its FieldError or ValueError is the field's error (masked
    by the typed value for a secret field, which the message may quote); anything else it
    raises or returns is its bug, reported without the value. A real Ctrl-C goes through.
    """
    try:
        result = normalize(value)
    except (FieldError, ValueError) as exc:
        message = _message(exc, field.name) or f"{field.label} is not valid"
        if field.secret:
            message = redact(message, [value])
        raise FieldError(field.name, message) from None
    except BaseException as exc:  # a SystemExit too: a broken plugin stops no one
        # Told from a plugin's own KeyboardInterrupt where the caller watches for Ctrl-C, as
        # every check does (`watching_interrupts`); elsewhere it is taken for a real one.
        # Not opened here: it would cost each check's validation microseconds.
        from .plugins import is_interrupt

        if is_interrupt(exc):
            raise
        raise PluginError(
            f"the normalize function of field {field.name!r} failed "
            f"({type(exc).__name__}); this is a bug in the plugin"
        ) from None
    if not isinstance(result, str):
        raise PluginError(
            f"the normalize function of field {field.name!r} returned "
            f"{type(result).__name__}, not a string; this is a bug in the plugin"
        )
    return str.strip(result)


def _message(exc: FieldError | ValueError, name: str) -> str:
    """What a normalize function's *exc* says about field *name*; "" when it says nothing."""
    try:
        text = exc.errors.get(name, exc.message) if isinstance(exc, FieldError) else str(exc)
    except Exception:  # a plugin's exception: its __str__ may fail too
        return ""
    return text.strip() if isinstance(text, str) else ""


def default_problem(field: Field) -> str | None:
    """Why *field*'s default fails the field's own check (pattern, length, characters, kind),
    or None: a default is used as it is, so `Field` refuses one that would be refused typed."""
    if field.default is None:
        return None
    try:
        _check(field, field.default)
    except ValueError as exc:
        return str(exc)
    return None


def validate_field(field: Field, raw: str) -> str:
    """Validate one typed value of *field*; return it normalised or raise `FieldError`.

    For forms and prompts that check a value as soon as it is entered. The field's
    ``normalize`` function, if any, turns the stripped value into the one checked and kept; a
    broken one raises `PluginError`.
    """
    value = raw.strip()
    if value and field.normalize is not None and _forbidden_character(value) is None:
        # A control or invisible character is refused as typed, by `_check` below: the
        # plugin's function never sees one, and the message says which character it is.
        value = _normalized(field, field.normalize, value)
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

    Strips surrounding whitespace, applies each field's ``normalize`` and defaults, resolves
    choices case-insensitively, and refuses missing required values, unknown fields, values
    that are too long, do not match the field's pattern, or contain control characters. Raise
    `FieldError` naming every field at fault (`PluginError` for a broken ``normalize``);
    return the `Credentials` otherwise.
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
