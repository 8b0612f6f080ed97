"""The shipped BMS DBC files and the frame decoder: racks from ids or multiplexers, ranges."""

from __future__ import annotations

import cantools
import pytest

from runtime.io.can.dbc import DBC_DIR, FrameDecoder, FrameProblem, load_dbc, resolve_dbc

PACK_CELLS = {"cbms": ("PackCells", "PackCellNumbers", 0x352, 0x354),
              "nbms": ("NbmsCells", "NbmsCellNumbers", 0x18FF5200, 0x18FF5800)}


def decoder(family: str, version: str = "2.5") -> FrameDecoder:
    return FrameDecoder(load_dbc(str(resolve_dbc(family=family, version=version))))


@pytest.mark.parametrize("family", ["cbms", "nbms"])
@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.6"])
def test_every_family_and_version_is_shipped_and_loads(family: str, version: str) -> None:
    db = load_dbc(str(DBC_DIR / f"{family}_v{version}.dbc"))
    assert db.dbc.attributes["ProtocolVersion"].value == version
    assert {"RackStatus", "RackCells", "RackLimits", "BmsCommand"} <= {m.name for m in db.messages}


def test_versions_add_soh_then_cell_pages_and_balancing() -> None:
    names = {v: {s.name for m in load_dbc(str(resolve_dbc(family="cbms", version=v))).messages for s in m.signals}
             for v in ("2.3", "2.4", "2.5")}
    assert "PackSoh" not in names["2.3"] and "PackSoh" in names["2.4"]
    assert "Cell01_V" not in names["2.4"] and "Cell48_V" in names["2.5"]
    assert "BalancingEnable" in names["2.5"] and "BalancingEnable" not in names["2.4"]


def test_cbms_rack_number_comes_from_the_frame_id() -> None:
    dec = decoder("cbms")
    message = dec.by_name["RackStatus"].message
    data = message.encode({"RackVoltage": 812.3, "RackCurrent": -45.6, "RackSoc": 55.55, "RackSoh": 97})
    spec, rack, values, bad = dec.decode(0x362, data, extended=False)
    assert (spec.message.name, rack, bad) == ("RackStatus", 2, [])
    assert values["RackSoc"] == pytest.approx(55.55)
    assert values["RackCurrent"] == pytest.approx(-45.6)


def test_nbms_rack_number_comes_from_the_multiplexer_byte() -> None:
    dec = decoder("nbms")
    message = dec.by_name["RackStatus"].message
    data = message.encode({"RackId": 3, "RackVoltage": 51.2, "RackCurrent": 10.0, "RackSoc": 80.5, "RackSoh": 99})
    assert data[0] == 3
    _spec, rack, values, _ = dec.decode(message.frame_id, data, extended=True)
    assert rack == 3 and values["RackSoc"] == pytest.approx(80.5)


def test_cell_page_multiplexer_selects_the_cells() -> None:
    dec = decoder("cbms")
    message = dec.by_name["CellVoltages"].message
    data = message.encode({"CellPage": 2, "Cell07_V": 3.301, "Cell08_V": 3.302, "Cell09_V": 3.303})
    _, rack, values, _ = dec.decode(0x401, data, extended=False)
    assert rack == 1
    assert set(values) == {"CellPage", "Cell07_V", "Cell08_V", "Cell09_V"}
    assert dec.by_name["CellVoltages"].pages == 16


def test_value_beyond_the_dbc_range_is_reported_by_signal() -> None:
    dec = decoder("cbms")
    message = dec.by_name["PackCells"].message
    raw = message.encode({"MinCellV": 3.2, "MaxCellV": 3.3, "MinCellT": 20, "MaxCellT": 25, "MinCellVNum": 1,
                          "MaxCellVNum": 2}, scaling=True)
    data = bytearray(raw)
    data[0:2] = (6500).to_bytes(2, "little")  # 6.5 V: the DBC says [0|5]
    _, _, values, bad = dec.decode(0x352, bytes(data), extended=False)
    assert values["MinCellV"] == pytest.approx(6.5)
    assert bad == ["MinCellV"]


def test_unknown_id_and_wrong_length_are_told_apart() -> None:
    dec = decoder("cbms")
    with pytest.raises(FrameProblem) as unknown:
        dec.decode(0x7A5, bytes(8), extended=False)
    assert unknown.value.kind == "unknown id"
    with pytest.raises(FrameProblem) as short:
        dec.decode(0x361, bytes(7), extended=False)
    assert (short.value.kind, short.value.rack) == ("wrong length", 1)


