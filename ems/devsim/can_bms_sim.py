"""A simulated BMS on a python-can bus: sends the DBC's BMS messages at their cycle times,
with values from the plant simulator, and applies the EMS commands it receives.

Signal values come from each signal's `PlantVar` attribute in the DBC (`{rack}` is the rack
number); a few are computed from several plant variables (`@pack_state`, `@alarm_any`,
`@min_cell_v_num`, `@max_cell_v_num`, `@min_cell_t_num`, `@max_cell_t_num`, `@cell_v` for the
CellNN_V pages). A multiplexed cell-page message goes out one page per frame, cycling through
the pages of the plant's cells only (`battery.n_cells` per rack: 134 pages for 400 cells). `BmsFaults`
switches on bad behaviour: silence (all or some racks), unknown ids, wrong lengths, values
outside the DBC range, error frames, bus-off.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import attrs
import can
from cantools.database.can import Database, Message, Signal

from runtime.io.can.bms import CAN_ERR_BUSOFF
from runtime.io.can.dbc import FrameDecoder, FrameSpec, attribute

log = logging.getLogger(__name__)
_CELL = re.compile(r"(\d+)")
_CELL_NUMBERS = {"@min_cell_v_num": "min_cell_v", "@max_cell_v_num": "max_cell_v",  # rack-local, 1-based
                 "@min_cell_t_num": "min_cell_temp", "@max_cell_t_num": "max_cell_temp"}


@attrs.define
class BmsFaults:
    silent: bool = False
    silent_racks: frozenset[int] = frozenset()
    unknown_ids: bool = False  # also send frames whose ids the DBC does not know
    wrong_length: str = ""  # message whose frames go out one byte short
    out_of_range: str = ""  # "Message.Signal" sent with its largest raw value, beyond the DBC maximum
    error_frames: bool = False  # an error frame (controller problem) with every cycle
    bus_off: bool = False  # one bus-off error frame, then the flag clears


class SimulatedBms:
    """Sends BMS frames for `racks` racks on `bus` and listens for the EMS's commands."""

    def __init__(self, db: Database, bus: can.BusABC, plant: Any, racks: int = 1,
                 lock: threading.Lock | None = None, tick_s: float = 0.005):
        self.db = db
        self.decoder = FrameDecoder(db)
        self.bus = bus
        self.plant = plant
        self.racks = racks
        self.lock = lock or threading.Lock()
        self.tick_s = tick_s
        self.faults = BmsFaults()
        self.sent = 0
        self.commands: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._page: dict[tuple[str, int], int] = {}
        self._pages: dict[str, tuple[list[int], dict[int | None, list[Signal]]]] = {}  # see _layout
        self._schedule = self._plan()
        cells = getattr(getattr(plant, "battery", None), "n_cells", None)
        self.cells_per_rack = int(cells) if cells else 16

    def _plan(self) -> list[tuple[FrameSpec, int | None]]:
        plan = []
        for spec in self.decoder.specs.values():
            if "BMS" not in (spec.message.senders or []):
                continue
            for rack in (range(self.racks) if spec.per_rack else [None]):
                plan.append((spec, rack))
        return plan

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for target, name in ((self._send_loop, "bms-sim-tx"), (self._receive_loop, "bms-sim-rx")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)

    # --- sending --------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        next_due = {i: time.monotonic() for i in range(len(self._schedule))}
        while not self._stop.is_set():
            now = time.monotonic()
            for index, (spec, rack) in enumerate(self._schedule):
                if now < next_due[index]:
                    continue
                next_due[index] += spec.cycle_s or 0.1
                if next_due[index] < now:
                    next_due[index] = now + (spec.cycle_s or 0.1)
                self.send_one(spec, rack)
            self._stop.wait(self.tick_s)

    def send_one(self, spec: FrameSpec, rack: int | None) -> None:
        faults = self.faults
        if faults.silent or (rack is not None and rack in faults.silent_racks):
            return
        values = self.values_for(spec.message, rack)
        if values is None:
            return
        data = spec.message.encode(values, scaling=True, strict=False)
        data = self._corrupt(spec.message, data)
        frame_id = self.decoder.frame_id(spec, rack)
        self._transmit(can.Message(arbitration_id=frame_id, data=data, is_extended_id=spec.message.is_extended_frame))
        if faults.unknown_ids:
            self._transmit(can.Message(arbitration_id=0x7A5, data=bytes(8), is_extended_id=False))
        if faults.error_frames:
            self._transmit(can.Message(arbitration_id=0x004, is_error_frame=True, data=bytes(8)))  # controller
        if faults.bus_off:
            faults.bus_off = False
            self._transmit(can.Message(arbitration_id=CAN_ERR_BUSOFF, is_error_frame=True, data=bytes(8)))

    def _corrupt(self, message: Message, data: bytes) -> bytes:
        faults = self.faults
        if faults.wrong_length == message.name:
            return data[:-1]
        if faults.out_of_range.startswith(message.name + "."):
            signal = message.get_signal_by_name(faults.out_of_range.split(".", 1)[1])
            raw = (1 << (signal.length - 1)) - 1 if signal.is_signed else (1 << signal.length) - 1
            values = message.decode_simple(data, decode_choices=False, scaling=False)
            values[signal.name] = raw
            return message.encode(values, scaling=False, strict=False)
        return data

    def _transmit(self, frame: can.Message) -> None:
        try:
            self.bus.send(frame)
            self.sent += 1
        except can.CanError as exc:
            log.debug("simulated BMS: send failed: %s", exc)

    def values_for(self, message: Message, rack: int | None) -> dict[str, Any] | None:
        """Signal values for one frame of `message` (the current page for multiplexed ones)."""
        pages, signals = self._pages.get(message.name) or self._layout(message)
        page = None
        if pages:
            key = (message.name, rack or 0)
            page = pages[self._page.get(key, 0) % len(pages)]
            self._page[key] = self._page.get(key, 0) + 1
        values: dict[str, Any] = {}
        with self.lock:
            for signal in signals[page]:
                values[signal.name] = self._signal_value(message, signal, rack, page)
        return values

    def _layout(self, message: Message) -> tuple[list[int], dict[int | None, list[Signal]]]:
        """The pages `message` cycles through (none: not multiplexed) and each page's signals."""
        mux = [s for s in message.signals if s.is_multiplexer and s.multiplexer_ids is None and
               any(o.multiplexer_signal == s.name for o in message.signals)]
        pages: list[int] = []
        if mux:
            pages = sorted({i for s in message.signals for i in (s.multiplexer_ids or [])})
            pages = [p for p in pages if 3 * p < self.cells_per_rack] or pages[:1]
        keys: list[int | None] = [*pages] if pages else [None]
        signals = {page: [s for s in message.signals if s.multiplexer_ids is None or page in s.multiplexer_ids]
                   for page in keys}
        self._pages[message.name] = (pages, signals)
        return pages, signals

    def _signal_value(self, message: Message, signal: Signal, rack: int | None, page: int | None) -> Any:
        if signal.name == _rack_signal(message):
            return rack or 0
        if signal.is_multiplexer:
            return page or 0
        var = attribute(signal, "PlantVar", "") or ""
        try:
            value = self._plant_value(var, signal, rack or 0) if var else (signal.initial or 0)
        except (KeyError, AttributeError, IndexError, ValueError):
            value = 0
        return _clamp(signal, value)

    def _plant_value(self, var: str, signal: Signal, rack: int) -> Any:
        get = self.plant.get
        if var == "@pack_state":
            if not get("bms.awake"):
                return 4
            if get("bms.trip_latched"):
                return 3
            return 2 if get("bms.contactor_closed") else 1
        if var == "@alarm_any":
            return int(get("bms.alarm_bits") != 0)
        if var in _CELL_NUMBERS:
            position = _CELL_NUMBERS[var]  # the plant's 0-based module and cell-in-module of that extreme
            per_module = self.cells_per_rack // max(1, self._modules())
            return get(f"bms.{position}_module") * per_module + get(f"bms.{position}_cell") + 1
        if var == "@cell_v":
            number = int(_CELL.search(signal.name).group(1))  # type: ignore[union-attr]
            cells = self.plant.battery.cell_v
            return float(cells[rack][number - 1]) if number <= cells.shape[1] else 0.0
        value = get(var.format(rack=rack))
        return float(value) if isinstance(value, (bool, int, float)) else 0

    def _modules(self) -> int:
        cfg = getattr(getattr(self.plant, "battery", None), "cfg", None)
        return int(getattr(cfg, "modules_per_rack", 1) or 1)

    # --- receiving ------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        commands = {s.message.frame_id: s for s in self.decoder.specs.values()
                    if "EMS" in (s.message.senders or [])}
        while not self._stop.is_set():
            try:
                frame = self.bus.recv(0.05)
            except can.CanError:
                continue
            if frame is None or frame.is_error_frame or frame.arbitration_id not in commands:
                continue
            spec = commands[frame.arbitration_id]
            try:
                values: dict[str, Any] = spec.message.decode_simple(bytes(frame.data), decode_choices=False)
            except Exception:  # noqa: BLE001, S112 - a frame a real BMS would not decode, it ignores too
                continue
            self.commands.append(values)
            self._apply(spec.message, values)

    def _apply(self, message: Message, values: dict[str, Any]) -> None:
        with self.lock:
            for signal in message.signals:
                var = attribute(signal, "PlantVar", "") or ""
                if var and not var.startswith("@") and signal.name in values:
                    try:
                        self.plant.set(var, bool(values[signal.name]) if signal.length == 1 else values[signal.name])
                    except (KeyError, ValueError) as exc:
                        log.debug("simulated BMS: %s: %s", var, exc)


def _rack_signal(message: Message) -> str:
    return str(attribute(message, "RackIdSignal", "") or "")


def _clamp(signal: Signal, value: Any) -> Any:
    if signal.minimum is not None and value < signal.minimum:
        return signal.minimum
    if signal.maximum is not None and value > signal.maximum:
        return signal.maximum
    return value
