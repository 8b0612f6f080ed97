"""The records an io_map file is made of. Field names are the TOML keys (see docs/io_map.md)."""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs
from attrs import validators as v

from runtime.tags import Access, Area, DType, ModbusTable

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _matches(pattern: re.Pattern[str], what: str):  # type: ignore[no-untyped-def]
    def check(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what} (pattern {pattern.pattern})")

    return check


@attrs.frozen
class SiteConfig:
    id: str = attrs.field(validator=_matches(_ID, "site id"))
    name: str = ""
    description: str = ""
    scan_period_s: float = attrs.field(default=0.1, validator=[v.gt(0.0), v.le(10.0)])
    data_dir: str = "var"
    timezone: str = "UTC"


@attrs.frozen
class SupervisorConfig:
    enabled: bool = True
    missed_scans: int = attrs.field(default=5, validator=v.ge(1))
    recover_s: float = attrs.field(default=5.0, validator=v.ge(0.0))


@attrs.frozen
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str = "ems.log"
    max_bytes: int = attrs.field(default=5_000_000, validator=v.ge(10_000))
    backups: int = attrs.field(default=5, validator=v.ge(0))


@attrs.frozen
class ModbusServerConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = attrs.field(default=502, validator=[v.ge(1), v.le(65535)])
    unit_ids: tuple[int, ...] = attrs.field(default=(1,), validator=v.deep_iterable(v.and_(v.ge(0), v.le(247))))
    word_order: Literal["high_first", "low_first"] = "high_first"
    writes_enabled: bool = False
    write_allow: tuple[str, ...] = ("127.0.0.1",)


@attrs.frozen
class DeviceConfig:
    """One device and its driver. The driver's own settings sit in a sub-table named after it."""

    name: str = attrs.field(validator=_matches(_NAME, "device name"))
    driver: str
    poll_period_s: float = attrs.field(default=0.1, validator=v.gt(0.0))
    stale_after_s: float = attrs.field(default=1.0, validator=v.gt(0.0))
    hang_timeout_s: float = attrs.field(default=5.0, validator=v.gt(0.0))
    backoff_max_s: float = attrs.field(default=30.0, validator=v.gt(0.0))
    description: str = ""


@attrs.frozen
class ModbusAddressConfig:
    table: ModbusTable
    address: int = attrs.field(validator=[v.ge(0), v.le(65535)])
    scale: float = attrs.field(default=1.0, validator=v.gt(0.0))


@attrs.frozen
class IoConfig:
    """Where a tag's value comes from or goes to; driver-specific keys are checked by the driver."""

    device: str
    scale: float = 1.0
    offset: float = 0.0


@attrs.frozen
class TagConfig:
    name: str = attrs.field(validator=_matches(_NAME, "tag name"))
    dtype: DType
    area: Area
    unit: str = ""
    min: float | None = None
    max: float | None = None
    access: Access = Access.RO
    description: str = ""
    modbus: ModbusAddressConfig | None = None
    retain: bool = False
    safe_value: bool | int | float | str | None = None
    initial: bool | int | float | str | None = None
    max_age_s: float | None = attrs.field(default=None, validator=v.optional(v.gt(0.0)))
    enum_labels: tuple[str, ...] = ()
    length: int = attrs.field(default=0, validator=v.ge(0))


@attrs.frozen
class ProgramConfig:
    name: str = attrs.field(validator=_matches(_NAME, "program name"))
    kind: str
    enabled: bool = True


@attrs.frozen
class IoMap:
    """A whole site, as loaded and checked from its io_map file."""

    path: str
    site: SiteConfig
    supervisor: SupervisorConfig
    logging: LoggingConfig
    modbus_server: ModbusServerConfig
    devices: tuple[DeviceConfig, ...]
    device_options: dict[str, Any]  # device name -> the driver's options record
    tags: tuple[TagConfig, ...]
    tag_io: dict[str, tuple[IoConfig, Any]]  # tag name -> (binding, the driver's point record)
    programs: tuple[ProgramConfig, ...]
    program_params: dict[str, Any]  # program name -> the program's params record
