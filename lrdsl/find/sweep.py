"""The LR range test (Smith 2017; fastai's ``lr_find``, Lightning's lr finder), backend-free part.

The sweep is an lrdsl expression, ``anneal(start, end, steps, shape=exp)``: the LR at
optimizer step i is ``start·(end/start)^(i/steps)``, i = 0 … steps − 1, so the recorded LRs
are ``lrdsl.curve(sweep(start, end, steps), steps)``.  The backends (:mod:`lrdsl.find.torch`,
:mod:`lrdsl.find.keras`) train with it and feed each step's loss to a :class:`Recorder`; this
module holds what both share: the checks, the smoothing and stop rule, the two suggestion
rules, and :class:`FindResult` (CSV, PNG, terminal plot, the ready ``lrdsl train`` command).

Smoothing (debiased exponential moving average, as Adam debiases its moments)::

    a_i = β·a_{i−1} + (1 − β)·L_i,  a_{−1} = 0        s_i = a_i / (1 − β^{i+1})

The sweep stops after the step whose smoothed loss exceeds ``diverge`` × the lowest smoothed
loss so far, or is not finite.

Suggestions, both on the smoothed loss over a window that skips the first ⌊steps/10⌋ points
(the loss has barely moved) and the last 5 recorded ones (the blow-up), as fastai does:

- **steepest** (``suggestion``): the LR where ds/d(log lr) is most negative (central
  differences, ``numpy.gradient``), i.e. where the loss falls fastest per factor of LR.
- **valley** (fastai's default since 2.5): the longest strictly decreasing subsequence of
  s in the window, ending at index e with length ℓ, start b = e − ℓ; the LR at
  b + ⌊(e − b)/3⌋ + ⌊(e − b)/6⌋, about halfway down that valley.

Either is None when the window holds fewer than 3 points or the loss never falls in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import csv
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrdsl.errors import LrdslError
from lrdsl.language.units import format_number
from lrdsl.plot.text import render

#: points the suggestions skip at the end of the record (the blow-up)
SKIP_END = 5
#: fewest points a suggestion window may hold
MIN_WINDOW = 3
#: fewest steps a sweep may have
MIN_STEPS = 10
#: the schedule `lrdsl find` proposes, with the suggested peak LR in place of {lr}
TRAIN_EXPR = "warmup(5%) >> cosine({lr}, 95%)"


def check_sweep(start: float, end: float, steps: int, smooth: float, diverge: float, *,
                prefix: str = "") -> None:
    """Raise a one-line :class:`LrdslError` for a sweep that cannot run; ``prefix`` names the keys."""
    def bad(message: str) -> LrdslError:
        return LrdslError(f"{prefix}{message}")

    for name, value in (("start", start), ("end", end), ("smooth", smooth), ("diverge", diverge)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise bad(f"{name} must be a number, got {value!r}")
    if not 0 < start < math.inf:
        raise bad(f"start must be a finite LR > 0 (the sweep is geometric), got {start!r}")
    if not end < math.inf:
        raise bad(f"end must be finite, got {end!r}")
    if not start < end:
        raise bad(f"start must be < end (the sweep rises), got start={start!r}, end={end!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < MIN_STEPS:
        raise bad(f"steps must be an integer ≥ {MIN_STEPS}, got {steps!r}")
    if not 0 <= smooth < 1:
        raise bad(f"smooth must be in [0, 1) (the EMA's β), got {smooth!r}")
    if not diverge > 1:
        raise bad(f"diverge must be > 1 (a multiple of the best smoothed loss), got {diverge!r}")


def sweep(start: float, end: float, steps: int) -> str:
    """The sweep's expression: ``anneal(start, end, steps, shape=exp)``."""
    return f"anneal({format_number(start)}, {format_number(end)}, {int(steps)}, shape=exp)"


