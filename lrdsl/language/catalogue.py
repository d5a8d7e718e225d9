"""The catalogue of primitives: everything lrdsl knows about each call, in one entry.

A :class:`Primitive` holds its parameters (kind, default, check), a docstring with the
formula and a reference, and hooks that the rest of lrdsl asks instead of branching on
names: ``value`` (the formula), ``resolve`` (constants derived in float64 once units are
known, and checks that need ticks), ``range`` (the interval its values lie in, from its
arguments), ``end`` (the tick from which it holds), ``bounded``, ``placement`` (warm-up
before / cool-down after a neighbour in ``>>``), ``describe`` (words for ``lrdsl parse``),
``span`` (a period worth plotting), ``short`` (a shorter canonical spelling) and
``build`` (an AST node other than :class:`lrdsl.Call`).

A formula is ``value(xp, t, p)``: ``xp`` is an array namespace (``numpy``, ``keras.ops``,
``jax.numpy``, or :mod:`lrdsl.language.floats` for one plain float), ``t`` the local tick array
(≥ 0, clamped to the call's end when bounded), ``p`` the resolved arguments, durations in
ticks.  Each formula is written once, here, against names those namespaces share.

Numerics: every formula is a non-negative combination of non-negative numbers, exact at
its ends (a ramp is ``start·v + end·u`` with the elapsed share ``u`` and the remaining
share ``v`` each computed from its own end, so ``linear(0.9, 0, 7)`` is exactly 0 at tick
7 and a cosine tail keeps its digits in float32); geometric factors use ``exp(n·log r)``
with ``log r`` folded in float64, never ``r^n`` of a rounded ``r``.  A share of a duration is
``xp.divide(t, d)``, never ``t / d``: JAX's namespace (:mod:`lrdsl.optax`) divides so that XLA
cannot rewrite it as ``t · (1/d)`` and fold ``1/d`` into the constants around it.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from lrdsl.language import floats
from lrdsl.errors import ArgumentError, UnknownNameError, did_you_mean
from lrdsl.language.units import Duration, format_number

#: the AST module, lrdsl.language.nodes, bound here by nodes itself when it is imported: nodes reads
#: this table, so Expr, const and the combinators are reached through this name, not an import back
nodes: Any = None

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HALF_PI = math.pi / 2


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

    ``kind`` is one of number, duration, bool, choice, string, numbers, durations,
    schedule, schedules (every positional argument from here on).  ``default`` is
    :data:`REQUIRED`, a value, or None for "absent" (unbounded ``d``, ``exp``'s
    rate-or-k, ``cyclic``'s down=up, ``onecycle``'s start=lr/div).
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
        if self.kind == "schedules":
            return f"{self.name}…"
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


def _no_range(p) -> tuple[float, float]:
    return (0.0, 0.0)


@dataclass(frozen=True)
class Primitive:
    """A named call of the language: its parameters, formula, range and meaning."""

    name: str
    params: tuple[Param, ...]
    doc: str
    native: str = ""
    example: str = ""
    #: the formula value(xp, t, p); None for combinators (repeat, min, max, plateau)
    value: Callable | None = None
    #: cross-argument condition on the bound written arguments: returns a complaint or None
    validate: Callable[[dict], str | None] | None = None
    #: in ticks: derives constants into p (float64) and returns a complaint or None
    resolve: Callable[[SimpleNamespace], str | None] | None = None
    #: (lowest, highest) value from the resolved arguments; inf where it grows without bound
    range: Callable[[SimpleNamespace], tuple[float, float]] = _no_range
    #: the tick from which a bounded call holds its final value
    end: Callable[[SimpleNamespace], float] = lambda p: p.d
    #: whether the written arguments make a finite duration (so it may stand before >>)
    bounded: Callable[[dict], bool] = lambda a: a.get("d") is not None
    #: "before": a warm-up ramping to the next segment; "after": a cool-down from the previous
    placement: str = ""
    #: a few words on how the values move, for ``lrdsl parse``
    describe: Callable[[dict], str] = lambda a: ""
    #: the word ``lrdsl parse`` names a segment of this call by (default: its name)
    title: str = ""
    #: ticks worth plotting for an unbounded call (a period or the last event)
    span: Callable[[SimpleNamespace], float] = lambda p: 0.0
    #: a shorter canonical spelling for these arguments, or None (const(x) is x)
    short: Callable[[dict], str | None] = lambda a: None
    #: builds the AST node for bound values; None: a plain Call
    build: Callable[[tuple], Any] | None = None

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.signature() for p in self.params)})"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name and p.kind != "schedules":
                return p
        raise UnknownNameError(f"{self.name}: unknown keyword '{name}'"
                               + did_you_mean(name, [p.name for p in self.params]), argument=name)

    def bind(self, positional: list, keywords: list[tuple[str, Any]]) -> tuple:
        """Match written arguments to parameters; return every value in catalogue order."""
        params = self.params
        if params and params[-1].kind == "schedules":  # min(a, b, …): the rest are one tuple
            fixed = len(params) - 1
            positional = positional[:fixed] + [tuple(positional[fixed:])]
        if len(positional) > len(params):
            raise ArgumentError(f"{self.name}: takes at most {len(params)} arguments, "
                                f"got {len(positional)} — {self.signature()}",
                                argument=len(params))
        given: dict[str, Any] = {p.name: v for p, v in zip(params, positional)}
        for name, value in keywords:
            param = self.param(name)
            if param.name in given:
                raise ArgumentError(f"{self.name}: argument '{name}' given twice", argument=name)
            given[param.name] = value
        values = []
        for param in params:
            if param.name in given and not (given[param.name] is None and param.default is None):
                values.append(self._convert(param, given[param.name]))
            elif param.required and param.name not in given:
                raise ArgumentError(f"{self.name}: missing argument '{param.name}' — {self.signature()}")
            else:
                values.append(param.default)
        return self._finish(values)

    def check(self, values: tuple) -> tuple:
        """The arguments of a hand-built ``Call`` (every value, in catalogue order), checked
        exactly as :meth:`bind` checks written ones."""
        if not isinstance(values, tuple) or len(values) != len(self.params):
            raise ArgumentError(f"{self.name}: needs a tuple of {len(self.params)} argument values "
                                f"in catalogue order — {self.signature()}")
        return self._finish([value if value is None and param.default is None
                             else self._convert(param, value)
                             for param, value in zip(self.params, values)])

    def _convert(self, param: Param, value):
        try:
            return convert(self.name, param, value)
        except ArgumentError as error:
            error.argument = param.name if error.argument is None else error.argument
            raise

    def _finish(self, values: list) -> tuple:
        params = self.params
        bound = dict(zip((p.name for p in params), values))
        for i, param in enumerate(params):
            if param.same_as and values[i] == bound[param.same_as]:
                values[i] = None  # one spelling for one meaning: cyclic(…, 10, down=10) is cyclic(…, 10)
        if self.validate is not None:
            complaint = self.validate(bound)
            if complaint:
                raise ArgumentError(f"{self.name}: {complaint}",
                                    argument=_first_named(complaint, params))
        return tuple(values)


def _first_named(complaint: str, params) -> str | None:
    """The parameter a cross-argument complaint names first (where its caret goes)."""
    for word in re.findall(r"[A-Za-z_]+", complaint):
        if any(p.name == word for p in params):
            return word
    return None


class Name(str):
    """A bare identifier written as an argument value (``val_loss``, ``triangular``, ``true``)."""


def _describe(value) -> str:
    Expr = nodes.Expr
    if isinstance(value, Expr):
        return f"the schedule {value}"
    if isinstance(value, Duration):
        return f"the duration {value}"
    if isinstance(value, Name):
        return f"the name {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _number(call: str, param: Param, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"{call}: argument '{param.name}' must be a number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # a Python int beyond float range
        value = math.inf
    if not math.isfinite(value):
        raise ArgumentError(f"{call}: argument '{param.name}' must be finite, got {value}")
    if param.check is not None and not param.check.holds(value):
        raise ArgumentError(f"{call}: argument '{param.name}' {param.check.words}, got "
                            f"{format_number(value)}")
    return value


def convert_duration(call: str, name: str, value, check: Check = POSITIVE) -> Duration:
    """A written duration (a number counts ticks) checked finite and by ``check``."""
    if isinstance(value, Duration):
        number = value.value
    else:
        number = _number(call, Param(name, "number"), value)
    if not math.isfinite(number):
        raise ArgumentError(f"{call}: duration '{name}' must be finite, got {value}")
    if not check.holds(number):
        raise ArgumentError(f"{call}: duration '{name}' {check.words}, got {value}")
    return value if isinstance(value, Duration) else Duration(number)


def convert(call: str, param: Param, value):
    """Turn one written value into the parameter's kind, or raise a one-line error."""
    Expr, const = nodes.Expr, nodes.const
    kind = param.kind
    if kind == "number":
        return _number(call, param, value)
    if kind == "duration":
        return convert_duration(call, param.name, value, param.check or POSITIVE)
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
                                   + did_you_mean(value, param.choices), argument=param.name)
        raise ArgumentError(f"{call}: argument '{param.name}' must be one of "
                            f"{', '.join(param.choices)}, got {_describe(value)}")
    if kind == "string":
        if isinstance(value, str) and value:
            try:  # a lone surrogate (from Python) has no UTF-8, so no canonical text to round-trip
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ArgumentError(f"{call}: argument '{param.name}' is not valid Unicode text "
                                    f"(a lone surrogate), got {value!r}") from None
            return str(value)
        raise ArgumentError(f"{call}: argument '{param.name}' must be a name or a quoted string, "
                            f"got {_describe(value)}")
    if kind == "schedule":
        if isinstance(value, Expr):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return const(_number(call, Param(param.name, "number", check=LR), value))
        raise ArgumentError(f"{call}: argument '{param.name}' must be a schedule, got {_describe(value)}")
    if kind == "schedules":
        if len(value) < 2:
            raise ArgumentError(f"{call}: needs at least two schedules or numbers, got {len(value)}")
        return tuple(convert(call, Param(param.name, "schedule"), v) for v in value)
    raise AssertionError(kind)


