"""The status of a linked account: a plain enum, cheap to import (the CLI's options use it)."""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.StrEnum):
    """The state of a linked account after its last check."""

    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    INVALID = "invalid"
    DENIED = "denied"
    ERROR = "error"
    #: hub cannot use the account as stored: its row was changed outside hub, or its key does
    #: not decrypt with the store's secret key. Nothing is checked; unlink or relink it.
    DAMAGED = "damaged"