class Recorder:
    """Raw and smoothed losses, step by step, and the stop rule (see the module docstring)."""

    def __init__(self, smooth: float, diverge: float):
        self.smooth, self.diverge = float(smooth), float(diverge)
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.best = math.inf
        self._average = 0.0
        self._bias = 1.0  # β^(i+1) after step i

    def add(self, loss: float) -> bool:
        """Record one step's loss; True when the sweep must stop here (diverged)."""
        beta = self.smooth
        self._average = beta * self._average + (1 - beta) * loss
        self._bias *= beta
        value = self._average / (1 - self._bias)
        self.losses.append(loss)
        self.smoothed.append(value)
        if value < self.best:
            self.best = value
        return not math.isfinite(value) or value > self.diverge * self.best

    def result(self, lrs, expr: str, steps: int) -> "FindResult":
        n = len(self.losses)
        return FindResult(lrs=np.asarray(lrs[:n], dtype=np.float64),
                          losses=np.asarray(self.losses, dtype=np.float64),
                          smoothed=np.asarray(self.smoothed, dtype=np.float64),
                          expr=expr, steps=steps, diverge=self.diverge,
                          stopped_early=n < steps)


def window(smoothed: np.ndarray, steps: int) -> slice:
    """The points the suggestions look at: after ⌊steps/10⌋, before the last 5, finite."""
    begin, stop = steps // 10, len(smoothed) - SKIP_END
    finite = np.isfinite(smoothed[begin:stop])
    if not finite.all():
        stop = begin + int(np.argmin(finite))  # up to the first non-finite point
    return slice(begin, max(begin, stop))


def steepest(lrs: np.ndarray, smoothed: np.ndarray) -> int | None:
    """Index of the most negative ds/d(log lr), or None if s never falls."""
    if len(lrs) < MIN_WINDOW:
        return None
    slope = np.gradient(smoothed, np.log(lrs))
    index = int(np.argmin(slope))
    return index if slope[index] < 0 else None


def valley(smoothed: np.ndarray) -> int | None:
    """fastai's valley rule (index into ``smoothed``), or None if s never falls."""
    n = len(smoothed)
    if n < MIN_WINDOW:
        return None
    # longest strictly decreasing subsequence ending at each i (fastai's double loop, vectorized)
    lengths = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        higher = smoothed[:i] > smoothed[i]
        if higher.any():
            lengths[i] = lengths[:i][higher].max() + 1
    end = int(np.argmax(lengths))  # the first index reaching the longest, as fastai's strict <
    if lengths[end] < 2:
        return None
    begin = end - int(lengths[end])
    sections = (end - begin) / 3
    index = begin + int(sections) + int(sections / 2)
    return min(max(index, 0), n - 1)  # fastai's index can reach −1 for a 2-point valley


