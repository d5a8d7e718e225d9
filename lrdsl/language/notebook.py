"""What a notebook sees of an expression or a program: ``e(t)``, ``e.plot()``, the rich display.

:class:`~lrdsl.Expr` and :class:`~lrdsl.Program` inherit :class:`Notebook`.  The work is done
above the core: values by :func:`lrdsl.curve` (``lrdsl.programs``, which imports the AST), the
display and the drawing by :mod:`lrdsl.plot.notebook` (a layer above the core; only its
``plot`` imports matplotlib).  They are looked up with :func:`importlib.import_module` when a
method is called: a static import, even inside a function, would be an import cycle through the
AST and would put lrdsl.plot under the core, which the import-linter contracts in pyproject.toml
forbid.  ``repr`` stays the canonical text (the saved form); the display is ``_repr_html_``.
"""

from __future__ import annotations

import importlib
from typing import Any


class Notebook:
    """``e(t)`` values, ``e.plot()`` on matplotlib, and Jupyter's rich display (docs/notebooks.md)."""

    __slots__ = ()

    def __call__(self, t, **units) -> Any:
        """The value at position ``t`` (a float), or at each position of an array (a float64
        array): exactly :func:`lrdsl.curve` at those positions, with the same ``units``
        (``total=``, ``steps_per_epoch=``, ``clock=``, the constants, ``metrics=``), and the
        same error when a unit the expression needs is missing.  A program gives
        ``{channel: value}``.

        >>> import lrdsl
        >>> e = lrdsl.parse("warmup(2) >> 0.1")
        >>> e(1), e([0, 1, 2]).tolist()
        (0.05, [0.0, 0.05, 0.1])
        >>> lrdsl.parse("linear(0.1, 0, 100%)")(5, total=10)
        0.05
        """
        import numpy as np

        curve = importlib.import_module("lrdsl.programs").curve  # imports the AST: see above
        if np.ndim(t) != 0 or isinstance(t, (bool, np.bool_, str, bytes)):
            return curve(self, t, **units)  # an array of positions; a string or bool: curve's error
        values = curve(self, [t], **units)  # [t]: a bare whole number would be a count of ticks
        if isinstance(values, dict):
            return {name: v[0].item() for name, v in values.items()}
        return values[0].item()

    def plot(self, ax=None, *, ticks: int | None = None, log: bool = False, **units):
        """Draw the curve on matplotlib ``ax`` and return the Axes drawn on (pandas' convention:
        without ``ax``, a new figure from ``matplotlib.pyplot``, so the session's backend shows
        it).  ``ticks``: positions 0..ticks−1 (default: a little past the bounded part);
        ``units`` as for ``e(t)``.  A program draws a panel per channel and returns their Axes
        (or all channels on the one ``ax`` given).  Needs matplotlib; never changes its backend.
        """
        face = importlib.import_module("lrdsl.plot.notebook")  # a layer above the core: see above
        return face.plot(self, ax, ticks=ticks, log=log, **units)

    def _repr_html_(self) -> str:
        """Jupyter's display: the canonical text, the segments, an inline SVG of the curve."""
        return importlib.import_module("lrdsl.plot.notebook").html(self)

