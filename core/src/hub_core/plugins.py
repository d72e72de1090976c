"""Plugin discovery and isolation.

Plugins come from the ``hub`` entry-point group and from modules a host app passes in code.
Each is loaded, registered and asked for its providers on its own, so one broken plugin is
reported (`PluginReport.error`) while every other keeps working. Whatever plugin code raises,
`SystemExit` and `KeyboardInterrupt` included, is that plugin's failure; only a real Ctrl-C
(`watching_interrupts`, `is_interrupt`) stops hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from importlib.metadata import Distribution, EntryPoint, distributions
from types import FrameType, FunctionType, GeneratorType, MethodType, ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from . import hookspecs
from .display_text import LONG_LIMIT, inert
from .errors import HubError, PluginError, UnknownProvider, describe
from .model import Account, AccountDisplay, Credentials, Provider

__all__ = ["SLOW_IMPORT_SECONDS", "PluginReport", "Registry", "is_interrupt", "watching_interrupts"]

log = logging.getLogger(__name__)


@attrs.frozen
class PluginReport:
    """One plugin as `Hub.plugins()` reports it.

    ``name`` is the entry-point name (or the module name of a plugin registered in code);
    ``error`` says why the plugin, or one of its providers, is not usable, and is ``None`` when
    all is well.
    """

    name: str
    distribution: str | None
    version: str | None
    providers: tuple[str, ...] = ()
    error: str | None = None

    @property
    def label(self) -> str:
        """How messages name this plugin: its distribution and version when known."""
        if self.distribution:
            return f"{self.distribution} {self.version}" if self.version else self.distribution
        return self.name


def _hub_entry_points() -> Iterator[EntryPoint]:
    """The ``hub`` entry points of the installed distributions, as ``entry_points()`` gives
    them (the first distribution of each name on the path), skipping a distribution whose
    ``entry_points.txt`` cannot be read: ``entry_points()`` raises for one, and every
    plugin, every command with it, would be lost to another distribution's broken file."""
    seen: set[str] = set()
    for dist in distributions():
        name = getattr(dist, "_normalized_name", None)  # as entry_points() tells them apart
        if isinstance(name, str):
            if name in seen:
                continue
            seen.add(name)
        try:
            found = [ep for ep in dist.entry_points if ep.group == hookspecs.PROJECT]
        except Exception as exc:
            _warn_unreadable(dist, exc)
            continue
        yield from found


def _warn_unreadable(dist: Distribution, exc: Exception) -> None:
    # Said only for a distribution whose file declares hub plugins: any other package's
    # broken file is not hub's to report.
    try:
        text = dist.read_text("entry_points.txt") or ""
    except Exception:
        return
    if f"[{hookspecs.PROJECT}]" not in text:
        return
    where = str(getattr(dist, "_path", None) or "a distribution")
    log.warning(
        "hub cannot read the plugins %s declares (%s); it is skipped, the other plugins "
        "load: reinstall it",
        inert(where),
        inert(describe(exc), limit=LONG_LIMIT),
    )


