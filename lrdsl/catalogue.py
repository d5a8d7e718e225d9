"""The catalogue of primitives: one table that the parser, ``lrdsl list`` and the docs read.

Each :class:`Primitive` holds its parameters (kind, default, check), a
docstring with the formula, and — for time schedules — its value function.
A value function is ``value(xp, t, p)``: ``xp`` is an array namespace
(``numpy`` or ``keras.ops``, which share these names), ``t`` the local tick
array (≥ 0, already clamped to the end of a bounded call), ``p`` the
arguments with durations in ticks.  Each formula is written once, here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from lrdsl.errors import ArgumentError, UnknownNameError, did_you_mean
from lrdsl.units import Duration, format_number

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Check:
    """A condition on one numeric value and the words that say it."""

    holds: Callable[[float], bool]
    words: str


LR = Check(lambda x: x >= 0, "must be ≥ 0 (a learning rate)")
PEAK = Check(lambda x: x > 0, "must be > 0 (a peak learning rate)")
POSITIVE = Check(lambda x: x > 0, "must be > 0")
NONNEGATIVE = Check(lambda x: x >= 0, "must be ≥ 0")
UNIT_CLOSED = Check(lambda x: 0 <= x <= 1, "must lie in [0, 1]")
UNIT_OPEN = Check(lambda x: 0 < x < 1, "must lie in (0, 1)")
AT_LEAST_ONE = Check(lambda x: x >= 1, "must be ≥ 1")
INTEGER = Check(lambda x: x == int(x) and x >= 0, "must be a whole number ≥ 0")
COUNT = Check(lambda x: x == int(x) and x >= 1, "must be a whole number ≥ 1")


@dataclass(frozen=True)
class Param:
    """One parameter.

    ``kind`` is one of number, duration, bool, choice, string, numbers,
    durations, schedule.  ``default`` is :data:`REQUIRED`, a value, or None
    for "absent" (unbounded ``d``, ``exp``'s rate-or-k, ``cyclic``'s down=up).
    """

    name: str
    kind: str
    default: Any = REQUIRED
    check: Check | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""
    #: how the default reads in a signature, where it is not a plain value
    shown: str = ""
    #: the default is the value of this other parameter (stored as None when equal)
    same_as: str = ""
    #: optional, yet written positionally when given (exp's rate, whose alternative is k=)
    positional: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def signature(self) -> str:
        if self.required:
            return self.name
        return f"{self.name}={self.shown or format_value(self.default)}"


def format_value(value) -> str:
    """A written value in canonical form: numbers shortest, names bare, strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        if _IDENTIFIER.fullmatch(value) and value not in ("true", "false"):
            return value
        return json.dumps(value, ensure_ascii=False)
    return str(value)  # Duration, Expr


@dataclass(frozen=True)
class Primitive:
    """A named call of the language: its parameters, formula and meaning."""

    name: str
    params: tuple[Param, ...]
    doc: str
    native: str = ""
    example: str = ""
    value: Callable | None = None
    #: cross-argument condition on the bound arguments: returns a complaint or None
    validate: Callable[[dict], str | None] | None = None
    #: the tick at which a bounded call has reached its final value, from its resolved args
    end: Callable[[SimpleNamespace], float] = field(default=lambda p: p.d)

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.signature() for p in self.params)})"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise UnknownNameError(f"{self.name}: unknown keyword '{name}'"
                               + did_you_mean(name, [p.name for p in self.params]))

    def bind(self, positional: list, keywords: list[tuple[str, Any]]) -> tuple:
        """Match written arguments to parameters; return every value in catalogue order."""
        if len(positional) > len(self.params):
            raise ArgumentError(f"{self.name}: takes at most {len(self.params)} arguments, "
                                f"got {len(positional)} — {self.signature()}")
        given: dict[str, Any] = {p.name: v for p, v in zip(self.params, positional)}
        for name, value in keywords:
            param = self.param(name)
            if param.name in given:
                raise ArgumentError(f"{self.name}: argument '{name}' given twice")
            given[param.name] = value
        values = []
        for param in self.params:
            if param.name in given:
                values.append(convert(self.name, param, given[param.name]))
            elif param.required:
                raise ArgumentError(f"{self.name}: missing argument '{param.name}' — {self.signature()}")
            else:
                values.append(param.default)
        bound = dict(zip((p.name for p in self.params), values))
        for i, param in enumerate(self.params):
            if param.same_as and values[i] == bound[param.same_as]:
                values[i] = None  # one spelling for one meaning: cyclic(…, 10, down=10) is cyclic(…, 10)
        if self.validate is not None:
            complaint = self.validate(bound)
            if complaint:
                raise ArgumentError(f"{self.name}: {complaint}")
        return tuple(values)