# --- shared pieces of the formulas ---------------------------------------------------

def float32_split(x: float) -> tuple[float, float]:
    """(head, tail): head the float32 number nearest x, tail = x − head exactly (float64).

    A float32 backend rounds a folded number such as d = 76.23 to float32 before ``d − t``,
    and near d's end that subtraction cancels to the rounding (0.23 comes out 0.2300033);
    ``(head − t) + tail`` keeps it: head − t is exact there, and tail adds what float32 lost.
    In float64 it is d − t to the last bit or two.  x beyond float32 stays whole.  The tail
    goes in through :func:`unfolded`, else XLA and TensorFlow's graph optimizer fold
    ``(head − t) + tail`` back into ``(head + tail) − t``, which is float32(d) − t again.
    """
    if not (isinstance(x, float) and abs(x) < 3.4e38):
        return x, 0.0
    head = struct.unpack("f", struct.pack("f", x))[0]
    return head, x - head


def unfolded(xp, t, tail: float):
    """``tail`` as a value a graph optimizer cannot fold into a neighbouring constant: a select
    on t (whose condition, t ≥ 0, always holds: every backend clamps ticks at 0 first)."""
    return xp.where(t >= 0, tail, 0.0)


def remaining(xp, d, t):
    """d − t, with d's float32 rounding added back (:func:`float32_split`); exactly 0 from d on
    (t ≥ d compares with float32(d) in float32, so its callers' clamp min(t, d) gives 0)."""
    head, tail = float32_split(d)
    if not tail:
        return d - t
    ahead = head - t
    return ahead + xp.where(t < d, tail, -ahead)  # a select on t: no optimizer folds the tail


def shares(xp, t, d, power=1.0):
    """(u, v): the elapsed share x = t/d warped to x^power, and 1 − u.

    Each is computed from its own end so that neither loses digits near 0: v from the
    remaining ticks d − t (:func:`remaining`, exact in float32 too), and for a power,
    1 − x^power by :func:`complement`.
    """
    u = xp.divide(t, d)
    v = xp.divide(remaining(xp, d, t), d)
    if power != 1:
        warped = xp.sqrt(u) if power == 0.5 else xp.power(u, power)
        u, v = warped, complement(xp, warped, u, v, power)
    return u, v


def complement(xp, a_power, a, b, power):
    """1 − a^power, given a^power, a and b = 1 − a, accurate at both ends.

    1 − √a = b/(1 + √a) and 1 − a² = b·(1 + a) exactly; any other power takes 1 − a^power
    as is where it is ≥ 0.5, else −expm1(power·log a), log a from the smaller of a and b
    (log1p(−b) for a small b; a tiny power lifts a tiny a above 0.5, where b rounds to 1).
    """
    if power == 0.5:
        return b / (1.0 + a_power)
    if power == 2:
        return b * (1.0 + a)
    log_a = xp.where(a <= 0.5, xp.log(a), xp.log1p(-b))
    return xp.where(a_power <= 0.5, 1.0 - a_power, -xp.expm1(power * log_a))


def _weighted(xp, t, terms):
    """Σ value·weight, leaving out terms whose value is a literal 0."""
    out = None
    for value, weight in terms:
        if isinstance(value, float) and value == 0.0:
            continue
        term = value * weight
        out = term if out is None else out + term
    return xp.zeros_like(t) if out is None else out


def _linear_shape(xp, t, start, end, u, v):
    """S(u) = u: start·(1 − u) + end·u."""
    return _weighted(xp, t, ((start, v), (end, u)))


def _cos_shape(xp, t, start, end, u, v):
    """S(u) = (1 − cos πu)/2 = sin²(πu/2), and 1 − S(u) = sin²(πv/2)."""
    return _weighted(xp, t, ((start, xp.square(xp.sin(HALF_PI * v))),
                             (end, xp.square(xp.sin(HALF_PI * u)))))


