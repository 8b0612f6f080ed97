"""The tag server of the default site (io_maps/sim_home.toml) running on the plant simulator.

Every tag the site declares, io_map, programs and runtime alike, is read through pymodbus and
compared with the image; every writable tag is written and checked as the scan applies it.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from modbus_kit import exception_code, read_tag, write_tag
from pymodbus.client import ModbusTcpClient
from testkit.write_scanner import scanning_writes

from plc.tags import Access, DType, TagSpec
from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.image import WriteRequest
from runtime.site import Site, build_site

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim_site() -> Iterator[Site]:
    io_map = load_io_map(ROOT / "io_maps" / "sim_home.toml")
    io_map = attrs.evolve(io_map, modbus_server=attrs.evolve(io_map.modbus_server, port=0))
    site = build_site(io_map, VirtualClock())
    site.start()
    site.engine.run(max_scans=30)  # 3 s of site time, in no time
    yield site
    site.stop()


@pytest.fixture
def sim_client(sim_site: Site) -> Iterator[ModbusTcpClient]:
    server = sim_site.mirrors[0]
    client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)  # type: ignore[attr-defined]
    assert client.connect()
    yield client
    client.close()


def addressed(site: Site) -> list[TagSpec]:
    return [t.spec for t in site.image if t.spec.modbus is not None]


def test_every_tag_of_the_default_site_reads_as_the_image_holds_it(sim_site: Site, sim_client: ModbusTcpClient):
    snapshot = sim_site.image.snapshot
    assert snapshot is not None
    specs = addressed(sim_site)
    assert len(specs) > 100
    for spec in specs:
        expected = snapshot.value(spec.name)
        got = read_tag(sim_client, spec)
        if expected is None:
            assert (math.isnan(got) if spec.dtype is DType.FLOAT32 else got in (0, False, "")), spec.name
        elif spec.dtype is DType.FLOAT32:
            assert got == pytest.approx(expected, rel=1e-6, abs=1e-30), spec.name
        else:
            assert got == expected, spec.name


def another_value(spec: TagSpec, current: Any) -> Any:
    """A valid value of the tag that differs from the current one."""
    if spec.dtype is DType.BOOL:
        return not current
    if spec.dtype is DType.STRING:
        return "x" if current != "x" else "y"
    if spec.dtype is DType.ENUM:
        return 1 if current != 1 else 0
    lo = spec.min if spec.min is not None else 0
    hi = spec.max if spec.max is not None else lo + 1000
    value = lo + (hi - lo) / 4 if spec.dtype is DType.FLOAT32 else int(lo + (hi - lo) // 4)
    return value if value != current else (value + 1 if spec.dtype is not DType.FLOAT32 else value + 0.5)


def test_every_writable_tag_of_the_default_site_is_applied_by_a_scan_before_its_answer(
        sim_site: Site, sim_client: ModbusTcpClient):
    applied: list[WriteRequest] = []
    sim_site.image.write_listeners.append(applied.append)
    writable = [s for s in addressed(sim_site) if s.access is Access.RW]
    assert len(writable) > 20
    wanted = {}
    with scanning_writes(sim_site.image, lambda: sim_site.engine.run(max_scans=1)):
        for spec in writable:
            wanted[spec.name] = another_value(spec, sim_site.image[spec.name].value)
            response = write_tag(sim_client, spec, wanted[spec.name])
            assert not response.isError(), (spec.name, wanted[spec.name], response)
    got = {tag.name: value for request in applied for tag, value in request.items}
    assert got == pytest.approx(wanted)


def test_the_default_site_refuses_bad_writes(sim_site: Site, sim_client: ModbusTcpClient):
    soc_min = next(s for s in addressed(sim_site) if s.name == "soc_min_pct")
    assert soc_min.modbus is not None
    address = soc_min.modbus.address
    assert exception_code(write_tag(sim_client, soc_min, 150.0)) == 3  # max 100 %
    assert exception_code(sim_client.write_register(address + 1, 0, device_id=1)) == 2  # half a float32
    assert exception_code(sim_client.write_register(7777, 1, device_id=1)) == 2  # nothing there
    sim_site.engine.run(max_scans=1)
    assert sim_site.image["soc_min_pct"].value != 150.0


@pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed")
def test_mbpoll_reads_the_soc_and_writes_a_setpoint_of_the_default_site(sim_site: Site):
    port = str(sim_site.mirrors[0].port)  # type: ignore[attr-defined]
    soc = sim_site.image["soc_pct"].spec.modbus
    setpoint = sim_site.image["grid_setpoint_w"].spec.modbus
    assert soc is not None and setpoint is not None
    base = ["mbpoll", "-m", "tcp", "-a", "1", "-p", port, "-1", "-o", "2", "-B"]
    read = subprocess.run(base + ["-t", "3:float", "-r", str(soc.address + 1), "127.0.0.1"],
                          capture_output=True, text=True, timeout=20)
    assert read.returncode == 0, read.stdout + read.stderr
    shown = float(re.search(rf"\[{soc.address + 1}\]:\s+(\S+)", read.stdout).group(1))  # type: ignore[union-attr]
    assert shown == pytest.approx(sim_site.image["soc_pct"].value, rel=1e-5)
    with scanning_writes(sim_site.image, lambda: sim_site.engine.run(max_scans=1)):
        write = subprocess.run(base + ["-t", "4:float", "-r", str(setpoint.address + 1), "127.0.0.1", "--", "-350"],
                               capture_output=True, text=True, timeout=20)
    assert write.returncode == 0, write.stdout + write.stderr
    assert sim_site.image["grid_setpoint_w"].value == -350.0
