"""Kinds loaded by name, as python-can loads its bus backends.

A registry maps a kind's name (what an io_map says: `driver = "modbus"`, `kind = "safety"`) to
`"module:attribute"`, and imports the module only when that kind is asked for. So loading a
site imports just the drivers and programs it uses, and the registry imports none of them at
module level (no cycle between a registry and what it lists).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class Kinds(Mapping[str, T], Generic[T]):
    """Read-only mapping name -> loaded object, importing each entry on first use."""

    def __init__(self, entries: Mapping[str, str]):
        for name, target in entries.items():
            if target.count(":") != 1:
                raise ValueError(f"kind {name!r}: {target!r} is not 'module:attribute'")
        self._entries = dict(entries)
        self._loaded: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        loaded = self._loaded.get(name)
        if loaded is None:
            module, attribute = self._entries[name].split(":")  # KeyError for an unknown name
            loaded = self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return loaded

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
