"""The grid operator's log: the signals the TSO asks for, as CSV files in its naming convention.

A hook after each scan samples the image at 10 Hz while a test frequency drives the services
and at 1 Hz in operation (every n-th scan, so at most the scan rate; `[programs.params.log]` of
the grid_services program), and drops the row into a bounded deque: it never waits, never does
IO. A writer thread drains the deque into files and deletes files older than `keep_days` (at
least 14), but only while the wall clock is trusted: synchronized, and not behind the newest
file (a Pi that boots with its clock a year ahead must not delete the TSO's records). Nothing
is logged while no product is sold and no test runs.

The format is the Nordic TSOs' (TR v1.1 section 6.2.1 and Table 18; the text at hand is the
companion "Test Program for Prequalification of FCR in the Nordic Synchronous Area", 28 March
2025, section 11.1 and its Table 19 "Data exchange", which both name):

* ASCII, comma separated, decimal point, every line ended by CRLF; a header row, then one row
  per sample: `DateTime` (`YYYYMMDDThhmmss.nnn`, the site's time zone) and the signals.
* File name `[Resource]_[Service]_[TestType]_[Area]_[Timezone]_[Interval]_[SamplingRate].csv`:
  Service `Fcrn`, `FcrdUp`, `FcrdDo`; Interval `YYYYMMDDThhmm-YYYYMMDDThhmm` (the minutes of the
  first and the last row; a day file `...T0000-...T2359`); SamplingRate the nominal interval
  between rows, in milliseconds below 1 s (`100ms`), else in seconds (`1s`); TestType `Operation`
  for operation. E.g. `SIMCOMMERCIAL_FcrdUp_Ramp_SE3_UTC_20260101T0000-20260101T0017_100ms.csv`.
* A sine test gives one file per sine period, the period in the TestType (`Sine40`) and after
  every column header (`DateTime40,InsAcPow40,GridFreq40,...`), as the Test Program asks.

Ours, not the TSOs': the Service `Ffr` (FFR is not in the FCR documents) and, when several
products are sold, their tokens joined by `-` (`Fcrn-FcrdUp`); the TestType tokens of the tests
(the TR's Appendix 2 test ids were not at hand): `Step`, `Sine<period>`, `Ramp`, `Linearity`,
`Ler`, `Ffr<level>` (`Ffr49.5`), `Test` for a test frequency written by another client; the
Timezone `UTC` or `UTC+hhmm` (the offset of the file's first row).

SIGNALS declares every column once: its header, the tags it is made of, the conversion to the
logged unit (W -> MW with 7 decimals: 0.1 W is visible), which files carry it (Table 18/19 has
columns for tests, for operation or both) and whether the header is the table's or ours
(`ours=True`, named in the table's style). Operation is logged in one file per day; a test gets
its own file from its first to its last row, written as `.part` until it ends.
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
from programs.enums import SiteState
from programs.grid.products import FCR_D_DOWN, FCR_D_UP, FCR_N, ProductSpec

log = logging.getLogger(__name__)

SERVICES = (("fcr_n", "Fcrn"), ("fcr_d_up", "FcrdUp"), ("fcr_d_down", "FcrdDo"), ("ffr", "Ffr"))  # Ffr: ours
SERVICE_TOKENS = dict(SERVICES)
FCR_SPECS: tuple[tuple[str, ProductSpec], ...] = (("Fcrn", FCR_N), ("FcrdUp", FCR_D_UP), ("FcrdDo", FCR_D_DOWN))
CONT_MODES = {"Fcrn": "FCRN1", "FcrdUp": "FCRDUP1", "FcrdDo": "FCRDDOWN1"}  # ours: one parameter set a product
OPERATION = "Operation"
RUN = int(SiteState.RUN)

MW = ".7f"  # 0.1 W visible
NAN = float("nan")  # an empty cell
HZ = ".4f"
INT = "d"  # a flag (0/1) or a state
TEXT = "s"


@attrs.frozen
class Signal:
    """One column: `value(*tag values)` in the unit, written with format `fmt`."""

    header: str
    tags: tuple[str, ...]
    value: Callable[..., Any]
    fmt: str
    files: str = "both"  # "test", "operation" or "both"
    ours: bool = False  # True: not a Table 18/19 header (named in its style)


def _mw(w: float) -> float:
    return w / 1e6


def _same(x: Any) -> Any:
    return x


def _flag(x: Any) -> int:
    return int(bool(x))


def _fcr_signals() -> list[Signal]:
    """The per-product columns of the table, in its order."""
    out: list[Signal] = []
    for token, spec in FCR_SPECS:
        out.append(Signal(f"ContMode_{token}", (f"{spec.key}_capacity_w",),
                          lambda c, mode=CONT_MODES[token]: mode if c > 0 else "", TEXT))
    for token, spec in FCR_SPECS:  # maintained capacity
        out.append(Signal(f"Cap_{token}", (f"{spec.key}_maintained_w",), _mw, MW))
    for token, spec in FCR_SPECS:  # the product's controller responds: sold, site running, frequency there
        out.append(Signal(f"ContStatus_{token}", (f"{spec.key}_capacity_w", "site_state", "frequency_ok"),
                          lambda c, state, ok: int(c > 0 and state == RUN and bool(ok)), INT))
    for token, spec in FCR_SPECS:  # MW/Hz: the maintained capacity over the product's band
        out.append(Signal(f"RegStr_{token}", (f"{spec.key}_maintained_w",),
                          lambda w, band=spec.band_hz: w / band / 1e6, MW, files="operation"))
    return out


def _ler_signals() -> list[Signal]:
    """Remaining endurance and NEM/AEM per product (LER entities)."""
    out = [Signal("ResSize_Fcrn", ("fcr_n_capacity_w", "endurance_up_min", "endurance_down_min"),
                  lambda c, up, down: min(up, down) if c > 0 else NAN, ".3f"),  # empty: not sold
           Signal("ResSize_FcrdUp", ("fcr_d_up_capacity_w", "endurance_up_min"),
                  lambda c, up: up if c > 0 else NAN, ".3f"),
           Signal("ResSize_FcrdDo", ("fcr_d_down_capacity_w", "endurance_down_min"),
                  lambda c, down: down if c > 0 else NAN, ".3f")]
    for token, spec in FCR_SPECS:  # the product's NEM power, as programs/grid/ler.py makes it
        out.append(Signal(f"NEM_MW_{token}", (f"{spec.key}_capacity_w", f"nem_current_{spec.key}"),
                          lambda c, current, gain=spec.nem_gain: gain * c * current / 1e6, MW))
    for token, spec in FCR_SPECS:
        out.append(Signal(f"NEM_{token}", (f"nem_allowed_{spec.key}",), _flag, INT))
    for token, spec in FCR_SPECS:
        out.append(Signal(f"AEM_{token}", (f"aem_active_{spec.key}",), _flag, INT))
    return out


def _our_signals() -> list[Signal]:
    out = [Signal("FiltFreq", ("frequency_filtered_hz",), _same, HZ, ours=True),
           Signal("InvSetP", ("inverter_p_setpoint_w",), _mw, MW, ours=True),
           Signal("TestMode", ("test_frequency_in_use",), _flag, INT, ours=True),
           Signal("FreqOk", ("frequency_ok",), _flag, INT, ours=True),
           Signal("SiteState", ("site_state",), int, INT, ours=True)]
    out += [Signal(f"SoldCap_{token}", (f"{key}_capacity_w",), _mw, MW, ours=True) for key, token in SERVICES]
    out += [Signal("Cap_Ffr", ("ffr_maintained_w",), _mw, MW, ours=True),
            Signal("Activated_Ffr", ("ffr_p_w",), _mw, MW, ours=True),
            Signal("FfrState", ("ffr_state",), int, INT, ours=True)]
    for token, spec in FCR_SPECS:
        out += [Signal(f"NEMAllowed_{token}", (f"nem_allowed_{spec.key}",), int, INT, ours=True),
                Signal(f"NEMCurrent_{token}", (f"nem_current_{spec.key}",), _same, ".4f", ours=True),
                Signal(f"AEMFref_{token}", (f"aem_f_ref_{spec.key}_hz",), _same, HZ, ours=True)]
    out.append(Signal("NEM_MW", ("nem_p_w",), _mw, MW, ours=True))
    return out


SIGNALS: tuple[Signal, ...] = (
    Signal("InsAcPow", ("inverter_p_w",), _mw, MW),  # injection +, absorption -
    Signal("GridFreq", ("frequency_measured_hz",), _same, HZ),
    Signal("ApplFreqSig", ("frequency_input_hz",), _same, HZ, files="test"),  # the frequency the control took
    *_fcr_signals(),
    Signal("Pmin", ("limit_charge_w",), lambda w: -w / 1e6, MW),  # the limits now: variable, so every row
    Signal("Pmax", ("limit_discharge_w",), _mw, MW),
    Signal("CalcBaseline", ("baseline_effective_w",), _mw, MW),
    Signal("ContOutSig", ("service_response_w",), _mw, MW),  # the services' response (MW)
    *(Signal(f"Activated_{token}", (f"{spec.key}_p_w",), _mw, MW, files="operation") for token, spec in FCR_SPECS),
    *_ler_signals(),
    Signal("SOC", ("soc_pct",), _same, ".3f"),
    *_our_signals(),
)
NAME = re.compile(r"^(?P<head>.+)_(?P<start>\d{8}T\d{4}(?:\d{2})?)-(?P<end>\d{8}T\d{4}(?:\d{2})?)_"
                  r"(?P<rate>\d+(?:ms|s)|[0-9.]+Hz)\.csv$")  # also the seconds and Hz of files written before
QUEUE_ROWS = 200_000  # about 5 h at 10 Hz if the disk stalls; older rows are dropped and counted


@attrs.frozen
class TestSession:
    """What `ems prequal` names a test's file after; `suffix` goes after every column header."""

    __test__ = False  # not a pytest test class

    service: str  # Fcrn, FcrdUp, FcrdDo, Ffr
    test_type: str  # Step, Ramp, Sine40, ...
    suffix: str = ""  # a sine sweep's period (TP 11.1)


