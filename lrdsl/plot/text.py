"""A learning-rate curve drawn in the terminal with braille dots (2×4 per character).

Written here rather than taken from plotext: plotext's import alone (~0.18 s) is more
than the whole budget of ``lrdsl parse --plot`` (see bench/cli.sh), and a line plot
with labelled axes and boundary marks is ~100 lines.
"""

from __future__ import annotations

import math
import sys
from typing import Callable, Sequence

from lrdsl.language.units import format_number

# bit of the braille dot at (row within the cell 0..3 from the top, column 0..1)
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def _label(x: float) -> str:
    rounded = float(f"{x:.3g}")  # inf for x near float64's top
    return format_number(rounded) if math.isfinite(rounded) else f"{x:.3g}"


def _axis_line(width: int, marks: list[tuple[int, str]]) -> str:
    """Labels placed at columns, left to right, skipping any that would overlap."""
    line = [" "] * width
    taken = -2
    for column, text in sorted(marks):
        start = min(max(column - len(text) // 2, 0), width - len(text))
        if start <= taken + 1:
            continue
        line[start:start + len(text)] = text
        taken = start + len(text)
    return "".join(line).rstrip()


#: how series k is drawn: (which dot columns carry a dot, whether jumps are joined by
#: vertical runs): solid, dotted, sparse, dashed — told apart without colour
PATTERNS = ((1, 0, True), (2, 0, False), (4, 0, False), (6, 3, True))
#: ANSI colours of series k (blue, red, green, magenta, cyan, yellow) when colour is on
COLORS = (34, 31, 32, 35, 36, 33)


def _on(pattern: tuple[int, int, bool], x: int) -> bool:
    period, dash, _ = pattern
    return x % period < dash if dash else x % period == 0


def sample(index: int, cells: int = 4) -> str:
    """A flat stretch of series ``index``'s pattern, ``cells`` characters wide (the legend's key)."""
    pattern = PATTERNS[index % len(PATTERNS)]
    dots = [0] * cells
    for x in range(cells * 2):
        if _on(pattern, x):
            dots[x // 2] |= _DOTS[1][x % 2]
    return "".join(chr(0x2800 + d) for d in dots)


def render(lr: Callable[[float], float], ticks: int, *, width: int = 80, height: int = 16,
           boundaries: Sequence[float] = (), log: bool = False,
           steps_per_epoch: float | None = None, x_name: str = "tick",
           x_value: Callable[[float], float] | None = None) -> str:
    """The curve of ``lr`` over ticks [0, ticks) in about ``width`` × ``height`` characters.

    ``lr`` is called once per dot column (2 per character), never once per tick, so the cost
    does not grow with ``ticks``; values at float64's extremes are scaled without overflow.
    ``x_value`` maps a tick to the number its x-axis label shows (named ``x_name``), e.g. the
    LR of an LR range test's step; the axis then ends at the last tick drawn, ``ticks − 1``.
    """
    return render_many([(None, lr)], ticks, width=width, height=height, boundaries=boundaries,
                       log=log, steps_per_epoch=steps_per_epoch, x_name=x_name, x_value=x_value)


def render_many(series: list[tuple[str | None, Callable[[float], float]]], ticks: int, *,
                width: int = 80, height: int = 16, boundaries: Sequence[float] = (), log: bool = False,
                steps_per_epoch: float | None = None, color: bool = False, x_name: str = "tick",
                x_value: Callable[[float], float] | None = None) -> str:
    """Several curves ``(label, lr)`` overlaid on one y scale, as :func:`render` draws one.

    Series k is drawn in ``PATTERNS[k]`` (the first solid, then dotted, sparse, dashed), so
    the plot reads without colour; with ``color`` each series' cells also get an ANSI colour
    (a cell two series share takes the later one's).  Under the axis, a legend line per series
    with a key in its pattern — only when there is more than one series or a label.
    """
    ticks = max(int(ticks), 2)
    columns = max(width - _LABEL_WIDTH - 2, 10)
    samples = [min(ticks - 1, int(i * ticks / (columns * 2))) for i in range(columns * 2)]
    shown_all = [[math.log10(v) if log and v > 0 else (None if log else v) for v in map(lr, samples)]
                 for _, lr in series]
    lo, hi = _y_range(shown_all, log)
    grid, owner = _draw(shown_all, lo, hi, columns, height)
    lines = _plot_rows(grid, owner, lo, hi, log, color)
    boundary_columns = sorted({min(columns - 1, int(b / ticks * columns)) for b in boundaries if b < ticks})
    lines += _x_axes(columns, ticks, boundaries, boundary_columns, steps_per_epoch, x_name, x_value)
    if len(series) > 1 or series[0][0] is not None:
        lines += _legend([label for label, _ in series], width, color)
    return "\n".join(lines)


#: the width of the y labels left of the plot
_LABEL_WIDTH = 9


def _y_range(shown_all: list[list[float | None]], log: bool) -> tuple[float, float]:
    """The y range drawn: the finite values' range, padded when it is (nearly) one value."""
    finite = [v for shown in shown_all for v in shown if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12 * max(abs(hi), 1e-300):
        biggest = sys.float_info.max  # keep the padded range finite
        lo, hi = (lo - 1, hi + 1) if log else (max(lo - abs(lo) * 0.5 - 1e-12, -biggest),
                                                 min(hi + abs(hi) * 0.5 + 1e-12, biggest))
        if not log and min(finite, default=0) >= 0:
            lo = max(lo, 0.0)
    return lo, hi


def _draw(shown_all: list[list[float | None]], lo: float, hi: float, columns: int,
          height: int) -> tuple[list[list[int]], list[list[int]]]:
    """Braille dot masks per cell, and the series that drew each cell last (for its colour)."""
    pixels_y = height * 4
    grid = [[0] * columns for _ in range(height)]
    owner = [[-1] * columns for _ in range(height)]
    for index, shown in enumerate(shown_all):
        pattern = PATTERNS[index % len(PATTERNS)]
        previous: int | None = None
        for x, v in enumerate(shown):
            if v is None or not math.isfinite(v):
                previous = None
                continue
            y = round((v / 2 - lo / 2) / (hi / 2 - lo / 2) * (pixels_y - 1))  # halves: no overflow
            joined = pattern[2] and previous is not None
            low, high = (min(y, previous), max(y, previous)) if joined and previous is not None else (y, y)
            previous = y
            if not _on(pattern, x):
                continue
            for yy in range(low, high + 1):  # a vertical run joins jumps into a line
                top = pixels_y - 1 - yy
                grid[top // 4][x // 2] |= _DOTS[top % 4][x % 2]
                owner[top // 4][x // 2] = index
    return grid, owner


def _plot_rows(grid: list[list[int]], owner: list[list[int]], lo: float, hi: float, log: bool,
               color: bool) -> list[str]:
    """The plot's text rows, with y labels at the top, middle and bottom."""
    height = len(grid)

    def cell(r, c):
        text = chr(0x2800 + grid[r][c])
        if color and owner[r][c] >= 0:
            return f"\x1b[{COLORS[owner[r][c] % len(COLORS)]}m{text}\x1b[0m"
        return text

    def y_label(row):
        share = row / max(height - 1, 1)
        v = hi * (1 - share) + lo * share  # between lo and hi, so finite
        if not log:
            return _label(v)
        try:
            return _label(10 ** v)
        except OverflowError:  # the padding above a value near float64's top
            return _label(math.inf)

    label_rows = {0, height - 1, (height - 1) // 2}
    lines = []
    for r in range(height):
        label = y_label(r) if r in label_rows else ""
        tick_mark = "┤" if r in label_rows else "│"
        lines.append(f"{label:>{_LABEL_WIDTH}} {tick_mark}" + "".join(cell(r, c) for c in range(len(grid[r]))))
    return lines


def _x_axes(columns: int, ticks: int, boundaries: Sequence[float], boundary_columns: list[int],
            steps_per_epoch: float | None, x_name: str,
            x_value: Callable[[float], float] | None) -> list[str]:
    """The x axis with its boundary marks, its labels, and an epoch line when ticks are steps."""
    axis = ["─"] * columns
    for c in boundary_columns:
        axis[c] = "┴"
    lines = [" " * _LABEL_WIDTH + " └" + "".join(axis)]
    pad = _LABEL_WIDTH + 2
    if x_value is None:
        marks = [(0, "0"), (columns - 1, format_number(ticks))]
        marks += [(c, _label(b)) for c, b in zip(boundary_columns, boundaries)]
    else:
        marks = [(c, _label(x_value(b))) for c, b in ((0, 0), (columns - 1, ticks - 1),
                                                       *zip(boundary_columns, boundaries))]
    lines.append(" " * pad + _axis_line(columns, marks) + f"  {x_name}")
    if steps_per_epoch:
        epoch_marks = [(0, "0"), (columns - 1, _label(ticks / steps_per_epoch))]
        epoch_marks += [(c, _label(b / steps_per_epoch)) for c, b in zip(boundary_columns, boundaries)]
        lines.append(" " * pad + _axis_line(columns, epoch_marks) + "  epoch")
    return lines


def _legend(labels: list[str | None], width: int, color: bool) -> list[str]:
    """A line per series: a key in its pattern (and colour), then its label."""
    pad = _LABEL_WIDTH + 2
    lines = []
    for index, label in enumerate(labels):
        key = sample(index)
        if color:
            key = f"\x1b[{COLORS[index % len(COLORS)]}m{key}\x1b[0m"
        text = label if label is not None else f"series {index + 1}"
        room = max(width - pad - 6, 10)
        text = text if len(text) <= room else text[:room - 1] + "…"
        lines.append(" " * pad + f"{key}  {text}")
    return lines
