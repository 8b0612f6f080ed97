"""A site that sells grid services reads its frequency at every poll (runtime/frequency_polling.py).

The EM24 keeps its frequency in poll group `normal` (1 s, with the voltages and power factor):
read that seldom, a frequency step reached the scan up to a second late, and FFR at 49.5 Hz
must be at full power within 0.7 s.
"""

from __future__ import annotations

from pathlib import Path

from test_cli import COMMERCIAL_DEVICES, selling_ffr

from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.site import build_site


def meter_group_period_s(path: Path, group: str = "normal") -> float:
    site = build_site(load_io_map(path), VirtualClock())
    return site.drivers["meter"].profile.poll_groups[group].period_s  # type: ignore[attr-defined]


def test_the_meter_frequency_group_is_read_at_every_poll_on_a_site_selling_grid_services(tmp_path: Path) -> None:
    assert meter_group_period_s(selling_ffr(tmp_path)) == 0.1  # the meter's poll_period_s


def test_the_other_groups_keep_the_profile_periods(tmp_path: Path) -> None:
    assert meter_group_period_s(selling_ffr(tmp_path), "slow") == 10.0


def test_a_site_without_grid_services_keeps_the_profile_period() -> None:
    assert meter_group_period_s(COMMERCIAL_DEVICES) == 1.0


def test_a_period_the_site_sets_itself_is_kept(tmp_path: Path) -> None:
    assert meter_group_period_s(selling_ffr(tmp_path, "poll_periods = { normal = 0.2 }\n")) == 0.2