class Name(str):
    """A bare identifier written as an argument value (``val_loss``, ``triangular``, ``true``)."""


def _describe(value) -> str:
    from lrdsl.nodes import Expr
    if isinstance(value, Expr):
        return f"the schedule {value}"
    if isinstance(value, Duration):
        return f"the duration {value}"
    if isinstance(value, Name):
        return f"the name {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _number(call: str, param: Param, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"{call}: argument '{param.name}' must be a number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ArgumentError(f"{call}: argument '{param.name}' must be finite, got {value}")
    if param.check is not None and not param.check.holds(value):
        raise ArgumentError(f"{call}: argument '{param.name}' {param.check.words}, got "
                            f"{format_number(value)}")
    return value


def _duration(call: str, param: Param, value) -> Duration:
    if isinstance(value, Duration):
        number = value.value
    else:
        number = _number(call, Param(param.name, "number"), value)
    if not math.isfinite(number):
        raise ArgumentError(f"{call}: argument '{param.name}' must be finite, got {number}")
    check = param.check or POSITIVE
    if not check.holds(number):
        raise ArgumentError(f"{call}: duration '{param.name}' {check.words}, got {value}")
    return value if isinstance(value, Duration) else Duration(number)


def convert(call: str, param: Param, value):
    """Turn one written value into the parameter's kind, or raise a one-line error."""
    from lrdsl.nodes import Expr, const
    kind = param.kind
    if kind == "number":
        return _number(call, param, value)
    if kind == "duration":
        return _duration(call, param, value)
    if kind in ("numbers", "durations"):
        if not isinstance(value, (list, tuple)):
            raise ArgumentError(f"{call}: argument '{param.name}' must be a list like [1, 2], "
                                f"got {_describe(value)}")
        item = Param(param.name, kind[:-1], check=param.check)
        return tuple(convert(call, item, v) for v in value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, Name) and value in ("true", "false"):
            return value == "true"
        raise ArgumentError(f"{call}: argument '{param.name}' must be true or false, got {_describe(value)}")
    if kind == "choice":
        if isinstance(value, str) and value in param.choices:
            return str(value)
        if isinstance(value, str):
            raise UnknownNameError(f"{call}: {param.name}={value} is not known"
                                   + did_you_mean(value, param.choices))
        raise ArgumentError(f"{call}: argument '{param.name}' must be one of "
                            f"{', '.join(param.choices)}, got {_describe(value)}")
    if kind == "string":
        if isinstance(value, str) and value:
            return str(value)
        raise ArgumentError(f"{call}: argument '{param.name}' must be a name or a quoted string, "
                            f"got {_describe(value)}")
    if kind == "schedule":
        if isinstance(value, Expr):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return const(_number(call, Param(param.name, "number", check=LR), value))
        raise ArgumentError(f"{call}: argument '{param.name}' must be a schedule, got {_describe(value)}")
    raise AssertionError(kind)


# --- the formulas -----------------------------------------------------------------
# t: local ticks (float array, ≥ 0, clamped to the call's end when bounded); p: resolved args.

def _const(xp, t, p):
    return xp.zeros_like(t) + p.lr


# Constants are folded in Python (once per trace in a Keras graph), so each formula costs as
# few array operations as it can: start + slope·t, middle + half·cos(ω·t).

def _ramp(t, start, end, d):
    slope = (end - start) / d
    return start + slope * t if start else slope * t


def _linear(xp, t, p):
    return _ramp(t, p.start, p.end, p.d)


def _warmup(xp, t, p):
    return _ramp(t, p.target * p.start, p.target, p.d)


def _cosine(xp, t, p):
    half = (p.lr - p.min) / 2.0
    return (p.min + half) + half * xp.cos((math.pi / p.d) * t)


def _poly(xp, t, p):
    span = p.d * xp.maximum(1.0, xp.ceil(t / p.d)) if p.cycle else p.d
    return (p.lr - p.end) * xp.power(1.0 - t / span, p.power) + p.end


def _step(xp, t, p):
    return p.lr * xp.power(p.factor, xp.floor(t / p.every))


def _multistep(xp, t, p):
    passed = xp.zeros_like(t)
    for milestone in p.milestones:
        passed = passed + xp.where(t >= milestone, 1.0, 0.0)
    return p.lr * xp.power(p.factor, passed)


