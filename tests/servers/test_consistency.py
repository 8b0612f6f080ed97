"""Consistency under load: every response comes from one scan, and no float32 is ever torn.

The site scans flat out on the virtual clock (thousands of scans per second), its status
program changing a float32 and a scan counter every scan. One client hammers that float32
with its counter, a second reads a wide block, a third writes a setpoint continuously.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modbus_kit import ServedSite, wobble
from pymodbus.client import ModbusTcpClient

DT = ModbusTcpClient.DATATYPE
SECONDS = 3.0
MAX_REQUESTS = 50_000  # per client: every load loop is bounded in count and in time


def setpoints() -> list[float]:
    """Setpoints between -4000 and 4000 W whose high words are all different, and low words too:
    half of one and half of another is never a setpoint."""
    pairs = [(sign | (0x4500 + k), (331 * k + 7 + (sign >> 4)) & 0xFFFF) for k in range(120) for sign in (0, 0x8000)]
    return [ModbusTcpClient.convert_from_registers(list(p), DT.FLOAT32) for p in pairs]  # type: ignore[misc]


def test_no_read_ever_mixes_two_scans_or_tears_a_float(make_site, make_client):  # type: ignore[no-untyped-def]
    site: ServedSite = make_site()
    port = site.server.port
    written = {tuple(ModbusTcpClient.convert_to_registers(v, DT.FLOAT32)): v for v in setpoints()}
    torn = {(a[0], b[1]) for a in written for b in written if a != b}
    assert not torn & written.keys(), "the setpoints must not be made of each other's halves"

    failures: list[str] = []
    seen_scans: set[int] = set()
    counts = {"hammer": 0, "block": 0, "writer": 0}
    deadline = time.monotonic() + SECONDS

    def loop(name: str, body: Callable[[ModbusTcpClient], None]) -> None:
        client = make_client(port)
        try:
            while counts[name] < MAX_REQUESTS and time.monotonic() < deadline and len(failures) < 10:
                body(client)
                counts[name] += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"{name}: {type(exc).__name__}: {exc}")

    def hammer(client: ModbusTcpClient) -> None:
        registers = client.read_input_registers(24, count=4, device_id=1).registers
        value = client.convert_from_registers(registers[:2], DT.FLOAT32)
        scan = client.convert_from_registers(registers[2:], DT.UINT32)
        seen_scans.add(scan)  # type: ignore[arg-type]
        if value != wobble(scan):  # type: ignore[arg-type]
            failures.append(f"hammer: battery_power_w {value} with scan_echo {scan}")

    def block(client: ModbusTcpClient) -> None:
        inputs = client.read_input_registers(0, count=40, device_id=1).registers
        value = client.convert_from_registers(inputs[24:26], DT.FLOAT32)
        scan = client.convert_from_registers(inputs[26:28], DT.UINT32)
        if value != wobble(scan):  # type: ignore[arg-type]
            failures.append(f"block: battery_power_w {value} with scan_echo {scan}")
        holding = tuple(client.read_holding_registers(2, count=2, device_id=1).registers)
        if holding != (0, 0) and holding not in written:
            failures.append(f"block: p_setpoint_w registers {holding} were never written")

    values = list(written)

    def writer(client: ModbusTcpClient) -> None:
        response = client.write_registers(2, list(values[counts["writer"] % len(values)]), device_id=1)
        if response.isError():
            failures.append(f"writer: {response}")

    site.run_in_thread()
    threads = [threading.Thread(target=loop, args=(n, f)) for n, f in
               (("hammer", hammer), ("block", block), ("writer", writer))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 10)
    site.stop()

    print(f"requests {counts}, distinct scans seen by the hammer {len(seen_scans)}")
    assert failures == []
    assert min(counts.values()) > 100, counts
    assert len(seen_scans) > 100, "the float32 must change under the reader for this test to mean anything"
    assert site.image["p_setpoint_w"].value in setpoints()
