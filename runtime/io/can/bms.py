"""The `can_bms` driver: a multi-rack BMS on a CAN bus, decoded with cantools from a DBC.

Frames arrive whenever the BMS sends them; each poll drains the bus without blocking,
decodes every frame and keeps the newest value of each (message, rack, signal). A value is
fresh for `timeout_factor` times its message's cycle time (times the pages of a
multiplexed message); then the tag is left unchanged (the scan makes it STALE) and after
`bad_after_s` it is BAD. Per rack, so one silent rack does not hide the others.
Bad input is counted and logged once per kind and message: unknown ids, wrong lengths,
undecodable payloads and values outside the DBC's [min|max] (those make just the affected
tags BAD). Error frames are counted; bus-off (or a failing bus) raises, and the base class
reopens the bus with backoff. Commands (messages the EMS sends in the DBC) go out at their
cycle time and at once when a bound output changes; a `Heartbeat` signal counts up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import can
from attrs import validators as v

from plc.tags import Area
from runtime.clock import Clock
from runtime.config.lines import Path
from runtime.config.structure import MISSING, Errors, _suggest, structure
from runtime.io.can.dbc import FAMILIES, VERSIONS, FrameDecoder, FrameProblem, FrameSpec, load_dbc, resolve_dbc
from runtime.io.driver import UNCHANGED, Driver, DriverSettings, Point
from runtime.io.registry import DriverKind

log = logging.getLogger(__name__)

CAN_ERR_BUSOFF = 0x00000040  # error class bit of a socketcan error frame (linux/can/error.h)
META = ("rack_online", "frames", "unknown_ids", "bad_frames", "out_of_range", "error_frames", "bus_off_count",
        "send_errors")


@attrs.frozen
class CanBmsOptions:
    """`[devices.can_bms]`: the bus and the protocol."""

    interface: Literal["socketcan", "virtual", "remote"] = "socketcan"
    channel: str = "can0"
    bitrate: int | None = attrs.field(default=None, validator=v.optional(v.ge(10_000)))
    family: Literal["", "cbms", "nbms"] = ""
    version: Literal["", "2.3", "2.4", "2.5", "2.6"] = ""
    dbc: str = ""
    racks: int = attrs.field(default=1, validator=[v.ge(1), v.le(16)])
    timeout_factor: float = attrs.field(default=3.0, validator=v.ge(1.0))
    bad_after_s: float = attrs.field(default=5.0, validator=v.gt(0.0))
    kernel_filters: bool = True
    max_frames_per_poll: int = attrs.field(default=5000, validator=v.ge(1))
    alive_signal: str = "Heartbeat"


@attrs.frozen
class CanPoint:
    """A tag's io keys: a DBC signal (of one rack for per-rack messages), or a diagnostic."""

    message: str = ""
    signal: str = ""
    rack: int | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(15)]))
    meta: str = ""


@attrs.frozen
class CanBmsConfig:
    options: CanBmsOptions
    dbc_path: str

    @property
    def decoder(self) -> FrameDecoder:
        return FrameDecoder(load_dbc(self.dbc_path))


def parse_options(data: dict[str, Any], path: Path, errors: Errors) -> Any:
    options = structure(CanBmsOptions, data, path, errors)
    if options is MISSING:
        return MISSING
    if bool(options.dbc) == bool(options.family or options.version):
        errors.add(path, f"give dbc = \"<file>\" or family ({', '.join(FAMILIES)}) and version "
                         f"({', '.join(VERSIONS)})")
        return MISSING
    if not options.dbc and not (options.family and options.version):
        errors.add(path + ("version" if options.family else "family",), "family and version go together")
        return MISSING
    file = resolve_dbc(options.dbc, options.family, options.version)
    try:
        load_dbc(str(file))
    except Exception as exc:  # noqa: BLE001 - cantools reports parse problems with several types
        errors.add(path + ("dbc" if options.dbc else "family",), f"cannot load DBC {file}: {exc}")
        return MISSING
    return CanBmsConfig(options, str(file))


def check_points(config: CanBmsConfig, points: Sequence[tuple[Any, CanPoint, Path]]) -> list[tuple[Path, str]]:
    decoder = config.decoder
    problems: list[tuple[Path, str]] = []
    for tag, point, path in points:
        problems.extend(_check_point(decoder, config.options, tag, point, path))
    return problems


