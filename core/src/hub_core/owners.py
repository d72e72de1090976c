"""Owners: the host application's id (and name) of whom a linked account is for.

An owner is set by the host's server code (a host session, `hub link-url --owner`), never by
the person who links, and scopes the account: one identity linked for two owners is two
accounts, and one owner's account is not found for another.
"""

from __future__ import annotations

__all__ = ["OWNER_LIMIT", "check_owner", "clean_owner_name"]

#: The longest owner id and owner name a store keeps.
OWNER_LIMIT = 200


def check_owner(owner: str | None) -> str | None:
    """Return *owner* (a host's opaque id of whom an account is for) or raise `ValueError`.

    An owner is set by the host's server code, never by the person linking, so a bad one is a
    programming error: not a string, empty, longer than `OWNER_LIMIT`, or holding a control
    or format character (it would reach a terminal or a page otherwise).
    """
    if owner is None:
        return None
    if not isinstance(owner, str) or not owner.strip():
        raise ValueError("owner must be a non-empty string (the host's id of the person)")
    return _check_text("owner", owner)


def clean_owner_name(name: str | None) -> str | None:
    """Return *name* (a host's display name of an owner), None for an empty one, or raise."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValueError("owner_name must be a string")
    return _check_text("owner_name", name) or None


def _check_text(what: str, value: str) -> str:
    if len(value) > OWNER_LIMIT:
        raise ValueError(f"{what} may be at most {OWNER_LIMIT} characters long")
    # Stricter than display_text's rule: one line, so no tab or line break either.
    if not value.isprintable():
        raise ValueError(f"{what} must not hold control or format characters")
    return value
