"""The bug classes the fuzz driver found after the boundary fixes, one test each.

Expected values are formulas written here, never lrdsl's output.  Keras and optax run in
float32 (optax jitted); the reference is numpy float64.
"""

import importlib
import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lrdsl  # noqa: E402

from tests import fuzz  # noqa: E402


# --- float32 refuses numbers and ticks it cannot hold -----------------------------------------

@pytest.mark.parametrize("expr, options, words", [
    ("step(0.5, 10.000000001)", {}, "falls on tick 10 in float32"),
    ("multistep(1, [10.000000001])", {}, "milestones"),
    ("piecewise([10.000000001], [0.1, 1])", {}, "boundaries"),
    ("sgdr(3e-4, 10.000000001)", {}, "period"),
    ("sgdr(0.1, 9.999999999)", {}, "not a float32 number"),
    ("step(0.5, 10%)", {"total": 77}, "every=7.7"),  # 7.7 ticks, unbounded: too many to check
    ("repeat(sgdr(10, 100%, d=1%))", {"total": 77}, "repeat's period"),
    ("linear(0.1, 2, 1000)[99.99999999:] >> cooldown(1000)", {}, "segment 2"),
    ("1e-38", {}, "smallest normal"),
    ("cosine(1e-38, 100)", {}, "smallest normal"),
    ("linear(2, 1, 1e-38)", {}, "smallest normal"),
    ("step(0.5, 1e-30)", {}, "every"),
    ("(cosine(0.1, 1e6) >> 0.1)[2e7:]", {}, "slice's start"),
    # quantize reads its schedule at every·q: a start float32 rounds a hair below an inner
    # boundary read the level before it (1.2 ticks here; the inner quantize switches at 18)
    ("quantize(quantize(anneal(0.1, 2, 10%, power=0.51), 1ep) >> cooldown(2steps), 1.2) >> "
     "cooldown(5)", {"steps_per_epoch": 3, "total": 250}, "not a float32 number"),
    ("quantize(sgdr(0.5, 1%, d=10), 1.2)", {"steps_per_epoch": 100, "total": 77}, "period starts"),
    ("quantize(exp(0.1, 0.99999), 7.5)", {}, "only below tick 8.38861e+06"),
    ("quantize(cosine(1, 100), 1e308)", {}, "does not fit float32"),  # t/every·every was NaN
])
def test_float32_refuses_what_it_cannot_hold(expr, options, words):
    complaint = lrdsl.plan(expr, **options).float32_complaint
    assert complaint is not None and words in complaint, complaint
    assert "\n" not in complaint


@pytest.mark.parametrize("expr, options", [
    ("step(0.5, 10)", {}), ("step(0.5, 1.5)", {}), ("step(0.5, 10%, d=1000)", {"total": 77}),
    ("cosine(0.1, 10%)", {"total": 77}), ("sgdr(0.1, 10, mult=2)", {}),
    ("multistep(1, [10, 20.5])", {}), ("10 >> cooldown(1%)", {"total": 77}),
])
def test_float32_takes_what_it_holds(expr, options):
    assert lrdsl.plan(expr, **options).float32_complaint is None


def test_a_non_float32_period_is_checked_boundary_by_boundary():
    # 7.7 is no float32 number, but over d = 1000 ticks float32 puts every ⌈7.7k⌉ where float64 does
    ticks = np.arange(0, 1001, dtype=np.float64)
    want = 0.5 * 0.1 ** np.floor(ticks * 10 / 77 + 1e-9)  # ⌊t/7.7⌋ in exact arithmetic
    compiled = lrdsl.plan("step(0.5, 10%, d=1000)", total=77)
    assert compiled.float32_complaint is None
    np.testing.assert_allclose(compiled.values(ticks), want, rtol=1e-12)
    keras = pytest.importorskip("keras")
    lrdsl_keras = importlib.import_module("lrdsl.keras")
    got = keras.ops.convert_to_numpy(lrdsl_keras.schedule("step(0.5, 10%, d=1000)", total=77)(ticks))
    assert np.all(np.abs(got - want) <= np.maximum(4e-6 * want, 1e-12 * 0.5))


@pytest.mark.parametrize("backend", ["keras", "optax"])
def test_the_float32_backends_refuse_a_boundary_float32_moves(backend):
    pytest.importorskip("keras" if backend == "keras" else "jax")
    module = importlib.import_module(f"lrdsl.{backend}")
    with pytest.raises(lrdsl.LrdslError, match="float32"):
        fn = module.schedule("step(0.5, 10.000000001)")
        fn(np.array([10.0]) if backend == "keras" else 10)


# --- a sequence ends exactly at its last segment's end value -------------------------------------

