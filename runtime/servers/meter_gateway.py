"""The meter gateway: the site meter's readings in a Carlo Gavazzi EM24 register layout.

An inverter or another controller that expects an EM24 on its Modbus line (TCP or RS-485)
can read ours instead: the io_map's `[meter_gateway.quantities]` says which tag feeds each
quantity of the layout (`w_total = "grid_power_w"`), the tag's unit says how to convert
(W or kW, Wh or kWh, ...), and the layout fixes addresses, INT32 with the low word first,
and the EM24's value weights (V x10, A x1000, W x10, PF x1000, Hz x10, kWh x10).

Two layouts: `em24_e1` (the EM24 Ethernet: the EM24 communication protocol's table of
instantaneous variables and meters) and `em24_din` (the RS-485 EM24 DIN PFA/PFB/X models,
whose table inserts demand values and so moves PF, Hz and the meters). docs/meter_gateway.md
lists both and the sources they follow.

Quantities not mapped read 0. A read that touches a quantity whose tag is not GOOD (the
meter is silent, stale or never read) is answered with exception 04, as a failed meter
would be, so the reader falls back to its own safe behaviour instead of using old numbers.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from plc.tags import DType, ModbusTable, Quality
from runtime.config.lines import Path
from runtime.config.schema import MeterGatewayConfig
from runtime.image import ProcessImage, Snapshot
from runtime.servers.host import ConnectionLimits, Peer, ServedMirror
from runtime.servers.register_map import ILLEGAL_ADDRESS, ILLEGAL_FUNCTION

log = logging.getLogger(__name__)

DEVICE_FAILURE = 0x04
DEVICE_BUSY = 0x06
GOOD = Quality.GOOD

# Accepted tag units per quantity kind, with the factor to the layout's unit.
UNITS: dict[str, dict[str, float]] = {
    "V": {"V": 1.0, "kV": 1000.0},
    "A": {"A": 1.0, "mA": 0.001},
    "W": {"W": 1.0, "kW": 1000.0},
    "var": {"var": 1.0, "kvar": 1000.0},
    "VA": {"VA": 1.0, "kVA": 1000.0},
    "PF": {"": 1.0, "%": 0.01},
    "Hz": {"Hz": 1.0},
    "kWh": {"kWh": 1.0, "Wh": 0.001, "MWh": 1000.0},
    "kvarh": {"kvarh": 1.0, "varh": 0.001, "Mvarh": 1000.0},
}


@attrs.frozen
class Quantity:
    """One measured value of a layout."""

    name: str
    address: int
    kind: str  # key of UNITS
    weight: float  # register value = value in the kind's unit x weight
    words: int  # 2: INT32, low word first; 1: INT16
    description: str

    @property
    def end(self) -> int:
        return self.address + self.words


@attrs.frozen
class Layout:
    """A meter's register layout: the measurement block and the identity registers around it."""

    name: str
    title: str
    block_start: int
    block_end: int  # one past the last register of the measurement block
    quantities: tuple[Quantity, ...]
    fixed: tuple[tuple[int, int, str], ...]  # (address, value, meaning): one-register reads
    serial_address: int
    serial_words: int
    model_code: int  # answered to a one-register read of 000Bh (the EM24's identification code)


def _q(name: str, address: int, kind: str, weight: float, description: str, words: int = 2) -> Quantity:
    return Quantity(name, address, kind, weight, words, description)


def _common_head() -> list[Quantity]:
    """000h..02Dh: identical in both EM24 tables."""
    out = []
    for i, phase in enumerate(("l1", "l2", "l3")):
        out.append(_q(f"v_{phase}n", 0x00 + 2 * i, "V", 10, f"V {phase.upper()}-N"))
    for i, pair in enumerate(("l1l2", "l2l3", "l3l1")):
        out.append(_q(f"v_{pair}", 0x06 + 2 * i, "V", 10, f"V {pair[:2].upper()}-{pair[2:].upper()}"))
    for i, phase in enumerate(("l1", "l2", "l3")):
        out.append(_q(f"a_{phase}", 0x0C + 2 * i, "A", 1000, f"A {phase.upper()}"))
    for i, phase in enumerate(("l1", "l2", "l3")):
        out.append(_q(f"w_{phase}", 0x12 + 2 * i, "W", 10, f"W {phase.upper()}"))
    for i, phase in enumerate(("l1", "l2", "l3")):
        out.append(_q(f"va_{phase}", 0x18 + 2 * i, "VA", 10, f"VA {phase.upper()}"))
    for i, phase in enumerate(("l1", "l2", "l3")):
        out.append(_q(f"var_{phase}", 0x1E + 2 * i, "var", 10, f"var {phase.upper()}"))
    out += [
        _q("v_ln", 0x24, "V", 10, "V L-N system"),
        _q("v_ll", 0x26, "V", 10, "V L-L system"),
        _q("w_total", 0x28, "W", 10, "W system (positive: imported from the grid)"),
        _q("va_total", 0x2A, "VA", 10, "VA system"),
        _q("var_total", 0x2C, "var", 10, "var system"),
    ]
    return out


