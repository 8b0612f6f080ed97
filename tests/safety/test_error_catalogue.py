"""The error catalogue and the interlock table: stable ids, consistent rules, configuration checked
at the edge with file, line and key, and every key documented."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
from site_run import HOME, ROOT

from programs import errors as E
from programs.interlocks import TABLE, Reaction
from programs.monitor import Params as MonitorParams
from programs.safety import InterlockSettings
from programs.safety import Params as SafetyParams
from runtime.config import schema
from runtime.config.io_map import parse_io_map
from runtime.config.structure import ConfigErrors

DOC = (ROOT / "docs" / "io_map.md").read_text()

STABLE_IDS = {  # a register value and a line in the service manual: never renumbered
    "estop": 101, "cell_v_critical_low": 111, "cell_overvoltage": 112, "cell_undervoltage": 113,
    "cell_overtemperature": 121, "cell_undertemperature": 122, "overcurrent": 131, "cell_imbalance": 141,
    "bms_trip": 151, "grid_loss": 201, "underfrequency": 202, "overfrequency": 203, "inverter_fault": 211,
    "bms_comm_timeout": 301, "inverter_comm_timeout": 302, "meter_comm_timeout": 303, "cpu_overtemperature": 401,
    "humidity_high": 402, "sensor_fault": 403, "storage_near_full": 411, "storage_write_failed": 412,
    "soc_critically_low": 501, "bms_inactive": 502, "soc_drift": 503,
    "cluster_unit_not_following": 601,
}


def test_error_ids_are_the_published_ones():
    assert {e.name: e.id for e in E.CATALOGUE} == STABLE_IDS


def test_every_interlock_raises_a_catalogue_error_and_every_error_has_an_interlock():
    assert [d.name for d in TABLE] == [e.name for e in E.CATALOGUE]


def test_critical_errors_are_exactly_the_latched_emergency_stops():
    for d in TABLE:
        error = E.BY_NAME[d.name]
        critical = error.severity is E.Severity.CRITICAL
        assert critical == (d.reaction is Reaction.ESTOP) == error.latched, d.name


def test_the_default_thresholds_are_consistent():
    SafetyParams()  # raises on a trip/clear pair that does not fit its kind


def site_text(params: str) -> str:
    return HOME.read_text().replace('[programs.params.interlocks]\nhumidity_high = { trip = 85.0, clear = 75.0 }',
                                    "[programs.params.interlocks]\n" + params)


def config_errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        parse_io_map(text, "site.toml")
    return [str(e) for e in caught.value.errors]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_an_unknown_interlock_is_named_with_file_line_and_key():
    text = site_text("cell_overvoltag = { trip = 3.7 }")
    errors = config_errors(text)
    assert len(errors) == 1
    assert errors[0].startswith(f"site.toml:{line_of(text, '[programs.params.interlocks]')}: ")
    assert "params.interlocks: unknown interlock 'cell_overvoltag'" in errors[0]


def test_a_clear_threshold_on_the_wrong_side_of_its_trip_is_an_error():
    errors = config_errors(site_text("cell_overvoltage = { trip = 3.6, clear = 3.7 }"))
    assert "clear (3.7) must be below trip (3.6) V" in errors[0]


def test_a_clear_delay_on_a_latched_error_is_an_error():
    errors = config_errors(site_text("estop = { clear_after_s = 5.0 }"))
    assert "latched until acknowledged" in errors[0]


def test_a_negative_debounce_is_an_error_at_its_key():
    text = site_text("grid_loss = { debounce_s = -1.0 }")
    errors = config_errors(text)
    assert "interlocks.grid_loss.debounce_s" in errors[0] and "must be >= 0" in errors[0]


def test_a_site_without_a_humidity_sensor_must_say_so(tmp_path):
    from runtime.clock import VirtualClock
    from runtime.site import build_site

    text = HOME.read_text()
    start = text.index('[[tags]]\nname = "humidity_pct"')
    end = text.index("[[tags]]", start + 1)
    without = text[:start] + text[end:]
    with pytest.raises(ConfigErrors) as caught:
        build_site(parse_io_map(without, "site.toml"), VirtualClock())
    assert "interlock 'humidity_high' needs tag(s) humidity_pct" in str(caught.value)
    fixed = without.replace("humidity_high = { trip = 85.0, clear = 75.0 }", "humidity_high = { enabled = false }")
    build_site(parse_io_map(fixed, "site.toml"), VirtualClock())  # and then it loads


@pytest.mark.parametrize("record", [schema.EventLogConfig, schema.RetainConfig, schema.WatchdogConfig,
                                    SafetyParams, InterlockSettings, MonitorParams], ids=lambda r: r.__name__)
def test_every_key_is_documented(record: type) -> None:
    missing = [f.name for f in attrs.fields(record) if f"`{f.name}`" not in DOC]
    assert missing == [], f"{record.__name__} keys missing from docs/io_map.md: {missing}"


def test_every_interlock_and_error_id_is_documented():
    for error in E.CATALOGUE:
        assert re.search(rf"\| `{error.name}` \| E{error.id} \|", DOC), error.name


def test_the_safety_program_is_last_in_the_shipped_sites():
    for site in ("sim_home.toml", "sim_commercial.toml"):
        kinds = re.findall(r'^kind = "(\w+)"', (ROOT / "io_maps" / site).read_text(), re.MULTILINE)
        assert kinds[-1] == "safety" and "monitor" in kinds, site


def test_readme_has_the_service_install_notes():
    readme = (ROOT / "README.md").read_text()
    assert "## Safety and service" in readme and "deploy/ems.service" in readme
    assert Path(ROOT / "deploy" / "ems.service").exists()
