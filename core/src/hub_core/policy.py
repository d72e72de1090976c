"""The flow driver's limits: timeouts, retries, redirects, body size.

Apart from the driver (`hub_core.flows`), so that a `Policy` can be built and read (by a host
app, by `hub_core.testing`) without the driver's internals.
"""

from __future__ import annotations

import random

import attrs
import httpx

__all__ = ["DEFAULT_TIMEOUT", "MiB", "Policy"]

MiB = 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def _timeout(value: float | httpx.Timeout) -> httpx.Timeout:
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


@attrs.frozen
class Policy:
    """The driver's limits for every check of a `Hub`: ``Hub(policy=Policy(retries=0))``.

    Change one limit of an existing policy with ``attrs.evolve(policy, flow_timeout=10.0)``.
    """

    #: Per-request timeouts (connect, read, write, pool), in seconds; a number sets all four.
    #: Async checks bound each request as a whole by connect + read instead: one timer per
    #: request, which thousands of checks feel.
    timeout: httpx.Timeout = attrs.field(default=DEFAULT_TIMEOUT, converter=_timeout)
    #: The whole flow, every request, redirect, retry and wait included, in seconds.
    flow_timeout: float = 30.0
    #: Extra attempts after a connection error, a timeout or a 502/503/504 on GET, or a 429.
    retries: int = 2
    #: First backoff in seconds; it doubles each attempt, with full jitter, up to `max_backoff`.
    backoff: float = 0.25
    #: The longest wait between two attempts, in seconds.
    max_backoff: float = 4.0
    #: The longest Retry-After hub waits for, in seconds; a longer one ends in `RateLimited` at
    #: once.
    max_retry_after: float = 30.0
    #: Same-origin redirects the driver follows for one request; one more is an error.
    max_redirects: int = 5
    #: The largest response body, in bytes (after decompression), a flow gets to read.
    max_body: int = 1 * MiB
    #: Requests one flow may yield; a flow stuck in a loop must not flood a provider.
    max_requests: int = 25

    def backoff_delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before retry number *attempt* (1-based)."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
