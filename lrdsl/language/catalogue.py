"""The catalogue of primitives: everything lrdsl knows about each call, in one entry.

Each entry (a :class:`~lrdsl.language.params.Primitive`) gives the call's parameters with
their defaults and checks, its formula with a docstring carrying the math and a reference,
its range, and the words that describe it; the parser, ``lrdsl list``, the plan and the docs
(:mod:`lrdsl.language.markdown`) all read this one table.

A formula is ``value(xp, t, p)``: ``xp`` is an array namespace (``numpy``, ``keras.ops``,
``jax.numpy``, or :mod:`lrdsl.language.floats` for one plain float), ``t`` the local tick array
(≥ 0, clamped to the call's end when bounded), ``p`` the resolved arguments, durations in
ticks, and ``p.left``: None, or d − t computed by the caller from the global tick (a bounded
formula passes it to :func:`~lrdsl.language.numerics.shares`; see ``TimedSequence``).  Each formula is written once, here, against names those namespaces share; the
numerics they share are in :mod:`lrdsl.language.numerics`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from lrdsl.language import floats, params
from lrdsl.language.numerics import (RESTART_HORIZON, RESTART_TABLE, SHAPES, complement,
                                     cos_shape, decay_exponent, exp_shape_complaint, geometric,
                                     grows, interpolate, interval, levels_at, period_complaint,
                                     period_left, period_position, restart_of, restart_table,
                                     restart_steady, shares,
                                     weighted, whole_periods)
from lrdsl.language.params import (AT_LEAST_ONE, COUNT, INTEGER, LR, NONNEGATIVE, PEAK, POSITIVE,
                                   UNIT_CLOSED, UNIT_OPEN, Param, Primitive, format_value)
from lrdsl.language.units import Duration, format_number

# --- the primitives -------------------------------------------------------------------
# t: local ticks (float array, ≥ 0, clamped to the call's end when bounded); p: resolved args.

def _unbounded(doc: str = "") -> Param:
    return Param("d", "duration", None, shown="∞",
                 doc=doc or "bound the schedule so it can stand before >>")


D = _unbounded()


def _decays_to_end(value):
    """The low end of a decaying call's range: its value at d where ``d=`` bounds it (it holds
    that value from there on), else 0 — every argument narrows a range, so
    ``1 / invtime(10, 0.1, d=100)`` divides by at least invtime's value at tick 100."""
    def low(p) -> float:
        if not math.isfinite(p.d):
            return 0.0
        return float(value(floats, p.d, SimpleNamespace(**{**vars(p), "left": None})))
    return low
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
    return interpolate(xp, t, p.d, p.start, p.end, left=p.left)


_add(Primitive(
    "linear", (Param("start", "number", check=LR), Param("end", "number", check=LR),
               Param("d", "duration")),
    """Linear ramp: start + (end − start)·min(t, d)/d; exactly ``end`` from t = d on.""",
    native="LinearLR (as factors)", example="linear(0.1, 0.001, 50)", value=_linear,
    range=lambda p: interval(p.start, p.end), describe=lambda a: "linear"))


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
    return interpolate(xp, t, p.d, p.start, p.end, p.shape, p.power, left=p.left)


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
    range=lambda p: interval(p.start, p.end),
    describe=lambda a: a["shape"] + (f"^{format_number(a['power'])}" if a["power"] != 1 else "")))


def _warmup(xp, t, p):
    """L·(start + (1 − start)·S(x^power)), L = ``p.anchor`` = the next segment's value at its
    t = 0.  LinearLR(start_factor=start, total_iters=d) in front of a schedule."""
    return interpolate(xp, t, p.d, p.anchor * p.start, p.anchor, p.shape, p.power, left=p.left)


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
    return interpolate(xp, t, p.d, p.anchor, p.anchor * p.end, p.shape, p.power, left=p.left)


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
    return interpolate(xp, t, p.d, p.lr, p.min, "cos", left=p.left)


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
        u, v = shares(xp, t, p.d, left=p.left)
    if p.power == 1:
        return weighted(xp, t, ((p.lr, v), (p.end, u)))
    w = xp.power(v, p.power)
    return weighted(xp, t, ((p.lr, w), (p.end, complement(xp, w, v, u, p.power))))


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
    range=lambda p: interval(p.lr, p.end), bounded=lambda a: not a["cycle"],
    end=lambda p: math.inf if p.cycle else p.d, span=lambda p: 3 * p.d,
    describe=lambda a: f"power {format_number(a['power'])}" + (", cycling" if a["cycle"] else "")))


def _step(xp, t, p):
    """lr·factor^⌊t/every⌋.  StepLR(step_size=every, gamma=factor)."""
    return p.lr * geometric(xp, p.log_factor, whole_periods(xp, t, p.every))


def _resolve_factor(p):
    p.log_factor = math.log(p.factor)


