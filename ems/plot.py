"""Plot of a simulated run: power flows, SOC, and mode/state over time (PNG)."""

from __future__ import annotations

from typing import Any


def plot_run(rows: dict[str, list[Any]], path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [t / 3600.0 for t in rows["t_s"]]
    fig, (ax_p, ax_soc, ax_mode) = plt.subplots(3, 1, figsize=(12, 8), sharex=True,
                                                gridspec_kw={"height_ratios": [3, 1.4, 1]})
    styles = {"load_power_w": ("load", "tab:red"), "pv_power_w": ("PV", "tab:orange"),
              "battery_power_w": ("battery (+ discharge)", "tab:green"),
              "grid_power_w": ("grid (+ import)", "tab:blue")}
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
