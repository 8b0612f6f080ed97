"""The interlock table: what each interlock watches, its default thresholds and its safe reaction.

An interlock is a condition on input tags (with hysteresis: it trips at `trip` and lets go at
`clear`), qualified by a debounce, tied to one error of the catalogue (`programs/errors.py`)
and to one reaction. An input that is not GOOD freezes the condition as it was: the
communication interlocks of its source report the missing data, and nothing clears on data
that is not there.

Condition kinds are small classes with a `test()` that returns True (fault present), False, or
None (cannot tell: hold). They are built once at bind time with live tags and plain floats, so
a scan costs one method call per interlock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from plc.tags import Quality

GOOD = Quality.GOOD
UNINIT = Quality.UNINIT
OVERCURRENT_FLOOR_A = 5.0  # measurement noise allowance on top of the percentage margin


class Reaction(enum.IntEnum):
    """What the safety program does while an interlock's error is active (append only)."""

    NONE = 0
    WARN = 1  # log, tag and event only
    DERATE = 2  # limit power both ways to `derate_pct` of the inverter setpoint range
    NO_CHARGE = 3  # block charging, discharging allowed
    NO_DISCHARGE = 4  # block discharging, charging allowed
    STOP = 5  # 0 W, 0 var, inverter run command off; contactor stays closed
    ESTOP = 6  # STOP, then open the contactor once the power is down; the error is critical and latched


@attrs.frozen
class InterlockDef:
    """One row of the table. `trip`/`clear` are in `unit`; kinds without thresholds have None."""

    name: str  # the error's name in the catalogue
    kind: str
    inputs: tuple[str, ...]
    reaction: Reaction
    debounce_s: float
    trip: float | None = None
    clear: float | None = None
    unit: str = ""
    optional: bool = False  # skipped (not an error) when the site lacks its input tags
    gate: str | None = None  # kind-specific helper input (frequency: a grid voltage)


R = Reaction
BMS_TAGS = ("soc_pct", "cell_v_min_v", "cell_v_max_v", "cell_t_min_degc", "cell_t_max_degc", "battery_current_a",
            "bms_charge_limit_a", "bms_discharge_limit_a", "bms_alarm_bits")
INVERTER_TAGS = ("inverter_p_w", "inverter_state", "inverter_fault_code")
METER_TAGS = ("grid_power_w", "grid_frequency_hz", "grid_v_l1_v", "grid_v_l2_v", "grid_v_l3_v")
GRID_V = ("grid_v_l1_v", "grid_v_l2_v", "grid_v_l3_v")

TABLE: tuple[InterlockDef, ...] = (
    InterlockDef("estop", "flag_failsafe", ("estop_pressed",), R.ESTOP, 0.0),
    InterlockDef("cell_v_critical_low", "below", ("cell_v_min_v",), R.ESTOP, 1.0, 2.70, 3.00, "V"),
    InterlockDef("cell_overvoltage", "above", ("cell_v_max_v",), R.NO_CHARGE, 2.0, 3.60, 3.45, "V"),
    InterlockDef("cell_undervoltage", "below", ("cell_v_min_v",), R.NO_DISCHARGE, 2.0, 2.90, 3.05, "V"),
    InterlockDef("cell_overtemperature", "above", ("cell_t_max_degc",), R.STOP, 5.0, 50.0, 45.0, "degC"),
    InterlockDef("cell_undertemperature", "below", ("cell_t_min_degc",), R.STOP, 5.0, -10.0, -5.0, "degC"),
    InterlockDef("overcurrent", "overcurrent", ("battery_current_a", "bms_charge_limit_a", "bms_discharge_limit_a"),
                 R.STOP, 1.0, 10.0, 0.0, "%"),
    InterlockDef("cell_imbalance", "spread", ("cell_v_max_v", "cell_v_min_v"), R.DERATE, 30.0, 0.15, 0.08, "V"),
    InterlockDef("bms_trip", "bits", ("bms_alarm_bits",), R.ESTOP, 0.0, 256.0, None, "mask"),
    InterlockDef("grid_loss", "grid_loss", GRID_V, R.STOP, 0.2, 100.0, 195.0, "V"),
    InterlockDef("underfrequency", "below", ("grid_frequency_hz",), R.STOP, 0.5, 47.5, 49.8, "Hz",
                 gate="grid_v_l1_v"),
    InterlockDef("overfrequency", "above", ("grid_frequency_hz",), R.STOP, 0.5, 51.5, 50.2, "Hz",
                 gate="grid_v_l1_v"),
    InterlockDef("inverter_fault", "bits", ("inverter_fault_code",), R.STOP, 0.5, 65535.0, None, "mask"),
    InterlockDef("bms_comm_timeout", "stale", BMS_TAGS, R.STOP, 2.0),
    InterlockDef("inverter_comm_timeout", "stale", INVERTER_TAGS, R.STOP, 2.0),
    InterlockDef("meter_comm_timeout", "stale", METER_TAGS, R.STOP, 2.0),
    InterlockDef("cpu_overtemperature", "above", ("cpu_temp_degc",), R.STOP, 10.0, 85.0, 75.0, "degC"),
    InterlockDef("humidity_high", "above", ("humidity_pct",), R.WARN, 60.0, 85.0, 75.0, "%"),
    InterlockDef("sensor_fault", "stale", ("cpu_temp_degc", "humidity_pct"), R.WARN, 10.0, optional=True),
    InterlockDef("soc_critically_low", "flag", ("auto_charge_active",), R.WARN, 0.0, optional=True),
    InterlockDef("bms_inactive", "flag", ("bms_inactive",), R.WARN, 0.0, optional=True),
    InterlockDef("soc_drift", "flag", ("soc_drift_alarm",), R.WARN, 0.0, optional=True),
    InterlockDef("cluster_unit_not_following", "flag", ("cluster_unit_alarm",), R.WARN, 0.0, optional=True),
    InterlockDef("storage_near_full", "flag", ("storage_near_full",), R.WARN, 0.0, optional=True),
    InterlockDef("storage_write_failed", "flag", ("storage_write_failed",), R.WARN, 0.0, optional=True),
)
BY_NAME = {d.name: d for d in TABLE}
THRESHOLD_KINDS = ("above", "below", "spread", "overcurrent", "grid_loss", "bits")
ANY_INPUTS_KINDS = ("stale", "grid_loss")  # these use whichever of their inputs the site has


