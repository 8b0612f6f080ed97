"""Errors, not tracebacks (issue 15): each mistake an integrator or operator makes is one line on
stderr naming what was wrong and where, and a documented exit code (ems/errors.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.running_site import running_site
from testkit.waiting import wait_until

from ems.devsim.modbus_device import free_port
from ems.errors import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_START
from ems.prequal.runner import CAPACITY_PARAMS
from runtime.events import SCHEMA
from runtime.site import Site

ROOT = Path(__file__).resolve().parents[2]
COMMERCIAL = str(ROOT / "io_maps" / "sim_commercial.toml")


def ems(*args: str, cwd: Path = ROOT, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # `ems` as installed: runs from any directory
    return subprocess.run([sys.executable, "-m", "ems.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_missing_profile_is_one_line_naming_the_file_and_option(tmp_path: Path):
    result = ems("sim", "--io-map", "io_maps/sim_commercial.toml", "--profile", "day.csv", "--hours", "0.01",
                 "--quiet", "--out", str(tmp_path / "run.csv"))
    assert result.returncode == EXIT_CONFIG
    assert one_line(result) == "day.csv: --profile: cannot read file: No such file or directory"
    assert not (tmp_path / "run.csv").exists()


def test_a_missing_frequency_profile_is_one_line(tmp_path: Path):
    result = ems("sim", "--frequency-profile", str(tmp_path / "freq.csv"), "--hours", "0.01", "--quiet",
                 "--out", str(tmp_path / "run.csv"))
    assert result.returncode == EXIT_CONFIG
    assert one_line(result) == f"{tmp_path / 'freq.csv'}: --frequency-profile: cannot read file: No such file or directory"


def test_a_profile_with_a_bad_row_names_its_file_and_line(tmp_path: Path):
    profile = tmp_path / "day.csv"
    profile.write_text("t_s,pv_power_w,load_power_w\n0,0,100\n900,lots,100\n")
    result = ems("sim", "--profile", str(profile), "--hours", "0.01", "--quiet", "--out", str(tmp_path / "run.csv"))
    assert result.returncode == EXIT_CONFIG
    assert one_line(result) == f"ems sim: {profile}:3: pv_power_w is not a number: 'lots'"


def test_negative_zero_and_nan_hours_are_refused(tmp_path: Path):
    for hours in ("-1", "0", "nan"):
        result = ems("sim", "--hours", hours, "--quiet", "--out", str(tmp_path / "run.csv"))
        assert result.returncode == EXIT_CONFIG, hours
        assert one_line(result) == f"ems sim: --hours must be a positive number, got {hours}"
        assert "simulated" not in result.stdout
    assert not (tmp_path / "run.csv").exists()


def test_a_scenario_with_an_unknown_tag_is_one_line_with_file_line_and_key(tmp_path: Path):
    scenario = tmp_path / "bad.toml"
    scenario.write_text('[scenario]\nhours = 0.01\n\n[[events]]\nt_s = 10.0\ntag = "import_limt_w"\nvalue = 1.0\n')
    result = ems("sim", "--scenario", str(scenario), "--quiet", "--out", str(tmp_path / "run.csv"))
    assert result.returncode == EXIT_CONFIG
    assert one_line(result) == (f"{scenario}:6: events[0].tag: no tag named 'import_limt_w' "
                                "(did you mean 'import_limit_w'?)")


def test_every_error_of_a_scenario_is_listed_at_once_with_its_line(tmp_path: Path):
    scenario = tmp_path / "bad.toml"
    source = [  # the file, numbered from 1
        '[scenario]',
        'hours = 0.01',
        'mode = "peak_shave"',
        '[tags]',
        'no_such_tag = 1.0',
        '[[events]]',
        't_s = 20.0',
        'tag = "mode"',
        'value = "nonsense"',
        '[[events]]',
        't_s = 30.0',
        'plant = "grid.outagee"',
        'value = true',
        '[[events]]',
        't_s = 40.0',
        'tag = "soc_pct"',
        'value = 3.0',
        '[[heartbeats]]',
        'tag = "ext_hartbeat"',
    ]
    scenario.write_text("".join(f"{line}\n" for line in source))
    result = ems("sim", "--scenario", str(scenario), "--quiet", "--out", str(tmp_path / "run.csv"))
    assert result.returncode == EXIT_CONFIG
    assert "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert lines[0] == "6 errors in configuration:"
    assert lines[1].startswith(f"{scenario}:3: scenario.mode: tag 'mode': 'peak_shave' is not one of passive, ")
    assert lines[2] == f"{scenario}:5: tags.no_such_tag: no tag named 'no_such_tag'"
    assert lines[3].startswith(f"{scenario}:9: events[0].value: tag 'mode': 'nonsense' is not one of ")
    assert lines[4] == f"{scenario}:12: events[1].plant: no plant variable 'grid.outagee' (did you mean 'grid.outage'?)"
    assert lines[5] == f"{scenario}:16: events[2].tag: tag 'soc_pct' is read-only"
    assert lines[6] == f"{scenario}:19: heartbeats[0].tag: no tag named 'ext_hartbeat' (did you mean 'ext_heartbeat'?)"
    assert not (tmp_path / "run.csv").exists()


def test_a_scenario_runs_from_any_directory_its_paths_relative_to_it(tmp_path: Path):
    result = ems("sim", "--scenario", str(ROOT / "scenarios" / "peak_shaving.toml"), "--hours", "0.01", "--quiet",
                 "--out", "run.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.csv").exists()
    (tmp_path / "scenarios").mkdir()  # a user's scenario beside its own profile
    (tmp_path / "scenarios" / "load.csv").write_text("t_s,pv_power_w,load_power_w\n0,0,1000\n3600,0,1000\n")
    (tmp_path / "scenarios" / "mine.toml").write_text(
        '[scenario]\nhours = 0.01\nio_map = "../site.toml"\n[plant]\nload = { source = "csv", csv_path = "load.csv" }\n')
    (tmp_path / "site.toml").write_text((ROOT / "io_maps" / "sim_home.toml").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = ems("sim", "--scenario", "../scenarios/mine.toml", "--quiet", "--out", "run.csv", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    load_kwh = float(re.search(r"load\s+([\d.]+) kWh", result.stdout).group(1))  # type: ignore[union-attr]
    assert load_kwh == 0.010  # 1000 W of the profile beside the scenario for 36 s


def test_the_readme_profile_example_runs_as_written_from_any_directory(tmp_path: Path):
    result = ems("sim", "--io-map", str(ROOT / "io_maps" / "sim_commercial.toml"), "--profile", "home_day_15min.csv",
                 "--frequency-profile", "frequency_dip.csv", "--hours", "0.02", "--sample-rate-hz", "10",
                 "--out", "run.csv", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "README" not in result.stderr
    readme = (ROOT / "README.md").read_text()
    assert "--profile home_day_15min.csv" in readme and "--frequency-profile frequency_dip.csv" in readme
    assert (ROOT / "sim" / "profiles" / "home_day_15min.csv").exists()
    assert (ROOT / "sim" / "profiles" / "frequency_dip.csv").exists()


def test_an_unknown_event_kind_is_refused(tmp_path: Path):
    result = ems("events", "--kind", "bogus", "--data-dir", str(tmp_path))
    assert result.returncode == EXIT_CONFIG
    assert one_line(result) == ("ems events: --kind 'bogus': one of state, mode, error, monitor, write, service, "
                                "clock, cluster, aem")


def test_an_empty_result_says_no_events(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "events.sqlite")
    db.executescript(SCHEMA)
    db.close()
    result = ems("events", "--kind", "clock", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"no events in {tmp_path / 'events.sqlite'} that match\n"
    assert result.stderr == ""


def test_events_outside_the_repository_finds_the_default_site(tmp_path: Path):
    result = ems("events", cwd=tmp_path)  # io_maps/sim_home.toml is the shipped one, the data dir is here
    assert result.returncode == EXIT_START
    assert one_line(result) == "ems events: no database at var/sim-home/events.sqlite"


def test_exit_codes_are_in_the_help():
    result = ems("--help")
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    for code in ("0 ", "1 ", "2 ", "3, 4", "130"):
        assert f"  {code}" in result.stdout


def test_prequal_live_with_no_unit_running_is_one_line(tmp_path: Path):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = ems("prequal", "--live", "--product", "fcr-n", "--test", "step", "--port", str(port),
                 "--out", str(tmp_path), "--quiet")
    assert result.returncode == EXIT_START
    assert one_line(result) == (f"ems prequal: no unit answers at 127.0.0.1:{port} (is `ems run` running there, "
                                "with its Modbus server on?)")


@pytest.fixture
def running_unit() -> Iterator[Site]:
    with running_site(COMMERCIAL, lambda site: site.image["site_state"].value == 1, "the unit in Run") as site:
        yield site


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stopping_a_live_test_withdraws_its_capacity(running_unit: Site, tmp_path: Path, signum: int):
    site = running_unit
    port = site.mirrors[0].port  # type: ignore[attr-defined]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tool = subprocess.Popen([sys.executable, "-m", "ems.cli", "prequal", "--live", "--io-map", COMMERCIAL,
                             "--product", "fcr-n", "--test", "step", "--capacity-w", "20000", "--port", str(port),
                             "--out", str(tmp_path), "--quiet"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: site.image["test_frequency_active"].value is True
                   and site.image["fcr_n_capacity_w"].value == 20_000.0, 30.0, "the live test under way", 0.05)
        time.sleep(0.5)
        tool.send_signal(signum)
        _out, err = tool.communicate(timeout=30)
    finally:
        if tool.poll() is None:
            tool.kill()
    assert tool.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    name = "interrupted" if signum == signal.SIGINT else "SIGTERM"
    assert err.startswith(f"ems prequal: {name}: test stopped; test mode off, fcr_n_capacity_w 0 W, "), err
    wait_until(lambda: site.image["fcr_n_capacity_w"].value == 0.0
               and site.image["test_frequency_active"].value is False, 5.0, "the client's last writes applied")
    assert all(site.image[n].value == 0.0 for n in CAPACITY_PARAMS.values())  # no test capacity stays sold


def test_a_remote_can_bus_whose_server_went_away_closes_without_an_ignored_exception(tmp_path: Path):
    import gc
    import types

    import can

    from runtime.io.can.bms import CanBmsDriver

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "can_remote", "-i", "virtual", "-c", "0", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(up, 20.0, "the python-can-remote server", 0.05)
        bus = can.Bus(interface="remote", channel=f"ws://127.0.0.1:{port}/")
    finally:
        server.kill()
        server.wait(10)
    ignored: list[object] = []
    previous, sys.unraisablehook = sys.unraisablehook, ignored.append
    try:
        driver = types.SimpleNamespace(bus=bus, name="bms")
        CanBmsDriver.close(driver)  # type: ignore[arg-type]  # the driver's own close, on its bus
        assert driver.bus is None
        del bus, driver
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert ignored == []  # was: "Exception ignored in: BusABC.__del__ ... OSError: [Errno 107]"


def test_a_device_that_cannot_be_reached_is_logged_once_not_twice(tmp_path: Path):
    meter, inverter, bms = (free_port() for _ in range(3))  # nothing listens: every driver fails to connect
    text = (ROOT / "io_maps" / "sim_devices.toml").read_text()
    text = text.replace("port = 15020", f"port = {meter}").replace("port = 15021", f"port = {inverter}")
    text = text.replace("ws://127.0.0.1:15030/", f"ws://127.0.0.1:{bms}/")
    site = tmp_path / "site.toml"
    site.write_text(text)
    result = ems("run", "--io-map", str(site), "--data-dir", str(tmp_path / "data"), "--duration", "3")
    assert "Traceback" not in result.stderr
    for port in (meter, inverter):
        lines = [line for line in result.stderr.splitlines() if f":{port}" in line]
        assert len(lines) == 1, lines  # the driver's line with the device's name; not pymodbus's too
        assert "runtime.io.driver: device " in lines[0] and f"cannot connect to 127.0.0.1:{port}" in lines[0]
    assert "pymodbus" not in result.stderr


def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for option in ("--out", "--plot"):
        args = {"--out": str(tmp_path / "run.csv"), "--plot": None, option: str(blocker / "x")}
        result = ems("sim", "--hours", "1", "--quiet", *[a for k, v in args.items() if v for a in (k, v)])
        assert result.returncode == EXIT_CONFIG
        assert one_line(result) == f"ems sim: {blocker / 'x'}: {option}: cannot write: Not a directory"
        assert "simulated" not in result.stdout
