"""Plot of a simulated run (PNG), one panel per quantity, sharing the time axis:

- power flows (kW), with the grid's import and export limits as dashed lines when the site has them;
- SOC (%);
- the price, when the run has one (cost saving's tariff);
- measured and filtered frequency, when the run replays a frequency profile or sells grid services;
- mode, then site state: each a step trace between its labels, which are the y tick labels.

The scenario's timed events are thin vertical lines across every panel, labelled on the power panel.
`build_figure` makes the figure (tests read its axes); `plot_run` saves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

POWER_STYLES = {"load_power_w": ("load", "tab:red"), "pv_power_w": ("PV", "tab:orange"),
                "battery_power_w": ("battery (+ discharge)", "tab:green"),
                "grid_power_w": ("grid (+ import)", "tab:blue")}
LIMIT_STYLES = {"import_limit_w": ("import limit", 1.0, "black"), "export_limit_w": ("export limit", -1.0, "dimgray")}
LIMIT_SCALE = 1.5  # a limit beyond 1.5 x the largest power plotted is off the panel's scale: not drawn


def plot_run(rows: dict[str, list[Any]], path: str, title: str = "", frequency: bool = False,
             events: Sequence[tuple[float, str]] = ()) -> None:
    """Write the PNG of a run's rows (the CSV's columns) to `path`."""
    figure = build_figure(rows, title, frequency, events)
    figure.savefig(path, dpi=110)


def build_figure(rows: dict[str, list[Any]], title: str = "", frequency: bool = False,
                 events: Sequence[tuple[float, str]] = ()) -> Figure:
    """The figure of a run: its panels top to bottom as the module says; `events` are
    (seconds from the start, short label)."""
    from matplotlib.figure import Figure

    hours = [t / 3600.0 for t in rows["t_s"]]
    price = "price" in rows and any(v for v in rows["price"])
    frequency = frequency and "frequency_hz" in rows
    categorical = {c: _categories(rows[c]) for c in ("mode", "state") if c in rows}
    panels: list[tuple[str, float]] = [("power", 3.0), ("soc", 1.3)]
    if price:
        panels.append(("price", 0.8))
    if frequency:
        panels.append(("frequency", 1.4))
    panels += [(c, 0.3 + 0.15 * len(labels)) for c, labels in categorical.items()]
    ratios = [r for _, r in panels]
    figure = Figure(figsize=(12, 1.0 + 1.75 * sum(ratios)))
    axes = figure.subplots(len(panels), 1, sharex=True, gridspec_kw={"height_ratios": ratios}, squeeze=False)
    ax = {name: axes[i][0] for i, (name, _) in enumerate(panels)}

    _power(ax["power"], hours, rows, services=frequency)
    soc = ax["soc"]
    if "soc_pct" in rows:
        soc.plot(hours, rows["soc_pct"], color="tab:purple", linewidth=1.0)
    soc.set_ylabel("SOC (%)")
    soc.set_ylim(0, 100)
    if price:
        ax["price"].step(hours, rows["price"], where="post", color="tab:olive", linewidth=1.0)
        ax["price"].set_ylabel("price")
        ax["price"].set_ylim(bottom=0)
    if frequency:
        _frequency(ax["frequency"], hours, rows)
    for column, labels in categorical.items():
        _categorical(ax[column], hours, rows[column], labels, column)
    for a in ax.values():
        a.grid(alpha=0.3)
    _events(list(ax.values()), events)
    axes[-1][0].set_xlabel("time (h)")
    axes[-1][0].set_xlim(hours[0] if hours else 0.0, hours[-1] if hours else 1.0)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _power(ax: Axes, hours: list[float], rows: dict[str, list[Any]], services: bool) -> None:
    styles = dict(POWER_STYLES)
    if services:
        styles["service_p_w"] = ("grid services", "tab:brown")
    largest = 0.0
    for column, (label, color) in styles.items():
        if column in rows:
            kw = [v / 1000.0 for v in rows[column]]
            largest = max([largest] + [abs(v) for v in kw])
            ax.plot(hours, kw, label=label, color=color, linewidth=0.8)
    for column, (label, sign, color) in LIMIT_STYLES.items():
        if column not in rows:
            continue
        kw = [sign * v / 1000.0 if v / 1000.0 <= LIMIT_SCALE * max(largest, 1.0) else math.nan for v in rows[column]]
        if all(math.isnan(v) for v in kw):
            continue
        ax.step(hours, kw, where="post", label=label, color=color, linestyle="--", linewidth=0.9)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylabel("power (kW)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=6, fontsize=8, frameon=False)  # above: events label the panel's top


def _frequency(ax: Axes, hours: list[float], rows: dict[str, list[Any]]) -> None:
    ax.plot(hours, rows["frequency_hz"], label="measured", color="tab:gray", linewidth=0.8)
    if "filtered_frequency_hz" in rows:
        ax.plot(hours, rows["filtered_frequency_hz"], label="filtered", color="black", linewidth=0.8)
    for level in (49.9, 50.1):
        ax.axhline(level, color="tab:blue", linewidth=0.5, linestyle=":")
    ax.set_ylabel("frequency (Hz)")
    ax.legend(loc="upper left", ncol=2, fontsize=8)


def _categories(values: list[Any]) -> list[str]:
    """A categorical column's labels, in the order they first occur."""
    return list(dict.fromkeys(str(v) for v in values))


def _categorical(ax: Axes, hours: list[float], values: list[Any], labels: list[str], name: str) -> None:
    index = {label: i for i, label in enumerate(labels)}
    ax.step(hours, [index[str(v)] for v in values], where="post", color="tab:gray", linewidth=1.2)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(-0.5, len(labels) - 0.5)
    ax.set_ylabel(name)


def _events(axes: list[Axes], events: Sequence[tuple[float, str]]) -> None:
    """A thin vertical line per event on every panel; its label, turned upright, on the top one."""
    for t_s, label in events:
        x = t_s / 3600.0
        for ax in axes:
            ax.axvline(x, color="tab:gray", linewidth=0.6, linestyle="-", alpha=0.7)
        top = axes[0]
        top.text(x, 0.98, f" {label}", transform=top.get_xaxis_transform(), rotation=90, fontsize=7,
                 ha="right", va="top", color="dimgray",
                 bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