def _piecewise(xp, t, p):
    out = xp.zeros_like(t) + p.values[0]
    for boundary, value in zip(p.boundaries, p.values[1:]):
        out = xp.where(t >= boundary, value, out)
    return out


def _decay_exponent(xp, t, p):
    e = t / p.every
    return xp.floor(e) if p.staircase else e


def _exp(xp, t, p):
    e = _decay_exponent(xp, t, p)
    if p.k is not None:
        return p.lr * xp.exp(-p.k * e)
    return p.lr * xp.power(p.rate, e)


def _invtime(xp, t, p):
    return p.lr / (1.0 + p.rate * _decay_exponent(xp, t, p))


def _rsqrt(xp, t, p):
    return p.lr * xp.sqrt(p.d0 / xp.maximum(t, p.d0))


def _cyclic(xp, t, p):
    size = p.up + p.down
    ratio = p.up / size
    cycle = xp.floor(1.0 + t / size)
    x = xp.mod(t, size) / size  # = 1 + t/size − cycle, without float32 cancellation
    scale = xp.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
    height = (p.high - p.low) * scale
    if p.mode == "triangular2":
        height = height * xp.power(0.5, cycle - 1.0)
    elif p.mode == "exp_range":
        height = height * xp.power(p.gamma, t)
    return p.low + height


def _sgdr(xp, t, p):
    if p.mult == 1:
        restarts = xp.floor(t / p.period)
        start = restarts * p.period
        length = p.period
    else:
        def begins(n):  # tick at which restart n begins
            return p.period * (xp.power(p.mult, n) - 1.0) / (p.mult - 1.0)
        restarts = xp.floor(xp.log(t / p.period * (p.mult - 1.0) + 1.0) / math.log(p.mult))
        # the logarithm can land a hair off an exact restart tick: settle it by comparison
        restarts = xp.where(t < begins(restarts), restarts - 1.0, restarts)
        restarts = xp.where(t >= begins(restarts + 1.0), restarts + 1.0, restarts)
        start = begins(restarts)
        length = p.period * xp.power(p.mult, restarts)
    peak = p.lr * xp.power(p.decay, restarts)
    return p.min + (peak - p.min) * (1.0 + xp.cos(math.pi * (t - start) / length)) / 2.0


def _onecycle_phases(p) -> list[tuple[float, float, float]]:
    """(end tick, lr at phase start, lr at phase end), as OneCycleLR builds them."""
    initial = p.lr / p.div
    final = initial / p.final_div
    if p.three_phase:
        return [(p.pct * p.d - 1, initial, p.lr), (2 * p.pct * p.d - 2, p.lr, initial),
                (p.d - 1, initial, final)]
    return [(p.pct * p.d - 1, initial, p.lr), (p.d - 1, p.lr, final)]


def _onecycle(xp, t, p):
    phases = _onecycle_phases(p)
    starts = [0.0] + [end for end, _, _ in phases[:-1]]
    out = None
    for (end, first, last), start in reversed(list(zip(phases, starts))):
        x = (t - start) / (end - start)
        if p.anneal == "cos":
            value = last + (first - last) / 2.0 * (xp.cos(math.pi * x) + 1.0)
        else:
            value = (last - first) * x + first
        out = value if out is None else xp.where(t <= end, value, out)
    return out


# --- cross-argument checks ----------------------------------------------------------

def _min_below_lr(a):
    return f"min={a['min']:g} must not exceed lr={a['lr']:g}" if a["min"] > a["lr"] else None


def _exp_rate_or_k(a):
    if (a["rate"] is None) == (a["k"] is None):
        return "give exactly one of rate (lr·rate^t) and k (lr·e^(−k·t))"
    return None


def _cyclic_order(a):
    return f"low={a['low']:g} must not exceed high={a['high']:g}" if a["low"] > a["high"] else None


def _piecewise_lengths(a):
    if len(a["values"]) != len(a["boundaries"]) + 1:
        return (f"needs one more value than boundaries, got {len(a['boundaries'])} boundaries "
                f"and {len(a['values'])} values")
    return None


def _onecycle_phase_lengths(a):
    if not isinstance(a["d"], Duration) or a["d"].unit:
        return None  # checked again in ticks when units are resolved
    return onecycle_complaint(SimpleNamespace(**{**a, "d": a["d"].value}))


def onecycle_complaint(p) -> str | None:
    """OneCycleLR divides by each phase's length: every phase must span at least a tick."""
    ends = [0.0] + [end for end, _, _ in _onecycle_phases(p)]
    if any(b - a <= 0 for a, b in zip(ends, ends[1:])):
        return f"pct={p.pct:g} leaves a phase of no length over d={p.d:g} ticks"
    return None