#: ticks up to which a period's position is exact (optax counts updates in int32, so no
#: backend sees a later tick in practice); past it positions are still clamped into [0, period]
PERIOD_HORIZON = 2.0 ** 31
#: the shortest period (in ticks) a periodic construct takes: 2³¹/2³⁶ = 1/32 tick, so that the
#: position within it stays exact to float64 precision up to PERIOD_HORIZON
PERIOD_MIN = PERIOD_HORIZON / 2.0 ** 36


def period_complaint(what: str, period: float) -> str | None:
    """A period too short for :func:`period_position` to place a tick within it, or None."""
    if period < PERIOD_MIN:
        return (f"{what} = {period:.3g} ticks is shorter than 1/32 tick: a tick's place within "
                f"such a period cannot be computed")
    return None


@functools.lru_cache(maxsize=256)
def period_parts(period: float) -> tuple[tuple[float, ...], float]:
    """(parts, δ): the period as written (``repr``, as sgdr's restarts read it) ≈ Σ parts + δ.

    The parts sum to the float exactly, each holding at most k = 53 − bitlength(⌈2³¹/period⌉)
    significant bits, so that q·part is exact in float64 for every whole q ≤ 2³¹/period; δ is
    the decimal minus the float (7.7 is 7.70000000000000018 as a float, and 10 of it 77 only
    in decimal).  A whole period below 2⁵³ (or any of ≤ k bits) is its own single part, δ = 0;
    a period below PERIOD_MIN (step's every: only ⌊t/every⌋ is read) is one part too.  At most
    four parts (k ≥ 17), computed in Python floats (truncations of the significand: exact)."""
    period = float(period)
    if not PERIOD_MIN <= period < math.inf:
        return (period,), 0.0
    import decimal
    with decimal.localcontext() as context:
        context.prec = 60
        delta = float(decimal.Decimal(repr(period)) - decimal.Decimal(period))
    count = math.ceil(PERIOD_HORIZON / period)
    k = max(53 - count.bit_length(), 1)
    parts, rest = [], period
    while rest:
        exponent = math.frexp(rest)[1]
        part = math.ldexp(math.floor(math.ldexp(rest, k - exponent)), exponent - k)
        parts.append(part)
        rest -= part  # exact: the bits below the part's
    return tuple(parts), delta


#: a position within this share of t of a period's boundary is on it (the decimal period's
#: boundary: 77 ticks is 10 periods of 7.7); the position is accurate to ~t·2⁻¹⁰⁰
PERIOD_SNAP = 2.0 ** -80


def _position(xp, t, q, parts, delta):
    """t − q·period summed part by part: every product exact, the first difference exact
    (Sterbenz), each later one rounded once at the size of its result."""
    r = t
    for part in parts:
        r = r - q * part
    return r - q * delta if delta else r


def period_position(xp, t, period):
    """(q, τ): q = ⌊t/period⌋ whole periods and τ = t − q·period ∈ [0, period] ticks into the
    current one — the helper every periodic construct (poly's cycle, step, staircase exp,
    cyclic, sgdr with mult=1, repeat) places its ticks with.

    t − q·period cancels: at t ~ 10⁶ a rounded product q·period leaves τ with only ~10 of its
    digits, different on each backend (XLA fuses and reorders).  So the period is split at plan
    time into parts of few enough bits (:func:`period_parts`) that each q·part is exact for
    every tick up to PERIOD_HORIZON (2³¹), plus the period as written minus its float: τ comes
    out within ~t·2⁻¹⁰⁰ of the decimal period's position on every float64 backend, and one
    within t·2⁻⁸⁰ of a boundary is on it (0).

    q is first ⌊t/period⌋ (XLA computes t·(1/period)), then settled by rounded products:
    q·period > t, (q + 1)·period ≤ t.  A product of whole numbers below 2²⁴ is exact in float32
    (below 2⁵³ in float64), so with whole ticks and a whole period every backend puts the
    boundary on the same tick as exact arithmetic does; a product rounding onto t puts 77 at
    10 periods of 7.7, as the decimal does (a period float32 does not hold is checked at plan
    time, plan._period_complaint, with this same function in float32).  τ is then ≥ 0 up to
    that rounding (≤ t·2⁻⁵³ below 0 where q·period rounded onto t).

    τ is clamped into [0, period] so that no formula sees a share outside [0, 1] at ticks past
    the horizon; a period too short to place a tick in (< 1/32 tick: t/period at tick 2³¹
    beyond 2³⁶, where the parts no longer hold the position) is refused at plan time by
    :func:`period_complaint`."""
    q = xp.floor(xp.divide(t, period))
    q = xp.where(q * period > t, q - 1.0, q)
    q = xp.where((q + 1.0) * period <= t, q + 1.0, q)
    parts, delta = period_parts(period)
    r = _position(xp, t, q, parts, delta)
    return q, xp.minimum(xp.where(r <= t * PERIOD_SNAP, 0.0, r), period)


def period_left(xp, t, q, period):
    """period − τ, the ticks left in period q at ticks t, as (q + 1)·period − t part by part
    (:func:`period_position`'s τ for q + 1, negated), so that it keeps its digits near the
    period's end, where period − τ would be a difference of nearly equal numbers; in [0, period].
    """
    parts, delta = period_parts(period)
    left = -_position(xp, t, q + 1.0, parts, delta)
    return xp.minimum(xp.where(left <= t * PERIOD_SNAP, 0.0, left), period)


def whole_periods(xp, t, period):
    """⌊t/period⌋, as :func:`period_position` settles it."""
    return period_position(xp, t, period)[0]


#: the widest end/start ratio shape=exp takes (e^170 ≈ 1e73): exp(ratio/2) then fits float32
EXP_SHAPE_LOG_RATIO = 170.0


def exp_shape_complaint(start: float, end: float) -> str | None:
    """shape=exp is geometric: both of its ends must be > 0 (also once scaled by a neighbour),
    and their ratio within e^170, so that no intermediate overflows, even in float32."""
    if not (start > 0 and end > 0):
        return f"shape=exp is geometric, so its ends must be > 0, got {start:.3g} and {end:.3g}"
    if abs(math.log(end) - math.log(start)) > EXP_SHAPE_LOG_RATIO:
        return f"shape=exp from {start:.3g} to {end:.3g} spans more than 1e73"
    return None


def _exp_shape(xp, t, start, end, u, v):
    """Geometric: start·(end/start)^u, from whichever end is nearer (both ends > 0)."""
    log_ratio = math.log(end) - math.log(start)
    return xp.where(u <= v, start * xp.exp(log_ratio * u), end * xp.exp(-log_ratio * v))


#: shape name -> shape(xp, t, start, end, u, v); S(0) = 0 and S(1) = 1 exactly
SHAPES = {"linear": _linear_shape, "cos": _cos_shape, "exp": _exp_shape}


