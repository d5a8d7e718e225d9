"""Schedules drawn: ``text`` (in the terminal, no dependency), ``image`` (PNG/SVG/PDF with
matplotlib, imported when used), ``svg`` and ``notebook`` (the rich display, numpy only; ``plot``).

``lrdsl.plot.figure(expr, ticks=…)`` is a matplotlib ``Figure`` made without pyplot (so the
session's backend and figures are left alone); ``save_figure`` writes it to a file; ``draw``
puts the same curve on an ``Axes`` of yours (docs/notebooks.md)."""

from lrdsl.plot.image import draw, draw_program, figure, save_figure

__all__ = ["figure", "save_figure", "draw", "draw_program"]