def _unbounded(doc: str) -> Param:
    return Param("d", "duration", None, shown="∞",
                 doc=doc or "bound the schedule so it can stand before >>")


D = _unbounded("")

PRIMITIVES: dict[str, Primitive] = {}


def _add(primitive: Primitive) -> None:
    PRIMITIVES[primitive.name] = primitive


_add(Primitive(
    "const", (Param("lr", "number", check=LR), D),
    """Constant: ``lr`` at every tick.  A bare number ``0.1`` is ``const(0.1)``.""",
    native="ConstantLR / a float learning rate", example="0.1", value=_const))
_add(Primitive(
    "linear", (Param("start", "number", check=LR), Param("end", "number", check=LR),
               Param("d", "duration")),
    """Linear ramp: start + (end − start)·min(t, d)/d.""",
    native="LinearLR (as factors)", example="linear(0.1, 0.001, 50)", value=_linear))
_add(Primitive(
    "warmup", (Param("d", "duration"), Param("start", "number", 0.0, UNIT_CLOSED)),
    """Linear warm-up to the next segment: L·(start + (1 − start)·min(t, d)/d),
    L = value of the segment after ``>>`` at its t = 0.  Must be followed by ``>>``.""",
    native="LinearLR(start_factor=start, total_iters=d) in front; Keras CosineDecay warm-up",
    example="warmup(5) >> cosine(0.1, 100)", value=_warmup))
_add(Primitive(
    "cosine", (Param("lr", "number", check=PEAK), Param("d", "duration"),
               Param("min", "number", 0.0, LR)),
    """Cosine decay: min + (lr − min)·(1 + cos(π·min(t, d)/d))/2; holds min after d.""",
    native="CosineAnnealingLR(T_max=d, eta_min=min); Keras CosineDecay(alpha=min/lr)",
    example="cosine(0.1, 100, min=0.001)", value=_cosine, validate=_min_below_lr))
_add(Primitive(
    "poly", (Param("lr", "number", check=PEAK), Param("d", "duration"),
             Param("end", "number", 0.0, LR), Param("power", "number", 1.0, NONNEGATIVE),
             Param("cycle", "bool", False)),
    """Polynomial decay: (lr − end)·(1 − min(t, D)/D)^power + end, D = d, or with
    cycle=true D = d·max(1, ⌈t/d⌉) (unbounded).""",
    native="Keras PolynomialDecay; PolynomialLR when end=0",
    example="poly(0.1, 100, power=2)", value=_poly))
_add(Primitive(
    "step", (Param("lr", "number", check=PEAK), Param("every", "duration"),
             Param("factor", "number", 0.1, POSITIVE), D),
    """Step decay: lr·factor^⌊t/every⌋.""",
    native="StepLR(step_size=every, gamma=factor)", example="step(0.1, 30, factor=0.5)",
    value=_step))
_add(Primitive(
    "multistep", (Param("lr", "number", check=PEAK), Param("milestones", "durations"),
                  Param("factor", "number", 0.1, POSITIVE), D),
    """Decay at milestones: lr·factor^#{mᵢ ≤ t}.""",
    native="MultiStepLR(milestones, gamma=factor)", example="multistep(0.1, [30, 60, 90])",
    value=_multistep))
_add(Primitive(
    "piecewise", (Param("boundaries", "durations"), Param("values", "numbers", check=LR), D),
    """Piecewise constant: vᵢ for bᵢ ≤ t < bᵢ₊₁ (b₀ = 0); one more value than boundaries.""",
    native="Keras PiecewiseConstantDecay with boundaries bᵢ − 1",
    example="piecewise([50%, 75%], [0.1, 0.01, 0.001])", value=_piecewise,
    validate=_piecewise_lengths))
_add(Primitive(
    "exp", (Param("lr", "number", check=PEAK), Param("rate", "number", None, POSITIVE, shown="e^-k", positional=True),
            Param("every", "duration", Duration(1.0)), Param("staircase", "bool", False),
            Param("k", "number", None, NONNEGATIVE, shown="none"), D),
    """Exponential decay: lr·rate^(t/every) (⌊t/every⌋ with staircase); with k instead of
    rate, lr·e^(−k·t/every).""",
    native="Keras ExponentialDecay; ExponentialLR(gamma=rate) when every=1",
    example="exp(0.1, 0.95)", value=_exp, validate=_exp_rate_or_k))