@pytest.mark.parametrize("expr, total, end", [
    ("3e-4 >> cooldown(9.999999999)", 10**6, 0.0),
    ("10 >> cooldown(1%)", 77, 0.0),
    ("10 >> cooldown(1%, end=0.5)", 77, 5.0),
    ("warmup(3) >> 0.5 >> cooldown(0.3%, end=0.1)", 1000, 0.05),
])
def test_a_stretched_sequence_is_at_its_end_value_from_total_on(expr, total, end):
    compiled = lrdsl.plan(expr, total=total)
    assert compiled.duration == total
    ticks = np.array([total, total + 1, 2 * total], dtype=np.float64)
    assert compiled.values(ticks).tolist() == [end] * 3
    assert [compiled.value_at(t) for t in ticks] == [end] * 3


# --- 1 − x^p with a tiny power keeps its digits ------------------------------------------------

def test_anneal_with_a_tiny_power_and_a_long_duration():
    # anneal(3e-4, 0.5, d, power=1e-6), shape cos: 3e-4·sin²(πv/2) + 0.5·cos²(πv/2), v = 1 − (t/d)^1e-6
    expr, d, p = "anneal(3e-4, 0.5, 1e9ep, power=1e-6)", 1e11, 1e-6
    ticks = np.array([1.0, 2.0, 100.0, 1e6])
    x = ticks / d
    share = -np.expm1(p * np.log(x))  # 1 − x^p, accurate for x far from 1
    want = 3e-4 * np.sin(np.pi / 2 * share) ** 2 + 0.5 * np.cos(np.pi / 2 * share) ** 2
    compiled = lrdsl.plan(expr, steps_per_epoch=100)
    np.testing.assert_allclose(compiled.values(ticks), want, rtol=1e-12)
    keras = pytest.importorskip("keras")
    lrdsl_keras = importlib.import_module("lrdsl.keras")
    got = keras.ops.convert_to_numpy(lrdsl_keras.schedule(expr, steps_per_epoch=100)(ticks))
    np.testing.assert_allclose(got, want, rtol=4e-6)


# --- the fuzz driver's tolerance for a difference (docs/language.md) ------------------------------

def test_a_difference_cancels_relative_to_its_operands():
    compiled = lrdsl.plan("cosine(0.001, 1000, min=0.001) - 0.001 + 1e-9")
    assert fuzz.cancelled(compiled.schedule) == 0.001
    assert fuzz.cancelled(lrdsl.plan("2 * (1 - cosine(0.5, 10))").schedule) == 2.0
    assert fuzz.cancelled(lrdsl.plan("cosine(0.1, 10) + 1").schedule) == 0.0
    # float32's rounding of the operand 0.001 (ulp 1.2e-10) is within 4e-6 × 0.001, not of 1e-9
    got, want = [1e-9 + 1.16e-10], [1e-9]
    assert fuzz._mismatch(got, want, fuzz.F32) is not None
    assert fuzz._mismatch(got, want, fuzz.F32, fuzz.cancelled(compiled.schedule)) is None
    assert fuzz._mismatch([1e-9 + 1e-8], want, fuzz.F32, 0.001) is not None


def test_float32_refuses_a_product_that_overflows_on_the_way():
    # 10 · 1e38 = 1e39 > 3.4e38: float32 computes inf · 0 = NaN where the value is 0
    complaint = lrdsl.plan("10 * 1e38 * 0").float32_complaint
    assert complaint is not None and "1e+39" in complaint
    assert lrdsl.plan("10 * 1e37 * 0").float32_complaint is None


# --- a bounded call holds its float64-decided end value --------------------------------------------

@pytest.mark.parametrize("backend", ["keras", "optax"])
def test_a_staircase_held_past_an_end_float32_rounds_keeps_its_last_level(backend):
    # d = 999.9999999 ticks rounds to 1000.0 in float32; the staircase's last level is
    # ⌊999.9999999⌋ = 999: 3e-4 / (1 + 2·999) from tick 1000 on, not level 1000
    pytest.importorskip("keras" if backend == "keras" else "jax")
    expr, options = "invtime(3e-4, 2, staircase=true, d=9.999999999 epochs)", {"steps_per_epoch": 100}
    ticks = np.array([998.0, 999.0, 1000.0, 5000.0])
    want = 3e-4 / (1 + 2 * np.array([998.0, 999.0, 999.0, 999.0]))
    np.testing.assert_allclose(lrdsl.curve(expr, ticks, **options), want, rtol=1e-12)
    module = importlib.import_module(f"lrdsl.{backend}")
    if backend == "keras":
        got = np.asarray(module.schedule(expr, **options)(ticks))
    else:
        import jax
        fn = jax.jit(module.schedule(expr, **options))
        got = np.array([float(fn(int(t))) for t in ticks])
    np.testing.assert_allclose(got, want, rtol=4e-6)


# --- a segment whose start float32 does not hold keeps its last ticks' digits ---------------------

