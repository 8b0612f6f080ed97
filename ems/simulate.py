"""`ems sim`: run a site on the virtual clock against the plant simulator, record and summarise.

The controller runs unchanged (same io_map, same programs, same scan period); only the clock is
virtual. A recorder hooked after each scan writes a CSV row per sample period and keeps running
totals of every scan for the summary.
"""

from __future__ import annotations

import csv
import difflib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs

from ems.errors import EXIT_CONFIG, CommandError
from ems.scenario import Scenario
from plc.program import ScanContext
from plc.tags import Access, DType
from runtime.clock import VirtualClock
from runtime.config.io_map import load_io_map
from runtime.config.lines import line_of
from runtime.config.schema import IoMap
from runtime.config.structure import MISSING, ConfigError, ConfigErrors, Errors, structure
from runtime.image import ProcessImage
from runtime.site import Site, build_site
from sim.profiles import ProfileError, resolve_path
from sim.variables import coerce

COLUMNS = {  # CSV column -> tag
    "grid_power_w": "grid_power_w", "battery_power_w": "inverter_p_w", "pv_power_w": "pv_power_w",
    "load_power_w": "load_power_w", "soc_pct": "soc_pct", "frequency_hz": "grid_frequency_hz",
    "mode": "mode_active", "state": "site_state", "baseline_p_w": "baseline_p_w",
    "setpoint_w": "inverter_p_setpoint_w", "service_p_w": "service_p_w", "limit_charge_w": "limit_charge_w",
    "limit_discharge_w": "limit_discharge_w", "limit_charge_source": "limit_charge_source",
    "limit_discharge_source": "limit_discharge_source", "hold_reason": "control_hold_reason",
    "applied_frequency_hz": "frequency_input_hz", "filtered_frequency_hz": "frequency_filtered_hz",
    "test_mode": "test_frequency_in_use",
    "import_limit_w": "import_limit_w", "export_limit_w": "export_limit_w", "price": "price_now",
}


@attrs.define
class Summary:
    """Totals over every scan of a run."""

    hours: float = 0.0
    wall_s: float = 0.0
    import_wh: float = 0.0
    export_wh: float = 0.0
    pv_wh: float = 0.0
    load_wh: float = 0.0
    charge_wh: float = 0.0
    discharge_wh: float = 0.0
    peak_import_w: float = 0.0
    soc_min_pct: float = math.inf
    soc_max_pct: float = -math.inf
    capacity_wh: float = 0.0
    pv_export_wh: float = 0.0  # PV energy that went to the grid: min(export, PV) each scan
    limit_time_s: dict[str, float] = attrs.Factory(dict)  # "charge: soc_taper" -> seconds it cut or held
    rows: dict[str, list[Any]] | None = None  # the CSV's columns, when asked to keep them

    @property
    def self_consumption(self) -> float:
        """Share of PV energy used on site: 1 - PV exported / PV, where each scan exports
        min(export power, PV power) of PV (battery energy exported is not PV exported); 0..1."""
        if self.pv_wh <= 0:
            return 0.0
        return min(1.0, max(0.0, 1.0 - self.pv_export_wh / self.pv_wh))

    @property
    def cycles(self) -> float:
        return self.discharge_wh / self.capacity_wh if self.capacity_wh > 0 else 0.0

    def text(self) -> str:
        lines = [
            f"simulated {self.hours:.2f} h in {self.wall_s:.1f} s wall ({self.hours * 3600 / max(self.wall_s, 1e-9):.0f}x)",
            f"grid import      {self.import_wh / 1000:10.3f} kWh    export {self.export_wh / 1000:10.3f} kWh",
            f"pv               {self.pv_wh / 1000:10.3f} kWh    load   {self.load_wh / 1000:10.3f} kWh",
            f"battery charge   {self.charge_wh / 1000:10.3f} kWh    discharge {self.discharge_wh / 1000:7.3f} kWh",
            f"self-consumption {self.self_consumption * 100:10.1f} %      cycles {self.cycles:10.3f}",
            f"peak import      {self.peak_import_w:10.0f} W",
            f"soc              {self.soc_min_pct:10.2f} .. {self.soc_max_pct:.2f} %",
            "time each limit was binding:" + ("" if self.limit_time_s else " none"),
        ]
        for name, seconds in sorted(self.limit_time_s.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<32}{seconds:10.1f} s")
        return "\n".join(lines)


