"""The numerics the formulas share: shares of a duration, periods, shapes, geometric factors.

Every formula is a non-negative combination of non-negative numbers, exact at its ends (a
ramp is ``start·v + end·u`` with the elapsed share ``u`` and the remaining share ``v`` each
computed from its own end, so ``linear(0.9, 0, 7)`` is exactly 0 at tick 7 and a cosine tail
keeps its digits in float32); geometric factors use ``exp(n·log r)`` with ``log r`` folded in
float64, never ``r^n`` of a rounded ``r``.  A share of a duration is ``xp.divide(t, d)``,
never ``t / d``: JAX's namespace (:mod:`lrdsl.optax`) divides so that XLA cannot rewrite it
as ``t · (1/d)`` and fold ``1/d`` into the constants around it.

``xp`` is an array namespace (``numpy``, ``keras.ops``, ``jax.numpy``, or
:mod:`lrdsl.language.floats` for one plain float), ``t`` a tick array.
"""

from __future__ import annotations

import functools
import math
import struct
import sys

HALF_PI = math.pi / 2


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


def shares(xp, t, d, power=1.0, left=None):
    """(u, v): the elapsed share x = t/d warped to x^power, and 1 − u.

    Each is computed from its own end so that neither loses digits near 0: v from the
    remaining ticks d − t (:func:`remaining`, exact in float32 too), and for a power,
    1 − x^power by :func:`complement`.  ``left``, when the caller has it, is d − t computed
    from the global tick (a sequence segment whose start float32 does not hold: its local t
    is already rounded, and d − t would keep only what that rounding left).
    """
    u = xp.divide(t, d)
    v = xp.divide(remaining(xp, d, t) if left is None else left, d)
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


def weighted(xp, t, terms):
    """Σ value·weight, leaving out terms whose value is a literal 0."""
    out = None
    for value, weight in terms:
        if isinstance(value, float) and value == 0.0:
            continue
        term = value * weight
        out = term if out is None else out + term
    return xp.zeros_like(t) if out is None else out


def linear_shape(xp, t, start, end, u, v):
    """S(u) = u: start·(1 − u) + end·u."""
    return weighted(xp, t, ((start, v), (end, u)))