@attrs.frozen
class Session:
    """What the files of one stream are named after."""

    resource: str
    service: str
    test_type: str
    area: str
    interval_ms: int  # nominal time between rows
    suffix: str = ""


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


def rate_token(interval_ms: int) -> str:
    """The nominal time between samples: `100ms` below 1 s, else in seconds (`1s`, `2.5s`)."""
    return f"{interval_ms}ms" if interval_ms < 1000 else f"{interval_ms / 1000:g}s"


def file_name(session: Session, start: datetime, end: datetime) -> str:
    return (f"{session.resource}_{session.service}_{session.test_type}_{session.area}_{tz_token(start)}_"
            f"{start.strftime('%Y%m%dT%H%M')}-{end.strftime('%Y%m%dT%H%M')}_{rate_token(session.interval_ms)}.csv")


class GridLog:
    """Sampling hook (scan thread) plus writer thread for the grid operator's log."""

    def __init__(self, image: Any, directory: Path, resource: str, area: str, tz: tzinfo, rate_hz: float = 1.0,
                 test_rate_hz: float = 10.0, keep_days: float = 14.0, test_session: TestSession | None = None,
                 clock_synced: Callable[[], bool] = lambda: True):
        self.directory = Path(directory)
        self.clock_synced = clock_synced  # the site's ClockWatch: files are deleted by age only when True
        self.purge_held = False  # the last purge deleted nothing because the clock was not trusted
        self.resource, self.area, self.tz = resource, area, tz
        self.rate_hz, self.test_rate_hz, self.keep_days = rate_hz, test_rate_hz, keep_days
        self.test_session = test_session  # named by `ems prequal` (None: `Test`, the products sold)
        signals = [s for s in SIGNALS if all(t in image for t in s.tags)]
        names = list(dict.fromkeys(t for s in signals for t in s.tags))
        self.tags = [image[n] for n in names]
        where = {n: i for i, n in enumerate(names)}
        columns = [(s, tuple(where[t] for t in s.tags)) for s in signals]
        self.columns = {True: [c for c in columns if c[0].files != "operation"],  # testing -> its columns
                        False: [c for c in columns if c[0].files != "test"]}
        self.testing = image.get("test_frequency_in_use")
        self.capacities = [(token, image[f"{key}_capacity_w"]) for key, token in SERVICES
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
        self._cols: list[tuple[Signal, tuple[int, ...]]] = []
        self._path: Path | None = None
        self._final: Callable[[datetime], Path] | None = None
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._day: tuple[int, int, int] | None = None

    # --- scan thread --------------------------------------------------------------------------------
    def name_test(self, session: TestSession) -> None:
        """From the next row on, the test's rows go into a file named for `session` (a new sine period)."""
        self.test_session = session

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
        if len(self.rows) == self.rows.maxlen:
            self.dropped += 1
        self.rows.append((ctx.wall_s, testing, int(round(every * ctx.period_s * 1000.0)),
                          tuple(tag.value for tag in self.tags), tuple(tag.value > 0 for _, tag in self.capacities),
                          self.test_session))

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
            wall, testing, interval_ms, values, sold, test_session = row
            when = datetime.fromtimestamp(round(wall, 3), self.tz)  # to the ms: no float residue
            self._route(when, testing, interval_ms, sold, test_session)
            assert self._out is not None
            self._out.write(self._format(when, values))
            self._last = when
            self.written += 1
        if self._out is not None:
            self._out.flush()

    def _format(self, when: datetime, values: tuple) -> str:
        cells = [stamp(when)]
        for signal, where in self._cols:
            raw = [values[i] for i in where]
            if any(v is None or (isinstance(v, float) and v != v) for v in raw):
                cells.append("")
                continue
            value = signal.value(*raw)
            if isinstance(value, float) and value != value:
                cells.append("")
            else:
                cells.append(format(int(value) if signal.fmt == INT else value, signal.fmt))
        return ",".join(cells) + "\r\n"

    def _route(self, when: datetime, testing: bool, interval_ms: int, sold: tuple[bool, ...],
               test_session: TestSession | None) -> None:
        """Open the file this row belongs in: a new test or sine period, the end of a test, a new day."""
        service = "-".join(token for (token, _), on in zip(self.capacities, sold) if on) or "None"
        if testing:
            named = test_session or TestSession(service, "Test")
            session = Session(self.resource, named.service, named.test_type, self.area, interval_ms, named.suffix)
        else:
            session = Session(self.resource, service, OPERATION, self.area, interval_ms)
        day = (when.year, when.month, when.day)
        if session == self._session and (testing or day == self._day):
            return
        self._close()
        self._session, self._day = session, day
        self._cols = self.columns[testing]
        if testing:
            self._open_test(session, when)
        else:
            self._open_day(session, when)
        self._purge(when)

    def _open_day(self, session: Session, when: datetime) -> None:
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        path = self.directory / file_name(session, start, start.replace(hour=23, minute=59))
        new = not path.exists()
        self._out = path.open("a", encoding="ascii", newline="")
        self._path, self._final = path, None
        if new:
            self._out.write(self._header(session))
            self.files.append(path)

    def _open_test(self, session: Session, when: datetime) -> None:
        path = self.directory / (file_name(session, when, when) + ".part")
        self._out = path.open("w", encoding="ascii", newline="")
        self._out.write(self._header(session))
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

    def _header(self, session: Session) -> str:
        return ",".join(h + session.suffix for h in ["DateTime", *(s.header for s, _ in self._cols)]) + "\r\n"

    def _purge(self, now: datetime) -> None:
        """Delete files whose interval ended more than keep_days ago, if the clock is trusted:
        synchronized, and not more than a minute behind the start of the newest file (else the
        clock or the files' times are wrong). A clock that jumped never deletes a file."""
        files = []
        for path in self.directory.glob("*.csv"):
            match = NAME.match(path.name)
            if match:
                files.append((path, _local(match["start"], now), _local(match["end"], now)))
        if not self._clock_trusted(now, max((start for _, start, _ in files), default=None)):
            return
        horizon = now - timedelta(days=self.keep_days)
        for path, _, end in files:
            if end < horizon:
                try:
                    path.unlink()
                    log.info("grid log: deleted %s (older than %g days)", path.name, self.keep_days)
                except OSError as exc:
                    log.error("grid log: cannot delete %s: %s", path.name, exc)

    def _clock_trusted(self, now: datetime, newest: datetime | None) -> bool:
        synced = self.clock_synced()
        behind = newest is not None and now < newest - timedelta(minutes=1)
        trusted = synced and not behind
        if not trusted and not self.purge_held:
            why = "not synchronized" if not synced else f"behind the newest file ({newest:%Y-%m-%d %H:%M})"
            log.warning("grid log: the clock reads %s and is %s: no file is deleted by age until it is right",
                        f"{now:%Y-%m-%d %H:%M}", why)
        elif trusted and self.purge_held:
            log.info("grid log: the clock is trusted again; files older than %g days are deleted", self.keep_days)
        self.purge_held = not trusted
        return trusted


def _local(text: str, now: datetime) -> datetime:
    """A file name's time (minutes, or seconds in the format before) in the zone of `now`."""
    return datetime.strptime(text, "%Y%m%dT%H%M%S" if len(text) == 15 else "%Y%m%dT%H%M").replace(tzinfo=now.tzinfo)


def attach(site: Any, data_dir: Path, test_session: TestSession | None = None) -> GridLog | None:
    """Hook the grid log of the site's grid_services program (if any, and enabled) to its scan."""
    program = next((p for p in site.programs if getattr(p, "kind", "") == "grid_services"), None)
    if program is None or not program.p.log.enabled:
        return None
    cfg = program.p.log
    tz = ZoneInfo(site.io_map.site.timezone)
    watch = site.engine.clock_watch
    grid_log = GridLog(site.image, Path(data_dir) / cfg.directory, cfg.resource, cfg.area, tz, cfg.rate_hz,
                       cfg.test_rate_hz, cfg.keep_days, test_session, lambda: watch.synced)
    site.engine.after_scan.append(grid_log)
    site.mirrors.append(grid_log)
    return grid_log