def interpolate(xp, t, d, start, end, shape="linear", power=1.0):
    """start + (end − start)·S((t/d)^power), written so that both ends are exact."""
    u, v = shares(xp, t, d, power)
    return SHAPES[shape](xp, t, start, end, u, v)


def _geometric(xp, base_log, n):
    """base^n as exp(n·log base), log folded in float64: no drift of a rounded base."""
    return xp.exp(n * base_log)


def _grows(p, base: float, every: float) -> float:
    """The largest factor base^(t/every) reaches within the call's duration (inf if unbounded)."""
    if base <= 1:
        return 1.0
    exponent = p.d / every * math.log(base)  # inf when d is
    return math.exp(exponent) if exponent < 709 else math.inf


def _span(*values: float) -> tuple[float, float]:
    return (min(values), max(values))


# --- the primitives -------------------------------------------------------------------
# t: local ticks (float array, ≥ 0, clamped to the call's end when bounded); p: resolved args.

def _unbounded(doc: str = "") -> Param:
    return Param("d", "duration", None, shown="∞",
                 doc=doc or "bound the schedule so it can stand before >>")


D = _unbounded()
SHAPE = Param("shape", "choice", "linear", choices=tuple(SHAPES))
POWER = Param("power", "number", 1.0, POSITIVE)

PRIMITIVES: dict[str, Primitive] = {}


def _add(primitive: Primitive) -> None:
    PRIMITIVES[primitive.name] = primitive


def _const(xp, t, p):
    """lr at every tick."""
    return xp.zeros_like(t) + p.lr


_add(Primitive(
    "const", (Param("lr", "number", check=LR), D),
    """Constant: ``lr`` at every tick.  A bare number ``0.1`` is ``const(0.1)``.""",
    native="ConstantLR / a float learning rate", example="0.1", value=_const, title="constant",
    range=lambda p: (p.lr, p.lr),
    describe=lambda a: "",
    short=lambda a: format_value(a["lr"]) if a["d"] is None else None))


def _linear(xp, t, p):
    """start + (end − start)·x, x = min(t, d)/d — exactly ``end`` from t = d on."""
    return interpolate(xp, t, p.d, p.start, p.end)


_add(Primitive(
    "linear", (Param("start", "number", check=LR), Param("end", "number", check=LR),
               Param("d", "duration")),
    """Linear ramp: start + (end − start)·min(t, d)/d; exactly ``end`` from t = d on.""",
    native="LinearLR (as factors)", example="linear(0.1, 0.001, 50)", value=_linear,
    range=lambda p: _span(p.start, p.end), describe=lambda a: "linear"))


def _shape_check(ends: str):
    def validate(a):
        if a["shape"] == "exp" and any(a[name] <= 0 for name in ends.split()):
            return f"shape=exp is geometric, so {' and '.join(ends.split())} must be > 0"
        return None
    return validate


def _anneal(xp, t, p):
    """start + (end − start)·S((min(t, d)/d)^power); S linear, cos (1 − cos πu)/2 or exp
    (geometric).  optax ``cosine_decay_schedule`` / timm's k-decay (power) / Smith's range
    test sweep (shape=exp)."""
    return interpolate(xp, t, p.d, p.start, p.end, p.shape, p.power)


def _anneal_check(a):
    if a["start"] == 0 and a["end"] == 0:
        return "start and end are both 0: the schedule would be 0 throughout"
    return _shape_check("start end")(a)


_add(Primitive(
    "anneal", (Param("start", "number", check=LR), Param("end", "number", check=LR),
               Param("d", "duration"), Param("shape", "choice", "cos", choices=tuple(SHAPES)),
               POWER),
    """Anneal from start to end over d ticks (rising or falling): start + (end − start)·S(x^power),
    x = min(t, d)/d; S is linear, cos ((1 − cos πu)/2) or exp (geometric: start·(end/start)^u).""",
    native="optax/HF/timm shapes; rising cosines (DINO weight decay, EMA momentum)",
    example="anneal(0.04, 0.4, 100)", value=_anneal, validate=_anneal_check,
    resolve=lambda p: exp_shape_complaint(p.start, p.end) if p.shape == "exp" else None,
    range=lambda p: _span(p.start, p.end),
    describe=lambda a: a["shape"] + (f"^{format_number(a['power'])}" if a["power"] != 1 else "")))


def _warmup(xp, t, p):
    """L·(start + (1 − start)·S(x^power)), L = ``p.anchor`` = the next segment's value at its
    t = 0.  LinearLR(start_factor=start, total_iters=d) in front of a schedule."""
    return interpolate(xp, t, p.d, p.anchor * p.start, p.anchor, p.shape, p.power)


_add(Primitive(
    "warmup", (Param("d", "duration"), Param("start", "number", 0.0, UNIT_CLOSED), SHAPE, POWER),
    """Warm-up to the next segment: L·(start + (1 − start)·S(x^power)), L = the value of the
    segment after ``>>`` at its t = 0.  Must be followed by ``>>`` and a schedule.""",
    native="LinearLR(start_factor=start, total_iters=d) in front; Keras CosineDecay warm-up",
    example="warmup(5) >> cosine(0.1, 100)", value=_warmup, validate=_shape_check("start"),
    resolve=lambda p: exp_shape_complaint(p.anchor * p.start, p.anchor) if p.shape == "exp" else None,
    range=lambda p: (p.anchor * p.start, p.anchor), placement="before",
    describe=lambda a: a["shape"]))


def _cooldown(xp, t, p):
    """P·(1 + (end − 1)·S(x^power)), P = ``p.anchor`` = the previous segment's final value.
    WSD's decay phase (Hägele et al. 2024: power=0.5 is 1 − √x)."""
    return interpolate(xp, t, p.d, p.anchor, p.anchor * p.end, p.shape, p.power)


_add(Primitive(
    "cooldown", (Param("d", "duration"), Param("end", "number", 0.0, UNIT_CLOSED), SHAPE, POWER),
    """Cool-down from the previous segment: P·(1 + (end − 1)·S(x^power)), P = the final value of
    the segment before ``>>``; end is the share of P it ends at.  Must follow ``>>``.""",
    native="WSD decay phase; HF warmup_stable_decay; Hägele et al. 2024 (power=0.5: 1 − √x)",
    example="warmup(10) >> 0.1 >> cooldown(20)", value=_cooldown, validate=_shape_check("end"),
    resolve=lambda p: exp_shape_complaint(p.anchor, p.anchor * p.end) if p.shape == "exp" else None,
    range=lambda p: (p.anchor * p.end, p.anchor), placement="after",
    describe=lambda a: a["shape"] + (f"^{format_number(a['power'])}" if a["power"] != 1 else "")))


def _cosine(xp, t, p):
    """min + (lr − min)·(1 + cos(π·x))/2 = lr·sin²(π(1 − x)/2) + min·sin²(πx/2).
    CosineAnnealingLR (Loshchilov & Hutter 2017) for t ≤ d; Keras CosineDecay."""
    return interpolate(xp, t, p.d, p.lr, p.min, "cos")


