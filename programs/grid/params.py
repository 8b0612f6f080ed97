"""Parameters of the `grid_services` program (`[programs.params]` in an io_map)."""

from __future__ import annotations

import re

import attrs
from attrs import validators as v

from programs.grid.ffr import FfrParams
from programs.grid.legacy import LegacyDroop

_TOKEN = re.compile(r"^[A-Za-z0-9.\-]+$")


def _token(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not _TOKEN.match(value):
        raise ValueError(f"{attribute.name} goes into file names: letters, digits, '.' and '-' only, got {value!r}")


def _frequency_tags(_instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError(f"{attribute.name} needs at least one tag")


@attrs.frozen
class LogParams:
    """`[programs.params.log]`: the grid operator's log (runtime/grid_log.py)."""

    enabled: bool = True
    resource: str = attrs.field(default="BESS1", validator=_token)  # the TSO's resource id
    area: str = attrs.field(default="SE3", validator=_token)  # bidding area (SE1..SE4, FI, DK1, DK2, NO1..NO5)
    rate_hz: float = attrs.field(default=1.0, validator=[v.gt(0), v.le(100)])  # in operation
    test_rate_hz: float = attrs.field(default=10.0, validator=[v.gt(0), v.le(100)])  # while testing
    keep_days: float = attrs.field(default=14.0, validator=v.ge(14))  # the reference: at least 14 days
    directory: str = "grid_log"  # under the site's data_dir


@attrs.frozen
class Params:
    # Sold capacity C of each product (W); 0 = not provided. Also writable tags (commands).
    fcr_n_capacity_w: float = attrs.field(default=0.0, validator=v.ge(0))
    fcr_d_up_capacity_w: float = attrs.field(default=0.0, validator=v.ge(0))
    fcr_d_down_capacity_w: float = attrs.field(default=0.0, validator=v.ge(0))
    ffr_capacity_w: float = attrs.field(default=0.0, validator=v.ge(0))
    ffr: FfrParams = attrs.field(factory=FfrParams)
    # Energy basis of the LER thresholds and endurance: the battery's energy at 100 % SOC.
    battery_capacity_wh: float = attrs.field(default=10240.0, validator=v.gt(0))
    # Services use SOC from soc_min + margin to soc_max - margin, where full power is still allowed
    # (power_limits tapers the last 5 %).
    soc_margin_pct: float = attrs.field(default=5.0, validator=[v.ge(0), v.le(20)])
    frequency_inputs: tuple[str, ...] = attrs.field(default=("grid_frequency_hz",), validator=_frequency_tags)
    frequency_valid_hz: tuple[float, float] = (45.0, 55.0)  # plausibility, never a clamp
    # a new sample moving faster than this from the last one is held back as a possible glitch
    # until the next sample confirms it (programs/grid/frequency.py)
    frequency_max_rate_hz_per_s: float = attrs.field(default=5.0, validator=v.gt(0))
    # the same value in every new sample this long is a stuck meter (0: not checked; only for a
    # meter with mHz resolution: one showing 0.1 Hz steps holds 50.0 Hz for minutes)
    frequency_stuck_s: float = attrs.field(default=0.0, validator=v.ge(0))
    # first-order filter on the frequency the FCR products act on. Small: the requirements' 1 s
    # (T_FME) is the meter's measurement, which the sine evaluation already adds; every 0.1 s here
    # costs about 3.6 deg of phase at the 10 s sine, where FCR-D's stability margin is decided
    # (docs/grid_services.md, "Stability and the chain's delays")
    filter_tau_s: float = attrs.field(default=0.2, validator=[v.ge(0), v.le(10)])
    ler: bool = True  # limited energy reservoir: NEM and AEM
    test_timeout_s: float = attrs.field(default=5.0, validator=v.gt(0))
    keep_awake: bool = True  # no sleep (Idle) while a product is sold
    legacy: LegacyDroop | None = None
    log: LogParams = attrs.field(factory=LogParams)
    modbus_holding_base: int | None = 1400
    modbus_input_base: int | None = 1400

    def __attrs_post_init__(self) -> None:
        lo, hi = self.frequency_valid_hz
        if not (0.0 <= lo < 49.0 and hi > 51.0):
            raise ValueError(f"frequency_valid_hz must span 49..51 Hz at least, got {self.frequency_valid_hz}")
