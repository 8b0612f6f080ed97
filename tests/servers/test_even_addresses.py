"""Every 32-bit value starts at an even address: a SCADA block read of floats never misaligns."""

from __future__ import annotations

from pathlib import Path

import pytest

from plc.tags import Access, Area, DType, ModbusAddress, ModbusTable, TagSpec
from programs.tagdefs import Layout
from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.servers.register_map import check_specs
from runtime.site import build_site

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("io_maps/*.toml"), *ROOT.glob("io_maps/sim_cluster/node*.toml"),
                  ROOT / "deploy" / "site.toml"])
WIDE = (DType.FLOAT32, DType.INT32, DType.UINT32)


def test_the_layout_puts_a_float_after_a_one_word_value_at_the_next_even_address() -> None:
    layout = Layout(1100, None)
    assert layout.address(ModbusTable.HOLDING, 1).address == 1100  # an enum
    assert layout.address(ModbusTable.HOLDING, 2).address == 1102  # a float32: 1101 is left free
    assert layout.address(ModbusTable.HOLDING, 1).address == 1104
    assert layout.address(ModbusTable.HOLDING, 1).address == 1105  # one-word values pack


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_32_bit_tag_of_a_shipped_site_is_at_an_even_address(path: Path) -> None:
    specs = build_site(load_io_map(path), VirtualClock()).image.specs()
    odd = [(s.name, s.modbus.address) for s in specs if s.dtype in WIDE and s.modbus is not None and s.modbus.address % 2]
    assert odd == []


def test_a_register_map_with_a_float_at_an_odd_address_is_refused() -> None:
    bad = TagSpec(name="p_w", dtype=DType.FLOAT32, area=Area.MEMORY, access=Access.RO,
                  modbus=ModbusAddress(ModbusTable.INPUT, 55))
    _, problems = check_specs([bad])
    assert problems == [("p_w", "a 32-bit float32 starts at an even address (a block read of 32-bit values from an "
                                "even one would cut it in half), not 55")]