_add(Primitive(
    "invtime", (Param("lr", "number", check=PEAK), Param("rate", "number", check=NONNEGATIVE),
                Param("every", "duration", Duration(1.0)), Param("staircase", "bool", False), D),
    """Inverse-time ("time-based") decay: lr / (1 + rate·t/every) (⌊t/every⌋ with staircase).""",
    native="Keras InverseTimeDecay", example="invtime(0.1, 0.5)", value=_invtime))
_add(Primitive(
    "rsqrt", (Param("lr", "number", check=PEAK), Param("d0", "duration", Duration(1.0)), D),
    """Inverse square root: lr·√(d0 / max(t, d0)).""",
    native="t5x rsqrt_normalized_decay", example="rsqrt(0.01, d0=1000)", value=_rsqrt))
_add(Primitive(
    "cyclic", (Param("low", "number", check=LR), Param("high", "number", check=PEAK),
               Param("up", "duration"), Param("down", "duration", None, shown="up", same_as="up"),
               Param("mode", "choice", "triangular",
                     choices=("triangular", "triangular2", "exp_range")),
               Param("gamma", "number", 1.0, POSITIVE), D),
    """Cyclical LR (Smith 2017): up ticks from low to high, down ticks back (down=up by
    default); triangular2 halves the height each cycle, exp_range scales it by gamma^t.""",
    native="CyclicLR(base_lr=low, max_lr=high, step_size_up=up, step_size_down=down)",
    example="cyclic(0.001, 0.1, 10)", value=_cyclic, validate=_cyclic_order))
_add(Primitive(
    "sgdr", (Param("lr", "number", check=PEAK), Param("period", "duration"),
             Param("mult", "number", 1.0, AT_LEAST_ONE), Param("min", "number", 0.0, LR),
             Param("decay", "number", 1.0, POSITIVE), D),
    """Cosine with warm restarts: restart i runs a cosine from lr·decayⁱ to min over
    period·multⁱ ticks.""",
    native="CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) when decay=1; "
           "Keras CosineDecayRestarts(t_mul, m_mul) when min=0",
    example="sgdr(0.1, 10, mult=2)", value=_sgdr, validate=_min_below_lr))
_add(Primitive(
    "onecycle", (Param("lr", "number", check=PEAK), Param("d", "duration"),
                 Param("pct", "number", 0.3, UNIT_OPEN), Param("div", "number", 25.0, POSITIVE),
                 Param("final_div", "number", 1e4, POSITIVE),
                 Param("anneal", "choice", "cos", choices=("cos", "linear")),
                 Param("three_phase", "bool", False)),
    """One-cycle policy (lr is the peak): from lr/div up to lr over pct·d ticks, then down to
    lr/(div·final_div) at tick d − 1 (three_phase: back to lr/div first), annealed by cos or
    linear, exactly as OneCycleLR; holds its final value from tick d − 1.""",
    native="OneCycleLR(max_lr=lr, total_steps=d, pct_start, div_factor, final_div_factor)",
    example="onecycle(0.1, 1000)", value=_onecycle, validate=_onecycle_phase_lengths,
    end=lambda p: p.d - 1))
_add(Primitive(
    "repeat", (Param("schedule", "schedule"), Param("n", "number", None, COUNT, shown="∞")),
    """Run a bounded schedule n times (forever by default), each with a fresh clock.""",
    example="repeat(warmup(2) >> cosine(0.1, 18))"))
_add(Primitive(
    "plateau", (Param("monitor", "string"), Param("factor", "number", 0.1, UNIT_OPEN),
                Param("patience", "number", 10.0, INTEGER),
                Param("mode", "choice", "auto", choices=("auto", "min", "max")),
                Param("threshold", "number", 1e-4, NONNEGATIVE),
                Param("threshold_mode", "choice", "rel", choices=("rel", "abs")),
                Param("cooldown", "number", 0.0, INTEGER), Param("min", "number", 0.0, LR)),
    """Reduce on plateau, after ``|``: a scale s (from 1) times factor when the monitor has
    not improved for more than patience reports; LR = min(f(t), max(f(t)·s, min)).
    mode=auto is max for monitors named *acc*/*auc*, else min.""",
    native="ReduceLROnPlateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr)",
    example="cosine(0.1, 100) | plateau(val_loss, 0.5, patience=3)"))

#: names that are not time schedules: they never stand alone in an expression
COMBINATORS = ("repeat", "plateau")


def primitives() -> dict[str, Primitive]:
    """Every primitive of the language by name, in the catalogue's order."""
    return dict(PRIMITIVES)
