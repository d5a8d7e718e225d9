"""AST -> plan: durations in ticks, neighbours' levels fixed, every value proven finite and ≥ 0.

A plan is what every backend runs.  ``Plan.values(t, xp)`` evaluates the time schedule at
the tick array ``t`` with an array namespace ``xp`` (``numpy`` for the reference and the
PyTorch backend, ``keras.ops`` in a Keras graph, ``jax.numpy`` for optax): one code path,
no Python per tick.  The plateau's rule rides along; its state lives with whoever receives
the reports.

Planning also proves the values safe (docs/language.md "Values and the per-group rule"): each timed node knows the interval
its values lie in — a call from its catalogue entry's ``range``, a combination by interval
arithmetic over its operands — and an interval that leaves [0, ∞) anywhere is an
:class:`ArgumentError` naming the node, as is a derived constant that is not finite.
"""

from __future__ import annotations

import fractions
import functools
import math
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

from lrdsl.language import floats
from lrdsl.language.numerics import (RESTART_HORIZON, RESTART_TABLE, float32_split, geometric,
                                     period_complaint, period_position, remaining, restart_of,
                                     restart_end, restart_steady, restart_table, unfolded, whole_periods)
from lrdsl.errors import ArgumentError, LrdslError, UnitError
from lrdsl.language.nodes import (Call, Difference, Expr, Maximum, Minimum, Plateau, Product,
                                  Quantize, Quotient, Repeat, Sequence, Slice, Sum)
from lrdsl.language.parser import parse
from lrdsl.language.plateau import PlateauRule
from lrdsl.language.units import CONSTANTS, Duration, Units


class Timed(Protocol):
    """A node of the plan: a duration in ticks, a proven value range, and its values.

    ``values(t, xp, left)``: ``left`` is None or the ticks left to the node's duration, d − t,
    computed by the caller from a tick it holds exactly (:class:`TimedSequence`); a node hands
    it on to what ends where it ends, and a bounded formula reads its tail from it.
    """

    duration: float
    range: tuple[float, float]

    def values(self, t, xp, left=None) -> Any: ...


def _numbers(value):
    """The floats in an argument or derived constant, tuples flattened."""
    if isinstance(value, tuple):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, float):
        yield value


def _checked_range(node, lo: float, hi: float) -> tuple[float, float]:
    """The range, or an error naming the node where it first leaves [0, ∞)."""
    if math.isnan(lo) or math.isnan(hi):
        raise ArgumentError(f"{node}: computes a value that is not a number")
    if lo < 0:
        raise ArgumentError(f"{node}: may go negative (its values can reach {lo:.6g}); a learning "
                            f"rate or hyperparameter must stay ≥ 0")
    if not math.isfinite(hi):
        raise ArgumentError(f"{node}: grows without bound or beyond float range; bound it "
                            f"(d=… on the growing call) or lower its numbers")
    return lo, hi


class TimedCall:
    """A primitive with its arguments in ticks and its derived constants."""

    def __init__(self, node: Call, p: SimpleNamespace):
        primitive = node.primitive
        self.node, self.primitive, self.p = node, primitive, p
        if primitive.resolve is not None:
            complaint = primitive.resolve(p)
            if complaint:
                raise ArgumentError(f"{node.name}: {complaint}")
        for name, value in vars(p).items():
            for number in _numbers(value):
                if not math.isfinite(number) and not (name == "d" and number == math.inf):
                    raise ArgumentError(f"{node}: computes a non-finite constant ({name}); an "
                                        f"argument is too large or too small")
        for param in primitive.params:  # every duration divides a tick: t/d must be finite
            if param.kind.startswith("duration"):  # for any tick a counter holds (< 2⁶⁴)
                for number in _numbers(getattr(p, param.name)):
                    if number > 0 and not math.isfinite(2.0 ** 64 / number):
                        raise ArgumentError(f"{node}: computes a non-finite constant (t/{param.name} "
                                            f"overflows); {param.name}={number:.3g} ticks is too short "
                                            f"(at least {2.0 ** 64 / 1.79e308:.0e})")
        self.duration = p.d if node.bounded else math.inf
        self.end = primitive.end(p) if math.isfinite(self.duration) else math.inf
        self.range = _checked_range(node, *primitive.range(p))
        # where float32 rounds the end tick itself (999.9999999 → 1000.0), the value held from
        # there on is decided once in float64: a staircase read at the rounded end would flip
        # a level.  An end float32 holds costs nothing more than min(t, end).
        p.left = None  # d − t, when a caller hands it in (values)
        value = primitive.value  # every catalogue entry sets it
        rounded = self.holds and float32_split(float(self.end))[1] != 0
        self.held = float(value(floats, self.end, p)) if rounded and value is not None else None

    @property
    def holds(self) -> bool:
        """Whether the value stays put after the node's duration (a combination may not)."""
        return math.isfinite(self.end)

    def values(self, t, xp, left=None):
        p = self.p if left is None else SimpleNamespace(**{**vars(self.p), "left": left})
        if not self.holds:
            return self.primitive.value(xp, t, p)
        f = self.primitive.value(xp, xp.minimum(t, self.end), p)
        return f if self.held is None else xp.where(t >= self.end, self.held, f)


