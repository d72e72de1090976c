"""The flow driver's limits: timeouts, retries, redirects, body size.

Apart from the driver (`hub_core.flows`), so that building a `Hub` loads neither the driver
nor its transports: commands that never check a key start faster.
"""

from __future__ import annotations

import random

import attrs
import httpx

__all__ = ["DEFAULT_TIMEOUT", "MiB", "Policy"]

MiB = 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@attrs.frozen
class Policy:
    """The driver's limits. `Hub` builds one from its keyword arguments."""

    #: Per-request timeouts (connect, read, write, pool). Async checks bound each request as a
    #: whole by connect + read instead: one timer per request, which thousands of checks feel.
    timeout: httpx.Timeout = DEFAULT_TIMEOUT
    #: The whole flow, every request, redirect, retry and wait included, in seconds.
    flow_timeout: float = 30.0
    #: Extra attempts after a connection error, a timeout or a 502/503/504 on GET, or a 429.
    retries: int = 2
    #: First backoff in seconds; it doubles each attempt, with full jitter, up to `max_backoff`.
    backoff: float = 0.25
    max_backoff: float = 4.0
    #: The longest Retry-After hub waits for; a longer one ends in `RateLimited` at once.
    max_retry_after: float = 30.0
    max_redirects: int = 5
    max_body: int = 1 * MiB
    #: Requests one flow may yield; a flow stuck in a loop must not flood a provider.
    max_requests: int = 25

    def backoff_delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before retry number *attempt* (1-based)."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
