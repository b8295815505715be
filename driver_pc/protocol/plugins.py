"""Plugin registries: plugins declare themselves next to their code; a registry finds them.

Every kind of plugin (sim adapter, detector, dashboard page, upload target) has one
:class:`Registry`. A plugin module registers itself with a decorator when imported,
and the registry imports its package's modules the first time it is asked (so a new
plugin file is picked up without editing a list). A module whose optional runtime is
not installed is skipped with one log line: that plugin is off, the process runs on.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Plugins of one kind by name, in registration order.

    ``package``: the package whose modules are the plugins (imported on first use,
    except the ``skip`` ones); ``modules``: plugin modules named one by one instead,
    for plugins that live among modules that are not plugins.
    """

    def __init__(
        self,
        kind: str,
        *,
        package: str | None = None,
        modules: Collection[str] = (),
        skip: Collection[str] = (),
    ) -> None:
        self.kind = kind
        self.package = package
        self.modules = tuple(modules)
        self.skip = frozenset(skip)
        #: Plugin modules that could not be loaded here, and why.
        self.disabled: dict[str, str] = {}
        self._items: dict[str, T] = {}
        self._discovered = package is None and not self.modules

    def add(self, name: str, item: T) -> None:
        """Register ``item`` as ``name``; a name is taken once."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item

    def lookup(self, name: str) -> T:
        """The plugin registered as ``name``; ValueError naming the known ones."""
        try:
            return self[name]
        except KeyError:
            off = "".join(
                f"; {module} is off ({why})" for module, why in self.disabled.items()
            )
            raise ValueError(
                f"unknown {self.kind} {name!r}; known: {sorted(self)}{off}"
            ) from None

    def discover(self) -> None:
        """Import the plugin modules (once) so that their declarations register."""
        if self._discovered:
            return
        self._discovered = True  # before importing: their decorators call add()
        names = list(self.modules)
        if self.package is not None:
            names += _modules_of(self.package, self.skip)
        for module in names:
            why = _import_plugin(module)
            if why is not None:
                self.disabled[module] = why

    @contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Undo every registration made inside the block (tests' throwaway plugins)."""
        self.discover()
        saved = dict(self._items)
        try:
            yield self
        finally:
            self._items.clear()
            self._items.update(saved)

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            self.discover()
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        self.discover()
        return iter(list(self._items))

    def __len__(self) -> int:
        self.discover()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self.discover()
        return name in self._items


def _modules_of(package: str, skip: Collection[str]) -> list[str]:
    path = importlib.import_module(package).__path__
    return [
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(path)
        if info.name not in skip and not info.name.startswith("_")
    ]


def _import_plugin(module: str) -> str | None:
    """Import ``module``; None, or why it is off (an optional runtime is missing).

    A missing module of our own packages is a bug, not a missing runtime: it raises.
    """
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not missing or missing.split(".")[0] == module.split(".")[0]:
            raise
        logger.warning(
            "plugin %s is off: it needs %s, which is not installed", module, missing
        )
        return f"needs {missing}"
    return None
