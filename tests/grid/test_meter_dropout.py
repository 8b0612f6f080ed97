"""A meter that drops out during a frequency event: the whole commercial site on the simulator.

The services keep delivering on the inverter's own frequency measurement; the site stays in
Run with its baseline held at 0 W (no meter, no self-consumption) instead of going to Init.
"""

from __future__ import annotations

from pathlib import Path

from safety.site_run import SiteRun

from programs.enums import Mode

ROOT = Path(__file__).resolve().parents[2]
COMMERCIAL = ROOT / "io_maps" / "sim_commercial.toml"
C = 20_000.0
AT_49_6 = C * (49.9 - 49.6) / 0.4  # 15 kW of FCR-D up


def event_site(tmp_path: Path) -> SiteRun:
    run = SiteRun(tmp_path, io_map=COMMERCIAL, params={"grid": {"fcr_d_up_capacity_w": C}})
    run.image["mode"].set(Mode.PASSIVE)
    run.set_plant("grid.frequency_override_hz", 49.6)
    run.until(lambda: run.state == "run" and run["service_p_w"] >= 0.99 * AT_49_6, 60.0, "FCR-D at 49.6 Hz")
    return run


def dropout(run: SiteRun, seconds: float) -> list[float]:
    """The setpoints from the meter's dropout to 3 s after it is back."""
    start = len(run.scans)
    run.set_plant("meter.comm_ok", False)
    run.run(seconds)
    run.set_plant("meter.comm_ok", True)
    run.run(3.0)
    return [s.setpoint_w for s in run.scans[start:]]


def test_a_1_5_s_meter_dropout_at_49_6_hz_keeps_the_fcr_d_power(tmp_path):
    run = event_site(tmp_path)
    try:
        setpoints = dropout(run, 1.5)
        assert min(setpoints) >= 0.95 * AT_49_6
        assert run.state == "run"
    finally:
        run.stop()


def test_without_the_meter_the_inverter_frequency_drives_the_services(tmp_path):
    run = event_site(tmp_path)
    try:
        run.set_plant("meter.comm_ok", False)
        run.run(2.0)
        assert run["frequency_source"] == 2  # FrequencySource.INVERTER
        assert run["control_hold_reason"] == 8  # HoldReason.NO_METER: the baseline holds 0 W
        assert run["baseline_p_w"] == 0.0
    finally:
        run.stop()
