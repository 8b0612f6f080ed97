"""Wire a site from its io_map: image, drivers, programs and the scan engine that runs them."""

from __future__ import annotations

import logging
import threading
from pathlib import Path as FsPath
from typing import Any

from runtime.clock import Clock
from runtime.config.lines import Path, key_lines, line_of
from runtime.config.io_map import tag_spec
from runtime.config.schema import IoMap
from runtime.config.structure import ConfigError, ConfigErrors
from runtime.image import ProcessImage, coerce_for
from runtime.io.driver import Driver, DriverSettings, Point
from runtime.io.registry import driver_kinds
from runtime.program import Program
from runtime.scan import InputBinding, OutputBinding, ScanEngine, Supervisor
from runtime.scan_stats import stats_tag_specs
from runtime.tags import Area, DType, TagSpec, make_checker

log = logging.getLogger(__name__)


class Site:
    """Everything that runs for one io_map. Build with `build_site`, then `start`, `run`, `stop`."""

    def __init__(self, io_map: IoMap, clock: Clock, image: ProcessImage, drivers: dict[str, Driver],
                 programs: list[Program], engine: ScanEngine):
        self.io_map = io_map
        self.clock = clock
        self.image = image
        self.drivers = drivers
        self.programs = programs
        self.engine = engine
        self.supervisor: Supervisor | None = None
        self._scan_thread: threading.Thread | None = None
        self._started = False

    @property
    def period_s(self) -> float:
        return self.engine.period_s

    def start(self) -> None:
        """Start every driver's thread (none on the virtual clock)."""
        for driver in self.drivers.values():
            driver.start()
        self._started = True

    def run(self, duration_s: float | None = None) -> None:
        """Scan until stopped or for `duration_s`: in this thread on the virtual clock, else in a
        dedicated scan thread watched by the supervisor (this thread just waits)."""
        if not self._started:
            self.start()
        if self.clock.virtual:
            self.engine.run(duration_s)
            return
        thread = threading.Thread(target=self.engine.run, args=(duration_s,), name="scan", daemon=True)
        self._scan_thread = thread
        thread.start()
        if self.io_map.supervisor.enabled:
            cfg = self.io_map.supervisor
            self.supervisor = Supervisor(self.engine, thread, cfg.missed_scans, cfg.recover_s)
            self.supervisor.start()
        while thread.is_alive():
            thread.join(0.2)

    def stop(self) -> None:
        """Outputs to their safe values, drivers write them and close. Safe to call twice."""
        self.engine.stop()
        if self._scan_thread is not None:
            self._scan_thread.join(5.0)
        if self.supervisor is not None:
            self.supervisor.stop()
        self.engine.safe_mode = True
        for binding in self.engine.outputs:
            binding.driver.stop(binding.safe_values)
        for name, driver in self.drivers.items():
            if not any(b.driver is driver for b in self.engine.outputs):
                driver.stop()
        for binding in self.engine.outputs:
            for tag, safe in zip(binding.tags, binding.safe_values):
                log.info("output %s at its safe value %s", tag.name, tag.spec.label(safe))


def build_site(io_map: IoMap, clock: Clock) -> Site:
    """Create the image, drivers, programs and engine for a validated io_map. Opens nothing."""
    from programs.registry import program_kinds

    errors: list[tuple[Path, str]] = []
    image = ProcessImage(stats_tag_specs())
    stale_after = {d.name: d.stale_after_s for d in io_map.devices}
    for tag in io_map.tags:
        io = io_map.tag_io.get(tag.name)
        image.add(tag_spec(tag, stale_after[io[0].device] if io else None))

    kinds = program_kinds()
    programs: list[Program] = []
    for i, cfg in enumerate(io_map.programs):
        if not cfg.enabled:
            continue
        program = kinds[cfg.kind](cfg.name, io_map.program_params[cfg.name])
        for spec in program.declare():
            try:
                image.add(spec)
            except ValueError as exc:
                errors.append((("programs", i), f"program {cfg.name!r}: {exc}"))
        programs.append(program)
    for i, program in enumerate(programs):
        try:
            program.bind(image)
        except (KeyError, ValueError, TypeError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            errors.append((("programs", i), f"program {program.name!r}: {message}"))
    if errors:
        raise _config_errors(io_map, errors)

    drivers, inputs, outputs = _build_drivers(io_map, image, clock)
    engine = ScanEngine(image, programs, clock, io_map.site.scan_period_s, inputs, outputs)
    return Site(io_map, clock, image, drivers, programs, engine)


def _build_drivers(io_map: IoMap, image: ProcessImage, clock: Clock):  # type: ignore[no-untyped-def]
    kinds = driver_kinds()
    drivers: dict[str, Driver] = {}
    inputs: list[InputBinding] = []
    outputs: list[OutputBinding] = []
    for device in io_map.devices:
        bound = [(image[name], b, p) for name, (b, p) in io_map.tag_io.items() if b.device == device.name]
        ins = [(tag, b, p) for tag, b, p in bound if tag.spec.area is Area.INPUT]
        outs = [(tag, b, p) for tag, b, p in bound if tag.spec.area is Area.OUTPUT]
        settings = DriverSettings(
            poll_period_s=device.poll_period_s,
            hang_timeout_s=device.hang_timeout_s,
            backoff_max_s=device.backoff_max_s,
        )
        kind = kinds[device.driver]
        build = kind.build or kind.driver
        driver = build(
            device.name,
            [_point(tag.spec, b, p, with_convert=True) for tag, b, p in ins],
            [_point(tag.spec, b, p, with_convert=False) for tag, b, p in outs],
            clock,
            settings,
            io_map.device_options[device.name],
        )
        drivers[device.name] = driver
        if ins:
            inputs.append(InputBinding(driver, tuple(t for t, _, _ in ins),
                                       tuple(t.spec.max_age_s or float("inf") for t, _, _ in ins)))
        if outs:
            outputs.append(OutputBinding(driver, tuple(t for t, _, _ in outs),
                                         tuple(t.spec.safe_value for t, _, _ in outs)))
    return drivers, inputs, outputs


def _point(spec: TagSpec, binding: Any, point: Any, with_convert: bool) -> Point:
    convert = None
    if with_convert:
        check = make_checker(spec)

        def convert(value: Any, spec: TagSpec = spec) -> Any:
            return check(coerce_for(spec, value))

    return Point(
        tag=spec.name,
        address=point,
        scale=binding.scale,
        offset=binding.offset,
        is_bool=spec.dtype is DType.BOOL,
        convert=convert,
    )


def _config_errors(io_map: IoMap, errors: list[tuple[Path, str]]) -> ConfigErrors:
    try:
        lines = key_lines(FsPath(io_map.path).read_text(encoding="utf-8"))
    except OSError:
        lines = {}
    return ConfigErrors([ConfigError(path, msg, io_map.path, line_of(lines, path)) for path, msg in errors])
