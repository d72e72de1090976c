"""The Connect and Relink forms: fields from a provider's schema, values and errors kept.

A submitted form is read into `Submission` (only the provider's own fields, text only);
`FormView` is what the template draws, with each message under its field. Secret values are
never put back into a form, on any path.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import attrs

from hub_core.errors import FieldError, HubError
from hub_core.model import Field, Provider

__all__ = ["FieldView", "FormView", "Outcome", "OutcomeBook", "form_view", "submitted_values"]


@attrs.frozen
class FieldView:
    """One input of a form, as the template draws it."""

    name: str
    label: str
    kind: str
    required: bool
    help: str | None
    placeholder: str | None
    choices: tuple[tuple[str, str], ...]
    #: The value to show again (never a secret's).
    value: str
    error: str | None
    #: Shown under a secret input: why it is empty.
    secret_note: str | None = None

    @property
    def secret(self) -> bool:
        """Whether the input is a password input."""
        return self.kind == "secret"

    @property
    def input_type(self) -> str:
        """The ``type`` of the ``<input>``."""
        return {"secret": "password", "url": "url"}.get(self.kind, "text")


@attrs.frozen
class FormView:
    """A whole form: its fields, the errors summary and its one-time token."""

    fields: tuple[FieldView, ...]
    form_id: str
    errors: tuple[tuple[str, str, str], ...] = ()  # (field name, label, message)


def form_view(
    provider: Provider,
    values: Mapping[str, str] | None = None,
    error: HubError | None = None,
    *,
    secret_note: str | None = None,
) -> FormView:
    """The form of *provider*, with *values* (secrets dropped) and the messages of *error*."""
    values = values or {}
    by_field: dict[str, str] = {}
    if isinstance(error, FieldError):
        by_field = dict(error.errors)
    elif error is not None and error.field:
        by_field = {error.field: error.message}
    known = {field.name for field in provider.fields}
    fields = []
    for field in provider.fields:
        message = by_field.get(field.name)
        note = secret_note
        if field.secret and error is not None:
            note = "Paste the key again: hub never shows a key back."
        fields.append(
            FieldView(
                name=field.name,
                label=field.label,
                kind=field.kind,
                required=field.required,
                help=field.help,
                placeholder=field.placeholder,
                choices=tuple((c.value, c.label) for c in field.choices),
                value="" if field.secret else values.get(field.name, field.default or ""),
                error=message,
                secret_note=note if field.secret else None,
            )
        )
    summary = tuple(
        (name, provider.field(name).label, message)
        for name, message in by_field.items()
        if name in known
    )
    return FormView(tuple(fields), new_form_id(), summary)


def new_form_id() -> str:
    """A fresh one-time token for a rendered form."""
    return secrets.token_urlsafe(16)


def submitted_values(provider: Provider, form: Mapping[str, Any]) -> dict[str, str]:
    """The provider's fields from a submitted form, empty ones left out, fills applied.

    A field whose value supplies others (`Field.fills`: a pasted tenant address names the
    region) fills only the fields left empty.
    """
    values: dict[str, str] = {}
    for field in provider.fields:
        raw = form.get(field.name)
        if isinstance(raw, str) and raw.strip():
            values[field.name] = raw
    for field in provider.fields:
        if _fills(field) and field.name in values:
            for name, value in provider.supplied(field.name, values[field.name]).items():
                values.setdefault(name, value)
    return values


def _fills(field: Field) -> bool:
    return field.fills is not None and not field.secret


@attrs.frozen
class Outcome:
    """What one submitted form came to: an account (and whether it was known) or an error."""

    account_id: str | None = None
    updated: bool = False
    error: HubError | None = None
    #: The non-secret values, to draw the form again on an error.
    values: Mapping[str, str] = attrs.field(factory=dict)


class OutcomeBook:
    """The outcome of each form token, so a resubmitted form gets the first one's outcome.

    Keyed by the form's one-time token and a keyed digest of what was submitted: the same
    form sent twice (a double click, a reload, Back then submit) makes one check and both
    answers show its outcome; the same form sent with other values is a new attempt. Holds
    no secret (the digest is an HMAC under a per-app key) and at most *size* entries.
    """

    def __init__(self, *, size: int = 2000, ttl: float = 3600.0) -> None:
        self._key = secrets.token_bytes(32)
        self._size = size
        self._ttl = ttl
        self._entries: collections.OrderedDict[str, tuple[float, Outcome | None]] = (
            collections.OrderedDict()
        )

    def key(self, scope: str, form_id: str, values: Mapping[str, str]) -> str:
        """The entry of this form token and these values, within *scope* (a session)."""
        body = json.dumps([scope, form_id, sorted(values.items())]).encode()
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def begin(self, key: str) -> bool:
        """Claim *key* for a new attempt; False when it was claimed before."""
        self._expire()
        if key in self._entries:
            return False
        self._entries[key] = (time.monotonic(), None)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return True

    def finish(self, key: str, outcome: Outcome) -> None:
        """Record the outcome of the attempt that claimed *key*."""
        self._entries[key] = (time.monotonic(), outcome)

    def forget(self, key: str) -> None:
        """Drop *key* (the attempt was refused before it started)."""
        self._entries.pop(key, None)

    async def wait(self, key: str, *, timeout: float) -> Outcome | None:
        """The outcome of *key*, waiting for a running attempt; None if it is unknown."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] is not None:
                return entry[1]
            if time.monotonic() >= deadline:
                return None
            # The first attempt runs on this loop (or, under a test client, another one):
            # polling works for both, and a double submit is rare.
            await asyncio.sleep(0.05)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._ttl
        while self._entries:
            first = next(iter(self._entries.values()))
            if first[0] >= cutoff:
                break
            self._entries.popitem(last=False)
