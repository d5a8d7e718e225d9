"""What an expression does, in words and JSON: its segments, tick ranges, values, plateau.

Pure Python floats throughout (no numpy), so ``lrdsl parse`` stays quick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lrdsl.language import floats
from lrdsl.language.nodes import (Call, Difference, Expr, Maximum, Minimum, Plateau, Product,
                                  Quantize, Quotient, Repeat, Sequence, Slice, Sum)
from lrdsl.language.catalogue import PRIMITIVES
from lrdsl.language.plan import Plan, TimedCall, TimedRepeat, TimedSequence
from lrdsl.language.units import format_number


@dataclass(frozen=True)
class Segment:
    """One top-level segment: ticks [start, end), its expression, first and final value."""

    start: float
    end: float
    expr: Expr
    first: float
    last: float | None  # None: unbounded, no final value
    timed: Any = field(default=None, compare=False)  # the segment's plan node

    @property
    def name(self) -> str:
        if isinstance(self.expr, Call):
            return self.expr.primitive.title or self.expr.name
        return type(self.expr).__name__.lower()


def segments(plan: Plan) -> list[Segment]:
    schedule = plan.expr.schedule if isinstance(plan.expr, Plateau) else plan.expr
    exprs = schedule.parts if isinstance(schedule, Sequence) else (schedule,)
    timed = plan.schedule
    parts, starts = (timed.parts, timed.starts) if isinstance(timed, TimedSequence) else ([timed], [0.0])
    out = []
    for expr, part, start in zip(exprs, parts, starts):
        first = float(part.values(0.0, floats))
        bounded = math.isfinite(part.duration)
        last = float(part.values(part.duration, floats)) if bounded else None
        out.append(Segment(start, start + part.duration, expr, first, last, part))
    return out


def _shape(segment: Segment) -> str:
    """A few words on how the segment moves between its first and final value."""
    expr = segment.expr
    if isinstance(expr, Call):
        return expr.primitive.describe(expr.arguments)
    if isinstance(expr, Repeat):
        rule = PRIMITIVES["repeat"].describe(
            {"n": expr.n, "mult": expr.mult, "decay": expr.decay, "round": expr.round})
        periods = _periods(segment.timed, segment.start) if isinstance(segment.timed, TimedRepeat) else ""
        return f"{rule}: {expr.schedule}" + (f"; periods {periods}" if periods else "")
    if isinstance(expr, Quantize):
        return f"{_words(expr.schedule)} held per {_every(expr.every)}"
    return str(expr)


def _words(expr: Expr) -> str:
    """A call by its name and shape words (``cosine cos``); anything else by its text."""
    if isinstance(expr, Call):
        shape = expr.primitive.describe(expr.arguments)
        return f"{expr.primitive.title or expr.name} {shape}".rstrip()
    return str(expr)


def _every(every) -> str:
    """``1ep`` as "1 epoch", ``10`` as "10 ticks"."""
    words = {"ep": ("epoch", "epochs"), "st": ("step", "steps"), "": ("tick", "ticks")}
    if every.unit not in words:
        return str(every)
    one, many = words[every.unit]
    return f"{format_number(every.value)} {one if every.value == 1 else many}"


#: how many of a repeat's periods ``lrdsl parse`` lists before "…"
PERIODS_SHOWN = 4


def _periods(node: TimedRepeat, start: float = 0.0) -> str:
    """A repeat's first periods as tick ranges, ``[0, 10) [10, 25) [25, 47) [47, 80) …``, where
    they are not all alike (mult = 1 with its duration whole says nothing more); in the
    expression's ticks, the repeat starting at ``start``."""
    if node.table is None:
        if node.period == node.body.duration:
            return ""
        begins = [k * node.period for k in range(PERIODS_SHOWN + 1)]
    else:
        table = node.table
        begins = [tick - offset for tick, offset in
                  zip(table.restart_ticks, table.restart_offsets)][:PERIODS_SHOWN + 1]
    count = PERIODS_SHOWN if node.n is None else min(int(node.n), PERIODS_SHOWN)
    spans = [f"[{_tick(start + a)}, {_tick(start + b)})" for a, b in zip(begins, begins[1:])][:count]
    more = node.n is None or node.n > count
    return " ".join(spans) + (" …" if more else "")


def _tick(x: float) -> str:
    return "∞" if math.isinf(x) else format_number(round(x, 6))