def _min_below_lr(a):
    return f"min={a['min']:g} must not exceed lr={a['lr']:g}" if a["min"] > a["lr"] else None


_add(Primitive(
    "cosine", (Param("lr", "number", check=PEAK), Param("d", "duration"),
               Param("min", "number", 0.0, LR)),
    """Cosine decay: min + (lr − min)·(1 + cos(π·min(t, d)/d))/2; holds min after d.""",
    native="CosineAnnealingLR(T_max=d, eta_min=min); Keras CosineDecay(alpha=min/lr)",
    example="cosine(0.1, 100, min=0.001)", value=_cosine, validate=_min_below_lr,
    range=lambda p: (p.min, p.lr)))


def _poly(xp, t, p):
    """(lr − end)·(1 − t/D)^power + end = lr·w + end·(1 − w), w = (1 − t/D)^power; D = d, or
    with cycle D = d·max(1, ⌈t/d⌉).  Keras PolynomialDecay; PolynomialLR when end = 0."""
    if p.power == 0:
        return xp.zeros_like(t) + p.lr
    if p.cycle:  # D = d·⌈t/d⌉ (≥ d), the ceiling decided exactly like every other period
        q, into = period_position(xp, t, p.d)
        span = p.d * xp.maximum(1.0, xp.where(into > 0, q + 1.0, q))
        # D − t from the position: d − τ into a period, 0 at its end, d at t = 0
        left = xp.where(into > 0, period_left(xp, t, q, p.d), xp.where(t > 0, 0.0, p.d))
        u, v = xp.minimum(xp.divide(t, span), 1.0), xp.divide(left, span)
    else:
        u, v = shares(xp, t, p.d)
    if p.power == 1:
        return _weighted(xp, t, ((p.lr, v), (p.end, u)))
    w = xp.power(v, p.power)
    return _weighted(xp, t, ((p.lr, w), (p.end, complement(xp, w, v, u, p.power))))


def _poly_check(a):
    return "lr and end are both 0: the schedule would be 0 throughout" \
        if a["lr"] == 0 and a["end"] == 0 else None


_add(Primitive(
    "poly", (Param("lr", "number", check=LR), Param("d", "duration"),
             Param("end", "number", 0.0, LR), Param("power", "number", 1.0, NONNEGATIVE),
             Param("cycle", "bool", False)),
    """Polynomial decay: (lr − end)·(1 − min(t, D)/D)^power + end, D = d, or with
    cycle=true D = d·max(1, ⌈t/d⌉) (unbounded).  lr may be 0 (a rising poly).""",
    native="Keras PolynomialDecay; PolynomialLR when end=0",
    example="poly(0.1, 100, power=2)", value=_poly, validate=_poly_check,
    resolve=lambda p: period_complaint("d", p.d) if p.cycle else None,
    range=lambda p: _span(p.lr, p.end), bounded=lambda a: not a["cycle"],
    end=lambda p: math.inf if p.cycle else p.d, span=lambda p: 3 * p.d,
    describe=lambda a: f"power {format_number(a['power'])}" + (", cycling" if a["cycle"] else "")))


def _step(xp, t, p):
    """lr·factor^⌊t/every⌋.  StepLR(step_size=every, gamma=factor)."""
    return p.lr * _geometric(xp, p.log_factor, whole_periods(xp, t, p.every))


def _resolve_factor(p):
    p.log_factor = math.log(p.factor)


_add(Primitive(
    "step", (Param("lr", "number", check=PEAK), Param("every", "duration"),
             Param("factor", "number", 0.1, POSITIVE), D),
    """Step decay: lr·factor^⌊t/every⌋.""",
    native="StepLR(step_size=every, gamma=factor)", example="step(0.1, 30, factor=0.5)",
    value=_step, resolve=_resolve_factor,
    range=lambda p: (0.0 if p.factor < 1 else p.lr, p.lr * _grows(p, p.factor, p.every)),
    span=lambda p: 3 * p.every,
    describe=lambda a: f"×{format_value(a['factor'])} every {a['every']}"))


def _levels(xp, t, marks, levels):
    """levels[i] from marks[i−1] on (levels[0] before the first mark)."""
    out = xp.zeros_like(t) + levels[0]
    for mark, level in zip(marks, levels[1:]):
        out = xp.where(t >= mark, level, out)
    return out


def _multistep(xp, t, p):
    """lr·factor^#{mᵢ ≤ t}, each level lr·factorᵏ computed once in float64.  MultiStepLR."""
    return _levels(xp, t, p.milestones, p.levels)


def _in_order(name: str, ticks, strict: bool) -> str | None:
    if any(b < a or (strict and b == a) for a, b in zip(ticks, ticks[1:])):
        order = "strictly increasing" if strict else "in increasing order"
        return f"{name} must be {order} in ticks, got {', '.join(f'{v:g}' for v in ticks)}"
    return None


def _resolve_multistep(p):
    p.levels = tuple(p.lr * floats.power(p.factor, k) for k in range(len(p.milestones) + 1))
    return _in_order("milestones", p.milestones, strict=False)


_add(Primitive(
    "multistep", (Param("lr", "number", check=PEAK), Param("milestones", "durations"),
                  Param("factor", "number", 0.1, POSITIVE), D),
    """Decay at milestones: lr·factor^#{mᵢ ≤ t}.""",
    native="MultiStepLR(milestones, gamma=factor)", example="multistep(0.1, [30, 60, 90])",
    value=_multistep, resolve=_resolve_multistep, range=lambda p: _span(*p.levels),
    span=lambda p: 1.5 * max(p.milestones, default=0.0),
    describe=lambda a: f"×{format_value(a['factor'])} at {format_value(a['milestones'])}"))


def _piecewise(xp, t, p):
    """vᵢ for bᵢ ≤ t < bᵢ₊₁ (b₀ = 0).  Keras PiecewiseConstantDecay with boundaries bᵢ − 1."""
    return _levels(xp, t, p.boundaries, p.values)


def _piecewise_lengths(a):
    if len(a["values"]) != len(a["boundaries"]) + 1:
        return (f"needs one more value than boundaries, got {len(a['boundaries'])} boundaries "
                f"and {len(a['values'])} values")
    return None


_add(Primitive(
    "piecewise", (Param("boundaries", "durations"), Param("values", "numbers", check=LR), D),
    """Piecewise constant: vᵢ for bᵢ ≤ t < bᵢ₊₁ (b₀ = 0); one more value than boundaries.""",
    native="Keras PiecewiseConstantDecay with boundaries bᵢ − 1",
    example="piecewise([50%, 75%], [0.1, 0.01, 0.001])", value=_piecewise,
    validate=_piecewise_lengths, resolve=lambda p: _in_order("boundaries", p.boundaries, True),
    range=lambda p: _span(*p.values), span=lambda p: 1.5 * max(p.boundaries, default=0.0),
    describe=lambda a: f"steps at {format_value(a['boundaries'])}"))


def _decay_exponent(xp, t, p):
    return whole_periods(xp, t, p.every) if p.staircase else xp.divide(t, p.every)