class TimedSequence:
    """Segments with their start ticks; at a boundary the next segment is in force.

    The sequence ends at ``duration`` (``total`` exactly when a segment stretches): from there
    on the last segment sees its own duration, decided here in float64, not ``t − start``,
    which rounding can leave a hair short of it (``10 >> cooldown(1%)``, total=77: 77 − 76.23).
    """

    def __init__(self, parts: list, starts: list[float], duration: float | None = None):
        self.parts, self.starts = parts, starts
        self.duration = starts[-1] + parts[-1].duration if duration is None else duration
        self.range = (min(p.range[0] for p in parts), max(p.range[1] for p in parts))
        self.holds = parts[-1].holds

    def values(self, t, xp, left=None):
        last = len(self.parts) - 1
        out = self.parts[0].values(t, xp, left if last == 0 else None)
        for i, (start, part) in enumerate(zip(self.starts[1:], self.parts[1:]), 1):
            head, tail = float32_split(start)  # t − start exact in float32 near the start too
            local = xp.maximum((t - head) - unfolded(xp, t, tail) if tail else t - start, 0.0)
            if i == last and math.isfinite(self.duration):
                local = xp.where(t >= self.duration, part.duration, local)
            out = xp.where(t >= start, part.values(local, xp, self._left(i, t, xp, left)), out)
        return out

    def _left(self, i, t, xp, left):
        """Ticks left in segment i, from the sequence's own tick where its start float32 does
        not hold: the local tick is then rounded to half a float32 ulp of t, and the segment's
        d − local near its end would be mostly that rounding (a cool-down's last ticks)."""
        end = self.starts[i] + self.parts[i].duration
        if i == len(self.parts) - 1 and math.isfinite(self.duration):
            end = self.duration
        if not math.isfinite(end):
            return None
        if left is not None and end == self.duration:
            return left
        if not float32_split(self.starts[i])[1]:
            return None  # t − start exact: the segment's own d − t keeps its digits
        return xp.maximum(remaining(xp, end, t), 0.0)  # 0 past the end, as min(t, d) makes it


def _longest(operands) -> float:
    """A combination lasts as long as its longest bounded operand (unbounded if none is)."""
    return max((o.duration for o in operands if math.isfinite(o.duration)), default=math.inf)


class TimedPointwise:
    """Operands combined tick by tick: product, sum, minimum or maximum."""

    COMBINE = {
        "product": (lambda xp, a, b: a * b, lambda ranges: (math.prod(r[0] for r in ranges),
                                                             math.prod(r[1] for r in ranges))),
        "sum": (lambda xp, a, b: a + b, lambda ranges: (sum(r[0] for r in ranges),
                                                         sum(r[1] for r in ranges))),
        "minimum": (lambda xp, a, b: xp.minimum(a, b), lambda ranges: (min(r[0] for r in ranges),
                                                                       min(r[1] for r in ranges))),
        "maximum": (lambda xp, a, b: xp.maximum(a, b), lambda ranges: (max(r[0] for r in ranges),
                                                                       max(r[1] for r in ranges))),
    }

    def __init__(self, node: Expr, kind: str, operands: list):
        self.node, self.operands = node, operands
        self.combine, bounds = self.COMBINE[kind]
        self.duration = _longest(operands)
        self.holds = all(o.holds for o in operands)
        self.range = _checked_range(node, *bounds([o.range for o in operands]))

    def values(self, t, xp, left=None):
        def of(operand):  # d − t is the operand's too where it ends with the combination
            return operand.values(t, xp, left if operand.duration == self.duration else None)
        out = of(self.operands[0])
        for operand in self.operands[1:]:
            out = self.combine(xp, out, of(operand))
        return out


class TimedDifference:
    """a − b, proven ≥ 0 over the operands' ranges.

    The proof is exact arithmetic over the bounds; float rounding can still leave −1e-17
    where the bound is exactly 0, so the value is floored at 0 — a rounding guard, not a
    change of meaning.
    """

    def __init__(self, node: Difference, a, b):
        self.a, self.b = a, b
        self.duration = _longest((a, b))
        self.holds = a.holds and b.holds
        self.range = _checked_range(node, a.range[0] - b.range[1], a.range[1] - b.range[0])

    def values(self, t, xp, left=None):
        a = self.a.values(t, xp, left if self.a.duration == self.duration else None)
        b = self.b.values(t, xp, left if self.b.duration == self.duration else None)
        return xp.maximum(a - b, 0.0)


