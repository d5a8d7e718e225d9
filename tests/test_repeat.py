"""repeat(a, n, mult=, decay=, round=) (LANGUAGE.md §3, v3) against its peers and its neighbours:
sgdr, Keras CosineDecayRestarts (t_mul, m_mul), PyTorch Ignite's cyclical schedulers
(cycle_mult, start_value_mult, end_value_mult), float32 at every period boundary up to 10⁶, and
the periods ``lrdsl parse`` lists.  Expected values come from the peers or from formulas here."""

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lrdsl  # noqa: E402
from lrdsl.language.explain import describe  # noqa: E402


def _close(got, want, rel, what="", of_peak=1e-12):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bound = np.maximum(rel * np.abs(want), of_peak * np.max(np.abs(want)))
    bad = ~(np.abs(got - want) <= bound)
    assert not bad.any(), (f"{what}: {bad.sum()} off, first at index {np.argmax(bad)}: "
                           f"{got[bad][0]!r} vs {want[bad][0]!r}")


# --- sgdr is a repeat of a cosine (LANGUAGE.md §3) ----------------------------------------------
@pytest.mark.parametrize("period, mult, decay", [
    (10, 2, 0.5), (10, 1.5, 1), (7.7, 1.3, 0.9), (3, 3, 0.7), (10, 1, 0.5), (1000, 1.5, 0.99),
    (2.5, 2.5, 1),
])
def test_sgdr_is_a_repeat_of_a_cosine_tick_for_tick(period, mult, decay):
    ticks = np.concatenate([np.arange(0, 5000.0), np.round(np.logspace(3, 6, 2000))])
    sgdr = lrdsl.curve(f"sgdr(0.1, {period}, mult={mult}, decay={decay})", ticks)
    repeat = lrdsl.curve(f"repeat(cosine(0.1, {period}), mult={mult}, decay={decay})", ticks)
    _close(repeat, sgdr, 1e-12, "repeat vs sgdr")


@pytest.mark.parametrize("period, mult", [(10, 2), (7.7, 1.3)])
def test_sgdr_with_a_floor_is_a_repeat_without_decay_and_keeps_its_floor_with_one(period, mult):
    ticks = np.arange(0, 3000.0)
    sgdr = lrdsl.curve(f"sgdr(0.1, {period}, mult={mult}, min=0.01)", ticks)
    repeat = lrdsl.curve(f"repeat(cosine(0.1, {period}, min=0.01), mult={mult})", ticks)
    _close(repeat, sgdr, 1e-12, "repeat vs sgdr with min")
    # with decay=g, sgdr keeps min while repeat scales the floor too (LANGUAGE.md §3)
    end_of_first_restart = math.ceil(period + period * mult) - 1  # restart 1's last tick
    kept = lrdsl.curve(f"sgdr(0.1, {period}, mult={mult}, min=0.01, decay=0.5)", [end_of_first_restart])
    scaled = lrdsl.curve(f"repeat(cosine(0.1, {period}, min=0.01), mult={mult}, decay=0.5)",
                         [end_of_first_restart])
    share = (1 + math.cos(math.pi * (end_of_first_restart - period) / (period * mult))) / 2
    assert kept[0] == pytest.approx(0.01 + (0.05 - 0.01) * share, rel=1e-12)
    assert scaled[0] == pytest.approx(0.5 * (0.01 + (0.1 - 0.01) * share), rel=1e-12)


# --- Keras CosineDecayRestarts(t_mul, m_mul) ----------------------------------------------------
@pytest.mark.parametrize("lr, period, t_mul, m_mul", [
    (0.1, 10, 1.5, 0.7), (0.1, 10, 2.0, 1.0), (0.05, 100, 3.0, 0.5), (1.0, 8, 1.25, 0.9),
])
def test_keras_cosine_decay_restarts(lr, period, t_mul, m_mul):
    """Numbers whose restarts float32 places as exact arithmetic does: Keras finds restart i by
    log(1 + t/period·(t_mul − 1))/log(t_mul) in float32, which puts period=7, t_mul=1.3's first
    restart (tick 7 exactly) on tick 8; lrdsl's table puts it on 7 in float32 too."""
    keras = pytest.importorskip("keras")
    import lrdsl.keras
    ticks = np.arange(0, 3000)
    native = keras.optimizers.schedules.CosineDecayRestarts(lr, period, t_mul=t_mul, m_mul=m_mul)
    want = np.array([float(keras.ops.convert_to_numpy(native(int(t)))) for t in ticks[:400]] +
                    list(np.asarray(keras.ops.convert_to_numpy(
                        native(keras.ops.convert_to_tensor(ticks[400:], "float32"))), np.float64)))
    expr = f"repeat(cosine({lr}, {period}), mult={t_mul}, decay={m_mul})"
    got = keras.ops.convert_to_numpy(lrdsl.keras.schedule(expr)(ticks))
    # Keras computes 1 + cos(πx) in float32: near a trough it is off by ~2⁻²⁴ of the peak
    _close(got, want, 4e-6, "lrdsl.keras vs CosineDecayRestarts", of_peak=2e-7)
    _close(lrdsl.curve(expr, ticks), want, 4e-6, "lrdsl.curve vs CosineDecayRestarts",
           of_peak=2e-7)