def _exp(xp, t, p):
    """lr·rate^(t/every) (⌊t/every⌋ with staircase) = lr·exp(e·log rate); k: log rate = −k.
    Keras ExponentialDecay; ExponentialLR(gamma=rate) when every = 1."""
    return p.lr * _geometric(xp, p.log_rate, _decay_exponent(xp, t, p))


def _exp_rate_or_k(a):
    if (a["rate"] is None) == (a["k"] is None):
        return "give exactly one of rate (lr·rate^t) and k (lr·e^(−k·t))"
    return None


def _resolve_exp(p):
    p.log_rate = -p.k if p.rate is None else math.log(p.rate)


_add(Primitive(
    "exp", (Param("lr", "number", check=PEAK),
            Param("rate", "number", None, POSITIVE, shown="e^-k", positional=True),
            Param("every", "duration", Duration(1.0)), Param("staircase", "bool", False),
            Param("k", "number", None, NONNEGATIVE, shown="none"), D),
    """Exponential decay: lr·rate^(t/every) (⌊t/every⌋ with staircase); with k instead of
    rate, lr·e^(−k·t/every).  A rate > 1 grows, so it needs d=.""",
    native="Keras ExponentialDecay; ExponentialLR(gamma=rate) when every=1",
    example="exp(0.1, 0.95)", value=_exp, validate=_exp_rate_or_k, resolve=_resolve_exp,
    range=lambda p: (0.0 if p.log_rate <= 0 else p.lr,
                     p.lr * _grows(p, math.exp(p.log_rate), p.every)),
    span=lambda p: 3 * p.every / max(abs(p.log_rate), 1e-9) if p.log_rate else 100.0,
    describe=lambda a: (f"×{format_value(a['rate'])}" if a["rate"] is not None else
                        f"×e^-{format_value(a['k'])}") + f" per {a['every']}"
    + (" (staircase)" if a["staircase"] else "")))


def _invtime(xp, t, p):
    """lr / (1 + rate·t/every)^power.  Keras InverseTimeDecay (power = 1)."""
    e = _decay_exponent(xp, t, p)
    if p.power == 0:
        return xp.zeros_like(t) + p.lr
    if p.power == 1:
        return p.lr / (1.0 + p.rate * e)
    return p.lr * xp.exp(-p.power * xp.log1p(p.rate * e))


_add(Primitive(
    "invtime", (Param("lr", "number", check=PEAK), Param("rate", "number", check=NONNEGATIVE),
                Param("every", "duration", Duration(1.0)), Param("staircase", "bool", False),
                Param("power", "number", 1.0, NONNEGATIVE), D),
    """Inverse-time ("time-based") decay: lr / (1 + rate·t/every)^power (⌊t/every⌋ with
    staircase).""",
    native="Keras InverseTimeDecay; timm power-law stable phase",
    example="invtime(0.1, 0.5)", value=_invtime, range=lambda p: (0.0, p.lr),
    span=lambda p: 10 * p.every / max(p.rate, 1e-9) if p.rate else 100.0,
    describe=lambda a: f"1/(1 + {format_value(a['rate'])}·t/{a['every']})"
    + (f"^{format_number(a['power'])}" if a["power"] != 1 else "")))


def _rsqrt(xp, t, p):
    """lr·(d0 / max(t, d0))^power.  t5x rsqrt_normalized_decay (power = 0.5)."""
    ratio = p.d0 / xp.maximum(t, p.d0)
    return p.lr * (xp.sqrt(ratio) if p.power == 0.5 else xp.power(ratio, p.power))


_add(Primitive(
    "rsqrt", (Param("lr", "number", check=PEAK), Param("d0", "duration", Duration(1.0)),
              Param("power", "number", 0.5, NONNEGATIVE), D),
    """Inverse square root: lr·(d0 / max(t, d0))^power (power 0.5: √).""",
    native="t5x rsqrt_normalized_decay; power schedulers (t^−0.51)",
    example="rsqrt(0.01, d0=1000)", value=_rsqrt, range=lambda p: (0.0, p.lr),
    span=lambda p: 3 * p.d0,
    describe=lambda a: f"(t/{a['d0']})^-{format_number(a['power'])} from {a['d0']}"))


def _cyclic(xp, t, p):
    """CyclicLR (Smith 2017): low + (high − low)·s·a, s the triangle (m/up rising, (size − m)/down
    falling, m = t mod size) and a the amplitude (1; 0.5^cycle for triangular2; gamma^t for
    exp_range).  Written as low·(1 − s·a) + high·s·a with 1 − s·a = (1 − s) + s·(1 − a), each
    share from its own end; high < low is an inverted cycle (CyclicLR's momentum)."""
    size = p.up + p.down
    cycles, m = period_position(xp, t, size)
    rising = m <= p.up
    s = xp.where(rising, xp.divide(m, p.up), xp.divide(period_left(xp, t, cycles, size), p.down))
    rest = xp.where(rising, xp.divide(p.up - m, p.up), xp.divide(m - p.up, p.down))  # 1 − s
    if p.mode == "triangular":
        return _weighted(xp, t, ((p.low, rest), (p.high, s)))
    if p.mode == "triangular2":
        a = xp.power(0.5, cycles)
        lost = 1.0 - a
    else:
        a = _geometric(xp, p.log_gamma, t)
        lost = -xp.expm1(p.log_gamma * t)
    return _weighted(xp, t, ((p.low, rest + s * lost), (p.high, s * a)))


def _resolve_cyclic(p):
    if p.down is None:
        p.down = p.up
    p.log_gamma = math.log(p.gamma)
    if not math.isfinite(p.up + p.down):
        return f"up + down = {p.up:g} + {p.down:g} ticks is beyond float range"
    return period_complaint("up + down", p.up + p.down)


def _cyclic_range(p):
    a = _grows(p, p.gamma, 1.0) if p.mode == "exp_range" else 1.0
    if not math.isfinite(a):
        return (0.0, math.inf)  # gamma > 1 without d=: the height grows without bound
    return _span(p.low, p.low + (p.high - p.low) * a, p.high)


def _cyclic_check(a):
    return "low and high are both 0: the schedule would be 0 throughout" \
        if a["low"] == 0 and a["high"] == 0 else None


_add(Primitive(
    "cyclic", (Param("low", "number", check=LR), Param("high", "number", check=LR),
               Param("up", "duration"), Param("down", "duration", None, shown="up", same_as="up"),
               Param("mode", "choice", "triangular",
                     choices=("triangular", "triangular2", "exp_range")),
               Param("gamma", "number", 1.0, POSITIVE), D),
    """Cyclical LR (Smith 2017): up ticks from low to high, down ticks back (down=up by
    default); triangular2 halves the height each cycle, exp_range scales it by gamma^t.
    high < low is an inverted cycle (CyclicLR's momentum).""",
    native="CyclicLR(base_lr=low, max_lr=high, step_size_up=up, step_size_down=down)",
    example="cyclic(0.001, 0.1, 10)", value=_cyclic, validate=_cyclic_check,
    resolve=_resolve_cyclic, range=_cyclic_range, span=lambda p: 3 * (p.up + p.down),
    describe=lambda a: f"{a['mode']} cycles up {a['up']}, down {a['down'] or a['up']}"))