class TimedQuotient:
    """a / b, by interval division: b's proven range lies in (0, ∞), and the quotient's
    range is [a_lo / b_hi, a_hi / b_lo], finite.

    The divisor is floored at its proven low end before dividing — a rounding guard like
    the difference's floor at 0, not a change of meaning: a float32 divisor that rounds a
    hair below its bound cannot push the quotient past the proven range.
    """

    def __init__(self, node: Quotient, a, b):
        self.node, self.a, self.b = node, a, b
        self.duration = _longest((a, b))
        self.holds = a.holds and b.holds
        lo, hi = b.range
        if not lo > 0:
            reach = "is 0" if hi == 0 else f"may reach 0 (its values lie in [{lo:.6g}, {hi:.6g}])"
            error = ArgumentError(f"{node}: the divisor of '/', {node.divisor}, {reach}; a divisor "
                                  f"must stay > 0")
            # where the divisor's text starts in the node's: plan() puts the caret there
            setattr(error, "node_site", (node, len(str(node)) - len(str(node.divisor))
                                         - _parenthesized(node)))
            raise error
        if not math.isfinite(a.range[1] / lo):  # 1e308 / 1e-308 is inf in Python too
            raise ArgumentError(f"{node}: may reach {a.range[1]:.3g} / {lo:.3g}, beyond float "
                                f"range (its divisor {node.divisor} comes that close to 0)")
        self.range = _checked_range(node, a.range[0] / hi, a.range[1] / lo)

    def float32_complaint(self, peak: float) -> str | None:
        """A divisor float32 would flush to 0, or one so small that a piece of the dividend
        float32 flushes (below 1.18e-38) would come out of the division beyond §5's tolerance,
        10⁻¹² of the schedule's proven ``peak`` (``linear(0, 1e-30, 1e6) * 1e-8 / 1e-30``: the
        product is subnormal at tick 1, the quotient 1e-14).  An error e in the dividend moves
        a / b by up to e / b_lo, one in the divisor by up to a_hi·e / b_lo²."""
        lo, hi = self.b.range
        if lo < FLOAT32_NORMAL:
            return (f"{self.node}: the divisor's values reach down to {lo:.3g}, below float32's "
                    f"smallest normal number (1.18e-38)")
        if hi * FLOAT32_NORMAL > 1:  # XLA on CPU divides as a·(1/b): 1/b would flush to 0
            return (f"{self.node}: the divisor's values reach up to {hi:.3g}, whose reciprocal is "
                    f"below float32's smallest normal number (1.18e-38)")
        gain = max(1 / lo, self.a.range[1] / lo / lo)
        if gain > 1 and FLOAT32_NORMAL * gain > max(1e-12 * peak, FLOAT32_NORMAL):
            return (f"{self.node}: its divisor reaches down to {lo:.3g}, so a number float32 "
                    f"flushes to 0 (below 1.18e-38) would move the quotient by up to "
                    f"{FLOAT32_NORMAL * gain:.3g}")
        return None

    def values(self, t, xp, left=None):
        a = self.a.values(t, xp, left if self.a.duration == self.duration else None)
        b = self.b.values(t, xp, left if self.b.duration == self.duration else None)
        return xp.divide(a, xp.maximum(b, self.b.range[0]))


def _flush_gain(node) -> float:
    """How far an error of one smallest-normal number at an intermediate inside ``node`` (a piece
    a flushing backend drops to 0) can move the node's value (at least 1; 0 for a constant, whose
    number is exact): a later factor of a product multiplies it by its bound (``poly(10, 10) /
    1e38 * 1e38``: the quotient flushes near the end, the factor brings 1e-38 back to 0.1), a
    quotient divides it by its divisor's low end (a_hi / b_lo² for one inside the divisor);
    other nodes pass on their children's largest."""
    if isinstance(node, TimedCall) and node.range[0] == node.range[1]:
        return 0.0  # a constant: nothing in it flushes
    if isinstance(node, TimedQuotient):
        lo = node.b.range[0]
        return max(1.0, _flush_gain(node.a) / lo, node.a.range[1] / lo * (_flush_gain(node.b) / lo))
    if isinstance(node, TimedPointwise) and node.combine is TimedPointwise.COMBINE["product"][0]:
        highs = [o.range[1] for o in node.operands]
        after = [1.0] * (len(highs) + 1)  # after[i]: the product of the bounds from i on
        for i in range(len(highs) - 1, -1, -1):
            after[i] = after[i + 1] * highs[i]
        gain, before = 1.0, 1.0
        for i, operand in enumerate(node.operands):
            gain = max(gain, _flush_gain(operand) * before * after[i + 1], after[i + 1])
            before *= highs[i]
        return gain
    children = [getattr(node, name) for name in ("inner", "body", "a", "b") if hasattr(node, name)]
    children += list(getattr(node, "parts", ()) or getattr(node, "operands", ()))
    return max([1.0] + [_flush_gain(child) for child in children])


def _parenthesized(node: Quotient) -> int:
    """1 where the divisor's text stands in parentheses after the '/', else 0."""
    return 1 if str(node).endswith(f"({node.divisor})") else 0


class TimedSlice:
    """a(start + min(t, stop − start)); without a stop, a(start + t)."""

    def __init__(self, inner, start: float, stop: float | None):
        self.inner, self.start = inner, start
        self.length = math.inf if stop is None else stop - start
        self.duration = inner.duration - start if stop is None else self.length
        self.holds = stop is not None or inner.holds
        self.range = inner.range

    def values(self, t, xp, left=None):
        if math.isfinite(self.length):
            t = xp.minimum(t, self.length)
        ends_with = self.start + self.duration == self.inner.duration  # a slice to a's end
        return self.inner.values(t + self.start if self.start else t, xp,
                                 left if ends_with else None)


