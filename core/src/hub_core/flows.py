"""The flow driver: runs a plugin's verification flow over real HTTP, with every guarantee.

The policy is written once, sans I/O: `drive` is a generator of actions (`Send` a request,
`Sleep` a while) that enforces HTTPS and the provider's host allowlist, follows same-origin
redirects, retries, honours Retry-After and wraps plugin failures. Three small runners execute
those actions, each capping response bodies and the flow's total time: `run_sync` over an
`httpx.Client`, `run_async` over an `AsyncSender`, and `run_scripted` over a test's scripted
answers on a virtual clock (the plugin kit, `hub_core.testing`), so a flow under test sees
exactly what it sees in production.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import socket
import ssl
import time
import traceback
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote

import attrs
import httpx

from .errors import (
    RETRY_AFTER_MAX,
    HubError,
    PluginError,
    ProviderUnavailable,
    RateLimited,
    Redactor,
    UnexpectedResponse,
    describe,
    redact,
    redactor,
    scrub_chain,
    storable,
)
from .hookspecs import Flow
from .model import Provider, Verified
from .plugins import is_interrupt
from .policy import Policy
from .transports import (
    USER_AGENT,
    BodyDecoder,
    ProxyUnreachable,
    ResponseTooLarge,
    UnreadableBody,
    accept_encoding,
    content_codings,
    declared_length,
    decode_whole,
    finished_response,
    flow_deadline,
)
from .transports import causes as _causes

if TYPE_CHECKING:
    from .transports import AsyncSender

__all__ = ["Answer", "Policy", "Send", "Sleep", "drive", "run_async", "run_scripted", "run_sync"]

log = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRY_CODES = frozenset({502, 503, 504})
RETRYABLE_REASONS = frozenset({"connect", "timeout", "protocol"})
_TIMER_SLACK = 0.01


@attrs.frozen
class Send:
    """Action: send this request and send back the response (body read, capped, decoded)."""

    request: httpx.Request


@attrs.frozen
class Sleep:
    """Action: wait this many seconds, then send back None."""

    seconds: float


Action: TypeAlias = Send | Sleep
Driver: TypeAlias = Generator[Action, Any, Verified]


# --- the policy, sans I/O ------------------------------------------------------------------


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return (url.scheme, url.raw_host.lower(), url.port)


def check_request(
    provider: Provider, plugin: str, request: object, secrets: Iterable[str] | Redactor = ()
) -> httpx.Request:
    """Refuse, before any byte leaves, a request the provider's allowlist does not permit.

    Secrets may travel in headers or a body, never in the URL: URLs end up in logs (httpx
    logs each one at INFO), proxies and browser histories.
    """
    if not isinstance(request, httpx.Request):
        raise PluginError(
            f"the plugin {plugin} yielded {type(request).__name__}, not an httpx.Request",
            plugin=plugin,
        )
    url = request.url
    host = url.raw_host.decode("ascii", "replace").lower()
    if url.scheme != "https":
        raise PluginError(
            f"the plugin {plugin} asked to send a request to {host or 'a URL'} over "
            f"{url.scheme or 'no scheme'}; hub sends keys over HTTPS only",
            plugin=plugin,
        )
    if url.userinfo or url.port not in (None, 443) or not provider.allows_host(host):
        raise PluginError(
            f"the plugin {plugin} asked to send a request to {host}{_port(url)}, which is not "
            f"among the hosts {provider.name} declares ({', '.join(provider.hosts)}); "
            "the request was not sent",
            plugin=plugin,
        )
    named = request.headers.get("host")
    if named is not None and named.lower() != url.netloc.decode("ascii", "replace").lower():
        # The connection goes to the URL's host, but a server (a CDN in front of many sites)
        # routes by this header: the key would reach whatever site it names.
        raise PluginError(
            f"the plugin {plugin} set the Host header of a request to {host} to another "
            "host; hub sends a request only to the host of its address, so it was not sent",
            plugin=plugin,
        )
    if _holds_secret(url, secrets):
        raise PluginError(
            f"the plugin {plugin} put a secret into the address of a request to {host}; "
            "secrets may only be sent in headers or the body, so the request was not sent",
            plugin=plugin,
        )
    return request


def _holds_secret(url: httpx.URL, secrets: Iterable[str] | Redactor) -> bool:
    """Whether *url* holds a secret, or a piece of one, percent-encoded or not."""
    target = str(url)
    if "%" in target:
        target = unquote(target)
    return redact(target, secrets) != target


def _port(url: httpx.URL) -> str:
    return f":{url.port}" if url.port not in (None, 443) else ""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date); None when absent or unreadable.

    At most `RETRY_AFTER_MAX` (a day): a longer wait, or digits past what a float holds,
    is a day.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, float("²") fails
        return min(float(value), RETRY_AFTER_MAX)  # float("9" * 400) is inf
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()), RETRY_AFTER_MAX)


def _wait_text(seconds: float | None) -> str:
    if seconds is None:
        return "try again in a few minutes"
    if seconds < 90:
        return f"try again in {max(1, round(seconds))} seconds"
    if seconds < 90 * 60:
        return f"try again in {round(seconds / 60)} minutes"
    return f"try again in about {round(seconds / 3600)} hours"


def _redirect_target(provider: Provider, url: httpx.URL, location: str) -> httpx.URL:
    """Where a redirect from *url* leads; `UnexpectedResponse` unless it is the same origin.

    The provider chose the address, not the plugin, so a refusal names the provider. The
    Location itself is never quoted: it may carry anything, the key included.
    """
    try:
        target = url.join(location)
        same = _origin(target) == _origin(url) and not target.userinfo
        host = target.host  # decoding an IDN label can fail here too
    except (httpx.InvalidURL, ValueError):  # IDNA errors are ValueErrors
        raise _unreadable_redirect(provider, url) from None
    if same:
        return target
    if target.scheme not in ("https", "http") or not host:  # javascript:, data:, ftp:
        raise _unreadable_redirect(provider, url)
    if target.scheme != "https":
        where = "an unencrypted http:// address"
    elif target.userinfo:
        where = "an address with a user name in it"
    else:
        where = host + _port(target)
    raise UnexpectedResponse(
        f"{provider.name} redirected the check from {url.host} to {where}; hub follows "
        f"redirects only within https://{url.host}{_port(url)}, so the key was not sent there"
    )


def _unreadable_redirect(provider: Provider, url: httpx.URL) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"{provider.name} redirected the check from {url.host} to an address hub cannot "
        "use, so the key was not sent there"
    )


def _redirected(request: httpx.Request, status: int, url: httpx.URL) -> httpx.Request:
    method = request.method
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    content = request.content if method == request.method else b""
    headers = httpx.Headers(request.headers)
    headers.pop("host", None)
    if not content:
        headers.pop("content-length", None)
        headers.pop("content-type", None)
    return httpx.Request(
        method, url, headers=headers, content=content or None, extensions=request.extensions
    )


def exchange(
    policy: Policy,
    provider: Provider,
    plugin: str,
    request: httpx.Request,
    secrets: Iterable[str] | Redactor = (),
) -> Generator[Action, Any, httpx.Response]:
    """One request of a flow, from the driver's side: send, follow, retry; the final response."""
    check_request(provider, plugin, request, secrets)
    attempt = redirects = 0
    while True:
        try:
            response: httpx.Response = yield Send(request)
        except ProviderUnavailable as exc:
            if (
                exc.reason in RETRYABLE_REASONS
                and request.method == "GET"
                and attempt < policy.retries
            ):
                attempt += 1
                yield Sleep(policy.backoff_delay(attempt))
                continue
            raise
        status = response.status_code
        if status in RETRY_CODES and request.method == "GET" and attempt < policy.retries:
            attempt += 1
            yield Sleep(policy.backoff_delay(attempt))
            continue
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if attempt < policy.retries and (wait is None or wait <= policy.max_retry_after):
                attempt += 1
                yield Sleep(policy.backoff_delay(attempt) if wait is None else wait)
                continue
            raise RateLimited(
                f"{provider.name} is limiting how often keys can be checked; {_wait_text(wait)}",
                retry_after=wait,
            )
        location = response.headers.get("location") if status in REDIRECT_CODES else None
        if location:
            redirects += 1
            target = _redirect_target(provider, request.url, location)
            if redirects > policy.max_redirects:
                raise UnexpectedResponse(
                    f"{provider.name} redirected the check more than {policy.max_redirects} times"
                )
            if _holds_secret(target, secrets):  # the provider chose the address, not the plugin
                raise UnexpectedResponse(
                    f"{provider.name} redirected the check to an address that holds the key; "
                    "it was not sent there"
                )
            request = check_request(provider, plugin, _redirected(request, status, target), secrets)
            continue
        return response


