"""Battery inverter (PCS): state machine, P/Q control, efficiency, heat.

States: standby (0) -> ready (1) when the DC bus is live (BMS contactor
closed) and the AC side is present (grid, or ``grid_forming``) for
``ready_delay_s``; ready -> running (2) after ``run_cmd`` has been True for
``start_delay_s``; running -> ready at once when ``run_cmd`` goes False.
Fault (3) is entered from ready/running on ``inject_fault``, loss of the
DC bus while running (contactor opened under the inverter), grid loss
(unless grid-forming), hardwired e-stop, or overtemperature; it is latched
until ``fault_reset_cmd`` is True (level) while no cause is active, then
the inverter returns to standby. In standby/ready/fault the AC power is 0;
in ready and running the inverter draws ``idle_loss_w`` from the DC bus.
When the contactor is open the DC side cannot exchange power: P = 0 and
the inverter drops to standby (or faults if it was running).

Grid-connected P/Q: the setpoints are clamped to the rating (P to
+-rated_p_w times the thermal derating, then P or Q reduced so that
S <= rated_s_va, depending on ``q_priority``), P is rate-limited at
``ramp_w_per_s``, and both P and Q follow through a first-order lag of
``response_tau_s``, after a dead time of ``command_delay_s`` (a setpoint
acts that long after it arrived). Islanded (outage with grid_forming): the plant sets P
and Q directly to what the local load needs (``supply_island``).

DC side: P_dc = P_ac / eta + idle when discharging, P_ac * eta + idle when
charging; eta comes from the efficiency curve vs. |P|/rated_p_w, tabulated
at 0.5 % steps so a step costs an index, not an interpolation.
"""

from __future__ import annotations

import collections
import math
from typing import Protocol

import numpy as np

from sim.config import InverterConfig
from sim.variables import Var

STANDBY, READY, RUNNING, FAULT = 0, 1, 2, 3
STATE_NAMES = ("standby", "ready", "running", "fault")
FAULT_INJECTED, FAULT_GRID_LOST, FAULT_DC_LOST, FAULT_OVERTEMP, FAULT_ESTOP = 1, 2, 4, 8, 16
_LUT_STEPS_PER_UNIT = 200  # efficiency table resolution: 0.5 % of rated power


_UNCONNECTED = "the plant connects the inverter before it reads the bus or the battery"


class AcBus(Protocol):
    """The AC side as the inverter reads it (the site meter)."""

    @property
    def frequency_hz(self) -> float: ...

    def phase_v(self, k: int) -> float: ...


class DcSource(Protocol):
    """The battery as the inverter reads it."""

    @property
    def voltage_v(self) -> float: ...

    @property
    def current_a(self) -> float: ...


