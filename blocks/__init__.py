"""Function-block library: IEC 61131-3 basics, PID and control blocks.

Every block is an ``attrs`` slotted class holding its parameters and state,
with a ``step(..., dt)`` method (``dt`` in seconds since the previous scan)
that returns its main output and leaves all outputs readable as attributes.
Blocks are pure: no IO, no wall clock, no global state, and they import only
the standard library and ``attrs``.

Conventions shared by all blocks:

* Parameters are validated when a block is made; a bad one raises
  ``ValueError("<Block>: <param> must be ..., got <value>")``. Nothing is
  validated inside ``step`` (it runs every scan and must stay cheap).
* Units are in the names (``_s``, ``_hz``, ``_w``, ``_per_s``); IEC blocks keep
  their IEC names (``in_``, ``q``, ``et_s``, ``pt_s``, ``cv``...).
* Time only advances through ``dt``; see ``blocks.timers`` for the timing
  model (the edge scan is time 0; a preset is "reached" with a 1e-9 relative
  tolerance) that timers, ``Debounce`` and ``StateMachine`` share.
* Time-independent blocks accept ``dt`` as an optional argument so every
  block can be driven the same way.
* NaN: memoryless blocks (``Clamp``, ``Deadband``, ``Curve``, ``Droop``)
  propagate it so bad data stays visible; stateful signal blocks (``PID``,
  ``RampLimiter``, ``SlewLimitedSetpoint``, ``LowPass``, ``RateOfChange``)
  treat a NaN sample as missing and hold, so it cannot poison their state;
  ``MovingAverage`` reports NaN while a NaN is in its window.
"""

from blocks.bistables import RS, SR
from blocks.counters import CTD, CTU, CTUD
from blocks.curve import Curve
from blocks.droop import Droop
from blocks.edges import F_TRIG, R_TRIG
from blocks.filters import LowPass, MovingAverage, RateOfChange
from blocks.limits import Clamp, Deadband, Debounce, Hysteresis, clamp
from blocks.pid import PID
from blocks.ramp import RampLimiter, SlewLimitedSetpoint
from blocks.state_machine import StateMachine, Transition, TransitionRecord
from blocks.timers import TOF, TON, TP

__all__ = [
    "CTD",
    "CTU",
    "CTUD",
    "F_TRIG",
    "PID",
    "RS",
    "R_TRIG",
    "SR",
    "TOF",
    "TON",
    "TP",
    "Clamp",
    "Curve",
    "Deadband",
    "Debounce",
    "Droop",
    "Hysteresis",
    "LowPass",
    "MovingAverage",
    "RampLimiter",
    "RateOfChange",
    "SlewLimitedSetpoint",
    "StateMachine",
    "Transition",
    "TransitionRecord",
    "clamp",
]