class TimedRepeat:
    """Repetition k of the body (from 0) over Pₖ ticks: decayᵏ·a(τ·D/Pₖ), τ ticks into it, D the
    body's duration, Pₖ = D·multᵏ (round: P₀ = ⌊D⌋, Pₖ = ⌊Pₖ₋₁·mult⌋); held at a(D)·decayⁿ⁻¹
    after the last of n.

    Equal periods (mult = 1) are placed by :func:`period_position`; growing ones by a plan-time
    table of whole start ticks and offsets (:func:`restart_table`, sgdr's), which also gives the
    ticks left in the repetition: the body's time and its ticks left are both scaled by D/Pₖ,
    so a cosine's tail keeps its digits in float32.
    """

    def __init__(self, node: Repeat, body, n: float | None):
        self.node, self.body, self.n = node, body, n
        self.mult, self.decay, self.round = node.mult, node.decay, node.round
        self.log_decay = math.log(node.decay)
        length = body.duration
        if self.round:
            if not length >= 1:
                raise ArgumentError(f"{node}: round=true runs whole-tick periods, and "
                                    f"{node.schedule} lasts {length:g} ticks, less than one")
            length = float(math.floor(length))
        self.period, self.table = length, None
        if self.mult == 1:
            self.duration = math.inf if n is None else n * self.period
            complaint = period_complaint("its period", self.period)
            if complaint:
                raise ArgumentError(f"{node}: {complaint}")
        else:
            self.table = self._table(node, n)
        if not math.isfinite(self.duration) and n is not None:
            raise ArgumentError(f"{node}: lasts {n:g} repetitions of {body.duration:g} ticks and "
                                f"more, beyond float range; lower n, or leave it out to repeat forever")
        self.holds = n is not None
        self.range = _checked_range(node, *self._range(body.range))

    def _table(self, node, n):
        ticks, offsets, tails, lengths = restart_table(self.period, self.mult, self.round, n)
        steady = restart_steady(self.period, self.mult, self.round, n)
        table = SimpleNamespace(
            restart_ticks=ticks, restart_offsets=offsets, restart_tails=tails,
            # the final entry only ends the one before: its length is never read (1 keeps
            # the table within float32 for a float32 backend's constant)
            restart_lengths=tuple(min(x, sys.float_info.max) for x in lengths[:-1]) + (1.0,),
            restart_index=tuple(float(i) for i in range(len(ticks))), restart_steady=steady,
            period=self.period, mult=self.mult, log_mult=math.log(self.mult))
        last, count = ticks[-1], len(ticks) - 1  # repetitions the table holds
        if n is not None and count == n:
            self.duration = restart_end(self.period, self.mult, self.round, n)
        elif steady is not None:  # whole periods stopped growing: every one is `steady` on
            end = restart_end(self.period, self.mult, self.round, n)
            self.duration = math.inf if n is None else end + (n - count) * steady
        elif last < RESTART_HORIZON:
            # past the table only a closed form places the repetitions, and no two backends
            # agree on it to float64 precision: refuse, as sgdr does
            raise ArgumentError(f"{node}: mult={self.mult!r} repeats {RESTART_TABLE} times by tick "
                                f"{last:.17g}; past that the backends cannot agree where "
                                f"repetitions begin: raise mult, or give n ≤ {count}")
        else:  # the table reaches tick 2³¹: later repetitions by the closed form
            self.duration = math.inf if n is None else \
                _power_sum(self.period, self.mult, n)
        return table

    def float32_complaint(self) -> str | None:
        """Where the body runs on a stretched clock (τ·D/Pₖ, a float32 quotient off by an ulp or
        two of D), float32 cannot place what the body switches at its own ticks: refused where
        the body holds a boundary or period inside a call (a step, a restart, a milestone) or a
        jump between segments of a sequence.  Sufficient, not tight."""
        if self.table is None and self.period == self.body.duration:
            return None  # the body's own clock, exact
        stack = [self.body]
        while stack:
            node = stack.pop()
            if isinstance(node, TimedCall):
                for param in node.primitive.params:
                    if param.kind.startswith("duration"):
                        for number in _numbers(getattr(node.p, param.name)):
                            if number < node.duration:
                                return (f"{self.node}: stretches {node.node}'s clock, and float32 "
                                        f"cannot place its {param.name} ticks on the stretched one")
            if isinstance(node, TimedSequence):
                for i, part in enumerate(node.parts[1:], 1):
                    before = float(node.parts[i - 1].values(node.parts[i - 1].duration, floats))
                    after = float(part.values(0.0, floats))
                    if abs(before - after) > 4e-6 * max(abs(before), abs(after)):
                        return (f"{self.node}: stretches a sequence's clock, and float32 cannot "
                                f"place its jump from {before:.6g} to {after:.6g} on the stretched one")
            stack.extend(getattr(node, name) for name in ("inner", "body", "a", "b")
                         if hasattr(node, name))
            stack.extend(getattr(node, "parts", ()) or getattr(node, "operands", ()))
        return None

    def _range(self, body_range):
        lo, hi = body_range
        if self.decay == 1:
            return lo, hi
        if self.n is None:  # decay < 1 forever: the values fall towards 0
            return 0.0, hi
        scale = _power(self.decay, self.n - 1)
        if self.decay < 1:
            return lo * scale, hi
        if hi and not math.isfinite(hi * scale):
            raise ArgumentError(f"{self.node}: repetition {self.n - 1:g} reaches {hi:g}·"
                                f"{self.decay:g}^{self.n - 1:g}, beyond float range; lower decay or n")
        return lo, (hi * scale if hi else 0.0)

    def values(self, t, xp, left=None):
        if self.table is None:
            k, local = period_position(xp, t, self.period)
            if self.n is not None:  # after the last round, hold its final value
                local = xp.where(t >= self.duration, self.period, local)
            if self.period == self.body.duration:
                out = self.body.values(local, xp)
            else:  # round=true of a fractional duration: the body runs ×D/⌊D⌋ faster
                out = self.body.values(xp.divide(local, self.period / self.body.duration), xp)
        else:
            k, into, ahead, length = restart_of(xp, t, self.table)
            stretch = xp.divide(length, self.body.duration)  # the body's time runs ×D/Pₖ
            inner = xp.minimum(xp.divide(into, stretch), self.body.duration)
            inner_left = xp.maximum(xp.divide(ahead, stretch), 0.0)
            if self.n is not None:  # after the last repetition, hold its final value
                done = t >= self.duration
                inner = xp.where(done, self.body.duration, inner)
                inner_left = xp.where(done, 0.0, inner_left)
            out = self.body.values(inner, xp, inner_left)
        if self.decay == 1:
            return out
        if self.n is not None:
            k = xp.minimum(k, self.n - 1.0)
        return out * geometric(xp, self.log_decay, k)


