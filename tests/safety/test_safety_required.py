"""Safety is enforced, not promised: a site with outputs runs a `safety` program after every
program that writes an output, or it does not load (`ems check-config` and `ems run` refuse it)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from runtime.clock import VirtualClock
from runtime.config.io_map import parse_io_map
from runtime.config.structure import ConfigErrors
from runtime.site import build_site

ROOT = Path(__file__).resolve().parents[2]
HOME = (ROOT / "io_maps" / "sim_home.toml").read_text()
SAFETY = HOME[HOME.index("# Safety interlocks run last"):]  # the last program of the default site
DISPATCH = '[[programs]]\nname = "dispatch"\nkind = "dispatch"\n'
SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "io_maps").rglob("*.toml")
                 if "devices" not in p.parts and p.name != "plant.toml")


def build(text: str) -> None:
    build_site(parse_io_map(text, "site.toml"), VirtualClock())


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        build(text)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


@pytest.mark.parametrize("site", SHIPPED)
def test_every_shipped_site_with_outputs_runs_safety_last(site: str) -> None:
    text = (ROOT / site).read_text()
    build(text)
    kinds = re.findall(r'^kind = "(\w+)"', text, re.MULTILINE)
    assert kinds[-1] == "safety"


def test_a_site_with_outputs_and_no_safety_program_is_refused() -> None:
    text = HOME.replace(SAFETY, "")
    [error] = errors_of(text)
    assert error.startswith(f"site.toml:{line_of(text, '[[programs]]')}: programs: the site has outputs "
                            "(bms_balancing_cmd, bms_contactor_cmd, inverter_fault_reset_cmd, inverter_p_setpoint_w, ...)")
    assert "but no enabled safety program" in error


def test_a_disabled_safety_program_counts_as_none() -> None:
    text = HOME.replace('name = "safety"\nkind = "safety"\n', 'name = "safety"\nkind = "safety"\nenabled = false\n')
    assert "but no enabled safety program" in errors_of(text)[0]


def test_a_program_that_writes_outputs_after_safety_is_refused_at_its_entry() -> None:
    text = HOME.replace(DISPATCH, "") + "\n" + DISPATCH
    [error] = errors_of(text)
    assert error == (f"site.toml:{line_of(text, DISPATCH)}: programs[6]: program 'dispatch' writes output "
                     "'bms_contactor_cmd' but runs after the safety program: safety must run after every program "
                     "that writes outputs")


def test_a_program_that_writes_nothing_may_run_after_safety() -> None:
    state = '[[programs]]\nname = "state"\nkind = "site_state"\n'
    build(HOME.replace(state, "") + "\n" + state)  # the state machine writes memory tags only


def test_a_bench_rig_may_run_without_safety_and_is_warned_about_at_every_start(
        caplog: pytest.LogCaptureFixture) -> None:
    text = HOME.replace(SAFETY, "").replace('[site]\n', '[site]\nbench_rig_without_safety = true\n', 1)
    with caplog.at_level(logging.WARNING, logger="runtime.site"):
        build(text)
    assert "RUNS WITHOUT A SAFETY PROGRAM" in caplog.text and "inverter_p_setpoint_w" in caplog.text


def test_a_site_without_outputs_needs_no_safety_program() -> None:
    build("""\
[site]
id = "monitor-only"

[[devices]]
name = "plant"
driver = "sim"

[[tags]]
name = "soc_pct"
dtype = "float32"
area = "input"
io = { device = "plant", var = "bms.soc_pct" }
""")