@pytest.mark.parametrize("backend", ["keras", "optax"])
def test_a_segment_after_a_fractional_start_keeps_its_tail(backend):
    # 1% of 77 ticks = 0.77: the cool-down starts at tick 0.77, lasts 50 epochs = 5000 ticks and
    # cools P = 0.5 (the cosine's min) as P·(1 − x^0.25); at tick 4999 it has 5000.77 − 4999 =
    # 1.77 ticks left, and 1 − x^0.25 = −expm1(0.25·log1p(−left/5000)).  float32 rounds the local
    # tick 4998.23 by up to 2.4e-4: computed from it, the tail would be off by 1e-4 relative.
    pytest.importorskip("keras" if backend == "keras" else "jax")
    expr = "2 * (cosine(1, 1%, min=0.5) >> cooldown(50 epochs, power=0.25))"
    options = {"steps_per_epoch": 100, "total": 77}
    ticks = np.array([4990.0, 4998.0, 4999.0, 5000.0])
    left = 5000.77 - ticks
    want = 2 * 0.5 * (-np.expm1(0.25 * np.log1p(-left / 5000)))
    np.testing.assert_allclose(lrdsl.curve(expr, ticks, **options), want, rtol=1e-12)
    module = importlib.import_module(f"lrdsl.{backend}")
    if backend == "keras":
        got = np.asarray(module.schedule(expr, **options)(ticks))
    else:
        import jax
        fn = jax.jit(module.schedule(expr, **options))
        got = np.array([float(fn(int(t))) for t in ticks])
    np.testing.assert_allclose(got, want, rtol=4e-6)


def test_a_segment_handed_its_ticks_left_holds_its_end_past_it():
    # the cool-down starts at 27 (0.077 + the stretched 26.923) and ends at total = 77: from there
    # on it is P·end = 0, never the −0.2 that an unclamped d − t past the end would give
    expr, options = "warmup(0.1%) >> 10 >> cooldown(0.5ep)", {"steps_per_epoch": 100, "total": 77}
    ticks = np.array([76.0, 77.0, 78.0, 1000.0])
    want = [10 * 1 / 50, 0.0, 0.0, 0.0]  # P·(1 − x), one tick left of 50 at tick 76
    np.testing.assert_allclose(lrdsl.curve(expr, ticks, **options), want, rtol=1e-12, atol=0)
    assert [lrdsl.plan(expr, **options).value_at(t) for t in ticks[1:]] == [0.0] * 3


def test_float32_refuses_a_divisor_whose_reciprocal_flushes():
    # XLA on CPU divides by a constant as a·(1/b): 1/1e38 = 1e-38 is below float32's smallest
    # normal number, so optax in float32 gave 0 where the value is 9.7e-38 (the fuzz sample)
    complaint = lrdsl.plan("onecycle(10, 100, final_div=10, anneal=linear) / 1e38").float32_complaint
    assert complaint is not None and "reciprocal" in complaint
    assert lrdsl.plan("onecycle(10, 100) / 1e37").float32_complaint is None


def test_float32_refuses_a_slice_length_or_repeat_period_beyond_its_range():
    # the slice's length 1e308 − 50 ticks is inf in float32: the repeat's position became NaN
    expr = "repeat((rsqrt(10) * invtime(3e-4, 0.99999, staircase=true, power=1e-6))[5ep:1e308])"
    complaint = lrdsl.plan(expr, steps_per_epoch=10, total=1000).float32_complaint
    assert complaint is not None and "does not fit float32" in complaint
    assert lrdsl.plan("repeat(cosine(1, 10)[:1e30])").float32_complaint is None


def test_float32_refuses_a_period_whose_multiples_it_cannot_hold():
    # 3M tokens at 4096 a step is a period of 46875/64 ticks: a float32 number, but q·p at tick
    # ~10⁶ needs 26 bits, so the place in the period was off by 0.016 tick (6e-5 of a warm-up)
    expr = "repeat((warmup(1e5st) >> 1e-7)[:3Mtok])"
    complaint = lrdsl.plan(expr, tokens_per_step=4096).float32_complaint
    assert complaint is not None and "multiples" in complaint
    # 1.5 = 3/2: its multiples are float32 numbers to tick 10⁶ and past it
    assert lrdsl.plan("repeat(cosine(1, 1.5))").float32_complaint is None
    assert lrdsl.plan("repeat((warmup(1e5st) >> 1e-7)[:8192tok])", tokens_per_step=4096).float32_complaint is None


def test_jax_float64_refuses_a_duration_whose_shares_it_flushes():
    # t/d at tick 1 of d = 1.8e308 ticks is 5.6e-309, subnormal: XLA flushed it to 0 and a
    # power of 1e-6 turned that into 0.005 where the reference is 0.4999 (the final fuzz sweep)
    expr = "warmup(1.7976931348623157e308st, start=0.01, shape=cos, power=1e-6) >> cosine(0.5, 1e6st)"
    complaint = lrdsl.plan(expr).subnormal_complaint
    assert complaint is not None and "power=1e-06 < 1" in complaint
    assert lrdsl.plan("warmup(1e300, power=1e-6) >> 0.5").subnormal_complaint is None
    assert lrdsl.plan("warmup(1e308) >> 0.5").subnormal_complaint is None  # a flushed x stays x