def describe(plan: Plan) -> list[str]:
    """Lines like ``[0, 5)  warmup  0 → 0.1 linear``, then ``then 0`` and the plateau."""
    segs = segments(plan)
    width = max(len(f"[{_tick(s.start)}, {_tick(s.end)})") for s in segs)
    name_width = max(len(s.name) for s in segs)
    lines = []
    for s in segs:
        span = f"[{_tick(s.start)}, {_tick(s.end)})".ljust(width)
        values = (f"{format_number(s.first)} → {format_number(s.last)}" if s.last is not None
                  else f"from {format_number(s.first)}")
        lines.append(f"{span}  {s.name.ljust(name_width)}  {values} {_shape(s)}".rstrip())
    tail = plan.schedule.parts[-1] if isinstance(plan.schedule, TimedSequence) else plan.schedule
    if segs[-1].last is not None and tail.holds:
        lines.append(f"then {format_number(segs[-1].last)}")
    rule = plan.plateau
    if rule is not None:
        extra = "".join([
            f", cooldown {rule.cooldown}" if rule.cooldown else "",
            f", threshold {format_number(rule.threshold)} ({rule.threshold_mode})",
            f", atol {format_number(rule.atol)}" if rule.atol else "",
            ", running best" if rule.running else "",
        ])
        lines.append(f"plateau on {rule.monitor} ({rule.mode}): ×{format_number(rule.factor)} once more "
                     f"than {rule.patience} reports in a row do not improve, min "
                     f"{format_number(rule.min)}{extra}")
    return lines


#: combination nodes in JSON: node class -> (key, field holding the operands)
_JSON_LISTS = {Sequence: ("sequence", "parts"), Product: ("product", "factors"),
               Sum: ("sum", "terms"), Minimum: ("min", "operands"), Maximum: ("max", "operands")}


def to_json(expr) -> object:
    """The AST as plain JSON data."""
    if isinstance(expr, Call):
        return {"call": expr.name, "args": {k: to_json(v) for k, v in expr.arguments.items()}}
    if type(expr) in _JSON_LISTS:
        key, field = _JSON_LISTS[type(expr)]
        return {key: [to_json(p) for p in getattr(expr, field)]}
    if isinstance(expr, Difference):
        return {"difference": [to_json(expr.minuend), to_json(expr.subtrahend)]}
    if isinstance(expr, Quotient):
        return {"quotient": [to_json(expr.dividend), to_json(expr.divisor)]}
    if isinstance(expr, Slice):
        return {"slice": to_json(expr.schedule), "start": to_json(expr.start), "end": to_json(expr.end)}
    if isinstance(expr, Repeat):
        return {"repeat": to_json(expr.schedule), "n": expr.n, "mult": expr.mult,
                "decay": expr.decay, "round": expr.round}
    if isinstance(expr, Quantize):
        return {"quantize": to_json(expr.schedule), "every": to_json(expr.every)}
    if isinstance(expr, Plateau):
        return {"schedule": to_json(expr.schedule),
                "plateau": {k: to_json(v) for k, v in expr.options.arguments.items()}}
    if isinstance(expr, tuple):
        return [to_json(v) for v in expr]
    if isinstance(expr, (bool, int, float, str)) or expr is None:
        return expr
    return str(expr)  # Duration


def summary(plan: Plan) -> dict:
    """Everything ``lrdsl parse --json`` prints."""
    def finite(x):
        return x if math.isfinite(x) else None
    return {
        "canonical": str(plan.expr),
        "ast": to_json(plan.expr),
        "duration": finite(plan.duration),
        "segments": [{"start": s.start, "end": finite(s.end), "name": s.name, "expr": str(s.expr),
                      "first": s.first, "last": s.last} for s in segments(plan)],
        "plateau": None if plan.plateau is None else {
            k: getattr(plan.plateau, k) for k in plan.plateau.__dataclass_fields__},
    }


def default_ticks(plan: Plan) -> int:
    """A little past the bounded part; for a schedule that runs forever, a few of its periods."""
    if math.isfinite(plan.duration):
        return max(2, math.ceil(plan.duration * 1.1))
    last_start = plan.boundaries()[-1] if plan.boundaries() else 0.0
    tail = plan.schedule.parts[-1] if isinstance(plan.schedule, TimedSequence) else plan.schedule
    period = tail.primitive.span(tail.p) if isinstance(tail, TimedCall) else 0.0
    return max(100, min(math.ceil(last_start * 1.5 + period), 10**7))
