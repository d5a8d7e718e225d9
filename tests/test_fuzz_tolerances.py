"""Two readings of LANGUAGE.md §5 the fuzz driver found it needs, and the float32 fix beside them.

docs/language.md ("What LANGUAGE.md leaves open"): a backend that flushes subnormal results to 0
agrees within the smallest normal number of its dtype; a duration or a segment's start that
float32 does not hold keeps d − t exact near its end.  Expected values are formulas written
here, never lrdsl's output.
"""

import math
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import lrdsl  # noqa: E402

from tests import fuzz  # noqa: E402

TINY64 = sys.float_info.min  # 2.2250738585072014e-308
TINY32 = 1.1754943508222875e-38


# --- a backend that flushes subnormal results ------------------------------------------------

def test_xla_on_cpu_flushes_subnormal_results_in_float64():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    with jax.enable_x64(True):
        half = jax.jit(lambda x: x * 0.5)(jnp.asarray(TINY64, jnp.float64))
        assert float(half) == 0.0  # exact arithmetic: 1.1125369292536007e-308, a subnormal
    assert float(half) != TINY64 * 0.5  # numpy and torch keep it


def test_the_flush_floor_is_the_dtypes_smallest_normal_and_only_for_flushing_backends():
    assert fuzz._mismatch([0.0], [TINY64 / 2], fuzz.XLA64) is None
    assert fuzz._mismatch([0.0], [TINY64 / 2], fuzz.F64) is not None  # torch keeps subnormals
    assert fuzz._mismatch([0.0], [3 * TINY64], fuzz.XLA64) is not None  # a normal value: strict
    assert fuzz._mismatch([0.0], [5e-39], fuzz.F32) is None
    assert fuzz._mismatch([0.0], [2e-38], fuzz.F32) is not None
    assert fuzz._mismatch([0.5 * (1 + 1e-11)], [0.5], fuzz.XLA64) is not None  # nothing else widens
    # a flushed share in [0, 1] scaled by a schedule whose largest value is 10
    assert fuzz._mismatch([0.0], [5.6e-308], fuzz.XLA64, largest=10) is None
    assert fuzz._mismatch([0.0], [5.6e-307], fuzz.XLA64, largest=10) is not None
    assert fuzz._mismatch([0.0], [4e-308], fuzz.XLA64, terms=2) is None  # two pieces dropped
    assert fuzz._mismatch([0.0], [5e-308], fuzz.XLA64, terms=2) is not None


def test_flushed_terms_counts_the_pieces_a_formula_may_drop():
    def terms(text):
        return fuzz.flushed_terms(lrdsl.plan(text).schedule)
    assert terms("cosine(0.1, 10)") == 4
    assert terms("cosine(0.1, 10) + linear(0, 1, 5)") == 8
    assert terms("2 * cosine(0.1, 10)") == 8  # the constant is a call too
    assert terms("warmup(5) >> cosine(0.1, 10, min=0.01) >> cooldown(3)") == 4
    assert terms("max(cosine(0.1, 10), exp(0.1, 0.9))[2:]") == 4


@pytest.mark.parametrize("expr, options, exact", [
    ("invtime(2.2250738585072014e-308, 1e-6)", {"steps_per_epoch": 100, "total": 77},
     lambda t: TINY64 / (1 + 1e-6 * t)),
    ("exp(2.2250738585072014e-308, staircase=false, d=9.999999999st, rate=0.5)",
     {"steps_per_epoch": 1, "total": 10**6}, lambda t: TINY64 * 0.5 ** min(t, 9.999999999)),
    # t/d is subnormal before the ×10: the floor scales by the schedule's largest value, 10
    ("warmup(1.7976931348623157e308, start=0) >> const(10)", {"steps_per_epoch": 1, "total": 10**6},
     lambda t: 10 * (t / 1.7976931348623157e308)),
    # both terms of the ramp are subnormal at tick 7, their sum 2.27e-308 is not
    ("warmup(10.000000001st, start=0.5) >> 1.2 * (2.2250738585072014e-308)",
     {"steps_per_epoch": 1, "total": 10**6},
     lambda t: 1.2 * TINY64 * (0.5 + 0.5 * min(t, 10.000000001) / 10.000000001)),
])
def test_jax_float64_agrees_within_the_smallest_normal_where_values_turn_subnormal(expr, options,
                                                                                   exact):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import lrdsl.optax
    ticks = np.arange(0, 40)
    want = [exact(int(t)) for t in ticks]
    with jax.enable_x64(True):
        schedule = jax.vmap(lrdsl.optax.schedule(expr, **options))
        got = jax.jit(schedule)(jnp.asarray(ticks, jnp.int32))
    got = np.asarray(got, np.float64)
    schedule = lrdsl.plan(expr, **options).schedule
    largest, terms = schedule.range[1], fuzz.flushed_terms(schedule)
    assert np.all(np.abs(got - want) <= np.maximum(1e-12 * np.abs(want),
                                                   terms * TINY64 * max(1.0, largest))), expr
    assert fuzz._mismatch(got, want, fuzz.XLA64, largest=largest, terms=terms) is None
    assert fuzz._mismatch(got, want, fuzz.F64, largest=largest, terms=terms) is not None
    # the reference keeps the subnormals: within §5's float64 tolerance as written
    ref = lrdsl.curve(expr, ticks, **options)
    assert np.all(np.abs(ref - want) <= 1e-12 * np.abs(want)), expr


