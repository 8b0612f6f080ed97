"""A small controller to serve over Modbus: real image, real scan engine, real drivers and servers.

Its tags cover every data type and table a site uses (measurements, control setpoints,
status, strings, booleans, scaled integers). The meter and BMS are FunctionDrivers fed by
Python; a status program changes a float32 and a counter every scan. The engine runs on the
virtual clock: tests either step it scan by scan (`site.scan()`), or let it run flat out
in a thread (`site.run_in_thread()`) so that snapshots change as fast as they can.

Until the simulated default site (io_maps/sim_home.toml) exists, this stands in for it.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Sequence
from typing import Any

from pymodbus.client import ModbusTcpClient
from testkit.drivers import FunctionDriver

from plc.program import Program, ScanContext, TagLookup
from plc.tags import Access, Area, DType, ModbusAddress, ModbusTable, TagSpec
from runtime.clock import Clock, VirtualClock
from runtime.config.schema import MeterGatewayConfig, ModbusServerConfig
from runtime.image import ProcessImage
from runtime.io.driver import DriverSettings, Point
from runtime.scan import InputBinding, ScanEngine
from runtime.servers import build_mirrors, runtime_tag_specs

H, IR, C, D = ModbusTable.HOLDING, ModbusTable.INPUT, ModbusTable.COIL, ModbusTable.DISCRETE
PERIOD_S = 0.1
# [modbus_server] of the test site: any free port, writes from this machine only.
SERVER = ModbusServerConfig(enabled=True, host="127.0.0.1", port=0, unit_ids=(1,), writes_enabled=True,
                            write_allow=("127.0.0.1",))


def _at(table: ModbusTable, address: int, scale: float = 1.0) -> ModbusAddress:
    return ModbusAddress(table, address, scale)


def measurement(name: str, dtype: DType, unit: str, address: int, table: ModbusTable = IR, **kw: Any) -> TagSpec:
    return TagSpec(name, dtype, Area.INPUT, unit=unit, max_age_s=1.0, modbus=_at(table, address), **kw)


def status(name: str, dtype: DType, modbus: ModbusAddress, initial: Any, **kw: Any) -> TagSpec:
    return TagSpec(name, dtype, Area.MEMORY, access=Access.RO, initial=initial, modbus=modbus, **kw)


def control(name: str, dtype: DType, modbus: ModbusAddress, initial: Any, **kw: Any) -> TagSpec:
    return TagSpec(name, dtype, Area.MEMORY, access=Access.RW, initial=initial, modbus=modbus, **kw)


METER = [
    measurement("grid_power_w", DType.FLOAT32, "W", 2, description="Grid power, positive imported"),
    measurement("grid_voltage_l1_v", DType.FLOAT32, "V", 4),
    measurement("grid_current_l1_a", DType.FLOAT32, "A", 6),
    measurement("grid_frequency_hz", DType.FLOAT32, "Hz", 8),
    measurement("grid_import_kwh", DType.FLOAT32, "kWh", 10),
    measurement("grid_export_wh", DType.UINT32, "Wh", 12),
    measurement("grid_pf", DType.FLOAT32, "", 14),
    measurement("grid_reactive_kvar", DType.FLOAT32, "kvar", 38),
]
BMS = [
    measurement("soc_pct", DType.FLOAT32, "%", 0, min=0, max=100, description="Battery state of charge"),
    measurement("battery_temp_degc", DType.INT16, "degC", 16),
    measurement("contactor_closed", DType.BOOL, "", 0, table=D),
]
STATUS = [
    status("site_state", DType.ENUM, _at(IR, 20), 1, enum_labels=("init", "run", "idle", "error")),
    status("active_error_count", DType.UINT16, _at(IR, 21), 0),
    status("first_error_code", DType.UINT16, _at(IR, 22), 0),
    status("battery_power_w", DType.FLOAT32, _at(IR, 24), 0.0, unit="W"),
    status("scan_echo", DType.UINT32, _at(IR, 26), 0),
    status("status_text", DType.STRING, _at(IR, 30), "ready", length=10),
    status("energy_today_wh", DType.INT32, _at(IR, 36), -1234),
    status("fault_active", DType.BOOL, _at(D, 1), False),
    status("firmware_build", DType.UINT16, _at(H, 20), 4711),
    status("estop_latched", DType.BOOL, _at(C, 5), False),
]
CONTROL = [
    control("state_cmd", DType.ENUM, _at(H, 0), 0, enum_labels=("none", "run", "idle", "reset")),
    control("mode", DType.ENUM, _at(H, 1), 1, enum_labels=("passive", "self_consumption", "peak_shaving", "scada")),
    control("p_setpoint_w", DType.FLOAT32, _at(H, 2), 0.0, unit="W", min=-5000, max=5000),
    control("q_setpoint_var", DType.INT16, _at(H, 4, 0.1), 0, unit="var", min=-30000, max=30000),
    control("soc_min_pct", DType.UINT16, _at(H, 5), 10, unit="%", min=0, max=100),
    control("soc_max_pct", DType.UINT16, _at(H, 6), 90, unit="%", min=0, max=100),
    control("export_limit_w", DType.INT32, _at(H, 8), 5000, unit="W", min=0, max=1_000_000),
    control("schedule_id", DType.UINT32, _at(H, 10), 0),
    control("site_label", DType.STRING, _at(H, 12), "home", length=8),
    control("schedule_active", DType.BOOL, _at(C, 0), False),
    control("run_enable", DType.BOOL, _at(C, 1), False),
]
TAGS = METER + BMS + STATUS + CONTROL


def wobble(scan: int) -> float:
    """The status program's float32 at a scan: both of its registers change every scan."""
    return (-1.0) ** scan * (1000.0 + 1.25 * scan)


