"""Scenario files for `ems sim`: the mode, settings, plant changes and timed events of one run.

```toml
[scenario]
name = "Peak shaving on a cloudy day"
hours = 24
mode = "peak_shaving"            # a site_control mode (written to the `mode` tag at t = 0)

[tags]                           # other writable tags set at t = 0
import_limit_w = 2500.0

[plant]                          # plant parameters over the io_map's (same keys as [devices.sim])
pv = { source = "cloudy" }

[[events]]                       # tag writes or plant changes at a given time
t_s = 3600.0
tag = "mode"
value = "self_consumption"       # enum tags take their labels

[[events]]
t_s = 7200.0
plant = "grid.outage"
value = true

[[heartbeats]]                   # a controller that keeps a heartbeat tag changing, then stops
tag = "ext_heartbeat"
period_s = 1.0
stop_s = 1800.0

[[schedule]]                     # external-control schedule, times from the start of the run
start_s = 3600.0
end_s = 7200.0
p_w = -2000.0                    # or soc_target_pct = 80.0: reach that SOC by end_s
```

Paths in a scenario (`io_map`, the plant's `csv_path` and `frequency_csv_path`) are relative to
the scenario file, so that `ems sim --scenario` works from any directory; a profile name that is
not beside it is one of the bundled `sim/profiles/`. The reference is docs/scenario.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from attrs import validators as v

from runtime.config.files import parse_toml, raise_errors, read_text
from runtime.config.lines import Path as KeyPath
from runtime.config.lines import key_lines
from runtime.config.structure import MISSING, Errors, _suggest, structure

SECTIONS = ("scenario", "tags", "plant", "events", "heartbeats", "schedule")


@attrs.frozen
class ScenarioInfo:
    name: str = ""
    description: str = ""
    hours: float | None = attrs.field(default=None, validator=v.optional(v.gt(0)))
    mode: str | None = None
    io_map: str | None = None  # the site to run when the command line names none
    sample_rate_hz: float | None = attrs.field(default=None, validator=v.optional(v.gt(0)))


@attrs.frozen
class Event:
    """At `t_s`, write `value` to a tag, or set a plant variable (fault injection, outages)."""

    t_s: float = attrs.field(validator=v.ge(0))
    value: bool | int | float | str
    tag: str | None = None
    plant: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.tag is None) == (self.plant is None):
            raise ValueError("an event sets either a tag or a plant variable: give one of tag or plant")


@attrs.frozen
class HeartbeatSource:
    """Increments `tag` every `period_s` from `start_s` until `stop_s` (then it falls silent)."""

    tag: str
    period_s: float = attrs.field(default=1.0, validator=v.gt(0))
    start_s: float = attrs.field(default=0.0, validator=v.ge(0))
    stop_s: float | None = attrs.field(default=None, validator=v.optional(v.ge(0)))


@attrs.frozen
class ScheduleItem:
    """An external-control schedule entry with times relative to the start of the run."""

    start_s: float = attrs.field(validator=v.ge(0))
    end_s: float = attrs.field(validator=v.gt(0))
    p_w: float = 0.0
    q_var: float = 0.0
    soc_target_pct: float | None = attrs.field(default=None, validator=v.optional([v.ge(0), v.le(100)]))

    def __attrs_post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")


@attrs.frozen
class Scenario:
    path: str
    info: ScenarioInfo
    tags: dict[str, Any]
    plant: dict[str, Any]  # raw overrides, structured against the site's plant config later
    events: tuple[Event, ...]
    heartbeats: tuple[HeartbeatSource, ...] = ()
    schedule: tuple[ScheduleItem, ...] = ()
    lines: dict[KeyPath, int] = attrs.field(factory=dict, eq=False, repr=False)  # of every key, for errors


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raise ConfigErrors naming file, line and key."""
    path = Path(path)
    text = read_text(path)
    data = parse_toml(text, str(path))
    errors = Errors()
    for key in data:
        if key not in SECTIONS:
            errors.add((key,), f"unknown section{_suggest(key, SECTIONS)}")
    info = structure(ScenarioInfo, data.get("scenario", {}), ("scenario",), errors)
    events = _records(Event, data, "events", errors)
    heartbeats = _records(HeartbeatSource, data, "heartbeats", errors)
    schedule = _records(ScheduleItem, data, "schedule", errors)
    for key in ("tags", "plant"):
        if not isinstance(data.get(key, {}), dict):
            errors.add((key,), "expected a table")
    raise_errors(errors, text, str(path))
    if info.io_map:
        info = attrs.evolve(info, io_map=str(path.parent / info.io_map))
    return Scenario(str(path), info, dict(data.get("tags", {})), _plant_paths(dict(data.get("plant", {})), path.parent),
                    tuple(sorted(events, key=lambda e: e.t_s)), tuple(heartbeats), tuple(schedule),
                    key_lines(text))


def _plant_paths(plant: dict[str, Any], base: Path) -> dict[str, Any]:
    """The plant's file names (keys ending in _path) relative to the scenario file when the file
    is there; else as written (a bundled profile)."""
    out: dict[str, Any] = {}
    for key, value in plant.items():
        if isinstance(value, dict):
            value = _plant_paths(value, base)
        elif key.endswith("_path") and isinstance(value, str) and value and not Path(value).is_absolute():
            beside = base / value
            if beside.exists():
                value = str(beside)
        out[key] = value
    return out


def _records(cls: type, data: dict[str, Any], key: str, errors: Errors) -> list[Any]:
    items = data.get(key, [])
    if not isinstance(items, list):
        errors.add((key,), f"expected an array of tables ([[{key}]])")
        return []
    out = []
    for i, raw in enumerate(items):
        record = structure(cls, raw, (key, i), errors)
        if record is not MISSING:
            out.append(record)
    return out