# --- condition kinds -------------------------------------------------------------------------
class Condition:
    """Base: `active` is the interlock's debounced state, used for hysteresis."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False

    def test(self) -> bool | None:
        raise NotImplementedError(f"{type(self).__name__} must implement test")

    def value(self) -> Any:
        """The value that tripped, for the event's detail text."""
        return None


class Above(Condition):
    __slots__ = ("tag", "trip", "clear", "gate", "gate_min")

    def __init__(self, tag: Any, trip: float, clear: float, gate: Any = None, gate_min: float = 0.0):
        super().__init__()
        self.tag, self.trip, self.clear, self.gate, self.gate_min = tag, trip, clear, gate, gate_min

    def test(self) -> bool | None:
        tag = self.tag
        if tag.quality is not GOOD:
            return None
        gate = self.gate
        if gate is not None and not (gate.quality is GOOD and gate.value >= self.gate_min):
            return False  # no grid: the grid-loss interlock speaks, not this one
        return tag.value > (self.clear if self.active else self.trip)

    def value(self) -> Any:
        return self.tag.value


class Below(Above):
    __slots__ = ()

    def test(self) -> bool | None:
        tag = self.tag
        if tag.quality is not GOOD:
            return None
        gate = self.gate
        if gate is not None and not (gate.quality is GOOD and gate.value >= self.gate_min):
            return False
        return tag.value < (self.clear if self.active else self.trip)


class Spread(Condition):
    """Difference of two inputs above a threshold (cell voltage spread)."""

    __slots__ = ("hi", "lo", "trip", "clear")

    def __init__(self, hi: Any, lo: Any, trip: float, clear: float):
        super().__init__()
        self.hi, self.lo, self.trip, self.clear = hi, lo, trip, clear

    def test(self) -> bool | None:
        hi, lo = self.hi, self.lo
        if hi.quality is not GOOD or lo.quality is not GOOD:
            return None
        return hi.value - lo.value > (self.clear if self.active else self.trip)

    def value(self) -> Any:
        return round(self.hi.value - self.lo.value, 4)


class Flag(Condition):
    """A boolean input; `failsafe` makes an unreadable input (STALE, BAD) count as the fault, as a
    broken wire on a normally-closed e-stop loop does. UNINIT (no reading yet, the first scans
    after start) holds instead, so that a start does not trip the e-stop; a driver that cannot
    read its device marks the input BAD."""

    __slots__ = ("tag", "failsafe")

    def __init__(self, tag: Any, failsafe: bool):
        super().__init__()
        self.tag, self.failsafe = tag, failsafe

    def test(self) -> bool | None:
        tag = self.tag
        quality = tag.quality
        if quality is not GOOD:
            return True if self.failsafe and quality is not UNINIT else None
        return bool(tag.value)

    def value(self) -> Any:
        return self.tag.value if self.tag.quality is GOOD else f"input {self.tag.quality.name}"


class Bits(Condition):
    """Any of the masked bits set in an integer input (fault words, alarm words)."""

    __slots__ = ("tag", "mask")

    def __init__(self, tag: Any, mask: int):
        super().__init__()
        self.tag, self.mask = tag, mask

    def test(self) -> bool | None:
        tag = self.tag
        if tag.quality is not GOOD:
            return None
        return bool(tag.value & self.mask)

    def value(self) -> Any:
        return f"0x{self.tag.value:04x}"


class Stale(Condition):
    """Any of the source's inputs not GOOD: the source has stopped delivering valid data."""

    __slots__ = ("tags",)

    def __init__(self, tags: Sequence[Any]):
        super().__init__()
        self.tags = tuple(tags)

    def test(self) -> bool | None:
        for tag in self.tags:
            if tag.quality is not GOOD:
                return True
        return False

    def value(self) -> Any:
        return ", ".join(f"{t.name} {t.quality.name}" for t in self.tags if t.quality is not GOOD)


