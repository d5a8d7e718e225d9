"""A schedule as a matplotlib figure (PNG, SVG or PDF).  Imports matplotlib; the core never does."""

from __future__ import annotations

from pathlib import Path

from lrdsl.errors import LrdslError
from lrdsl.language.plan import plan
from lrdsl.programs import channel_plans, curve, is_program, program

SUFFIXES = (".png", ".svg", ".pdf")
#: the most ticks evaluated for one figure: ~5 per pixel of its 800-pixel width
MAX_POINTS = 4096


def sample_ticks(ticks: int, boundaries=(), points: int = MAX_POINTS):
    """The ticks a figure of ``ticks`` ticks draws, as float64: all of them up to
    ``points`` (:data:`MAX_POINTS`); beyond, ``points`` evenly spaced whole ticks plus, at each
    segment boundary b, the ticks ⌈b⌉−1 and ⌈b⌉ — so every jump between segments is drawn
    exactly where it happens, and memory and time stay bounded whatever ``ticks`` is.
    """
    import numpy as np

    if ticks <= points:
        return np.arange(int(ticks), dtype=np.float64)
    last = float(ticks - 1)
    edges = [e for b in boundaries for e in (np.ceil(b) - 1, np.ceil(b)) if 0 <= e <= last]
    return np.unique(np.concatenate([np.round(np.linspace(0.0, last, points)),
                                     np.asarray(edges, dtype=np.float64)]))


def save_figure(expr, path: str | Path, *, ticks: int, steps_per_epoch=None, total=None,
                metrics=None, report_every=None, log: bool = False, **units) -> Path:
    """Draw the LR over ``ticks`` ticks with segment boundaries; the expression is the title.

    ``expr`` may be a list of expressions: they are overlaid, one colour each, with a legend
    of their canonical forms (and each one's boundaries dashed in its colour).  At most
    :data:`MAX_POINTS` ticks (plus two per segment boundary) are evaluated per expression,
    see :func:`sample_ticks`: a billion-tick plot costs what a 4096-tick one does.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise LrdslError(f"--plot FILE must end in {', '.join(SUFFIXES)}, got {path.name}")
    fig = figure(expr, ticks=ticks, steps_per_epoch=steps_per_epoch, total=total, metrics=metrics,
                 report_every=report_every, log=log, **units)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as error:  # a parent that is a file, no permission, a full disk
        raise LrdslError(f"cannot write {path} ({type(error).__name__}: {error.strerror or error})") from None
    return path


def figure(expr, *, ticks: int, steps_per_epoch=None, total=None, metrics=None, report_every=None,
           log: bool = False, **units):
    """The matplotlib figure :func:`save_figure` writes (one expression or a list of them, or a
    program: a panel per channel).  ``units``: ``clock`` and the conversion constants."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone

    options = dict(ticks=ticks, steps_per_epoch=steps_per_epoch, total=total, metrics=metrics,
                   report_every=report_every, log=log, **units)
    if is_program(expr) and not isinstance(expr, (list, tuple)):
        compiled = program(expr)
        fig = Figure(figsize=(8, 1.2 + 2.2 * len(compiled)), dpi=100)
        draw_program(fig.subplots(len(compiled), 1, sharex=True, squeeze=False)[:, 0], compiled,
                     **options)
    else:
        fig = Figure(figsize=(8, 4.5), dpi=100)
        draw(fig.subplots(), expr, **options)
    fig.tight_layout()
    return fig


def _checked_ticks(ticks) -> int:
    import numpy as np

    if not isinstance(ticks, (int, np.integer)) or isinstance(ticks, bool) or ticks < 1:
        raise LrdslError(f"ticks must be a whole number ≥ 1, got {ticks!r}")
    return int(ticks)


def draw(ax, expr, *, ticks: int, steps_per_epoch=None, total=None, metrics=None, report_every=None,
         log: bool = False, **units):
    """Draw one expression, or a list of them overlaid with a legend, on the matplotlib ``ax``:
    the curve over ticks 0..ticks−1 (sampled as :func:`sample_ticks` says), the segment
    boundaries dashed, the expression as the title."""
    import matplotlib

    ticks = _checked_ticks(ticks)
    several = isinstance(expr, (list, tuple))
    compiled = [plan(e, steps_per_epoch=steps_per_epoch, total=total, **units)
                for e in (expr if several else [expr])]
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, c in enumerate(compiled):
        color = colors[index % len(colors)]
        t = sample_ticks(ticks, c.boundaries())
        values = curve(c.expr, t, steps_per_epoch=steps_per_epoch, total=total,
                       metrics=metrics, report_every=report_every, **units)
        _line(ax, t, values, c.boundaries(), ticks, color=color, label=str(c.expr),
              boundary_color=color if several else "0.6", alpha=0.5 if several else 1.0)
    ax.set_xlabel(_position_label(units))
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, max(float(ticks - 1), 1.0))
    if log:
        ax.set_yscale("log")
    if steps_per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda x: x / steps_per_epoch,
                                                   lambda e: e * steps_per_epoch))
        top.set_xlabel("epoch")
    if several:
        ax.legend(prop={"family": "monospace", "size": 8})
    else:
        ax.set_title(str(compiled[0].expr), fontsize=9, family="monospace")
    ax.grid(alpha=0.3)
    return ax


def _line(ax, t, values, boundaries, ticks: int, *, color=None, label=None, boundary_color="0.6",
          alpha=1.0) -> None:
    """One curve and its boundaries: every tick drawn, a step per tick; sampled, a line through
    the samples (vertical at boundaries)."""
    ax.plot(t, values, color=color, linewidth=1.6, label=label,
            drawstyle="steps-post" if len(t) == ticks else "default")
    for boundary in boundaries:
        if boundary < ticks:
            ax.axvline(boundary, color=boundary_color, alpha=alpha, linestyle="--", linewidth=0.8)


def _position_label(units: dict) -> str:
    return {"samples": "samples", "tokens": "tokens"}.get(units.get("clock", "ticks"), "tick")


def draw_program(axes, source, *, ticks: int, metrics=None, report_every=None, log: bool = False,
                 **units):
    """A program on matplotlib ``axes``: one Axes per channel (sharing the position axis, each
    titled with its channel), or all channels on one Axes with a legend."""
    ticks = _checked_ticks(ticks)
    plans = {name: found for name, (_, found) in channel_plans(source, **units).items()}
    one = not isinstance(axes, (list, tuple)) and not hasattr(axes, "__len__")
    if not one and len(axes) != len(plans):
        raise LrdslError(f"plot: the program has {len(plans)} channels ({', '.join(plans)}); give "
                         f"as many Axes, one Axes, or none, got {len(axes)}")
    for ax, (name, c) in zip([axes] * len(plans) if one else axes, plans.items()):
        t = sample_ticks(ticks, c.boundaries())
        values = curve({name: c.expr}, t, metrics=metrics, report_every=report_every, **units)[name]
        _line(ax, t, values, c.boundaries(), ticks, label=f"{name} = {c.expr}")
        if not one:
            ax.set_title(f"{name} = {c.expr}", fontsize=8, family="monospace", loc="left")
            ax.set_ylabel(name)
        if log and name == "lr":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    last = axes if one else axes[-1]
    if one:
        last.legend(prop={"family": "monospace", "size": 8})
    last.set_xlabel(_position_label(units))
    last.set_xlim(0, max(float(ticks - 1), 1.0))
    return axes
