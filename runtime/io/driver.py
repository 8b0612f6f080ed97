"""The IO driver contract: drivers run beside the scan, never inside it.

A driver owns a connection to one device. Its thread writes the outputs the scan last staged,
reads the device's inputs and publishes them as one immutable tuple of samples. The scan
only copies that tuple (read phase) and stages new outputs (write phase), so a dead or slow
device can make values stale or bad, but can never make a scan late.

The IO cycle, as a PLC's: each poll is timed to end just before a scan deadline (it starts
`lead` earlier: the slowest of its last polls of the same shape, plus a margin), so the scan
uses inputs a few ms old rather than up to a period old; and the scan's outputs wake the
thread, which writes them at once rather than at its next poll.

Subclasses implement `open`, `read_inputs`, `write_outputs` and `close`. Everything else
(the poll thread, restart with backoff when a call raises, replacement of a hung thread,
fault counting and logging once per change) lives here, once.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, NamedTuple

import attrs

from plc.tags import Quality
from runtime.clock import Clock

log = logging.getLogger(__name__)

GOOD = Quality.GOOD

LEAD_MARGIN_S = 0.008  # a poll is timed to end this long before the scan deadline it feeds (a stall of
# a few ms on a loaded machine must not push a read past the scan: that costs a whole period)
LEAD_WINDOW = 16  # the last polls of a shape whose slowest times the next one
MAX_LEAD_FRACTION = 0.9  # a poll starts at most this part of its period before the deadline


class Sample(NamedTuple):
    """One published reading. Drivers may publish plain (value, quality, stamp) tuples too."""

    value: Any
    quality: Quality
    stamp: float


Reading = tuple[Any, Quality, float]
"""What a driver publishes per input: a `Sample` or a plain tuple of the same three."""


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()
"""Returned by `read_inputs` for a point with no new reading: the old sample ages into STALE."""


@attrs.frozen
class Point:
    """One tag bound to one device point (register, signal, pin or plant variable)."""

    tag: str
    address: Any
    scale: float = 1.0
    offset: float = 0.0
    is_bool: bool = False
    # Turns an engineering value into the tag's type and checks its range; raising marks it BAD.
    convert: Callable[[Any], Any] | None = attrs.field(default=None, eq=False, repr=False)

    def decoder(self) -> Callable[[Any], Any]:
        """One callable from a raw reading to the checked tag value (scale, offset, type, range)."""
        convert = self.convert
        if convert is None:
            return self.to_engineering
        if self.is_bool or (self.scale == 1.0 and self.offset == 0.0):
            return convert
        scale, offset = self.scale, self.offset
        return lambda raw: convert(raw * scale + offset)

    def to_engineering(self, raw: Any) -> Any:
        if self.is_bool or raw is None:
            return raw
        return raw * self.scale + self.offset

    def to_raw(self, value: Any) -> Any:
        if self.is_bool or value is None:  # None: no command
            return value
        return (value - self.offset) / self.scale


@attrs.frozen
class DriverSettings:
    """Timing shared by every driver kind (from the io_map's [[devices]] entry)."""

    poll_period_s: float = 0.1
    hang_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class Driver:
    """Base of all drivers. See the module docstring for the contract."""

    kind: ClassVar[str] = "abstract"
    supports_virtual_time: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        inputs: Sequence[Point],
        outputs: Sequence[Point],
        clock: Clock,
        settings: DriverSettings = DriverSettings(),
    ):
        self.name = name
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.clock = clock
        self.settings = settings
        bad = Sample(None, Quality.UNINIT, float("-inf"))
        self.latest: tuple[Reading, ...] = (bad,) * len(self.inputs)
        self._decoders = [point.decoder() for point in self.inputs]
        self._staged: tuple[Any, ...] | None = None
        self._written: tuple[Any, ...] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stage() and stop(): the poll thread writes at once
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._poll_started: float | None = None
        self._opened = False
        self._next_poll = float("-inf")
        self._epoch: float | None = None  # the scan's deadline grid, when the site gives it
        self._durations: dict[Hashable, deque[float]] = {}  # poll shape -> its last durations
        self._backoff = settings.backoff_initial_s
        self._last_error = ""
        self._point_errors: dict[str, str] = {}
        self.fault_count = 0
        self.restart_count = 0
        self.poll_count = 0

    # --- device side: subclasses implement these ------------------------------------------------
    def open(self) -> None:
        """Connect to the device. May raise."""

    def read_inputs(self, now: float) -> Sequence[Any]:
        """Raw values aligned with `self.inputs`: a number, None (bad) or UNCHANGED. May raise."""
        raise NotImplementedError(f"{type(self).__name__} must implement read_inputs")

    def write_outputs(self, raw: Sequence[Any]) -> None:
        """Send raw output values aligned with `self.outputs`. May raise."""

    def close(self) -> None:
        """Release the connection. Must not raise."""

    def poll_shape(self, at: float) -> Hashable:
        """What a poll at `at` will read, as a key: polls of one shape take about as long, and
        the lead of each is timed by its own kind (the modbus driver: the register blocks due)."""
        return None

    # --- scan side --------------------------------------------------------------------------
    def stage(self, values: tuple[Any, ...]) -> None:
        """Hand the outputs of this scan to the driver (engineering units, aligned with outputs).

        The poll thread wakes and writes them at once, not at its next poll: an output reaches
        the device right after the scan that decided it, and its last write before a crash is a
        fixed step after the scan's last message (a new cluster leader times a dead unit's
        revert from that, programs/cluster/membership.py)."""
        self._staged = values
        if self.outputs:
            self._wake.set()

    def check_hang(self, now: float) -> None:
        """Replace the poll thread if a device call has been stuck longer than its timeout."""
        started = self._poll_started
        if started is None or now - started <= self.settings.hang_timeout_s or self.clock.virtual:
            return
        self._poll_started = None
        self._fault(f"no answer for {now - started:.1f} s; abandoning the hung call and restarting")
        self._generation += 1
        self.restart_count += 1
        self._opened = False
        self._spawn()

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, epoch: float | None = None) -> None:
        """Start polling. With `epoch` (the origin of the scan's deadline grid), each poll is timed
        to end just before a deadline `epoch + k * poll_period_s` (`lead_s`): the scan reads
        inputs a few ms old, and the poll is done before the scan wakes (no wait for the GIL).
        Without it, polls follow each other a period apart from the first."""
        if self.clock.virtual:
            if not self.supports_virtual_time:
                raise RuntimeError(f"device {self.name!r}: driver {self.kind!r} cannot run on virtual time")
            return
        self._epoch = epoch
        self._spawn()

    def stop(self, safe_outputs: tuple[Any, ...] | None = None, timeout_s: float = 2.0) -> None:
        """Write the safe outputs one last time, stop the thread and close the device."""
        if safe_outputs is not None:
            self._staged = safe_outputs
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("device %s: poll thread did not stop within %.1f s", self.name, timeout_s)
        elif safe_outputs is not None:
            self._flush_outputs()
        self._close_quietly()

    def step_virtual(self, now: float) -> None:
        """One poll in the scan's own thread; used only with the virtual clock (deterministic)."""
        if now + 1e-9 < self._next_poll:
            return
        self._next_poll = max(self._next_poll + self.settings.poll_period_s, now)
        try:
            self._poll_once(now)
        except Exception as exc:  # noqa: BLE001 - a driver error must never break the scan
            self._on_error(exc)
            self._next_poll = now + self._backoff
            self._backoff = min(self._backoff * 2, self.settings.backoff_max_s)

    @property
    def healthy(self) -> bool:
        return self._opened and not self._last_error

    # --- internals --------------------------------------------------------------------------
    def _spawn(self) -> None:
        generation = self._generation
        self._thread = threading.Thread(
            target=self._run, args=(generation,), name=f"driver-{self.name}-{generation}", daemon=True
        )
        self._thread.start()

    def lead_s(self, at: float) -> float:
        """How long before the deadline `at` its poll starts: the slowest of the last polls of
        its shape plus a margin (of any shape while this one has none; half a period at first)."""
        period = self.settings.poll_period_s
        every = [d for durations in self._durations.values() for d in durations]
        lead = min(max(every, default=period / 2 - LEAD_MARGIN_S) + LEAD_MARGIN_S, period * MAX_LEAD_FRACTION)
        own = self._durations.get(self.poll_shape(at - lead))
        if not own:
            return lead
        return min(max(own) + LEAD_MARGIN_S, period * MAX_LEAD_FRACTION)

    def _start_after(self, t: float) -> float:
        """The first poll start at or after `t`: a deadline of the scan's grid less its lead."""
        epoch, period = self._epoch, self.settings.poll_period_s
        if epoch is None:
            return t
        deadline = epoch + math.ceil((t - epoch) / period - 1e-9) * period
        start = deadline - self.lead_s(deadline)
        if start < t:
            deadline += period
            start = deadline - self.lead_s(deadline)
        return max(start, t)

    def _following(self, planned: float) -> float:
        """The next poll's start after one planned at `planned`: on the grid, the next
        deadline's (a lead that grew may move it earlier, never by half a period); without
        one, a period on. A slow poll re-bases, never bursts."""
        now = self.clock.now()
        if self._epoch is None:
            return max(planned + self.settings.poll_period_s, now)
        return self._start_after(max(planned + self.settings.poll_period_s / 2, now))

    def _timed(self, shape: Hashable, started: float, opened: bool) -> None:
        """Remember how long a poll of `shape` took (not one that connected: that is rare and long)."""
        if opened:
            return
        durations = self._durations.get(shape)
        if durations is None:
            durations = self._durations[shape] = deque(maxlen=LEAD_WINDOW)
        durations.append(self.clock.now() - started)

    def _run(self, generation: int) -> None:
        deadline = self.clock.now()  # the first poll at once, the next ones on the grid
        while not self._stop.is_set() and generation == self._generation:
            started, opening = self.clock.now(), not self._opened
            shape = self.poll_shape(started)
            try:
                self._poll_once(started, generation)
            except Exception as exc:  # noqa: BLE001 - any device error: count it, back off, retry
                if generation != self._generation:
                    return
                self._on_error(exc)
                if self._stop.wait(self._backoff):
                    break
                self._backoff = min(self._backoff * 2, self.settings.backoff_max_s)
                deadline = self._start_after(self.clock.now())
                continue
            self._timed(shape, started, opening)
            deadline = self._following(deadline)
            try:
                self._wait_writing(deadline, generation)
            except Exception as exc:  # noqa: BLE001 - a failed write: as a failed poll
                if generation != self._generation:
                    return
                self._on_error(exc)
                deadline = self._start_after(self.clock.now())
        if generation == self._generation and self._stop.is_set():
            self._flush_outputs()

    def _wait_writing(self, deadline: float, generation: int) -> None:
        """Wait for the next poll, writing each scan's outputs as they are staged."""
        while not self._stop.is_set() and generation == self._generation:
            now = self.clock.now()
            if now >= deadline or not self._wake.wait(deadline - now):
                return
            self._wake.clear()
            if self._stop.is_set() or not self._opened or not self._unwritten:
                continue
            self._poll_started = self.clock.now()
            self._write_staged()
            self._poll_started = None

    def _poll_once(self, now: float, generation: int | None = None) -> None:
        self._poll_started = now
        if not self._opened:
            self.open()
            self._opened = True
        if self._unwritten:
            self._write_staged()
        raw = self.read_inputs(now)
        self._poll_started = None
        if generation is not None and generation != self._generation:
            return  # this thread was abandoned as hung; its late results are not trusted
        self._publish(raw, self.clock.now() if not self.clock.virtual else now)
        self.poll_count += 1
        if self._last_error:
            log.info("device %s: communication restored", self.name)
            self._last_error = ""
        self._backoff = self.settings.backoff_initial_s

    @property
    def _unwritten(self) -> bool:
        """The scan staged outputs this driver has not written yet."""
        return self._staged is not None and self._staged is not self._written

    def _write_staged(self) -> None:
        staged = self._staged
        assert staged is not None
        self.write_outputs([p.to_raw(v) for p, v in zip(self.outputs, staged)])
        self._written = staged

    def _flush_outputs(self) -> None:
        if self._staged is None or not self._opened:
            return
        try:
            self._write_staged()
        except Exception as exc:  # noqa: BLE001 - stopping: say so and go on closing the others
            log.error("device %s: could not write safe outputs on stop: %s", self.name, exc)

    def _publish(self, raw: Sequence[Any], stamp: float) -> None:
        if len(raw) != len(self.inputs):
            raise RuntimeError(f"device {self.name!r}: read {len(raw)} values for {len(self.inputs)} inputs")
        if None not in raw and UNCHANGED not in raw:
            try:  # the common case: every point read and valid, one pass without per-point branches
                self.latest = tuple([(decode(value), GOOD, stamp) for decode, value in zip(self._decoders, raw)])
                return
            except (TypeError, ValueError, OverflowError):
                pass  # some value is bad: sort it out point by point below
        old = self.latest
        samples = []
        for point, value, previous in zip(self.inputs, raw, old):
            if value is UNCHANGED:
                samples.append(previous)
            elif value is None:
                samples.append(Sample(previous[0], Quality.BAD, stamp))
            else:
                samples.append(self._sample(point, value, previous, stamp))
        self.latest = tuple(samples)

    def _sample(self, point: Point, raw: Any, previous: Reading, stamp: float) -> Sample:
        try:
            return Sample(point.decoder()(raw), Quality.GOOD, stamp)
        except (TypeError, ValueError, OverflowError) as exc:
            self._point_fault(point, exc)
            return Sample(previous[0], Quality.BAD, stamp)

    def _point_fault(self, point: Point, exc: Exception) -> None:
        message = f"{point.tag}: {exc}"
        if self._point_errors.get(point.tag) != message:
            log.warning("device %s: bad value for %s", self.name, message)
            self._point_errors[point.tag] = message

    def _on_error(self, exc: BaseException) -> None:
        self._poll_started = None
        self._fault(f"{type(exc).__name__}: {exc}")
        self._close_quietly()

    def _fault(self, message: str) -> None:
        self.fault_count += 1
        stamp = self.clock.now()
        self.latest = tuple(Sample(s[0], Quality.BAD, stamp) for s in self.latest)
        if message != self._last_error:  # log once per change, not once per retry
            log.warning("device %s: %s", self.name, message)
            self._last_error = message

    def _close_quietly(self) -> None:
        if not self._opened:
            return
        self._opened = False
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001 - a device that fails to close is closed for us anyway
            log.debug("device %s: close failed: %s", self.name, exc)
