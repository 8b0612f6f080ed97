"""io_map validation: every mistake reported at once, with file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config.io_map import load_io_map, parse_io_map
from runtime.config.structure import ConfigErrors

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "io_maps" / "sim_home.toml"

MINIMAL = """\
[site]
id = "t"

[[devices]]
name = "plant"
driver = "sim"

[[tags]]
name = "grid_power_w"
dtype = "float32"
area = "input"
io = { device = "plant", var = "meter.p_w" }
modbus = { table = "input", address = 0 }

[[tags]]
name = "soc_pct"
dtype = "float32"
area = "input"
io = { device = "plant", var = "bms.soc_pct" }
modbus = { table = "input", address = 2 }
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse_io_map(text, "site.toml")
    return [str(e) for e in info.value.errors]


def test_the_default_site_is_valid():
    io_map = load_io_map(HOME)
    assert io_map.site.id == "sim-home"
    assert io_map.site.scan_period_s == 0.1
    assert {t.name for t in io_map.tags} >= {"grid_power_w", "soc_pct", "inverter_p_setpoint_w"}


def test_a_minimal_site_is_valid():
    io_map = parse_io_map(MINIMAL, "site.toml")
    assert [d.name for d in io_map.devices] == ["plant"]


def test_three_mistakes_are_all_reported_with_lines_and_key_paths():
    text = MINIMAL.replace('driver = "sim"', 'driver = "sim"\npoll_period_s = "fast"')
    text = text.replace('area = "input"\nio = { device = "plant", var = "bms.soc_pct" }',
                        'area = "input"\nunits = "%"\nio = { device = "plant", var = "bms.soc_pct" }')
    text = text.replace('address = 2', 'address = 0')
    errors = errors_of(text)
    assert errors == [
        "site.toml:7: devices[0].poll_period_s: expected a number, got string 'fast'",
        "site.toml:20: tags[1].units: unknown key (did you mean 'unit'?)",
        "site.toml:22: tags[1].modbus.address: input address 0 is already taken by tag 'grid_power_w'",
    ]


def test_a_toml_syntax_error_names_its_line():
    errors = errors_of(MINIMAL.replace('id = "t"', 'id = "t'))
    assert len(errors) == 1
    assert errors[0].startswith("site.toml:2: (top level): not valid TOML")


def test_a_missing_section_and_a_missing_key():
    errors = errors_of('[[devices]]\nname = "plant"\n')
    assert "site.toml: site: missing required section" in errors
    assert "site.toml:1: devices[0].driver: missing required key" in errors


def test_an_unknown_section_is_reported_with_a_suggestion():
    errors = errors_of(MINIMAL + '\n[modbus_servr]\nport = 502\n')
    assert errors == ["site.toml:22: modbus_servr: unknown section (did you mean 'modbus_server'?)"]


def test_an_unknown_driver_and_an_unknown_device_reference():
    text = MINIMAL.replace('driver = "sim"', 'driver = "simm"').replace('device = "plant", var = "bms.soc_pct"',
                                                                       'device = "meter", var = "bms.soc_pct"')
    errors = errors_of(text)
    assert "site.toml:6: devices[0].driver: unknown driver 'simm' (did you mean 'sim'?)" in errors
    assert any("tags[1].io.device: no device named 'meter'" in e for e in errors)


def test_an_unknown_plant_variable_is_reported_at_the_tag():
    errors = errors_of(MINIMAL.replace('var = "bms.soc_pct"', 'var = "bms.soc"'))
    assert errors == ["site.toml:19: tags[1].io.var: the plant has no variable 'bms.soc'"]


def test_duplicate_tag_names():
    errors = errors_of(MINIMAL.replace('name = "soc_pct"', 'name = "grid_power_w"'))
    assert errors == ["site.toml:16: tags[1].name: tag 'grid_power_w' is declared twice"]


def test_a_float32_overlapping_the_next_register_is_caught():
    text = MINIMAL.replace('dtype = "float32"\narea = "input"\nio = { device = "plant", var = "bms.soc_pct" }',
                           'dtype = "uint16"\narea = "input"\nio = { device = "plant", var = "bms.soc_pct" }')
    errors = errors_of(text.replace("address = 2", "address = 1"))
    assert errors == ["site.toml:20: tags[1].modbus.address: input address 1 is already taken by tag 'grid_power_w'"]


def test_a_32_bit_value_at_an_odd_address_is_refused():
    errors = errors_of(MINIMAL.replace("address = 2", "address = 3"))
    assert errors == ["site.toml:20: tags[1].modbus.address: a 32-bit float32 starts at an even address (a block "
                      "read of 32-bit values from an even one would cut it in half), not 3"]


def test_out_of_range_parameters_are_reported():
    text = MINIMAL.replace('id = "t"', 'id = "t"\nscan_period_s = -0.1')
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith("site.toml:3: site.scan_period_s: ")
    assert "-0.1" in errors[0]


def test_an_output_needs_a_safe_value_within_its_range():
    text = MINIMAL + """
[[tags]]
name = "inverter_p_setpoint_w"
dtype = "float32"
area = "output"
min = -5000.0
max = 5000.0
safe_value = 9000.0
io = { device = "plant", var = "inverter.p_setpoint_w" }
"""
    errors = errors_of(text)
    assert errors == ["site.toml:28: tags[2].safe_value: tag 'inverter_p_setpoint_w': 9000.0 is outside its range "
                      "[-5000.0, 5000.0] W".replace(" W", "")]


def test_an_output_bound_to_a_read_only_plant_variable_is_refused():
    text = MINIMAL + """
[[tags]]
name = "inverter_p_setpoint_w"
dtype = "float32"
area = "output"
safe_value = 0.0
io = { device = "plant", var = "inverter.p_ac_w" }
"""
    errors = errors_of(text)
    assert errors == ["site.toml:27: tags[2].io.var: plant variable 'inverter.p_ac_w' is read-only; "
                      "an output needs a command"]


def test_plant_parameters_override_the_preset_with_their_own_errors():
    text = MINIMAL.replace('driver = "sim"', 'driver = "sim"\n[devices.sim]\npreset = "home"\ninverter = { rated_p_w = -5.0 }')
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith("site.toml:9: devices[0].sim.inverter.rated_p_w:")


def test_program_parameters_are_checked():
    text = MINIMAL + '\n[[programs]]\nname = "control"\nkind = "site_control"\n[programs.params]\nmode = "turbo"\n'
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith("site.toml:26: programs[0].params.mode: unknown mode 'turbo'")


def test_a_program_binding_error_names_its_own_entry_after_a_disabled_one(tmp_path):
    from runtime.clock import VirtualClock
    from runtime.site import build_site

    text = MINIMAL + """
[[programs]]
name = "state"
kind = "site_state"
enabled = false

[[programs]]
name = "limits"
kind = "power_limits"
"""
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        build_site(load_io_map(path), VirtualClock())
    (error,) = info.value.errors
    assert error.path == ("programs", 1)
    assert error.line == text.splitlines().index('name = "limits"')  # the [[programs]] header above it
    assert "program 'limits': no tag named" in error.message