def _tail(pf: int, hz: int, kwh_import: int, kvarh_import: int, kwh_phase: int, kwh_export: int) -> list[Quantity]:
    out = [_q(f"pf_{p}", pf + i, "PF", 1000, f"PF {p.upper()} (negative: leading)", words=1)
           for i, p in enumerate(("l1", "l2", "l3"))]
    out.append(_q("pf_total", pf + 3, "PF", 1000, "PF system", words=1))
    out.append(_q("hz", hz, "Hz", 10, "Frequency", words=1))
    out.append(_q("kwh_import", kwh_import, "kWh", 10, "kWh (+) total: imported energy"))
    out.append(_q("kvarh_import", kvarh_import, "kvarh", 10, "kvarh (+) total"))
    out += [_q(f"kwh_import_{p}", kwh_phase + 2 * i, "kWh", 10, f"kWh (+) {p.upper()}")
            for i, p in enumerate(("l1", "l2", "l3"))]
    out.append(_q("kwh_export", kwh_export, "kWh", 10, "kWh (-) total: exported energy"))
    return out


LAYOUTS: dict[str, Layout] = {
    "em24_e1": Layout(
        name="em24_e1",
        title="Carlo Gavazzi EM24 Ethernet (EM24DINAV53XE1X)",
        block_start=0x0000,
        block_end=0x0050,
        quantities=tuple(_common_head() + _tail(pf=0x2E, hz=0x33, kwh_import=0x34, kvarh_import=0x36,
                                                  kwh_phase=0x40, kwh_export=0x4E)),
        fixed=(
            (0x0032, 0, "Phase sequence: 0 = L1-L2-L3"),
            (0x0302, 0x1000, "Hardware version 1.0.0"),
            (0x0304, 0x1000, "Firmware version 1.0.0"),
            (0x1002, 0, "Measuring system: 0 = 3Pn (three phases with neutral)"),
            (0xA000, 7, "Application: 7 = H"),
            (0xA100, 3, "Front selector: 3 = locked"),
        ),
        serial_address=0x5000,
        serial_words=7,
        model_code=1651,  # EM24DINAV53XE1X
    ),
    "em24_din": Layout(
        name="em24_din",
        title="Carlo Gavazzi EM24 DIN, RS-485 (PFA/PFB/X models, AV5)",
        block_start=0x0000,
        block_end=0x0060,
        quantities=tuple(_common_head() + _tail(pf=0x32, hz=0x37, kwh_import=0x3E, kvarh_import=0x40,
                                                  kwh_phase=0x46, kwh_export=0x5C)),
        fixed=(
            (0x0036, 0, "Phase sequence: 0 = L1-L2-L3"),
            (0x0302, 0, "Version code: 0 = A"),
            (0x0303, 0, "Revision code: 0"),
            (0x1101, 7, "Application: 7 = H"),
            (0x1102, 0, "Measuring system: 0 = 3Pn (three phases with neutral)"),
        ),
        serial_address=0x1300,
        serial_words=7,
        model_code=72,  # EM24-DIN AV5
    ),
}
MODEL_CODE_ADDRESS = 0x000B


@attrs.frozen
class Source:
    """A layout quantity fed by a tag."""

    quantity: Quantity
    tag: str
    factor: float  # tag unit -> the quantity's unit


def check_quantities(cfg: MeterGatewayConfig, image: ProcessImage) -> tuple[list[Source], list[tuple[Path, str]]]:
    """The configured quantity -> tag mapping, checked against the layout and the tags."""
    layout = LAYOUTS[cfg.layout]
    known = {q.name: q for q in layout.quantities}
    sources: list[Source] = []
    problems: list[tuple[Path, str]] = []
    for name, tag_name in cfg.quantities.items():
        path: Path = ("meter_gateway", "quantities", name)
        quantity = known.get(name)
        if quantity is None:
            problems.append((path, f"the {layout.name} layout has no quantity {name!r} "
                                   f"(known: {', '.join(sorted(known))})"))
            continue
        if tag_name not in image:
            problems.append((path, f"no tag named {tag_name!r}"))
            continue
        spec = image[tag_name].spec
        if spec.dtype in (DType.BOOL, DType.STRING, DType.ENUM):
            problems.append((path, f"tag {tag_name!r} is {spec.dtype.value}; a meter quantity needs a number"))
            continue
        factor = UNITS[quantity.kind].get(spec.unit)
        if factor is None:
            units = ", ".join(repr(u) for u in UNITS[quantity.kind])
            problems.append((path, f"tag {tag_name!r} has unit {spec.unit!r}; {name} takes {units}"))
            continue
        sources.append(Source(quantity, tag_name, factor))
    return sources, problems