def _at_own_yield(exc: BaseException) -> bool:
    """Whether *exc* was raised in `drive`'s own frame (at its yield), not in the flow's.

    How the driver's own close is told from a flow raising GeneratorExit: the one raised by
    ``close()`` at ``yield from exchange(...)`` has no frame past the driver's; one out of
    the flow has the flow's. (Whether the flow is still suspended cannot tell: when a stopped
    check is garbage-collected, the flow may be finalized before the driver is closed.)
    """
    return exc.__traceback__ is not None and exc.__traceback__.tb_next is None


def _close(flow: Flow, plugin: str, secrets: Iterable[str] | Redactor) -> None:
    """Close *flow*: whatever its clean-up raises, but a `HubError`, is the plugin's failure."""
    try:
        flow.close()
    except HubError:
        raise
    except BaseException as exc:
        if is_interrupt(exc):
            raise
        failure = _plugin_failure(plugin, exc, secrets)
        raise failure from failure.__cause__


def _plugin_failure(
    plugin: str, exc: BaseException, secrets: Iterable[str] | Redactor
) -> PluginError:
    """The `PluginError` of *exc*, with *exc* chained as its cause (raise it ``from`` that).

    The original stays chained for debugging, masked with every exception behind it (the
    plugin's flow may have caught one quoting the key), so no traceback shows a key.
    """
    detail = redact(describe(exc), secrets)
    error = PluginError(
        f"the plugin {plugin} failed while checking the key ({detail}); this is a bug in the "
        "plugin, please report it to its authors",
        plugin=plugin,
    )
    error.__cause__ = exc
    scrub_chain(error, secrets)
    return error


