"""Wire a site from its io_map: image, drivers, programs and the scan engine that runs them."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path as FsPath
from typing import Any, Protocol

from plc.program import Program
from plc.tags import Area, DType, TagSpec, make_checker
from programs.enums import SiteState
from programs.registry import PROGRAMS
from runtime.clock import Clock, ClockEvent
from runtime.config.io_map import tag_spec
from runtime.config.lines import Path, line_of
from runtime.config.schema import IoMap
from runtime.config.structure import ConfigError, ConfigErrors
from runtime.frequency_polling import ffr_frequency_in_time, frequency_polled_for_sale
from runtime.image import ProcessImage, Tag
from runtime.io.driver import Driver, DriverSettings, Point
from runtime.io.registry import DRIVERS
from runtime.retain import system_tag_specs
from runtime.scan import InputBinding, OutputBinding, ScanEngine, Supervisor
from runtime.servers import build_mirrors, runtime_tag_specs

log = logging.getLogger(__name__)


class Mirror(Protocol):
    """A view of the image outside the scan (Modbus server, HMI channel, telemetry)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


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
        self.mirrors: list[Mirror] = []
        self._scan_thread: threading.Thread | None = None
        self._started = False
        self.realtime = False  # the scan thread runs at real-time priority
        self.epoch: float | None = None  # origin of the scan's deadline grid (real clock)
        self.actions = StateActions(self)  # Restart and Reboot states stop the site with an exit code
        engine.after_scan.append(self.actions)
        self._closers: list[Callable[[], None]] = []  # services of attach_services, closed by stop
        self.storage: Any = None  # runtime/storage.py StorageHealth, once attach_services has run
        self.notes: list[str] = []  # what the site changed of its io_map, and why (`ems check-config` prints them)

    @property
    def period_s(self) -> float:
        return self.engine.period_s

    def start(self) -> None:
        """Start every driver's thread (none on the virtual clock), each poll timed to end just
        before a scan deadline (runtime/io/driver.py: the IO cycle)."""
        self.epoch = self.clock.now()
        for driver in self.drivers.values():
            driver.start(self.epoch)
        for mirror in self.mirrors:
            mirror.start()
        self._started = True

    def run(self, duration_s: float | None = None) -> None:
        """Scan until stopped or for `duration_s`: in this thread on the virtual clock, else in a
        dedicated scan thread watched by the supervisor (this thread just waits)."""
        if not self._started:
            self.start()
        if self.clock.virtual:
            policy, got = thread_priority()  # the calling thread scans, at the priority it has
            for name, value in (("scan_sched_policy", policy), ("scan_sched_priority", got)):
                tag = self.image.get(name)
                if tag is not None:
                    tag.value = value
            self.engine.run(duration_s)  # drivers step inside the scan: no grid to share
            return
        thread = threading.Thread(target=self._scan_thread_main, args=(duration_s,), name="scan", daemon=True)
        self._scan_thread = thread
        thread.start()
        if self.io_map.supervisor.enabled:
            cfg = self.io_map.supervisor
            self.supervisor = Supervisor(self.engine, thread, cfg.missed_scans, cfg.recover_s)
            self.supervisor.start()
        while thread.is_alive():
            thread.join(0.2)

    def _scan_thread_main(self, duration_s: float | None) -> None:
        self.realtime = apply_scan_priority(self.io_map.site.realtime_priority, self.image)
        self.engine.run(duration_s, t0=self.epoch)

    def stop(self) -> None:
        """Outputs to their safe values, drivers write them and close. Safe to call twice."""
        self.engine.stop()
        if self._scan_thread is not None:
            self._scan_thread.join(5.0)
        if self.supervisor is not None:
            self.supervisor.stop()
        self.engine.safe_mode = True
        for mirror in self.mirrors:
            mirror.stop()
        for binding in self.engine.outputs:
            binding.driver.stop(binding.in_doubt)
        for driver in self.drivers.values():
            if not any(b.driver is driver for b in self.engine.outputs):
                driver.stop()
        for binding in self.engine.outputs:
            for tag, safe in zip(binding.tags, binding.in_doubt):
                if safe is None:
                    log.info("output %s held at its last command", tag.name)
                else:
                    log.info("output %s at its safe value %s", tag.name, tag.spec.label(safe))
        closers, self._closers = self._closers, []
        for close in closers:
            close()

    def attach_services(self, data_dir: FsPath) -> None:
        """Retained tags (restored now, before the first scan), the event log, the cloud link, the
        storage health of the first two and the watchdog (runtime/retain.py, events.py, cloud/,
        storage.py, systemd.py), as configured; `stop` closes them."""
        from runtime import events, retain, storage, systemd

        cfg = self.io_map
        clean = True
        writers = []
        if cfg.retain.enabled:
            retainer = retain.attach(self, data_dir, cfg.retain)
            clean = retainer.previous_clean
            writers.append(retainer.store.writer)

            def close_retain() -> None:
                retainer.stop(self.clock.now())
                retainer.store.close()

            self._closers.append(close_retain)
        event_log = events.attach(self, data_dir, cfg.event_log) if cfg.event_log.enabled else None
        if cfg.cloud.enabled:
            from runtime.cloud import link

            cloud = link.attach(self, data_dir, cfg.cloud, event_log)  # before the first event: it is sent too
        if event_log is not None:
            writers.append(event_log.writer)
            event_log.append(events.service_event(self, "started", clean))

            def clock_event(e: ClockEvent) -> None:  # a step of the wall clock, a change of its sync
                event_log.append(events.Event(e.wall_s, e.t_s, e.kind, e.severity, e.source, e.code, e.name,
                                              e.message))

            listeners = self.engine.clock_watch.listeners
            listeners.append(clock_event)

            def close_event_log() -> None:
                listeners.remove(clock_event)
                event_log.append(events.service_event(self, "stopped"))
                event_log.close(self.clock.wall())

            self._closers.append(close_event_log)
        if cfg.cloud.enabled:
            self._closers.append(cloud.stop)  # after the event log's close: its last events are queued too
        if writers:
            self.storage = storage.attach(self, data_dir, writers)
            self._closers.append(self.storage.stop)
        watchdog = systemd.attach(self, cfg.watchdog)
        if watchdog is not None:
            self._closers.insert(0, watchdog.stop)


