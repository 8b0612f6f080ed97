"""What the scan engine offers a program, and what it asks of one.

Programs (in `programs/`) see tags and the scan context, nothing else: never a driver, a
protocol or the plant. They may import this module and `plc.tags`, both free of IO.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import attrs

from plc.tags import Quality, TagSpec


@attrs.define(slots=True)
class ScanContext:
    """The one timestamp and dt of a scan, shared by every block that runs in it."""

    t_s: float = 0.0  # monotonic scan time
    dt_s: float = 0.0  # time since the previous scan
    wall_s: float = 0.0  # calendar time (epoch seconds) of this scan, for schedules and tariffs
    scan: int = 0  # scan counter
    period_s: float = 0.1  # configured scan period


class TagRef(Protocol):
    """A live tag as a program sees it."""

    value: Any
    quality: Quality
    stamp: float

    @property
    def spec(self) -> TagSpec: ...

    @property
    def good(self) -> bool: ...

    def set(self, value: Any) -> None: ...

    def set_quality(self, quality: Quality) -> None: ...


class TagLookup(Protocol):
    """The tags a program binds to: `tags[name]` for a tag it needs (KeyError names a missing
    one), `tags.get(name)` for one it can do without (None when the site has none)."""

    def __getitem__(self, name: str) -> TagRef: ...

    def __contains__(self, name: str) -> bool: ...

    def get(self, name: str) -> TagRef | None: ...


class Program:
    """A site program: declares its own tags, binds to the tags it uses, runs once per scan.

    A kind registered for io_maps names the attrs record of its `[programs.params]` in
    `params_type`; the loader builds it (with every error at its key) and passes it to
    `__init__(name, params)`, which keeps it as `self.p`.
    """

    kind: ClassVar[str] = "abstract"
    params_type: ClassVar[type[Any]] = type(None)

    def __init__(self, name: str):
        self.name = name

    def declare(self) -> list[TagSpec]:
        """Tags this program owns (status, parameters). Added to the image before `bind`."""
        return []

    def bind(self, tags: TagLookup) -> None:
        """Resolve tag names to live tags once, so `execute` does no lookups by name."""

    def execute(self, ctx: ScanContext) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement execute")


class ProgramKind(Protocol):
    """A program class as an io_map names it (programs/registry.py): the loader builds its
    `params_type` record from `[programs.params]` and calls `cls(name, params)`."""

    @property
    def params_type(self) -> type[Any]: ...

    def __call__(self, name: str, params: Any) -> Program: ...
