"""Plugin discovery and isolation.

Plugins come from the ``hub`` entry-point group and from modules a host app passes in code.
Each is loaded, registered and asked for its providers on its own, so one broken plugin is
reported (`PluginReport.error`) while every other keeps working.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from importlib.metadata import Distribution, EntryPoint, entry_points
from types import FunctionType, GeneratorType, MethodType, ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import HubError, PluginError, UnknownProvider
from .model import Account, AccountDisplay, Credentials, Provider

__all__ = ["PluginReport", "Registry"]

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


def _names_from_env(variable: str) -> frozenset[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


class Registry:
    """The plugins of one `Hub`: a pluggy manager plus what each plugin reported.

    Parameters mirror `Hub`: *plugins* are registered in code and always loaded;
    *load_entrypoints* adds the installed ``hub`` entry points, filtered by *enable* (only
    these names; ``HUB_PLUGINS`` when None) and *disable* (``HUB_DISABLE_PLUGINS`` when None).
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
        self._reports: list[PluginReport] = []
        self._index: dict[str, int] = {}  # registered plugin name -> its report's position
        self._dists: dict[int, Distribution | None] = {}  # report position -> not yet read
        self._providers: dict[str, tuple[Provider, str]] = {}
        self._conflicts: dict[str, str] = {}
        self._order: dict[tuple[str, str], list[Any]] = {}  # (hook, owner) -> implementations
        self._labels: dict[str, str] = {}  # plugin name -> its label, once its metadata is read

        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self._add(plugin, PluginReport(name=name, distribution=None, version=None))
        if load_entrypoints:
            only = frozenset(enable) if enable is not None else _names_from_env("HUB_PLUGINS")
            skip = (
                frozenset(disable)
                if disable is not None
                else _names_from_env("HUB_DISABLE_PLUGINS")
            )
            for entry_point in entry_points(group=hookspecs.PROJECT):
                if (only is not None and entry_point.name not in only) or (
                    skip and entry_point.name in skip
                ):
                    continue
                self._load(entry_point)
        self._collect_providers()

    # --- loading ----------------------------------------------------------------------------

    def _load(self, entry_point: EntryPoint) -> None:
        # The distribution's name and version are read when a report is shown: parsing every
        # plugin's metadata would slow down `hub providers`, which never shows them.
        report = PluginReport(name=entry_point.name, distribution=None, version=None)
        self._dists[len(self._reports)] = entry_point.dist
        if entry_point.name in self._index:
            other = self._report(entry_point.name)
            self._fail(
                report, f"the plugin name {entry_point.name!r} is also used by {other.label}"
            )
            return
        try:
            plugin = entry_point.load()
        except Exception as exc:
            self._fail(report, f"could not be imported: {_describe(exc)}")
            return
        if self.manager.is_registered(plugin):
            return  # also passed in code by the host app: one registration is enough
        self._add(plugin, report)

    def _add(self, plugin: object, report: PluginReport) -> None:
        try:
            self.manager.register(plugin, name=report.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            self._fail(report, f"does not follow the hook contract: {_describe(exc)}")
            return
        unknown = [
            caller.name
            for caller in self.manager.get_hookcallers(plugin) or ()
            if not caller.has_spec()
        ]
        if unknown:
            self.manager.unregister(plugin)
            import difflib  # only for this rare hint

            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, self._hook_names(), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            self._fail(report, f"implements unknown hook {', '.join(hints)}")
            return
        self._index[report.name] = len(self._reports)
        self._reports.append(report)

    def _hook_names(self) -> list[str]:
        return [name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_")]

    def _report(self, name: str) -> PluginReport:
        return self._complete(self._index[name])

    def _complete(self, position: int) -> PluginReport:
        """The report at *position*, with its distribution's name and version filled in."""
        dist = self._dists.pop(position, None)
        if dist is not None:
            metadata = dist.metadata  # one parse (dist.name and dist.version each re-parse)
            self._reports[position] = attrs.evolve(
                self._reports[position], distribution=metadata["Name"], version=metadata["Version"]
            )
        return self._reports[position]

    def _fail(self, report: PluginReport, error: str) -> None:
        """Record a plugin that could not be registered."""
        self._reports.append(attrs.evolve(report, error=error))
        report = self._complete(len(self._reports) - 1)
        log.warning("hub plugin %s is not usable: %s", report.label, error)

    def _break(self, name: str, error: str) -> None:
        """Unregister a registered plugin that broke the contract, and record why."""
        self.manager.unregister(name=name)
        position = self._index.pop(name)
        report = attrs.evolve(self._complete(position), error=error)
        log.warning("hub plugin %s is not usable: %s", report.label, error)
        self._reports[position] = report

    def _collect_providers(self) -> None:
        claims: dict[str, list[tuple[Provider, str]]] = {}
        for impl in self.manager.hook.hub_providers.get_hookimpls():
            name = impl.plugin_name
            try:
                providers = self._check_providers(impl.function())
            except Exception as exc:
                self._break(name, f"hub_providers() failed: {_describe(exc)}")
                continue
            position = self._index[name]
            self._reports[position] = attrs.evolve(
                self._reports[position], providers=tuple(p.id for p in providers)
            )
            for provider in providers:
                claims.setdefault(provider.id, []).append((provider, name))
        for provider_id, owners in claims.items():
            if len(owners) == 1:
                self._providers[provider_id] = owners[0]
                continue
            labels = " and ".join(sorted(self._report(owner).label for _, owner in owners))
            message = (
                f"the provider id {provider_id!r} is claimed by both {labels}; "
                "uninstall or disable one of them"
            )
            self._conflicts[provider_id] = message
            for _, owner in owners:
                position = self._index[owner]
                self._reports[position] = attrs.evolve(self._reports[position], error=message)

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
        return [self._complete(position) for position in range(len(self._reports))]

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
        self, caller: Any, provider: Provider, **kwargs: object
    ) -> tuple[object, str] | None:
        """The first answer of a firstresult hook and its plugin's label; the owner asked first.

        None when no implementation answers. A plugin's exception becomes `PluginError`.
        """
        arguments = {"provider": provider, **kwargs}
        for impl in self._in_order(caller, self._providers[provider.id][1]):
            try:
                result = impl.function(*[arguments[arg] for arg in impl.argnames])
            except HubError:
                raise
            except Exception as exc:
                label = self._label(impl.plugin_name)
                raise PluginError(
                    f"the plugin {label} failed in {caller.name}: {_describe(exc)}", plugin=label
                ) from exc
            if result is not None:
                return result, self._label(impl.plugin_name)
        return None

    def _label(self, name: str) -> str:
        if name not in self._labels:
            self._labels[name] = self._report(name).label
        return self._labels[name]

    def _in_order(self, caller: Any, owner: str) -> list[Any]:
        # Sorted once per hook and owner: check_many asks for thousands of flows in a row.
        key = (caller.name, owner)
        if key not in self._order:
            impls = caller.get_hookimpls()
            self._order[key] = sorted(impls, key=lambda impl: impl.plugin_name != owner)
        return self._order[key]

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
            answer = self._first(caller, provider, account=account)
        except HubError as exc:
            log.warning("account display failed: %s", exc)
            return default()
        if answer is not None:
            result, label = answer
            if isinstance(result, AccountDisplay):
                return result
            log.warning("plugin %s returned %r from hub_account_display", label, result)
        return default()
