"""An independent client: Debian's mbpoll reads the SOC and writes a setpoint.

mbpoll counts references from 1 (reference 1 = protocol address 0) and with -B reads
32-bit values high word first, the server's default word order.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from modbus_kit import ServedSite

pytestmark = pytest.mark.skipif(shutil.which("mbpoll") is None,
                                reason="mbpoll is not installed (scripts/install-system-deps.sh installs it)")


def mbpoll(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mbpoll", "-m", "tcp", "-a", "1", "-p", str(port), "-1", "-o", "2", *args],
                          capture_output=True, text=True, timeout=20)


def test_mbpoll_reads_the_soc_as_a_float_from_input_reference_1(site: ServedSite):
    done = mbpoll(site.server.port, "-t", "3:float", "-B", "-r", "1", "-c", "1", "127.0.0.1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1]: \t55.5" in done.stdout


def test_mbpoll_writes_the_power_setpoint_applied_at_the_next_scan(site: ServedSite):
    done = mbpoll(site.server.port, "-t", "4:float", "-B", "-r", "3", "127.0.0.1", "--", "-1750.25")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Written 1 references" in done.stdout
    site.scan()
    assert site.image["p_setpoint_w"].value == -1750.25


def test_mbpoll_sees_the_exception_for_a_setpoint_out_of_range(site: ServedSite):
    done = mbpoll(site.server.port, "-t", "4:float", "-B", "-r", "3", "127.0.0.1", "--", "9000")
    assert done.returncode == 1
    assert "Illegal data value" in done.stdout + done.stderr