def _check_point(decoder: FrameDecoder, options: CanBmsOptions, tag: Any, point: CanPoint,
                 path: Path) -> list[tuple[Path, str]]:
    is_output = tag.area is Area.OUTPUT
    if point.meta:
        if point.meta not in META:
            return [(path + ("meta",), f"unknown diagnostic {point.meta!r}{_suggest(point.meta, META)}")]
        if is_output:
            return [(path + ("meta",), "a diagnostic is an input")]
        if (point.meta == "rack_online") != (point.rack is not None):
            return [(path + ("rack",), "rack_online needs rack = <n>; other diagnostics take no rack")]
        return []
    spec = decoder.by_name.get(point.message)
    if spec is None:
        return [(path + ("message",), f"the DBC has no message {point.message!r}{_suggest(point.message, decoder.by_name)}")]
    names = [s.name for s in spec.message.signals]
    if point.signal not in names:
        return [(path + ("signal",), f"message {point.message!r} has no signal {point.signal!r}{_suggest(point.signal, names)}")]
    sent_by_ems = "EMS" in (spec.message.senders or [])
    if is_output != sent_by_ems:
        what = "is sent by the BMS; an output needs an EMS command message" if is_output \
            else "is a command the EMS sends; an input needs a BMS message"
        return [(path + ("message",), f"message {point.message!r} {what}")]
    if spec.per_rack != (point.rack is not None):
        return [(path + ("rack",), f"message {point.message!r} is per rack: give rack = <n>" if spec.per_rack
                 else f"message {point.message!r} is not per rack: drop rack")]
    if point.rack is not None and point.rack >= options.racks:
        return [(path + ("rack",), f"rack {point.rack} is beyond racks = {options.racks}")]
    return []


@attrs.define
class CanStats:
    frames: int = 0
    unknown_ids: int = 0
    bad_frames: int = 0
    out_of_range: int = 0
    error_frames: int = 0
    bus_off_count: int = 0
    send_errors: int = 0
    sent: int = 0