# --- PyTorch Ignite: cycle_mult, start_value_mult = end_value_mult -----------------------------
IGNITE = [  # (start, end, cycle_size, cycle_mult, value_mult)
    (0.1, 0.001, 10, 1.5, 0.8), (0.1, 0.0, 10, 2.0, 1.0), (0.5, 0.05, 7, 1.3, 0.9),
    (0.01, 0.1, 4, 3.0, 0.5), (0.1, 0.01, 3, 1.2, 1.0),  # 3·1.2 = 3.6 → 3: the period stays
]


def _ignite(cls, start, end, size, mult, value_mult, events):
    pytest.importorskip("ignite")
    simulated = cls.simulate_values(events, param_name="lr", start_value=start, end_value=end,
                                    cycle_size=size, cycle_mult=mult, start_value_mult=value_mult,
                                    end_value_mult=value_mult)
    return np.array([value for _, value in simulated])


@pytest.mark.parametrize("start, end, size, mult, value_mult", IGNITE)
def test_ignite_cosine_annealing_scheduler(start, end, size, mult, value_mult):
    from ignite.handlers.param_scheduler import CosineAnnealingScheduler
    want = _ignite(CosineAnnealingScheduler, start, end, size, mult, value_mult, 2000)
    expr = (f"repeat(anneal({start}, {end}, {size}, shape=cos), mult={mult}, "
            f"decay={value_mult}, round=true)")
    _close(lrdsl.curve(expr, np.arange(2000)), want, 1e-12, expr)


@pytest.mark.parametrize("start, end, size, mult, value_mult", IGNITE)
def test_ignite_linear_cyclical_scheduler(start, end, size, mult, value_mult):
    from ignite.handlers.param_scheduler import LinearCyclicalScheduler
    want = _ignite(LinearCyclicalScheduler, start, end, size, mult, value_mult, 2000)
    half = size / 2
    expr = (f"repeat(anneal({start}, {end}, {half}, shape=linear) >> "
            f"anneal({end}, {start}, {half}, shape=linear), mult={mult}, decay={value_mult}, "
            f"round=true)")
    _close(lrdsl.curve(expr, np.arange(2000)), want, 1e-12, expr)


# --- float32 at every period boundary up to 10⁶ -------------------------------------------------
GROWING = [
    "repeat(cosine(0.1, 1000), mult=1.5)", "repeat(cosine(0.1, 1000), mult=1.5, round=true)",
    "repeat(cosine(0.1, 1000), mult=2)", "repeat(cosine(0.1, 1000), mult=2, round=true)",
    "repeat(cosine(0.1, 7.7, min=1e-3), mult=1.3, decay=0.9)",
    "repeat(warmup(30) >> cosine(0.1, 70), mult=1.5, decay=0.95, round=true)",
    "repeat(anneal(0.01, 0.1, 333.3, shape=linear), n=12, mult=1.7, decay=1.05) >> 0.01",
    "repeat(cosine(0.1, 13), mult=1.01, round=true)",
]


def _boundary_ticks(expr):
    """Every whole tick within 2 of a period's start up to 10⁶, and a comb between."""
    plan = lrdsl.plan(expr)
    node = plan.schedule if isinstance(plan.schedule, lrdsl.language.plan.TimedRepeat) \
        else plan.schedule.parts[0]
    edges = np.array(node.table.restart_ticks)
    edges = edges[edges <= 1e6]
    near = (edges[:, None] + np.arange(-2, 3)[None, :]).ravel()
    t = np.unique(np.concatenate([near, np.arange(0, 1e6 + 1, 997), [1e6]]))
    return t[(t >= 0) & (t <= 1e6)], plan


