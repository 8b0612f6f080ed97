"""Plant configuration: default sites, validation naming the field, loader-friendly types."""

from __future__ import annotations

import types
import typing

import attrs
import pytest

from sim import PlantConfig
from sim import config as c


def test_home_site_is_one_rack_of_16_cells_10_24_kwh_5_kw_6_kwp() -> None:
    cfg = PlantConfig.home()
    b = cfg.battery
    assert (b.n_racks, b.cells_per_rack) == (1, 16)
    assert b.cells_per_rack * b.cell_nominal_v == pytest.approx(51.2)
    assert b.nominal_energy_wh == pytest.approx(10_240.0)
    assert cfg.inverter.rated_p_w == 5000.0
    assert cfg.pv.peak_power_w == 6000.0
    assert cfg.load.source == "residential"


def test_commercial_site_is_four_racks_of_64_cells_81_92_kwh_30_kw_40_kwp() -> None:
    cfg = PlantConfig.commercial()
    b = cfg.battery
    assert (b.n_racks, b.modules_per_rack, b.cells_per_module) == (4, 4, 16)
    assert b.cells_per_rack * b.cell_nominal_v == pytest.approx(204.8)
    assert b.nominal_energy_wh == pytest.approx(81_920.0)
    assert cfg.inverter.rated_p_w == 30_000.0
    assert cfg.pv.peak_power_w == 40_000.0
    assert cfg.load.source == "commercial"


@pytest.mark.parametrize("cls, kwargs, field_name", [
    (c.BatteryConfig, {"n_racks": 0}, "n_racks"),
    (c.BatteryConfig, {"initial_soc_pct": 120.0}, "initial_soc_pct"),
    (c.BatteryConfig, {"coulombic_efficiency": 1.2}, "coulombic_efficiency"),
    (c.BatteryConfig, {"ocv_cell_v": (3.0, 3.1)}, "ocv_soc_pct"),
    (c.BmsConfig, {"ccl_soc_pct": (0.0, 50.0, 40.0, 98.0, 100.0)}, "ccl_soc_pct"),
    (c.BmsConfig, {"cell_uv_v": 3.7}, "cell_uv_v"),
    (c.InverterConfig, {"rated_s_va": 4000.0}, "rated_s_va"),
    (c.InverterConfig, {"efficiency": (0.9,) * 8 + (1.3,)}, "efficiency"),
    (c.GridConfig, {"frequency_source": "wind"}, "frequency_source"),
    (c.GridConfig, {"frequency_source": "csv"}, "frequency_csv_path"),
    (c.PvConfig, {"sunrise_s": 70000.0}, "sunrise_s"),
    (c.PvConfig, {"source": "csv"}, "csv_path"),
    (c.LoadConfig, {"power_factor": 0.0}, "power_factor"),
    (c.EventConfig, {"t_s": 1.0, "kind": "frequency_ramp", "value": 49.8}, "rate_hz_per_s"),
    (c.EventConfig, {"t_s": 1.0}, "variable"),
    (c.EventConfig, {"t_s": -1.0, "variable": "grid.outage"}, "t_s"),
    (c.PlantConfig, {"seed": -1}, "seed"),
    (c.PlantConfig, {"profile_horizon_s": 90_000}, "profile_horizon_s"),
])
def test_invalid_value_raises_naming_the_field(cls: type, kwargs: dict, field_name: str) -> None:
    with pytest.raises((ValueError, TypeError)) as err:
        cls(**kwargs)
    assert field_name in str(err.value)


def test_configs_are_frozen() -> None:
    cfg = PlantConfig.home()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


_SCALARS = {float, int, str, bool}
_CONFIGS = [c.PlantConfig, c.BatteryConfig, c.BmsConfig, c.InverterConfig, c.GridConfig,
            c.PvConfig, c.LoadConfig, c.SiteConfig, c.EventConfig]


def _loader_friendly(tp: object) -> bool:
    if tp in _SCALARS or attrs.has(tp):  # type: ignore[arg-type]
        return True
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType):  # EventConfig.value: float | bool | str
        return set(args) <= _SCALARS
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0] is float or attrs.has(args[0])
    return False


@pytest.mark.parametrize("cls", _CONFIGS, ids=lambda cls: cls.__name__)
def test_config_fields_use_only_loader_friendly_types(cls: type) -> None:
    hints = typing.get_type_hints(cls, vars(c))
    for f in attrs.fields(cls):
        assert _loader_friendly(hints[f.name]), f"{cls.__name__}.{f.name}: {hints[f.name]}"
