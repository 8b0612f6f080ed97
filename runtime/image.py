"""The process image: the value, quality and timestamp of every tag, owned by the scan thread.

Only the scan thread changes the image. Drivers publish into their own buffers and the scan
copies them in during its read phase; mirrors (Modbus server, HMI, telemetry) never touch
the live image: they read the immutable `Snapshot` published at the end of each scan, and
their writes are queued and applied whole at the next scan boundary.

A durable write (a client's: Modbus, later cloud and panel) is recorded before it is applied:
`request_writes(..., durable=True)` hands it to the `write_recorders` in turn (the event log,
then the retain store, each committing in its own writer thread), and only once every record
has committed may the scan apply it; its `done` future resolves when the scan that applied it
has published its snapshot (so a read after the answer sees the value).
A write whose records could not be committed is never applied: `done` fails with
`StorageError` and the scan drops it. Durable writes are applied in the order they were
requested; other writes (scenarios, tests, in-process callers) are applied at the next scan
boundary as before, and recorded by the `write_listeners` as they apply.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
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


class StorageError(Exception):
    """A durable write's records could not be committed: it is refused and never applied."""


@attrs.define(eq=False)
class WriteRequest:
    """Validated writes from one mirror request, applied together at a scan boundary.

    `done` resolves (None) once the scan applied the request, or fails with StorageError when
    a durable request could not be recorded (then it is never applied)."""

    source: str
    items: tuple[tuple[Tag, Any], ...]
    durable: bool = False
    ready: bool = True  # may be applied: not durable, or every record committed
    recorded: bool = False  # its event is in the log already (durable writes are recorded first)
    done: Future[None] = attrs.field(factory=Future)

    def fail(self, reason: str) -> None:
        self.ready = False
        if not self.done.done():
            self.done.set_exception(StorageError(reason))


# A recorder takes a durable request and a continuation: it returns False when it has nothing to
# record, else True, and calls the continuation (None or the exception) once its commit is done.
Recorder = Callable[[WriteRequest, Callable[[BaseException | None], None]], bool]


class ProcessImage:
    """All tags of a site, by name, with their current values."""

    def __init__(self, specs: Iterable[TagSpec]):
        self._now = [float("-inf")]
        self.tags: dict[str, Tag] = {}
        for spec in specs:
            self.add(spec)
        self._pending: list[WriteRequest] = []
        self._applied: list[WriteRequest] = []  # applied this scan, answered when it is published
        self._pending_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self.write_listeners: list[Callable[[WriteRequest], None]] = []
        self.write_recorders: list[tuple[int, Recorder]] = []  # (rank, recorder), run by rank: see add_recorder
        # told (in a writer thread) of a durable request refused because a record failed
        self.refusal_listeners: list[Callable[[WriteRequest, BaseException], None]] = []

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
        """Apply the mirrors' queued writes, each request whole. Called at the scan boundary.

        A durable request is applied once it is recorded, and not before any durable request
        queued ahead of it; one that could not be recorded is dropped."""
        if self._applied:
            self._answer_applied()  # the last scan published no snapshot
        if not self._pending:
            return []
        with self._pending_lock:
            queued = self._pending
            if all(request.ready for request in queued):
                pending, self._pending = queued, []
            else:
                pending, waiting = [], []
                blocked = False
                for request in queued:
                    if not request.durable:
                        pending.append(request)
                    elif request.done.done() and not request.ready:
                        continue  # could not be recorded: refused, never applied
                    elif blocked or not request.ready:
                        blocked = True
                        waiting.append(request)
                    else:
                        pending.append(request)
                self._pending = waiting
        now = self._now[0]
        for request in pending:
            for tag, value in request.items:
                tag.value = value
                tag.quality = GOOD
                tag.stamp = now
        for request in pending:
            for listener in self.write_listeners:
                listener(request)
        self._applied = pending  # answered once this scan's snapshot, which shows them, is published
        return pending

    def _answer_applied(self) -> None:
        applied, self._applied = self._applied, []
        for request in applied:
            if not request.done.done():
                request.done.set_result(None)  # the waiting server answers (a non-blocking hand-over)

    def writes_waiting(self) -> bool:
        """Whether a queued write is ready for the next scan boundary (any thread; tests, tools)."""
        with self._pending_lock:
            return any(request.ready for request in self._pending)

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
        if self._applied:
            self._answer_applied()
        return snap

    # --- mirror side (any thread) ------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot | None:
        """The latest published snapshot (None before the first scan ends)."""
        return self._snapshot

    def subscribe(self, callback: Callable[[Snapshot], None]) -> None:
        """Call `callback(snapshot)` from the scan thread after every scan. It must not block."""
        self._subscribers.append(callback)

    def add_recorder(self, rank: int, recorder: Recorder) -> None:
        """Record durable writes with `recorder`, after those of lower rank (the event log is 0,
        the retain store 1: a value is only ever stored once its event is in the log)."""
        self.write_recorders.append((rank, recorder))
        self.write_recorders.sort(key=lambda entry: entry[0])

    def request_writes(self, items: Sequence[tuple[str, Any]], source: str, durable: bool = False) -> WriteRequest:
        """Validate writes from outside the scan and queue them for the next scan boundary.

        Raises KeyError for an unknown tag, PermissionError for a read-only one and
        TagValueError for a bad value; in each case nothing of the request is queued.
        A `durable` request is first recorded (module docstring); wait on its `done`.
        """
        checked: list[tuple[Tag, Any]] = []
        for name, value in items:
            tag = self[name]
            if tag.spec.access is not Access.RW:
                raise PermissionError(f"tag {name!r} is read-only")
            checked.append((tag, tag.check(value)))
        request = WriteRequest(source=source, items=tuple(checked), durable=durable, ready=not durable)
        with self._pending_lock:  # recorders are handed requests in queue order, so they commit in it
            self._pending.append(request)
            if durable:
                self._record(request, 0)
        return request

    def _record(self, request: WriteRequest, stage: int) -> None:
        recorders = self.write_recorders
        while stage < len(recorders):
            recorder = recorders[stage][1]
            stage += 1
            try:
                taken = recorder(request, functools.partial(self._recorded, request, stage))
            except Exception as exc:  # noqa: BLE001 - a recorder that cannot even queue refuses the write
                request.fail(f"{type(exc).__name__}: {exc}")
                return
            if taken:
                return  # goes on in _recorded, in that recorder's writer thread
        request.ready = True

    def _recorded(self, request: WriteRequest, stage: int, error: BaseException | None) -> None:
        if error is not None:
            request.fail(f"{type(error).__name__}: {error}")
            for listener in self.refusal_listeners:
                listener(request, error)
            return
        self._record(request, stage)
