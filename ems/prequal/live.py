"""`ems prequal --live`: play a test on a running unit through its Modbus tag server.

The register map comes from the unit's io_map (the same tag declarations the server serves);
floats are two registers in the server's word order. Each period the client writes the applied
test frequency and `test_frequency_active`, and reads back the signals the evaluation needs.
The unit ends test mode on its own if the writes stop (`test_timeout_s`); the client also ends
it, and restores the capacities it changed, when the test is over or interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator
from collections.abc import Sequence as Seq
from typing import Any

from pymodbus.exceptions import ModbusException

from ems.errors import EXIT_INTERRUPTED, EXIT_START, CommandError
from ems.prequal.recording import Recording, Rows, tag_names
from ems.prequal.runner import CAPACITY_PARAMS, PRODUCT_KEYS, TestRun, grid_program, sold, unit_meta
from ems.prequal.sequences import HeldPlay, Sequence
from plc.tags import DType, ModbusTable
from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.servers.register_map import MapEntry, RegisterMap, make_encoder
from runtime.site import build_site

log = logging.getLogger(__name__)

MAX_GAP = 40  # registers read across in one request to save round trips


class TagClient:
    """Read and write tags by name on a tag server."""

    def __init__(self, register_map: RegisterMap, word_order: str, host: str, port: int, unit_id: int = 1,
                 timeout_s: float = 2.0):
        from pymodbus.client import ModbusTcpClient

        self.entries = {e.name: e for e in register_map}
        self.word_order = word_order
        self.unit_id = unit_id
        self.client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=1)
        self.where = f"{host}:{port}"
        if not self._connect():
            raise CommandError(f"no unit answers at {self.where} (is `ems run` running there, with its "
                               "Modbus server on?)", EXIT_START)

    def _connect(self) -> bool:
        quiet = logging.getLogger("pymodbus.logging")  # it logs the refusal too: say it once, here
        level, quiet.level = quiet.level, logging.CRITICAL + 1
        try:
            return bool(self.client.connect())
        finally:
            quiet.setLevel(level)

    def reconnect(self) -> None:
        """A fresh connection: after an interrupted request, the answer to it may still be on the
        old one (pymodbus then logs a transaction id mismatch)."""
        self.client.close()
        if not self._connect():
            raise ConnectionError(f"no answer at {self.where}")

    def close(self) -> None:
        self.client.close()

    def entry(self, name: str) -> MapEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"tag {name!r} has no Modbus address on this unit") from None

    def write(self, name: str, value: Any) -> None:
        entry = self.entry(name)
        words = make_encoder(entry, self.word_order)(value)  # type: ignore[arg-type]
        c = self.client
        if entry.table is ModbusTable.COIL:
            response = c.write_coil(entry.address, bool(words[0]), device_id=self.unit_id)
        else:
            response = c.write_registers(entry.address, [int(w) for w in words], device_id=self.unit_id)
        if response.isError():
            raise OSError(f"writing {name}: {response}")

    def reader(self, names: Seq[str]) -> Callable[[], list[Any]]:
        """A function that reads these tags in as few requests as the map allows."""
        entries = [self.entry(n) for n in names]
        plan = _plan(entries)

        def read() -> list[Any]:
            values: dict[str, Any] = {}
            for table, start, count, members in plan:
                words = self._read(table, start, count)
                for e in members:
                    values[e.name] = _decode(e, words[e.address - start: e.address - start + e.words],
                                             self.word_order)
            return [values[n] for n in names]

        return read

    def _read(self, table: ModbusTable, start: int, count: int) -> list[Any]:
        c, unit = self.client, self.unit_id
        call = {ModbusTable.INPUT: c.read_input_registers, ModbusTable.HOLDING: c.read_holding_registers,
                ModbusTable.COIL: c.read_coils, ModbusTable.DISCRETE: c.read_discrete_inputs}[table]
        response = call(start, count=count, device_id=unit)
        if response.isError():
            raise OSError(f"reading {table.value} {start}+{count}: {response}")
        return list(response.bits[:count]) if table.is_bits else \
            list(response.registers)


def _plan(entries: list[MapEntry]) -> list[tuple[ModbusTable, int, int, list[MapEntry]]]:
    plan: list[tuple[ModbusTable, int, int, list[MapEntry]]] = []
    for table in ModbusTable:
        group = sorted((e for e in entries if e.table is table), key=lambda e: e.address)
        current: list[MapEntry] = []
        for e in group:
            if current and e.address - (current[-1].address + current[-1].words) > MAX_GAP:
                plan.append(_span(table, current))
                current = []
            current.append(e)
        if current:
            plan.append(_span(table, current))
    return plan


def _span(table: ModbusTable, members: list[MapEntry]) -> tuple[ModbusTable, int, int, list[MapEntry]]:
    start = members[0].address
    end = max(e.address + e.words for e in members)
    return table, start, end - start, members


def _decode(entry: MapEntry, words: list[Any], word_order: str) -> Any:
    dtype = entry.spec.dtype
    if dtype is DType.BOOL:
        return bool(words[0])
    if dtype is DType.FLOAT32:
        hi, lo = (words[0], words[1]) if word_order == "high_first" else (words[1], words[0])
        return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
    raw = words[0]
    if entry.words == 2:
        hi, lo = (words[0], words[1]) if word_order == "high_first" else (words[1], words[0])
        raw = (hi << 16) | lo
        if dtype is DType.INT32 and raw >= 2**31:
            raw -= 2**32
    elif dtype is DType.INT16 and raw >= 2**15:
        raw -= 2**16
    return raw / entry.scale if entry.scale != 1.0 else raw


def live_test(run: TestRun, seq: Sequence, host: str, port: int, unit_id: int = 1, period_s: float = 0.1,
              progress: Callable[[float, float], None] | None = None) -> Recording:
    """Play `seq` on the unit at host:port (which runs `run.io_map`); return the recording."""
    io_map = load_io_map(run.io_map)
    site = build_site(io_map, VirtualClock())  # opens nothing: only the tag declarations are wanted
    word_order = io_map.modbus_server.word_order
    client = TagClient(RegisterMap.from_specs(site.image.specs(), word_order), word_order, host, port, unit_id)
    key = PRODUCT_KEYS[run.product]
    names = tag_names(key)
    read = client.reader(list(names.values()))
    rows = Rows(list(names))
    with _stop_signals():  # SIGTERM and SIGHUP end the test like Ctrl-C: the capacity is withdrawn
        try:
            capacities = client.reader(list(CAPACITY_PARAMS.values()))()
        except (OSError, ModbusException) as exc:
            client.close()
            raise CommandError(f"the unit at {host}:{port}: {exc}", EXIT_START) from None
        try:
            for name in CAPACITY_PARAMS.values():
                client.write(name, run.capacity_w if name in sold(run) else 0.0)
            held = _play(client, seq, read, rows, period_s, progress, names)
        except KeyboardInterrupt as stop:
            withdrawn = _withdraw(client, capacities, host, port)
            raise CommandError(f"{_signal_name(stop)}: test stopped; {withdrawn}", EXIT_INTERRUPTED) from None
        except (OSError, ModbusException) as exc:
            withdrawn = _withdraw(client, capacities, host, port)
            raise CommandError(f"the unit at {host}:{port} during the test: {exc}; {withdrawn}", EXIT_START) from None
        problem = _withdraw(client, capacities, host, port, fresh=False)
        if not problem.startswith("test mode off"):
            raise CommandError(problem, EXIT_START)
    recording = Recording(run.product, run.test, run.capacity_w, period_s, f"live {host}:{port}")
    rows.into(recording)
    recording.meta.update(unit_meta(io_map))
    recording.meta.update(io_map=run.io_map, program=grid_program(io_map), t_fme_s=run.t_fme_s)
    if held is not None:  # the steps' start times as played (the evaluation reads them: `played_sequence`)
        recording.meta.update(played_starts=list(held.starts),
                              played_end_s=float(recording.t[-1]) + period_s if len(recording.t) else 0.0)
    return recording


def played_sequence(seq: Sequence, rec: Recording) -> Sequence:
    """`seq` as a live run played it: a held sequence's steps at the times they started."""
    starts = rec.meta.get("played_starts")
    if not starts:
        return seq
    held = HeldPlay(seq)
    held.starts = [float(x) for x in starts]
    return held.played(float(rec.meta["played_end_s"]))


