"""Time series for PV, load and grid noise: CSV files and seeded generators.

Everything is precomputed once as a 1-second grid (numpy), then kept as a
Python list so that a lookup in ``Plant.step`` is an index plus a linear
interpolation. Generated series cover ``profile_horizon_s`` (48 h by
default, two different days) and then repeat. CSV series are resampled onto
the same 1 s grid (finer detail in the file is lost), except a grid frequency
profile, which keeps its own resolution (its finest step, down to 10 ms: a
10 Hz recording replays at 10 Hz) and may mark a bad sample with NaN (the
meter reads no frequency there; each is reported with its line); past the last row
they either loop (period = last ``t_s``; make the last row equal the first
for a seamless loop) or hold the last value.

Time base: PV and load series (generated or CSV) are indexed by time of
day since midnight of the first day, ``start_time_of_day_s + t_s``; the
frequency CSV by elapsed ``t_s``.

CSV format: a header row naming the columns, then numbers, e.g.
``t_s,pv_power_w,load_power_w``. ``t_s`` must start at >= 0 and increase
strictly; lines starting with ``#`` are comments. Errors name the file and
line: ``ProfileError("day.csv:17: ...")`` (line 0: the file cannot be read).
Relative paths are tried against the working directory first, then
against ``sim/profiles/`` (bundled examples).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from sim.config import LoadConfig, PvConfig

DAY_S = 86400
MIN_STEP_S = 0.01  # the finest step a profile keeps (10 ms)
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class ProfileError(ValueError):
    """A profile (CSV) cannot be used; the message starts with ``file:line:``."""


class Series:
    """A 1 s grid of values with linear interpolation, looping or holding at the end."""

    __slots__ = ("values", "n", "loop", "last", "per_s")

    def __init__(self, values: np.ndarray, loop: bool = True, step_s: float = 1.0) -> None:
        v = np.asarray(values, dtype=float)
        if v.ndim != 1 or v.size < 1:
            raise ValueError("a series needs at least one value")
        self.per_s = round(1.0 / step_s, 6)  # samples per second of the grid (10.0, not 10.000000000000002)
        self.n = v.size
        self.loop = loop
        self.last = float(v[-1])
        closing = v[0] if loop else v[-1]  # value at index n for interpolation
        self.values: list[float] = np.append(v, closing).tolist()

    @classmethod
    def constant(cls, value: float) -> Series:
        return cls(np.array([value]))

    def at(self, t_s: float) -> float:
        """Value at time t_s >= 0 (seconds on the series' own time base)."""
        t_s *= self.per_s
        k = int(t_s)
        f = t_s - k
        if k >= self.n:
            if not self.loop:
                return self.last
            k %= self.n
        v = self.values
        a = v[k]
        return a if f == 0.0 else a + (v[k + 1] - a) * f  # on a sample: itself (a NaN next to it stays out)

    def array(self) -> np.ndarray:
        """The 1 s grid values (without the closing sample)."""
        return np.array(self.values[:-1])


# ---------------------------------------------------------------- CSV


def resolve_path(path: str) -> Path:
    """A CSV path as given, or else relative to the bundled ``sim/profiles``."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    bundled = PROFILE_DIR / p
    return bundled if bundled.exists() else p


def read_csv_columns(path: str, columns: tuple[str, ...], nan_ok: bool = False) -> dict[str, np.ndarray]:
    """Read ``t_s`` and ``columns`` from a CSV file; errors name file and line. With `nan_ok`,
    a column value of NaN is a bad sample (kept, reported by the caller), not an error."""
    p = resolve_path(path)
    try:
        text = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProfileError(f"{path}:0: cannot read file: {exc.strerror}") from exc
    rows = [(n, r) for n, r in enumerate(csv.reader(text), start=1)
            if r and not r[0].lstrip().startswith("#")]
    if not rows:
        raise ProfileError(f"{path}:1: empty file, expected a header with t_s")
    header_line, header = rows[0]
    names = [h.strip() for h in header]
    index = {}
    for col in ("t_s",) + columns:
        if col not in names:
            raise ProfileError(f"{path}:{header_line}: missing column {col!r} "
                               f"(header: {','.join(names)})")
        index[col] = names.index(col)
    if len(rows) < 2:
        raise ProfileError(f"{path}:{header_line}: no data rows")
    data = {col: np.empty(len(rows) - 1) for col in index}
    for i, (line, row) in enumerate(rows[1:]):
        if len(row) != len(names):
            raise ProfileError(f"{path}:{line}: expected {len(names)} fields, got {len(row)}")
        for col, j in index.items():
            data[col][i] = _number(row[j], path, line, col, nan_ok and col != "t_s")
    _check_times(data["t_s"], [line for line, _ in rows[1:]], path)
    return data


def _number(text: str, path: str, line: int, col: str, nan_ok: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(f"{path}:{line}: {col} is not a number: {text.strip()!r}") from None
    if nan_ok and math.isnan(value):
        return value
    if not math.isfinite(value):
        raise ProfileError(f"{path}:{line}: {col} is not finite: {text.strip()!r}")
    return value


def _check_times(t: np.ndarray, lines: list[int], path: str) -> None:
    if t[0] < 0:
        raise ProfileError(f"{path}:{lines[0]}: t_s must be >= 0, got {t[0]}")
    bad = np.nonzero(np.diff(t) <= 0)[0]
    if bad.size:
        k = int(bad[0]) + 1
        raise ProfileError(f"{path}:{lines[k]}: t_s must increase strictly "
                           f"({t[k]} after {t[k - 1]})")


def csv_series(path: str, column: str, end: str, own_resolution: bool = False) -> Series:
    """A CSV column resampled to 1 s (or, `own_resolution`, to the file's finest step, down to
    10 ms, NaN marking bad samples); ``end`` is "loop" or "hold"."""
    data = read_csv_columns(path, (column,), nan_ok=own_resolution)
    t, v = data["t_s"], data[column]
    step = min(1.0, max(MIN_STEP_S, float(np.diff(t).min()))) if own_resolution and t.size > 1 else 1.0
    step = 1.0 / round(1.0 / step, 6)  # 0.1 s, not 0.09999999999999998 (the difference of two rows)
    n = max(1, int(math.ceil(t[-1] / step - 1e-9)))
    grid = _resample(np.arange(n, dtype=float) / round(1.0 / step, 6), t, v)
    series = Series(grid, loop=(end == "loop"), step_s=step)
    series.values[-1] = float(_resample(np.array([n * step]), t, v)[0])  # exact value at the period end
    if end == "hold":
        series.last = float(v[-1])
    return series


def bad_samples(path: str, column: str) -> list[int]:
    """The lines of `path` whose `column` is NaN (a frequency profile's bad samples)."""
    p = resolve_path(path)
    rows = [(n, r) for n, r in enumerate(csv.reader(p.read_text(encoding="utf-8").splitlines()), start=1)
            if r and not r[0].lstrip().startswith("#")]
    j = [h.strip() for h in rows[0][1]].index(column)
    return [n for n, r in rows[1:] if r[j].strip().lower() == "nan"]


def _resample(at: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Linear interpolation of (t, v) at `at`; a NaN sample stays NaN up to its neighbours."""
    out = np.interp(at, t, np.nan_to_num(v, nan=0.0))
    if np.isnan(v).any():
        nearest = np.clip(np.searchsorted(t, at, side="right") - 1, 0, len(t) - 1)
        following = np.clip(nearest + 1, 0, len(t) - 1)
        out[np.isnan(v[nearest]) | (np.isnan(v[following]) & (at > t[nearest]))] = np.nan
    return out


# ---------------------------------------------------------------- noise


def ar1(n: int, tau_s: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck process sampled every second (std sigma).

    x[k] = a x[k-1] + sigma sqrt(1 - a^2) e[k], a = exp(-1/tau), computed in
    blocks with a cumulative-sum trick so no Python loop runs per sample.
    """
    a = math.exp(-1.0 / tau_s)
    e = rng.standard_normal(n) * sigma * math.sqrt(1.0 - a * a)
    e[0] = rng.standard_normal() * sigma
    if a < 1e-12:
        return e
    block = max(1, min(256, int(200.0 / -math.log(a))))  # keeps a**-block < e**200
    nb = -(-n // block)
    padded = np.zeros(nb * block)
    padded[:n] = e
    j = np.arange(block)
    powers = a ** j
    blocks = powers * np.cumsum(padded.reshape(nb, block) / powers, axis=1)
    carry = 0.0
    carries = np.empty(nb)
    a_block = a ** block
    for b in range(nb):
        carries[b] = carry
        carry = blocks[b, -1] + carry * a_block
    x = blocks + carries[:, None] * (a ** (j + 1))
    return x.ravel()[:n]


# ---------------------------------------------------------------- PV


def clear_sky(n: int, peak_w: float, sunrise_s: float, sunset_s: float) -> np.ndarray:
    """Bell-shaped clear-day PV power, zero outside sunrise..sunset, peak midway."""
    tod = np.arange(n, dtype=float) % DAY_S
    x = (tod - sunrise_s) / (sunset_s - sunrise_s)
    day = (x > 0) & (x < 1)
    p = np.zeros(n)
    p[day] = peak_w * np.sin(np.pi * x[day]) ** 1.5
    return p


def cloud_factor(n: int, cover_pct: float, transmittance_pct: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Fraction of clear-sky irradiance: alternating clear and cloud spells.

    Cloud spells last ~2 min on average; clear spells are scaled so that the
    fraction of time under cloud is ``cover_pct``. Each cloud has its own
    depth around ``transmittance_pct``; edges take a few seconds (fast
    transients), and a slow haze term varies on a 30 min scale.
    """
    cover = cover_pct / 100.0
    if cover <= 0.0:
        return np.ones(n)
    mean_cloud_s = 120.0
    mean_clear_s = mean_cloud_s * (1.0 - cover) / cover if cover < 1.0 else 0.0
    levels, lengths, total, cloudy = [], [], 0, rng.random() < cover
    while total < n:
        mean = mean_cloud_s if cloudy else mean_clear_s
        length = int(rng.exponential(mean)) + 5 if mean > 0 else 0
        depth = transmittance_pct / 100.0 * rng.uniform(0.6, 1.4)
        if length:
            levels.append(min(1.0, max(0.05, depth)) if cloudy else 1.0)
            lengths.append(length)
            total += length
        cloudy = not cloudy if cover < 1.0 else True
    steps = np.repeat(np.array(levels), np.array(lengths))[:n]
    edges = np.convolve(steps, np.ones(5) / 5.0, mode="same")
    haze = np.clip(1.0 + ar1(n, 1800.0, 0.05, rng), 0.8, 1.05)
    return np.clip(edges * haze, 0.0, 1.1)


def pv_series(cfg: PvConfig, n: int, rng: np.random.Generator) -> Series:
    """The PV power series for the configured source (time base: time of day)."""
    if cfg.source == "csv":
        return csv_series(cfg.csv_path, "pv_power_w", cfg.csv_end)
    if cfg.source == "none":
        return Series.constant(0.0)
    if cfg.source == "constant":
        return Series.constant(cfg.constant_w)
    p = clear_sky(n, cfg.peak_power_w * cfg.performance_ratio, cfg.sunrise_s, cfg.sunset_s)
    if cfg.source == "cloudy":
        p *= cloud_factor(n, cfg.cloud_cover_pct, cfg.cloud_transmittance_pct, rng)
    return Series(p)


# ---------------------------------------------------------------- load


def _bump(h: np.ndarray, centre_h: float, width_h: float) -> np.ndarray:
    return np.exp(-0.5 * ((h - centre_h) / width_h) ** 2)


def _spikes(n: int, per_day: float, power_w: float, duration_s: float,
            first_s: float, last_s: float, rng: np.random.Generator) -> np.ndarray:
    """Rectangular appliance spikes (kettle, compressor) at random times of each day."""
    out = np.zeros(n)
    for day0 in range(0, n, DAY_S):
        for _ in range(rng.poisson(per_day)):
            start = day0 + int(rng.uniform(first_s, last_s))
            length = int(rng.uniform(duration_s, 1.5 * duration_s))
            out[start:min(n, start + length)] += power_w
    return out


def residential_load(cfg: LoadConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Base load + morning (7:30) and evening (19:00) peaks + noise + kettle spikes."""
    h = (np.arange(n, dtype=float) % DAY_S) / 3600.0
    shape = cfg.base_w + cfg.peak_w * (0.5 * _bump(h, 7.5, 1.0) + _bump(h, 19.0, 1.5)
                                       + 0.15 * _bump(h, 12.5, 1.5))
    noise = ar1(n, cfg.noise_tau_s, cfg.noise_sigma_w, rng)
    spikes = _spikes(n, cfg.spikes_per_day, cfg.spike_power_w, cfg.spike_duration_s,
                     6 * 3600.0, 23 * 3600.0, rng)
    return np.maximum(shape + noise + spikes, 0.3 * cfg.base_w)


def commercial_load(cfg: LoadConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Night base, working-hours plateau with 30 min ramps and a lunch dip, noise, spikes."""
    tod = np.arange(n, dtype=float) % DAY_S
    ramp_s = 1800.0
    on = 1.0 / (1.0 + np.exp(-(tod - cfg.work_start_s) / (ramp_s / 4)))
    off = 1.0 / (1.0 + np.exp(-(cfg.work_end_s - tod) / (ramp_s / 4)))
    lunch = 1.0 - 0.1 * _bump(tod / 3600.0, 12.5, 0.5)
    shape = cfg.base_w + (cfg.peak_w - cfg.base_w) * on * off * lunch
    noise = ar1(n, cfg.noise_tau_s, cfg.noise_sigma_w, rng)
    spikes = _spikes(n, cfg.spikes_per_day, cfg.spike_power_w, cfg.spike_duration_s,
                     cfg.work_start_s, cfg.work_end_s, rng)
    return np.maximum(shape + noise + spikes, 0.3 * cfg.base_w)


def load_series(cfg: LoadConfig, n: int, rng: np.random.Generator) -> Series:
    """The load demand series for the configured source (time base: time of day)."""
    if cfg.source == "csv":
        return csv_series(cfg.csv_path, "load_power_w", cfg.csv_end)
    if cfg.source == "constant":
        return Series.constant(cfg.constant_w)
    if cfg.source == "commercial":
        return Series(commercial_load(cfg, n, rng))
    return Series(residential_load(cfg, n, rng))