def _sgdr(xp, t, p):
    """Restart i runs min + (peakᵢ − min)·(1 + cos(π·τ/Tᵢ))/2, τ ticks into it, Tᵢ = period·multⁱ,
    peakᵢ = lr·decayⁱ.  CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) (decay = 1);
    Keras CosineDecayRestarts(t_mul, m_mul) (min = 0)."""
    if p.mult == 1:
        restarts, into = period_position(xp, t, p.period)
        length = p.period
    else:
        restarts, into, left, length = _restart_of(xp, t, p)
        peak = p.lr * _geometric(xp, p.log_decay, restarts)
        return _cos_shape(xp, t, peak, p.min, xp.divide(into, length), xp.divide(left, length))
    peak = p.lr * _geometric(xp, p.log_decay, restarts)
    u, v = xp.divide(into, length), xp.divide(period_left(xp, t, restarts, length), length)
    return _cos_shape(xp, t, peak, p.min, u, v)


#: restarts of a growing sgdr decided at plan time (no more than this many, none past this tick)
RESTART_TABLE = 2 ** 15
RESTART_HORIZON = 2.0 ** 31


def _restart_table(period: float, mult: float):
    """Restart i begins at Bᵢ = period·(multⁱ − 1)/(mult − 1) and is in force from the first whole
    tick ≥ Bᵢ.  Returns, per restart: that tick kᵢ, oᵢ = kᵢ − Bᵢ ∈ [0, 1), rᵢ = Bᵢ₊₁ − (kᵢ₊₁ − 1)
    ∈ (0, 1] and Tᵢ, from decimal arithmetic on the numbers as written (``repr``), so
    7·(1.3 − 1)/0.3 is 7, not 7.000000000000001.  The table ends with the first restart that
    begins at or past RESTART_HORIZON (so the last one before it has its end), or with the
    RESTART_TABLE-th; that final entry's numbers are held within float range (only its tick
    is read, as the end of the one before)."""
    import decimal
    with decimal.localcontext() as context:
        context.prec = 60
        m, length = decimal.Decimal(repr(mult)), decimal.Decimal(repr(period))
        begin = decimal.Decimal(0)
        ticks: list[float] = []
        offsets: list[float] = []
        tails: list[float] = []
        lengths: list[float] = []
        while True:
            tick = begin.to_integral_value(rounding=decimal.ROUND_CEILING)
            final = len(ticks) + 1 == RESTART_TABLE or begin >= RESTART_HORIZON
            cap = sys.float_info.max if final else math.inf  # the final one only ends the table
            if ticks:
                tails.append(float(begin - (tick - 1)))
            ticks.append(min(float(tick), cap))
            offsets.append(float(tick - begin))
            lengths.append(min(float(length), cap))
            if final:
                break
            begin += length
            length *= m
    return tuple(ticks), tuple(offsets), tuple(tails) + (1.0,), tuple(lengths)


def _restart_of(xp, t, p):
    """(restart i, ticks τ into it, ticks left in it, its length Tᵢ) at ticks t, for mult > 1.

    Within the table every backend looks up the same whole restart ticks, and τ = (t − kᵢ) + oᵢ
    and Tᵢ − τ = (kᵢ₊₁ − 1 − t) + rᵢ₊₁ are sums of two non-negative numbers, a whole one exact
    in float32: float32 decides the boundary and keeps the cosine's digits at both ends as
    float64 does.  Beyond the table (more than RESTART_TABLE restarts, or past tick 2³¹) the
    closed form decides, exactly only in float64."""
    ticks = xp.array(p.restart_ticks)
    flat = xp.reshape(t, (-1,))  # TensorFlow's searchsorted wants a 1-D array
    index = xp.reshape(xp.searchsorted(ticks, flat, side="right") - 1, xp.shape(t))
    last = len(p.restart_ticks) - 1
    known = t < p.restart_ticks[-1]
    index = xp.minimum(index, last - 1)
    restarts = xp.take(xp.array(p.restart_index), index)
    into = (t - xp.take(ticks, index)) + xp.take(xp.array(p.restart_offsets), index)
    left = (xp.take(ticks, index + 1) - 1.0 - t) + xp.take(xp.array(p.restart_tails), index)
    length = xp.take(xp.array(p.restart_lengths), index)

    def begins(n):  # tick at which restart n begins; mult^n is exact for whole mults
        return p.period * xp.divide(xp.power(p.mult, n) - 1.0, p.mult - 1.0)
    late = xp.floor(xp.divide(xp.log1p(xp.divide(t, p.period) * (p.mult - 1.0)), p.log_mult))
    late = xp.where(t < begins(late), late - 1.0, late)
    late = xp.where(t >= begins(late + 1.0), late + 1.0, late)
    late_into = t - begins(late)
    late_length = p.period * xp.power(p.mult, late)
    return (xp.where(known, restarts, late), xp.where(known, into, late_into),
            xp.where(known, left, late_length - late_into), xp.where(known, length, late_length))


def _resolve_sgdr(p):
    p.log_mult, p.log_decay = math.log(p.mult), math.log(p.decay)
    if p.mult == 1:
        return period_complaint("period", p.period)
    (p.restart_ticks, p.restart_offsets, p.restart_tails,
     p.restart_lengths) = _restart_table(p.period, p.mult)
    p.restart_index = tuple(float(i) for i in range(len(p.restart_ticks)))
    last = p.restart_ticks[-1]
    if last < RESTART_HORIZON and last <= p.d:
        # past the table only a closed form in logs and powers places the restarts, and no
        # two backends agree on it to float64 precision at such ticks: refuse them instead
        return (f"mult={p.mult!r} restarts {RESTART_TABLE} times by tick {last:.17g}; "
                f"past that the backends cannot agree where restarts fall: raise mult, or bound "
                f"it with d= below {last:.17g} ticks")
    return None


_add(Primitive(
    "sgdr", (Param("lr", "number", check=PEAK), Param("period", "duration"),
             Param("mult", "number", 1.0, AT_LEAST_ONE), Param("min", "number", 0.0, LR),
             Param("decay", "number", 1.0, POSITIVE), D),
    """Cosine with warm restarts: restart i runs a cosine from lr·decayⁱ to min over
    period·multⁱ ticks.  A decay > 1 grows, so it needs d=.

    Restart i begins at Bᵢ = period·(multⁱ − 1)/(mult − 1), exact in decimal arithmetic of the
    numbers as written, and is in force from the first whole tick ≥ Bᵢ, τ = t − Bᵢ into it: Keras
    CosineDecayRestarts' rule for any mult, and CosineAnnealingWarmRestarts' for the whole mults
    it accepts (it refuses a fractional T_mult).  Every backend decides these ticks alike, from a
    table made at plan time (the restarts before tick 2³¹, at most 32768 of them: a mult so
    near 1 that they run out earlier needs d= within them).  A period below 1/32 tick is
    refused (mult=1: where a tick falls in it cannot be computed).""",
    native="CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) when decay=1; "
           "Keras CosineDecayRestarts(t_mul, m_mul) when min=0",
    example="sgdr(0.1, 10, mult=2)", value=_sgdr, validate=_min_below_lr, resolve=_resolve_sgdr,
    range=lambda p: (p.min, p.lr * _grows(p, p.decay, p.period)),
    span=lambda p: 3 * p.period * p.mult ** 2,
    describe=lambda a: f"cosine restarts every {a['period']}"
    + (f" ×{format_number(a['mult'])} longer" if a["mult"] != 1 else "")))


