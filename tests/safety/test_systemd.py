"""sd_notify against a real Unix datagram socket, the scan watchdog, and the hardware watchdog."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from site_run import ROOT, SiteRun

from runtime.systemd import HardwareWatchdog, SdNotifier, ServiceWatchdog, watchdog_interval_s


@pytest.fixture
def listener(tmp_path):
    """A Unix datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10.0)
    yield path, sock
    sock.close()


def received(sock: socket.socket, count: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(count)]


def drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.settimeout(0.0)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    sock.settimeout(10.0)
    return messages


def test_a_notification_is_one_datagram_of_key_value_lines(listener):
    path, sock = listener
    notifier = SdNotifier(str(path))
    assert notifier.notify("READY=1", "STATUS=scanning")
    assert received(sock, 1) == ["READY=1\nSTATUS=scanning"]
    notifier.close()


def test_an_abstract_socket_name_starting_with_at_is_reached():
    name = f"ems-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5.0)
    try:
        assert SdNotifier("@" + name).notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = SdNotifier("")
    assert not notifier.enabled and notifier.notify("READY=1") is False


def test_the_ping_interval_is_half_of_what_systemd_asks_for():
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_interval_s({}) is None


def test_ready_after_the_first_scan_then_a_watchdog_ping_after_healthy_scans(tmp_path, listener):
    path, sock = listener
    run = SiteRun(tmp_path)
    watchdog = ServiceWatchdog(run.site.engine, SdNotifier(str(path)), interval_s=0.0)
    run.site.engine.after_scan.append(watchdog)
    assert drain(sock) == []  # nothing before the first scan
    run.scan()
    first = received(sock, 2)
    assert first[0].startswith("READY=1\n") and first[1] == "WATCHDOG=1"
    run.scan(3)
    assert drain(sock) == ["WATCHDOG=1"] * 3
    watchdog.stop()
    assert received(sock, 1)[0].startswith("STOPPING=1")
    run.stop()


def test_no_watchdog_ping_while_a_program_keeps_failing(tmp_path, listener):
    path, sock = listener
    run = SiteRun(tmp_path)
    run.site.engine.after_scan.append(ServiceWatchdog(run.site.engine, SdNotifier(str(path)), interval_s=0.0))
    run.scan(2)
    drain(sock)
    monitor = next(p for p in run.site.programs if p.kind == "monitor")
    healthy = monitor.execute

    def broken(ctx):
        raise RuntimeError("simulated bug")

    monitor.execute = broken
    run.scan(5)
    assert drain(sock) == []  # systemd's WatchdogSec runs out and it restarts the process
    monitor.execute = healthy
    run.scan(2)
    assert drain(sock) == ["WATCHDOG=1"] * 2
    run.stop()


def test_ems_run_under_systemd_says_ready_pings_and_says_stopping(tmp_path, listener):
    path, sock = listener
    io_map = tmp_path / "site.toml"
    io_map.write_text((ROOT / "io_maps" / "sim_home.toml").read_text().replace("enabled = true", "enabled = false", 1))
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    result = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--io-map", str(io_map), "--duration",
                             "1.5", "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    messages = drain(sock)
    assert messages[0].startswith("READY=1\n")
    pings = messages.count("WATCHDOG=1")
    assert 5 <= pings <= 9  # every 0.2 s (half of WATCHDOG_USEC) for 1.5 s of real time
    assert messages[-1].startswith("STOPPING=1")


def test_the_hardware_watchdog_is_fed_and_disarmed_with_the_magic_close(tmp_path):
    device = tmp_path / "watchdog"  # a file stands in for /dev/watchdog (which takes no ioctl here)
    device.write_bytes(b"")
    hw = HardwareWatchdog(str(device), timeout_s=15)
    hw.kick()
    hw.kick()
    hw.disarm()
    assert device.read_bytes() == b"\0\0V"


def test_a_hung_scan_stops_the_pings(tmp_path, listener):
    """The pings come from the scan thread itself: when it hangs, no ping is sent at all."""
    path, sock = listener
    run = SiteRun(tmp_path)
    run.site.engine.after_scan.append(ServiceWatchdog(run.site.engine, SdNotifier(str(path)), interval_s=0.0))
    run.scan(3)
    assert len(drain(sock)) == 4  # READY + 3 pings
    # no scan for a while (a hang): nothing arrives
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    run.stop()


def test_the_unit_file_asks_for_notify_a_watchdog_and_restarts(tmp_path):
    unit = (ROOT / "deploy" / "ems.service").read_text()
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in unit.splitlines() if "=" in line and
             not line.startswith("#")}
    assert lines["Type"] == "notify"
    assert lines["Restart"] == "on-failure"
    assert int(lines["WatchdogSec"].rstrip("s")) >= 2
    assert lines["NotifyAccess"] in ("main", "all")
    assert Path(lines["ExecStart"].split()[0]).name in ("ems", "python3", "python")
