"""Safety: the interlocks, the active error list, and the safe reactions. Runs last in every scan.

Each scan every interlock of `programs/interlocks.py` tests its condition; a debounce qualifies
it; the first scan its debounced state is true raises its catalogue error, and the error clears
by the catalogue's rule (on its own after the condition has been gone for `clear_after_s`, or
latched until acknowledged: a RESET command to the site state machine, seen here as
`errors_ack_request`). While errors are active the strongest of their reactions overrides what
dispatch wrote this scan:

* warn: nothing beyond the tag and the event;
* derate / no charge / no discharge: the setpoint is clamped;
* stop: 0 W, 0 var, inverter run command off; the contactor stays as dispatch left it;
* emergency stop (critical errors): stop at once, then the contactor opens as soon as the
  inverter's power is down (or after `contactor_open_after_s`) and stays open; the site goes to
  Error through `error_critical_active` and stays there until the causes are gone and the
  errors acknowledged.

The inverter's own latched faults are reset with a pulse on `inverter_fault_reset_cmd` (when
the site has it) on acknowledgement, and by themselves when only grid faults are latched and the
grid interlocks have cleared (the grid code's reconnection delay is their `clear_after_s`).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from attrs import validators as v

from blocks import TON, TP, Debounce
from plc.program import Program, ScanContext, TagLookup
from plc.tags import DType, Quality, TagSpec
from programs import errors as E
from programs.interlocks import (
    ANY_INPUTS_KINDS,
    BY_NAME,
    TABLE,
    Condition,
    InterlockDef,
    Reaction,
    build_condition,
    check_thresholds,
)
from programs.tagdefs import Layout, status

log = logging.getLogger(__name__)
GOOD = Quality.GOOD
BIG = 3.0e38
GRID_FAULT_INTERLOCKS = ("grid_loss", "underfrequency", "overfrequency")


@attrs.frozen
class InterlockSettings:
    """Overrides of one interlock's defaults in the io_map (`[programs.params.interlocks]`)."""

    enabled: bool = True
    trip: float | None = None
    clear: float | None = None
    debounce_s: float | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    clear_after_s: float | None = attrs.field(default=None, validator=v.optional(v.ge(0)))


def _known_interlocks(_instance: Any, _attribute: attrs.Attribute, value: dict[str, InterlockSettings]) -> None:
    for name in value:
        if name not in BY_NAME:
            raise ValueError(f"unknown interlock {name!r}; interlocks are {', '.join(BY_NAME)}")


@attrs.frozen
class Effective:
    """An interlock's settings after the io_map's overrides."""

    definition: InterlockDef
    error: E.ErrorDef
    enabled: bool
    trip: float | None
    clear: float | None
    debounce_s: float
    clear_after_s: float | None  # None: latched


@attrs.frozen
class Params:
    interlocks: dict[str, InterlockSettings] = attrs.field(factory=dict, validator=_known_interlocks)
    derate_pct: float = attrs.field(default=50.0, validator=[v.ge(0), v.le(100)])
    contactor_open_below_w: float = attrs.field(default=100.0, validator=v.ge(0))
    contactor_open_after_s: float = attrs.field(default=2.0, validator=v.ge(0))
    fault_reset_pulse_s: float = attrs.field(default=1.0, validator=v.gt(0))
    fault_reset_delay_s: float = attrs.field(default=2.0, validator=v.ge(0))
    inverter_grid_fault_bits: int = attrs.field(default=2, validator=v.ge(0))  # reset on their own
    history_size: int = attrs.field(default=200, validator=v.ge(1))
    modbus_input_base: int | None = 1300

    def __attrs_post_init__(self) -> None:
        if not all(isinstance(o, InterlockSettings) for o in self.interlocks.values()):
            return  # a malformed entry: the config loader has reported it at its key already
        for item in self.effective():
            problem = check_thresholds(item.definition, item.trip, item.clear)
            if problem:
                raise ValueError(problem)
            override = self.interlocks.get(item.definition.name)
            if override and override.clear_after_s is not None and item.error.latched:
                raise ValueError(f"interlock {item.definition.name!r}: its error is latched until acknowledged; "
                                 "clear_after_s does not apply")

    def effective(self) -> list[Effective]:
        out = []
        for d in TABLE:
            o = self.interlocks.get(d.name, InterlockSettings())
            error = E.BY_NAME[d.name]
            default_after = None if error.latched else error.clear.after_s  # type: ignore[union-attr]
            out.append(Effective(
                definition=d, error=error, enabled=o.enabled,
                trip=o.trip if o.trip is not None else d.trip,
                clear=o.clear if o.clear is not None else d.clear,
                debounce_s=o.debounce_s if o.debounce_s is not None else d.debounce_s,
                clear_after_s=o.clear_after_s if o.clear_after_s is not None else default_after,
            ))
        return out


