"""The `ems` command line, run as a user runs it (a separate process)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from testkit.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "io_maps" / "sim_home.toml"


def ems(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ems.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_check_config_accepts_the_default_site():
    result = ems("check-config", str(HOME))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_lists_every_mistake_and_exits_2(tmp_path: Path):
    text = HOME.read_text()
    text = text.replace("scan_period_s = 0.1", "scan_period_s = 0.0", 1)
    text = text.replace('name = "grid_q_var"\ndtype = "float32"', 'name = "grid_q_var"\ndtype = "float64"', 1)
    text = text.replace('port = 5020', 'port = 5020\nbaud = 9600', 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = ems("check-config", str(bad))
    assert result.returncode == 2
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert lines[0] == "3 errors in configuration:"
    numbered = text.splitlines()
    period_line = numbered.index("scan_period_s = 0.0") + 1
    baud_line = numbered.index("baud = 9600") + 1
    assert any(f"{bad}:{period_line}: site.scan_period_s: " in line for line in lines)
    assert any(f"{bad}:{baud_line}: modbus_server.baud: unknown key" in line for line in lines)
    assert any("dtype: must be one of 'bool'" in line and "got 'float64'" in line for line in lines)


def test_check_config_on_a_missing_file_exits_2(tmp_path: Path):
    result = ems("check-config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "cannot read file" in result.stderr


def test_tags_as_csv_has_the_register_map_columns():
    result = ems("tags", "--io-map", str(HOME), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"name", "dtype", "unit", "access", "modbus_table", "address", "scale", "description"} <= set(rows[0])
    soc = next(r for r in rows if r["name"] == "soc_pct")
    assert (soc["dtype"], soc["unit"], soc["access"], soc["modbus_table"]) == ("float32", "%", "ro", "input")
    assert int(soc["reference"]) == 30001 + int(soc["address"])


def test_tags_as_markdown_is_a_table():
    result = ems("tags", "--io-map", str(HOME), "--format", "markdown")
    assert result.returncode == 0
    assert result.stdout.startswith("| name | dtype |")
    assert "| inverter_p_setpoint_w | float32 | W |" in result.stdout


def test_run_on_virtual_time_for_an_hour_of_site_time(tmp_path: Path):
    result = ems("run", "--io-map", str(HOME), "--virtual-time", "--duration", "3600", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "stopped after 36000 scans" in result.stderr
    assert "output inverter_p_setpoint_w at its safe value 0 W" in result.stderr
    assert (tmp_path / "log" / "ems.log").read_text().count("stopped after 36000 scans") == 1


def test_sigint_stops_a_real_time_run_with_safe_outputs_and_exit_0(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(HOME), "--data-dir",
                             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "log" / "ems.log", "site state init -> run", 20.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGINT received: stopping" in err
    assert "output inverter_p_setpoint_w at its safe value 0 W" in err


def test_sigterm_stops_a_real_time_run_with_exit_0(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(HOME), "--data-dir",
                             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "log" / "ems.log", "site state init -> run", 20.0)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received: stopping" in err


def _wait_for(path: Path, text: str, timeout_s: float) -> None:
    wait_until(lambda: path.exists() and text in path.read_text(), timeout_s, f"{text!r} appears in {path}", 0.05)


def test_a_port_in_use_is_a_clear_error_exit_1_with_outputs_safe(tmp_path: Path):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    site = tmp_path / "site.toml"
    site.write_text(HOME.read_text().replace("port = 5020", f"port = {port}", 1))
    try:
        result = ems("run", "--io-map", str(site), "--duration", "5", "--data-dir", str(tmp_path))
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"cannot start site sim-home: [Errno 98] modbus-server: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "output inverter_p_setpoint_w at its safe value 0 W" in result.stderr


def test_a_restart_command_stops_the_controller_with_exit_3(tmp_path: Path):
    """SCADA writes site_state_cmd = idle, then restart; the service manager restarts on the non-zero exit.
    (In Run a restart is refused: tests/safety/test_restart_gate.py.)"""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = tmp_path / "site.toml"
    site.write_text(HOME.read_text().replace("port = 5020", f"port = {port}", 1))
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "run", "--io-map", str(site), "--data-dir",
                             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "log" / "ems.log", "site state init -> run", 20.0)
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=port)
        assert client.connect()
        assert not client.write_register(1000, 2, device_id=1).isError()  # site_state_cmd = idle
        _wait_for(tmp_path / "log" / "ems.log", "site state run -> idle", 20.0)
        assert not client.write_register(1000, 6, device_id=1).isError()  # site_state_cmd = restart
        client.close()
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    assert "site state idle -> restart" in err
    assert "exit 3: restart requested through the site state" in err
    assert "output inverter_p_setpoint_w at its safe value 0 W" in err


COMMERCIAL_DEVICES = ROOT / "io_maps" / "sim_devices_commercial.toml"
SELLING_FFR = """[[programs]]
name = "grid_services"
kind = "grid_services"
[programs.params]
battery_capacity_wh = 81920.0
ffr_capacity_w = 10000.0

