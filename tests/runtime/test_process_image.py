"""The process image: typed, ranged tags with quality; mirror writes applied whole at scan boundaries."""

from __future__ import annotations

import pytest

from plc.tags import Access, Area, DType, Quality, TagSpec, TagValueError
from runtime.image import ProcessImage

SETPOINT = TagSpec("inverter_p_setpoint_w", DType.FLOAT32, Area.OUTPUT, unit="W", min=-5000, max=5000,
                   access=Access.RW, safe_value=0.0)
MODE = TagSpec("mode", DType.ENUM, Area.MEMORY, access=Access.RW, enum_labels=("passive", "self_consumption"),
               initial=0)
LIMIT = TagSpec("import_limit_w", DType.UINT16, Area.MEMORY, unit="W", min=0, max=20000, access=Access.RW,
                initial=5000)
SOC = TagSpec("soc_pct", DType.FLOAT32, Area.INPUT, unit="%", min=0, max=100)
RUN = TagSpec("run_cmd", DType.BOOL, Area.MEMORY, access=Access.RW, initial=False)
NAME = TagSpec("site_name", DType.STRING, Area.MEMORY, length=8, initial="home")


@pytest.fixture
def image() -> ProcessImage:
    return ProcessImage([SETPOINT, MODE, LIMIT, SOC, RUN, NAME])


def test_an_output_starts_at_its_safe_value(image: ProcessImage):
    assert image["inverter_p_setpoint_w"].value == 0.0


def test_an_input_starts_uninitialised(image: ProcessImage):
    assert image["soc_pct"].quality is Quality.UNINIT
    assert image["soc_pct"].value is None


def test_a_memory_tag_with_an_initial_value_starts_good(image: ProcessImage):
    assert image["import_limit_w"].value == 5000
    assert image["import_limit_w"].quality is Quality.GOOD


def test_set_stamps_the_value_good_at_the_scan_time(image: ProcessImage):
    image.begin_scan(12.5)
    image["inverter_p_setpoint_w"].set(1500)
    tag = image["inverter_p_setpoint_w"]
    assert (tag.value, tag.quality, tag.stamp) == (1500.0, Quality.GOOD, 12.5)
    assert isinstance(tag.value, float)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("inverter_p_setpoint_w", 6000.0, "'inverter_p_setpoint_w': 6000.0 is outside its range [-5000, 5000] W"),
        ("inverter_p_setpoint_w", "100", "'inverter_p_setpoint_w': expected float32, got str"),
        ("inverter_p_setpoint_w", True, "'inverter_p_setpoint_w': expected float32, got bool"),
        ("inverter_p_setpoint_w", float("nan"), "'inverter_p_setpoint_w': NaN is not a valid value"),
        ("import_limit_w", 2.5, "'import_limit_w': expected uint16, got float"),
        ("import_limit_w", -1, "'import_limit_w': -1 is outside its range"),
        ("import_limit_w", 30000, "'import_limit_w': 30000 is outside its range"),
        ("mode", 2, "'mode': 2 is outside its range"),
        ("run_cmd", 1, "'run_cmd': expected bool, got int"),
        ("site_name", "a-very-long-name", "'site_name': string of 16 characters exceeds its length 8"),
    ],
)
def test_a_wrong_value_is_an_error_that_names_the_tag(image: ProcessImage, name, value, message):
    with pytest.raises(TagValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        image[name].set(value)


def test_a_rejected_write_leaves_the_old_value(image: ProcessImage):
    image["inverter_p_setpoint_w"].set(100.0)
    with pytest.raises(TagValueError):
        image["inverter_p_setpoint_w"].set(1e9)
    assert image["inverter_p_setpoint_w"].value == 100.0


def test_an_unknown_tag_is_a_key_error_that_names_it(image: ProcessImage):
    with pytest.raises(KeyError, match="no tag named 'grid_pwr_w'"):
        image["grid_pwr_w"]


def test_a_tag_declared_twice_is_refused(image: ProcessImage):
    with pytest.raises(ValueError, match="'soc_pct' is declared twice"):
        image.add(SOC)


def test_an_output_without_safe_value_is_refused():
    with pytest.raises(ValueError, match="output tag 'x' has no safe_value"):
        ProcessImage([TagSpec("x", DType.FLOAT32, Area.OUTPUT)])


def test_mirror_writes_wait_for_the_next_scan_boundary(image: ProcessImage):
    image.request_writes([("import_limit_w", 8000), ("mode", 1)], source="modbus 127.0.0.1")
    assert image["import_limit_w"].value == 5000
    image.begin_scan(3.0)
    applied = image.apply_pending_writes()
    assert [r.source for r in applied] == ["modbus 127.0.0.1"]
    assert image["import_limit_w"].value == 8000
    assert image["mode"].value == 1
    assert image["mode"].stamp == 3.0


def test_a_mirror_request_with_one_bad_value_changes_nothing(image: ProcessImage):
    with pytest.raises(TagValueError, match="import_limit_w"):
        image.request_writes([("mode", 1), ("import_limit_w", 99999)], source="scada")
    image.apply_pending_writes()
    assert image["mode"].value == 0
    assert image["import_limit_w"].value == 5000


def test_a_mirror_cannot_write_a_read_only_tag(image: ProcessImage):
    with pytest.raises(PermissionError, match="'soc_pct' is read-only"):
        image.request_writes([("soc_pct", 50.0)], source="scada")


def test_a_snapshot_is_a_frozen_copy_of_one_scan(image: ProcessImage):
    image.begin_scan(1.0)
    image["inverter_p_setpoint_w"].set(500.0)
    seen = []
    image.subscribe(seen.append)
    snap = image.publish(scan=7, wall_s=1000.0)
    image["inverter_p_setpoint_w"].set(900.0)
    assert seen == [snap]
    assert snap.value("inverter_p_setpoint_w") == 500.0
    assert snap.quality("soc_pct") is Quality.UNINIT
    assert snap.scan == 7
    assert image.snapshot is snap


def test_labels_render_enums_and_units(image: ProcessImage):
    assert MODE.label(1) == "self_consumption"
    assert SETPOINT.label(1500.0) == "1500 W"