class CanBmsDriver(Driver):
    kind = "can_bms"

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, config: CanBmsConfig):
        super().__init__(name, inputs, outputs, clock, settings)
        self.options = config.options
        self.decoder = config.decoder
        self.stats = CanStats()
        self.bus: can.BusABC | None = None
        # (message, rack, page) -> (values, received at, signals out of range): one entry per frame
        self._frames: dict[tuple[str, int | None, int | None], tuple[dict[str, Any], float, Any]] = {}
        self._broken: dict[tuple[str, int | None], float] = {}  # a malformed frame came, no good one since
        self._keys = {p.tag: self._key(p.address) for p in inputs}
        self._rack_seen: dict[int, float] = {}
        self._problems: dict[tuple[str, str], str] = {}
        self._opened_at = -math.inf
        self._commands = self._command_plan()
        self._next_send: dict[str, float] = {name: -math.inf for name in self._commands}
        self._command_values: dict[str, dict[str, Any]] = {n: dict(d) for n, d in self._commands.items()}
        # A command message goes out only once every output bound to it has had a value: a
        # restarted controller says nothing before its programs have decided (no stray
        # "contactor open" from a signal's default while the inverter still runs).
        self._unset: dict[str, set[str]] = {}
        for point in outputs:
            self._unset.setdefault(point.address.message, set()).add(point.address.signal)
        self._alive = 0
        self._fresh_for = {p.tag: self._freshness(p.address) for p in inputs}

    # --- setup ----------------------------------------------------------------------------------
    def _key(self, point: CanPoint) -> tuple[str, int | None, int | None] | None:
        if point.meta:
            return None
        spec = self.decoder.by_name[point.message]
        return (point.message, point.rack, spec.page_of.get(point.signal))

    def _freshness(self, point: CanPoint) -> float:
        if point.meta:
            return math.inf
        spec = self.decoder.by_name[point.message]
        signal = spec.message.get_signal_by_name(point.signal)
        pages = spec.pages if signal.multiplexer_ids else 1
        return max(spec.cycle_s, 0.1) * pages * self.options.timeout_factor

    def _command_plan(self) -> dict[str, dict[str, Any]]:
        """Every command message an output is bound to, with the start value of each signal."""
        plan: dict[str, dict[str, Any]] = {}
        for point in self.outputs:
            message = self.decoder.by_name[point.address.message].message
            plan.setdefault(message.name, {s.name: (s.initial if s.initial is not None else 0)
                                           for s in message.signals})
        return plan

    def _filters(self) -> list[dict[str, Any]] | None:
        if self.options.interface != "socketcan" or not self.options.kernel_filters:
            return None
        filters = []
        for spec in self.decoder.specs.values():
            mask = 0x1FFFFFFF if spec.message.is_extended_frame else 0x7FF
            if spec.per_rack and not spec.rack_signal:
                mask &= ~self.decoder.rack_mask
            filters.append({"can_id": spec.message.frame_id, "can_mask": mask,
                            "extended": spec.message.is_extended_frame})
        return filters

    # --- connection -----------------------------------------------------------------------------
    def open(self) -> None:
        kwargs: dict[str, Any] = {"interface": self.options.interface, "channel": self.options.channel}
        if self.options.bitrate and self.options.interface != "socketcan":
            kwargs["bitrate"] = self.options.bitrate
        filters = self._filters()
        if filters:
            kwargs["can_filters"] = filters
        self.bus = can.Bus(**kwargs)
        self._opened_at = self.clock.now()
        log.log(logging.DEBUG if self._last_error else logging.INFO, "device %s: on %s %s (%s)", self.name,
                self.options.interface, self.options.channel, self.decoder.db.dbc.attributes["ProtocolVersion"].value
                if self.decoder.db.dbc and "ProtocolVersion" in self.decoder.db.dbc.attributes else "DBC")

    def close(self) -> None:
        bus, self.bus = self.bus, None
        if bus is None:
            return
        try:
            bus.shutdown()
        except (OSError, can.CanError) as exc:  # a remote bus whose server went away cannot say goodbye
            log.debug("device %s: closing the bus: %s", self.name, exc)
            # python-can's own part of the shutdown, which the interface's did not reach: else the
            # bus's __del__ shuts down again and prints an "Exception ignored" traceback
            can.BusABC.shutdown(bus)

    # --- reading --------------------------------------------------------------------------------
    def read_inputs(self, now: float) -> Sequence[Any]:
        self._drain(now)
        self._send_due(now)
        return [self._value(p, now) for p in self.inputs]

    def _drain(self, now: float) -> None:
        bus = self.bus
        assert bus is not None
        for _ in range(self.options.max_frames_per_poll):
            frame = bus.recv(timeout=0.0)
            if frame is None:
                return
            if frame.is_error_frame:
                self._error_frame(frame)
                continue
            self.handle(frame.arbitration_id, bytes(frame.data), frame.is_extended_id, now)

    def handle(self, frame_id: int, data: bytes, extended: bool, now: float) -> None:
        """Decode one data frame into the latest values (also the benchmark's entry point)."""
        self.stats.frames += 1
        try:
            spec, rack, values, out_of_range = self.decoder.decode(frame_id, data, extended)
        except FrameProblem as problem:
            self._frame_problem(problem, frame_id, now)
            return
        name = spec.message.name
        self._frames[(name, rack, values[spec.mux] if spec.mux else None)] = (values, now, out_of_range)
        if out_of_range:
            self.stats.out_of_range += 1
            self.fault_count += 1
            self._note(("range", name), f"{name}{_rack_label(rack)}: {', '.join(out_of_range)} outside the DBC range")
        elif self._problems:
            self._clear(("range", name))
            self._clear(("frame", name))
        if rack is not None:
            self._rack_seen[rack] = now
        if self._broken:
            self._broken.pop((name, rack), None)

    def _frame_problem(self, problem: FrameProblem, frame_id: int, now: float) -> None:
        self.fault_count += 1
        if problem.kind == "unknown id":
            self._note(("unknown", f"{frame_id:X}"), str(problem))
            self.stats.unknown_ids += 1  # counted once it is logged: a reader of the count finds the line
            return
        self.stats.bad_frames += 1
        spec = problem.spec
        assert spec is not None
        self._note(("frame", spec.message.name), f"{problem.kind}: {problem}")
        racks = [problem.rack] if problem.rack is not None or not spec.per_rack else list(range(self.options.racks))
        for rack in racks:
            self._broken[(spec.message.name, rack)] = now

    def _error_frame(self, frame: can.Message) -> None:
        self.stats.error_frames += 1
        if frame.arbitration_id & CAN_ERR_BUSOFF:
            self.stats.bus_off_count += 1
            raise can.CanOperationError("bus off")  # the base class reopens the bus with backoff
        self._note(("error", "frame"), f"error frames on the bus (class 0x{frame.arbitration_id:X})")

    def _value(self, point: Point, now: float) -> Any:
        address: CanPoint = point.address
        if address.meta:
            return self._meta(address, now)
        if (address.message, address.rack) in self._broken:
            return None
        entry = self._frames.get(self._keys[point.tag])  # type: ignore[arg-type]
        if entry is None:
            return None if now - self._opened_at >= self.options.bad_after_s else UNCHANGED
        values, at, out_of_range = entry
        age = now - at
        if age >= self.options.bad_after_s or address.signal in out_of_range:
            return None
        if age > self._fresh_for[point.tag]:
            return UNCHANGED
        value = values[address.signal]
        return bool(value) if point.is_bool else value

    def _meta(self, address: CanPoint, now: float) -> Any:
        if address.meta == "rack_online":
            seen = self._rack_seen.get(address.rack, -math.inf)  # type: ignore[arg-type]
            return now - seen <= self._rack_timeout()
        return getattr(self.stats, address.meta)

    def _rack_timeout(self) -> float:
        cycles = [s.cycle_s for s in self.decoder.specs.values() if s.per_rack and s.cycle_s]
        return (min(cycles) if cycles else 1.0) * self.options.timeout_factor

    # --- commands -------------------------------------------------------------------------------
    def write_outputs(self, raw: Sequence[Any]) -> None:
        changed = set()
        for point, value in zip(self.outputs, raw):
            if value is None:
                continue
            address: CanPoint = point.address
            values = self._command_values[address.message]
            value = int(bool(value)) if point.is_bool else value
            unset = self._unset[address.message]
            if values.get(address.signal) != value or address.signal in unset:
                values[address.signal] = value
                unset.discard(address.signal)
                changed.add(address.message)
        for message in changed:
            self._next_send[message] = -math.inf  # send now, not at the next cycle

    def _send_due(self, now: float) -> None:
        for name, values in self._command_values.items():
            if now < self._next_send[name] or self._unset[name]:
                continue  # not due, or nothing commanded yet: a restarted controller says nothing first
            spec = self.decoder.by_name[name]
            self._next_send[name] = now + (spec.cycle_s or 0.2)
            if self.options.alive_signal in values:
                self._alive = (self._alive + 1) % 256
                values[self.options.alive_signal] = self._alive
            self._send(spec, values)

    def _send(self, spec: FrameSpec, values: dict[str, Any]) -> None:
        assert self.bus is not None
        message = spec.message
        try:
            data = message.encode(values, scaling=True, strict=True)
        except Exception as exc:  # noqa: BLE001 - a value the DBC cannot carry
            self.stats.send_errors += 1
            self._note(("encode", message.name), f"cannot encode {message.name}: {exc}")
            return
        frame = can.Message(arbitration_id=message.frame_id, data=data, is_extended_id=message.is_extended_frame)
        try:
            self.bus.send(frame, timeout=0.05)
        except can.CanOperationError:
            raise  # bus off or interface gone: reopen with backoff
        except can.CanError as exc:
            self.stats.send_errors += 1
            self._note(("send", message.name), f"cannot send {message.name}: {exc}")
            return
        self.stats.sent += 1
        self._clear(("send", message.name))

    # --- logging once per change ----------------------------------------------------------------
    def _note(self, key: tuple[str, str], message: str) -> None:
        if self._problems.get(key) != message:
            log.warning("device %s: %s", self.name, message)
            self._problems[key] = message

    def _clear(self, key: tuple[str, str]) -> None:
        if self._problems.pop(key, None) is not None:
            log.info("device %s: %s frames are fine again", self.name, key[1])


def _rack_label(rack: int | None) -> str:
    return "" if rack is None else f" (rack {rack})"


KIND = DriverKind(
    name="can_bms",
    driver=CanBmsDriver,
    options=CanBmsOptions,
    point=CanPoint,
    check=check_points,
    parse_options=parse_options,
)