_add(Primitive(
    "step", (Param("lr", "number", check=PEAK), Param("every", "duration"),
             Param("factor", "number", 0.1, POSITIVE), D),
    """Step decay: lr·factor^⌊t/every⌋.""",
    native="StepLR(step_size=every, gamma=factor)", example="step(0.1, 30, factor=0.5)",
    value=_step, resolve=_resolve_factor,
    range=lambda p: (_decays_to_end(_step)(p) if p.factor < 1 else p.lr,
                     p.lr * grows(p, p.factor, p.every)),
    span=lambda p: 3 * p.every,
    describe=lambda a: f"×{format_value(a['factor'])} every {a['every']}"))


def _multistep(xp, t, p):
    """lr·factor^#{mᵢ ≤ t}, each level lr·factorᵏ computed once in float64.  MultiStepLR."""
    return levels_at(xp, t, p.milestones, p.levels)


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
    value=_multistep, resolve=_resolve_multistep, range=lambda p: interval(*p.levels),
    span=lambda p: 1.5 * max(p.milestones, default=0.0),
    describe=lambda a: f"×{format_value(a['factor'])} at {format_value(a['milestones'])}"))


def _piecewise(xp, t, p):
    """vᵢ for bᵢ ≤ t < bᵢ₊₁ (b₀ = 0).  Keras PiecewiseConstantDecay with boundaries bᵢ − 1."""
    return levels_at(xp, t, p.boundaries, p.values)


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
    range=lambda p: interval(*p.values), span=lambda p: 1.5 * max(p.boundaries, default=0.0),
    describe=lambda a: f"steps at {format_value(a['boundaries'])}"))


def _exp(xp, t, p):
    """lr·rate^(t/every) (⌊t/every⌋ with staircase) = lr·exp(e·log rate); k: log rate = −k.
    Keras ExponentialDecay; ExponentialLR(gamma=rate) when every = 1."""
    return p.lr * geometric(xp, p.log_rate, decay_exponent(xp, t, p))


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
    range=lambda p: (_decays_to_end(_exp)(p) if p.log_rate <= 0 else p.lr,
                     p.lr * grows(p, math.exp(p.log_rate), p.every)),
    span=lambda p: 3 * p.every / max(abs(p.log_rate), 1e-9) if p.log_rate else 100.0,
    describe=lambda a: (f"×{format_value(a['rate'])}" if a["rate"] is not None else
                        f"×e^-{format_value(a['k'])}") + f" per {a['every']}"
    + (" (staircase)" if a["staircase"] else "")))


def _invtime(xp, t, p):
    """lr / (1 + rate·t/every)^power.  Keras InverseTimeDecay (power = 1)."""
    e = decay_exponent(xp, t, p)
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
    example="invtime(0.1, 0.5)", value=_invtime, range=lambda p: (_decays_to_end(_invtime)(p), p.lr),
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
    example="rsqrt(0.01, d0=1000)", value=_rsqrt, range=lambda p: (_decays_to_end(_rsqrt)(p), p.lr),
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
        return weighted(xp, t, ((p.low, rest), (p.high, s)))
    if p.mode == "triangular2":
        a = xp.power(0.5, cycles)
        lost = 1.0 - a
    else:
        a = geometric(xp, p.log_gamma, t)
        lost = -xp.expm1(p.log_gamma * t)
    return weighted(xp, t, ((p.low, rest + s * lost), (p.high, s * a)))


def _resolve_cyclic(p):
    if p.down is None:
        p.down = p.up
    p.log_gamma = math.log(p.gamma)
    if not math.isfinite(p.up + p.down):
        return f"up + down = {p.up:g} + {p.down:g} ticks is beyond float range"
    return period_complaint("up + down", p.up + p.down)


def _cyclic_range(p):
    a = grows(p, p.gamma, 1.0) if p.mode == "exp_range" else 1.0
    if not math.isfinite(a):
        return (0.0, math.inf)  # gamma > 1 without d=: the height grows without bound
    return interval(p.low, p.low + (p.high - p.low) * a, p.high)


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
        restarts, into, left, length = restart_of(xp, t, p)
        peak = p.lr * geometric(xp, p.log_decay, restarts)
        return cos_shape(xp, t, peak, p.min, xp.divide(into, length), xp.divide(left, length))
    peak = p.lr * geometric(xp, p.log_decay, restarts)
    u, v = xp.divide(into, length), xp.divide(period_left(xp, t, restarts, length), length)
    return cos_shape(xp, t, peak, p.min, u, v)


def _resolve_sgdr(p):
    p.log_mult, p.log_decay = math.log(p.mult), math.log(p.decay)
    if p.mult == 1:
        return period_complaint("period", p.period)
    (p.restart_ticks, p.restart_offsets, p.restart_tails,
     p.restart_lengths) = restart_table(p.period, p.mult)
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
    range=lambda p: (p.min, p.lr * grows(p, p.decay, p.period)),
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
    range=lambda p: interval(*(v for _, a, b in p.phases for v in (a, b))),
    describe=lambda a: f"one cycle, peak {format_value(a['lr'])}"
    + (", three phases" if a["three_phase"] else "")))


