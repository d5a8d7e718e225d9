"""A curve as a small inline SVG, written with numpy alone: a notebook's rich display shows it
without matplotlib, without a network, in a few kilobytes."""

from __future__ import annotations

from html import escape

from lrdsl.language.units import format_number

#: one panel's size in pixels, and its margins (left for the y labels, bottom for the x labels)
WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 18, 22


def _label(x: float) -> str:
    return format_number(float(f"{x:.3g}"))


def panel(t, values, *, boundaries=(), title: str = "", last: float | None = None, y: float = 0) -> str:
    """One panel at height ``y`` of the picture: the polyline through ``(t, values)``, dashed
    vertical lines at ``boundaries``, the y range's ends and the x range's ends as labels,
    ``title`` above.  ``last``: the x axis's end (default the last of ``t``)."""
    import numpy as np

    t, values = np.asarray(t, dtype=np.float64), np.asarray(values, dtype=np.float64)
    x_end = float(last if last is not None else (t[-1] if t.size else 1.0)) or 1.0
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo <= 1e-12 * max(abs(hi), 1e-300):  # a flat curve: a band around it
        pad = abs(hi) * 0.5 or 1.0
        lo, hi = (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + np.asarray(x) / x_end * inner_w

    def py(v):
        return y + TOP + (1 - (np.asarray(v) / 2 - lo / 2) / (hi / 2 - lo / 2)) * inner_h  # halves: no overflow

    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(t), py(values)) if np.isfinite(b))
    top, bottom = y + TOP, y + TOP + inner_h
    parts = [f'<rect x="{LEFT}" y="{top}" width="{inner_w}" height="{inner_h}" fill="none" stroke="#bbb"/>']
    for boundary in boundaries:
        if 0 < boundary <= x_end:
            x = float(px(boundary))
            parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#999" '
                         f'stroke-dasharray="4,3"/>')
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.6"/>')
    text = 'font-family="monospace" font-size="10" fill="#444"'
    parts += [
        f'<text x="{LEFT - 4}" y="{top + 8}" text-anchor="end" {text}>{_label(hi)}</text>',
        f'<text x="{LEFT - 4}" y="{bottom}" text-anchor="end" {text}>{_label(lo)}</text>',
        f'<text x="{LEFT}" y="{bottom + 13}" {text}>0</text>',
        f'<text x="{LEFT + inner_w}" y="{bottom + 13}" text-anchor="end" {text}>{_label(x_end)}</text>',
    ]
    if title:
        parts.append(f'<text x="{LEFT}" y="{y + 12}" {text}>{escape(title)}</text>')
    return "\n".join(parts)


def picture(panels: list[str]) -> str:
    """The ``<svg>`` element holding ``panels`` (from :func:`panel`, each at ``y = k·HEIGHT``)."""
    height = HEIGHT * len(panels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}">\n' + "\n".join(panels) + "\n</svg>")
