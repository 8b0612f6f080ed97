"""The error catalogue, and the table of active errors with its history.

Every error the controller can raise is declared once here with a stable numeric id (it is a
register, an event code and a line in the service manual: never renumber, only append), its
source, its severity, a text, and the rule by which it clears: on its own once the condition
has been gone for N seconds, or latched until an operator acknowledges it (a RESET command to
the site state machine) with the condition gone.

`ErrorTable` holds the active errors and a bounded history; it queues an `ErrorEvent` for each
raise, clear and acknowledgement, which the runtime's event recorder drains after the scan.
Pure logic: no IO, no clock.
"""

from __future__ import annotations

import enum
from collections import deque

import attrs
from attrs import validators as v


class Source(enum.IntEnum):
    """Where an error comes from (append only: register values)."""

    NONE = 0
    BMS = 1
    INVERTER = 2
    CAN_BUS = 3
    COMMUNICATION = 4
    SENSOR = 5
    BUTTON = 6
    CLIMATE = 7
    MODBUS = 8
    RASPBERRY_PI = 9
    MOTHERBOARD = 10
    CLUSTER = 11


class Severity(enum.IntEnum):
    """How bad: a warning changes nothing by itself, an error stops or limits, critical trips."""

    NONE = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3


@attrs.frozen
class AutoClear:
    """Clears by itself once its condition has been gone for `after_s`."""

    after_s: float = attrs.field(validator=v.ge(0))


@attrs.frozen
class Latched:
    """Stays active until acknowledged while its condition is gone."""


ClearRule = AutoClear | Latched


@attrs.frozen
class ErrorDef:
    """One entry of the catalogue."""

    id: int = attrs.field(validator=[v.ge(1), v.le(65535)])
    name: str
    source: Source
    severity: Severity
    text: str
    clear: ClearRule

    @property
    def latched(self) -> bool:
        return isinstance(self.clear, Latched)


def _e(id: int, name: str, source: Source, severity: Severity, text: str, clear: ClearRule) -> ErrorDef:
    return ErrorDef(id, name, source, severity, text, clear)


B, INV, COM, S = Source.BMS, Source.INVERTER, Source.COMMUNICATION, Severity
CATALOGUE: tuple[ErrorDef, ...] = (
    _e(101, "estop", Source.BUTTON, S.CRITICAL, "Emergency stop pressed (or its input unreadable)", Latched()),
    _e(111, "cell_v_critical_low", B, S.CRITICAL, "Cell voltage critically low", Latched()),
    _e(112, "cell_overvoltage", B, S.ERROR, "Cell over-voltage: charging blocked", AutoClear(10.0)),
    _e(113, "cell_undervoltage", B, S.ERROR, "Cell under-voltage: discharging blocked", AutoClear(10.0)),
    _e(121, "cell_overtemperature", B, S.ERROR, "Cell over-temperature", AutoClear(60.0)),
    _e(122, "cell_undertemperature", B, S.ERROR, "Cell under-temperature", AutoClear(60.0)),
    _e(131, "overcurrent", B, S.ERROR, "Battery current above the BMS limit", AutoClear(10.0)),
    _e(141, "cell_imbalance", B, S.WARNING, "Cell voltages apart: power derated", AutoClear(60.0)),
    _e(151, "bms_trip", B, S.CRITICAL, "BMS protection tripped", Latched()),
    _e(201, "grid_loss", INV, S.ERROR, "Grid lost", AutoClear(60.0)),
    _e(202, "underfrequency", INV, S.ERROR, "Grid under-frequency", AutoClear(60.0)),
    _e(203, "overfrequency", INV, S.ERROR, "Grid over-frequency", AutoClear(60.0)),
    _e(211, "inverter_fault", INV, S.ERROR, "Inverter reports a fault", AutoClear(2.0)),
    _e(301, "bms_comm_timeout", COM, S.ERROR, "No valid data from the BMS", AutoClear(5.0)),
    _e(302, "inverter_comm_timeout", COM, S.ERROR, "No valid data from the inverter", AutoClear(5.0)),
    _e(303, "meter_comm_timeout", COM, S.ERROR, "No valid data from the grid meter", AutoClear(5.0)),
    _e(401, "cpu_overtemperature", Source.RASPBERRY_PI, S.ERROR, "Controller CPU over-temperature",
       AutoClear(60.0)),
    _e(402, "humidity_high", Source.CLIMATE, S.WARNING, "Enclosure humidity high", AutoClear(60.0)),
    _e(403, "sensor_fault", Source.SENSOR, S.WARNING, "Enclosure or CPU sensor unreadable", AutoClear(10.0)),
    _e(501, "soc_critically_low", B, S.WARNING, "SOC critically low: charging from the grid", AutoClear(0.0)),
    _e(502, "bms_inactive", B, S.WARNING, "BMS inactive: no current for its timeout", AutoClear(0.0)),
    _e(503, "soc_drift", B, S.WARNING, "BMS SOC drifted from the recalibrated SOC", AutoClear(0.0)),
    _e(601, "cluster_unit_not_following", Source.CLUSTER, S.WARNING,
       "A cluster unit does not follow its setpoint: out of the split", AutoClear(0.0)),
    _e(411, "storage_near_full", Source.RASPBERRY_PI, S.WARNING, "Data disk nearly full", AutoClear(0.0)),
    _e(412, "storage_write_failed", Source.RASPBERRY_PI, S.ERROR,
       "A write to the data disk failed: client writes are refused", AutoClear(0.0)),
)
BY_NAME: dict[str, ErrorDef] = {e.name: e for e in CATALOGUE}
BY_ID: dict[int, ErrorDef] = {e.id: e for e in CATALOGUE}
if not len(BY_NAME) == len(BY_ID) == len(CATALOGUE):
    raise ValueError("programs/errors.py: two catalogue entries share an id or a name")


