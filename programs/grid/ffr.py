"""Fast Frequency Reserve: a one-shot under-frequency activation, its support, recovery and re-arming.

States: armed -> support (full capacity for `support_s` once the frequency reaches the
activation level) -> deactivating (at most `deactivation_pct_per_s` of C per second) ->
buffer (`buffer_s` at 0 W before any recovery) -> recovery (charging at most `recovery_pct` of
C, only while f >= 49.9 Hz, until the delivered energy is back) -> waiting -> armed again
`rearm_s` after the activation (the reference: ready again within 15 minutes). The trigger is
the local measurement, without the FCR filter (`filter_tau_s`, default 0: the meter's own).
"""

from __future__ import annotations

import enum

import attrs
from attrs import validators as v

from programs.grid.products import FFR_LEVELS_HZ

RECOVERY_ABOVE_HZ = 49.9  # recovery charging waits while the frequency is still low


class FfrState(enum.IntEnum):
    """Register-map order (append only)."""

    DISABLED = 0
    ARMED = 1
    SUPPORT = 2
    DEACTIVATING = 3
    BUFFER = 4
    RECOVERY = 5
    WAITING = 6


def _level(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not any(abs(value - level) < 1e-6 for level in FFR_LEVELS_HZ):
        raise ValueError(f"{attribute.name} must be one of {', '.join(map(str, FFR_LEVELS_HZ))} Hz, got {value}")


@attrs.frozen
class FfrParams:
    """FFR settings (`[programs.params.ffr]`)."""

    activation_hz: float = attrs.field(default=49.5, validator=_level)
    support_s: float = attrs.field(default=32.0, validator=v.ge(5.0))  # 30 s required, 2 s to spare
    deactivation_pct_per_s: float = attrs.field(default=20.0, validator=[v.gt(0), v.le(100)])
    buffer_s: float = attrs.field(default=10.0, validator=v.ge(0))
    recovery_pct: float = attrs.field(default=25.0, validator=[v.gt(0), v.le(100)])
    rearm_s: float = attrs.field(default=900.0, validator=[v.gt(0), v.le(900)])
    filter_tau_s: float = attrs.field(default=0.0, validator=[v.ge(0), v.le(1)])

    def __attrs_post_init__(self) -> None:
        if self.support_s < 30.0 and self.deactivation_pct_per_s > 20.0:
            raise ValueError(f"a support of {self.support_s} s (< 30 s) needs deactivation_pct_per_s <= 20, "
                             f"got {self.deactivation_pct_per_s}")


class Ffr:
    """The FFR state machine for capacity `capacity_w`; `step` returns the FFR power (W)."""

    def __init__(self, params: FfrParams, capacity_w: float, activation_hz: float | None = None):
        self.p = params
        self.capacity_w = capacity_w
        self.activation_hz = params.activation_hz if activation_hz is None else activation_hz
        self.state = FfrState.ARMED if capacity_w > 0 else FfrState.DISABLED
        self.cycle_w = capacity_w  # the capacity of the activation under way (a new setting waits for the next)
        self.p_w = 0.0
        self.since_activation_s = 0.0
        self.in_state_s = 0.0
        self.delivered_wh = 0.0
        self.recovered_wh = 0.0
        self.activations = 0

    @property
    def ready(self) -> bool:
        return self.state is FfrState.ARMED

    def retune(self, capacity_w: float, activation_hz: float) -> None:
        """A new capacity or level, from the next activation on: a setting change neither fires
        a second activation nor drops the running one's support or recovery (it keeps the
        capacity it started with); the 15 min re-arming time still counts from it."""
        self.capacity_w, self.activation_hz = capacity_w, activation_hz
        if self.state is FfrState.DISABLED and capacity_w > 0:
            self._enter(FfrState.ARMED)
        elif self.state is FfrState.ARMED and capacity_w <= 0:
            self._enter(FfrState.DISABLED)

    def step(self, f_hz: float, dt: float, may_trigger: bool) -> float:
        """Advance one scan with the trigger frequency `f_hz` (NaN: no valid measurement)."""
        state = self.state
        if state is FfrState.DISABLED:
            return 0.0
        self.since_activation_s += dt
        self.in_state_s += dt
        if state is FfrState.ARMED:
            if may_trigger and f_hz <= self.activation_hz:
                self._activate()
            else:
                return 0.0
        p = self._power(f_hz, dt)
        self.p_w = p
        return p

    def _activate(self) -> None:
        self.activations += 1
        self.since_activation_s = 0.0
        self.delivered_wh = self.recovered_wh = 0.0
        self._enter(FfrState.SUPPORT)
        self.cycle_w = self.capacity_w
        self.p_w = self.capacity_w

    def _power(self, f_hz: float, dt: float) -> float:
        state, p, c = self.state, self.p_w, self.cycle_w
        if state is FfrState.SUPPORT:
            if self.in_state_s >= self.p.support_s - 1e-9:
                self._enter(FfrState.DEACTIVATING)
                return self._power(f_hz, dt)
            self.delivered_wh += c * dt / 3600.0
            return c
        if state is FfrState.DEACTIVATING:
            p = max(p - c * self.p.deactivation_pct_per_s / 100.0 * dt, 0.0)
            self.delivered_wh += p * dt / 3600.0
            if p <= 0.0:
                self._enter(FfrState.BUFFER)
            return p
        if state is FfrState.BUFFER:
            if self.in_state_s >= self.p.buffer_s - 1e-9:
                self._enter(FfrState.RECOVERY)
                return self._power(f_hz, dt)
            return 0.0
        if state is FfrState.RECOVERY:
            if self.recovered_wh >= self.delivered_wh:
                self._enter(FfrState.WAITING)
                return self._power(f_hz, dt)
            if not f_hz >= RECOVERY_ABOVE_HZ:
                return 0.0
            charge = c * self.p.recovery_pct / 100.0
            self.recovered_wh += charge * dt / 3600.0
            return -charge
        # WAITING
        if self.since_activation_s >= self.p.rearm_s - 1e-9:
            self._enter(FfrState.ARMED if self.capacity_w > 0 else FfrState.DISABLED)
        return 0.0

    def _enter(self, state: FfrState) -> None:
        self.state = state
        self.in_state_s = 0.0
