"""Enumerations shared by the site programs; their order is part of the register map (append only)."""

from __future__ import annotations

import enum


class SiteState(enum.IntEnum):
    INIT = 0
    RUN = 1
    IDLE = 2
    MAINTENANCE = 3
    ERROR = 4
    REBOOT = 5
    RESTART = 6


class StateCommand(enum.IntEnum):
    NONE = 0
    RUN = 1
    IDLE = 2
    MAINTENANCE = 3
    RESET = 4  # acknowledge errors and leave Error
    REBOOT = 5
    RESTART = 6


class Mode(enum.IntEnum):
    PASSIVE = 0
    SELF_CONSUMPTION = 1
    PEAK_SHAVING = 2
    EXTERNAL = 3
    CHARGE_ONLY = 4
    LOCAL = 5
    COST_SAVING = 6
    LOAD_MATCHING = 7


class LimitSource(enum.IntEnum):
    """Which limit binds the allowed charge or discharge power."""

    NONE = 0
    BMS = 1
    INVERTER = 2
    GRID_CODE = 3
    SOC_TAPER = 4
    TEMPERATURE = 5
    CELL_VOLTAGE = 6
    CURRENT = 7
    RAMP = 8
    INVALID_INPUTS = 9


class HoldReason(enum.IntEnum):
    """Why the site holds 0 W instead of following its mode."""

    NONE = 0
    STARTING = 1
    INPUTS_INVALID = 2
    NOT_RUNNING = 3
    IDLE = 4
    MAINTENANCE = 5
    ERROR = 6
    NO_INVERTER = 7
    NO_METER = 8
    NO_BMS = 9


def labels(enum_cls: type[enum.IntEnum]) -> tuple[str, ...]:
    """Enum labels in value order, as tags declare them."""
    return tuple(m.name.lower() for m in sorted(enum_cls, key=int))