def drive(
    policy: Policy, provider: Provider, plugin: str, flow: Flow, secrets: Iterable[str] = ()
) -> Driver:
    """Run *flow* as a generator of actions; return its `Verified`.

    Errors of the exchange (unreachable provider, rate limit, a redirect elsewhere) are thrown
    into the flow at its ``yield``, so the flow may translate them; forbidden requests are not.
    Exceptions from plugin code other than `HubError` become `PluginError`, and every secret
    is masked in whatever error leaves.
    """
    # One Redactor for the whole check (its request, its errors, its result): built once here,
    # not looked up again in `redactor`'s small cache at each step, which `check_many`'s
    # interleaved checks (50 or more at once, each with its own key) kept evicting.
    mask = redactor(secrets)
    status: int | None = None
    try:
        try:
            request = next(flow)
            for _ in itertools.count(1):
                if _ > policy.max_requests:
                    raise PluginError(
                        f"the plugin {plugin} asked for more than {policy.max_requests} requests "
                        "in one check; it was stopped",
                        plugin=plugin,
                    )
                try:
                    response = yield from exchange(policy, provider, plugin, request, mask)
                except PluginError:
                    raise
                except HubError as exc:
                    request = flow.throw(exc)
                else:
                    status = response.status_code
                    request = flow.send(response)
        except StopIteration as stop:
            result = stop.value
        except HubError:
            raise
        except Exception as exc:
            if not _not_json(exc):
                failure = _plugin_failure(plugin, exc, mask)
                raise failure from failure.__cause__
            # response.json() on a body that is not JSON: the provider's answer is at fault.
            answered = f" (HTTP {status})" if status else ""
            raise UnexpectedResponse(
                f"{provider.name} answered{answered} with something that is not JSON; "
                "it may be having problems, try again later"
            ) from exc
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt, GeneratorExit or the plugin's own BaseException,
            # out of the flow: a broken plugin, like any other exception. Let through a real
            # Ctrl-C, and this driver's own close (a GeneratorExit raised at its yield).
            if is_interrupt(exc) or (isinstance(exc, GeneratorExit) and _at_own_yield(exc)):
                raise
            failure = _plugin_failure(plugin, exc, mask)
            raise failure from failure.__cause__
        finally:
            _close(flow, plugin, mask)
    except HubError as exc:
        exc.redacted(mask)
        scrub_chain(exc, mask)  # what the flow raised it from (or while handling) may quote one
        raise
    if not isinstance(result, Verified):
        raise PluginError(
            f"the plugin {plugin} finished the check with {type(result).__name__}, not Verified",
            plugin=plugin,
        )
    return _clean_result(provider, plugin, result, mask)


