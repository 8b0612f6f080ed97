"""The process image: the value, quality and timestamp of every tag, owned by the scan thread.

Only the scan thread changes the image. Drivers publish into their own buffers and the scan
copies them in during its read phase; mirrors (Modbus server, HMI, telemetry) never touch
the live image: they read the immutable `Snapshot` published at the end of each scan, and
their writes are queued and applied whole at the next scan boundary.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from plc.tags import Access, Area, Quality, TagSpec, make_checker

log = logging.getLogger(__name__)

GOOD = Quality.GOOD


class Tag:
    """Live handle on one tag in the image: read `.value` / `.quality`, write with `.set()`."""

    __slots__ = ("spec", "index", "value", "quality", "stamp", "check", "_now")

    def __init__(self, spec: TagSpec, index: int, now_cell: list[float]):
        self.spec = spec
        self.index = index
        self.check = make_checker(spec)
        self._now = now_cell
        self.value: Any = None
        self.quality = Quality.UNINIT
        self.stamp = float("-inf")
        if spec.initial is not None:
            self.value = self.check(spec.initial)
            self.quality = GOOD
        elif spec.area is Area.OUTPUT:
            self.value = self.check(spec.safe_value)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def good(self) -> bool:
        return self.quality is GOOD

    def set(self, value: Any) -> None:
        """Write a value as GOOD at the scan's timestamp; wrong type or out of range raises."""
        self.value = self.check(value)
        self.quality = GOOD
        self.stamp = self._now[0]

    def set_quality(self, quality: Quality) -> None:
        self.quality = quality
        self.stamp = self._now[0]

    def __repr__(self) -> str:
        return f"Tag({self.spec.name}={self.value!r}, {self.quality.name})"


@attrs.frozen
class Snapshot:
    """The image as it stood at the end of one scan. Immutable, so any thread may read it."""

    scan: int
    t_s: float
    wall_s: float
    names: tuple[str, ...]
    index: dict[str, int]
    values: tuple[Any, ...]
    qualities: tuple[Quality, ...]
    stamps: tuple[float, ...]

    def value(self, name: str) -> Any:
        return self.values[self.index[name]]

    def quality(self, name: str) -> Quality:
        return self.qualities[self.index[name]]

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.names, self.values))


@attrs.frozen
class WriteRequest:
    """Validated writes from one mirror request, applied together at the next scan boundary."""

    source: str
    items: tuple[tuple[Tag, Any], ...]


class ProcessImage:
    """All tags of a site, by name, with their current values."""

    def __init__(self, specs: Iterable[TagSpec]):
        self._now = [float("-inf")]
        self.tags: dict[str, Tag] = {}
        for spec in specs:
            self.add(spec)
        self._pending: list[WriteRequest] = []
        self._pending_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self.write_listeners: list[Callable[[WriteRequest], None]] = []

    # --- declaration -----------------------------------------------------------------------
    def add(self, spec: TagSpec) -> Tag:
        if spec.name in self.tags:
            raise ValueError(f"tag {spec.name!r} is declared twice")
        if spec.area is Area.OUTPUT and spec.safe_value is None:
            raise ValueError(f"output tag {spec.name!r} has no safe_value")
        tag = Tag(spec, len(self.tags), self._now)
        self.tags[spec.name] = tag
        self._names: tuple[str, ...] | None = None
        return tag

    def __getitem__(self, name: str) -> Tag:
        try:
            return self.tags[name]
        except KeyError:
            raise KeyError(f"no tag named {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.tags

    def get(self, name: str) -> Tag | None:
        """The tag, or None when the site has no such tag (an optional input or output)."""
        return self.tags.get(name)

    def __iter__(self) -> Iterator[Tag]:
        return iter(self.tags.values())

    def __len__(self) -> int:
        return len(self.tags)

    def specs(self) -> list[TagSpec]:
        return [tag.spec for tag in self.tags.values()]

    # --- scan side ---------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self._now[0]

    def begin_scan(self, t_s: float) -> None:
        """Set the timestamp that every write in this scan carries."""
        self._now[0] = t_s

    def apply_pending_writes(self) -> list[WriteRequest]:
        """Apply the mirrors' queued writes, each request whole. Called at the scan boundary."""
        if not self._pending:
            return []
        with self._pending_lock:
            pending, self._pending = self._pending, []
        now = self._now[0]
        for request in pending:
            for tag, value in request.items:
                tag.value = value
                tag.quality = GOOD
                tag.stamp = now
        for request in pending:
            for listener in self.write_listeners:
                listener(request)
        return pending

    def publish(self, scan: int, wall_s: float) -> Snapshot:
        """Freeze the image into a snapshot and hand it to every subscriber."""
        tags = self.tags.values()
        if self._names is None:
            self._names = tuple(self.tags)
            self._index = {name: i for i, name in enumerate(self._names)}
        snap = Snapshot(
            scan=scan,
            t_s=self._now[0],
            wall_s=wall_s,
            names=self._names,
            index=self._index,
            values=tuple([t.value for t in tags]),
            qualities=tuple([t.quality for t in tags]),
            stamps=tuple([t.stamp for t in tags]),
        )
        self._snapshot = snap
        for subscriber in self._subscribers:
            subscriber(snap)
        return snap

    # --- mirror side (any thread) ------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot | None:
        """The latest published snapshot (None before the first scan ends)."""
        return self._snapshot

    def subscribe(self, callback: Callable[[Snapshot], None]) -> None:
        """Call `callback(snapshot)` from the scan thread after every scan. It must not block."""
        self._subscribers.append(callback)

    def request_writes(self, items: Sequence[tuple[str, Any]], source: str) -> WriteRequest:
        """Validate writes from outside the scan and queue them for the next scan boundary.

        Raises KeyError for an unknown tag, PermissionError for a read-only one and
        TagValueError for a bad value; in each case nothing of the request is queued.
        """
        checked: list[tuple[Tag, Any]] = []
        for name, value in items:
            tag = self[name]
            if tag.spec.access is not Access.RW:
                raise PermissionError(f"tag {name!r} is read-only")
            checked.append((tag, tag.check(value)))
        request = WriteRequest(source=source, items=tuple(checked))
        with self._pending_lock:
            self._pending.append(request)
        return request