[[programs]]
name = "dispatch"
"""


def selling_ffr(tmp_path: Path, meter_extra: str = "") -> Path:
    """The commercial site on its device simulators, selling 10 kW of FFR at 49.5 Hz."""
    text = COMMERCIAL_DEVICES.read_text().replace('[[programs]]\nname = "dispatch"\n', SELLING_FFR, 1)
    text = text.replace('model = "carlo_gavazzi_em24"\n', f'model = "carlo_gavazzi_em24"\n{meter_extra}', 1)
    path = tmp_path / "ffr.toml"
    path.write_text(text)
    return path


def test_check_config_refuses_ffr_on_a_frequency_read_too_seldom(tmp_path: Path):
    path = selling_ffr(tmp_path, "poll_periods = { normal = 1.0 }\n")  # set by the site: kept, and checked
    result = ems("check-config", str(path))
    assert result.returncode == 2
    line = next(x for x in result.stderr.splitlines() if "ffr_capacity_w" in x)
    number = path.read_text().splitlines().index("ffr_capacity_w = 10000.0") + 1
    assert f"{path}:{number}: programs[" in line
    # the EM24's frequency is in its 1 s group: 1 s + a 0.1 s scan against the 0.35 s half of 0.7 s
    assert "FFR at 49.5 Hz must be at full power within 0.7 s" in line
    assert "register 'frequency' in poll group 'normal' every 1 s" in line
    assert "1 s + a scan of 0.1 s = 1.1 s" in line and "above the 0.35 s" in line
    assert "read it at least every 0.25 s" in line


def test_check_config_says_a_site_selling_grid_services_reads_its_frequency_at_every_poll(tmp_path: Path):
    result = ems("check-config", str(selling_ffr(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "device 'meter': poll group 'normal' (register 'frequency', for grid_frequency_hz) read at every poll, " \
        "0.1 s, not 1 s (program 'grid_services' sells grid services)" in result.stdout


def test_check_config_accepts_ffr_once_the_frequency_group_is_polled_fast_enough(tmp_path: Path):
    result = ems("check-config", str(selling_ffr(tmp_path, "poll_periods = { normal = 0.1 }\n")))
    assert result.returncode == 0, result.stderr


def test_a_poll_period_for_a_group_the_profile_lacks_is_refused(tmp_path: Path):
    result = ems("check-config", str(selling_ffr(tmp_path, "poll_periods = { nromal = 0.1 }\n")))
    assert result.returncode == 2
    assert "devices[0].modbus.poll_periods.nromal: profile 'carlo_gavazzi_em24' has no poll group 'nromal'" \
        in result.stderr and "normal" in result.stderr


def test_a_late_reads_diagnostic_of_a_group_the_profile_lacks_is_refused(tmp_path: Path):
    text = COMMERCIAL_DEVICES.read_text() + '''
[[tags]]
name = "meter_late_reads"
dtype = "uint32"
area = "input"
io = { device = "meter", meta = "late_reads.fats" }
'''
    path = tmp_path / "late.toml"
    path.write_text(text)
    result = ems("check-config", str(path))
    assert result.returncode == 2
    assert "meta: profile 'carlo_gavazzi_em24' has no poll group 'fats'" in result.stderr
    assert "fast" in result.stderr  # the suggestion
