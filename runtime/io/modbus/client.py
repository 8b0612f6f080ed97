"""The `modbus` driver: polls a Modbus TCP/RTU device described by a device profile.

Reads follow the profile's poll groups: each group's blocks (see modbus/plan.py) are read when
the group is due; between reads a register keeps its last value, fresh for its group's
period. Failures are per block, so the right tags suffer:
  * an exception reply or a malformed reply makes the block's tags BAD at once;
  * a missing reply leaves them unchanged (they age into STALE) and BAD after `bad_after_s`;
    the rest of that poll is skipped, so a silent device costs one timeout per poll;
  * a lost connection raises: the base class marks every tag BAD and reconnects with backoff.
Each fault is counted and logged once per change; recovery is logged once too.
Writes go out when a value changes (or every `rewrite_period_s`), are clamped to the
register's min/max and read back when the profile allows verification. A register declared as a
charge/discharge window (SunSpec OutWRte with InWRte as its mirror and StorCtl_Mod as its mode
register) is written with its mirror and mode register together (runtime/io/modbus/window.py).
Communication loss: at every connect the driver first writes `revert_s` into the revert
timers guarding its outputs (profile `reverts_after`), then rewrites those outputs every
`revert_s / REWRITES_PER_REVERT`: while the controller lives they never lapse, and when it
dies the device itself drops them back to their `revert_value` (0 W; a SunSpec storage window:
its limits released) within `revert_s`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import attrs

from plc.tags import ModbusTable
from runtime.clock import Clock
from runtime.io import aio
from runtime.io.driver import UNCHANGED, Driver, DriverSettings, Point
from runtime.io.modbus import codec, plausible, sunspec, transport, window
from runtime.io.modbus.config import (
    LATE_READS_OF,
    ModbusConfig,
    ModbusOptions,
    ModbusPoint,
    check_points,
    parse_options,
)
from runtime.io.modbus.plan import Block, plan_reads
from runtime.io.modbus.profile import Register
from runtime.io.registry import DriverKind

log = logging.getLogger(__name__)

REWRITES_PER_REVERT = 10  # a guarded output is rewritten this many times per revert period
SF_RANGE = (-10, 10)  # SunSpec scale factors: "typically -10 .. 10"; beyond, a register is broken


class WrongDevice(Exception):
    """The device that answers is not the one its profile is for, or refuses its setup: its
    tags stay BAD (the driver retries with backoff, in case the device is replaced)."""


def _ranges(values: Sequence[int]) -> str:
    """1648, 1649, 1650, 1653 -> "1648-1650, 1653"."""
    ordered, out = sorted(set(values)), []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if value is not None:
            start = prev = value
    return ", ".join(out)


@attrs.define
class ModbusStats:
    timeouts: int = 0
    exceptions: int = 0
    bad_responses: int = 0
    write_errors: int = 0
    verify_failures: int = 0
    reconnects: int = 0
    reads: int = 0
    writes: int = 0
    poll_time_s: float = 0.0
    late_reads: int = 0  # block reads a poll or more after they were due (a slow device, a slow poll)
    late_by_group: dict[str, int] = attrs.Factory(dict)


@attrs.define
class BlockState:
    next_due: float = -math.inf
    last_good: float = -math.inf
    error: str = ""
    hard: bool = False  # the device answered, and the answer was an error: BAD at once


@attrs.define
class Written:
    words: list[Any]
    at: float


class ModbusDriver(Driver):
    kind = "modbus"

    def __init__(self, name: str, inputs: Sequence[Point], outputs: Sequence[Point], clock: Clock,
                 settings: DriverSettings, config: ModbusConfig):
        super().__init__(name, inputs, outputs, clock, settings)
        self.config = config
        self.profile = config.profile
        self.options: ModbusOptions = config.options
        self.unit = config.unit_id
        self.stats = ModbusStats()
        regs = self.profile.registers
        names = {p.address.register for p in inputs if p.address.register}
        names |= {regs[p.address.register].scale_register for p in outputs
                  if p.address.register and regs[p.address.register].scale_register}
        self._read_names = names
        written = {p.address.register for p in outputs if p.address.register}
        self._bound = names | written | {c for n in written for c in window.companions(regs[n])}
        self._plan()
        self._raw: dict[str, Any] = {}
        self._last_words: dict[str, Written] = {}
        self._write_error: dict[str, str] = {}
        self._client: Any = None
        self._quiet = False  # reconnecting without a fault: log at debug level
        self._last_reconnect = -math.inf
        self._silent = False
        self._bad_sf: set[str] = set()  # scale factors out of range, logged once each
        device, options = self.profile.device, self.options
        rated = (options.rated_power_w or device.rated_power_w, options.rated_current_a or device.rated_current_a)
        self._plausible = {n: plausible.plausible_range(regs[n], *rated) for n in names}
        self._implausible: set[str] = set()  # registers read outside their plausible range, logged once each
        self._references: dict[str, float] = {}  # percent_of bases, read once per connection
        self._windows: dict[str, float] = {}  # window register -> the value its window was last closed on
        self._heartbeat = 0
        self._next_heartbeat = -math.inf
        self._timers = config.profile.revert_timers({p.address.register for p in outputs if p.address.register})
        if not self.profile.device.public_map:
            log.warning("device %s: profile %s is NOT from a published register map (allow_unverified_profile = "
                        "true): its addresses are unverified", name, self.profile.name)

    def _plan(self) -> None:
        """The block reads of the registers bound to tags, at the current profile's addresses."""
        self.blocks: list[Block] = plan_reads(self.profile, self._read_names)
        self._states = [BlockState() for _ in self.blocks]
        self._block_of = {n: i for i, b in reversed(list(enumerate(self.blocks))) for n in b.registers}

    # --- connection -------------------------------------------------------------------------
    @property
    def _call_timeout(self) -> float:
        return self.options.timeout_s * (self.options.retries + 1) + 1.0

    def open(self) -> None:
        self._client = aio.run(transport.connect(self.options), self._call_timeout)
        try:
            self._follow_chain()
            self._check_identity()
            self._apply_setup()
        except BaseException:
            self.close()  # the base class closes only what opened
            raise
        if self.restart_count or self.poll_count or self.fault_count:
            self.stats.reconnects += 1
        level = logging.DEBUG if self._quiet or self._last_error else logging.INFO  # recovery is logged by the base
        log.log(level, "device %s: connected to %s (%s)", self.name, transport.describe(self.options), self.profile.name)

    def _read_value(self, name: str) -> Any:
        """One register's engineering value, read now (outside the polls: at connect, or a
        rating once per connection), with its scale factor; None while that is unusable."""
        reg = self.profile.registers[name]
        if reg.scale_register and self._checked_sf(reg.scale_register, self._scale_factor(reg.scale_register)) is None:
            return None
        words = self._call(transport.read(self._client, reg.table, reg.address, reg.words, self.unit))
        device = self.profile.device
        return self._engineering(reg, codec.decode(list(words), reg.dtype, device.byte_order, device.word_order), None)

    def _follow_chain(self) -> None:
        """A SunSpec profile: find the device's models and read each where the device has it."""
        if self.config.profile.sunspec is None:
            return

        def read(address: int, count: int) -> list[int]:
            return list(self._call(transport.read(self._client, ModbusTable.HOLDING, address, count, self.unit)))
        try:
            chain = sunspec.discover(read)
            profile = sunspec.rebase(self.config.profile, chain, self._bound)
        except sunspec.ChainError as exc:
            raise WrongDevice(str(exc)) from None
        if profile != self.profile:  # a first connect, or a device replaced by one of another layout
            log.info("device %s: SunSpec chain from %d: %s", self.name, chain.base, chain.describe())
            self.profile = profile
            self._plan()

    def _check_identity(self) -> None:
        """The device is the one the profile is for, by its identity register (profile [identity])."""
        identity = self.profile.identity
        if identity is None:
            return
        reg = self.profile.registers[identity.register]
        value = int(self._read_value(identity.register))
        if value in identity.accept:
            return
        other = next((model for model, values in identity.others.items() if value in values), None)
        hint = f"; it is a device of profile {other!r}: use model = \"{other}\"" if other else ""
        raise WrongDevice(f"identity register {identity.register} ({reg.table.value} {reg.address}, "
                          f"0x{reg.address:04X}) reads {value}: not a {self.profile.device.model} (profile "
                          f"{self.profile.name!r} accepts {_ranges(identity.accept)}){hint}")

    def _apply_setup(self) -> None:
        """Each [setup] register holds its value: read it; write it when it differs; read back."""
        for name, wanted in self.profile.setup.items():
            reg = self.profile.registers[name]
            if abs(self._read_value(name) - wanted) < 1e-9:
                continue
            words = self._words_for(name, reg, wanted)
            if words is None or not self._write(name, reg, words, self.clock.now()) or \
                    abs(self._read_value(name) - wanted) >= 1e-9:
                raise WrongDevice(f"setup register {name} ({reg.table.value} 0x{reg.address:04X}) does not take "
                                  f"{wanted:g}: {reg.description or 'required by the profile'}")
            log.info("device %s: %s set to %g (%s)", self.name, name, wanted, reg.description or "profile setup")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            aio.loop().call_soon_threadsafe(client.close)
        self._last_words.clear()  # a reconnected device gets every output again
        self._references.clear()  # and its ratings are read again (it may have been replaced)

    def _call(self, coro: Any, requests: int = 1) -> Any:
        """Run one coroutine on the IO loop, bounded by the device timeout per request."""
        client = self._client
        if client is None:
            coro.close()
            raise ConnectionError("not connected")
        try:
            return aio.run(coro, self._call_timeout * requests)
        except (TimeoutError, transport.NoReply):
            if not client.connected:  # the device (or the stack) dropped the connection
                raise ConnectionError("the connection was closed") from None
            raise transport.NoReply("no answer") from None

    # --- reads --------------------------------------------------------------------------------
    def read_inputs(self, now: float) -> Sequence[Any]:
        started = time.perf_counter()
        self._heartbeat_tick(now)
        self._reconnect_if_silent(now)
        due = self._due(now)
        results: list[Any] = []
        if due and not self._silent:
            requests = [(self.blocks[i].table, self.blocks[i].address, self.blocks[i].count) for i in due]
            try:
                results = self._call(transport.read_many(self._client, requests, self.unit), len(requests))
            except transport.NoReply as exc:  # the whole batch overran its bound
                results = [exc]
        self._silent = False
        resync = False
        for position, index in enumerate(due):
            if position >= len(results):
                self._block_failed(index, "skipped: the device is not answering", hard=False)
                continue
            resync |= self._apply(index, results[position], now)
        if resync:
            self._reconnect_quietly()
        self.stats.poll_time_s = time.perf_counter() - started
        return [self._input_value(p, now) for p in self.inputs]

    def _due(self, now: float) -> list[int]:
        """The blocks a poll at `now` reads, slowest group first: the fastest group, the one whose
        values the scan needs freshest, is read last, nearest the scan deadline.

        A block is read at the poll nearest its due time: a poll a wake-up early (the group's
        clock and the poll grid a fraction of a millisecond apart) must not put it off a whole
        poll period, late every time after."""
        due = [i for i, state in enumerate(self._states) if now + self._slack >= state.next_due]
        groups = self.profile.poll_groups
        return sorted(due, key=lambda i: -groups[self.blocks[i].group].period_s)

    @property
    def _slack(self) -> float:
        """How far from its due time a block is still read on time: half a poll period."""
        return self.settings.poll_period_s / 2.0

    def poll_shape(self, at: float) -> tuple[int, ...]:
        """The blocks due at `at`: a poll's duration is mostly theirs (see Driver.lead_s)."""
        return tuple(self._due(at))

    def _apply(self, index: int, result: Any, now: float) -> bool:
        """Book one block's outcome; True when the stream may be out of step (reconnect)."""
        block, state = self.blocks[index], self._states[index]
        if isinstance(result, transport.NoReply):
            self.stats.timeouts += 1
            self._block_failed(index, f"{result} (timeout {self.options.timeout_s:.2f} s)", hard=False)
            return False
        if isinstance(result, transport.ExceptionReply):
            self.stats.exceptions += 1
            self._block_failed(index, str(result), hard=True)
        elif isinstance(result, transport.BadReply):
            self.stats.bad_responses += 1
            self._block_failed(index, f"malformed reply: {result}", hard=True)
        else:
            self.stats.reads += 1
            self._decode_block(block, result)
            if state.error:
                log.info("device %s: %s recovered", self.name, self._block_label(block))
            state.error, state.hard, state.last_good = "", False, now
        period = self.profile.poll_groups[block.group].period_s
        if now - state.next_due > self._slack and state.next_due > -math.inf:
            self.stats.late_reads += 1  # at least one poll after it was due
            self.stats.late_by_group[block.group] = self.stats.late_by_group.get(block.group, 0) + 1
        state.next_due = now + period if state.next_due < now - period else state.next_due + period
        return isinstance(result, transport.BadReply) and result.resync

    def _block_failed(self, index: int, message: str, hard: bool) -> None:
        state = self._states[index]
        self.fault_count += 1
        if message != state.error:  # log once per change, not once per poll
            log.warning("device %s: %s: %s", self.name, self._block_label(self.blocks[index]), message)
        state.error, state.hard = message, hard

    def _block_label(self, block: Block) -> str:
        return f"{block.table.value} {block.address}..{block.end - 1} ({', '.join(block.registers)})"

    def _reconnect_quietly(self) -> None:
        """Start a fresh connection (the stream may be out of step, or the peer half-open)."""
        self._last_reconnect = self.clock.now()
        self.close()
        self._quiet = True
        try:
            self.open()
        finally:
            self._quiet = False

    def _reconnect_if_silent(self, now: float) -> None:
        """No answer at all for `bad_after_s`: the connection itself may be dead; renew it."""
        wait = max(self.options.bad_after_s, 1.0)
        states = self._states
        if not states or any(not s.error or s.hard for s in states) or now - self._last_reconnect < wait:
            return
        if all(now - s.last_good >= wait for s in states):
            self._reconnect_quietly()

    def _decode_block(self, block: Block, words: list[Any]) -> None:
        device = self.profile.device
        for name in block.registers:
            reg = self.profile.registers[name]
            part = words[reg.address - block.address: reg.address - block.address + reg.words]
            if reg.is_bit:
                self._raw[name] = bool(part[0])
                continue
            unsigned = codec.raw_unsigned(part, device.byte_order, device.word_order)
            if device.sunspec_nan and codec.SUNSPEC_NAN.get(reg.dtype) == unsigned and reg.bits is None:
                self._raw[name] = None
            elif reg.bits is not None:
                lsb, width = reg.bits
                self._raw[name] = (unsigned >> lsb) & ((1 << width) - 1)
            else:
                self._raw[name] = codec.decode(part, reg.dtype, device.byte_order, device.word_order)

    def _block_status(self, index: int, now: float) -> str:
        state = self._states[index]
        if not state.error:
            return "ok"
        if state.hard or now - state.last_good >= self.options.bad_after_s:
            return "bad"
        return "stale"

    def _input_value(self, point: Point, now: float) -> Any:
        address: ModbusPoint = point.address
        if address.meta:
            return self._meta(address.meta)
        name = address.register
        reg = self.profile.registers[name]
        statuses = [self._block_status(self._block_of[n], now) for n in (name, reg.scale_register) if n]
        if "bad" in statuses:
            return None
        if "stale" in statuses:
            return UNCHANGED
        value = self._engineering(reg, self._raw.get(name), address.bit)
        if value is None:
            return None
        if point.is_bool:
            return bool(value)
        if address.bit is not None or reg.is_bit or isinstance(value, str):
            return value
        return self._plausible_or_none(name, reg, value)

    def _plausible_or_none(self, name: str, reg: Register, value: float) -> float | None:
        """The reading, or None (BAD) when it is outside what the device can plausibly report."""
        bounds = self._plausible.get(name)
        if bounds is None or bounds[0] <= value <= bounds[1]:
            if name in self._implausible:
                self._implausible.discard(name)
                log.info("device %s: register %s plausible again (%g %s)", self.name, name, value, reg.unit)
            return value
        if name not in self._implausible:
            self._implausible.add(name)
            log.warning("device %s: register %s reads %g %s, outside its plausible range %s: marked BAD",
                        self.name, name, value, reg.unit, plausible.describe(bounds, reg.unit))
        return None

    def _engineering(self, reg: Register, raw: Any, bit: int | None) -> Any:
        if raw is None:
            return None
        if reg.is_bit or isinstance(raw, str):
            return raw
        if bit is not None:
            return (int(raw) >> bit) & 1 if raw >= 0 else ((int(raw) + (1 << (16 * reg.words))) >> bit) & 1
        value = raw * reg.scale
        if reg.scale_register:
            sf = self._checked_sf(reg.scale_register, self._raw.get(reg.scale_register))
            if sf is None:
                return None
            value *= 10.0 ** sf
        return value + reg.offset

    def _checked_sf(self, name: str, sf: Any) -> int | None:
        """A SunSpec scale factor within -10..10 (SunSpec's range), else None: the registers it
        scales read BAD, logged once naming the register (10 ** 5000 would overflow)."""
        if sf is None:
            return None
        if SF_RANGE[0] <= sf <= SF_RANGE[1]:
            self._bad_sf.discard(name)
            return int(sf)
        if name not in self._bad_sf:
            reg = self.profile.registers[name]
            log.error("device %s: scale factor %s (%s %d) reads %s, outside %d..%d: the registers it scales are BAD",
                      self.name, name, reg.table.value, reg.address, sf, *SF_RANGE)
            self._bad_sf.add(name)
        return None

    def _meta(self, what: str) -> Any:
        if what == "online":  # connected, and no block waiting for an answer
            return self._client is not None and not any(s.error and not s.hard for s in self._states)
        if what == "fault_count":
            return self.fault_count
        if what.startswith(LATE_READS_OF):
            return self.stats.late_by_group.get(what.removeprefix(LATE_READS_OF), 0)
        return getattr(self.stats, what)

    # --- writes -------------------------------------------------------------------------------
    def write_outputs(self, raw: Sequence[Any]) -> None:
        now = self.clock.now()
        if self._arm_revert_timers(now) is False:
            return
        for point, value in zip(self.outputs, raw):
            if value is None:
                continue
            if point.address.command:
                if self._command(point.address.command, bool(value), now) is False:
                    return
                continue
            name = point.address.register
            reg = self.profile.registers[name]
            if point.address.percent_of:
                value = self._as_percent(name, point.address.percent_of, value)
                if value is None:
                    continue
            if self._write_output(name, reg, value, now) is False:
                return  # the device is silent: the rest waits for the next poll

    def _write_output(self, name: str, reg: Register, value: Any, now: float) -> bool | None:
        """One output register (a window: with its mirror and mode register), written when its
        value changed or its rewrite is due; False when the device is silent."""
        if reg.mirror:
            value = self._clamp(name, reg, value)
        plan = window.steps(name, reg, value, self._windows.get(name)) if reg.mirror else [(name, value)]
        writes = []
        for register, number in plan:
            target = self.profile.registers[register]
            words = self._words_for(register, target, number)
            if words is None:
                return None
            writes.append((register, target, words))
        last = self._last_words.get(name)
        rewrite = self._rewrite_period(reg)
        unchanged = all(self._last_words.get(r, Written([], 0.0)).words == words for r, _, words in writes)
        if last is not None and unchanged and not (rewrite and now - last.at >= rewrite):
            return True
        for register, target, words in writes:
            result = self._write(register, target, words, now)
            if not result:
                return result  # the rest of a window waits: its mode goes out only after both rates
        if reg.mirror:
            self._windows[name] = value
        return True

    def _rewrite_period(self, reg: Register) -> float:
        """How often an unchanged output is written again (0: only on change)."""
        period = self.profile.device.rewrite_period_s
        if reg.reverts_after:
            guard = self.options.guard_rewrite_s or self.options.revert_s / REWRITES_PER_REVERT
            period = min(period, guard) if period else guard
        return period

    def _arm_revert_timers(self, now: float) -> bool | None:
        """Write `revert_s` into each revert timer not yet written on this connection."""
        for name in self._timers:
            if name in self._last_words:
                continue
            reg = self.profile.registers[name]
            words = self._words_for(name, reg, self.options.revert_s)
            if words is None:
                continue
            result = self._write(name, reg, words, now)
            if result is False:
                return False
            if result:
                log.info("device %s: %s armed: the device reverts by itself after %.1f s of silence",
                         self.name, name, self.options.revert_s)
        return True

    def _command(self, name: str, value: bool, now: float) -> bool | None:
        """A command output: on a change (or rewrite period) write its registers for `value`."""
        key = f"command:{name}"
        last = self._last_words.get(key)
        rewrite = self.profile.device.rewrite_period_s
        if last is not None and last.words == [value] and not (rewrite and now - last.at >= rewrite):
            return True
        command = self.profile.commands[name]
        for register, number in (command.on_true if value else command.on_false).items():
            reg = self.profile.registers[register]
            words = self._words_for(register, reg, number)
            if words is None:
                return None
            device = self.profile.device
            try:
                self._call(transport.write(self._client, reg.table, reg.address, words, self.unit,
                                           device.write_single))
            except transport.NoReply:
                self.stats.write_errors += 1
                self.fault_count += 1
                self._note_write(key, "no answer to the command")
                self._silent = True
                return False
            except (transport.ExceptionReply, transport.BadReply) as exc:
                self.stats.write_errors += 1
                self.fault_count += 1
                self._note_write(key, f"command refused: {exc}")
                return None
            self.stats.writes += 1
        self._last_words[key] = Written([value], now)
        self._write_error.pop(key, None)
        return True

    def _words_for(self, name: str, reg: Register, value: Any) -> list[Any] | None:
        if reg.is_bit:
            return [bool(value)]
        if reg.bits is not None:  # a field: its value here; _write merges it into the register
            width = reg.bits[1]
            field = int(round(float(value)))
            if not 0 <= field < (1 << width):
                self._note_write(name, f"{value!r} does not fit in bits {reg.bits[0]}..{reg.bits[0] + width - 1}")
                return None
            return [field]
        number = (self._clamp(name, reg, value) - reg.offset) / reg.scale
        if reg.scale_register:
            sf = self._checked_sf(reg.scale_register, self._scale_factor(reg.scale_register))
            if sf is None:
                return None
            number /= 10.0 ** sf
        device = self.profile.device
        try:
            return codec.encode(number, reg.dtype, device.byte_order, device.word_order, reg.length)
        except ValueError as exc:
            self.stats.write_errors += 1
            self._note_write(name, str(exc))
            return None

    def _clamp(self, name: str, reg: Register, value: Any) -> Any:
        """`value` within the register's min/max (a clamp is logged once)."""
        clamped = value
        if reg.min is not None and clamped < reg.min:
            clamped = reg.min
        if reg.max is not None and clamped > reg.max:
            clamped = reg.max
        if clamped != value:
            self._note_write(name, f"{value:g} {reg.unit} is outside {reg.min}..{reg.max}; sent {clamped:g}")
        return clamped

    def _scale_factor(self, name: str) -> Any:
        if name not in self._raw:  # not read yet (the first write comes before the first read)
            reg = self.profile.registers[name]
            try:
                words = self._call(transport.read(self._client, reg.table, reg.address, 1, self.unit))
            except (transport.NoReply, transport.ExceptionReply, transport.BadReply):
                return None
            self._raw[name] = codec.decode(words, "sunssf", self.profile.device.byte_order)
        return self._raw[name]

    def _as_percent(self, name: str, of: str, value: float) -> float | None:
        """`value` (in the unit of register `of`) as a percentage of what the device reports in
        `of`, read once per connection (SunSpec's WChaMax); None while it cannot be read or is 0."""
        base = self._references.get(of)
        if base is None:
            try:
                base = self._read_value(of)
            except (transport.NoReply, transport.ExceptionReply, transport.BadReply) as exc:
                self._note_write(name, f"cannot read {of} to express it as %: {exc}")
                return None
            if base is None or not base > 0:
                self._note_write(name, f"{of} reads {base}: no percentage of it can be written")
                return None
            self._references[of] = base
            log.info("device %s: %s is written as %% of %s = %g %s", self.name, name, of, base,
                     self.profile.registers[of].unit)
        return float(value) / float(base) * 100.0

    def _merge_field(self, reg: Register, field: int) -> list[int]:
        """Read-modify-write of a bit field: the register as the device holds it now, with only
        this field changed (writing the whole word would clear the bits beside it, such as a
        LuxPower's grid-protection bits in hold 21)."""
        current = self._call(transport.read(self._client, reg.table, reg.address, reg.words, self.unit))
        device = self.profile.device
        whole = codec.raw_unsigned(current, device.byte_order, device.word_order)
        lsb, width = reg.bits  # type: ignore[misc]
        mask = ((1 << width) - 1) << lsb
        whole = (whole & ~mask) | (field << lsb)
        return list(codec.encode(whole, "uint16" if reg.words == 1 else "uint32", device.byte_order,
                                 device.word_order))

    def _write(self, name: str, reg: Register, words: list[Any], now: float) -> bool | None:
        single = self.profile.device.write_single
        remembered = words
        try:
            if reg.bits is not None:
                words = self._merge_field(reg, int(words[0]))
            self._call(transport.write(self._client, reg.table, reg.address, words, self.unit, single))
            self.stats.writes += 1
            if self.profile.verify(reg):
                back = self._call(transport.read(self._client, reg.table, reg.address, len(words), self.unit))
                if list(back) != list(words):
                    self.stats.verify_failures += 1
                    self.fault_count += 1
                    self._note_write(name, f"read back {list(back)} after writing {list(words)}")
                    return None
        except transport.NoReply:
            self.stats.write_errors += 1
            self.fault_count += 1
            self._note_write(name, "no answer to the write")
            self._silent = True
            return False
        except (transport.ExceptionReply, transport.BadReply) as exc:
            self.stats.write_errors += 1
            self.fault_count += 1
            self._note_write(name, f"write refused: {exc}")
            return None
        self._last_words[name] = Written(remembered, now)
        if self._write_error.pop(name, None):
            log.info("device %s: write of %s works again", self.name, name)
        return True

    def _note_write(self, name: str, message: str) -> None:
        if self._write_error.get(name) != message:
            log.warning("device %s: register %s: %s", self.name, name, message)
            self._write_error[name] = message

    def _heartbeat_tick(self, now: float) -> None:
        device = self.profile.device
        if not device.heartbeat_register or now < self._next_heartbeat:
            return
        self._next_heartbeat = now + device.heartbeat_period_s
        self._heartbeat = self._heartbeat % 65535 + 1
        reg = self.profile.registers[device.heartbeat_register]
        self._write(device.heartbeat_register, reg, [self._heartbeat], now)


KIND = DriverKind(
    name="modbus",
    driver=ModbusDriver,
    options=ModbusOptions,
    point=ModbusPoint,
    check=check_points,
    parse_options=parse_options,
)
