"""Scalar formulas written straight from LANGUAGE.md and PyTorch's schedulers' own stepping.

Independent of lrdsl: plain ``math``, one tick at a time, iterative where PyTorch iterates.
"""

import math


def cosine(lr, d, t, min=0.0):
    t = min_(t, d)
    return min + (lr - min) * (1 + math.cos(math.pi * t / d)) / 2


def min_(a, b):
    return a if a < b else b


def cyclic(low, high, up, down, mode, gamma, t):
    """CyclicLR.get_lr, transcribed."""
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    height = (high - low) * scale
    if mode == "triangular":
        return low + height
    if mode == "triangular2":
        return low + height / (2.0 ** (cycle - 1))
    return low + height * gamma ** t


def sgdr(lr, period, mult, eta_min, decay, t):
    """CosineAnnealingWarmRestarts stepped t times (T_cur/T_i bookkeeping), with decay per restart."""
    t_cur, t_i, restarts = 0, period, 0
    for _ in range(int(t)):
        t_cur += 1
        if t_cur >= t_i:
            t_cur -= t_i
            t_i *= mult
            restarts += 1
    peak = lr * decay ** restarts
    return eta_min + (peak - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def onecycle(lr, d, pct, div, final_div, anneal, three_phase, t):
    """OneCycleLR.get_lr, transcribed; past the last tick (d - 1) it holds."""
    initial = lr / div
    return onecycle_ends(lr, d, pct, anneal, three_phase, initial, initial / final_div, t)


NAMES = {
    "floor": math.floor, "ceil": math.ceil, "cos": math.cos, "exp": math.exp, "sqrt": math.sqrt,
    "log": math.log, "pi": math.pi, "min": min, "max": max, "sum": sum,
    "cosine": cosine, "cyclic": cyclic, "sgdr": sgdr, "onecycle": onecycle,
}


def expected(formula: str, ticks) -> list[float]:
    """Evaluate the case's formula at each tick."""
    return [float(eval(formula, {**NAMES, "t": t})) for t in ticks]  # noqa: S307 (test data)


# --- v2 (LANGUAGE.md §2 shapes): written from the formulas, not from lrdsl ------------------

def shape(name, u):
    """S(u): linear u, cos (1 − cos πu)/2; exp is handled in anneal (it needs the ends)."""
    if name == "linear":
        return u
    if name == "cos":
        return (1 - math.cos(math.pi * u)) / 2
    raise ValueError(name)


def anneal(start, end, d, t, shape_name="cos", power=1.0):
    x = min_(t, d) / d
    u = x ** power
    if shape_name == "exp":
        return start * (end / start) ** u
    return start + (end - start) * shape(shape_name, u)


def warmup(target, d, t, start=0.0, shape_name="linear", power=1.0):
    return anneal(target * start, target, d, t, shape_name, power)


def cooldown(source, d, t, end=0.0, shape_name="linear", power=1.0):
    return anneal(source, source * end, d, t, shape_name, power)


def onecycle_ends(lr, d, pct, anneal_name, three_phase, first, last, t):
    """OneCycleLR.get_lr with its initial and final values given directly (momentum cycling)."""
    t = min_(t, d - 1)
    if three_phase:
        phases = [(pct * d - 1, first, lr), (2 * pct * d - 2, lr, first), (d - 1, first, last)]
    else:
        phases = [(pct * d - 1, first, lr), (d - 1, lr, last)]
    start = 0
    for i, (end, a, b) in enumerate(phases):
        if t <= end or i == len(phases) - 1:
            x = (t - start) / (end - start)
            if anneal_name == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * x) + 1)
            return (b - a) * x + a
        start = end


NAMES.update({"shape": shape, "anneal": anneal, "warmup": warmup, "cooldown": cooldown,
              "onecycle_ends": onecycle_ends})


# --- v3 (LANGUAGE.md §3 repeat): written from the formula, period by period -------------------

def repeat(a, t, d, mult=1.0, decay=1.0, whole=False, n=None):
    """decayᵏ·a(τ·d/Pₖ): repetition k of a (of duration d) stretched to Pₖ = d·multᵏ ticks
    (whole: P₀ = ⌊d⌋, Pₖ = ⌊Pₖ₋₁·mult⌋), τ ticks into it; after the n-th, a(d)·decayⁿ⁻¹."""
    period = math.floor(d) if whole else d
    start, k = 0, 0
    while t >= start + period:
        if n is not None and k == n - 1:
            return decay ** k * a(d)
        start += period
        period = math.floor(period * mult) if whole else period * mult
        k += 1
    return decay ** k * a((t - start) * d / period)
NAMES["repeat"] = repeat