@dataclass
class FindResult:
    """The record of an LR range test and its suggestions.

    ``lrs``, ``losses``, ``smoothed``: one entry per step taken (the LR that step used).
    ``suggestion``: the steepest-descent LR; ``valley``: fastai's valley LR (None when the
    record cannot support one; see :mod:`lrdsl.find`).  ``expr`` is the sweep's expression,
    ``steps`` its planned length; ``stopped_early`` says the loss diverged before the end.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    expr: str
    steps: int
    diverge: float
    stopped_early: bool
    suggestion: float | None = field(init=False)
    valley: float | None = field(init=False)
    suggestion_index: int | None = field(init=False)
    valley_index: int | None = field(init=False)

    def __post_init__(self):
        span = window(self.smoothed, self.steps)
        lrs, smoothed = self.lrs[span], self.smoothed[span]
        found = steepest(lrs, smoothed), valley(smoothed)
        self.suggestion_index, self.valley_index = (None if i is None else span.start + i for i in found)
        self.suggestion, self.valley = (None if i is None else float(self.lrs[i])
                                        for i in (self.suggestion_index, self.valley_index))

    def __repr__(self) -> str:
        def show(x):
            return "None" if x is None else f"{x:.3g}"
        return (f"FindResult({self.expr!r}, {len(self.lrs)}/{self.steps} steps, "
                f"suggestion={show(self.suggestion)}, valley={show(self.valley)})")

    # --- artifacts -------------------------------------------------------------------------
    def write_csv(self, path: str | Path) -> Path:
        """``step,lr,loss,smoothed``, one row per step taken (floats written exactly)."""
        path = Path(path)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("step", "lr", "loss", "smoothed"))
            for step, row in enumerate(zip(self.lrs, self.losses, self.smoothed)):
                writer.writerow((step, *(repr(float(v)) for v in row)))
        return path

    def _y_range(self, *series: np.ndarray) -> tuple[float, float]:
        """A loss span that shows the descent: from the lowest value up to half again the
        highest value before the best smoothed loss (a blow-up leaves the top of the view)."""
        values = np.concatenate([self.smoothed, *series])
        finite = values[np.isfinite(values)]
        if not len(finite):
            return 0.0, 1.0
        low = float(finite.min())
        best = int(np.nanargmin(np.where(np.isfinite(self.smoothed), self.smoothed, np.inf)))
        head = np.concatenate([self.smoothed[:best + 1], *(s[:best + 1] for s in series)])
        top = float(head[np.isfinite(head)].max()) if np.isfinite(head).any() else low
        high = min(top + 0.5 * (top - low), float(finite.max()))
        if high <= low:
            high = low + max(abs(low) * 0.1, 1e-12)
        return low, high

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Loss against LR (log x-axis), raw and smoothed, the suggestions marked; PNG/SVG/PDF."""
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

        path = Path(path)
        fig = Figure(figsize=(7, 4), dpi=100)
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", linewidth=1.6, label="smoothed")
        for index, name, color in ((self.suggestion_index, "steepest", "tab:red"),
                                   (self.valley_index, "valley", "tab:green")):
            if index is not None:
                ax.plot(self.lrs[index], self.smoothed[index], "o", color=color, markersize=7,
                        label=f"{name} {self.lrs[index]:.3g}")
        ax.set_xscale("log")
        low, high = self._y_range(self.losses)
        pad = (high - low) * 0.05
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(title or self.expr, fontsize=9, family="monospace")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path

    def text_plot(self, width: int = 80, height: int = 14) -> str:
        """The smoothed loss against LR in the terminal (braille), the suggestions marked.

        The sweep is geometric, so steps are evenly spaced in log LR: the x-axis is the step,
        labelled with its LR.  The y-axis spans what :meth:`plot` shows of the smoothed loss.
        """
        n = len(self.lrs)
        low, high = self._y_range()
        smoothed = self.smoothed

        def loss_at(step: float) -> float:
            value = float(smoothed[min(int(step), n - 1)])
            return min(value, high)  # a blow-up runs along the top edge (NaN stays a gap)

        def lr_at(step: float) -> float:
            return float(self.lrs[min(int(step), n - 1)])

        marks = sorted({i for i in (self.suggestion_index, self.valley_index) if i is not None})
        return render(loss_at, max(n, 2), width=width, height=height, boundaries=[float(m) for m in marks],
                      x_name="lr", x_value=lr_at)

    # --- what to do next ---------------------------------------------------------------------
    def summary(self, train_args: Sequence[str] = ()) -> list[str]:
        """Lines telling what the test found and a ready ``lrdsl train`` command per suggestion."""
        n = len(self.lrs)
        lines = []
        if self.stopped_early and not math.isfinite(self.smoothed[-1]):
            lines.append(f"stopped at step {n}/{self.steps}: the loss was not finite at lr {self.lrs[-1]:.3g}")
        elif self.stopped_early:
            lines.append(f"stopped at step {n}/{self.steps}: the smoothed loss passed "
                         f"{format_number(self.diverge)}× its best at lr {self.lrs[-1]:.3g}")
        else:
            lines.append(f"swept {n} steps, lr {self.lrs[0]:.3g} → {self.lrs[-1]:.3g}")
        span = window(self.smoothed, self.steps)
        why = ("too few steps before it stopped; try a lower start" if span.stop - span.start < MIN_WINDOW
               else "the smoothed loss never fell; try a higher end or more steps")
        for name, lr, rule in (("steepest", self.suggestion, "steepest descent of the smoothed loss"),
                               ("valley", self.valley, "fastai's valley rule")):
            if lr is None:
                lines.append(f"{name:>8}: none ({why})")
                continue
            lines.append(f"{name:>8}: lr {lr:.3g}  ({rule})")
            lines.append("          " + train_command(lr, train_args))
        return lines


def peak(lr: float) -> str:
    """An LR rounded to 3 significant digits, in lrdsl's shortest number form."""
    return format_number(float(f"{lr:.3g}"))


def train_command(lr: float, train_args: Sequence[str] = ()) -> str:
    """``lrdsl train [args] 'schedule.expr="warmup(5%) >> cosine(<lr>, 95%)"'``."""
    expr = TRAIN_EXPR.format(lr=peak(lr))
    return shlex.join(["lrdsl", "train", *train_args, f'schedule.expr="{expr}"'])
