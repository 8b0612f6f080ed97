"""The cyclic scan: read inputs, execute programs in order, write outputs, publish.

Deadlines sit on a fixed grid `t0 + n * period` of monotonic time, so periods never drift. A scan
that runs past its next deadline is an overrun: it is counted and logged, and the next deadline
is the first grid point still ahead; missed deadlines are skipped, never caught up in a burst.

Each scan reads the wall clock afresh for its `wall_s` (schedules, tariffs, timestamps) and
hands it, with the monotonic time, to a `ClockWatch` (runtime/clock.py): a step of the wall
clock is logged and counted in that scan, and the programs already see the new time in it;
the deadline grid is not touched.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from plc.program import Program, ScanContext
from plc.tags import Quality
from runtime.clock import Clock, ClockWatch
from runtime.image import ProcessImage, Tag
from runtime.io.driver import Driver
from runtime.scan_stats import ScanStats

log = logging.getLogger(__name__)

GOOD = Quality.GOOD
STALE = Quality.STALE


@attrs.frozen
class InputBinding:
    """The image tags fed by one driver, aligned with `driver.inputs`."""

    driver: Driver
    tags: tuple[Tag, ...]
    max_ages: tuple[float, ...]


@attrs.frozen
class OutputBinding:
    """The image tags that feed one driver, aligned with `driver.outputs`.

    What a driver is given is a tuple aligned with its outputs; None there means "no
    command": the device keeps what it last had (a safe_hold output in doubt)."""

    driver: Driver
    tags: tuple[Tag, ...]
    safe_values: tuple[Any, ...]
    in_doubt: tuple[Any, ...] = attrs.field(init=False)  # whenever in doubt: safe values, nothing for a held one

    @in_doubt.default
    def _in_doubt(self) -> tuple[Any, ...]:
        return tuple(None if tag.spec.safe_hold else safe for tag, safe in zip(self.tags, self.safe_values))

    def commanded(self) -> tuple[Any, ...]:
        """The outputs as the programs left them; a tag that is not GOOD counts as in doubt."""
        return tuple(tag.value if tag.quality is GOOD else doubt for tag, doubt in zip(self.tags, self.in_doubt))