def cos_shape(xp, t, start, end, u, v):
    """S(u) = (1 − cos πu)/2 = sin²(πu/2), and 1 − S(u) = sin²(πv/2)."""
    return weighted(xp, t, ((start, xp.square(xp.sin(HALF_PI * v))),
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


def exp_shape(xp, t, start, end, u, v):
    """Geometric: start·(end/start)^u, from whichever end is nearer (both ends > 0)."""
    log_ratio = math.log(end) - math.log(start)
    return xp.where(u <= v, start * xp.exp(log_ratio * u), end * xp.exp(-log_ratio * v))


#: shape name -> shape(xp, t, start, end, u, v); S(0) = 0 and S(1) = 1 exactly
SHAPES = {"linear": linear_shape, "cos": cos_shape, "exp": exp_shape}


def interpolate(xp, t, d, start, end, shape="linear", power=1.0, left=None):
    """start + (end − start)·S((t/d)^power), written so that both ends are exact (``left``:
    d − t from the caller, as for :func:`shares`)."""
    u, v = shares(xp, t, d, power, left)
    return SHAPES[shape](xp, t, start, end, u, v)


def geometric(xp, base_log, n):
    """base^n as exp(n·log base), log folded in float64: no drift of a rounded base."""
    return xp.exp(n * base_log)


def grows(p, base: float, every: float) -> float:
    """The largest factor base^(t/every) reaches within the call's duration (inf if unbounded)."""
    if base <= 1:
        return 1.0
    exponent = p.d / every * math.log(base)  # inf when d is
    return math.exp(exponent) if exponent < 709 else math.inf


def interval(*values: float) -> tuple[float, float]:
    """(lowest, highest) of the values: the range of a call that moves between them."""
    return (min(values), max(values))



def levels_at(xp, t, marks, levels):
    """levels[i] from marks[i−1] on (levels[0] before the first mark)."""
    out = xp.zeros_like(t) + levels[0]
    for mark, level in zip(marks, levels[1:]):
        out = xp.where(t >= mark, level, out)
    return out


def decay_exponent(xp, t, p):
    """The exponent e of a decay per ``every`` ticks: t/every, or ⌊t/every⌋ with staircase."""
    return whole_periods(xp, t, p.every) if p.staircase else xp.divide(t, p.every)



RESTART_TABLE = 2 ** 15
RESTART_HORIZON = 2.0 ** 31


def restart_table(period: float, mult: float, whole: bool = False, count: float | None = None):
    """Restart i begins at Bᵢ = period·(multⁱ − 1)/(mult − 1) and is in force from the first whole
    tick ≥ Bᵢ.  Returns, per restart: that tick kᵢ, oᵢ = kᵢ − Bᵢ ∈ [0, 1), rᵢ = Bᵢ₊₁ − (kᵢ₊₁ − 1)
    ∈ (0, 1] and Tᵢ, from decimal arithmetic on the numbers as written (``repr``), so
    7·(1.3 − 1)/0.3 is 7, not 7.000000000000001.  The table ends with the first restart that
    begins at or past RESTART_HORIZON (so the last one before it has its end), or with the
    RESTART_TABLE-th; that final entry's numbers are held within float range (only its tick
    is read, as the end of the one before).

    ``whole`` (repeat's round=true): the lengths are whole ticks, T₀ = ⌊period⌋ and
    Tᵢ = ⌊Tᵢ₋₁·mult⌋ (Ignite's ``cycle_mult``), so every Bᵢ is a whole tick; once a length stops
    growing (⌊T·mult⌋ = T) the table ends there too and :func:`restart_steady` gives that length,
    the period from the final tick on.  ``count``: the table ends with restart ``count`` (the
    end of the last of ``count`` periods)."""
    return _restart_rows(period, mult, whole, count)[:4]


def restart_steady(period: float, mult: float, whole: bool = False, count: float | None = None):
    """The steady length from the final tick of :func:`restart_table` on, or None."""
    return _restart_rows(period, mult, whole, count)[4]


def restart_end(period: float, mult: float, whole: bool = False, count: float | None = None):
    """Where the final restart of :func:`restart_table` begins (Bᵢ, not rounded to a tick)."""
    return _restart_rows(period, mult, whole, count)[5]


@functools.lru_cache(maxsize=64)
def _restart_rows(period: float, mult: float, whole: bool, count: float | None):
    import decimal
    with decimal.localcontext() as context:
        context.prec = 60
        m, length = decimal.Decimal(repr(mult)), decimal.Decimal(repr(period))
        if whole:
            length = length.to_integral_value(rounding=decimal.ROUND_FLOOR)
        begin = decimal.Decimal(0)
        ticks: list[float] = []
        offsets: list[float] = []
        tails: list[float] = []
        lengths: list[float] = []
        steady = None
        while True:
            tick = begin.to_integral_value(rounding=decimal.ROUND_CEILING)
            final = (len(ticks) + 1 == RESTART_TABLE or begin >= RESTART_HORIZON
                     or steady is not None or (count is not None and len(ticks) == count))
            cap = sys.float_info.max if final else math.inf  # the final one only ends the table
            if ticks:
                tails.append(float(begin - (tick - 1)))
            ticks.append(min(float(tick), cap))
            offsets.append(float(tick - begin))
            lengths.append(min(float(length), cap))
            if final:
                break
            begin += length
            grown = length * m
            if whole:
                grown = grown.to_integral_value(rounding=decimal.ROUND_FLOOR)
                if grown == length:
                    steady = float(length)
            length = grown
    return (tuple(ticks), tuple(offsets), tuple(tails) + (1.0,), tuple(lengths), steady,
            float(begin))


def _all_below(t, limit: float) -> bool:
    """Whether every tick of an eager numpy array (or a plain float) lies below ``limit``; False
    for a traced tensor, whose values are not known when the formula is built."""
    if isinstance(t, float):
        return t < limit
    if type(t).__module__ == "numpy" and hasattr(t, "max"):
        return not t.size or bool(t.max() < limit)
    return False


def restart_of(xp, t, p):
    """(restart i, ticks τ into it, ticks left in it, its length Tᵢ) at ticks t, for mult > 1,
    from the table ``p.restart_ticks`` … of :func:`restart_table` (sgdr's, repeat's).

    Within the table every backend looks up the same whole restart ticks, and τ = (t − kᵢ) + oᵢ
    and Tᵢ − τ = (kᵢ₊₁ − 1 − t) + rᵢ₊₁ are sums of two non-negative numbers, a whole one exact
    in float32: float32 decides the boundary and keeps the cosine's digits at both ends as
    float64 does.  Beyond the table (more than RESTART_TABLE restarts, or past tick 2³¹) the
    closed form decides, exactly only in float64; where whole lengths stopped growing
    (``p.restart_steady``, a whole period) the restarts past the table come every that many
    ticks, as exact as any period."""
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

    if _all_below(t, p.restart_ticks[-1]):  # an eager array within the table: no closed form
        return restarts, into, left, length
    steady = getattr(p, "restart_steady", None)
    if steady is not None:
        since = xp.maximum(t - p.restart_ticks[-1], 0.0)
        late, late_into = period_position(xp, since, steady)
        late = late + float(last)
        late_length = xp.zeros_like(t) + steady
    else:
        # restart n begins at period·(multⁿ − 1)/(mult − 1) and lasts period·multⁿ (exact for
        # whole mults); the guess n from logarithms is settled by one step either way
        late = xp.floor(xp.divide(xp.log1p(xp.divide(t, p.period) * (p.mult - 1.0)), p.log_mult))
        grown = xp.power(p.mult, late)
        begin = p.period * xp.divide(grown - 1.0, p.mult - 1.0)
        early, after = t < begin, t >= begin + p.period * grown
        late = xp.where(early, late - 1.0, xp.where(after, late + 1.0, late))
        grown = xp.where(early, xp.divide(grown, p.mult), xp.where(after, grown * p.mult, grown))
        late_into = t - p.period * xp.divide(grown - 1.0, p.mult - 1.0)
        late_length = p.period * grown
    return (xp.where(known, restarts, late), xp.where(known, into, late_into),
            xp.where(known, left, late_length - late_into), xp.where(known, length, late_length))