@pytest.mark.parametrize("family", ["cbms", "nbms"])
def test_v2_6_cell_numbers_carry_cell_400_of_a_rack(family: str) -> None:
    dec = decoder(family, "2.6")
    _, name, _, frame_id = PACK_CELLS[family]
    message = dec.by_name[name].message
    data = message.encode({"MinCellVNum": 400, "MaxCellVNum": 241, "MinCellTNum": 399, "MaxCellTNum": 1})
    _, rack, values, bad = dec.decode(frame_id, data, extended=family == "nbms")
    assert values == {"MinCellVNum": 400, "MaxCellVNum": 241, "MinCellTNum": 399, "MaxCellTNum": 1}
    assert (rack, bad) == (None, [])


@pytest.mark.parametrize("family", ["cbms", "nbms"])
def test_v2_6_cell_numbers_end_at_65535(family: str) -> None:
    message = decoder(family, "2.6").by_name[PACK_CELLS[family][1]].message
    top = {"MinCellVNum": 65535, "MaxCellVNum": 65535, "MinCellTNum": 65535, "MaxCellTNum": 65535}
    assert message.encode(top) == b"\xff" * 8
    assert message.decode(b"\xff" * 8) == top
    with pytest.raises(cantools.database.EncodeError):
        message.encode({**top, "MaxCellVNum": 65536})


@pytest.mark.parametrize("family", ["cbms", "nbms"])
def test_v2_6_cell_pages_address_768_cells_3_per_frame(family: str) -> None:
    spec = decoder(family, "2.6").by_name["CellVoltages"]
    assert spec.pages == 256
    assert [n for n, page in spec.page_of.items() if page == 133] == ["Cell400_V", "Cell401_V", "Cell402_V"]
    assert [n for n, page in spec.page_of.items() if page == 255] == ["Cell766_V", "Cell767_V", "Cell768_V"]
    assert spec.cycle_s == pytest.approx(0.020)


def test_v2_6_keeps_every_other_frame_and_signal_of_v2_5() -> None:
    def layout(family: str, version: str) -> dict[str, tuple[object, ...]]:
        db = load_dbc(str(resolve_dbc(family=family, version=version)))
        return {f"{m.name}.{s.name}": (m.frame_id, m.length, m.senders, m.cycle_time if m.name != "CellVoltages"
                                       else None, s.start, s.length, s.byte_order, s.is_signed, s.scale, s.offset,
                                       s.minimum, s.maximum if s.name != "CellPage" else None, s.unit,
                                       s.multiplexer_ids, s.dbc.attributes.get("PlantVar").value
                                       if s.dbc and "PlantVar" in s.dbc.attributes else "")
                for m in db.messages for s in m.signals
                if not s.name.endswith("CellVNum") and not (s.name.endswith("_V") and int(s.name[4:-2]) > 48)}

    for family in ("cbms", "nbms"):
        old, new = layout(family, "2.5"), layout(family, "2.6")
        assert {k: new[k] for k in old} == old  # cells 1..48 on the same pages, CellPage and cycle aside
        assert {k for k in new if k not in old} == {f"{PACK_CELLS[family][1]}.{n}" for n in ("MinCellTNum",
                                                                                           "MaxCellTNum")}


@pytest.mark.parametrize(("family", "data"), [("cbms", "800c160d3c47c811"), ("nbms", "0c800d163c47c811")])
def test_v2_5_cell_extremes_frame_decodes_as_before(family: str, data: str) -> None:
    dec = decoder(family, "2.5")
    name, _, frame_id, _ = PACK_CELLS[family]
    _, _, values, bad = dec.decode(frame_id, bytes.fromhex(data), extended=family == "nbms")
    assert values == pytest.approx({"MinCellV": 3.2, "MaxCellV": 3.35, "MinCellT": 20, "MaxCellT": 31,
                                    "MinCellVNum": 200, "MaxCellVNum": 17})
    assert bad == [] and dec.by_name[name].message.length == 8


@pytest.mark.parametrize("family", ["cbms", "nbms"])
def test_v2_5_cell_pages_are_still_16_of_3_cells(family: str) -> None:
    spec = decoder(family, "2.5").by_name["CellVoltages"]
    assert (spec.pages, spec.cycle_s) == (16, pytest.approx(0.1))
    assert [n for n, page in spec.page_of.items() if page == 15] == ["Cell46_V", "Cell47_V", "Cell48_V"]
