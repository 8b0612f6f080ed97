"""Plant configuration: plain frozen attrs classes, one per plant object.

Field names double as TOML keys of the ``[sim]`` table (the io_map loader
builds these generically), so the classes only use simple annotations,
defaults and ``attrs.validators``; cross-field checks live in
``__attrs_post_init__`` and name the fields involved.

Defaults describe the home site; ``PlantConfig.home()`` and
``PlantConfig.commercial()`` build the two default sites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from attrs import field
from attrs.validators import ge, gt, in_, le, lt

from sim.ocv import LFP_CELL_V, LFP_SOC_PCT, check_table

# for tuple[float, ...] fields: attrs types this validator for exactly `tuple | list`, which mypy will not match
_table: Callable[[Any, attrs.Attribute[Any], Any], Any] = attrs.validators.deep_iterable(
    attrs.validators.instance_of((int, float)), attrs.validators.instance_of((tuple, list)))
_pct = [ge(0.0), le(100.0)]
_csv_end = in_(["loop", "hold"])


def _whole_days(_instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value % 86400:
        raise ValueError(f"'{attribute.name}' must be a whole number of days (86400 s), "
                         f"got {value}")


@attrs.frozen
class BatteryConfig:
    """Cells, their spread, the rack layout and the lumped thermal model (per rack).

    Racks are connected in parallel; inside a rack all cells are in series
    (``modules_per_rack * cells_per_module`` cells). Spreads are standard
    deviations of the seeded cell-to-cell variation (normalised so the rack
    mean equals the nominal value).
    """

    n_racks: int = field(default=1, validator=ge(1))
    modules_per_rack: int = field(default=1, validator=ge(1))
    cells_per_module: int = field(default=16, validator=ge(1))
    cell_capacity_ah: float = field(default=200.0, validator=gt(0.0))
    cell_nominal_v: float = field(default=3.2, validator=gt(0.0))
    cell_resistance_ohm: float = field(default=0.0005, validator=gt(0.0))
    rack_resistance_ohm: float = field(default=0.002, validator=ge(0.0))
    resistance_temp_coeff_per_degc: float = field(default=0.025, validator=ge(0.0))
    coulombic_efficiency: float = field(default=0.995, validator=[gt(0.0), le(1.0)])
    initial_soc_pct: float = field(default=50.0, validator=_pct)
    soh_pct: float = field(default=100.0, validator=[gt(0.0), le(100.0)])
    capacity_spread_pct: float = field(default=1.0, validator=[ge(0.0), le(20.0)])
    soc_spread_pct: float = field(default=1.0, validator=[ge(0.0), le(20.0)])
    resistance_spread_pct: float = field(default=5.0, validator=[ge(0.0), le(50.0)])
    temperature_spread_degc: float = field(default=1.0, validator=ge(0.0))
    rack_soc_spread_pct: float = field(default=0.5, validator=[ge(0.0), le(20.0)])
    initial_temperature_degc: float = field(default=25.0, validator=[ge(-40.0), le(80.0)])
    ambient_degc: float = field(default=25.0, validator=[ge(-40.0), le(80.0)])
    heat_capacity_j_per_degc: float = field(default=100_000.0, validator=gt(0.0))
    cooling_w_per_degc: float = field(default=5.0, validator=gt(0.0))
    fan_cooling_w_per_degc: float = field(default=30.0, validator=ge(0.0))
    heater_power_w: float = field(default=300.0, validator=ge(0.0))
    ocv_soc_pct: tuple[float, ...] = field(default=LFP_SOC_PCT, validator=_table)
    ocv_cell_v: tuple[float, ...] = field(default=LFP_CELL_V, validator=_table)

    def __attrs_post_init__(self) -> None:
        check_table(self.ocv_soc_pct, self.ocv_cell_v, "ocv_soc_pct", "ocv_cell_v")

    @property
    def cells_per_rack(self) -> int:
        return self.modules_per_rack * self.cells_per_module

    @property
    def nominal_energy_wh(self) -> float:
        return (self.n_racks * self.cells_per_rack * self.cell_nominal_v
                * self.cell_capacity_ah)


@attrs.frozen
class BmsConfig:
    """BMS: measurement scan, current-limit tables, protection thresholds, contactor.

    Current limits are per rack; the pack limit is ``n_racks * min(rack limit)``.
    CCL tapers with the highest cell SOC, DCL with the lowest; both are
    multiplied by the temperature factor at the coldest and hottest cell.
    """

    cell_scan_period_s: float = field(default=1.0, validator=gt(0.0))
    max_charge_current_a: float = field(default=100.0, validator=ge(0.0))
    max_discharge_current_a: float = field(default=150.0, validator=ge(0.0))
    ccl_soc_pct: tuple[float, ...] = field(default=(0.0, 90.0, 95.0, 98.0, 100.0),
                                           validator=_table)
    ccl_soc_factor: tuple[float, ...] = field(default=(1.0, 1.0, 0.5, 0.2, 0.0),
                                              validator=_table)
    dcl_soc_pct: tuple[float, ...] = field(default=(0.0, 3.0, 6.0, 10.0, 100.0),
                                           validator=_table)
    dcl_soc_factor: tuple[float, ...] = field(default=(0.0, 0.0, 0.4, 1.0, 1.0),
                                              validator=_table)
    ccl_temp_degc: tuple[float, ...] = field(
        default=(-10.0, 0.0, 5.0, 15.0, 40.0, 50.0, 55.0), validator=_table)
    ccl_temp_factor: tuple[float, ...] = field(
        default=(0.0, 0.0, 0.3, 1.0, 1.0, 0.3, 0.0), validator=_table)
    dcl_temp_degc: tuple[float, ...] = field(
        default=(-20.0, -10.0, 0.0, 10.0, 45.0, 55.0, 60.0), validator=_table)
    dcl_temp_factor: tuple[float, ...] = field(
        default=(0.0, 0.3, 0.7, 1.0, 1.0, 0.3, 0.0), validator=_table)
    charge_voltage_limit_cell_v: float = field(default=3.5, validator=gt(0.0))
    discharge_voltage_limit_cell_v: float = field(default=2.9, validator=gt(0.0))
    cell_ov_v: float = field(default=3.65, validator=gt(0.0))
    cell_uv_v: float = field(default=2.8, validator=gt(0.0))
    cell_ot_degc: float = field(default=55.0)
    cell_ut_degc: float = field(default=-10.0)
    imbalance_alarm_pct: float = field(default=10.0, validator=gt(0.0))
    protection_delay_s: float = field(default=2.0, validator=ge(0.0))
    overcurrent_margin_pct: float = field(default=10.0, validator=ge(0.0))
    overcurrent_margin_a: float = field(default=5.0, validator=ge(0.0))
    overcurrent_trip_delay_s: float = field(default=5.0, validator=ge(0.0))
    contactor_close_delay_s: float = field(default=1.0, validator=ge(0.0))
    start_closed: bool = True
    balancing_current_a: float = field(default=0.1, validator=ge(0.0))
    balancing_threshold_pct: float = field(default=1.0, validator=gt(0.0))

    def __attrs_post_init__(self) -> None:
        check_table(self.ccl_soc_pct, self.ccl_soc_factor, "ccl_soc_pct", "ccl_soc_factor")
        check_table(self.dcl_soc_pct, self.dcl_soc_factor, "dcl_soc_pct", "dcl_soc_factor")
        check_table(self.ccl_temp_degc, self.ccl_temp_factor, "ccl_temp_degc", "ccl_temp_factor")
        check_table(self.dcl_temp_degc, self.dcl_temp_factor, "dcl_temp_degc", "dcl_temp_factor")
        if self.cell_uv_v >= self.cell_ov_v:
            raise ValueError(f"cell_uv_v ({self.cell_uv_v}) must be below cell_ov_v "
                             f"({self.cell_ov_v})")
        if self.cell_ut_degc >= self.cell_ot_degc:
            raise ValueError(f"cell_ut_degc ({self.cell_ut_degc}) must be below "
                             f"cell_ot_degc ({self.cell_ot_degc})")


@attrs.frozen
class InverterConfig:
    """Battery inverter (PCS): ratings, dynamics, efficiency curve, states, thermal."""

    rated_p_w: float = field(default=5000.0, validator=gt(0.0))
    rated_s_va: float = field(default=5000.0, validator=gt(0.0))
    ramp_w_per_s: float = field(default=2500.0, validator=gt(0.0))
    response_tau_s: float = field(default=0.2, validator=ge(0.0))
    # dead time between a setpoint's arrival and the first change of power (the inverter's own
    # processing, the gateway, the control loop's sampling): a FIFO of past setpoints
    command_delay_s: float = field(default=0.0, validator=[ge(0.0), le(5.0)])
    efficiency_load_fraction: tuple[float, ...] = field(
        default=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.2), validator=_table)
    efficiency: tuple[float, ...] = field(
        default=(0.80, 0.88, 0.93, 0.955, 0.965, 0.970, 0.968, 0.962, 0.955),
        validator=_table)
    idle_loss_w: float = field(default=15.0, validator=ge(0.0))
    grid_forming: bool = False
    q_priority: bool = False
    ready_delay_s: float = field(default=2.0, validator=ge(0.0))
    start_delay_s: float = field(default=1.0, validator=ge(0.0))
    heat_capacity_j_per_degc: float = field(default=8000.0, validator=gt(0.0))
    cooling_w_per_degc: float = field(default=8.0, validator=gt(0.0))
    derate_start_degc: float = 70.0
    trip_degc: float = 85.0

    def __attrs_post_init__(self) -> None:
        check_table(self.efficiency_load_fraction, self.efficiency,
                    "efficiency_load_fraction", "efficiency")
        if not all(0.0 < e <= 1.0 for e in self.efficiency):
            raise ValueError(f"efficiency values must be in (0, 1]: {self.efficiency}")
        if self.rated_s_va < self.rated_p_w:
            raise ValueError(f"rated_s_va ({self.rated_s_va}) must be >= rated_p_w "
                             f"({self.rated_p_w})")
        if self.derate_start_degc >= self.trip_degc:
            raise ValueError(f"derate_start_degc ({self.derate_start_degc}) must be below "
                             f"trip_degc ({self.trip_degc})")


@attrs.frozen
class GridConfig:
    """Grid at the point of connection: frequency source and phase voltages."""

    nominal_frequency_hz: float = field(default=50.0, validator=gt(0.0))
    frequency_source: str = field(default="noise", validator=in_(["noise", "csv", "nominal"]))
    frequency_sigma_hz: float = field(default=0.02, validator=ge(0.0))
    frequency_tau_s: float = field(default=30.0, validator=gt(0.0))
    frequency_csv_path: str = ""
    frequency_csv_end: str = field(default="loop", validator=_csv_end)
    nominal_voltage_v: float = field(default=230.0, validator=gt(0.0))
    voltage_sigma_pct: float = field(default=0.5, validator=ge(0.0))
    voltage_tau_s: float = field(default=60.0, validator=gt(0.0))
    phase_imbalance_pct: float = field(default=0.3, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.frequency_source == "csv" and not self.frequency_csv_path:
            raise ValueError("frequency_csv_path is required when frequency_source='csv'")


@attrs.frozen
class PvConfig:
    """PV generation: generated clear/cloudy day, CSV column, constant or none."""

    source: str = field(default="clear",
                        validator=in_(["clear", "cloudy", "csv", "constant", "none"]))
    peak_power_w: float = field(default=6000.0, validator=ge(0.0))
    performance_ratio: float = field(default=0.85, validator=[gt(0.0), le(1.0)])
    sunrise_s: float = field(default=5 * 3600.0, validator=[ge(0.0), lt(86400.0)])
    sunset_s: float = field(default=19 * 3600.0, validator=[gt(0.0), le(86400.0)])
    cloud_cover_pct: float = field(default=50.0, validator=_pct)
    cloud_transmittance_pct: float = field(default=30.0, validator=_pct)
    csv_path: str = ""
    csv_end: str = field(default="loop", validator=_csv_end)
    constant_w: float = field(default=0.0, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.sunrise_s >= self.sunset_s:
            raise ValueError(f"sunrise_s ({self.sunrise_s}) must be before "
                             f"sunset_s ({self.sunset_s})")
        if self.source == "csv" and not self.csv_path:
            raise ValueError("csv_path is required when source='csv'")


@attrs.frozen
class LoadConfig:
    """Site load: generated residential/commercial profile, CSV column or constant."""

    source: str = field(default="residential",
                        validator=in_(["residential", "commercial", "csv", "constant"]))
    base_w: float = field(default=300.0, validator=ge(0.0))
    peak_w: float = field(default=2000.0, validator=ge(0.0))
    noise_sigma_w: float = field(default=150.0, validator=ge(0.0))
    noise_tau_s: float = field(default=120.0, validator=gt(0.0))
    spikes_per_day: float = field(default=6.0, validator=ge(0.0))
    spike_power_w: float = field(default=2000.0, validator=ge(0.0))
    spike_duration_s: float = field(default=120.0, validator=gt(0.0))
    work_start_s: float = field(default=8 * 3600.0, validator=[ge(0.0), lt(86400.0)])
    work_end_s: float = field(default=18 * 3600.0, validator=[gt(0.0), le(86400.0)])
    power_factor: float = field(default=0.95, validator=[gt(0.0), le(1.0)])
    csv_path: str = ""
    csv_end: str = field(default="loop", validator=_csv_end)
    constant_w: float = field(default=0.0, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.work_start_s >= self.work_end_s:
            raise ValueError(f"work_start_s ({self.work_start_s}) must be before "
                             f"work_end_s ({self.work_end_s})")
        if self.source == "csv" and not self.csv_path:
            raise ValueError("csv_path is required when source='csv'")


@attrs.frozen
class SiteConfig:
    """Site signals that are not part of the power path."""

    estop_hardwired: bool = False
    cpu_temp_degc: float = 45.0
    humidity_pct: float = field(default=40.0, validator=_pct)


EVENT_KINDS = ["set", "frequency_step", "frequency_ramp", "frequency_release"]


@attrs.frozen
class EventConfig:
    """A scripted event at elapsed time ``t_s``.

    kind="set": set ``variable`` (a writable dotted path) to ``value`` (float,
    bool or str), converted to the variable's type: bool variables accept
    true/false, 0/1 and "on"/"off"; numeric variables accept numbers or
    numeric strings.
    kind="frequency_step": frequency override jumps to ``value`` Hz.
    kind="frequency_ramp": frequency ramps from its present value to ``value`` Hz
    at ``rate_hz_per_s``. kind="frequency_release": override removed (back to
    the configured frequency source).
    """

    t_s: float = field(validator=ge(0.0))
    kind: str = field(default="set", validator=in_(EVENT_KINDS))
    variable: str = ""
    value: float | bool | str = field(
        default=0.0, validator=attrs.validators.instance_of((float, int, bool, str)))
    rate_hz_per_s: float = field(default=0.0, validator=ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.kind == "set" and not self.variable:
            raise ValueError("variable is required for an event of kind='set'")
        if self.kind == "frequency_ramp" and not self.rate_hz_per_s > 0:
            raise ValueError("rate_hz_per_s must be > 0 for kind='frequency_ramp'")


@attrs.frozen
class PlantConfig:
    """Whole plant. Times: ``t_s`` counts from 0 at construction; PV/load
    profiles are indexed by time of day ``start_time_of_day_s + t_s``;
    generated profiles cover ``profile_horizon_s`` (whole days, each day
    different) and then repeat."""

    seed: int = field(default=0, validator=ge(0))
    start_time_of_day_s: float = field(default=0.0, validator=[ge(0.0), lt(86400.0)])
    profile_horizon_s: int = field(default=2 * 86400, validator=[ge(86400), _whole_days])
    battery: BatteryConfig = field(factory=BatteryConfig)
    bms: BmsConfig = field(factory=BmsConfig)
    inverter: InverterConfig = field(factory=InverterConfig)
    grid: GridConfig = field(factory=GridConfig)
    pv: PvConfig = field(factory=PvConfig)
    load: LoadConfig = field(factory=LoadConfig)
    site: SiteConfig = field(factory=SiteConfig)
    events: tuple[EventConfig, ...] = ()

    @classmethod
    def home(cls, **overrides: object) -> PlantConfig:
        """Home: 1 rack of 16 LFP cells 3.2 V 200 Ah (51.2 V, 10.24 kWh), 5 kW
        inverter, 6 kWp PV, residential load."""
        return cls(**overrides)  # type: ignore[arg-type]

    @classmethod
    def commercial(cls, **overrides: object) -> PlantConfig:
        """Commercial: 4 racks x 4 modules x 16 cells 3.2 V 100 Ah (204.8 V,
        20.48 kWh per rack, 81.92 kWh), 30 kW / 33 kVA inverter, 40 kWp PV,
        commercial load."""
        parts: dict[str, object] = dict(  # noqa: C408 - keyword arguments read as the config's keys
            battery=BatteryConfig(
                n_racks=4, modules_per_rack=4, cells_per_module=16, cell_capacity_ah=100.0,
                cell_resistance_ohm=0.001, rack_resistance_ohm=0.005,
                heat_capacity_j_per_degc=150_000.0, cooling_w_per_degc=8.0,
                fan_cooling_w_per_degc=40.0, heater_power_w=500.0),
            bms=BmsConfig(max_charge_current_a=50.0, max_discharge_current_a=100.0),
            inverter=InverterConfig(
                rated_p_w=30_000.0, rated_s_va=33_000.0, ramp_w_per_s=15_000.0,
                idle_loss_w=60.0, heat_capacity_j_per_degc=40_000.0,
                cooling_w_per_degc=40.0),
            pv=PvConfig(peak_power_w=40_000.0),
            load=LoadConfig(
                source="commercial", base_w=5000.0, peak_w=25_000.0, noise_sigma_w=1500.0,
                noise_tau_s=300.0, spikes_per_day=8.0, spike_power_w=5000.0,
                spike_duration_s=600.0),
        )
        parts.update(overrides)
        return cls(**parts)  # type: ignore[arg-type]