def binding_tolerance_w(limit_w: float) -> float:
    """How close to a limit a power counts as at it: 0.5 % of the limit, at least 1 W."""
    return max(1.0, 0.005 * abs(limit_w))


def limit_binds(request_w: float, setpoint_w: float, limit_w: float, side: int) -> bool:
    """Whether a limit cut or held the setpoint this scan, on its side (+1 discharge, -1 charge;
    `limit_w` >= 0 is the power allowed that way): the request (baseline plus services) is at or
    beyond the limit, within the tolerance, and the setpoint is at the limit. An idle request
    (within the tolerance of 0 W) does not make a limit of 0 W bind; a setpoint the site state
    or an interlock forced elsewhere is not the limit's."""
    tol = binding_tolerance_w(limit_w)
    return side * request_w >= max(limit_w - tol, tol) and abs(side * setpoint_w - limit_w) <= tol


class Recorder:
    """Writes CSV rows at the sample rate and accumulates the summary every scan."""

    def __init__(self, site: Site, out: TextIO, sample_rate_hz: float, keep: bool):
        self.image = site.image
        self.period = site.period_s
        self.every = max(1, int(round(1.0 / (sample_rate_hz * site.period_s))))
        self.columns = [c for c, tag in COLUMNS.items() if tag in site.image]
        self.tags = [site.image[COLUMNS[c]] for c in self.columns]
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(["t_s"] + self.columns)
        self.summary = Summary()
        self.t0: float | None = None
        self.rows: dict[str, list[Any]] | None = {c: [] for c in ["t_s"] + self.columns} if keep else None
        self.n = 0
        get = site.image.get
        self.grid, self.battery, self.pv, self.load, self.soc = (
            get(n) for n in ("grid_power_w", "inverter_p_w", "pv_power_w", "load_power_w", "soc_pct"))
        self.baseline, self.service, self.setpoint = (
            get(n) for n in ("baseline_p_w", "service_p_w", "inverter_p_setpoint_w"))
        self.limits = [(side, get(limit), get(source)) for side, limit, source in (
            (-1, "limit_charge_w", "limit_charge_source"), (1, "limit_discharge_w", "limit_discharge_source"))]

    def __call__(self, ctx: ScanContext) -> None:
        if self.t0 is None:
            self.t0 = ctx.t_s
        self._accumulate(ctx.dt_s)
        if self.n % self.every == 0:
            row = [round(ctx.t_s - self.t0, 3)] + [_render(tag) for tag in self.tags]
            self.writer.writerow(row)
            if self.rows is not None:
                for column, value in zip(self.rows, row):
                    self.rows[column].append(value)
        self.n += 1

    def _accumulate(self, dt: float) -> None:
        s = self.summary
        if self.grid is not None and self.grid.value is not None:
            g = self.grid.value
            if g > 0:
                s.import_wh += g * dt / 3600
                s.peak_import_w = max(s.peak_import_w, g)
            else:
                s.export_wh -= g * dt / 3600
        if self.battery is not None and self.battery.value is not None:
            b = self.battery.value
            if b > 0:
                s.discharge_wh += b * dt / 3600
            else:
                s.charge_wh -= b * dt / 3600
        for tag, attr in ((self.pv, "pv_wh"), (self.load, "load_wh")):
            if tag is not None and tag.value is not None:
                setattr(s, attr, getattr(s, attr) + tag.value * dt / 3600)
        if self.pv is not None and self.pv.value is not None and self.grid is not None and self.grid.value is not None:
            s.pv_export_wh += max(0.0, min(-self.grid.value, self.pv.value)) * dt / 3600
        if self.soc is not None and self.soc.value is not None:
            s.soc_min_pct = min(s.soc_min_pct, self.soc.value)
            s.soc_max_pct = max(s.soc_max_pct, self.soc.value)
        self._accumulate_binding(dt)

    def _accumulate_binding(self, dt: float) -> None:
        """Time each limit cut or held the setpoint, by side and by the limit's source (as
        programs/dispatch.py clamps: baseline plus services, services only while good)."""
        if self.baseline is None or self.setpoint is None or self.baseline.value is None:
            return
        request = self.baseline.value
        if self.service is not None and self.service.good and self.service.value is not None:
            request += self.service.value
        setpoint = self.setpoint.value or 0.0
        for side, limit, source in self.limits:
            if limit is None or limit.value is None or not limit_binds(request, setpoint, limit.value, side):
                continue
            label = source.spec.enum_labels[source.value] if source is not None and source.value is not None else "limit"
            key = f"{'discharge' if side > 0 else 'charge'}: {label}"
            self.summary.limit_time_s[key] = self.summary.limit_time_s.get(key, 0.0) + dt


