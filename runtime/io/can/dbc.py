"""DBC files of the supported BMS families and the frame decoder the CAN BMS driver uses.

Our DBCs mark their multi-rack messages with message attributes, so the decoder needs no
family-specific code:
  * `RackMessage = 1` - the message exists once per rack;
  * database `RackIdMask` (CBMS: 0x00F) - the rack number is `frame id & mask` and the DBC
    declares the rack-0 id; or
  * `RackIdSignal = "RackId"` (NBMS) - the rack number is a signal of the payload (the
    frame's multiplexer).
  * `GenMsgCycleTime` - the send period in ms (staleness and the simulator's rate).
  * `PlantVar` (signal) - the plant variable the device simulator sends (simulator only).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path as FsPath
from typing import Any

import attrs
import cantools
from cantools.database.can import Database, Message

from runtime.paths import DBC_DIR, IO_MAPS_DIR

FAMILIES = ("cbms", "nbms")
VERSIONS = ("2.3", "2.4", "2.5", "2.6")  # 2.6: 16-bit cell numbers, cell pages for 768 cells


def resolve_dbc(dbc: str = "", family: str = "", version: str = "") -> FsPath:
    """`dbc` (absolute or relative to io_maps/), else the shipped file for family + version."""
    if dbc:
        path = FsPath(dbc)
        return path if path.is_absolute() or path.exists() else IO_MAPS_DIR / path
    return DBC_DIR / f"{family}_v{version}.dbc"


@functools.lru_cache(maxsize=16)
def load_dbc(path: str) -> Database:
    db = cantools.database.load_file(path, database_format="dbc", strict=True)
    assert isinstance(db, Database), "a DBC file loads as a CAN database (not a diagnostics one)"
    return db


def attribute(owner: Any, name: str, default: Any = None) -> Any:
    attrs_ = getattr(getattr(owner, "dbc", None), "attributes", None) or {}
    item = attrs_.get(name)
    return default if item is None else item.value


@attrs.frozen
class FrameSpec:
    """What the decoder knows about one DBC message."""

    message: Message
    per_rack: bool
    rack_signal: str  # "" when the rack is in the frame id
    cycle_s: float
    limits: dict[Any, tuple[tuple[str, float, float], ...]]  # page -> signals that can leave their DBC range
    pages: int  # multiplexer values (1 when not multiplexed)
    mux: str  # the signal selecting the page ("" when not multiplexed)
    page_of: dict[str, int | None]  # signal -> the page that carries it (None: every frame)


class FrameProblem(Exception):
    """A frame that cannot be used: `kind` is "unknown id", "wrong length" or "undecodable"."""

    def __init__(self, kind: str, detail: str, spec: FrameSpec | None = None, rack: int | None = None):
        super().__init__(detail)
        self.kind, self.spec, self.rack = kind, spec, rack


class FrameDecoder:
    """Frame id -> message and rack; payload -> signal values plus the signals out of range."""

    def __init__(self, db: Database):
        self.db = db
        self.rack_mask = int(attribute(db, "RackIdMask", 0) or 0)
        self.specs: dict[int, FrameSpec] = {}
        self.by_name: dict[str, FrameSpec] = {}
        for message in db.messages:
            spec = _spec(message)
            self.specs[message.frame_id] = spec
            self.by_name[message.name] = spec

    def lookup(self, frame_id: int) -> tuple[FrameSpec, int | None] | None:
        spec = self.specs.get(frame_id)
        if spec is not None:
            return spec, (0 if spec.per_rack and not spec.rack_signal else None)
        if self.rack_mask:
            spec = self.specs.get(frame_id & ~self.rack_mask)
            if spec is not None and spec.per_rack and not spec.rack_signal:
                return spec, frame_id & self.rack_mask
        return None

    def frame_id(self, spec: FrameSpec, rack: int | None) -> int:
        base = spec.message.frame_id
        return base + rack if spec.per_rack and not spec.rack_signal and rack else base

    def decode(self, frame_id: int, data: bytes, extended: bool) -> tuple[FrameSpec, int | None, dict[str, Any], list[str]]:
        """Decode one frame: (spec, rack, values, signals out of the DBC range). Raises FrameProblem."""
        found = self.lookup(frame_id)
        if found is None or found[0].message.is_extended_frame != extended:
            raise FrameProblem("unknown id", f"frame id 0x{frame_id:X} is not in the DBC")
        spec, rack = found
        message = spec.message
        if len(data) != message.length:
            rack = self._rack_of_short(spec, data, rack)
            raise FrameProblem("wrong length", f"{message.name}: {len(data)} bytes, expected {message.length}",
                               spec, rack)
        try:
            values: dict[str, Any] = message.decode_simple(data, decode_choices=False, scaling=True)  # numbers only
        except Exception as exc:  # noqa: BLE001 - cantools raises several types for undecodable payloads
            raise FrameProblem("undecodable", f"{message.name}: {exc}", spec, rack) from None
        if spec.rack_signal:
            rack = int(values.get(spec.rack_signal, 0))
        limits = spec.limits.get(values[spec.mux], ()) if spec.mux else spec.limits[None]
        bad = [name for name, lo, hi in limits if not lo <= values[name] <= hi]
        return spec, rack, values, bad

    def _rack_of_short(self, spec: FrameSpec, data: bytes, rack: int | None) -> int | None:
        if not spec.rack_signal or not data:
            return rack
        try:  # the rack number sits in the first byte of our NBMS frames: readable even when short
            padded = bytes(data) + bytes(spec.message.length - len(data)) if len(data) < spec.message.length \
                else bytes(data[: spec.message.length])
            values: dict[str, Any] = spec.message.decode_simple(padded, decode_choices=False)  # numbers only
            return int(values.get(spec.rack_signal, 0))
        except Exception:  # noqa: BLE001 - unreadable: the frame cannot be attributed to a rack
            return None


def _spec(message: Message) -> FrameSpec:
    per_rack = bool(attribute(message, "RackMessage", 0))
    rack_signal = str(attribute(message, "RackIdSignal", "") or "")
    cycle_ms = attribute(message, "GenMsgCycleTime", 0) or message.cycle_time or 0
    muxes = [s.name for s in message.signals if s.is_multiplexer and s.name != rack_signal]
    page_ids = sorted({i for s in message.signals for i in (s.multiplexer_ids or [])})
    pages = len(page_ids) if muxes else 1
    page_of = {s.name: (s.multiplexer_ids[0] if s.multiplexer_ids else None) for s in message.signals}
    checked = [(s.name, _bound(s.minimum, -math.inf), _bound(s.maximum, math.inf), s.multiplexer_ids)
               for s in message.signals if not s.is_multiplexer and _can_leave_range(s)]
    limits: dict[Any, tuple[tuple[str, float, float], ...]] = {
        page: tuple((n, lo - 1e-9, hi + 1e-9) for n, lo, hi, ids in checked if ids is None or page in ids)
        for page in (page_ids if muxes else [None])}
    return FrameSpec(message, per_rack, rack_signal, float(cycle_ms) / 1000.0, limits, max(pages, 1),
                     muxes[0] if muxes else "", page_of)


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def _can_leave_range(signal: Any) -> bool:
    """Whether some raw value of the signal decodes outside its [minimum|maximum]."""
    if signal.is_float:
        return True
    if signal.is_signed:
        raw_lo, raw_hi = -(1 << (signal.length - 1)), (1 << (signal.length - 1)) - 1
    else:
        raw_lo, raw_hi = 0, (1 << signal.length) - 1
    ends = sorted((raw_lo * signal.scale + signal.offset, raw_hi * signal.scale + signal.offset))
    lo, hi = signal.minimum, signal.maximum
    return (lo is not None and ends[0] < lo - 1e-9) or (hi is not None and ends[1] > hi + 1e-9)
