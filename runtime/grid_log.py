"""The grid operator's log: the signals the TSO asks for, as CSV files in its naming convention.

A hook after each scan samples the image at 10 Hz while a test frequency drives the services
and at 1 Hz in operation (every n-th scan, so at most the scan rate; `[programs.params.log]` of
the grid_services program), and drops the row into a bounded deque: it never waits, never does IO. A writer thread drains the deque
into files and deletes files older than `keep_days` (at least 14).

Nothing is logged while no product is sold and no test runs.

Files: `[Resource]_[Service]_[TestType]_[Area]_[TZ]_[Interval]_[SamplingRate].csv`, e.g.
`SIMCOMMERCIAL_FCR-D-UP_RAMP_SE3_UTC_20260101T000010-20260101T001741_10Hz.csv`; the interval is
`start-end` in `YYYYMMDDThhmmss` local time. Operation is logged in one file per day
(TestType `OPERATION`); a test gets its own file from its first to its last row (written as
`.part` until it ends). Rows: timestamp `YYYYMMDDThhmmss.nnn`, comma separated, decimal point,
at least 3 decimals.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import attrs

from plc.program import ScanContext

log = logging.getLogger(__name__)

PRODUCT_LABELS = (("fcr_n", "FCR-N"), ("fcr_d_up", "FCR-D-UP"), ("fcr_d_down", "FCR-D-DOWN"), ("ffr", "FFR"))
# column, tag, decimals (None: a flag or a state written as an integer)
SIGNALS: tuple[tuple[str, str, int | None], ...] = (
    ("active_power_w", "inverter_p_w", 3),
    ("grid_frequency_hz", "frequency_measured_hz", 4),
    ("applied_frequency_hz", "frequency_input_hz", 4),
    ("filtered_frequency_hz", "frequency_filtered_hz", 4),
    ("baseline_w", "baseline_effective_w", 3),
    ("service_power_w", "service_response_w", 3),
    ("setpoint_w", "inverter_p_setpoint_w", 3),
    ("test_mode", "test_frequency_in_use", None),
    ("frequency_ok", "frequency_ok", None),
    ("site_state", "site_state", None),
    *((f"{key}_capacity_w", f"{key}_capacity_w", 3) for key, _ in PRODUCT_LABELS),
    *((f"{key}_maintained_w", f"{key}_maintained_w", 3) for key, _ in PRODUCT_LABELS),
    ("ffr_state", "ffr_state", None),
    ("soc_pct", "soc_pct", 3),
    ("endurance_up_min", "endurance_up_min", 3),
    ("endurance_down_min", "endurance_down_min", 3),
    *(item for key, _ in PRODUCT_LABELS[:3] for item in (
        (f"nem_allowed_{key}", f"nem_allowed_{key}", None), (f"nem_current_{key}", f"nem_current_{key}", 4),
        (f"aem_active_{key}", f"aem_active_{key}", None), (f"aem_f_ref_{key}_hz", f"aem_f_ref_{key}_hz", 4))),
    ("nem_power_w", "nem_p_w", 3),
)
NAME = re.compile(r"^(?P<head>.+)_(?P<start>\d{8}T\d{6})-(?P<end>\d{8}T\d{6})_(?P<rate>[0-9.]+Hz)\.csv$")
QUEUE_ROWS = 200_000  # about 5 h at 10 Hz if the disk stalls; older rows are dropped and counted


@attrs.frozen
class Session:
    """What the files of one stream are named after."""

    resource: str
    service: str
    test_type: str
    area: str
    rate_hz: float


def stamp(dt: datetime) -> str:
    """`YYYYMMDDThhmmss.nnn`."""
    return dt.strftime("%Y%m%dT%H%M%S.") + f"{dt.microsecond // 1000:03d}"


def tz_token(dt: datetime) -> str:
    """`UTC`, or `UTC+0100` style for other offsets."""
    offset = dt.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def file_name(session: Session, start: datetime, end: datetime) -> str:
    rate = f"{session.rate_hz:g}Hz"
    return (f"{session.resource}_{session.service}_{session.test_type}_{session.area}_{tz_token(start)}_"
            f"{start.strftime('%Y%m%dT%H%M%S')}-{end.strftime('%Y%m%dT%H%M%S')}_{rate}.csv")


class GridLog:
    """Sampling hook (scan thread) plus writer thread for the grid operator's log."""

    def __init__(self, image: Any, directory: Path, resource: str, area: str, tz: tzinfo, rate_hz: float = 1.0,
                 test_rate_hz: float = 10.0, keep_days: float = 14.0, test_session: tuple[str, str] | None = None):
        self.directory = Path(directory)
        self.resource, self.area, self.tz = resource, area, tz
        self.rate_hz, self.test_rate_hz, self.keep_days = rate_hz, test_rate_hz, keep_days
        self.test_session = test_session  # (service, test type) named by `ems prequal`
        self.columns = [(c, image[t], d) for c, t, d in SIGNALS if t in image]
        self.testing = image.get("test_frequency_in_use")
        self.capacities = [(label, image[f"{key}_capacity_w"]) for key, label in PRODUCT_LABELS
                           if f"{key}_capacity_w" in image]
        self.rows: collections.deque = collections.deque(maxlen=QUEUE_ROWS)
        self.dropped = 0
        self.written = 0
        self.files: list[Path] = []
        self._count = 0
        self._was_testing = False
        self._logging = False
        self._session: Session | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: TextIO | None = None
        self._path: Path | None = None
        self._final: Callable[[datetime], Path] | None = None
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._day: tuple[int, int, int] | None = None

    # --- scan thread --------------------------------------------------------------------------------
    def __call__(self, ctx: ScanContext) -> None:
        testing = bool(self.testing is not None and self.testing.value)
        if not testing and not any(tag.value for _, tag in self.capacities):
            if self._logging:  # nothing sold, no test: nothing for the TSO (and no SD card wear)
                self._logging = False
                self.rows.append(None)  # the writer closes the open file
            return
        self._logging = True
        rate = self.test_rate_hz if testing else self.rate_hz
        every = max(1, int(round(1.0 / (rate * ctx.period_s))))  # counted in scans: immune to jitter
        if testing != self._was_testing:
            self._was_testing, self._count = testing, 0
        count = self._count
        self._count = count + 1
        if count % every:
            return
        wall = ctx.wall_s
        if len(self.rows) == self.rows.maxlen:
            self.dropped += 1
        self.rows.append((wall, testing, rate, tuple(tag.value for _, tag, _ in self.columns),
                          tuple(tag.value > 0 for _, tag in self.capacities)))

    # --- writer thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="grid-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        self._drain()
        self._close()
        if self.dropped:
            log.warning("grid log: %d rows dropped (writer too slow)", self.dropped)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._drain()
            except OSError as exc:  # a full or failing disk must not kill the thread
                log.error("grid log: cannot write: %s", exc)

    def _drain(self) -> None:
        rows = self.rows
        while rows:
            row = rows.popleft()
            if row is None:
                self._close()
                self._session = None
                continue
            wall, testing, rate, values, sold = row
            when = datetime.fromtimestamp(round(wall, 3), self.tz)  # to the ms: no float residue
            self._route(when, testing, rate, sold)
            assert self._out is not None
            self._out.write(self._format(when, values))
            self._last = when
            self.written += 1
        if self._out is not None:
            self._out.flush()

    def _format(self, when: datetime, values: tuple) -> str:
        cells = [stamp(when)]
        for (_, _, decimals), value in zip(self.columns, values):
            if value is None or (isinstance(value, float) and value != value):
                cells.append("")
            elif decimals is None:
                cells.append(str(int(value)))
            else:
                cells.append(f"{value:.{decimals}f}")
        return ",".join(cells) + "\n"

    def _route(self, when: datetime, testing: bool, rate: float, sold: tuple[bool, ...]) -> None:
        """Open the file this row belongs in: a new test, the end of a test, a new day."""
        service = "-".join(label for (label, _), on in zip(self.capacities, sold) if on) or "NONE"
        if testing:
            name, kind = self.test_session or (service, "TEST")
            session = Session(self.resource, name, kind, self.area, rate)
        else:
            session = Session(self.resource, service, "OPERATION", self.area, rate)
        day = (when.year, when.month, when.day)
        if session == self._session and (testing or day == self._day):
            return
        self._close()
        self._session, self._day = session, day
        if testing:
            self._open_test(session, when)
        else:
            self._open_day(session, when)
        self._purge(when)

    def _open_day(self, session: Session, when: datetime) -> None:
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        path = self.directory / file_name(session, start, start + timedelta(days=1))
        new = not path.exists()
        self._out = path.open("a", encoding="utf-8", newline="")
        self._path, self._final = path, None
        if new:
            self._out.write(self._header())
            self.files.append(path)

    def _open_test(self, session: Session, when: datetime) -> None:
        path = self.directory / (file_name(session, when, when) + ".part")
        self._out = path.open("w", encoding="utf-8", newline="")
        self._out.write(self._header())
        self._path, self._first = path, when
        self._final = lambda end: self.directory / file_name(session, when, end)

    def _close(self) -> None:
        if self._out is None:
            return
        self._out.close()
        self._out = None
        if self._final is not None and self._path is not None:
            final = self._final(self._last or self._first or datetime.now(self.tz))
            self._path.replace(final)
            self.files.append(final)
        self._final = None

    def _header(self) -> str:
        return ",".join(["timestamp"] + [c for c, _, _ in self.columns]) + "\n"

    def _purge(self, now: datetime) -> None:
        """Delete files whose interval ended more than keep_days ago."""
        horizon = now - timedelta(days=self.keep_days)
        for path in self.directory.glob("*.csv"):
            match = NAME.match(path.name)
            if not match:
                continue
            end = datetime.strptime(match["end"], "%Y%m%dT%H%M%S").replace(tzinfo=now.tzinfo)
            if end < horizon:
                try:
                    path.unlink()
                    log.info("grid log: deleted %s (older than %g days)", path.name, self.keep_days)
                except OSError as exc:
                    log.error("grid log: cannot delete %s: %s", path.name, exc)


def attach(site: Any, data_dir: Path, test_session: tuple[str, str] | None = None) -> GridLog | None:
    """Hook the grid log of the site's grid_services program (if any, and enabled) to its scan."""
    program = next((p for p in site.programs if getattr(p, "kind", "") == "grid_services"), None)
    if program is None or not program.p.log.enabled:
        return None
    cfg = program.p.log
    tz = ZoneInfo(site.io_map.site.timezone)
    grid_log = GridLog(site.image, Path(data_dir) / cfg.directory, cfg.resource, cfg.area, tz, cfg.rate_hz,
                       cfg.test_rate_hz, cfg.keep_days, test_session)
    site.engine.after_scan.append(grid_log)
    site.mirrors.append(grid_log)
    return grid_log