def _power_sum(period: float, mult: float, n: float) -> float:
    """period·(multⁿ − 1)/(mult − 1): the duration of n growing periods, inf where it overflows."""
    return period * (_power(mult, n) - 1.0) / (mult - 1.0)


def _power(base: float, exponent: float) -> float:
    """base^exponent in float64, inf where it overflows."""
    try:
        return math.exp(exponent * math.log(base))
    except OverflowError:
        return math.inf


class TimedQuantize:
    """a(every·q), q = ⌊min(t, d)/every⌋ settled by :func:`period_position` (never a float32
    ⌊t/every⌋), the period's start every·q as t − τ from its position τ; past a bounded a's end d,
    its last period's value (a(d) where every divides d).  The inner gets a period's first
    tick (the float nearest it) and no ``left``: it reads its own tail from that tick."""

    def __init__(self, node: Quantize, inner, every: float):
        self.inner, self.every, self.duration = inner, every, inner.duration
        complaint = period_complaint("its period 'every'", every)
        if complaint:
            raise ArgumentError(f"{node}: {complaint}")
        self.holds = math.isfinite(self.duration)
        self.range = inner.range
        # where float32 rounds d itself, the held value is decided once in float64 (as a call's)
        rounded = self.holds and float32_split(float(self.duration))[1] != 0
        self.held = float(self._at(self.duration, floats)) if rounded else None

    def _at(self, t, xp):
        # t − τ rounds once, from a τ that keeps the decimal period's digits: period q begins
        # on 7.7·q as written (q·every in floats is off: 3·1.2 = 3.5999999999999996)
        return self.inner.values(t - period_position(xp, t, self.every)[1], xp)

    def values(self, t, xp, left=None):
        if not self.holds:
            return self._at(t, xp)
        f = self._at(xp.minimum(t, self.duration), xp)
        return f if self.held is None else xp.where(t >= self.duration, self.held, f)


FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_NORMAL = 1.1754943508222875e-38  # the smallest normal: Keras and XLA flush below it
#: float32 counts whole ticks exactly up to 2²⁴; float32 boundaries are checked up to there
FLOAT32_TICKS = 2.0 ** 24
#: the ticks up to which float32 backends keep §5's tolerance (docs/language.md "Tolerances"):
#: a period's multiples must be float32 numbers up to here, so a tick's place in it is exact
FLOAT32_HORIZON = 1e6
#: a period float32 does not hold is checked boundary by boundary, at most this many
FLOAT32_PERIODS = 2 ** 16
#: the largest update count a float32 backend meets (optax's int32 count): t/d must fit float32
FLOAT32_COUNT = 2.0 ** 31


def _f32(number: float) -> float:
    import numpy as np
    with np.errstate(over="ignore"):
        return float(np.float32(number))


def _whole_periods_f32(ticks, period: float):
    """⌊t/period⌋ as :func:`whole_periods` computes it in float32 (numpy rounds as XLA and TF)."""
    import numpy as np
    with np.errstate(all="ignore"):
        return whole_periods(np, ticks.astype(np.float32), float(period))  # weak, as in XLA


def _boundary_complaint(what: str, c: float) -> str | None:
    """A tick float32 rounds across a whole tick: t ≥ c switches one tick early or late."""
    if 0 < c <= FLOAT32_TICKS and math.ceil(_f32(c)) != math.ceil(c):
        return (f"{what} (tick {c:.17g}) falls on tick {math.ceil(_f32(c)):g} in float32, "
                f"on {math.ceil(c):g} in float64")
    return None


def _offset_complaint(what: str, s: float, horizon: float) -> str | None:
    """A slice's start float32 adds to each tick: t + s must not round up to the next whole tick
    for any whole t up to ``horizon`` (the slice's length, at most 2²⁴), where the schedule it
    slices would already be past a boundary at a whole tick (``[9.999999999 epochs:]`` with 100
    steps per epoch: float32 puts 999.9999999 on tick 1000, an sgdr restart)."""
    fraction = s - math.floor(s)
    if fraction == 0 or not 0 < s <= FLOAT32_TICKS:
        return None
    ulp = 2.0 ** (math.frexp(min(s + horizon, FLOAT32_TICKS))[1] - 24)
    if 1 - fraction <= ulp / 2:
        return (f"{what} (tick {s:.17g}) is within float32's rounding of tick {math.ceil(s):g} "
                f"for ticks up to {min(s + horizon, FLOAT32_TICKS):g}")
    return None


