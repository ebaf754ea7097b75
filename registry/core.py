"""One generic name -> object registry, filled by decorators and by entry-point plugins.

Built-ins register with ``@registry.register("name", aliases=...)``. Third-party packages add
entries through a Python entry-point group; those are listed from package metadata without
importing them, and imported on first use. A plugin that fails to import is kept as a *broken*
entry, and a plugin that takes a name already provided makes that name a *clash* naming both
providers (both shown by ``bench losses list``); only that name is refused, every other keeps working.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from registry.errors import ConfigError, UnknownNameError

T = TypeVar("T")

DISABLE_PLUGINS_ENV = "DISTILLBENCH_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PROVIDER = "distillbench"


def _own_version() -> str:
    try:
        return metadata.version(BUILTIN_PROVIDER)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class Entry(Generic[T]):
    """One registered object with where it came from; ``load()`` imports plugins on demand."""

    name: str
    provider: str
    version: str
    aliases: tuple[str, ...] = ()
    obj: T | None = None
    entry_point: metadata.EntryPoint | None = field(default=None, repr=False)
    error: str | None = None
    clash: str | None = None  # why this name is refused: two providers claim it

    @property
    def broken(self) -> bool:
        return self.error is not None

    def load(self) -> T:
        if self.clash is not None:
            raise ConfigError(self.clash)
        if self.obj is None and self.error is None and self.entry_point is not None:
            try:
                self.obj = self.entry_point.load()
            except Exception as exc:  # a plugin's import error must not escape as a traceback
                self.error = f"{type(exc).__name__}: {exc}"
        if self.error is not None:
            raise ConfigError(
                f"plugin '{self.name}' from {self.provider} {self.version} is broken ({self.error})"
            )
        return self.obj


class Registry(Generic[T]):
    """Names (and aliases) of one kind of object, e.g. losses or datasets."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = False

    # -- filling -------------------------------------------------------------------------------
    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator for built-ins: ``@losses.register("kd", aliases=("kl",))``."""

        def decorate(obj: T) -> T:
            self.add(Entry(name, BUILTIN_PROVIDER, _own_version(), tuple(aliases), obj=obj))
            return obj

        return decorate

    def add(self, entry: Entry[T]) -> None:
        for key in (entry.name, *entry.aliases):
            holder = self._holder(key)
            if holder is not None:
                raise ConfigError(
                    f"{self.kind} name '{key}' is provided twice: by {holder.provider} "
                    f"{holder.version} and by {entry.provider} {entry.version}"
                )
        self._entries[entry.name] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.name

    def _holder(self, key: str) -> Entry[T] | None:
        return self._entries.get(self._aliases.get(key, key))

    def load_plugins(self) -> None:
        """Discover entry points once; honours ``DISTILLBENCH_DISABLE_PLUGIN_AUTOLOAD=1``."""
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        if os.environ.get(DISABLE_PLUGINS_ENV, "") not in ("", "0"):
            return
        for ep in metadata.entry_points(group=self.entry_point_group):
            dist = ep.dist
            provider = dist.name if dist else "unknown"
            version = dist.version if dist else "?"
            self._add_plugin(Entry(ep.name, provider, version, entry_point=ep))

    def _add_plugin(self, entry: Entry[T]) -> None:
        holders = {holder.name for holder in map(self._holder, (entry.name, *entry.aliases)) if holder is not None}
        if not holders:
            self.add(entry)
        for name in holders:
            holder = self._entries[name]
            self._entries[name] = dataclasses.replace(holder, clash=(
                f"{self.kind} name '{name}' is provided twice: by {holder.provider} {holder.version} and by "
                f"{entry.provider} {entry.version}; uninstall one of them to use it"))

    # -- reading -------------------------------------------------------------------------------
    def entry(self, name: str) -> Entry[T]:
        self.load_plugins()
        found = self._holder(name)
        if found is None:
            raise UnknownNameError(self.kind, name, self.names(with_aliases=True))
        if found.clash is not None:
            raise ConfigError(found.clash)
        return found

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def canonical(self, name: str) -> str:
        return self.entry(name).name

    def names(self, with_aliases: bool = False) -> list[str]:
        self.load_plugins()
        names = list(self._entries)
        return sorted(names + list(self._aliases)) if with_aliases else sorted(names)

    def __iter__(self) -> Iterator[Entry[T]]:
        self.load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        self.load_plugins()
        return self._holder(name) is not None

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._entries)


def parse_names(text: str, registry: Registry[Any]) -> list[str]:
    """Comma-separated names -> canonical names, validated, duplicates refused."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"no {registry.kind} given; expected one of: {', '.join(registry.names())}")
    canonical = [registry.canonical(n) for n in names]
    if len(set(canonical)) != len(canonical):
        raise ConfigError(f"{registry.kind} listed twice in '{text}'")
    return canonical
