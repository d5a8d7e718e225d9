"""The reference evaluator: exact closed form in float64, vectorized over ticks.

Every backend is tested against :func:`curve`; :func:`lr_function` is the same value at one
tick in plain floats (``lrdsl parse``, ``lrdsl plot`` in the terminal, the fuzzer's oracle).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable, Mapping, Sequence as Seq

from lrdsl.errors import LrdslError
from lrdsl.language.nodes import Expr
from lrdsl.language.plan import Plan, plan
from lrdsl.language.plateau import reports_in_force


#: the most ticks one call evaluates (1 GiB of float64): more is refused before allocating
MAX_TICKS = 2 ** 27


def tick_array(ticks):
    """``ticks`` as a float64 array: n for 0..n−1 (at most MAX_TICKS), or the positions given,
    checked finite and ≥ 0."""
    return _tick_array(ticks)


def _tick_array(ticks):
    import numpy as np

    if isinstance(ticks, (bool, np.bool_, str, bytes)):  # "10" would pass np.asarray as a 0-d array
        raise LrdslError(f"ticks must be a count or an array of ticks, got {ticks!r}")
    if isinstance(ticks, (int, np.integer)):
        if ticks < 0:
            raise LrdslError(f"ticks must be ≥ 0, got {ticks}")
        if ticks > MAX_TICKS:
            raise LrdslError(f"ticks={ticks} is more than one call evaluates ({MAX_TICKS}, 1 GiB "
                             f"of float64): pass an array of the ticks you need, or evaluate in chunks")
        return np.arange(int(ticks), dtype=np.float64)
    try:
        t = np.asarray(ticks, dtype=np.float64)
    except (TypeError, ValueError):
        raise LrdslError(f"ticks must be a count or an array of ticks, got {ticks!r}") from None
    if t.size and not (np.all(np.isfinite(t)) and t.min() >= 0):
        raise LrdslError("ticks must be finite and ≥ 0")
    return t


def curve(expr: str | Expr, ticks, *, steps_per_epoch: float | None = None,
          total: float | None = None, metrics: Mapping[str, Seq[float]] | None = None,
          report_every: float | None = None, clock: str = "ticks", **constants: float):
    """The learning rate at each tick, as a numpy float64 array.

    Args:
        expr: expression text or :class:`lrdsl.Expr`.
        ticks: ``n`` for ticks ``0..n-1`` (at most ``MAX_TICKS`` = 2²⁷), or an array of ticks;
            on a ``samples`` or ``tokens`` clock, positions in that unit.
        steps_per_epoch: converts ``ep`` durations (pass it when a tick is a batch).
        total: the run's length in ticks (in the clock's unit), for ``%`` durations.
        clock, constants: the clock and its fixed conversions (docs/language.md "Clocks").
        metrics: for ``| plateau``: monitor name -> one value per report; report ``i`` is
            made at the end of epoch ``i`` and affects ticks from ``(i+1)·report_every`` on.
        report_every: ticks between reports (default ``steps_per_epoch`` or 1).

    >>> curve("warmup(2) >> 0.1", 4).tolist()
    [0.0, 0.05, 0.1, 0.1]
    >>> curve("0.1 | plateau(loss, 0.5, patience=0)", 3, metrics={"loss": [1, 1]}).tolist()
    [0.1, 0.1, 0.05]
    """
    import numpy as np

    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total, clock=clock, **constants)
    t = _tick_array(ticks)
    f = compiled.values(t)
    rule = compiled.plateau
    if rule is None or not metrics:
        return f
    scales = np.asarray(rule.scales(rule.monitored(metrics, "metrics")))
    if report_every is not None and (isinstance(report_every, bool) or not isinstance(report_every, Real)
                                     or not 0 < report_every < math.inf):
        raise LrdslError(f"report_every must be a finite number of ticks > 0, got {report_every!r}")
    every = report_every or steps_per_epoch or 1
    reports = reports_in_force(t, every, len(scales) - 1, np).astype(np.int64)
    return rule.apply(f, scales[reports], np)


def lr_function(plan: Plan, metrics: Mapping[str, Seq[float]] | None = None,
                report_every: float = 1) -> Callable[[float], float]:
    """tick -> LR in plain floats, with simulated plateau reports (as :func:`lrdsl.curve`)."""
    rule = plan.plateau
    if rule is None or not metrics:
        return plan.value_at
    scales = rule.scales(rule.monitored(metrics, "--metric"))

    def lr(tick: float) -> float:
        f = plan.value_at(tick)
        return rule.apply(f, scales[int(reports_in_force(tick, report_every, len(scales) - 1))])
    return lr