def _not_json(exc: BaseException) -> bool:
    """Whether *exc* is what ``response.json()`` raises on a body that is not JSON: not
    JSON text, not UTF-8 (``UnicodeDecodeError``), or nested deeper than Python's stack
    (``RecursionError``, raised inside the json module, not by the plugin's own code)."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return True
    if not isinstance(exc, RecursionError):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(("json/decoder.py", "json/__init__.py"))


#: How deep `Verified.details` may nest: facts for a display, not a provider's whole answer.
DETAILS_DEPTH = 32
# Python refuses to write an int of more than 4,300 digits (about 14,284 bits) as text.
_INT_BITS = 14_000


def _clean_result(
    provider: Provider, plugin: str, result: Verified, secrets: Iterable[str] | Redactor
) -> Verified:
    """The flow's `Verified`, fit to show and to store, whatever the plugin copied into it.

    A plugin may copy what the provider answered, the key echoed back included, into its
    result. So every string of it (label, identity, each key and value of ``details``,
    ``config``) is made `storable`, and every secret of the check masked, in all the forms
    `redact` knows. A masked identity or field value would no longer name what the key
    reaches, so a secret there refuses the result (`UnexpectedResponse`) and nothing is
    stored. ``details`` must be JSON: anything else is the plugin's bug (`PluginError`).
    A result that needs none of this is returned as it is.
    """
    mask = redactor(secrets)
    identity, label = storable(result.identity), storable(result.label)
    config: dict[str, str] = {}
    for name, value in result.config.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise PluginError(
                f"the plugin {plugin} finished the check with a config value that is not a "
                f"string ({type(value).__name__}); this is a bug in the plugin, please report "
                "it to its authors",
                plugin=plugin,
            )
        config[storable(name)] = storable(value)
    texts = [identity, label, *config, *config.values()]

    def noted(text: str) -> str:
        texts.append(text := storable(text))
        return text

    details = _json_details(plugin, result.details, noted)
    # A piece of a key in one of the strings is also in the strings joined, in every form
    # `redact` knows (folding and the quick test read a text a character at a time), so one
    # question to *mask* clears the whole result; only a result holding key material (or a
    # word that happens to match) is looked at string by string.
    joined = "\n".join(texts)
    if mask(joined) != joined:
        if mask.find(identity) is not None:
            raise UnexpectedResponse(
                f"{provider.name}'s answer repeats the key inside the identity of what the "
                "key reaches; nothing was stored"
            )
        if any(mask.find(text) is not None for pair in config.items() for text in pair):
            raise UnexpectedResponse(
                f"{provider.name}'s answer repeats the key inside the account's settings; "
                "nothing was stored"
            )
        label = storable(mask(label))
        details = _json_details(plugin, result.details, lambda text: storable(mask(text)))
    unchanged = (
        identity is result.identity
        and label is result.label
        and details is result.details
        and all(config.get(name) is value for name, value in result.config.items())
    )
    if unchanged:  # nothing to clean: no copy, no second validation
        return result
    return attrs.evolve(result, identity=identity, label=label, details=details, config=config)


class _NotJson(Exception):
    """A value of ``details`` JSON cannot hold; *path* is where, built on the way out."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


def _json_details(plugin: str, details: object, each: Callable[[str], str]) -> Any:
    """*details* as JSON data, each string (key or value) as *each* gives it back; *details*
    itself when nothing changed (*each* gives back the same object for a string it keeps)."""
    try:
        return _clean_json(details, each, 0)
    except _NotJson as exc:
        where = "details" + "".join(reversed(exc.path))
        raise PluginError(
            f"the plugin {plugin} finished the check with details that are not "
            f"JSON-serialisable ({exc.what} at {where}), so hub cannot store them; this is a "
            "bug in the plugin, please report it to its authors",
            plugin=plugin,
        ) from None