class Interlock:
    """One live interlock: condition, debounce, error and reaction."""

    __slots__ = ("cfg", "error", "reaction", "cond", "test", "raise_db", "clear_db", "pending", "present", "active")

    def __init__(self, cfg: Effective, cond: Condition):
        self.cfg = cfg
        self.error = cfg.error
        self.reaction = cfg.definition.reaction
        self.cond = cond
        self.test = cond.test  # bound once: the scan calls it for every interlock
        self.raise_db = Debounce(on_s=cfg.debounce_s, off_s=0.0)  # qualifies the condition
        self.clear_db = Debounce(on_s=cfg.clear_after_s or 0.0, off_s=0.0)  # condition gone long enough
        self.pending = False  # a debounce is timing: step it even when nothing changed
        self.present = False  # debounced condition
        self.active = False  # its error is in the active list


class Safety(Program):
    """Interlocks and safe reactions; declares the error tags that Modbus, HMI and telemetry read."""

    kind = "safety"
    params_type = Params

    def __init__(self, name: str, params: Params):
        super().__init__(name)
        self.p = params
        self.table = E.ErrorTable(params.history_size)
        self.events = self.table.events  # the event recorder drains this
        self.interlocks: list[Interlock] = []
        self.reset_pulse = TP(pt_s=params.fault_reset_pulse_s)
        self.auto_reset_timer = TON(pt_s=params.fault_reset_delay_s)
        self.estop_s = 0.0
        self.contactor_opened = False
        self.reaction = Reaction.NONE
        self.p_lo, self.p_hi = -BIG, BIG
        self._stop = False
        self._estop = False
        self._ack_reset = False  # an acknowledgement also resets the inverter's latched fault
        self._pulse_busy = False

    # --- tags ------------------------------------------------------------------------------------
    def declare(self) -> list[TagSpec]:
        i = Layout(None, self.p.modbus_input_base)
        specs = [
            status(i, "error_critical_active", DType.BOOL, "A critical error is active: the site is in Error"),
            status(i, "error_active", DType.BOOL, "At least one error or warning is active"),
            status(i, "error_active_count", DType.UINT16, "Errors and warnings active now"),
            status(i, "error_highest_severity", DType.ENUM, "Severity of the worst active error",
                   enum_cls=E.Severity),
            status(i, "error_last_id", DType.UINT16, "Catalogue id of the error raised last"),
            status(i, "safety_reaction", DType.ENUM, "Strongest safe reaction in force", enum_cls=Reaction),
            status(i, "safety_p_min_w", DType.FLOAT32, "Lowest setpoint the safety program lets through", "W",
                   initial=-BIG),
            status(i, "safety_p_max_w", DType.FLOAT32, "Highest setpoint the safety program lets through", "W",
                   initial=BIG),
        ]
        for error in E.CATALOGUE:  # last: new catalogue entries append their flags at the end
            specs.append(status(i, f"error_{error.name}", DType.BOOL,
                                f"E{error.id} {error.source.name.lower()} {error.severity.name.lower()}: "
                                f"{error.text}"))
        return specs

    def bind(self, tags: TagLookup) -> None:
        self.ack = tags["errors_ack_request"]
        self.p_out = tags["inverter_p_setpoint_w"]
        self.q_out = tags["inverter_q_setpoint_var"]
        self.run_out = tags.get("inverter_run_cmd")
        self.contactor_out = tags.get("bms_contactor_cmd")
        self.reset_out = tags.get("inverter_fault_reset_cmd")
        self.inverter_p = tags["inverter_p_w"]
        self.fault_code = tags.get("inverter_fault_code")
        self.flags = {e.id: tags[f"error_{e.name}"] for e in E.CATALOGUE}
        self.out = {name: tags[name] for name in (
            "error_critical_active", "error_active", "error_active_count", "error_highest_severity",
            "error_last_id", "safety_reaction", "safety_p_min_w", "safety_p_max_w")}
        p_spec = self.p_out.spec
        self.derate_hi = (p_spec.max if p_spec.max is not None else BIG) * self.p.derate_pct / 100.0
        self.derate_lo = (p_spec.min if p_spec.min is not None else -BIG) * self.p.derate_pct / 100.0
        self.interlocks = self._build(tags)
        self.by_name = {il.error.name: il for il in self.interlocks}
        self.grid_interlocks = [self.by_name[n] for n in GRID_FAULT_INTERLOCKS if n in self.by_name]

    def _build(self, tags: TagLookup) -> list[Interlock]:
        grid_trip = next(e.trip for e in self.p.effective() if e.definition.name == "grid_loss")
        built = []
        for cfg in self.p.effective():
            d = cfg.definition
            if not cfg.enabled:
                continue
            names = [n for n in d.inputs if n in tags]
            missing = [n for n in d.inputs if n not in tags]
            any_of = d.kind in ANY_INPUTS_KINDS
            if (missing and not any_of) or not names:
                if d.optional:
                    continue
                raise KeyError(f"interlock {d.name!r} needs tag(s) {', '.join(missing)}; add them to the io_map "
                               f"or disable it with interlocks.{d.name} = {{ enabled = false }}")
            if d.gate and d.gate not in tags:
                d = attrs.evolve(d, gate=None)
            if any_of:
                d = attrs.evolve(d, inputs=tuple(names))
            cond = build_condition(d, cfg.trip, cfg.clear, tags.__getitem__, gate_min=grid_trip or 0.0)
            built.append(Interlock(cfg, cond))
        return built

    # --- the scan --------------------------------------------------------------------------------
    def execute(self, ctx: ScanContext) -> None:
        dt = ctx.dt_s
        changed = False
        for il in self.interlocks:
            raw = il.test()
            present = il.present
            if raw is None:
                raw = present  # input not GOOD: hold; its source's comm interlock reports it
            if raw is present and not il.pending:
                continue  # the common case: nothing changed, nothing timing
            changed |= self._step(il, raw, dt, ctx)
        if self.ack.value:
            changed |= self._acknowledge(ctx)
        if changed:
            self._publish()
        self._react(dt)
        self._reset_inverter(dt)

    def _step(self, il: Interlock, raw: bool, dt: float, ctx: ScanContext) -> bool:
        """Advance one interlock's debounces; raise or clear its error. True when the list changed."""
        present = il.raise_db.step(raw, dt)
        il.present = il.cond.active = present
        gone = il.clear_db.step(not present and il.active, dt)
        il.pending = raw is not present or (il.active and not present and not gone)
        if present and not il.active:
            il.active = True
            self.table.raise_(il.error, ctx.t_s, ctx.wall_s, _detail(il))
            self._log_raise(il)
            return True
        if gone and il.active and il.cfg.clear_after_s is not None:
            il.active = False
            il.clear_db.reset()
            il.pending = False
            self.table.clear(il.error, ctx.t_s, ctx.wall_s, "condition gone")
            log.info("error E%d %s cleared", il.error.id, il.error.name)
            return True
        return False

    def _acknowledge(self, ctx: ScanContext) -> bool:
        """RESET: clear the latched errors whose condition is gone; reset the inverter's faults."""
        changed = False
        for il in self.interlocks:
            if not il.active:
                continue
            if il.cfg.clear_after_s is None and not il.present:
                il.active = False
                il.clear_db.reset()
                il.pending = False
                self.table.clear(il.error, ctx.t_s, ctx.wall_s, "acknowledged")
                log.warning("error E%d %s acknowledged and cleared", il.error.id, il.error.name)
                changed = True
            else:
                self.table.acknowledge(il.error, ctx.t_s, ctx.wall_s,
                                       "condition still present" if il.present else "clears by itself")
        self._ack_reset = True
        return changed

    def _log_raise(self, il: Interlock) -> None:
        level = logging.WARNING if il.error.severity <= E.Severity.WARNING else logging.ERROR
        log.log(level, "error E%d %s raised (%s): %s; reaction %s", il.error.id, il.error.name,
                il.error.severity.name.lower(), _detail(il), il.reaction.name.lower())

    def _publish(self) -> None:
        """Error tags and the combined reaction; runs only when the active list changed."""
        table = self.table
        out = self.out
        for error_id, flag in self.flags.items():
            flag.set(error_id in table.active)
        out["error_critical_active"].set(table.critical_count > 0)
        out["error_active"].set(bool(table.active))
        out["error_active_count"].set(len(table.active))
        out["error_highest_severity"].set(table.highest_severity())
        raised = [e for e in table.history if e.action is E.Action.RAISED]
        if raised:
            out["error_last_id"].set(raised[-1].error.id)
        self._combine()
        out["safety_reaction"].set(self.reaction)
        out["safety_p_min_w"].set(max(self.p_lo, -BIG))
        out["safety_p_max_w"].set(min(self.p_hi, BIG))

    def _combine(self) -> None:
        """The strongest reaction and the setpoint band of every active error together."""
        lo, hi = -BIG, BIG
        strongest = Reaction.NONE
        for il in self.interlocks:
            if not il.active:
                continue
            r = il.reaction
            strongest = max(strongest, r)
            if r is Reaction.DERATE:
                lo, hi = max(lo, self.derate_lo), min(hi, self.derate_hi)
            elif r is Reaction.NO_CHARGE:
                lo = max(lo, 0.0)
            elif r is Reaction.NO_DISCHARGE:
                hi = min(hi, 0.0)
            elif r >= Reaction.STOP:
                lo = hi = 0.0
        if lo > hi:
            lo = hi = 0.0
        self.reaction = strongest
        self.p_lo, self.p_hi = lo, hi
        self._stop = strongest >= Reaction.STOP
        self._estop = strongest is Reaction.ESTOP
        if not self._estop:
            self.estop_s = 0.0
            self.contactor_opened = False

    def _react(self, dt: float) -> None:
        """Override dispatch's outputs by the combined reaction."""
        if self.reaction <= Reaction.WARN:
            return
        p_out = self.p_out
        if self._stop:
            p_out.set(0.0)
            self.q_out.set(0.0)
            if self.run_out is not None:
                self.run_out.set(False)
            if self._estop:
                self._open_contactor(dt)
            return
        p = p_out.value
        if p < self.p_lo:
            p_out.set(self.p_lo)
        elif p > self.p_hi:
            p_out.set(self.p_hi)

    def _open_contactor(self, dt: float) -> None:
        """Emergency stop sequence: power to 0 first, then open, and keep open."""
        if self.contactor_out is None:
            return
        self.estop_s += dt
        if not self.contactor_opened:
            inv = self.inverter_p
            down = inv.quality is GOOD and abs(inv.value) < self.p.contactor_open_below_w
            if down or self.estop_s >= self.p.contactor_open_after_s:
                self.contactor_opened = True
                log.warning("emergency stop: contactor opened %.1f s after the trip", self.estop_s)
        if self.contactor_opened:
            self.contactor_out.set(False)

    def _reset_inverter(self, dt: float) -> None:
        """Pulse the inverter's fault reset on acknowledgement, or once when only grid faults have
        been latched for `fault_reset_delay_s` with every grid interlock clear."""
        if self.reset_out is None:
            return
        request = self._ack_reset
        self._ack_reset = False
        code = self.fault_code
        timer = self.auto_reset_timer
        if code is not None and code.quality is GOOD and code.value:
            grid_only = not (code.value & ~self.p.inverter_grid_fault_bits)
            grid_ok = not any(il.active or il.present or il.pending for il in self.grid_interlocks)
            was = timer.q
            if timer.step(grid_only and grid_ok, dt) and not was:
                request = True
                log.info("inverter fault 0x%04x is a grid fault and the grid is back: resetting it", code.value)
        elif timer.q or timer.et_s:
            timer.reset()
        if request or self._pulse_busy:  # step the pulse timer only around a request
            pulse = self.reset_pulse.step(request, dt)
            self._pulse_busy = pulse or request
            if pulse or self.reset_out.value:
                self.reset_out.set(pulse)

    # --- for tests, the HMI and the CLI ----------------------------------------------------------
    def active_errors(self) -> list[E.ActiveError]:
        return [self.table.active[i] for i in self.table.active_ids()]


def _detail(il: Interlock) -> str:
    value = il.cond.value()
    unit = il.cfg.definition.unit
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g} {unit}".rstrip()
    return str(value)
