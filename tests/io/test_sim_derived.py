"""Registers the simulated SunSpec inverter derives from others of its image (profile `sim_*`
keys, ems/devsim/derived.py): line-to-line voltages, the AC energy counter (WH) and the
storage charge status (ChaSt)."""

from __future__ import annotations

import pytest

from ems.devsim.derived import Derived, charge_status, line_voltage


@pytest.mark.parametrize(("power_w", "soc_pct", "status"), [
    (2000.0, 50.0, "discharging"),
    (-1500.0, 50.0, "charging"),
    (0.0, 50.0, "holding"),
    (5.0, 50.0, "holding"),  # within the 10 W dead band
    (0.0, 99.5, "full"),
    (0.0, 0.5, "empty"),
    (-300.0, 99.5, "charging"),  # still charging near full
])
def test_the_charge_status_follows_power_and_soc(power_w: float, soc_pct: float, status: str) -> None:
    assert charge_status(power_w, soc_pct) == status


def test_equal_phase_voltages_are_sqrt_3_apart_line_to_line() -> None:
    assert line_voltage(230.0, 230.0) == pytest.approx(398.37, abs=0.01)


def test_the_served_line_voltages_and_charge_status_follow_the_phase_registers(serve) -> None:  # type: ignore[no-untyped-def]
    device = serve("sunspec_inverter_storage").device
    for name, volts in (("v_l1_n", 231.0), ("v_l2_n", 229.0), ("v_l3_n", 230.0)):
        device.set(name, volts)
    device.set("w_sf", 0)
    device.set("p_ac", -1200.0)
    device.set("soc", 60.0)
    Derived(device).update()
    assert device.get("v_l1_l2") == pytest.approx(line_voltage(231.0, 229.0), abs=0.05)  # 0.1 V resolution
    assert device.get("v_l3_l1") == pytest.approx(line_voltage(230.0, 231.0), abs=0.05)
    assert device.get("charge_status") == 4  # CHARGING


def test_the_energy_counter_counts_the_delivered_power_on_the_devices_clock(serve) -> None:  # type: ignore[no-untyped-def]
    device = serve("sunspec_inverter_storage").device
    now = [100.0]
    device.clock = lambda: now[0]
    device.set("w_sf", 0)
    derived = Derived(device)
    assert device.get("energy_ac") == 2_500_000  # the profile's starting value (acc32 0 = "not implemented")
    device.set("p_ac", 3600.0)
    derived.update()
    now[0] += 10.0
    derived.update()
    assert device.get("energy_ac") == 2_500_010  # 3600 W for 10 s
    device.set("p_ac", -3600.0)  # charging: nothing delivered
    now[0] += 10.0
    derived.update()
    assert device.get("energy_ac") == 2_500_010
