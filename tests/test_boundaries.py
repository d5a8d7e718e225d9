"""Same result everywhere: restart and cycle boundaries, extreme numbers, junk input.

Expected values come from formulas written here in exact arithmetic (``fractions``), never
from lrdsl.  Backends: the reference (numpy float64), the plain-float path, optax/JAX in
float32 (jitted) and float64, Keras (float32).
"""

import importlib
import math
import os
import time
from fractions import Fraction

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lrdsl  # noqa: E402
from tolerances import F32, F64, assert_close  # noqa: E402


# --- exact oracles -------------------------------------------------------------------------

def sgdr_exact(lr, period, mult, t):
    """Restart i begins at Bᵢ = period·(multⁱ − 1)/(mult − 1), in exact decimal arithmetic of
    the numbers as written; at tick t the restart in force is the last with Bᵢ ≤ t."""
    m, begin, length = Fraction(repr(mult)), Fraction(0), Fraction(repr(period))
    while begin + length <= t:
        begin, length = begin + length, length * m
    return lr * (1 + math.cos(math.pi * float((t - begin) / length))) / 2


def poly_cycle_exact(lr, d, t):
    """Keras PolynomialDecay(cycle=True), power 1, end 0: D = d·max(1, ⌈t/d⌉) in integers."""
    span = d * max(1, -(-t // d))
    return lr * (span - t) / span


def backends(expr, ticks):
    """name -> values at the integer ``ticks`` on each backend that is installed."""
    out = {"curve": lrdsl.curve(expr, ticks),
           "floats": [lrdsl.plan(expr).value_at(t) for t in ticks]}
    try:
        import jax
        import jax.numpy as jnp
        optax_backend = importlib.import_module("lrdsl.optax")
    except ImportError:
        return out
    schedule = optax_backend.schedule(expr)
    count = jnp.asarray(ticks, jnp.int32)
    out["optax float32 jit"] = jax.jit(jax.vmap(schedule))(count)
    out["optax float32 eager"] = [schedule(jnp.int32(t)) for t in ticks[:50]]
    with jax.enable_x64(True):
        out["optax float64"] = jax.jit(jax.vmap(optax_backend.schedule(expr)))(
            jnp.asarray(ticks, jnp.int64))
    return out


PERIODIC = [
    ("poly(0.1, 7, cycle=true)", lambda t: poly_cycle_exact(0.1, 7, t)),
    ("poly(3, 30, cycle=true)", lambda t: poly_cycle_exact(3, 30, t)),
    ("sgdr(0.1, 3, mult=1.2)", lambda t: sgdr_exact(0.1, 3, 1.2, t)),
    ("sgdr(0.1, 7, mult=1.3)", lambda t: sgdr_exact(0.1, 7, 1.3, t)),
    ("sgdr(0.1, 10, mult=1.1)", lambda t: sgdr_exact(0.1, 10, 1.1, t)),
    ("sgdr(0.1, 4, mult=2)", lambda t: sgdr_exact(0.1, 4, 2, t)),
    ("step(0.1, 7, factor=0.5)", lambda t: 0.1 * 0.5 ** (t // 7)),
    ("repeat(linear(0.1, 0, 7))", lambda t: 0.1 * (7 - t % 7) / 7),
]


@pytest.mark.parametrize("expr, exact", PERIODIC, ids=[e for e, _ in PERIODIC])
def test_boundaries_fall_on_the_same_tick_on_every_backend(expr, exact):
    ticks = np.arange(3000)
    want = np.array([exact(int(t)) for t in ticks])
    for name, got in backends(expr, ticks).items():
        tolerance = F32 if "float32" in name else F64
        assert_close(got, want[:len(got)], tolerance, f"{expr} on {name}")


@pytest.mark.parametrize("expr, ticks, want", [
    ("poly(0.1, 7, cycle=true)", [21, 42], [0.0, 0.0]),
    ("sgdr(0.1, 3, mult=1.2)", [3], [0.1]),
    ("sgdr(0.1, 7, mult=1.3)", [7], [0.1]),  # 7·(1.3 − 1)/0.3 is 7, however 1.3 rounds
])
def test_the_reported_boundary_ticks(expr, ticks, want):
    for name, got in backends(expr, np.array(ticks)).items():
        assert np.asarray(got, np.float64).tolist() == pytest.approx(want, rel=1e-6, abs=1e-12), name


def test_keras_puts_restarts_on_the_same_ticks():
    keras = pytest.importorskip("keras")
    keras_backend = importlib.import_module("lrdsl.keras")
    for expr, exact in PERIODIC:
        ticks = np.arange(3000)
        got = keras.ops.convert_to_numpy(keras_backend.schedule(expr)(ticks))
        assert_close(got, [exact(int(t)) for t in ticks], F32, f"{expr} on Keras")


def test_a_growing_sgdr_stays_within_float32_tolerance_for_a_million_ticks():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    optax_backend = importlib.import_module("lrdsl.optax")
    expr = "sgdr(0.1, 7, mult=1.3)"
    ticks = np.arange(0, 10**6, 1)
    got = jax.jit(jax.vmap(optax_backend.schedule(expr)))(jnp.asarray(ticks, jnp.int32))
    assert_close(got, lrdsl.curve(expr, ticks), F32, expr)


# --- extreme numbers and junk input: a value or a one-line LrdslError --------------------------

@pytest.mark.parametrize("expr, units", [
    ("sgdr(2, 3, mult=1e308)", {}),
    ("poly(3, 2.2250738585072014e-308, end=5e-324, cycle=true)[:1 epochs]", {"steps_per_epoch": 10}),
    ("repeat(cosine(0.1,10), n=1e308) >> cooldown(5)", {}),
])
def test_overflowing_periods_are_refused_by_name(expr, units):
    with pytest.raises(lrdsl.LrdslError) as error:
        lrdsl.curve(expr, 20, **units)
    assert "\n" not in str(error.value)
    assert str(error.value).split(":")[0].split("(")[0] in ("sgdr", "poly", "repeat")


@pytest.mark.parametrize("ticks", [2 ** 62, 2 ** 31, "10", b"10", True])
def test_curve_refuses_tick_counts_it_cannot_hold_or_read(ticks):
    with pytest.raises(lrdsl.LrdslError, match="ticks"):
        lrdsl.curve("0.1", ticks)


@pytest.mark.parametrize("units", [{"steps_per_epoch": True}, {"total": False}])
def test_bools_are_not_unit_numbers(units):
    with pytest.raises(lrdsl.LrdslError, match=next(iter(units))):
        lrdsl.plan("cosine(0.1, 10)", **units)


def test_milestones_plan_in_linear_time():
    ticks = list(range(1, 10_001))
    started = time.perf_counter()
    plan = lrdsl.plan(f"multistep(0.5, {ticks})")
    assert time.perf_counter() - started < 2.0
    assert plan.value_at(0) == 0.5 and plan.value_at(1) == 0.05


def test_a_five_thousand_digit_number_is_rejected_fast():
    lrdsl.parse("1")  # build the parser outside the timing
    started = time.perf_counter()
    with pytest.raises(lrdsl.LrdslError, match="beyond float range"):
        lrdsl.parse(f"cosine(0.1, {'9' * 5000})")
    assert time.perf_counter() - started < 0.5


def test_a_lone_surrogate_monitor_is_refused():
    with pytest.raises(lrdsl.LrdslError, match="monitor"):
        lrdsl.call("plateau", "val_\ud800", 0.5)


@pytest.mark.parametrize("junk", [None, 3, ("cosine",)])
def test_call_with_a_name_that_is_no_string(junk):
    with pytest.raises(lrdsl.LrdslError, match="call"):
        lrdsl.call(junk)