class StatusProgram(Program):
    """Moves battery_power_w and scan_echo every scan, so torn or mixed reads show."""

    def __init__(self) -> None:
        super().__init__("status")

    def bind(self, tags: TagLookup) -> None:
        self.power = tags["battery_power_w"]
        self.echo = tags["scan_echo"]

    def execute(self, ctx: ScanContext) -> None:
        self.power.set(wobble(ctx.scan))
        self.echo.set(ctx.scan)


def meter_reading(now: float) -> list[Any]:
    """The meter at time `now`: a slowly varying import and a 230 V grid."""
    return [1500.0 + 100.0 * math.sin(now), 230.1, 6.5, 50.02, 1234.5 + now / 3600.0, 4_000_000, 0.97, -1.5]


class ServedSite:
    """Image, engine and servers of one small site, on the virtual clock."""

    def __init__(self, modbus: ModbusServerConfig, meter: MeterGatewayConfig = MeterGatewayConfig(),
                 bms_values: Sequence[Any] = (55.5, 25, True), clock: Clock | None = None):
        self.clock: Clock = clock or VirtualClock()  # a RealClock: drivers poll in their threads, see start()
        self.bms_values = list(bms_values)
        self.meter_online = True
        self.meter_source = meter_reading  # replace to feed other readings
        self.image = ProcessImage(runtime_tag_specs(modbus) + TAGS)
        settings = DriverSettings(poll_period_s=PERIOD_S)
        self.meter = FunctionDriver("meter", [Point(t.name, i) for i, t in enumerate(METER)], [], self.clock,
                                    settings, self._meter)
        self.bms = FunctionDriver("bms", [Point(t.name, i, is_bool=t.dtype is DType.BOOL)
                                          for i, t in enumerate(BMS)], [], self.clock, settings,
                                  lambda now: self.bms_values)
        program = StatusProgram()
        program.bind(self.image)
        inputs = [InputBinding(d, tuple(self.image[t.name] for t in tags), tuple(1.0 for _ in tags))
                  for d, tags in ((self.meter, METER), (self.bms, BMS))]
        self.engine = ScanEngine(self.image, [program], self.clock, PERIOD_S, inputs=inputs)
        self.mirrors, self.problems = build_mirrors(modbus, meter, self.image, self.engine)
        self._t = 0.0
        self._thread: threading.Thread | None = None

    def _meter(self, now: float) -> list[Any]:
        if not self.meter_online:
            raise ConnectionError("meter does not answer")
        return self.meter_source(now)

    @property
    def server(self) -> Any:
        return next(m for m in self.mirrors if type(m).__name__ == "ModbusTagServer")

    @property
    def gateway(self) -> Any:
        return next(m for m in self.mirrors if type(m).__name__ == "MeterGateway")

    def start(self) -> None:
        for mirror in self.mirrors:
            mirror.start()
        if not self.clock.virtual:
            for driver in (self.meter, self.bms):
                driver.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.engine.stop()
            self._thread.join(10)
        for mirror in self.mirrors:
            mirror.stop()
        if not self.clock.virtual:
            for driver in (self.meter, self.bms):
                driver.stop()

    def scan(self, n: int = 1) -> None:
        """Run `n` scans now, in this thread."""
        for _ in range(n):
            self._t += PERIOD_S
            self.clock.sleep_until(self._t)
            self.engine.scan_once(self._t, PERIOD_S)

    def run_in_thread(self) -> None:
        """Scan flat out on the virtual clock until `stop()`."""
        self._thread = threading.Thread(target=self.engine.run, name="scan", daemon=True)
        self._thread.start()