def onecycle_phases(p) -> list[tuple[float, float, float]]:
    """(end tick, value at phase start, value at phase end), as OneCycleLR builds them."""
    first = p.lr / p.div if p.start is None else p.start
    last = first / p.final_div if p.end is None else p.end
    if p.three_phase:
        return [(p.pct * p.d - 1, first, p.lr), (2 * p.pct * p.d - 2, p.lr, first),
                (p.d - 1, first, last)]
    return [(p.pct * p.d - 1, first, p.lr), (p.d - 1, p.lr, last)]


def _onecycle(xp, t, p):
    """OneCycleLR (Smith & Topin 2018): phases from start to the peak lr and on to end, each
    annealed by cos or linear, switching at the phase's last tick as OneCycleLR does."""
    out = None
    begin = [0.0] + [end for end, _, _ in p.phases[:-1]]
    for (end, first, last), start in reversed(list(zip(p.phases, begin))):
        length = end - start
        u, v = xp.divide(t - start, length), xp.divide(end - t, length)
        value = SHAPES[p.anneal](xp, t, first, last, u, v)
        out = value if out is None else xp.where(t <= end, value, out)
    return out


def _onecycle_written(a):
    if a["start"] is not None and a["div"] != 25.0:
        return "give div or start, not both (start is lr/div)"
    if a["end"] is not None and a["final_div"] != 1e4:
        return "give final_div or end, not both (end is start/final_div)"
    if not isinstance(a["d"], Duration) or a["d"].unit:
        return None  # checked again in ticks when units are resolved
    return _onecycle_ticks(SimpleNamespace(**{**a, "d": a["d"].value}))


def _onecycle_ticks(p) -> str | None:
    """OneCycleLR divides by each phase's length: every phase must span at least a tick."""
    ends = [0.0] + [end for end, _, _ in onecycle_phases(p)]
    if any(b - a <= 0 for a, b in zip(ends, ends[1:])):
        return f"pct={p.pct:g} leaves a phase of no length over d={p.d:g} ticks"
    return None


def _resolve_onecycle(p):
    complaint = _onecycle_ticks(p)
    p.phases = onecycle_phases(p)
    return complaint


_add(Primitive(
    "onecycle", (Param("lr", "number", check=PEAK), Param("d", "duration"),
                 Param("pct", "number", 0.3, UNIT_OPEN), Param("div", "number", 25.0, POSITIVE),
                 Param("final_div", "number", 1e4, POSITIVE),
                 Param("anneal", "choice", "cos", choices=("cos", "linear")),
                 Param("three_phase", "bool", False),
                 Param("start", "number", None, LR, shown="lr/div"),
                 Param("end", "number", None, LR, shown="start/final_div")),
    """One-cycle policy (lr is the peak): from start = lr/div to lr over pct·d ticks, then to
    end = start/final_div at tick d − 1 (three_phase: back to start first), annealed by cos or
    linear, exactly as OneCycleLR; holds its final value from tick d − 1.  start=/end= set the
    ends directly; a peak below them is an inverted cycle (OneCycleLR's momentum:
    onecycle(0.85, d, start=0.95, end=0.95)).""",
    native="OneCycleLR(max_lr=lr, total_steps=d, pct_start, div_factor, final_div_factor)",
    example="onecycle(0.1, 1000)", value=_onecycle, validate=_onecycle_written,
    resolve=_resolve_onecycle, end=lambda p: p.d - 1,
    range=lambda p: _span(*(v for _, a, b in p.phases for v in (a, b))),
    describe=lambda a: f"one cycle, peak {format_value(a['lr'])}"
    + (", three phases" if a["three_phase"] else "")))


def _build(kind: str):
    def build(values):
        return getattr(nodes, kind)(*values)
    return build


_add(Primitive(
    "repeat", (Param("schedule", "schedule"), Param("n", "number", None, COUNT, shown="∞")),
    """Run a bounded schedule n times (forever by default), each with a fresh clock.""",
    example="repeat(warmup(2) >> cosine(0.1, 18))", build=_build("Repeat")))
_add(Primitive(
    "min", (Param("schedules", "schedules"),),
    """Pointwise minimum of schedules or numbers (a ceiling); as long as its longest bounded
    operand.""",
    native="clipping", example="min(exp(0.1, 0.9, d=50), 0.05)",
    build=_build("Minimum")))
_add(Primitive(
    "max", (Param("schedules", "schedules"),),
    """Pointwise maximum of schedules or numbers (a floor); as long as its longest bounded
    operand.""",
    native="optax end_value floors", example="max(exp(0.1, 0.97), 1e-4)",
    build=_build("Maximum")))
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


def primitives() -> dict[str, Primitive]:
    """Every primitive of the language by name, in the catalogue's order."""
    return dict(PRIMITIVES)


#: the operators, for the language table (their rules live in nodes.py and plan.py)
OPERATORS = (
    ("a >> b", "`a` for its duration, then `b` with its own clock from 0; one unbounded segment "
               "before a bounded last one stretches to fill `total`", "SequentialLR"),
    ("a + b, a - b", "pointwise sum and difference (a difference must provably stay ≥ 0)", "—"),
    ("a * b, k * a", "pointwise product", "—"),
    ("a[s:e]", "a(s + min(t, e − s)): a time slice, either end optional; holds a(e) past e",
     "timm warmup_prefix=False; Noam's 1-based step"),
    ("a | plateau(…)", "min(a(t), max(a(t)·s, min)), the scale s lowered on plateau (top level only)",
     "ReduceLROnPlateau"),
)


def markdown_table() -> str:
    """The README's language table: every primitive's signature, formula and native counterpart.

    Printed by ``lrdsl list --markdown``; a test holds the README to it.
    """
    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    rows = ["| expression | value at t (x = min(t, d)/d) | native counterpart |", "|---|---|---|"]
    for primitive in PRIMITIVES.values():
        summary = primitive.doc.split("\n\n")[0]
        rows.append(f"| `{cell(primitive.signature())}` | {cell(summary)} | {cell(primitive.native) or '—'} |")
    for syntax, meaning, native in OPERATORS:
        rows.append(f"| `{cell(syntax)}` | {cell(meaning)} | {cell(native)} |")
    return "\n".join(rows)