def _int_words(value: float, words: int) -> list[int]:
    """A value as EM24 INT32 (low word first) or INT16 registers, saturated."""
    raw = int(round(value))
    if words == 1:
        raw = max(-(2**15), min(2**15 - 1, raw))
        return [raw & 0xFFFF]
    raw = max(-(2**31), min(2**31 - 1, raw)) & 0xFFFFFFFF
    return [raw & 0xFFFF, raw >> 16]


@attrs.frozen
class _Encoded:
    block: list[int]
    failed: tuple[tuple[int, int], ...]  # register ranges of quantities whose tag is not GOOD


class MeterStore:
    """The gateway's datastore: the layout filled from the latest snapshot."""

    # Registers only, as an EM24: reads, and register writes (answered 02). No coils: 01, 02, 05, 15 get 01.
    functions = frozenset({3, 4, 6, 16, 22, 23})

    def __init__(self, layout: Layout, sources: list[Source], image: ProcessImage, unit_ids: tuple[int, ...],
                 serial_number: str):
        self.layout = layout
        self.sources = sources
        self.unit_ids = frozenset(unit_ids)
        self._latest: Snapshot | None = image.snapshot
        self._encoded: _Encoded | None = None
        self._encoded_from: Snapshot | None = None
        self._indices: list[int] | None = None
        self._names: tuple[str, ...] | None = None
        self._fixed = {address: value for address, value, _ in layout.fixed}
        text = serial_number.encode("ascii")[: 2 * layout.serial_words].ljust(2 * layout.serial_words, b"\0")
        self._serial = [(text[i] << 8) | text[i + 1] for i in range(0, len(text), 2)]
        self._blank = [0] * (layout.block_end - layout.block_start)
        for address, value, _ in layout.fixed:
            if layout.block_start <= address < layout.block_end:
                self._blank[address - layout.block_start] = value & 0xFFFF
        self._failing = False
        image.subscribe(self.on_snapshot)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self._latest = snapshot

    def encode(self, snapshot: Snapshot) -> _Encoded:
        if self._names is not snapshot.names:
            self._indices = [snapshot.index[s.tag] for s in self.sources]
            self._names = snapshot.names
        assert self._indices is not None
        block = self._blank.copy()
        failed = []
        start = self.layout.block_start
        for source, index in zip(self.sources, self._indices):
            q = source.quantity
            if snapshot.qualities[index] is not GOOD or snapshot.values[index] is None:
                failed.append((q.address, q.end))
                continue
            offset = q.address - start
            block[offset:offset + q.words] = _int_words(snapshot.values[index] * source.factor * q.weight, q.words)
        return _Encoded(block, tuple(failed))

    def read(self, table: ModbusTable, address: int, count: int) -> list[Any] | int:
        if table not in (ModbusTable.HOLDING, ModbusTable.INPUT):
            return ILLEGAL_FUNCTION
        layout = self.layout
        end = address + count
        if count == 1 and address == MODEL_CODE_ADDRESS:
            return [layout.model_code]
        if layout.block_start <= address and end <= layout.block_end:
            return self._read_block(address, end)
        if all(a in self._fixed for a in range(address, end)):
            return [self._fixed[a] & 0xFFFF for a in range(address, end)]
        if layout.serial_address <= address and end <= layout.serial_address + layout.serial_words:
            return self._serial[address - layout.serial_address:end - layout.serial_address]
        return ILLEGAL_ADDRESS

    def _read_block(self, address: int, end: int) -> list[int] | int:
        snapshot = self._latest
        if snapshot is None:
            return DEVICE_BUSY
        if snapshot is not self._encoded_from:
            self._encoded = self.encode(snapshot)
            self._encoded_from = snapshot
        encoded = self._encoded
        assert encoded is not None
        if any(a < end and address < b for a, b in encoded.failed):
            if not self._failing:
                self._failing = True
                log.warning("meter gateway: the site meter's values are not GOOD; reads answered with "
                            "exception 04 until they are")
            return DEVICE_FAILURE
        if self._failing:
            self._failing = False
            log.info("meter gateway: the site meter's values are GOOD again")
        start = self.layout.block_start
        return encoded.block[address - start:end - start]

    def write(self, table: ModbusTable, address: int, values: list[Any], peer: Peer) -> int | None:
        return ILLEGAL_ADDRESS  # a meter's readings are not written


class MeterGateway(ServedMirror):
    """The gateway as a site mirror: its own thread, port and unit id(s)."""

    def __init__(self, cfg: MeterGatewayConfig, image: ProcessImage, sources: list[Source]):
        self.cfg = cfg
        store = MeterStore(LAYOUTS[cfg.layout], sources, image, cfg.unit_ids, cfg.serial_number)
        super().__init__("meter-gateway", store, cfg.host, cfg.port, cfg.serial,
                         ConnectionLimits(cfg.max_connections, cfg.idle_timeout_s, cfg.max_connections_per_client), "meter_gateway")