def _render(tag: Any) -> Any:
    value = tag.value
    if tag.spec.dtype is DType.ENUM and isinstance(value, int) and value < len(tag.spec.enum_labels):
        return tag.spec.enum_labels[value]
    if isinstance(value, float):
        return round(value, 3)
    return value


class EventPlayer:
    """Plays a scenario against the running site: timed events, heartbeats.

    Tag writes go through the image's write queue, so they land whole at a scan boundary like a
    SCADA write; plant variables are set directly (faults, outages).
    """

    def __init__(self, site: Site, scenario: Scenario | None, plant: Any):
        self.image = site.image
        self.events = list(scenario.events) if scenario else []
        self.heartbeats = list(scenario.heartbeats) if scenario else []
        self.beat_due = [hb.start_s for hb in self.heartbeats]  # when each heartbeat ticks next
        self.plant = plant
        self.t0: float | None = None
        self.period = site.period_s

    def __call__(self, ctx: ScanContext) -> None:
        if self.t0 is None:
            self.t0 = ctx.t_s
        next_t = ctx.t_s - self.t0 + self.period + 1e-9
        while self.events and self.events[0].t_s <= next_t:
            event = self.events.pop(0)
            if event.tag is not None:
                self.image.request_writes([(event.tag, tag_value(self.image, event.tag, event.value))], "scenario")
            else:
                self.plant.set(event.plant, event.value)
        for i, source in enumerate(self.heartbeats):
            due = self.beat_due[i]
            if due <= next_t and (source.stop_s is None or due < source.stop_s):
                tag = self.image[source.tag]
                self.image.request_writes([(source.tag, ((tag.value or 0) + 1) % 65536)], "scenario heartbeat")
                self.beat_due[i] = due + source.period_s


def tag_value(image: ProcessImage, name: str, value: Any) -> Any:
    """A scenario value for a tag: enum labels become their index."""
    spec = image[name].spec
    if spec.dtype is DType.ENUM and isinstance(value, str):
        if value not in spec.enum_labels:
            raise ValueError(f"tag {name!r}: {value!r} is not one of {', '.join(spec.enum_labels)}")
        return spec.enum_labels.index(value)
    if spec.dtype is DType.FLOAT32 and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def prepare(io_map_path: str, scenario: Scenario | None, profile_csv: str | None,
            frequency_csv: str | None) -> tuple[IoMap, str]:
    """The io_map with the scenario's plant changes applied; also the name of the plant device."""
    io_map = load_io_map(io_map_path)
    plants = [d.name for d in io_map.devices if d.driver == "sim"]
    if not plants:
        raise ConfigErrors([ConfigError(("devices",), "ems sim needs a device with driver = \"sim\"", io_map.path)])
    name = plants[0]
    overrides: dict[str, Any] = dict(scenario.plant) if scenario else {}
    for option, given in (("--profile", profile_csv), ("--frequency-profile", frequency_csv)):
        if given:
            _check_readable(given, option)
    if profile_csv:
        for key in ("pv", "load"):
            overrides[key] = {**overrides.get(key, {}), "source": "csv", "csv_path": profile_csv}
    if frequency_csv:
        overrides["grid"] = {**overrides.get("grid", {}), "frequency_source": "csv",
                             "frequency_csv_path": frequency_csv}
    if overrides:
        errors = Errors()
        options = structure(type(io_map.device_options[name]), overrides, ("plant",), errors,
                            base=io_map.device_options[name])
        if errors or options is MISSING:
            where = scenario.path if scenario else "<command line>"
            lines = scenario.lines if scenario else {}
            raise ConfigErrors([ConfigError(e.path, e.message, where, line_of(lines, e.path)) for e in errors.items])
        io_map = attrs.evolve(io_map, device_options={**io_map.device_options, name: options})
    io_map = attrs.evolve(io_map, modbus_server=attrs.evolve(io_map.modbus_server, enabled=False))
    return io_map, name


def _check_readable(path: str, option: str) -> None:
    """A profile named on the command line is there and can be read: else one error naming it."""
    try:
        with open(resolve_path(path), "rb"):
            pass
    except OSError as exc:
        raise ConfigErrors([ConfigError((option,), f"cannot read file: {exc.strerror}", path)]) from None