class Action(enum.Enum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"


@attrs.frozen
class ErrorEvent:
    """A raise, clear or acknowledgement, as the event log records it."""

    t_s: float
    wall_s: float
    error: ErrorDef
    action: Action
    detail: str = ""

    kind = "error"  # with severity, source, code, name, message: what the event recorder reads

    @property
    def severity(self) -> int:
        return int(self.error.severity) if self.action is Action.RAISED else 0

    @property
    def source(self) -> str:
        return self.error.source.name.lower()

    @property
    def code(self) -> int:
        return self.error.id

    @property
    def name(self) -> str:
        return self.error.name

    @property
    def message(self) -> str:
        text = f"{self.action.value}: {self.error.text}"
        return f"{text} ({self.detail})" if self.detail else text


@attrs.define
class ActiveError:
    error: ErrorDef
    since_t_s: float
    since_wall_s: float
    detail: str = ""


class ErrorTable:
    """The active errors and their history. Changes are rare; queries cost a dict lookup."""

    def __init__(self, history_size: int = 200):
        self.active: dict[int, ActiveError] = {}
        self.history: deque[ErrorEvent] = deque(maxlen=history_size)
        self.events: deque[ErrorEvent] = deque(maxlen=10_000)  # drained by the event recorder
        self.critical_count = 0

    def raise_(self, error: ErrorDef, t_s: float, wall_s: float, detail: str = "") -> bool:
        """Make an error active; False if it already was."""
        if error.id in self.active:
            return False
        self.active[error.id] = ActiveError(error, t_s, wall_s, detail)
        if error.severity is Severity.CRITICAL:
            self.critical_count += 1
        self._record(ErrorEvent(t_s, wall_s, error, Action.RAISED, detail))
        return True

    def clear(self, error: ErrorDef, t_s: float, wall_s: float, detail: str = "") -> bool:
        """Remove an active error; False if it was not active."""
        if self.active.pop(error.id, None) is None:
            return False
        if error.severity is Severity.CRITICAL:
            self.critical_count -= 1
        self._record(ErrorEvent(t_s, wall_s, error, Action.CLEARED, detail))
        return True

    def acknowledge(self, error: ErrorDef, t_s: float, wall_s: float, detail: str = "") -> None:
        self._record(ErrorEvent(t_s, wall_s, error, Action.ACKNOWLEDGED, detail))

    def is_active(self, name: str) -> bool:
        return BY_NAME[name].id in self.active

    def highest_severity(self) -> Severity:
        return max((a.error.severity for a in self.active.values()), default=Severity.NONE)

    def active_ids(self) -> list[int]:
        return sorted(self.active)

    def _record(self, event: ErrorEvent) -> None:
        self.history.append(event)
        self.events.append(event)

