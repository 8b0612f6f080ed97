"""The line locator finds where each key of a TOML file is written."""

from __future__ import annotations

import tomllib

from runtime.config.lines import format_path, key_lines, line_of

DOC = '''\
# a site
[site]
id = "home"   # comment with = sign
name = "a [bracket] and \\" quote"

[[devices]]
name = "plant"
driver = "sim"
[devices.sim]
preset = "home"
inverter.rated_p_w = 5000.0

[[devices]]
name = "meter"
driver = "modbus"

[[tags]]
name = "grid_power_w"
io = { device = "plant", var = "meter.p_w" }
modbus = { table = "input", address = 0 }

[[tags]]
name = "x"
enum_labels = [
  "a",
  "b",
]
points = [{ at = 1 }, { at = 2 }]
text = """
not = a key
"""

[[programs]]
name = "control"
[programs.params]
gain = 1.5
'''


def test_the_document_is_valid_toml():
    tomllib.loads(DOC)


def test_lines_of_plain_and_table_keys():
    lines = key_lines(DOC)
    assert lines[("site", "id")] == 3
    assert lines[("site", "name")] == 4
    assert lines[("site",)] == 2


def test_arrays_of_tables_are_indexed():
    lines = key_lines(DOC)
    assert lines[("devices", 0, "name")] == 7
    assert lines[("devices", 1, "driver")] == 15
    assert lines[("devices", 0, "sim", "preset")] == 10
    assert lines[("programs", 0, "params", "gain")] == 36


def test_dotted_keys_record_each_level():
    lines = key_lines(DOC)
    assert lines[("devices", 0, "sim", "inverter", "rated_p_w")] == 11
    assert lines[("devices", 0, "sim", "inverter")] == 11


def test_keys_of_inline_tables():
    lines = key_lines(DOC)
    assert lines[("tags", 0, "io", "var")] == 19
    assert lines[("tags", 0, "modbus", "table")] == 20
    assert lines[("tags", 0, "modbus", "address")] == 20


def test_multiline_arrays_and_strings():
    lines = key_lines(DOC)
    assert lines[("tags", 1, "enum_labels", 1)] == 26
    assert lines[("tags", 1, "points", 1, "at")] == 28
    assert ("tags", 1, "not") not in lines  # inside a multi-line string
    assert lines[("tags", 1, "text")] == 29


def test_an_unwritten_key_falls_back_to_its_parent():
    lines = key_lines(DOC)
    assert line_of(lines, ("tags", 0, "max_age_s")) == 17  # the [[tags]] header of that table


def test_paths_read_like_toml():
    assert format_path(("tags", 3, "modbus", "address")) == "tags[3].modbus.address"
    assert format_path(()) == "(top level)"