# --- float32 near the end of a duration float32 does not hold ---------------------------------

def _float32_backends(expr, options, ticks):
    """name -> float32 values at ``ticks``: Keras and jitted optax (whichever are installed)."""
    out = {}
    try:
        import keras
        import lrdsl.keras
        out["keras"] = keras.ops.convert_to_numpy(lrdsl.keras.schedule(expr, **options)(
            np.asarray(ticks, np.float64)))
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        import lrdsl.optax
        out["optax32"] = jax.jit(jax.vmap(lrdsl.optax.schedule(expr, **options)))(
            jnp.asarray(ticks, jnp.int32))
    except ImportError:
        pass
    if not out:
        pytest.skip("neither keras nor jax is installed")
    return {name: np.asarray(values, np.float64) for name, values in out.items()}


def _within_float32(got, want, peak, what):
    want = np.asarray(want, np.float64)
    bad = ~(np.abs(got - want) <= np.maximum(4e-6 * np.abs(want), 1e-12 * peak))
    assert not bad.any(), f"{what}: got {got[bad]}, want {want[bad]} at {np.flatnonzero(bad)}"


@pytest.mark.parametrize("total", [77, 78, 79, 83, 1001])
def test_a_ramp_ends_to_float32_precision_when_float32_does_not_hold_its_duration(total):
    d = 0.99 * total  # 76.23 rounds up in float32, 77.22 down: both sides of the tail
    ticks = np.arange(max(0, total - 12), total + 3)
    options = {"steps_per_epoch": 100, "total": total}
    for expr, exact in [
        ("poly(0.5, 99%)", lambda t: 0.5 * max(d - t, 0.0) / d),
        ("cosine(2, 99%)", lambda t: 2 * math.sin(math.pi / 2 * max(d - t, 0.0) / d) ** 2),
        ("anneal(1, 0.001, 99%, shape=linear)", lambda t: (max(d - t, 0) + 0.001 * min(t, d)) / d),
    ]:
        want = [exact(int(t)) for t in ticks]
        for name, got in _float32_backends(expr, options, ticks).items():
            assert np.all(got >= 0), (expr, name)
            _within_float32(got, want, 2, f"{expr} on {name}, total={total}")
            end = float(np.float32(exact(d)))  # exactly the end value from d on
            assert got[ticks >= d].tolist() == [end] * int((ticks >= d).sum()), (expr, name)


def test_a_segment_starting_between_float32_numbers_keeps_its_local_time():
    # warmup(99%) with total=77 ends at 76.23; the cosine after it starts there
    options = {"steps_per_epoch": 100, "total": 77}
    start = 0.99 * 77
    ticks = np.arange(70, 85)
    want = [10 * t / start if t < start else
            10 * (1 + math.cos(math.pi * min(t - start, 5) / 5)) / 2 for t in ticks]
    for name, got in _float32_backends("warmup(99%) >> cosine(10, 5st)", options, ticks).items():
        _within_float32(got, want, 10, name)


# --- a slice's start that float32 rounds onto the next whole tick -----------------------------

@pytest.mark.parametrize("expr, options", [
    ("sgdr(3e-4, 50)[9.999999999 epochs:]", {"steps_per_epoch": 100, "total": 77}),
    ("(onecycle(0.1, 3 epochs, start=2) >> poly(0.5, 1st))[2.999999999 epochs:]",
     {"steps_per_epoch": 10, "total": 1000}),
    ("step(1, 10)[7.9999999:20]", {}),  # 7.9999999 + 2 = 9.9999999: float32 rounds it to 10
])
def test_float32_refuses_a_slice_start_it_rounds_onto_the_next_tick(expr, options):
    # exact arithmetic: sgdr at 999.9999999 is a period's last instant (≈ 3e-21), float32's
    # 1000.0 is the next restart (3e-4)
    complaint = lrdsl.plan(expr, **options).float32_complaint
    assert complaint and "slice's start" in complaint, complaint


@pytest.mark.parametrize("expr, options, exact", [
    ("cosine(0.1, 100)[10%:]", {"total": 77},  # starts at 7.7, far from a whole tick
     lambda t: 0.1 * (1 + math.cos(math.pi * min(t + 7.7, 100) / 100)) / 2),
    ("step(1, 10)[7.9999:10]", {}, lambda t: 0.1 ** ((min(t, 2.0001) + 7.9999) // 10)),
])
def test_float32_takes_a_slice_start_it_keeps_below_the_next_tick(expr, options, exact):
    assert lrdsl.plan(expr, **options).float32_complaint is None
    ticks = np.arange(0, 40)
    for name, got in _float32_backends(expr, options, ticks).items():
        _within_float32(got, [exact(int(t)) for t in ticks], 0.1, name)


def test_an_unbounded_cancellation_does_not_make_the_float64_bound_nan():
    # a float64 backend flushes nothing (floor 0): 0 · inf must not turn the bound into NaN,
    # which fails every comparison (fuzz seed 11, case 960: equal subnormal values "off")
    assert fuzz._mismatch([5.562684646268e-310], [5.562684646268e-310], fuzz.F64, cancel=math.inf) is None