def _check_writable(path: str, option: str) -> None:
    """An output file can be written (its directory made when missing): else one line naming it."""
    target = Path(path)
    existed = target.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8"):
            pass
    except FileExistsError:  # a file where its directory would be
        raise CommandError(f"{path}: {option}: cannot write: Not a directory", EXIT_CONFIG) from None
    except OSError as exc:
        raise CommandError(f"{path}: {option}: cannot write: {exc.strerror or exc}", EXIT_CONFIG) from None
    if not existed:
        target.unlink()


def simulate(io_map_path: str, hours: float, out_csv: str, scenario: Scenario | None = None,
             profile_csv: str | None = None, frequency_csv: str | None = None, sample_rate_hz: float = 1.0,
             plot: str | None = None, progress: Callable[[float, float], None] | None = None,
             keep_rows: bool = False) -> Summary:
    """Run the site for `hours` of simulated time; write the CSV (and plot); return the summary."""
    io_map, plant_name = prepare(io_map_path, scenario, profile_csv, frequency_csv)
    for option, output in (("--out", out_csv), ("--plot", plot)):
        if output is not None:
            _check_writable(output, option)  # now, not after hours of simulation
    try:
        site = build_site(io_map, virtual_clock_for(io_map))
    except ProfileError as exc:  # a profile that is there but wrong: its file and line
        raise CommandError(str(exc), EXIT_CONFIG) from None
    plant = site.drivers[plant_name].plant  # type: ignore[attr-defined]
    _initial_writes(site, scenario, plant)
    rate = min(sample_rate_hz, 1.0 / site.period_s)
    with open(out_csv, "w", newline="", encoding="utf-8") as out:
        recorder = Recorder(site, out, rate, keep=plot is not None or keep_rows)
        recorder.summary.capacity_wh = io_map.device_options[plant_name].battery.nominal_energy_wh
        site.engine.after_scan.append(EventPlayer(site, scenario, plant))
        site.engine.after_scan.append(recorder)
        if progress is not None:
            site.engine.after_scan.append(_progress_hook(site, hours, progress))
        started = time.perf_counter()
        site.start()
        try:
            site.run(hours * 3600.0)
        finally:
            site.stop()
        recorder.summary.wall_s = time.perf_counter() - started
        recorder.summary.hours = hours
        recorder.summary.rows = recorder.rows
    if plot is not None and recorder.rows is not None:
        from ems.plot import plot_run

        services = any(abs(p) > 1.0 for p in recorder.rows.get("service_p_w", []))
        plot_run(recorder.rows, plot, title=_title(io_map, scenario), frequency=bool(frequency_csv) or services,
                 events=event_labels(scenario, hours * 3600.0))
    return recorder.summary


def event_labels(scenario: Scenario | None, duration_s: float) -> list[tuple[float, str]]:
    """The scenario's timed events within the run, as (t_s, short label) for the plot: each
    event's write (`mode = external`, `grid.outage = true`), and each heartbeat that stops."""
    if scenario is None:
        return []
    labels = []
    for event in scenario.events:
        value = event.value
        shown = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
        labels.append((event.t_s, f"{event.tag or event.plant} = {shown}"))
    labels += [(beat.stop_s, f"{beat.tag} stops") for beat in scenario.heartbeats if beat.stop_s is not None]
    return sorted((t, label) for t, label in labels if t <= duration_s)


def virtual_clock_for(io_map: IoMap) -> VirtualClock:
    """A virtual clock whose calendar matches the plant's time of day, so that tariffs, charge
    windows and the simulated sun agree (day one is 2026-01-01, UTC)."""
    start = 1_767_225_600.0
    for device in io_map.devices:
        if device.driver == "sim":
            start += io_map.device_options[device.name].start_time_of_day_s
            break
    return VirtualClock(start_wall_s=start)


