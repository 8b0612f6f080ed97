"""One plot per test: the test frequency, the activated power against the static characteristic,
and what the test is about (energy management, FFR states, the Nyquist curve of the sine test)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ems.prequal.evaluate import Context, sine_points
from ems.prequal.stability import ACCEPTED_RADIUS, STABILITY_RADIUS

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn
    from matplotlib.axes import Axes
    from matplotlib.typing import HashableList

MAX_POINTS = 20_000  # enough for a clear line, cheap on long tests


def plot_test(ctx: Context, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = ctx.rec
    layout: list[HashableList[str]] = [["f", "f"], ["p", "p"]]
    if rec.test in ("ler", "sine", "ffr"):
        layout.append(["x", "x"])
    elif rec.test == "ramp":
        layout.append(["z1", "z2"])
    fig, ax_by = plt.subplot_mosaic(layout, figsize=(11, 3.2 * len(layout)))
    axes = [ax_by["f"], ax_by["p"]] + ([ax_by["x"]] if "x" in ax_by else [])
    step = max(1, len(rec.t) // MAX_POINTS)
    t = rec.t[::step]
    ax = axes[0]
    ax.plot(t, rec["applied_hz"][::step], label="applied test frequency", lw=1.2)
    ax.plot(t, rec["filtered_hz"][::step], label="filtered (what the droop sees)", lw=1.0)
    ax.set_ylabel("Hz")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax = axes[1]
    ax.plot(t, ctx.a[::step] * 100, label="activated power (P - baseline) / C", lw=1.2)
    if rec.product != "ffr":
        ax.plot(t, ctx.theory(rec["applied_hz"][::step]) * 100, "--", label="static characteristic", lw=1.0)
    ax.set_ylabel("% of C")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    if rec.test == "ler":
        _ler_panel(axes[2], ctx, step)
    elif rec.test == "sine":
        _nyquist(axes[2], ctx)
    elif rec.test == "ffr":
        axes[2].step(t, rec["ffr_state"][::step], where="post")
        axes[2].set_yticks(range(7), ["disabled", "armed", "support", "deactivating", "buffer", "recovery", "waiting"])
        axes[2].grid(alpha=0.3)
    if rec.test == "ramp":
        _zoom(ax_by["z1"], ctx, 25.0, 80.0, "deactivation (after the nadir)")
        _zoom(ax_by["z2"], ctx, 686.0, 706.0, "activation on the 0.24 Hz/s ramp (7.5 s mark)")
        ax_by["z2"].axvline(697.5, color="k", lw=0.6, ls=":")
    axes[-1 if rec.test != "sine" else 1].set_xlabel("test time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _zoom(ax: Axes, ctx: Context, t0: float, t1: float, title: str) -> None:
    rec = ctx.rec
    mask = rec.window(t0, t1)
    ax.plot(rec.t[mask], ctx.a[mask] * 100, label="activated power")
    ax.plot(rec.t[mask], ctx.theory(rec["applied_hz"][mask]) * 100, "--", label="static characteristic")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("% of C")
    ax.set_xlabel("test time (s)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def _ler_panel(ax: Axes, ctx: Context, step: int) -> None:
    rec = ctx.rec
    t = rec.t[::step]
    ax.plot(t, rec["soc_pct"][::step], label="SOC (%)")
    ax.plot(t, rec["nem_current"][::step] * 10, label="NEM_current x 10")
    ax.plot(t, rec["aem"][::step] * 10, label="AEM on x 10")
    endurance = rec["endurance_down_min" if rec.product == "fcr-d-down" else "endurance_up_min"][::step]
    ax.plot(t, np.clip(endurance, 0, 100), label="endurance (min, to 100)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)


def _nyquist(ax: Axes, ctx: Context) -> None:
    from matplotlib import patches

    points = sine_points(ctx)
    ol = [p.open_loop for p in points]
    ax.plot([z.real for z in ol], [z.imag for z in ol], "o-", label="F(jw) G(jw) at the test periods")
    for p, z in zip(points, ol):
        ax.annotate(f"{p.period_s:.0f} s", (z.real, z.imag), fontsize=7)
    ax.add_patch(patches.Circle((-1, 0), STABILITY_RADIUS, fill=False, color="r", label="|1 + FG| = 0.43 (required)"))
    ax.add_patch(patches.Circle((-1, 0), ACCEPTED_RADIUS, fill=False, color="r", ls=":",
                                label="0.4085 (accepted, 95 % margin)"))
    ax.plot([-1], [0], "r+")
    ax.set_aspect("equal", adjustable="datalim")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_title("Nyquist: unit x F_FME x stability grid model", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
