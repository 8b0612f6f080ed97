"""Plot of a simulated run: power flows, SOC, and mode/state over time (PNG); with a frequency
panel (measured and filtered frequency) when the run replays a frequency profile or sells grid
services."""

from __future__ import annotations

from typing import Any


def plot_run(rows: dict[str, list[Any]], path: str, title: str = "", frequency: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [t / 3600.0 for t in rows["t_s"]]
    frequency = frequency and "frequency_hz" in rows
    panels = 4 if frequency else 3
    ratios = [3, 1.4, 1.4, 1] if frequency else [3, 1.4, 1]
    fig, axes = plt.subplots(panels, 1, figsize=(12, 10 if frequency else 8), sharex=True,
                             gridspec_kw={"height_ratios": ratios})
    ax_p, ax_soc, ax_mode = axes[0], axes[1], axes[-1]
    styles = {"load_power_w": ("load", "tab:red"), "pv_power_w": ("PV", "tab:orange"),
              "battery_power_w": ("battery (+ discharge)", "tab:green"),
              "grid_power_w": ("grid (+ import)", "tab:blue")}
    if frequency:
        styles["service_p_w"] = ("grid services", "tab:brown")
        ax_f = axes[2]
        ax_f.plot(hours, rows["frequency_hz"], label="measured", color="tab:gray", linewidth=0.8)
        if "filtered_frequency_hz" in rows:
            ax_f.plot(hours, rows["filtered_frequency_hz"], label="filtered", color="black", linewidth=0.8)
        for level in (49.9, 50.1):
            ax_f.axhline(level, color="tab:blue", linewidth=0.5, linestyle=":")
        ax_f.set_ylabel("frequency (Hz)")
        ax_f.legend(loc="upper left", ncol=2, fontsize=8)
        ax_f.grid(alpha=0.3)
    for column, (label, color) in styles.items():
        if column in rows:
            ax_p.plot(hours, [v / 1000.0 for v in rows[column]], label=label, color=color, linewidth=0.8)
    ax_p.axhline(0.0, color="black", linewidth=0.5)
    ax_p.set_ylabel("power (kW)")
    ax_p.legend(loc="upper left", ncol=4, fontsize=8)
    ax_p.grid(alpha=0.3)
    if "soc_pct" in rows:
        ax_soc.plot(hours, rows["soc_pct"], color="tab:purple", linewidth=1.0)
    ax_soc.set_ylabel("SOC (%)")
    ax_soc.set_ylim(0, 100)
    ax_soc.grid(alpha=0.3)
    for offset, column in ((0.0, "mode"), (0.5, "state")):
        if column not in rows:
            continue
        labels = sorted(set(rows[column]), key=str)
        index = {label: i for i, label in enumerate(labels)}
        ax_mode.step(hours, [index[v] for v in rows[column]], where="post", label=column, linewidth=1.0)
        for label, i in index.items():
            ax_mode.annotate(f"{column}: {label}", (hours[0], i), fontsize=7, xytext=(2, 2 + 8 * offset),
                             textcoords="offset points")
    ax_mode.set_yticks([])
    ax_mode.set_ylabel("mode / state")
    ax_mode.set_xlabel("time (h)")
    ax_mode.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
