"""AST -> plan: durations converted to ticks, warm-up targets fixed, ready to evaluate.

A plan is what every backend runs.  ``Plan.values(t, xp)`` evaluates the time
schedule at the tick array ``t`` with the array namespace ``xp`` (``numpy``
for the reference and the PyTorch backend, ``keras.ops`` in a Keras graph):
one code path, no Python per tick.  The plateau's rule rides along; its
state lives with whoever receives the reports.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import SimpleNamespace

from lrdsl import floats
from lrdsl.catalogue import Primitive, onecycle_complaint
from lrdsl.errors import ArgumentError, LrdslError
from lrdsl.nodes import Call, Expr, Plateau, Product, Repeat, Sequence
from lrdsl.parser import parse
from lrdsl.plateau import PlateauRule
from lrdsl.units import Duration, Units


class TimedCall:
    """A primitive with its arguments in ticks."""

    def __init__(self, primitive: Primitive, p: SimpleNamespace, duration: float):
        self.primitive, self.p, self.duration = primitive, p, duration
        self.end = primitive.end(p) if math.isfinite(duration) else math.inf

    def values(self, t, xp):
        if math.isfinite(self.end):
            t = xp.minimum(t, self.end)
        return self.primitive.value(xp, t, self.p)


class TimedSequence:
    """Segments with their start ticks; at a boundary the next segment is in force."""

    def __init__(self, parts: list, starts: list[float]):
        self.parts, self.starts = parts, starts
        self.duration = starts[-1] + parts[-1].duration

    def values(self, t, xp):
        out = self.parts[0].values(t, xp)
        for start, part in zip(self.starts[1:], self.parts[1:]):
            out = xp.where(t >= start, part.values(xp.maximum(t - start, 0.0), xp), out)
        return out


class TimedProduct:
    def __init__(self, factors: list):
        self.factors = factors
        self.duration = max((f.duration for f in factors if math.isfinite(f.duration)),
                            default=math.inf)

    def values(self, t, xp):
        out = self.factors[0].values(t, xp)
        for factor in self.factors[1:]:
            out = out * factor.values(t, xp)
        return out


class TimedRepeat:
    def __init__(self, body, n: float | None):
        self.body, self.n, self.period = body, n, body.duration
        self.duration = math.inf if n is None else n * self.period

    def values(self, t, xp):
        local = xp.mod(t, self.period)
        if self.n is not None:  # after the last round, hold its final value
            local = xp.where(t >= self.duration, self.period, local)
        return self.body.values(local, xp)


@dataclass(frozen=True)
class Plan:
    """A compiled expression: ``schedule`` (timed tree), ``plateau`` (rule or None)."""

    expr: Expr
    schedule: object
    plateau: PlateauRule | None
    units: Units

    @property
    def duration(self) -> float:
        """Ticks until the schedule's last segment ends (``inf`` if it runs forever)."""
        return self.schedule.duration

    def values(self, t, xp=None):
        """The time schedule f(t) (no plateau) at the ticks ``t``: numpy float64 by default."""
        if xp is None:
            import numpy as np
            with np.errstate(all="ignore"):
                return self.schedule.values(np.asarray(t, dtype=np.float64), np)
        return self.schedule.values(t, xp)

    def value_at(self, tick: float) -> float:
        """f(tick) for one tick, in plain Python floats (no numpy)."""
        return float(self.schedule.values(float(tick), floats))

    def boundaries(self) -> list[float]:
        """Start ticks of the top-level segments after the first (where ``>>`` switches)."""
        return list(self.schedule.starts[1:]) if isinstance(self.schedule, TimedSequence) else []


def _ticks_arg(units: Units, value):
    if isinstance(value, Duration):
        return units.ticks(value)
    if isinstance(value, tuple) and value and isinstance(value[0], Duration):
        return tuple(units.ticks(v) for v in value)
    return value


def _timed_call(node: Call, units: Units, target: float | None):
    primitive = node.primitive
    args = {name: _ticks_arg(units, value) for name, value in node.arguments.items()}
    if args.get("d") is None and "d" in args:
        args["d"] = math.inf
    if node.name == "cyclic" and args["down"] is None:
        args["down"] = args["up"]
    if node.name == "warmup":
        args["target"] = target
    p = SimpleNamespace(**args)
    for name in ("milestones", "boundaries"):
        ticks = args.get(name)
        if ticks is not None and any(b <= a for a, b in zip(ticks, ticks[1:])) and \
                (name == "boundaries" or any(b < a for a, b in zip(ticks, ticks[1:]))):
            order = "strictly increasing" if name == "boundaries" else "in increasing order"
            raise ArgumentError(f"{node.name}: {name} must be {order} in ticks, got "
                                f"{', '.join(f'{v:g}' for v in ticks)}")
    if node.name == "onecycle":
        complaint = onecycle_complaint(p)
        if complaint:
            raise ArgumentError(f"onecycle: {complaint}")
    duration = p.d if node.bounded else math.inf
    return TimedCall(primitive, p, duration)


def _timed(node: Expr, units: Units, target: float | None = None):
    if isinstance(node, Call):
        return _timed_call(node, units, target)
    if isinstance(node, Sequence):
        parts: list = [None] * len(node.parts)
        for i in reversed(range(len(node.parts))):  # a warm-up needs its successor first
            following = None
            if isinstance(node.parts[i], Call) and node.parts[i].is_warmup:
                following = float(parts[i + 1].values(0.0, floats))
            parts[i] = _timed(node.parts[i], units, following)
        starts = [0.0]
        for part in parts[:-1]:
            starts.append(starts[-1] + part.duration)
        return TimedSequence(parts, starts)
    if isinstance(node, Product):
        return TimedProduct([_timed(f, units) for f in node.factors])
    if isinstance(node, Repeat):
        return TimedRepeat(_timed(node.schedule, units), node.n)
    raise LrdslError(f"not a time schedule: {node}")


@functools.lru_cache(maxsize=256)
def _plan(expr: Expr, steps_per_epoch, total) -> Plan:
    units = Units(steps_per_epoch, total)
    units.check(expr.units())
    if isinstance(expr, Plateau):
        return Plan(expr, _timed(expr.schedule, units), PlateauRule.from_call(expr.options), units)
    return Plan(expr, _timed(expr, units), None, units)


def plan(expr: str | Expr, *, steps_per_epoch: float | None = None,
         total: float | None = None) -> Plan:
    """Compile an expression for given units.  Cached on (expression, units).

    ``steps_per_epoch`` converts ``ep`` to ticks (pass it when you step per batch);
    ``total`` (in ticks) resolves ``%``.
    """
    expr = parse(expr)
    try:
        return _plan(expr, steps_per_epoch, total)
    except LrdslError as error:
        error.expr = str(expr)
        raise
    except TypeError:  # unhashable units
        raise LrdslError(f"steps_per_epoch and total must be numbers, got "
                         f"{steps_per_epoch!r} and {total!r}") from None