class StateActions:
    """Acts on the site states that belong to the runtime: Restart and Reboot.

    When the site state machine enters one of them, the site stops after `delay_s` (outputs to
    their safe values, as on any stop) and `exit_code` tells the caller what to do: the service
    manager restarts the process on a non-zero exit, and a reboot command runs when configured.
    """

    RESTART_EXIT = 3
    REBOOT_EXIT = 4

    def __init__(self, site: Site, delay_s: float = 2.0):
        self.site = site
        self.state = site.image.get("site_state")
        self.delay_s = delay_s
        self.entered_s: float | None = None
        self.exit_code = 0

    def __call__(self, ctx: Any) -> None:
        if self.state is None:
            return
        value = self.state.value
        code = {SiteState.RESTART: self.RESTART_EXIT, SiteState.REBOOT: self.REBOOT_EXIT}.get(value, 0)
        if not code:
            self.entered_s = None
            return
        if self.entered_s is None:
            self.entered_s = ctx.t_s
            log.warning("site state %s: stopping in %.1f s", self.state.spec.label(value), self.delay_s)
        if ctx.t_s - self.entered_s >= self.delay_s and not self.exit_code:
            self.exit_code = code
            self.site.engine.stop()


POLICY_NAMES = {getattr(os, name): name for name in
                ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE") if hasattr(os, name)}


def thread_priority() -> tuple[int, int]:
    """The calling thread's scheduling policy and priority, as the kernel reports them."""
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


def set_realtime_priority(priority: int) -> bool:
    """Ask SCHED_FIFO `priority` for the calling thread, then read back what it got: True only when
    it runs at a real-time policy with at least that priority.

    Needs root or CAP_SYS_NICE, and under a cgroup with a CPU quota a real-time budget too; a
    refusal (an error, or a call that succeeds and leaves the thread where it was) is logged as a
    warning naming what was asked and what was got.
    """
    reason = ""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread
    except (PermissionError, OSError, AttributeError) as exc:
        reason = f" ({exc})"
    policy, got = thread_priority()
    if policy in (os.SCHED_FIFO, os.SCHED_RR) and got >= priority:
        log.info("scan thread at real-time priority %s %d", POLICY_NAMES.get(policy, policy), got)
        return True
    log.warning("scan thread asked for SCHED_FIFO %d ([site] realtime_priority) but got %s %d%s: it runs at "
                "normal priority and wakes late under load (needs root or CAP_SYS_NICE, and a real-time budget "
                "in its cgroup)", priority, POLICY_NAMES.get(policy, policy), got, reason or " (refused without an error)")
    return False


def apply_scan_priority(priority: int | None, image: ProcessImage) -> bool:
    """In the scan thread: ask for `priority` (if any), log what the thread got and put it in the
    tags `scan_sched_policy` and `scan_sched_priority`. True when it runs at real-time priority."""
    realtime = set_realtime_priority(priority) if priority is not None else False
    policy, got = thread_priority()
    if priority is None:
        log.info("scan thread at %s %d ([site] realtime_priority not set)", POLICY_NAMES.get(policy, policy), got)
    for name, value in (("scan_sched_policy", policy), ("scan_sched_priority", got)):
        tag = image.get(name)
        if tag is not None:
            tag.value = value
    return realtime


def build_site(io_map: IoMap, clock: Clock) -> Site:
    """Create the image, drivers, programs and engine for a validated io_map. Opens nothing."""
    errors: list[tuple[Path, str]] = []
    image = ProcessImage(runtime_tag_specs(io_map.modbus_server) + system_tag_specs())
    stale_after = {d.name: d.stale_after_s for d in io_map.devices}
    for tag in io_map.tags:
        io = io_map.tag_io.get(tag.name)
        image.add(tag_spec(tag, stale_after[io[0].device] if io else None))

    kinds = PROGRAMS
    placed: list[tuple[int, Program]] = []  # with their index in the io_map, for error paths
    for i, cfg in enumerate(io_map.programs):
        if not cfg.enabled:
            continue
        program = kinds[cfg.kind](cfg.name, io_map.program_params[cfg.name])
        for spec in program.declare():
            try:
                image.add(spec)
            except ValueError as exc:
                errors.append((("programs", i), f"program {cfg.name!r}: {exc}"))
        placed.append((i, program))
    programs = [program for _, program in placed]
    writes: dict[str, set[str]] = {}  # program name -> the output tags it binds to
    for i, program in placed:
        lookup = _OutputRecorder(image)
        try:
            program.bind(lookup)
        except (KeyError, ValueError, TypeError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            errors.append((("programs", i), f"program {program.name!r}: {message}"))
        writes[program.name] = lookup.outputs
    io_map, notes = frequency_polled_for_sale(io_map, placed)
    if not errors:
        errors += _safety_last(io_map, image, placed, writes)
        errors += _revert_known(io_map, placed)
        errors += ffr_frequency_in_time(io_map, placed)
    if errors:
        raise _config_errors(io_map, errors)

    drivers, inputs, outputs = _build_drivers(io_map, image, clock)
    engine = ScanEngine(image, programs, clock, io_map.site.scan_period_s, inputs, outputs)
    mirrors, problems = build_mirrors(io_map.modbus_server, io_map.meter_gateway, image, engine)
    if problems:
        raise _config_errors(io_map, problems)
    site = Site(io_map, clock, image, drivers, programs, engine)
    site.notes = notes
    site.mirrors.extend(mirrors)
    site.mirrors.extend(_schedule_watchers(programs, io_map))
    site.mirrors.extend(_cluster(programs, io_map, engine, clock))
    return site


class _OutputRecorder:
    """The image as a program's `bind` sees it, noting every output tag the program takes."""

    def __init__(self, image: ProcessImage):
        self.image = image
        self.outputs: set[str] = set()

    def _note(self, tag: Tag) -> Tag:
        if tag.spec.area is Area.OUTPUT:
            self.outputs.add(tag.name)
        return tag

    def __getitem__(self, name: str) -> Tag:
        return self._note(self.image[name])

    def __contains__(self, name: str) -> bool:
        return name in self.image

    def get(self, name: str) -> Tag | None:
        tag = self.image.get(name)
        return None if tag is None else self._note(tag)


def _safety_last(io_map: IoMap, image: ProcessImage, placed: list[tuple[int, Program]],
                 writes: dict[str, set[str]]) -> list[tuple[Path, str]]:
    """Safety wins: a site with outputs runs a `safety` program after every program that writes
    an output (docs/architecture.md). Only a declared bench test rig may go without."""
    outputs = sorted(tag.name for tag in image if tag.spec.area is Area.OUTPUT)
    if not outputs:
        return []
    safety = [(i, p) for i, p in placed if p.kind == "safety"]
    if not safety:
        if io_map.site.bench_rig_without_safety:
            log.warning("SITE %s RUNS WITHOUT A SAFETY PROGRAM ([site] bench_rig_without_safety = true): no "
                        "interlock protects its outputs %s; never on a battery", io_map.site.id, ", ".join(outputs))
            return []
        return [(("programs",), f"the site has outputs ({', '.join(outputs[:4])}{', ...' if len(outputs) > 4 else ''})"
                 " but no enabled safety program: add [[programs]] kind = \"safety\" after the programs that write "
                 "them (only a bench test rig may declare [site] bench_rig_without_safety = true)")]
    last, _ = safety[-1]
    return [(("programs", i), f"program {p.name!r} writes output {min(writes[p.name])!r} but runs after "
                              "the safety program: safety must run after every program that writes outputs")
            for i, p in placed if i > last and writes.get(p.name) and p.kind != "safety"]


def _revert_known(io_map: IoMap, placed: list[tuple[int, Program]]) -> list[tuple[Path, str]]:
    """A cluster node publishes its inverter's revert time, which a new leader relies on for a
    unit that died: it must be the revert_s its inverter's driver really arms."""
    binding = io_map.tag_io.get("inverter_p_setpoint_w")
    device = binding[0].device if binding is not None else ""
    armed = getattr(getattr(io_map.device_options.get(device), "options", None), "revert_s", None)
    errors: list[tuple[Path, str]] = []
    for i, program in placed:
        published = getattr(io_map.program_params.get(program.name), "inverter_revert_s", None)
        if program.kind == "cluster" and armed is not None and published != armed:
            errors.append((("programs", i, "params", "inverter_revert_s"),
                           f"{published:g} s, but the inverter {device!r} reverts after its revert_s = {armed:g} s: "
                           "give both the same time"))
    return errors


def _cluster(programs: list[Program], io_map: IoMap, engine: ScanEngine, clock: Clock) -> Sequence[Mirror]:
    """The cluster service when the site runs cluster programs (runtime/cluster, docs/cluster.md)."""
    from runtime.cluster.service import attach

    try:
        return attach(programs, io_map, engine, clock.virtual)
    except ValueError as exc:
        raise _config_errors(io_map, [(("cluster", "enabled"), str(exc))]) from None


def _schedule_watchers(programs: list[Program], io_map: IoMap) -> list[Mirror]:
    """A watcher per program that takes a schedule file (external control)."""
    from runtime.schedule_file import ScheduleWatcher

    watchers: list[Mirror] = []
    for program in programs:
        path = getattr(getattr(program, "p", None), "schedule_file", None)
        if path and hasattr(program, "replace_schedule"):
            resolved = FsPath(path) if FsPath(path).is_absolute() else FsPath(io_map.path).parent / path
            watchers.append(ScheduleWatcher(resolved, program.replace_schedule))
    return watchers


def _build_drivers(io_map: IoMap, image: ProcessImage,
                   clock: Clock) -> tuple[dict[str, Driver], list[InputBinding], list[OutputBinding]]:
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
        driver = DRIVERS[device.driver].driver(
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
    convert = _converter(spec) if with_convert else None
    return Point(
        tag=spec.name,
        address=point,
        scale=binding.scale,
        offset=binding.offset,
        is_bool=spec.dtype is DType.BOOL,
        convert=convert,
    )


def _converter(spec: TagSpec) -> Callable[[Any], Any]:
    """From an engineering value to the tag's type, range-checked (raises when bad)."""
    check = make_checker(spec)
    if spec.dtype is DType.FLOAT32:
        return check  # takes int and float
    if spec.dtype is DType.BOOL:
        return bool
    if spec.dtype is DType.STRING:
        return lambda value: check(str(value))
    return lambda value: check(value if value.__class__ is int else int(round(value)))


def _config_errors(io_map: IoMap, errors: list[tuple[Path, str]]) -> ConfigErrors:
    return ConfigErrors([ConfigError(path, msg, io_map.path, line_of(io_map.key_lines, path)) for path, msg in errors])