class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a live test: stop as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)


def _signal_name(stop: KeyboardInterrupt) -> str:
    return str(stop) if isinstance(stop, _Stop) else "interrupted"


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise _Stop for the time of the test (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _withdraw(client: TagClient, capacities: list[Any], host: str, port: int, fresh: bool = True) -> str:
    """End test mode and put back the capacities found before the test (the test's own is sold no
    longer), with Ctrl-C and the stop signals held off until it is done; what was done, one line."""
    main = threading.current_thread() is threading.main_thread()
    held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)} if main else {}
    restored = []
    try:
        if fresh:
            client.reconnect()
        client.write("test_frequency_active", False)
        for name, value in zip(CAPACITY_PARAMS.values(), capacities):
            client.write(name, float(value))
            restored.append(f"{name} {float(value):g} W")
        return f"test mode off, {', '.join(restored)}"
    except (OSError, ModbusException) as exc:
        left = [n for n in CAPACITY_PARAMS.values() if all(not r.startswith(n + " ") for r in restored)]
        return (f"could not withdraw the test capacity from the unit at {host}:{port} ({exc}): set "
                f"{', '.join(left)} back by hand; test mode ends on its own without writes")
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)
        client.close()


def _play(client: TagClient, seq: Sequence, read: Callable[[], list[Any]], rows: Rows, period_s: float,
          progress: Callable[[float, float], None] | None, names: dict[str, str]) -> HeldPlay | None:
    columns = list(names)
    i_aem, i_nem, i_test = columns.index("aem"), columns.index("nem_allowed"), columns.index("test")
    i_current = columns.index("nem_current")
    held = HeldPlay(seq) if seq.held else None  # steps held until their objectives are met (TR v1.1 Table 12)
    longest = seq.max_s if held else seq.duration_s
    stop_at = longest
    start = time.monotonic()
    n = 0
    testing = False  # as the unit last reported it
    while True:
        t = n * period_s
        if t >= stop_at - 1e-9:
            break
        # a write is answered once a scan applied it: one per period, or the period is two scans
        client.write("applied_test_frequency_hz", held.frequency(t) if held else seq.frequency(t))
        if not testing:  # the first period, or the unit left test mode (its refresh timeout)
            client.write("test_frequency_active", True)
        values = read()
        testing = bool(values[i_test])
        rows.add(round(time.monotonic() - start, 3), tuple(values))
        if held is not None:
            held.observe(t, float(values[i_nem]), float(values[i_current]), bool(values[i_aem]))
            if held.done_at is not None and stop_at == longest:
                stop_at = held.done_at + 60.0
        if (seq.until == "ler_off" and t >= seq.segments[-1].start_s and stop_at == seq.duration_s
                and not values[i_aem] and values[i_nem] == 0):
            stop_at = t + 60.0
        if progress is not None and n % 100 == 0:
            progress(t, stop_at)
        n += 1
        delay = start + n * period_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period_s:  # late: skip ahead, never burst
            n = int(math.ceil((time.monotonic() - start) / period_s))
    return held