class Inverter:
    """Bidirectional battery inverter; AC power + = discharge (export from battery)."""

    VARS = (
        Var("p_setpoint_w", "W", True, "float", "command: active power, + = discharge"),
        Var("q_setpoint_var", "var", True, "float", "command: reactive power, + = inject"),
        Var("run_cmd", "", True, "bool", "command: run (ready -> running)"),
        Var("fault_reset_cmd", "", True, "bool", "command: reset a latched fault (level)"),
        Var("inject_fault", "", True, "bool", "fault: trip the inverter"),
        Var("comm_ok", "", True, "bool", "fault: False = inverter communication lost"),
        Var("state", "", False, "str", "standby, ready, running or fault"),
        Var("state_code", "", False, "int", "0 standby, 1 ready, 2 running, 3 fault"),
        Var("fault_code", "", False, "int",
            "bits: 1 injected, 2 grid lost, 4 DC lost, 8 overtemperature, 16 e-stop"),
        Var("island", "", False, "bool", "supplying the site in grid-forming backup"),
        Var("p_ac_w", "W", False, "float", "AC active power, + = discharge"),
        Var("q_ac_var", "var", False, "float", "AC reactive power"),
        Var("s_ac_va", "VA", False, "float", "AC apparent power"),
        Var("p_dc_w", "W", False, "float", "DC power from the battery, + = discharge"),
        Var("dc_voltage_v", "V", False, "float", "DC bus voltage (0 when contactor open)"),
        Var("dc_current_a", "A", False, "float", "DC current, + = discharge"),
        Var("efficiency_pct", "%", False, "float", "conversion efficiency at this load"),
        Var("p_max_w", "W", False, "float", "available active power (rating x derating)"),
        Var("rated_p_w", "W", False, "float", "rated active power"),
        Var("rated_s_va", "VA", False, "float", "rated apparent power"),
        Var("temperature_degc", "degC", False, "float", "heatsink temperature"),
        Var("frequency_hz", "Hz", False, "float", "AC frequency at the terminals"),
        *(Var(f"v_l{p}_v", "V", False, "float", f"phase {p} voltage (L-N)") for p in (1, 2, 3)),
        *(Var(f"i_l{p}_a", "A", False, "float", f"phase {p} current") for p in (1, 2, 3)),
    )

    def __init__(self, cfg: InverterConfig, ambient_degc: float) -> None:
        self.cfg = cfg
        self.rated_p_w = cfg.rated_p_w
        self.rated_s_va = cfg.rated_s_va
        self.p_setpoint_w = 0.0
        self.q_setpoint_var = 0.0
        self.run_cmd = False
        self.fault_reset_cmd = False
        self.inject_fault = False
        self.comm_ok = True
        self.estop = False  # hardwired e-stop, set by the plant
        self.state_code = STANDBY
        self.fault_code = 0
        self.island = False
        self.p_ac_w = 0.0
        self.q_ac_var = 0.0
        self.p_dc_w = 0.0
        self.p_max_w = cfg.rated_p_w
        self.temperature_degc = ambient_degc
        self._p_ramp = 0.0
        self._timer = 0.0
        self._loss_j = 0.0
        self._dt = -1.0
        self._ramp_step = self._alpha = 0.0
        self._delayed: collections.deque[tuple[float, float]] = collections.deque()  # setpoints in the dead time
        self._running_s = 0.0  # time stepped while running: the dead time's clock
        self._bus: AcBus | None = None  # the meter
        self._battery: DcSource | None = None
        self._dc_live = False
        grid = np.linspace(0.0, cfg.efficiency_load_fraction[-1],
                           int(cfg.efficiency_load_fraction[-1] * _LUT_STEPS_PER_UNIT) + 1)
        self._eta_lut = np.interp(grid, cfg.efficiency_load_fraction, cfg.efficiency).tolist()
        self._lut_scale = _LUT_STEPS_PER_UNIT / cfg.rated_p_w
        self._lut_last = len(self._eta_lut) - 1

    def connect(self, bus: AcBus, battery: DcSource) -> None:
        """Give the inverter its AC bus (for V/f) and battery (for DC readings)."""
        self._bus = bus
        self._battery = battery

    # ------------------------------------------------------------ state machine

    @property
    def state(self) -> str:
        return STATE_NAMES[self.state_code]

    def _causes(self, grid_ok: bool) -> int:
        code = FAULT_INJECTED if self.inject_fault else 0
        if not grid_ok and not self.cfg.grid_forming:
            code |= FAULT_GRID_LOST
        if self.temperature_degc >= self.cfg.trip_degc:
            code |= FAULT_OVERTEMP
        if self.estop:
            code |= FAULT_ESTOP
        return code

    def _transition(self, dt_s: float, grid_ok: bool, dc_ok: bool) -> None:
        """State changes; called every step, cheap when nothing happens."""
        st = self.state_code
        if st == FAULT:
            self._fault_state(grid_ok)
            return
        causes = self._causes(grid_ok)
        if st == RUNNING and not dc_ok:
            causes |= FAULT_DC_LOST
        if causes and (st != STANDBY or causes & (FAULT_INJECTED | FAULT_ESTOP)):
            self._trip(causes)
        elif st == RUNNING:
            if not self.run_cmd:
                self._enter(READY)
        elif not dc_ok or not (grid_ok or self.cfg.grid_forming):
            if st != STANDBY:
                self._enter(STANDBY)
        elif st == STANDBY:
            self._wait(dt_s, self.cfg.ready_delay_s, READY)
        elif self.run_cmd:  # READY
            self._wait(dt_s, self.cfg.start_delay_s, RUNNING)
        else:
            self._timer = 0.0

    def _fault_state(self, grid_ok: bool) -> None:
        if self.fault_reset_cmd and not self._causes(grid_ok):
            self.fault_code = 0
            self._enter(STANDBY)

    def _wait(self, dt_s: float, delay_s: float, target: int) -> None:
        self._timer += dt_s
        if self._timer >= delay_s - 1e-9:  # tolerate float sums of dt
            self._enter(target)

    def _trip(self, causes: int) -> None:
        self.fault_code |= causes
        self._enter(FAULT)

    def _enter(self, state: int) -> None:
        self.state_code = state
        self._timer = 0.0
        if state != RUNNING:
            self.p_ac_w = self.q_ac_var = self._p_ramp = 0.0
            self.island = False

    # ------------------------------------------------------------ power

    def step(self, dt_s: float, grid_ok: bool, dc_ok: bool) -> None:
        """Grid-connected step: state machine, then follow the setpoints."""
        self._transition(dt_s, grid_ok, dc_ok)
        self._dc_live = dc_ok
        if self.state_code != RUNNING:
            self._dc(READY if self.state_code == READY else STANDBY, dt_s)
            return
        if not grid_ok:
            return  # islanded: the plant calls supply_island() next
        self.island = False
        if dt_s != self._dt:
            self._dt = dt_s
            self._ramp_step = self.cfg.ramp_w_per_s * dt_s
            tau = self.cfg.response_tau_s
            self._alpha = 1.0 - math.exp(-dt_s / tau) if tau > 0 else 1.0
        p, q = self._limit(self._after_dead_time(dt_s), self.q_setpoint_var)
        ramp, step = self._p_ramp, self._ramp_step
        if p > ramp + step:
            ramp += step
        elif p < ramp - step:
            ramp -= step
        else:
            ramp = p
        self._p_ramp = ramp
        a = self._alpha
        self.p_ac_w += (ramp - self.p_ac_w) * a
        self.q_ac_var += (q - self.q_ac_var) * a
        self._dc(RUNNING, dt_s)

    def _after_dead_time(self, dt_s: float) -> float:
        """The P setpoint that arrived `command_delay_s` ago (the present one without a dead time).
        Timed by the steps' sum, not their count: a simulator that steps at each write and at each
        revert deadline (ems/devsim/runner.py) takes steps of any length."""
        delay = self.cfg.command_delay_s
        if delay <= 0.0:
            return self.p_setpoint_w
        self._running_s += dt_s
        queue = self._delayed  # (arrival, setpoint), oldest first
        queue.append((self._running_s, self.p_setpoint_w))
        due = self._running_s - delay + 1e-9  # a step's sum is not exact: a delay of whole steps stays whole
        while len(queue) > 1 and queue[1][0] <= due:  # the past before the first step held its value
            queue.popleft()
        return queue[0][1]

    def _limit(self, p: float, q: float) -> tuple[float, float]:
        """Clamp P to the derated rating, then P or Q so that S <= rated_s_va."""
        pmax = self.p_max_w
        if p > pmax:
            p = pmax
        elif p < -pmax:
            p = -pmax
        s = self.rated_s_va
        if p * p + q * q > s * s:
            if self.cfg.q_priority:
                q = max(-s, min(s, q))
                p = math.copysign(math.sqrt(s * s - q * q), p)
            else:
                q = math.copysign(math.sqrt(s * s - p * p), q)
        return p, q

    def supply_island(self, dt_s: float, p_w: float, q_var: float) -> None:
        """Islanded step: deliver exactly p_w / q_var (already within limits)."""
        self.island = True
        self.p_ac_w = self._p_ramp = p_w
        self.q_ac_var = q_var
        self._dc(RUNNING, dt_s)

    def ac_from_dc(self, p_dc_w: float) -> float:
        """AC power that corresponds to DC power p_dc_w (inverse of ``_dc``, approximately)."""
        p = p_dc_w - self.cfg.idle_loss_w
        idx = min(int(abs(p) * self._lut_scale), self._lut_last)
        eta = self._eta_lut[idx]
        return p * eta if p > 0.0 else p / eta

    def _dc(self, state: int, dt_s: float) -> None:
        """DC power and loss accumulation for the thermal model."""
        if state == STANDBY or not self._dc_live:
            self.p_dc_w = 0.0
            return
        p = self.p_ac_w
        idx = int((p if p >= 0.0 else -p) * self._lut_scale)
        eta = self._eta_lut[idx if idx < self._lut_last else self._lut_last]
        p_dc = (p / eta if p > 0.0 else p * eta) + self.cfg.idle_loss_w
        self.p_dc_w = p_dc
        self._loss_j += (p_dc - p) * dt_s

    # ------------------------------------------------------------ slow tick

    def scan(self, dt_s: float, ambient_degc: float) -> None:
        """Heatsink temperature from the losses since the last scan; derating."""
        if dt_s <= 0.0:
            return
        cfg = self.cfg
        h = cfg.cooling_w_per_degc
        decay = math.exp(-h * dt_s / cfg.heat_capacity_j_per_degc)
        loss_w = self._loss_j / dt_s
        self._loss_j = 0.0
        self.temperature_degc = (ambient_degc + (self.temperature_degc - ambient_degc) * decay
                                 + loss_w / h * (1.0 - decay))
        span = cfg.trip_degc - cfg.derate_start_degc
        frac = (cfg.trip_degc - self.temperature_degc) / span
        self.p_max_w = cfg.rated_p_w * (1.0 if frac >= 1.0 else max(0.0, frac))

    # ------------------------------------------------------------ derived readings

    @property
    def s_ac_va(self) -> float:
        return math.hypot(self.p_ac_w, self.q_ac_var)

    @property
    def dc_voltage_v(self) -> float:
        if not self._dc_live:
            return 0.0
        assert self._battery is not None, _UNCONNECTED
        return self._battery.voltage_v

    @property
    def dc_current_a(self) -> float:
        if not self._dc_live:
            return 0.0
        assert self._battery is not None, _UNCONNECTED
        return self._battery.current_a

    @property
    def efficiency_pct(self) -> float:
        p, p_dc = self.p_ac_w, self.p_dc_w
        if p == 0.0 or p_dc == 0.0:
            return 0.0
        return 100.0 * (p / p_dc if p > 0.0 else p_dc / p)

    @property
    def frequency_hz(self) -> float:
        assert self._bus is not None, _UNCONNECTED
        return self._bus.frequency_hz

    def _phase_v(self, k: int) -> float:
        assert self._bus is not None, _UNCONNECTED
        return self._bus.phase_v(k)

    def _phase_i(self, k: int) -> float:
        v = self._phase_v(k)
        return self.s_ac_va / (3.0 * v) if v > 0.0 else 0.0

    v_l1_v = property(lambda self: self._phase_v(0))
    v_l2_v = property(lambda self: self._phase_v(1))
    v_l3_v = property(lambda self: self._phase_v(2))
    i_l1_a = property(lambda self: self._phase_i(0))
    i_l2_a = property(lambda self: self._phase_i(1))
    i_l3_a = property(lambda self: self._phase_i(2))
