"""Restart and Reboot from SCADA: never while the unit runs at power (issue 22).

One register write (site_state_cmd = restart or reboot) must not take a unit down in Run; the
command is refused there, and honoured from Init, Idle, Maintenance and Error, where the
programs carry no power by design. On the simulated home site, with a 3 kW load to carry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from site_run import SiteRun

from programs.enums import StateCommand


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    run = SiteRun(tmp_path)
    run.demand(load_w=3000.0)
    run.until(lambda: run.state == "run" and run["inverter_p_setpoint_w"] > 2000.0, 30.0, "the battery carrying 3 kW")
    yield run
    run.stop()


def command(site: SiteRun, cmd: StateCommand) -> None:
    site.image.request_writes([("site_state_cmd", int(cmd))], "test scada")
    site.scan()


@pytest.mark.parametrize("cmd", [StateCommand.RESTART, StateCommand.REBOOT])
def test_a_restart_or_reboot_in_run_is_refused_and_the_battery_keeps_its_power(
        site: SiteRun, cmd: StateCommand, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="programs.site_state"):
        command(site, cmd)
    site.run(2.0)
    assert site.state == "run"
    assert site["inverter_p_setpoint_w"] > 2000.0
    assert f"site state command {cmd.name.lower()} refused in state run" in caplog.text
    assert site["site_state_cmd"] == 0  # consumed: a later idle does not restart by surprise


def test_a_restart_after_idle_is_honoured(site: SiteRun) -> None:
    command(site, StateCommand.IDLE)
    assert site.state == "idle"
    command(site, StateCommand.RESTART)
    assert site.state == "restart"


def test_a_reboot_from_maintenance_is_honoured(site: SiteRun) -> None:
    command(site, StateCommand.MAINTENANCE)
    assert site.state == "maintenance"
    command(site, StateCommand.REBOOT)
    assert site.state == "reboot"