class Overcurrent(Condition):
    """Measured battery current beyond the BMS's present limit by `trip` % (+ a noise floor)."""

    __slots__ = ("current", "ccl", "dcl", "trip", "clear")

    def __init__(self, current: Any, ccl: Any, dcl: Any, trip_pct: float, clear_pct: float):
        super().__init__()
        self.current, self.ccl, self.dcl = current, ccl, dcl
        self.trip, self.clear = 1.0 + trip_pct / 100.0, 1.0 + clear_pct / 100.0

    def test(self) -> bool | None:
        i, ccl, dcl = self.current, self.ccl, self.dcl
        if i.quality is not GOOD or ccl.quality is not GOOD or dcl.quality is not GOOD:
            return None
        gain = self.clear if self.active else self.trip
        a = i.value
        if a >= 0.0:
            return a > dcl.value * gain + OVERCURRENT_FLOOR_A
        return -a > ccl.value * gain + OVERCURRENT_FLOOR_A

    def value(self) -> Any:
        return f"{self.current.value:.1f} A (limits {self.ccl.value:.1f}/{self.dcl.value:.1f} A)"


class GridLoss(Condition):
    """Every phase voltage below `trip`; once lost, the grid is back when every phase is above `clear`."""

    __slots__ = ("tags", "trip", "clear")

    def __init__(self, tags: Sequence[Any], trip: float, clear: float):
        super().__init__()
        self.tags, self.trip, self.clear = tuple(tags), trip, clear

    def test(self) -> bool | None:
        if self.active:
            clear = self.clear
            for tag in self.tags:
                if tag.quality is not GOOD:
                    return None
                if tag.value < clear:
                    return True
            return False
        trip = self.trip
        for tag in self.tags:
            if tag.quality is not GOOD:
                return None
            if tag.value >= trip:
                return False
        return True

    def value(self) -> Any:
        return "/".join(f"{t.value:.0f}" for t in self.tags) + " V"


_CHECKED = "the safety Params ran check_thresholds: a kind with thresholds has them"


def build_condition(d: InterlockDef, trip: float | None, clear: float | None,
                    lookup: Callable[[str], Any], gate_min: float = 0.0) -> Condition:
    """A live condition for one interlock, with its effective thresholds."""
    kind = d.kind
    if kind in ("above", "below"):
        assert trip is not None and clear is not None, _CHECKED
        gate = lookup(d.gate) if d.gate else None
        cls = Above if kind == "above" else Below
        return cls(lookup(d.inputs[0]), trip, clear, gate, gate_min)
    if kind == "spread":
        assert trip is not None and clear is not None, _CHECKED
        return Spread(lookup(d.inputs[0]), lookup(d.inputs[1]), trip, clear)
    if kind in ("flag", "flag_failsafe"):
        return Flag(lookup(d.inputs[0]), failsafe=kind == "flag_failsafe")
    if kind == "bits":
        assert trip is not None, _CHECKED
        return Bits(lookup(d.inputs[0]), int(trip))
    if kind == "stale":
        return Stale([lookup(n) for n in d.inputs])
    if kind == "overcurrent":
        assert trip is not None and clear is not None, _CHECKED
        current, ccl, dcl = (lookup(n) for n in d.inputs)  # the table's three inputs
        return Overcurrent(current, ccl, dcl, trip, clear)
    if kind == "grid_loss":
        assert trip is not None and clear is not None, _CHECKED
        return GridLoss([lookup(n) for n in d.inputs], trip, clear)
    raise ValueError(f"interlock {d.name!r}: unknown kind {kind!r}")


def check_thresholds(d: InterlockDef, trip: float | None, clear: float | None) -> str | None:
    """Why a trip/clear pair does not fit the interlock's kind, or None when it does."""
    if d.kind not in THRESHOLD_KINDS:
        if trip is not None or clear is not None:
            return f"interlock {d.name!r} ({d.kind}) takes no trip or clear threshold"
        return None
    if trip is None:
        return f"interlock {d.name!r} needs a trip threshold"
    if d.kind == "bits":
        if clear is not None:
            return f"interlock {d.name!r} takes a bit mask as trip and no clear threshold"
        if trip != int(trip) or not 0 < trip <= 0xFFFFFFFF:
            return f"interlock {d.name!r}: trip is a bit mask, a positive integer, got {trip}"
        return None
    if clear is None:
        return f"interlock {d.name!r} needs a clear threshold"
    rising = d.kind in ("above", "spread", "overcurrent")
    if rising and not clear < trip:
        return f"interlock {d.name!r}: clear ({clear}) must be below trip ({trip}) {d.unit}".rstrip()
    if not rising and not clear > trip:
        return f"interlock {d.name!r}: clear ({clear}) must be above trip ({trip}) {d.unit}".rstrip()
    return None
