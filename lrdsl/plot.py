"""A schedule as a matplotlib figure (PNG, SVG or PDF).  Imports matplotlib; the core never does."""

from __future__ import annotations

from pathlib import Path

from lrdsl.errors import LrdslError

SUFFIXES = (".png", ".svg", ".pdf")


def save_figure(expr, path: str | Path, *, ticks: int, steps_per_epoch=None, total=None,
                metrics=None, report_every=None, log: bool = False) -> Path:
    """Draw the LR over ``ticks`` ticks with segment boundaries; the expression is the title."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise LrdslError(f"--plot FILE must end in {', '.join(SUFFIXES)}, got {path.name}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lrdsl.plan import plan
    from lrdsl.reference import curve

    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total)
    t = np.arange(ticks)
    values = curve(compiled.expr, t, steps_per_epoch=steps_per_epoch, total=total,
                   metrics=metrics, report_every=report_every)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(t, values, color="tab:blue", linewidth=1.6, drawstyle="steps-post")
    for boundary in compiled.boundaries():
        if boundary < ticks:
            ax.axvline(boundary, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlabel("tick")
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, max(ticks - 1, 1))
    if log:
        ax.set_yscale("log")
    if steps_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda x: x / steps_per_epoch,
                                                   lambda e: e * steps_per_epoch))
        top.set_xlabel("epoch")
    ax.set_title(str(compiled.expr), fontsize=9, family="monospace")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