@pytest.mark.parametrize("expr", GROWING)
def test_float32_keras_at_every_period_boundary(expr):
    keras = pytest.importorskip("keras")
    import lrdsl.keras
    t, plan = _boundary_ticks(expr)
    got = keras.ops.convert_to_numpy(lrdsl.keras.schedule(expr)(t))
    _close(got, plan.values(t), 4e-6, f"keras {expr}")


@pytest.mark.parametrize("expr", GROWING)
def test_float32_optax_at_every_period_boundary(expr):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import lrdsl.optax
    t, plan = _boundary_ticks(expr)
    schedule = jax.jit(jax.vmap(lrdsl.optax.schedule(expr)))
    got = np.asarray(schedule(jnp.asarray(t, jnp.int32)), np.float64)
    _close(got, plan.values(t), 4e-6, f"optax float32 {expr}")


@pytest.mark.parametrize("expr", [
    "repeat((warmup(17) >> sgdr(1, 0.5)) >> cooldown(2), n=12, mult=1.5)",  # the fuzz find
    "repeat(const(0.1, d=4) >> const(0.01, d=6), mult=1.5)", "repeat(step(0.1, 3, d=10), mult=2)",
    "repeat(cosine(0.1, 10.5) >> 0.5 * cosine(0.1, 10), n=2, round=true)",
])
def test_float32_refuses_switches_on_a_stretched_clock(expr):
    """τ·D/Pₖ in float32 is off by an ulp or two of D: a step, a restart or a jump inside the body
    could land on the other side of its tick (the fuzz find: a 0.5-tick sgdr stretched ×1.5ᵏ was
    1e-4 off).  The float64 reference runs them; float32 refuses."""
    plan = lrdsl.plan(expr, total=1000)
    assert "float32 cannot place" in plan.float32_complaint
    assert lrdsl.plan("repeat(step(0.1, 3, d=10))").float32_complaint is None  # its own clock


# --- the plan: ranges, durations, periods in words ----------------------------------------------
def test_ranges_and_durations_follow_the_periods():
    plan = lrdsl.plan("repeat(cosine(0.1, 10, min=0.01), n=4, mult=1.5, decay=0.5)")
    assert plan.duration == 10 + 15 + 22.5 + 33.75
    assert plan.range == pytest.approx((0.01 * 0.5 ** 3, 0.1), rel=1e-15)
    plan = lrdsl.plan("repeat(cosine(0.1, 10, min=0.01), n=4, mult=1.5, decay=2, round=true)")
    assert plan.duration == 10 + 15 + 22 + 33
    assert plan.range == pytest.approx((0.01, 0.1 * 2 ** 3), rel=1e-15)
    assert lrdsl.plan("repeat(cosine(0.1, 10, min=0.01), decay=0.5)").range == (0.0, 0.1)
    assert lrdsl.plan("repeat(cosine(0.1, 3), n=5, mult=1.2, round=true)").duration == 15


def test_parse_lists_the_first_periods_and_the_rule():
    lines = describe(lrdsl.plan("warmup(5) >> repeat(cosine(0.1, 10), mult=1.5, round=true)"))
    assert lines[1].endswith("forever (each ×1.5 longer, rounded down to whole ticks): "
                             "cosine(0.1,10); periods [5, 15) [15, 30) [30, 52) [52, 85) …"), lines
    lines = describe(lrdsl.plan("repeat(cosine(0.1, 10), n=2, mult=2, decay=0.5)"))
    assert lines[0].endswith("2 times (each ×2 longer, ×0.5 in value): cosine(0.1,10); "
                             "periods [0, 10) [10, 30)"), lines


def test_parse_json_carries_the_repeat_arguments():
    from lrdsl.language.explain import summary
    ast = summary(lrdsl.plan("repeat(cosine(0.1, 10), n=3, mult=1.5, decay=0.5, round=true)"))["ast"]
    assert {k: ast[k] for k in ("n", "mult", "decay", "round")} == \
        {"n": 3, "mult": 1.5, "decay": 0.5, "round": True}


# --- hostile: fuzz finds of v2 near repeat's numerics -------------------------------------------
def test_a_value_from_a_huge_mult_is_finite_on_the_reference():
    values = lrdsl.curve("repeat(cosine(2, 3), mult=1e308)", [0, 1, 2, 3, 4, 100, 10**6])
    want = [2 * math.cos(math.pi * t / 6) ** 2 for t in (0, 1, 2)] + [2.0] * 4
    _close(values, want, 1e-12, "mult=1e308")
