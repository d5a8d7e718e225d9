"""Expressions and programs in a notebook: the rich display (an inline SVG, numpy only) and
``plot`` (matplotlib).  :class:`lrdsl.language.notebook.Notebook`'s methods call these.

A ``%`` duration needs the run's length: without ``total`` the display draws against
:data:`DISPLAY_TOTAL` and says so under the picture, while ``e(t)`` and ``e.plot()`` raise
:func:`lrdsl.curve`'s error naming ``total=``.
"""

from __future__ import annotations

from html import escape

from lrdsl.errors import LrdslError, UnitError
from lrdsl.language.explain import default_ticks, describe
from lrdsl.language.plan import Plan, plan
from lrdsl.plot import svg
from lrdsl.plot.image import draw, draw_program, sample_ticks
from lrdsl.programs import Program, channel_plans, curve

#: the run length, in ticks, against which the display draws ``%`` durations when no total is given
DISPLAY_TOTAL = 100
#: the ticks one panel of the display evaluates (plus two per segment boundary)
SVG_POINTS = 200
#: keyword arguments of curve that are no units of the plan
_NOT_UNITS = ("metrics", "report_every")


def _plans(source, units: dict) -> dict[str | None, Plan]:
    """The expression's plan under the key None, or each channel's plan under its name."""
    if isinstance(source, Program):
        return {name: found for name, (_, found) in channel_plans(source, **units).items()}
    return {None: plan(source, **units)}


def html(source) -> str:
    """The canonical text, the segments (as ``lrdsl parse`` prints them) and an SVG of the curve
    with the boundaries dashed; an expression that cannot be drawn shows its text and why."""
    try:
        body = _drawn(source)
    except LrdslError as error:
        body = f"<p><small>not drawn: {escape(str(error))}</small></p>"
    return f'<div class="lrdsl-schedule">\n<pre>{escape(str(source))}</pre>\n{body}\n</div>'


def _drawn(source) -> str:
    units: dict = {}
    note = ""
    try:
        plans = _plans(source, units)
    except UnitError:
        if not any("%" in expr.units() for expr in _expressions(source)):
            raise
        units = {"total": DISPLAY_TOTAL}
        plans = _plans(source, units)
        note = (f"; % drawn against total={DISPLAY_TOTAL} (pass total= to e(t) and e.plot() "
                f"for your run's length)")
    ticks = max(default_ticks(found) for found in plans.values())
    lines, panels = [], []
    for k, (name, found) in enumerate(plans.items()):
        described = describe(found)
        lines += described if name is None else [f"{name}:"] + [f"  {line}" for line in described]
        t = sample_ticks(ticks, found.boundaries(), points=SVG_POINTS)
        values = curve(found.expr, t, **units) if name is None else curve({name: found.expr}, t, **units)[name]
        panels.append(svg.panel(t, values, boundaries=found.boundaries(), last=ticks - 1, y=k * svg.HEIGHT,
                                title="" if name is None else f"{name} = {found.expr}"))
    caption = f"ticks 0 to {ticks - 1}, segment boundaries dashed{note}"
    return (f"<pre>{escape(chr(10).join(lines))}</pre>\n{svg.picture(panels)}\n"
            f"<p><small>{escape(caption)}</small></p>")


def _expressions(source):
    return list(source.values()) if isinstance(source, Program) else [source]


def plot(source, ax=None, *, ticks: int | None = None, log: bool = False, **units):
    """Draw ``source`` on ``ax`` (see :meth:`lrdsl.language.notebook.Notebook.plot`); the Axes
    drawn on.  Without ``ax``, a new figure from ``matplotlib.pyplot``: pandas' convention, so the
    session's backend (a notebook's inline one) shows it; the backend itself is never changed."""
    plans = _plans(source, {k: v for k, v in units.items() if k not in _NOT_UNITS})
    if ticks is None:
        ticks = max(default_ticks(found) for found in plans.values())
    program = isinstance(source, Program)
    created = ax is None
    if created:
        import matplotlib.pyplot as plt

        if program:
            _, grid = plt.subplots(len(plans), 1, sharex=True, squeeze=False,
                                   figsize=(8, 1.2 + 2.2 * len(plans)))
            ax = grid[:, 0]
        else:
            _, ax = plt.subplots(figsize=(8, 4.5))
    if program:
        draw_program(ax, source, ticks=ticks, log=log, **units)
    else:
        draw(ax, source, ticks=ticks, log=log, **units)
    if created:
        (ax[0] if program else ax).figure.tight_layout()
    return ax