def _period_complaint(what: str, p: float, horizon: float) -> str | None:
    """A period float32 does not hold: its k-th boundary must land on the float64 tick for every
    k up to ``horizon`` (the call's duration, at most 2²⁴ ticks), checked at both ticks around
    each boundary; too many of them to check is a refusal too."""
    import numpy as np
    if not 0 < p < FLOAT32_TICKS:
        return None
    if _f32(p) == p:  # a float32 number m·2⁻ʲ: whole_periods settles q, and the position τ
        # comes out exact, while every multiple q·p up to the horizon is a float32 number too
        # (q·m < 2²⁴); a period of 3M tokens at 4096 a step, 46875/64 ticks, is not past q = 357
        mantissa, exponent = math.frexp(p)
        odd = int(mantissa * 2 ** 53)
        while odd % 2 == 0:
            odd //= 2
        multiples = math.floor(min(horizon, FLOAT32_HORIZON) / p)
        if multiples * odd >= 2 ** 24:
            return (f"{what}={p:.17g} ticks: float32 cannot hold its multiples up to tick "
                    f"{min(horizon, FLOAT32_HORIZON):g}, so a tick's place in it would be off")
        return None
    count = min(horizon, FLOAT32_TICKS) / p
    refusal = (f"{what}={p:.17g} ticks is not a float32 number, so float32 may place its "
               f"boundaries on other ticks")
    if count > FLOAT32_PERIODS:
        return refusal + f" (more than {FLOAT32_PERIODS} of them to check)"
    edges = np.ceil(np.arange(1, math.floor(count) + 1, dtype=np.float64) * p)
    ticks = np.unique(np.concatenate([edges - 1, edges]))
    ticks = ticks[(ticks >= 0) & (ticks <= FLOAT32_TICKS)]
    with np.errstate(all="ignore"):
        want = whole_periods(np, ticks, p)
    if not np.array_equal(_whole_periods_f32(ticks, p), want):
        return refusal
    return None


def _start_complaint(what: str, every: float, horizon: float) -> str | None:
    """quantize reads its schedule at the period starts every·q: float32 must hold each exactly up
    to ``horizon`` (its duration, at most 2²⁴), else a start lands a hair off, perhaps on the
    wrong side of the schedule's own boundary.  So every must be a float32 number m·2⁻ʲ, whose
    multiples float32 holds below 2²⁴⁻ʲ."""
    if _f32(every) != every:
        return (f"{what}={every:.17g} ticks is not a float32 number, so float32 would read the "
                f"schedule at other ticks than its period starts")
    limit = FLOAT32_TICKS / fractions.Fraction(every).denominator
    if limit < min(horizon, FLOAT32_TICKS):
        return (f"{what}={every:.17g} ticks: float32 holds its multiples (the period starts) "
                f"only below tick {limit:g}")
    return None