def _names_from_env(variable: str) -> frozenset[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


# --- a real Ctrl-C, told from a plugin's KeyboardInterrupt ----------------------------------
#
# A plugin may raise KeyboardInterrupt (or SystemExit, GeneratorExit, any BaseException) at
# import, in a hook or in a flow: that is a broken plugin, reported like any other failure.
# But Ctrl-C also arrives as KeyboardInterrupt, wherever the main thread happens to be, plugin
# code included, and must still stop hub. Python cannot say where a KeyboardInterrupt came
# from, so while plugin code may run (`watching_interrupts`) the SIGINT handler is wrapped by
# one that notes the signal, then calls the handler it wraps: Python's default still raises
# KeyboardInterrupt, asyncio.run's still cancels its main task. Nothing else changes. Signals
# reach only the main thread; in any other thread no KeyboardInterrupt is a Ctrl-C.

_watchers = 0  # open `watching_interrupts` blocks (main thread only)
_wrapped: Any = None  # the SIGINT handler ours wraps, while one is open
_sigint = False  # a SIGINT arrived while watched


def _on_sigint(signum: int, frame: FrameType | None) -> Any:
    global _sigint
    _sigint = True
    return _wrapped(signum, frame)


@contextlib.contextmanager
def watching_interrupts() -> Iterator[None]:
    """Note any real SIGINT (Ctrl-C) that arrives in the block, for `is_interrupt`.

    Blocks nest and may interleave (concurrent checks in one event loop): the handler is
    wrapped when the first opens and restored when the last closes, unless someone else has
    replaced it meanwhile.
    """
    global _watchers, _wrapped, _sigint
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # The C module: signal.py turns its constants into enums at import, about 1 ms of every
    # start of `hub`; the handlers and their identities are the same.
    if TYPE_CHECKING:
        import signal
    else:
        import _signal as signal

    if _watchers == 0:
        _sigint = False
        _wrapped = signal.getsignal(signal.SIGINT)
        if callable(_wrapped):
            signal.signal(signal.SIGINT, _on_sigint)
    _watchers += 1
    try:
        yield
    finally:
        _watchers -= 1
        if _watchers == 0:
            if callable(_wrapped) and signal.getsignal(signal.SIGINT) is _on_sigint:
                signal.signal(signal.SIGINT, _wrapped)
            _wrapped = None


def is_interrupt(exc: BaseException) -> bool:
    """Whether *exc*, raised where plugin code ran, is a real Ctrl-C hub must stop for.

    True for a KeyboardInterrupt in the main thread after a SIGINT arrived, and whenever hub
    cannot tell (outside `watching_interrupts`, or under a SIGINT handler set from C code).
    Anything else a plugin raises is that plugin's failure.
    """
    if not isinstance(exc, KeyboardInterrupt):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    if _watchers == 0 or _sigint:
        return True
    # Ignored (SIG_IGN) or deadly (SIG_DFL), a SIGINT never raises; set from C (None), unknown.
    return _wrapped is None


# --- a plugin whose import hangs ---------------------------------------------------------

#: Seconds one plugin's import may take before hub says which plugin it is waiting for.
SLOW_IMPORT_SECONDS = 3.0


class _SlowImportWatch:
    """A watchdog thread that names the plugin an import is stuck in.

    An import cannot be interrupted from another thread, nor bounded without leaving a
    half-imported module and its import lock behind (an import in a thread that timed out
    goes on running): so hub waits, as Python does, but after `SLOW_IMPORT_SECONDS` it says
    on the log (stderr, for the CLI) which plugin it is waiting for and how to skip it. One
    thread for the whole loading phase, started only when there is an entry point to load.
    """

    def __init__(self) -> None:
        self._loading: tuple[EntryPoint, float] | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def loading(self, entry_point: EntryPoint) -> None:
        self._loading = (entry_point, time.monotonic())
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="hub-plugin-import-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._loading = None
        self._done.set()

    def _watch(self) -> None:
        told: tuple[EntryPoint, float] | None = None
        wait = SLOW_IMPORT_SECONDS
        while not self._done.wait(wait):
            loading = self._loading
            wait = SLOW_IMPORT_SECONDS
            if loading is None or loading is told:
                continue
            late = time.monotonic() - loading[1]
            if late < SLOW_IMPORT_SECONDS:
                wait = SLOW_IMPORT_SECONDS - late
                continue
            told = loading
            _warn_slow(loading[0], late)


def _warn_slow(entry_point: EntryPoint, seconds: float) -> None:
    name = entry_point.name
    try:  # read here, not shared with the loading thread's record of the plugin
        metadata = entry_point.dist.metadata if entry_point.dist is not None else None
        where = f"{metadata['Name']} {metadata['Version']}" if metadata is not None else None
    except Exception:
        where = None
    label = f"{name} ({where})" if where else name
    log.warning(
        "hub is still importing the plugin %s after %.0f seconds (module %s). If it hangs, "
        "press Ctrl-C and skip it with HUB_DISABLE_PLUGINS=%s, or name the plugins to load "
        "with HUB_PLUGINS",
        inert(label),
        seconds,
        inert(entry_point.value),
        inert(name),
    )


# What pluggy accepts as a hook implementation on a module.
_HOOKABLE = (FunctionType, MethodType, staticmethod, classmethod)


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, quicker to register module plugins (most of them are).

    pluggy looks up every name of a plugin with `inspect.getattr_static`; a module's names
    are mostly classes, constants and imports, which can never be hooks. Skipping those first
    takes registering a hundred small plugins from about 10 ms to 4 ms.
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if isinstance(plugin, ModuleType) and not isinstance(vars(plugin).get(name), _HOOKABLE):
            return None
        return super().parse_hookimpl_opts(plugin, name)


# A flow is a generator; the concrete type first, since the ABC check is slower.
_FLOW_TYPES = (GeneratorType, Generator)


@attrs.define(eq=False)
class _Plugin:
    """One plugin the registry has seen, usable or not: the one record kept of it.

    *dist* is its distribution while the metadata is still unread: the name and version are
    parsed when a report or a message first needs them, since parsing every plugin's metadata
    would slow down `hub providers`, which never shows them. *plugin* is the registered object,
    None when it never got registered.
    """

    name: str
    dist: Distribution | None = None
    plugin: object = None
    providers: tuple[Provider, ...] = ()
    error: str | None = None
    _distribution: str | None = None
    _version: str | None = None
    _label: str | None = None

    @property
    def report(self) -> PluginReport:
        if self.dist is not None:
            try:
                metadata = self.dist.metadata  # one parse (dist.name, dist.version re-parse)
                self._distribution, self._version = metadata["Name"], metadata["Version"]
            except Exception:  # METADATA not UTF-8 (an old latin-1 author), unreadable
                self._distribution = self._version = None
            self.dist = None
        return PluginReport(
            name=self.name,
            distribution=self._distribution,
            version=self._version,
            providers=tuple(p.id for p in self.providers),
            error=self.error,
        )

    @property
    def label(self) -> str:
        # Cached: the label of the plugin that answered goes with every flow of `check_many`.
        if self._label is None:
            self._label = self.report.label
        return self._label


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


def _warn_unusable(record: _Plugin, error: str) -> None:
    # Plugin text reaches a terminal through logging too (Python's last-resort handler
    # writes warnings to stderr): made inert like every other output.
    log.warning(
        "hub plugin %s is not usable: %s", inert(record.label), inert(error, limit=LONG_LIMIT)
    )


class Registry:
    """The plugins of one `Hub`: a pluggy manager plus one record per plugin seen.

    Parameters mirror `Hub`: *plugins* are registered in code and always loaded;
    *load_entrypoints* adds the installed ``hub`` entry points, filtered by *enable* (only
    these names; ``HUB_PLUGINS`` when None) and *disable* (``HUB_DISABLE_PLUGINS`` when None).

    Hooks are called in pluggy's order: ``tryfirst`` implementations, then the others with the
    most recently registered first, then ``trylast``; for `flow` and `display` the plugin that
    declares the provider is asked before all of them.
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        load_entrypoints: bool = True,
        enable: Collection[str] | None = None,
        disable: Collection[str] | None = None,
    ) -> None:
        self.manager: pluggy.PluginManager = _PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._plugins: list[_Plugin] = []  # every plugin seen, in load order
        self._registered: dict[str, _Plugin] = {}  # the registered ones, by plugin name
        self._providers: dict[str, tuple[Provider, _Plugin]] = {}  # provider id -> its owner
        self._conflicts: dict[str, str] = {}
        # (hook, owner) -> the implementations to ask, in order, each with its plugin.
        self._order: dict[tuple[str, str], list[tuple[pluggy.HookImpl, _Plugin]]] = {}

        with watching_interrupts():
            for plugin in plugins:
                name = getattr(plugin, "__name__", None) or type(plugin).__name__
                self._add(plugin, _Plugin(name))
            if load_entrypoints:
                self._load_entrypoints(enable, disable)
            self._collect_providers()

    def _load_entrypoints(
        self, enable: Collection[str] | None, disable: Collection[str] | None
    ) -> None:
        only = frozenset(enable) if enable is not None else _names_from_env("HUB_PLUGINS")
        skip = frozenset(disable) if disable is not None else _names_from_env("HUB_DISABLE_PLUGINS")
        watch = _SlowImportWatch()
        try:
            for entry_point in _hub_entry_points():
                if (only is not None and entry_point.name not in only) or (
                    skip and entry_point.name in skip
                ):
                    continue
                watch.loading(entry_point)
                self._load(entry_point)
        finally:
            watch.stop()

    # --- loading ----------------------------------------------------------------------------

    def _load(self, entry_point: EntryPoint) -> None:
        record = _Plugin(entry_point.name, dist=entry_point.dist)
        other = self._registered.get(entry_point.name)
        if other is not None:
            self._fail(
                record, f"the plugin name {entry_point.name!r} is also used by {other.label}"
            )
            return
        try:
            plugin = entry_point.load()
        except BaseException as exc:  # SystemExit(0) at import too: a broken plugin
            if is_interrupt(exc):
                raise
            self._fail(record, f"could not be imported: {describe(exc)}")
            return
        if self.manager.is_registered(plugin):
            return  # also passed in code by the host app: one registration is enough
        self._add(plugin, record)

    def _add(self, plugin: object, record: _Plugin) -> None:
        try:
            self.manager.register(plugin, name=record.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self._fail(record, f"does not follow the hook contract: {describe(exc)}")
            return
        callers = self.manager.get_hookcallers(plugin) or []
        if not callers:
            self.manager.unregister(plugin)
            self._fail(
                record,
                f"implements no hub hook: does its entry point name the module that holds "
                f"them (with @hookimpl)? It names {type(plugin).__name__} "
                f"{getattr(plugin, '__name__', '') or 'object'}",
            )
            return
        unknown = [caller.name for caller in callers if not caller.has_spec()]
        if unknown:
            self.manager.unregister(plugin)
            import difflib  # only for this rare hint

            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, self._hook_names(), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            self._fail(record, f"implements unknown hook {', '.join(hints)}")
            return
        wrappers = self._wrappers(plugin, callers)
        if wrappers:
            # A wrapper's generator would be taken for the hook's answer (for
            # hub_validate_credentials, for the flow itself): refused, never run.
            self.manager.unregister(plugin)
            what = (
                f"{wrappers[0][0]} is a wrapper ({wrappers[0][1]}=True)"
                if len(wrappers) == 1
                else ", ".join(f"{hook} ({flag}=True)" for hook, flag in wrappers) + " are wrappers"
            )
            self._fail(record, f"{what} in {record.label}; hub hooks take plain implementations")
            return
        record.plugin = plugin
        self._registered[record.name] = record
        self._plugins.append(record)

    @staticmethod
    def _wrappers(plugin: object, callers: Iterable[pluggy.HookCaller]) -> list[tuple[str, str]]:
        """Each hook *plugin* implements as a wrapper, with its marker (``wrapper``, ...).

        pluggy keeps wrappers after the plain implementations in `get_hookimpls()` (they run
        around them), and every wrapper registered before *plugin* was refused, so only the
        tail of each list is read: scanning it all would cost start-up time that grows with
        the square of the number of plugins. (`_in_order` skips wrappers whatever happens.)
        """
        found = []
        for caller in callers:
            for impl in reversed(caller.get_hookimpls()):
                if not _is_wrapper(impl):
                    break
                if impl.plugin is plugin:
                    found.append((caller.name, "wrapper" if impl.wrapper else "hookwrapper"))
        return found

    def _hook_names(self) -> list[str]:
        return [name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_")]

    def _fail(self, record: _Plugin, error: str) -> None:
        """Record a plugin that could not be registered."""
        record.error = error
        self._plugins.append(record)
        _warn_unusable(record, error)

    def _break(self, record: _Plugin, error: str) -> None:
        """Unregister a registered plugin that broke the contract, and record why."""
        self.manager.unregister(record.plugin)
        del self._registered[record.name]
        record.error, record.providers = error, ()
        _warn_unusable(record, error)

    def _collect_providers(self) -> None:
        # In pluggy's call order, as every hook; hub_providers answers are all kept, so the
        # order only shows in which broken plugin is logged first.
        for impl in reversed(self.manager.hook.hub_providers.get_hookimpls()):
            record = self._registered.get(impl.plugin_name)
            if record is None:
                continue  # broken by another of its hub_providers implementations (specname)
            try:
                record.providers += tuple(self._check_providers(impl.function()))
            except BaseException as exc:
                if is_interrupt(exc):
                    raise
                self._break(record, f"hub_providers() failed: {describe(exc)}")
        claims: dict[str, list[tuple[Provider, _Plugin]]] = {}
        for record in self._registered.values():
            for provider in record.providers:
                claims.setdefault(provider.id, []).append((provider, record))
        for provider_id, owners in claims.items():
            if len(owners) == 1:
                self._providers[provider_id] = owners[0]
                continue
            labels = " and ".join(sorted(owner.label for _, owner in owners))
            message = (
                f"the provider id {provider_id!r} is claimed by both {labels}; "
                "uninstall or disable one of them"
            )
            self._conflicts[provider_id] = message
            for _, owner in owners:
                owner.error = message
                _warn_unusable(owner, message)

    @staticmethod
    def _check_providers(provided: object) -> list[Provider]:
        if isinstance(provided, (str, bytes)) or not isinstance(provided, Sequence):
            raise TypeError(f"expected a list of Provider, got {type(provided).__name__}")
        for item in provided:
            if not isinstance(item, Provider):
                raise TypeError(f"expected Provider, got {type(item).__name__}")
        ids = [p.id for p in provided]
        if len(set(ids)) != len(ids):
            raise ValueError("declares the same provider id twice")
        return list(provided)

    # --- queries ----------------------------------------------------------------------------

    def reports(self) -> list[PluginReport]:
        """Every plugin seen, usable or not, in load order."""
        return [record.report for record in self._plugins]

    def providers(self) -> list[Provider]:
        """The usable providers, sorted by id."""
        return [self._providers[key][0] for key in sorted(self._providers)]

    def provider(self, provider_id: str) -> Provider:
        """The provider with this id; `UnknownProvider`, or `PluginError` on a conflict."""
        if provider_id in self._conflicts:
            raise PluginError(self._conflicts[provider_id])
        try:
            return self._providers[provider_id][0]
        except KeyError:
            raise UnknownProvider(provider_id, self._providers) from None

    def _first(
        self, caller: pluggy.HookCaller, provider: Provider, **kwargs: object
    ) -> tuple[object, str] | None:
        """The first answer of a firstresult hook and its plugin's label; the owner asked first.

        None when no implementation answers. A plugin's exception becomes `PluginError`.
        """
        arguments = {"provider": provider, **kwargs}
        for impl, record in self._in_order(caller, self._providers[provider.id][1].name):
            try:
                result = impl.function(*[arguments[arg] for arg in impl.argnames])
            except HubError:
                raise
            except BaseException as exc:
                if is_interrupt(exc):
                    raise
                raise PluginError(
                    f"the plugin {record.label} failed in {caller.name}: {describe(exc)}",
                    plugin=record.label,
                ) from exc
            if result is not None:
                return result, record.label
        return None

    def _in_order(
        self, caller: pluggy.HookCaller, owner: str
    ) -> list[tuple[pluggy.HookImpl, _Plugin]]:
        # Sorted once per hook and owner: check_many asks for thousands of flows in a row.
        key = (caller.name, owner)
        order = self._order.get(key)
        if order is None:
            # pluggy's _multicall walks get_hookimpls() from the end. Wrappers are refused at
            # registration; one registered through `manager` directly is skipped, never run
            # as if its generator were the answer.
            impls = [impl for impl in reversed(caller.get_hookimpls()) if not _is_wrapper(impl)]
            impls.sort(key=lambda impl: impl.plugin_name != owner)  # stable: owner, then pluggy's
            order = self._order[key] = [
                (impl, self._registered.get(impl.plugin_name) or _Plugin(impl.plugin_name))
                for impl in impls
            ]
        return order

    def flow(self, provider: Provider, credentials: Credentials) -> tuple[hookspecs.Flow, str]:
        """The verification flow for *credentials*, and the label of the plugin that made it."""
        caller = self.manager.hook.hub_validate_credentials
        answer = self._first(caller, provider, credentials=credentials)
        if answer is None:
            raise PluginError(f"no installed plugin can check keys of {provider.name}")
        result, label = answer
        if not isinstance(result, _FLOW_TYPES):
            raise PluginError(
                f"the plugin {label} returned {type(result).__name__} from "
                "hub_validate_credentials, not a flow generator",
                plugin=label,
            )
        return result, label

    def display(
        self, provider: Provider, account: Account, default: Callable[[], AccountDisplay]
    ) -> AccountDisplay:
        """The plugin's display of *account*, or *default()* when none answers or one breaks."""
        caller = self.manager.hook.hub_account_display
        try:
            with watching_interrupts():
                answer = self._first(caller, provider, account=account)
        except HubError as exc:
            log.warning("account display failed: %s", inert(exc, limit=LONG_LIMIT))
            return default()
        if answer is not None:
            result, label = answer
            if isinstance(result, AccountDisplay):
                return result
            log.warning(
                "plugin %s returned %s from hub_account_display", inert(label), inert(repr(result))
            )
        return default()