def _clean_json(value: object, each: Callable[[str], str], depth: int) -> Any:
    """*value* as storable JSON data, the same object when it already is one.

    Where it went wrong is added to `_NotJson` as it propagates: building a path for every
    value (most results hold no fault) was a fifth of cleaning a result.
    """
    if isinstance(value, str):
        return each(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value.bit_length() <= _INT_BITS:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN nor infinity
    if isinstance(value, dict | list | tuple) and depth >= DETAILS_DEPTH:
        raise _NotJson(f"nested more than {DETAILS_DEPTH} deep")
    if isinstance(value, dict):
        out = {}
        same = type(value) is dict
        for key, item in value.items():
            if isinstance(key, str):
                name = _clean_json(key, each, depth)
            elif key is None or isinstance(key, bool | int | float):
                name, same = json.dumps(key), False  # the name JSON gives it
            else:
                raise _NotJson(f"{_a(key)} as a key")
            try:
                cleaned = _clean_json(item, each, depth + 1)
            except _NotJson as exc:
                exc.path.append(f"[{name!r}]")
                raise
            out[name] = cleaned
            same = same and name is key and cleaned is item
        return value if same else out
    if isinstance(value, list | tuple):
        items = []
        same = type(value) is list
        for index, item in enumerate(value):
            try:
                cleaned = _clean_json(item, each, depth + 1)
            except _NotJson as exc:
                exc.path.append(f"[{index}]")
                raise
            items.append(cleaned)
            same = same and cleaned is item
        return value if same else items
    raise _NotJson(_a(value))


def _a(value: object) -> str:
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


# --- the runners ---------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """Why a request failed, from the whole cause chain, most specific first.

    Transports wrap errors differently (httpx chains the OSError as a cause, aiohttp keeps it
    in ``os_error``, an adapter may map every connection error to one type), so the outermost
    type alone could call a bad certificate a timeout.
    """
    chain = list(_causes(exc))
    names = " ".join(type(e).__name__ for e in chain)
    if any(isinstance(e, ProxyUnreachable) for e in chain):  # its gaierror is the proxy's name
        return "proxy"
    if any(isinstance(e, socket.gaierror) for e in chain) or "DNS" in names:
        return "unresolved"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "Certificate" in names or "SSL" in names:
        return "tls"
    if any(isinstance(e, httpx.ProxyError) for e in chain) or "Proxy" in names:
        return "proxy"
    if any(isinstance(e, TimeoutError) for e in chain):
        return "timeout"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connect"
    if any(isinstance(e, ConnectionError) for e in chain) or "Disconnected" in names:
        return "protocol"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "protocol"


_REASONS = {
    "unresolved": "the name {host} does not resolve",
    "tls": "the secure connection to {host} could not be verified",
    "proxy": "the HTTPS proxy could not open a connection to {host}",
    "timeout": "{host} did not answer in time",
    "connect": "could not connect to {host}",
    "protocol": "the connection to {host} was cut off",
}


def unavailable(
    provider: Provider, request: httpx.Request, exc: BaseException
) -> ProviderUnavailable:
    """Translate a transport failure into a `ProviderUnavailable` a person can act on.

    A failure to reach the environment's proxy names the proxy and its variable: the
    provider's host was never looked up by hub, so it must not be blamed.
    """
    reason = _reason(exc)
    proxy = next((str(e) for e in _causes(exc) if isinstance(e, ProxyUnreachable)), None)
    what = proxy or _REASONS[reason].format(host=request.url.host)
    return ProviderUnavailable(f"{provider.name} could not be reached: {what}", reason=reason)


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (httpx.TransportError, OSError, TimeoutError)
    try:  # aiohttp is the async transport; not every failure of it is mapped to httpx's.
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        return errors
    return (*errors, aiohttp.ClientError)


def _too_large(provider: Provider, policy: Policy) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"{provider.name} answered with more than {policy.max_body // 1024} KiB; "
        "hub reads no more than that"
    )


def _unreadable(provider: Provider, exc: UnreadableBody) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"{provider.name} answered with a body hub cannot decode: {exc}; it may be having "
        "problems, try again later"
    )


def _prepare(request: httpx.Request, policy: Policy, remaining: float) -> None:
    """Bound each of the request's timeouts by what is left of the flow's time."""
    timeout = {
        k: (min(v, remaining) if v is not None else remaining)
        for k, v in policy.timeout.as_dict().items()
    }
    request.extensions = {**request.extensions, "timeout": timeout}


def _flow_timeout(provider: Provider, policy: Policy) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"{provider.name} did not finish answering within {policy.flow_timeout:g} seconds",
        reason="timeout",
    )


def _log(request: httpx.Request, response: httpx.Response | None, started: float) -> None:
    # Host and path only: a query string or a header may carry a secret.
    if not log.isEnabledFor(logging.DEBUG):
        return
    status = response.status_code if response is not None else "failed"
    elapsed = (time.monotonic() - started) * 1000
    log.debug(
        "%s https://%s%s -> %s (%.0f ms)",
        request.method,
        request.url.host,
        request.url.path,
        status,
        elapsed,
    )


def _next(
    driver: Driver,
    outcome: Any,
    failure: HubError | None,
    deadline: float,
    clock: Callable[[], float],
    provider: Provider,
    policy: Policy,
) -> Action:
    """The driver's next action, given the last outcome; a flow timeout if it cannot fit.

    Raises StopIteration, carrying the `Verified`, when the flow is done. A request leaves
    with its timeouts cut to what remains of the flow's time (*deadline* on *clock*).
    """
    action = driver.send(outcome) if failure is None else driver.throw(failure)
    remaining = deadline - clock()
    too_late = action.seconds >= remaining if isinstance(action, Sleep) else remaining <= 0
    if too_late:
        driver.close()
        raise _flow_timeout(provider, policy)
    if isinstance(action, Send):
        _prepare(action.request, policy, remaining)
    return action


def run_sync(driver: Driver, client: httpx.Client, provider: Provider, policy: Policy) -> Verified:
    """Execute *driver* with blocking I/O over *client*.

    Over hub's own transport (`ProxyRouter`), every socket operation ends by the flow's
    deadline (`flow_deadline`); over another, each request is bounded by its timeouts, cut to
    what is left of the flow's time when it leaves.
    """
    deadline = time.monotonic() + policy.flow_timeout
    with flow_deadline(deadline):
        return _run_sync(driver, client, provider, policy, deadline)


def _run_sync(
    driver: Driver, client: httpx.Client, provider: Provider, policy: Policy, deadline: float
) -> Verified:
    errors = _transport_errors()
    outcome: Any = None
    failure: HubError | None = None
    while True:
        try:
            action = _next(driver, outcome, failure, deadline, time.monotonic, provider, policy)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        outcome, failure = None, None
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            continue
        request = action.request
        if "user-agent" not in request.headers:  # the async senders add it themselves
            request.headers["User-Agent"] = USER_AGENT
        if "accept-encoding" not in request.headers:
            request.headers["Accept-Encoding"] = accept_encoding()
        started = time.monotonic()
        try:
            try:
                response = client.send(request, stream=True, follow_redirects=False)
            except (httpx.RemoteProtocolError, httpx.InvalidURL, ValueError) as exc:
                # httpx builds the next request of a redirect even when not following it, and
                # fails there on a Location it cannot parse: a RemoteProtocolError raised over
                # the InvalidURL, or an IDNA error. Neither is the network's fault.
                if isinstance(exc, httpx.RemoteProtocolError) and not isinstance(
                    exc.__context__, httpx.InvalidURL
                ):
                    raise
                raise _unreadable_redirect(provider, request.url) from None
            try:
                body = _read_body(response, policy.max_body, deadline)
            finally:
                response.close()
            outcome = finished_response(
                request, response.status_code, response.headers.raw, body, response.reason_phrase
            )
            _log(request, outcome, started)
        except ResponseTooLarge:
            failure = _too_large(provider, policy)
        except UnreadableBody as exc:
            failure = _unreadable(provider, exc)
        except TimeoutError:  # _read_body: the flow's time ran out between two chunks
            driver.close()
            raise _flow_timeout(provider, policy) from None
        except HubError as exc:
            failure = exc
        except errors as exc:
            _log(request, None, started)
            failure = unavailable(provider, request, exc)
        # A socket timer may fire a clock tick before the deadline: allow for it.
        late = time.monotonic() >= deadline - _TIMER_SLACK
        if isinstance(failure, ProviderUnavailable) and late:
            driver.close()
            raise _flow_timeout(provider, policy) from failure


def _read_body(response: httpx.Response, max_body: int, deadline: float) -> bytes:
    """The decoded body of a streamed *response*; every layer capped (`BodyDecoder`).

    `TimeoutError` once the flow's deadline passes, `ResponseTooLarge`, `UnreadableBody`.
    """
    declared = declared_length(response.headers.raw)
    if declared is not None and declared > max_body:
        raise ResponseTooLarge
    whole = decode_whole(response, max_body)
    if whole is not None:
        return whole
    # httpx's own decoders (iter_bytes) inflate each chunk whole: read the wire bytes instead.
    decoder = BodyDecoder(content_codings(response.headers), max_body)
    for chunk in response.iter_raw():
        decoder.feed(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError
    return decoder.finish()


async def run_async(
    driver: Driver, client: AsyncSender, provider: Provider, policy: Policy
) -> Verified:
    """Execute *driver* with asyncio I/O over *client*.

    Each request is bounded as a whole by its connect and read timeouts together, and by what
    is left of the flow's time; waits are checked against the flow's deadline. So no timeout
    context wraps the flow: with aiohttp's one timer per request, that is all the timers a
    check needs.
    """
    import asyncio  # here, not at the top: the sync path and the CLI's start need not load it

    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.flow_timeout
    budget = _request_budget(policy)
    errors = _transport_errors()
    outcome: Any = None
    failure: HubError | None = None
    while True:
        try:
            action = _next(driver, outcome, failure, deadline, loop.time, provider, policy)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        outcome, failure = None, None
        if isinstance(action, Sleep):
            await asyncio.sleep(action.seconds)
            continue
        request = action.request
        total = min(budget, deadline - loop.time())
        started = time.monotonic()
        try:
            outcome = await client.fetch(request, policy.max_body, total)
            _log(request, outcome, started)
        except ResponseTooLarge:
            failure = _too_large(provider, policy)
        except UnreadableBody as exc:
            failure = _unreadable(provider, exc)
        except errors as exc:
            # A timer may fire a clock tick before its deadline: allow for it.
            if isinstance(exc, TimeoutError) and loop.time() >= deadline - _TIMER_SLACK:
                driver.close()
                raise _flow_timeout(provider, policy) from None
            _log(request, None, started)
            failure = unavailable(provider, request, exc)


#: What a script answers a request with: a response, or an exception in its place (a
#: `HubError` the request ends in, or a transport error such as ``httpx.ConnectTimeout``).
Answer: TypeAlias = "httpx.Response | BaseException"


def run_scripted(
    driver: Driver,
    answer: Callable[[httpx.Request], Answer],
    provider: Provider,
    policy: Policy,
    *,
    on_wait: Callable[[float], None] | None = None,
) -> Verified:
    """Execute *driver* against *answer* instead of the network, on a virtual clock.

    Every action is the production driver's, so the flow receives what `run_sync` would hand
    it: a 429 is waited out and retried, a redirect followed or refused, a body over the cap
    refused. Waits take no time: they advance the virtual clock the flow's deadline is kept
    on, and are reported to *on_wait*. *answer* returns (or raises) an exception in place of a
    response: a `HubError` is what that request ended in; an httpx transport error or an
    `OSError` becomes the `ProviderUnavailable` a real one would. Anything else it raises (a
    script that ran out, say) propagates, and the flow is closed.
    """
    now = 0.0

    def clock() -> float:
        return now

    errors = _transport_errors()
    outcome: Any = None
    failure: HubError | None = None
    try:
        while True:
            try:
                action = _next(
                    driver, outcome, failure, policy.flow_timeout, clock, provider, policy
                )
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            outcome, failure = None, None
            if isinstance(action, Sleep):
                now += action.seconds
                if on_wait is not None:
                    on_wait(action.seconds)
                continue
            request = action.request
            try:
                reply = answer(request)
            except errors as exc:
                reply = exc
            if isinstance(reply, HubError):
                failure = reply
            elif isinstance(reply, errors):
                failure = unavailable(provider, request, reply)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                body = reply.read()
                if len(body) > policy.max_body:
                    failure = _too_large(provider, policy)
                else:
                    outcome = finished_response(
                        request, reply.status_code, reply.headers.raw, body, reply.reason_phrase
                    )
    finally:
        driver.close()


def _request_budget(policy: Policy) -> float:
    """The longest one request may take: its connect and read timeouts together."""
    phases = (policy.timeout.connect, policy.timeout.read)
    return math.inf if None in phases else sum(p for p in phases if p is not None)