def _initial_writes(site: Site, scenario: Scenario | None, plant: Any = None) -> None:
    """Check every tag, value and plant variable the scenario names against the site (all of
    them, each error with its file, line and key), then write its [tags] and mode."""
    if scenario is None:
        return
    errors: list[ConfigError] = []

    def fail(path: tuple[str | int, ...], exc: Exception | str) -> None:
        message = exc if isinstance(exc, str) else str(exc.args[0] if exc.args else exc)
        errors.append(ConfigError(path, message, scenario.path, line_of(scenario.lines, path)))

    writes = {("tags", name): (name, value) for name, value in scenario.tags.items()}
    if scenario.info.mode is not None:
        writes[("scenario", "mode")] = ("mode", scenario.info.mode)
    checked = []
    for path, (name, value) in writes.items():
        try:
            tag = site.image[name]
            checked.append((tag, tag.check(tag_value(site.image, name, value))))
        except (KeyError, ValueError, TypeError) as exc:
            fail(path, exc)
    for i, event in enumerate(scenario.events):
        if event.tag is not None:
            try:
                _check_write(site.image, event.tag, event.value)
            except (KeyError, ValueError, TypeError, PermissionError) as exc:
                fail(("events", i, "value" if isinstance(exc, (ValueError, TypeError)) else "tag"), exc)
        elif plant is not None and event.plant is not None:
            info = plant.variables().get(event.plant)
            if info is None or not info.writable:
                known = [n for n, v in plant.variables().items() if v.writable]
                close = difflib.get_close_matches(event.plant, known, n=1) if info is None else []
                fail(("events", i, "plant"), f"{'no' if info is None else 'read-only'} plant variable "
                     f"{event.plant!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            else:
                try:
                    coerce(event.value, info.type, event.plant)
                except ValueError as exc:
                    fail(("events", i, "value"), exc)
    for i, beat in enumerate(scenario.heartbeats):
        try:
            _check_write(site.image, beat.tag, 0)
        except (KeyError, ValueError, TypeError, PermissionError) as exc:
            fail(("heartbeats", i, "tag"), exc)
    if errors:
        raise ConfigErrors(sorted(errors, key=lambda e: e.line or 0))
    if scenario.schedule:
        _install_schedule(site, scenario)
    for tag, value in checked:
        tag.set(value)


def _check_write(image: ProcessImage, name: str, value: Any) -> None:
    """Raise what a scenario's write of `value` to tag `name` would meet when it is played."""
    if name not in image:
        close = difflib.get_close_matches(name, [s.name for s in image.specs()], n=1)
        raise KeyError(f"no tag named {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    tag = image[name]
    if tag.spec.access is not Access.RW:
        raise PermissionError(f"tag {name!r} is read-only")
    tag.check(tag_value(image, name, value))


def _install_schedule(site: Site, scenario: Scenario) -> None:
    from programs.schedule import Schedule, ScheduleEntry

    start = site.clock.wall()
    entries = tuple(ScheduleEntry(start + i.start_s, start + i.end_s, i.p_w, i.q_var, i.soc_target_pct)
                    for i in scenario.schedule)
    controls = [p for p in site.programs if hasattr(p, "replace_schedule")]
    if not controls:
        raise ConfigErrors([ConfigError(("schedule",), "the site has no program that takes a schedule",
                                        scenario.path)])
    try:
        schedule = Schedule(entries)
    except ValueError as exc:
        raise ConfigErrors([ConfigError(("schedule",), str(exc), scenario.path)]) from None
    for program in controls:
        program.replace_schedule(schedule)


def _progress_hook(site: Site, hours: float, report: Callable[[float, float], None]) -> Callable[[ScanContext], None]:
    every = max(1, int(hours * 3600 / site.period_s / 200))
    n = 0
    t0: float | None = None

    def hook(ctx: ScanContext) -> None:
        nonlocal n, t0
        if t0 is None:
            t0 = ctx.t_s
        n += 1
        if n % every == 0:
            report(ctx.t_s - t0 + site.period_s, hours * 3600)

    return hook


def progress_bar(stream: TextIO = sys.stderr) -> Callable[[float, float], None]:
    """A bar redrawn in place on a terminal; one line per 10 % elsewhere (logs, CI)."""
    started = time.perf_counter()
    tty = stream.isatty()
    shown = {"decile": -1}

    def report(done_s: float, total_s: float) -> None:
        fraction = min(done_s / total_s, 1.0)
        if not tty:
            decile = int(fraction * 10)
            if decile > shown["decile"]:
                shown["decile"] = decile
                stream.write(f"{fraction * 100:5.1f}%  {done_s / 3600:6.2f} h simulated  "
                             f"{time.perf_counter() - started:6.1f} s\n")
            return
        bar = "#" * int(fraction * 30)
        stream.write(f"\r[{bar:<30}] {fraction * 100:5.1f}%  {done_s / 3600:6.2f} h simulated  "
                     f"{time.perf_counter() - started:6.1f} s")
        if fraction >= 1.0:
            stream.write("\n")
        stream.flush()

    return report


def _title(io_map: IoMap, scenario: Scenario | None) -> str:
    name = scenario.info.name if scenario and scenario.info.name else io_map.site.name or io_map.site.id
    return name
