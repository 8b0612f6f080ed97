"""Device profiles: every shipped profile loads; mistakes are reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_kit import modbus_driver

from runtime.config.io_map import parse_io_map
from runtime.config.structure import ConfigErrors
from runtime.io.modbus.profile import PROFILE_DIR, load_profile, parse_profile

SHIPPED = sorted(PROFILE_DIR.glob("*.toml"))
TEMPLATES = {"abb_esi", "trumpf_ac3025"}


def messages(exc: pytest.ExceptionInfo[ConfigErrors]) -> list[str]:
    return [str(e) for e in exc.value.errors]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_and_names_its_source(path: Path) -> None:
    profile = load_profile(path)
    assert profile.device.source
    assert profile.registers
    assert profile.device.public_map is (path.stem not in TEMPLATES)
    text = path.read_text()
    assert text.startswith("#")  # the header says where the map comes from
    if path.stem in TEMPLATES:
        assert "not public" in text.lower()


def test_the_required_profiles_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"carlo_gavazzi_em24", "carlo_gavazzi_em340", "sunspec_inverter_storage", "luxpower_lxp", "abb_esi",
            "abb_pqstori", "trumpf_ac3025", "modbus_relay_io"} <= names


BROKEN = """\
[device]
vendor = "x"
model = "y"
kind = "meter"
source = "test"
max_registers_per_read = 200

[poll_groups]
normal = { period_s = 1.0 }

[registers]
a = { table = "holding", address = 0, dtype = "int32" }
b = { table = "holding", address = 1, dtype = "uint16" }
c = { table = "input", address = 5, dtype = "int33" }
d = { table = "input", address = 6, dtype = "int16", access = "rw" }
e = { table = "holding", address = 7, dtype = "int16", scale_register = "nope", group = "fast" }
"""


def test_profile_mistakes_are_reported_with_file_line_and_key() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_profile(BROKEN, "broken.toml")
    found = messages(exc)
    expected = [
        "broken.toml:6: device.max_registers_per_read:",
        "broken.toml:13: registers.b.address: holding address 1 is already taken by 'a'",
        "broken.toml:14: registers.c.dtype: must be one of",
        "broken.toml:15: registers.d.access: a input entry is read-only",
        "broken.toml:16: registers.e.group: poll group 'fast' is not declared",
        "broken.toml:16: registers.e.scale_register: no register named 'nope'",
    ]
    for prefix in expected:
        assert any(m.startswith(prefix) for m in found), (prefix, found)


def test_command_must_name_writable_registers() -> None:
    text = BROKEN.split("[registers]")[0].replace("max_registers_per_read = 200", "") + """
[registers]
state = { table = "holding", address = 0, dtype = "uint16" }

[commands.run]
on_true = { state = 1 }
"""
    with pytest.raises(ConfigErrors) as exc:
        parse_profile(text, "cmd.toml")
    assert any("commands.run.on_true.state: 'state' is not a writable register" in m for m in messages(exc))


SITE = """\
[site]
id = "t"

[[devices]]
name = "meter"
driver = "modbus"
[devices.modbus]
model = "carlo_gavazzi_em24"
port = 1502

[[tags]]
name = "grid_power_w"
dtype = "float32"
area = "input"
io = { device = "meter", register = "p_totl" }

[[tags]]
name = "meter_p_cmd"
dtype = "float32"
area = "output"
safe_value = 0.0
io = { device = "meter", register = "p_total" }

[[tags]]
name = "meter_online"
dtype = "bool"
area = "input"
io = { device = "meter", meta = "online" }
"""


def test_io_map_names_unknown_register_and_read_only_output_with_their_lines() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(SITE, "site.toml")
    found = messages(exc)
    assert any(m.startswith("site.toml:15: tags[0].io.register: profile 'carlo_gavazzi_em24' has no register "
                            "'p_totl' (did you mean 'p_total'?)") for m in found), found
    assert any(m.startswith("site.toml:22: tags[1].io.register: register 'p_total' is read-only") for m in found)
    assert len(found) == 2  # the meta binding is fine


def test_io_map_with_valid_bindings_loads() -> None:
    text = SITE.replace("p_totl", "p_total").split("[[tags]]\nname = \"meter_p_cmd\"")[0]
    io_map = parse_io_map(text, "site.toml")
    config = io_map.device_options["meter"]
    assert config.profile.name == "carlo_gavazzi_em24"
    assert config.unit_id == 1


def test_model_of_the_wrong_kind_is_refused() -> None:
    text = SITE.replace('model = "carlo_gavazzi_em24"', 'model = "carlo_gavazzi_em24"\nkind = "inverter"')
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(text, "site.toml")
    assert any("devices[0].modbus.kind: profile 'carlo_gavazzi_em24' is of kind 'meter', not 'inverter'" in m
               for m in messages(exc))


def test_unknown_model_suggests_a_shipped_one() -> None:
    text = SITE.replace("carlo_gavazzi_em24", "carlo_gavazzi_em34")
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(text, "site.toml")
    assert any("site.toml:8: devices[0].modbus.model: no profile for model 'carlo_gavazzi_em34' (did you mean" in m
               for m in messages(exc))


def test_broken_profile_is_reported_at_the_io_map_key_with_the_profile_line(tmp_path: Path) -> None:
    broken = tmp_path / "my_meter.toml"
    broken.write_text(BROKEN)
    text = SITE.replace('model = "carlo_gavazzi_em24"', f'profile = "{broken}"')
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(text, "site.toml")
    found = messages(exc)
    assert any(m.startswith("site.toml:8: devices[0].modbus.profile: profile " + f"{broken}:14: registers.c.dtype")
               for m in found), found


UNVERIFIED = SITE.split("[[tags]]")[0].replace('model = "carlo_gavazzi_em24"', 'model = "abb_esi"\nkind = "inverter"')


def test_a_profile_from_no_published_map_is_refused_naming_the_way_out() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(UNVERIFIED, "site.toml")
    assert messages(exc) == [
        "site.toml:8: devices[0].modbus.model: profile 'abb_esi' is not from a published register map (public_map = "
        "false): its addresses are unverified and could write the wrong registers of a real device; set "
        "allow_unverified_profile = true here to use it anyway (a bench or a confirmed map)"]


def test_an_unverified_profile_loads_when_the_site_allows_it_and_warns_at_every_start(caplog) -> None:  # type: ignore[no-untyped-def]
    text = UNVERIFIED.replace("port = 1502", "port = 1502\nallow_unverified_profile = true")
    config = parse_io_map(text, "site.toml").device_options["meter"]
    assert config.profile.name == "abb_esi"
    modbus_driver("abb_esi", 1502, [])
    assert any("profile abb_esi is NOT from a published register map" in r.getMessage() for r in caplog.records)


def test_percent_of_must_name_a_numeric_register_and_an_output() -> None:
    text = SITE.replace('io = { device = "meter", register = "p_totl" }',
                        'io = { device = "meter", register = "p_total", percent_of = "p_total" }')
    text = text.replace('io = { device = "meter", register = "p_total" }',
                        'io = { device = "meter", register = "application", percent_of = "serial_number" }')
    with pytest.raises(ConfigErrors) as exc:
        parse_io_map(text, "site.toml")
    found = messages(exc)
    assert "site.toml:15: tags[0].io.percent_of: percent_of converts an output's value; inputs take scale" in found
    assert ("site.toml:22: tags[1].io.percent_of: register 'serial_number' holds string, not a number to take a "
            "percentage of") in found