def _build(kind: str):
    def build(values):
        return getattr(params.nodes, kind)(*values)
    return build


def _repeat_check(a):
    if a["decay"] > 1 and a["n"] is None:
        return (f"decay={format_value(a['decay'])} > 1 grows each repetition, so it needs n "
                f"(a bounded number of them)")
    return None


def _describe_repeat(a):
    times = "forever" if a["n"] is None else f"{format_number(a['n'])} times"
    rule = [f"each ×{format_number(a['mult'])} longer"] if a["mult"] != 1 else []
    if a["round"]:
        rule.append("rounded down to whole ticks")
    if a["decay"] != 1:
        rule.append(f"×{format_number(a['decay'])} in value")
    return times + (f" ({', '.join(rule)})" if rule else "")


_add(Primitive(
    "repeat", (Param("schedule", "schedule"), Param("n", "number", None, COUNT, shown="∞"),
               Param("mult", "number", 1.0, AT_LEAST_ONE), Param("decay", "number", 1.0, POSITIVE),
               Param("round", "bool", False)),
    """Run a bounded schedule n times (forever by default), each with a fresh clock; repetition k
    (from 0) is a stretched to Pₖ ticks and scaled by decayᵏ: decayᵏ·a(τ·D/Pₖ), τ ticks into it,
    D = a's duration, Pₖ = D·multᵏ (round=true: P₀ = ⌊D⌋, Pₖ = ⌊Pₖ₋₁·mult⌋).  A decay > 1
    grows, so it needs n.

    Repetition k begins at P₀ + … + Pₖ₋₁ (in decimal arithmetic of the numbers as written, as
    sgdr's restarts) and is in force from the first whole tick at or after it, decided from a
    table made at plan time (the repetitions before tick 2³¹, at most 32768 of them: a mult so
    near 1 that they run out earlier needs n within them).  round=true is PyTorch Ignite's
    ``cycle_mult`` (with ``start_value_mult`` = ``end_value_mult`` = decay) and Composer's
    ``t_mult``; sgdr(lr, p, mult=m, decay=g) is repeat(cosine(lr, p), mult=m, decay=g).""",
    native="Ignite CosineAnnealingScheduler(cycle_mult, start_value_mult, end_value_mult) "
           "with round=true; Keras CosineDecayRestarts(t_mul, m_mul)",
    example="repeat(warmup(2) >> cosine(0.1, 18))", validate=_repeat_check,
    describe=_describe_repeat, build=_build("Repeat")))
_add(Primitive(
    "quantize", (Param("schedule", "schedule"), Param("every", "duration", check=POSITIVE)),
    """A schedule held per period of its own clock: a(every·⌊min(t, d)/every⌋), d = a's
    duration; past d it holds its last period's value (a(d) when every divides d).  As long as
    a, with a's range.

    The period index is settled as every periodic call's is (``period_position``), never a
    float32 ⌊t/every⌋, and the period begins on every·q as written (3·1.2 is 3.6).  References:
    mmengine's ``by_epoch=True`` schedulers converted to iterations (the value changes at epoch
    starts only); timm's epoch schedulers after a per-step warm-up (``warmup(500st) >>
    quantize(cosine(0.1, 90ep), 1ep)``); Keras ``staircase=True``, which quantize gives any
    schedule: ``quantize(exp(lr, r), n)`` is ``ExponentialDecay(lr, n, r**n, staircase=True)``.""",
    native="mmengine by_epoch schedulers; timm epoch stepping; Keras staircase=True",
    example="warmup(5) >> quantize(cosine(0.1, 100), 10)", build=_build("Quantize")))
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
                Param("cooldown", "number", 0.0, INTEGER), Param("min", "number", 0.0, LR),
                Param("atol", "number", 0.0, NONNEGATIVE),
                Param("best", "choice", "improvement", choices=("improvement", "running"))),
    """Reduce on plateau, after ``|``: a scale s (from 1) times factor when the monitor has
    not improved for more than patience reports; LR = min(f(t), max(f(t)·s, min)).
    mode=auto is max for monitors named *acc*/*auc*, else min.  Improved (mode min): v <
    best·(1 − threshold) − atol (rel) or v < best − threshold − atol (abs), max mirrored
    (atol: optax's; PyTorch's rule at atol=0).  best=improvement moves best only on an
    improvement (PyTorch); best=running to every new lowest (max: highest) value
    (scikit-learn's adaptive rate).""",
    native="ReduceLROnPlateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr); "
           "optax contrib.reduce_on_plateau (atol); scikit-learn learning_rate='adaptive' (best=running)",
    example="cosine(0.1, 100) | plateau(val_loss, 0.5, patience=3)"))


def primitives() -> dict[str, Primitive]:
    """Every primitive of the language by name, in the catalogue's order."""
    return dict(PRIMITIVES)

