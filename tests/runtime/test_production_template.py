"""The production template (deploy/site.toml) that README's install steps copy to /etc/ems/site.toml.

It must load as shipped, drive the field devices through real drivers, keep SCADA's writes off
until someone turns them on, keep its data where the systemd unit gives it a directory, and
offer SCADA the same register map as the simulated home site it was tested as.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtime.config.io_map import load_io_map
from runtime.servers.register_map import RegisterMap

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "site.toml"
HOME = ROOT / "io_maps" / "sim_home.toml"


def test_the_template_passes_check_config() -> None:
    done = subprocess.run([sys.executable, "-m", "ems.cli", "check-config", str(TEMPLATE)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_modbus_writes_are_off_and_no_client_is_allowed_to_write() -> None:
    server = load_io_map(TEMPLATE).modbus_server
    assert server.enabled and server.writes_enabled is False and server.write_allow == ()


def test_the_server_binds_to_a_configured_address_not_every_interface() -> None:
    assert load_io_map(TEMPLATE).modbus_server.host not in ("0.0.0.0", "::", "")


def test_data_lives_in_the_systemd_state_directory_and_the_scan_asks_for_real_time() -> None:
    site = load_io_map(TEMPLATE).site
    service = (ROOT / "deploy" / "ems.service").read_text()
    assert site.data_dir == "/var/lib/ems" and "StateDirectory=ems" in service
    assert site.realtime_priority == 50 and "LimitRTPRIO=50" in service


def test_every_device_is_a_field_driver_and_every_interlock_is_on_with_its_sensor_wired() -> None:
    cfg = load_io_map(TEMPLATE)
    drivers = {d.name: d.driver for d in cfg.devices}
    assert set(drivers.values()) == {"modbus", "can_bms", "gpio", "sysfs", "i2c"}
    safety = next(p for p in cfg.programs if p.kind == "safety")
    assert cfg.program_params[safety.name].interlocks == {}  # no interlock overridden, none disabled
    wired = {name: drivers[cfg.tag_io[name][0].device] for name in ("estop_pressed", "cpu_temp_degc", "humidity_pct")}
    assert wired == {"estop_pressed": "gpio", "cpu_temp_degc": "sysfs", "humidity_pct": "i2c"}


def test_scada_sees_the_simulated_home_sites_register_map() -> None:
    """Every io_map tag both sites serve has the same table, address and type (a SCADA set up on
    sim_home reads the unit alike), except the inverter's event bits: 32 here, as SunSpec's
    EvtVnd1, 16 in sim_home's plant."""
    ours, home = ({e.name: e for t in m.entries.values() for e in t}
                  for m in (RegisterMap.from_specs(load_io_map(path).tags) for path in (TEMPLATE, HOME)))
    shared = (set(ours) & set(home)) - {"inverter_fault_code"}
    assert len(shared) >= 30
    moved = sorted(n for n in shared if (ours[n].table, ours[n].address, ours[n].spec.dtype)
                   != (home[n].table, home[n].address, home[n].spec.dtype))
    assert moved == []


def test_the_readme_installs_the_template() -> None:
    assert "sudo cp deploy/site.toml /etc/ems/site.toml" in (ROOT / "README.md").read_text()
