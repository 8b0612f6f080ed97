"""A Modbus device simulator built from a device profile: a real pymodbus server on 127.0.0.1.

It serves exactly the profile's register map (any other address earns an "illegal data
address" exception, as a real device would), keeps engineering values in the profile's
byte/word order and scaling, applies client writes, and optionally follows a plant
simulator through each register's `plant_var`. Like the real device it falls back by itself:
`expire()` returns a register to its `revert_value` when no client has written it for the
time in its revert timer (or, for a fixed watchdog, since the heartbeat last changed); the
registers one timer guards (SunSpec InOutWRte_RvrtTms: OutWRte, InWRte, StorCtl_Mod) count one
silence, from the last write of any of them, and revert together.
`Faults` switches on the bad behaviour the driver must survive: exception replies, silence,
short or garbled replies, disconnects.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plc.tags import ModbusTable
from runtime.io.modbus import codec
from runtime.io.modbus.profile import Profile, Register

log = logging.getLogger(__name__)
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_TABLE_ORDER = (ModbusTable.COIL, ModbusTable.DISCRETE, ModbusTable.HOLDING, ModbusTable.INPUT)
_BLOCK_KEY = {ModbusTable.COIL: "c", ModbusTable.DISCRETE: "d", ModbusTable.HOLDING: "h", ModbusTable.INPUT: "i"}
_FC_TABLE = {1: ModbusTable.COIL, 5: ModbusTable.COIL, 15: ModbusTable.COIL, 2: ModbusTable.DISCRETE,
             3: ModbusTable.HOLDING, 6: ModbusTable.HOLDING, 16: ModbusTable.HOLDING, 23: ModbusTable.HOLDING,
             4: ModbusTable.INPUT}


@attrs.define
class Faults:
    """Misbehaviour to inject; change the fields at any time while the server runs."""

    exception_code: int = 0  # answer requests touching `exception_addresses` with this exception
    exception_addresses: frozenset[int] = frozenset()  # empty: every address
    silent: bool = False  # swallow every answer (the client times out)
    short: bool = False  # well-formed answers carrying one register less than asked for
    truncated: bool = False  # answers cut off after a few bytes (the rest never comes)
    garbled: bool = False  # corrupt every answer's header
    disconnect: bool = False  # close the connection on the next request, without answering
    delay_s: float = 0.0  # answer late
    ignore_writes: bool = False  # acknowledge writes but keep the old values


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProfileDevice:
    """The register image of one simulated device, built from its profile."""

    def __init__(self, profile: Profile, unit_id: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.profile = profile
        self.clock = clock
        self.written_at: dict[str, float] = {}  # register -> when a client last wrote it
        self._last_beat: Any = None
        self.unit_id = profile.device.unit_id if unit_id is None else unit_id
        self.faults = Faults()
        self.writes: list[tuple[str, Any]] = []  # (register, engineering value) as clients wrote them
        self.requests = 0
        self.reads: Counter[tuple[int, int]] = Counter()  # (function code, address) -> requests
        self.on_write: Callable[[str, Any], None] | None = None
        # registers answered only to a read of exactly themselves (profile `alone`): their words
        self._alone = {name: [0] * reg.words for name, reg in profile.registers.items() if reg.alone}
        self.shared = profile.device.input_is_holding  # FC 04 reads the holding registers
        simdata = self._simdata_shared() if self.shared else self._simdata()
        self.sim_device = SimDevice(id=self.unit_id, simdata=simdata, action=self._action)
        self._runtime: Any = None  # pymodbus's live register store, known once served
        self._guarded = self._guard_groups(profile)

    # --- building ------------------------------------------------------------------------------
    def _read_only(self) -> dict[ModbusTable, dict[int, bool]]:
        """Every served address per table, and whether clients may not write it (an address is
        writable when any register there is)."""
        tables: dict[ModbusTable, dict[int, bool]] = {t: {} for t in _TABLE_ORDER}
        for reg in self.profile.registers.values():
            read_only = reg.access == "r"
            for address in range(reg.address, reg.address + reg.words):
                tables[reg.table][address] = tables[reg.table].get(address, True) and read_only
        holding = tables[ModbusTable.HOLDING]
        for start, end in self.profile.device.served_blocks:  # the gaps a real device answers with 0
            for address in range(start, end + 1):
                holding.setdefault(address, True)
        return tables

    @staticmethod
    def _registers(entries: dict[int, bool]) -> list[SimData]:
        data = [SimData(a, values=[0], datatype=DataType.REGISTERS, readonly=ro) for a, ro in sorted(entries.items())]
        return data or [SimData(65535, count=1, datatype=DataType.INVALID)]  # pymodbus needs one

    def _simdata(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        tables = self._read_only()
        coils, discrete = ([SimData(a, values=[False], datatype=DataType.BITS) for a in sorted(tables[t])]
                           or [SimData(65535, values=[False], datatype=DataType.BITS)]  # pymodbus needs one
                           for t in (ModbusTable.COIL, ModbusTable.DISCRETE))
        return coils, discrete, self._registers(tables[ModbusTable.HOLDING]), self._registers(tables[ModbusTable.INPUT])

    def _simdata_shared(self) -> list[SimData]:
        """One register block for FC 03 and FC 04 alike (a device whose input registers are
        its holding registers)."""
        tables = self._read_only()
        return self._registers({**tables[ModbusTable.INPUT], **tables[ModbusTable.HOLDING]})

    def attach(self, server: ModbusTcpServer) -> None:
        """Bind to the server's live register store and load the profile's `sim_value`s."""
        context = server.context
        assert not isinstance(context, ModbusServerContext), "served from a SimDevice: pymodbus wraps it in a SimCore"
        self._runtime = context.devices[self.unit_id]
        regs = self.profile.registers
        constants = sorted((n for n, r in regs.items() if r.sim_value is not None),
                           key=lambda n: regs[n].dtype != "sunssf")  # scale factors first
        for name in constants:
            self.set(name, regs[name].sim_value)

    # --- values ---------------------------------------------------------------------------------
    def _store(self, table: ModbusTable) -> tuple[int, list[int]]:
        if self._runtime is None:
            return 0, []
        start, _count, registers, _flags = self._runtime.block["x" if self.shared else _BLOCK_KEY[table]]
        return start, registers

    def poke(self, table: ModbusTable, address: int, words: list[Any]) -> None:
        """Write raw registers (or bits) into the image, bypassing read-only flags."""
        if self._runtime is None:
            raise RuntimeError("the device is not served yet")
        start, registers = self._store(table)
        if table.is_bits:
            for i, bit in enumerate(words):
                index, offset = (address + i) // 16 - start, (address + i) % 16
                registers[index] = (registers[index] & ~(1 << offset)) | (int(bool(bit)) << offset)
            return
        registers[address - start: address - start + len(words)] = [int(w) & 0xFFFF for w in words]

    def peek(self, table: ModbusTable, address: int, count: int) -> list[Any]:
        start, registers = self._store(table)
        if table.is_bits:
            return [bool(registers[(a // 16) - start] >> (a % 16) & 1) for a in range(address, address + count)]
        return list(registers[address - start: address - start + count])

    def words_for(self, reg: Register, value: Any) -> list[Any]:
        """Engineering value -> registers, as the device would hold them."""
        if reg.is_bit:
            return [bool(value)]
        device = self.profile.device
        if reg.dtype in codec.STRING_DTYPES:
            return codec.encode(str(value), reg.dtype, device.byte_order, device.word_order, reg.length)
        number = (float(value) - reg.offset) / reg.scale
        if reg.scale_register:
            number /= 10.0 ** self.get(reg.scale_register)
        return codec.encode(number, reg.dtype, device.byte_order, device.word_order, reg.length)

    def set(self, name: str, value: Any) -> None:
        """Set a register to an engineering value (bit fields merge into their register)."""
        reg = self.profile.registers[name]
        if reg.bits is not None:
            self._set_field(reg, int(value))
            return
        if reg.alone:
            self._alone[name] = self.words_for(reg, value)
            return
        self.poke(reg.table, reg.address, self.words_for(reg, value))

    def _set_field(self, reg: Register, value: int) -> None:
        lsb, width = reg.bits  # type: ignore[misc]
        current = self.peek(reg.table, reg.address, reg.words)
        device = self.profile.device
        whole = codec.raw_unsigned(current, device.byte_order, device.word_order)
        mask = ((1 << width) - 1) << lsb
        whole = (whole & ~mask) | ((value << lsb) & mask)
        self.poke(reg.table, reg.address, codec.encode(whole, reg.dtype, device.byte_order, device.word_order))

    def get(self, name: str) -> Any:
        """The engineering value a register holds now (client writes included)."""
        reg = self.profile.registers[name]
        words = self._alone[name] if reg.alone else self.peek(reg.table, reg.address, reg.words)
        if reg.is_bit:
            return words[0]
        device = self.profile.device
        if reg.bits is not None:
            lsb, width = reg.bits
            return (codec.raw_unsigned(words, device.byte_order, device.word_order) >> lsb) & ((1 << width) - 1)
        raw = codec.decode(words, reg.dtype, device.byte_order, device.word_order)
        if isinstance(raw, str):  # dtype "string"
            return raw
        value = raw * reg.scale
        if reg.scale_register:
            value *= 10.0 ** self.get(reg.scale_register)
        return value + reg.offset

    # --- requests -------------------------------------------------------------------------------
    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                      set_values: Any) -> ExcCodes | None:
        self.requests += 1
        self.reads[(fc, address)] += 1
        faults = self.faults
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        touched = range(address, address + count)
        if faults.exception_code and (not faults.exception_addresses or
                                      any(a in faults.exception_addresses for a in touched)):
            return ExcCodes(faults.exception_code)
        if set_values is None and fc in (3, 4):
            self._answer_alone(fc, start, address, count, registers)
        if set_values is not None and fc in _FC_TABLE:
            if faults.ignore_writes:
                self._keep_old(fc, start, address, registers, set_values)
            asyncio.get_running_loop().call_soon(self._applied_write, _FC_TABLE[fc], address, count)
        return None

    def _answer_alone(self, fc: int, start: int, address: int, count: int, registers: list[int]) -> None:
        """A read of exactly an `alone` register gets its own value: put it in the store for
        this answer (pymodbus slices the store right after this action, with no await in
        between) and put the block register's words back on the next turn of the loop."""
        table = _FC_TABLE[fc]
        for name, words in self._alone.items():
            reg = self.profile.registers[name]
            if (reg.address, reg.words) == (address, count) and (reg.table is table or self.shared):
                span = slice(address - start, address - start + count)
                underneath = registers[span]
                registers[span] = words

                def restore(span: slice = span, underneath: list[int] = underneath, words: list[int] = words) -> None:
                    if registers[span] == words:  # unless the plant wrote it meanwhile
                        registers[span] = underneath
                asyncio.get_running_loop().call_soon(restore)
                return

    def _keep_old(self, fc: int, start: int, address: int, registers: list[int], set_values: list[Any]) -> None:
        """Acknowledge a write but keep the stored values (a device that ignores setpoints)."""
        table = _FC_TABLE[fc]
        if table.is_bits:
            set_values[:] = self.peek(table, address, len(set_values))
        else:
            set_values[:] = registers[address - start: address - start + len(set_values)]

    def _applied_write(self, table: ModbusTable, address: int, count: int) -> None:
        end = address + count
        for name, reg in self.profile.registers.items():
            if reg.table is table and reg.address < end and address < reg.address + reg.words:
                value = self.get(name)
                self._note_written(name, value)
                self.writes.append((name, value))
                if self.on_write is not None:
                    self.on_write(name, value)

    def _note_written(self, name: str, value: Any) -> None:
        if name == self.profile.device.heartbeat_register:
            if value == self._last_beat:
                return  # the watchdog is fed by a change of the heartbeat, not a repeat
            self._last_beat = value
        self.written_at[name] = self.clock()

    @staticmethod
    def _guard_groups(profile: Profile) -> list[tuple[str, ...]]:
        """The registers that fall back together: those one revert timer guards; each register
        under the device's watchdog alone."""
        groups: dict[str, list[str]] = {}
        for name, reg in profile.registers.items():
            if reg.revert_value is not None:
                groups.setdefault(reg.reverts_after or f"watchdog:{name}", []).append(name)
        return [tuple(names) for names in groups.values()]

    def expire(self) -> list[str]:
        """Revert every guarded register whose timer ran out; return their names. The clients
        hear of the new values only once the whole group has reverted."""
        now = self.clock()
        expired: list[str] = []
        for group in self._guarded:
            timeout, since = self._guard(group)
            if timeout > 0 and since is not None and now - since >= timeout:
                expired.extend(group)
        changed = []
        for name in expired:
            self.written_at.pop(name, None)  # disarmed until the next client write
            value = self.profile.registers[name].revert_value
            if self.get(name) != value:
                log.info("simulated %s: %s reverts to %g (no write for its revert time)", self.profile.name, name, value)
                self.set(name, value)
                changed.append(name)
        for name in changed:
            if self.on_write is not None:
                self.on_write(name, self.get(name))
        return expired

    def next_expiry(self) -> float | None:
        """When (on this device's clock) the first armed revert timer runs out, or None: the
        simulation checks then, so a revert comes at its moment rather than at its next step."""
        deadlines = []
        for group in self._guarded:
            timeout, since = self._guard(group)
            if timeout > 0 and since is not None:
                deadlines.append(since + timeout)
        return min(deadlines, default=None)

    def _guard(self, group: tuple[str, ...]) -> tuple[float, float | None]:
        """(timeout, start of the silence) of a group of guarded registers; timeout 0 = not
        guarded. A revert timer counts from the last write of any register it guards."""
        reg = self.profile.registers[group[0]]
        if reg.reverts_after:
            writes = [self.written_at[n] for n in group if n in self.written_at]
            return float(self.get(reg.reverts_after)), max(writes, default=None)
        device = self.profile.device
        beat = self.written_at.get(device.heartbeat_register)
        if not device.watchdog_s or beat is None or group[0] not in self.written_at:
            return 0.0, None
        return device.watchdog_s, beat

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Server-side packet hook: where answers get lost, cut or corrupted."""
        if not sending:
            return data
        faults = self.faults
        if faults.disconnect or faults.silent:
            return b""
        if faults.truncated:
            return data[:5]
        if faults.short and len(data) > 10 and data[7] in (3, 4):
            return _one_register_less(data)
        if faults.garbled and len(data) > 8:
            corrupted = bytearray(data)
            corrupted[7] ^= 0x5A  # the function code (MBAP header is 7 bytes)
            corrupted[8:] = bytes(b ^ 0xA5 for b in corrupted[8:])
            return bytes(corrupted)
        return data


def _one_register_less(frame: bytes) -> bytes:
    """A Modbus TCP read reply with its last register dropped and its lengths made to match."""
    out = bytearray(frame[:-2])
    out[4:6] = (int.from_bytes(frame[4:6], "big") - 2).to_bytes(2, "big")  # MBAP length
    out[8] = frame[8] - 2  # byte count
    return bytes(out)


class DeviceServer:
    """One simulated device listening on 127.0.0.1 (TCP, or RTU framing over TCP)."""

    def __init__(self, profile: Profile, port: int = 0, host: str = "127.0.0.1", unit_id: int | None = None,
                 framer: str = "socket"):
        self.profile = profile
        self.host = host
        self.port = port or free_port()
        self.framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self.device = ProfileDevice(profile, unit_id)
        self.server: ModbusTcpServer | None = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        self.server = ModbusTcpServer(self.device.sim_device, address=(self.host, self.port), framer=self.framer,
                                      trace_packet=self._trace)
        self.device.attach(self.server)
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def _trace(self, sending: bool, data: bytes) -> bytes:
        out = self.device.trace_packet(sending, data)
        if sending and self.device.faults.disconnect:
            self.device.faults.disconnect = False
            asyncio.get_running_loop().call_soon(self.drop_connections)
        return out

    def drop_connections(self) -> None:
        """Close every client connection (as a device rebooting mid-poll would)."""
        if self.server is not None:
            for connection in list(self.server.active_connections.values()):
                connection.close()

    @property
    def connections(self) -> int:
        return len(self.server.active_connections) if self.server is not None else 0