@dataclass(frozen=True)
class Plan:
    """A compiled expression: ``schedule`` (timed tree), ``plateau`` (rule or None)."""

    expr: Expr
    schedule: Any
    plateau: PlateauRule | None
    units: Units

    @property
    def duration(self) -> float:
        """Ticks until the schedule's last segment ends (``inf`` if it runs forever)."""
        return self.schedule.duration

    @property
    def range(self) -> tuple[float, float]:
        """(lowest, highest) value the time schedule can take: proven finite and ≥ 0."""
        return self.schedule.range

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

    @functools.cached_property
    def float32_complaint(self) -> str | None:
        """What float32 cannot hold, or None: a range beyond its largest value, or a folded
        constant it would turn into inf or 0 (and so inf or 0/0 downstream).  Backends that
        compute in float32 (Keras, JAX by default) refuse such a plan before tracing it."""
        if self.range[1] > FLOAT32_MAX:
            return f"reaches {self.range[1]:.3g}, beyond float32"
        for node, high in self.highs():
            if high > FLOAT32_MAX:
                where = getattr(node, "node", "a part")
                return f"{where} reaches {high:.3g} on the way, beyond float32"
        for node, _ in self.highs():
            if isinstance(node, TimedQuotient):
                complaint = node.float32_complaint(self.range[1])
                if complaint:
                    return complaint
        gain = _flush_gain(self.schedule)
        if FLOAT32_NORMAL * gain > max(1e-12 * self.range[1], FLOAT32_NORMAL):
            return (f"a number float32 flushes to 0 (below 1.18e-38) may be scaled by up to "
                    f"{gain:.3g} on the way (a later factor or a small divisor), beyond "
                    f"float32's tolerance")
        for number in self.constants():
            if abs(number) > FLOAT32_MAX and number != math.inf:
                return f"the number {number:.3g} does not fit float32"
            if 0 < abs(number) < FLOAT32_NORMAL:
                return (f"the number {number:.3g} is below float32's smallest normal number "
                        f"(1.18e-38)")
        for node in self._nodes():
            if isinstance(node, TimedRepeat):
                complaint = node.float32_complaint()
                if complaint:
                    return complaint
        for what, tick, kind, horizon in self.ticks():
            complaint = _boundary_complaint(what, tick)
            if complaint is None and kind == "period":
                complaint = _period_complaint(what, tick, horizon)
            if complaint is None and kind == "period" and 0 < tick < FLOAT32_COUNT / FLOAT32_MAX:
                complaint = (f"{what}={tick:.3g} ticks is too short for float32 (t/{what} "
                             f"overflows; at least {FLOAT32_COUNT / FLOAT32_MAX:.0e})")
            if complaint is None and kind == "offset":
                complaint = _offset_complaint(what, tick, horizon)
            if complaint is None and kind == "start":
                complaint = _start_complaint(what, tick, horizon)
            if complaint is None and kind == "offset" and tick > FLOAT32_TICKS:
                complaint = (f"{what} at tick {tick:.3g} is beyond the ticks float32 counts "
                             f"exactly (2^24)")
            if complaint:
                return complaint
        return None

    def _nodes(self):
        """Every node of the timed tree."""
        stack = [self.schedule]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(getattr(node, name) for name in ("inner", "body", "a", "b")
                         if hasattr(node, name))
            stack.extend(getattr(node, "parts", ()) or getattr(node, "operands", ()))

    def highs(self):
        """(node, bound) for every node's proven upper bound, and a product's running products
        of its factors' bounds (float32 computes ``10 * 1e38 * 0`` as inf · 0)."""
        stack = [self.schedule]
        while stack:
            node = stack.pop()
            yield node, node.range[1]
            if isinstance(node, TimedPointwise) and node.combine is TimedPointwise.COMBINE["product"][0]:
                running = 1.0
                for operand in node.operands:
                    running *= operand.range[1]
                    yield node, running
            stack.extend(getattr(node, name) for name in ("inner", "body", "a", "b")
                         if hasattr(node, name))
            stack.extend(getattr(node, "parts", ()) or getattr(node, "operands", ()))

    def ticks(self):
        """(what, tick, kind, horizon) for every tick count the plan folds in: a call's durations
        (kind "period": float32 also decides its multiples, up to horizon, the call's duration),
        the starts of a sequence's segments ("boundary"), a slice's start ("offset") and stop
        ("boundary"), a repeat's period and quantize's every ("period"; for quantize also "start":
        float32 must hold its multiples, the ticks its schedule is read at)."""
        stack = [self.schedule]
        while stack:
            node = stack.pop()
            if isinstance(node, TimedCall):
                name = node.node.name
                for param in node.primitive.params:
                    if param.kind.startswith("duration"):
                        for number in _numbers(getattr(node.p, param.name)):
                            yield f"{name}: {param.name}", number, "period", node.duration
            elif isinstance(node, TimedSequence):
                for i, start in enumerate(node.starts[1:], 2):
                    yield f"the start of segment {i} of a sequence", start, "boundary", 0.0
            elif isinstance(node, TimedSlice):
                yield "a slice's start", node.start, "offset", node.duration
                yield "a slice's start", node.start, "boundary", 0.0
                if math.isfinite(node.length):
                    yield "a slice's length", node.length, "boundary", 0.0
            elif isinstance(node, TimedRepeat) and node.table is None:
                yield "a repeat's period", node.period, "period", node.duration
            elif isinstance(node, TimedQuantize):
                yield "quantize: every", node.every, "period", node.duration
                yield "quantize: every", node.every, "start", node.duration
            stack.extend(getattr(node, name) for name in ("inner", "body", "a", "b")
                         if hasattr(node, name))
            stack.extend(getattr(node, "parts", ()) or getattr(node, "operands", ()))

    @functools.cached_property
    def subnormal_complaint(self) -> str | None:
        """A nonzero folded number below float64's smallest normal (2.2e-308), or None.  XLA on
        CPU flushes such numbers to 0 (and every value of ``poly(5e-324, 100)`` with them), so
        JAX in float64 refuses the plan rather than answer 0 where the reference is not."""
        for number in self.constants():
            if 0 < abs(number) < sys.float_info.min:
                return f"the number {number:.3g} is below float64's smallest normal number"
        stack = [self.schedule]
        while stack:  # a share x = t/d that XLA flushes, warped by x^power (power < 1): the
            node = stack.pop()  # flush, 5.6e-309 → 0, becomes 0.9993 → 0 (fuzz: optax64 0.005)
            if isinstance(node, TimedCall) and getattr(node.p, "power", 1.0) < 1 and \
                    math.isfinite(node.duration) and node.duration * sys.float_info.min > 1:
                return (f"{node.node}: a tick's share t/d of d={node.duration:.3g} ticks is below "
                        f"float64's smallest normal number, and power={node.p.power:g} < 1 would "
                        f"make its flush to 0 visible")
            stack.extend(getattr(node, name) for name in ("inner", "body", "a", "b")
                         if hasattr(node, name))
            stack.extend(getattr(node, "parts", ()) or getattr(node, "operands", ()))
        return None

    def constants(self):
        """Every number the formulas fold in (arguments in ticks and derived constants)."""
        stack = [self.schedule]
        while stack:
            node = stack.pop()
            if isinstance(node, TimedCall):
                for value in vars(node.p).values():
                    yield from _numbers(value)
            else:
                stack.extend(getattr(node, name) for name in ("inner", "body", "a", "b")
                             if hasattr(node, name))
                stack.extend(getattr(node, "parts", ()) or getattr(node, "operands", ()))
            if isinstance(node, TimedSequence):
                yield from node.starts
            if isinstance(node, TimedSlice):
                yield node.start
                if math.isfinite(node.length):  # a length beyond float32 is inf there
                    yield node.length
            if isinstance(node, TimedRepeat) and math.isfinite(node.period):
                yield node.period
            if isinstance(node, TimedQuantize):
                yield node.every
            if isinstance(node, TimedRepeat) and node.table is not None:
                # a start tick or a length beyond float32
                yield from _numbers(node.table.restart_ticks + node.table.restart_lengths)


def _ticks_arg(units: Units, value):
    if isinstance(value, Duration):
        return units.ticks(value)
    if isinstance(value, tuple) and value and isinstance(value[0], Duration):
        return tuple(units.ticks(v) for v in value)
    return value


def _timed_call(node: Call, units: Units, anchor: float | None = None) -> TimedCall:
    args = {name: _ticks_arg(units, value) for name, value in node.arguments.items()}
    if "d" in args and args["d"] is None:
        args["d"] = math.inf
    if node.placement:
        args["anchor"] = anchor
    return TimedCall(node, SimpleNamespace(**args))