class ScanEngine:
    """Runs the site's programs against the process image on a clock."""

    def __init__(
        self,
        image: ProcessImage,
        programs: Sequence[Program],
        clock: Clock,
        period_s: float = 0.1,
        inputs: Sequence[InputBinding] = (),
        outputs: Sequence[OutputBinding] = (),
        stats: ScanStats | None = None,
    ):
        if period_s <= 0:
            raise ValueError(f"scan period must be > 0 s, got {period_s}")
        self.image = image
        self.programs = list(programs)
        self.clock = clock
        self.period_s = period_s
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.stats = stats or ScanStats()
        self.ctx = ScanContext(period_s=period_s)
        self.stop_event = threading.Event()
        self.heartbeat = 0  # scans completed; the supervisor watches it change
        self.safe_mode = False  # set by the supervisor or on stop: every output at its safe value
        self.after_scan: list[Callable[[ScanContext], None]] = []
        self._program_errors: dict[str, str] = {}
        self._overrun_logged_at = -math.inf
        self.clock_watch = ClockWatch(clock, image)
        self._stat_tags = {name: image[name] for name in (
            "scan_count", "scan_overruns", "scan_missed_deadlines", "scan_duration_last_s",
            "scan_duration_mean_s", "scan_duration_max_s", "scan_duration_p99_s", "scan_jitter_last_s",
            "scan_jitter_p99_s", "scan_jitter_max_s", "scan_period_s", "scan_program_faults",
            "supervisor_tripped",
        ) if name in image}
        if "scan_period_s" in self._stat_tags:
            self._stat_tags["scan_period_s"].set(period_s)

    # --- one scan -------------------------------------------------------------------------------
    def scan_once(self, t_s: float, dt_s: float, jitter_s: float = 0.0) -> None:
        """Run one full cycle at scan time `t_s`."""
        started = time.perf_counter()
        ctx = self.ctx
        ctx.t_s = t_s
        ctx.dt_s = dt_s
        clock = self.clock
        ctx.wall_s = wall = clock.wall()
        self.clock_watch.observe(clock.now(), wall)
        ctx.scan += 1
        image = self.image
        image.begin_scan(t_s)
        image.apply_pending_writes()
        self._read_inputs(t_s)
        faulted = self._execute(ctx)
        self._write_outputs(safe=faulted or self.safe_mode)
        duration = time.perf_counter() - started
        self.stats.record(duration, jitter_s)
        self._update_stat_tags()
        for hook in self.after_scan:
            hook(ctx)
        if image._subscribers:
            image.publish(ctx.scan, ctx.wall_s)
        self.heartbeat += 1

    def _read_inputs(self, t_s: float) -> None:
        virtual = self.clock.virtual
        for binding in self.inputs:
            driver = binding.driver
            if virtual:
                driver.step_virtual(t_s)
            else:
                driver.check_hang(t_s)
            for tag, max_age, (value, quality, stamp) in zip(binding.tags, binding.max_ages, driver.latest):
                if quality is GOOD and t_s - stamp > max_age:
                    quality = STALE
                tag.value = value
                tag.quality = quality
                tag.stamp = stamp

    def _execute(self, ctx: ScanContext) -> bool:
        faulted = False
        for program in self.programs:
            try:
                program.execute(ctx)
            except Exception as exc:  # one faulty program must not stop the scan; safety wins
                faulted = True
                self.stats.program_faults += 1
                message = f"{type(exc).__name__}: {exc}"
                if self._program_errors.get(program.name) != message:
                    log.exception("program %s failed; outputs forced safe this scan", program.name)
                    self._program_errors[program.name] = message
            else:
                if self._program_errors.pop(program.name, None) is not None:
                    log.info("program %s runs normally again", program.name)
        return faulted

    def _write_outputs(self, safe: bool) -> None:
        for binding in self.outputs:
            binding.driver.stage(binding.in_doubt if safe else binding.commanded())

    def _update_stat_tags(self) -> None:
        tags = self._stat_tags
        if not tags:
            return
        s = self.stats
        tags["scan_count"].value = s.count
        tags["scan_duration_last_s"].value = s.last_duration
        tags["scan_jitter_last_s"].value = s.last_jitter
        if s.count % s.refresh_every == 0 or s.count < s.refresh_every:
            tags["scan_overruns"].value = s.overruns
            tags["scan_missed_deadlines"].value = s.missed
            tags["scan_duration_mean_s"].value = s.duration_mean
            tags["scan_duration_max_s"].value = s.duration_max
            tags["scan_duration_p99_s"].value = s.duration_p99
            tags["scan_jitter_p99_s"].value = s.jitter_p99
            tags["scan_jitter_max_s"].value = s.jitter_max
            tags["scan_program_faults"].value = s.program_faults
        tags["supervisor_tripped"].value = self.safe_mode

    # --- the loop -------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None, max_scans: int | None = None, t0: float | None = None) -> None:
        """Scan until stopped, for `duration_s` of clock time, or for `max_scans` scans.

        Deadlines lie on the grid `t0 + n * period` (t0: now, unless the site gives its epoch).
        """
        clock = self.clock
        period = self.period_s
        start = clock.now()
        if t0 is None:
            t0 = start
        n = max(0, math.ceil((start - t0) / period - 1e-9))
        done = 0
        previous = start - period
        end = math.inf if duration_s is None else start + duration_s
        limit = math.inf if max_scans is None else max_scans
        while not self.stop_event.is_set() and done < limit:
            deadline = t0 + n * period
            if deadline >= end - 1e-9:
                break
            woke = clock.sleep_until(deadline)
            if clock.virtual:
                self.scan_once(deadline, period, 0.0)
            else:
                self.scan_once(woke, woke - previous, woke - deadline)
            previous = woke
            n += 1
            done += 1
            finished = clock.now()
            next_deadline = t0 + n * period
            if finished > next_deadline:
                n = self._rebase(t0, n, finished)

    def _rebase(self, t0: float, n: int, finished: float) -> int:
        """Count an overrun and skip to the first deadline still ahead."""
        period = self.period_s
        late_by = finished - (t0 + n * period)
        skipped = int(late_by // period) + 1
        self.stats.overruns += 1
        self.stats.missed += skipped
        if finished - self._overrun_logged_at >= 10.0:
            log.warning(
                "scan overrun: finished %.1f ms past its next deadline, skipping %d deadline(s) "
                "(%d overruns so far)", late_by * 1e3, skipped, self.stats.overruns,
            )
            self._overrun_logged_at = finished
        return n + skipped

    def stop(self) -> None:
        self.stop_event.set()

    def safe_outputs(self) -> None:
        """Stage every output at its safe value (on stop and on supervisor trip)."""
        for binding in self.outputs:
            binding.driver.stage(binding.in_doubt)


class Supervisor:
    """Watches the scan's heartbeat from its own thread and forces safe outputs when it stops.

    Trips when the scan thread has died or has not completed a scan for `missed_scans`
    periods. Stays tripped until the scan has run healthily for `recover_s`.
    """

    def __init__(self, engine: ScanEngine, scan_thread: threading.Thread, missed_scans: int = 5,
                 recover_s: float = 5.0):
        self.engine = engine
        self.scan_thread = scan_thread
        self.limit_s = missed_scans * engine.period_s
        self.recover_s = recover_s
        self.trips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scan-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        engine = self.engine
        last_beat = engine.heartbeat
        last_change = time.monotonic()
        healthy_since: float | None = None
        interval = min(engine.period_s / 2, 0.05)
        while not self._stop.wait(interval):
            now = time.monotonic()
            beat = engine.heartbeat
            if beat != last_beat:
                last_beat, last_change = beat, now
            dead = not self.scan_thread.is_alive()
            late = now - last_change > self.limit_s
            if (dead or late) and not engine.safe_mode:
                self.trips += 1
                engine.safe_mode = True
                engine.safe_outputs()
                reason = "scan thread died" if dead else f"no scan for {now - last_change:.2f} s"
                log.critical("supervisor: %s; every output forced to its safe value", reason)
                healthy_since = None
            elif engine.safe_mode and not dead and not late:
                healthy_since = healthy_since or now
                if now - healthy_since >= self.recover_s:
                    engine.safe_mode = False
                    log.warning("supervisor: scan healthy for %.1f s; outputs released", self.recover_s)
            if dead:
                return