# --- a SCADA client's view of a tag ----------------------------------------------------------------
DT = ModbusTcpClient.DATATYPE
NUMBER_TYPES = {DType.INT16: DT.INT16, DType.UINT16: DT.UINT16, DType.ENUM: DT.UINT16, DType.INT32: DT.INT32,
                DType.UINT32: DT.UINT32, DType.FLOAT32: DT.FLOAT32}


def read_tag(client: ModbusTcpClient, spec: TagSpec, word_order: str = "big") -> Any:
    """Read one tag the way a SCADA client would, decoding with pymodbus's own converters."""
    m = spec.modbus
    assert m is not None
    if m.table.is_bits:
        read = client.read_coils if m.table is ModbusTable.COIL else client.read_discrete_inputs
        response = read(m.address, count=1, device_id=1)
        assert not response.isError(), response
        return response.bits[0]
    read = client.read_holding_registers if m.table is ModbusTable.HOLDING else client.read_input_registers
    response = read(m.address, count=spec.words, device_id=1)
    assert not response.isError(), response
    if spec.dtype is DType.STRING:
        return bytes(b for r in response.registers for b in (r >> 8, r & 0xFF)).rstrip(b"\0").decode()
    raw = client.convert_from_registers(response.registers, NUMBER_TYPES[spec.dtype], word_order=word_order)
    return raw / m.scale if m.scale != 1.0 else raw


def write_tag(client: ModbusTcpClient, spec: TagSpec, value: Any) -> Any:
    """Write one tag as a SCADA client would: one request for all of its registers."""
    m = spec.modbus
    assert m is not None
    if spec.dtype is DType.BOOL:
        return client.write_coil(m.address, value, device_id=1)
    if spec.dtype is DType.STRING:
        data = value.encode().ljust(spec.words * 2, b"\0")
        registers = [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]
    else:
        raw = round(value * m.scale) if m.scale != 1.0 else value
        registers = client.convert_to_registers(raw, NUMBER_TYPES[spec.dtype])
    return client.write_registers(m.address, registers, device_id=1)


def exception_code(response: Any) -> int | None:
    """The Modbus exception code of a response, None for a normal one."""
    return response.exception_code if response.isError() else None


# --- raw frames, for requests no client library sends --------------------------------------------
def mbap(pdu: bytes, unit: int = 1, tid: int = 0x1234, protocol: int = 0, length: int | None = None) -> bytes:
    """A Modbus TCP frame: the MBAP header (transaction, protocol id, length, unit id) and the PDU."""
    size = len(pdu) + 1 if length is None else length
    return tid.to_bytes(2, "big") + protocol.to_bytes(2, "big") + size.to_bytes(2, "big") + bytes([unit]) + pdu


def raw_request(port: int, pdu: bytes, unit: int = 1, tid: int = 0x1234) -> bytes:
    """Send one request on a new connection; the response's PDU (its MBAP header checked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(mbap(pdu, unit, tid))
        data = b""
        while len(data) < 7 or len(data) < 6 + int.from_bytes(data[4:6], "big"):
            chunk = s.recv(300)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
    assert (int.from_bytes(data[0:2], "big"), data[2:4], data[6]) == (tid, b"\0\0", unit), data
    return data[7:]