def _timed_sequence(node: Sequence, units: Units) -> TimedSequence:
    parts: list = [None] * len(node.parts)
    durations = []
    for i, part in enumerate(node.parts):  # warm-ups and cool-downs wait for their neighbours
        if isinstance(part, Call) and part.placement:
            durations.append(units.ticks(part.arguments["d"]))
        else:
            parts[i] = _timed(part, units)
            durations.append(parts[i].duration)
    for i in node.stretching:
        rest = sum(d for j, d in enumerate(durations) if j != i)
        if units.total is None:
            raise UnitError(f"segment {i + 1} of the sequence, {node.parts[i]}, is unbounded: pass "
                            f"total= to stretch it so the sequence lasts the run, or give it d=…")
        if not rest < units.total:
            raise UnitError(f"segment {i + 1} of the sequence, {node.parts[i]}, has no room to "
                            f"stretch: the other segments last {rest:g} ticks of total={units.total:g}")
        durations[i] = units.total - rest
        parts[i] = TimedSlice(parts[i], 0.0, durations[i])
    for i, part in enumerate(node.parts):
        if parts[i] is not None or not isinstance(part, Call):
            continue
        if part.placement == "before":
            anchor = float(parts[i + 1].values(0.0, floats))
            if anchor == 0:
                raise ArgumentError(f"{part}: warm-up to 0 does nothing (the next segment, "
                                    f"{node.parts[i + 1]}, starts at 0)")
        else:
            anchor = float(parts[i - 1].values(durations[i - 1], floats))
            if anchor == 0:
                raise ArgumentError(f"{part}: cool-down from 0 does nothing (the previous segment, "
                                    f"{node.parts[i - 1]}, ends at 0)")
        parts[i] = _timed_call(part, units, anchor)
    starts = [0.0]
    for duration in durations[:-1]:
        starts.append(starts[-1] + duration)
    return TimedSequence(parts, starts, units.total if node.stretching else None)


def _timed_slice(node: Slice, units: Units) -> TimedSlice:
    inner = _timed(node.schedule, units)
    start = units.ticks(node.start) if node.start is not None else 0.0
    stop = units.ticks(node.end) if node.end is not None else None
    if stop is not None and not start < stop:
        raise ArgumentError(f"{node}: the slice starts at tick {start:g}, not before its end {stop:g}")
    if stop is None and not start < inner.duration:
        raise ArgumentError(f"{node}: the slice starts at tick {start:g}, where {node.schedule} "
                            f"(of {inner.duration:g} ticks) has already ended")
    return TimedSlice(inner, start, stop)


def _timed(node: Expr, units: Units):
    if isinstance(node, Call):
        return _timed_call(node, units)
    if isinstance(node, Sequence):
        return _timed_sequence(node, units)
    if isinstance(node, Slice):
        return _timed_slice(node, units)
    if isinstance(node, Difference):
        return TimedDifference(node, _timed(node.minuend, units), _timed(node.subtrahend, units))
    if isinstance(node, Quotient):
        return TimedQuotient(node, _timed(node.dividend, units), _timed(node.divisor, units))
    kinds = ((Product, "product"), (Sum, "sum"), (Minimum, "minimum"), (Maximum, "maximum"))
    for cls, kind in kinds:
        if isinstance(node, cls):
            return TimedPointwise(node, kind, [_timed(child, units) for child in node.children()])
    if isinstance(node, Repeat):
        return TimedRepeat(node, _timed(node.schedule, units), node.n)
    if isinstance(node, Quantize):
        return TimedQuantize(node, _timed(node.schedule, units), units.ticks(node.every))
    raise LrdslError(f"not a time schedule: {node}")


def _point_at_node(error: LrdslError) -> None:
    """A caret in the canonical text, for an error that knows (node, offset in its text)."""
    site = getattr(error, "node_site", None)
    if site is None or error.expr is None:
        return
    node, offset = site
    at = error.expr.find(str(node))
    if at >= 0:
        error.line, error.column = 1, at + offset + 1


@functools.lru_cache(maxsize=256)
def _plan(expr: Expr, units: Units) -> Plan:
    units.check(expr.durations())
    if isinstance(expr, Plateau):
        return Plan(expr, _timed(expr.schedule, units), PlateauRule.from_call(expr.options), units)
    return Plan(expr, _timed(expr, units), None, units)


def plan(expr: str | Expr, *, steps_per_epoch: float | None = None,
         total: float | None = None, clock: str = "ticks", **constants: float | None) -> Plan:
    """Compile an expression for given units.  Cached on (expression, units).

    ``steps_per_epoch`` converts ``ep`` to ticks (pass it when you step per batch);
    ``total`` (in the clock's unit) resolves ``%`` and stretches an unbounded middle segment.
    ``clock`` (``ticks``, ``samples`` or ``tokens``, docs/language.md "Clocks") is what a
    position counts; ``constants`` are the fixed conversions of
    :data:`lrdsl.language.units.CONSTANTS` (``samples_per_step``, ``tokens_per_sample``, …).
    """
    expr = parse(expr)
    unknown = sorted(set(constants) - set(CONSTANTS))
    if unknown:
        raise UnitError(f"unknown conversion constant {unknown[0]!r}; lrdsl takes steps_per_epoch, "
                        f"total, {', '.join(CONSTANTS)}")
    try:
        units = Units(steps_per_epoch, total, clock, **constants)
        hash(units)
    except LrdslError as error:
        error.expr = str(expr)
        raise
    except TypeError:  # unhashable units
        raise LrdslError(f"steps_per_epoch, total and the conversion constants must be numbers, "
                         f"got {steps_per_epoch!r}, {total!r}, {constants!r}") from None
    try:
        return _plan(expr, units)
    except LrdslError as error:
        error.expr = str(expr)
        _point_at_node(error)
        raise
