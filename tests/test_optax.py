"""JAX / optax backend: every core case against lrdsl.curve (float32 and float64), the plateau
against PlateauState, a jitted training loop, parity with optax's own schedules, Keras on JAX.

``jax_enable_x64`` is process-global; the float64 tests turn it on with the ``jax.enable_x64``
context manager, which restores it on exit (checked by ``test_x64_is_restored``).
"""

import doctest
import functools
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

import lrdsl  # noqa: E402
import lrdsl.optax  # noqa: E402
from cases import LONG, VALUE_CASES, long_ticks, value_params  # noqa: E402
from lrdsl.language.plateau import PlateauRule, PlateauState  # noqa: E402

from tolerances import F32, F64, PRECISIONS, assert_close  # noqa: E402


def split_options(case):
    options = dict(case.get("options", {}))
    metrics = options.pop("metrics", None)
    every = options.pop("report_every", None) or options.get("steps_per_epoch") or 1
    return options, metrics, every


def report_ticks(every, reports: int) -> list[int]:
    """The update that carries report i: the last before tick (i+1)·every, where it acts."""
    return [int(np.ceil((i + 1) * every)) - 1 for i in range(reports)]


def run_transform(expr, n: int, reports: dict[int, float], **units):
    """Drive ``transform`` for n updates of a unit gradient in one jitted scan; report
    ``reports[tick]`` with that tick's update.  Returns the LR of each update and the plateau
    state after each (None without a plateau)."""
    tx = lrdsl.optax.transform(expr, **units)
    grad = jnp.ones([], jnp.result_type(float))
    flags = np.zeros(n, bool)
    values = np.zeros(n)
    for tick, value in reports.items():
        flags[tick], values[tick] = True, value

    def body(state, xs):
        report, value = xs
        updates, state = jax.lax.cond(report, lambda s: tx.update(grad, s, value=value),
                                      lambda s: tx.update(grad, s), state)
        return state, (-updates, state.plateau)

    @jax.jit
    def run(state):
        return jax.lax.scan(body, state, (jnp.asarray(flags), jnp.asarray(values, grad.dtype)))[1]

    lrs, plateaus = run(tx.init(grad))
    return np.asarray(lrs, np.float64), plateaus


def _counts(case):
    """The case's ticks as int32 counts (what optax passes), or floats if one is fractional."""
    ticks = np.asarray(case["ticks"], np.float64)
    return jnp.asarray(ticks, jnp.int32 if np.all(ticks == np.floor(ticks)) else jnp.result_type(float))


@functools.lru_cache(maxsize=None)
def schedule_values(x64: bool) -> dict:
    """Every time-schedule case of the table through ``schedule``, in one jitted program (one
    compilation instead of one per case): case index -> values, or the error it raised."""
    with jax.enable_x64(x64):
        schedules, results = {}, {}
        for index, case in enumerate(VALUE_CASES):
            options = split_options(case)[0]
            try:
                if lrdsl.plan(case["expr"], **options).plateau is not None:
                    continue
                schedules[index] = jax.vmap(lrdsl.optax.schedule(case["expr"], **options))
                jax.eval_shape(schedules[index], _counts(case))  # traces: a failure stays this case's
            except Exception as error:  # noqa: BLE001 — re-raised by the case's own test
                results[index] = error
                schedules.pop(index, None)
        keys = list(schedules)
        values = jax.jit(lambda counts: [schedules[k](c) for k, c in zip(keys, counts)])(
            [_counts(VALUE_CASES[k]) for k in keys])
        results.update({k: np.asarray(v, np.float64) for k, v in zip(keys, values)})
    return results


def evaluate_case(case, x64: bool):
    """The case's ticks through ``schedule`` (jitted, int32 counts) or, for ``| plateau``,
    through ``transform`` with the case's reports; and what ``lrdsl.curve`` says."""
    index = next(i for i, c in enumerate(VALUE_CASES) if c is case)
    if lrdsl.plan(case["expr"], **split_options(case)[0]).plateau is None:
        got = schedule_values(x64)[index]
        if isinstance(got, Exception):
            raise got
        return got, _curve(case), None
    return _transformed(index, x64)


def _curve(case):
    options, metrics, every = split_options(case)
    return lrdsl.curve(case["expr"], case["ticks"], metrics=metrics,
                       report_every=every if metrics else None, **options)


@functools.lru_cache(maxsize=None)
def _transformed(index: int, x64: bool):
    """A ``| plateau`` case through ``transform`` (shared by the two tests that read it)."""
    case = VALUE_CASES[index]
    options, metrics, every = split_options(case)
    ticks = np.asarray(case["ticks"], np.float64)
    series = list(lrdsl.plan(case["expr"], **options).plateau.monitored(metrics)) if metrics else []
    at = report_ticks(every, len(series))
    n = int(max(ticks.max(initial=0), max(at, default=0))) + 1
    with jax.enable_x64(x64):
        lrs, plateaus = run_transform(case["expr"], n, dict(zip(at, series)), **options)
    return lrs[ticks.astype(int)], _curve(case), (at, plateaus, series)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", value_params())
def test_every_core_case_equals_curve(case, precision):
    x64, tolerance = PRECISIONS[precision]
    got, want, _ = evaluate_case(case, x64)
    assert_close(got, want, tolerance, case["expr"])


# LANGUAGE.md §5 holds "at every tick up to 10⁶": the long-horizon cases shared with tests/test_keras.py
LONG_TICKS = long_ticks()


@functools.lru_cache(maxsize=None)
def long_values(x64: bool) -> list:
    """Every LONG case at LONG_TICKS (int32 counts) in one jitted program."""
    with jax.enable_x64(x64):
        schedules = [jax.vmap(lrdsl.optax.schedule(expr, **units)) for expr, units in LONG]
        counts = jnp.asarray(LONG_TICKS, jnp.int32)
        return [np.asarray(v, np.float64) for v in jax.jit(lambda c: [s(c) for s in schedules])(counts)]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("index", range(len(LONG)), ids=[e for e, _ in LONG])
def test_a_million_ticks_stay_within_tolerance(index, precision):
    x64, tolerance = PRECISIONS[precision]
    expr, units = LONG[index]
    got = long_values(x64)[index]
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    assert_close(got, lrdsl.curve(expr, LONG_TICKS, **units), tolerance, expr)


def test_every_primitive_has_a_long_horizon_case():
    written = " ".join(expr for expr, _ in LONG)
    missing = [name for name, p in lrdsl.primitives().items()
               if p.value is not None and f"{name}(" not in written]
    assert not missing or missing == ["const"], missing


PLATEAU_CASES = [c for c in VALUE_CASES if c.get("options", {}).get("metrics")]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["expr"]) for c in PLATEAU_CASES])
def test_plateau_state_after_each_report_is_plateau_state(case):
    _, _, (at, plateaus, series) = evaluate_case(case, True)
    rule = lrdsl.plan(case["expr"], **split_options(case)[0]).plateau
    reference = PlateauState(rule)
    for tick, value in zip(at, series):
        reference.report(value)
        mine = {name: float(getattr(plateaus, name)[tick]) for name in PlateauState(rule).state_dict()}
        assert mine == reference.state_dict(), (tick, value)


def test_the_case_table_has_plateau_cases():
    assert len(PLATEAU_CASES) >= 5


RULES = [dict(mode=mode, threshold_mode=tm, threshold=th, patience=p, cooldown=c)
         for mode in ("min", "max") for tm in ("rel", "abs") for th in (0.0, 0.05)
         for p, c in ((0, 0), (0, 2), (2, 1))]
RULES += [dict(mode=mode, threshold_mode=tm, threshold=0.02, patience=p, cooldown=c, atol=0.03, best=best)
          for mode in ("min", "max") for tm in ("rel", "abs") for best in ("improvement", "running")
          for p, c in ((0, 1), (2, 0))]


@pytest.mark.parametrize("options", RULES, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_plateau_report_is_plateau_state_report_value(options):
    rule = PlateauRule("m", factor=0.5, **options)
    rng = np.random.RandomState(len(RULES) + RULES.index(options))
    # a noisy, slowly improving series with ties and NaNs
    series = np.round(np.cumsum(rng.randn(60) * 0.05 - 0.01), 2) * (1 if rule.minimize else -1)
    series[rng.rand(60) < 0.1] = np.nan
    with jax.enable_x64(True):
        def report(state, value):
            state = lrdsl.optax.plateau_report(rule, state, value)
            return state, state
        _, states = jax.jit(lambda v: jax.lax.scan(report, lrdsl.optax.plateau_init(rule), v))(series)
    reference = PlateauState(rule)
    for i, value in enumerate(series):
        reference.report_value(float(value))
        assert {k: float(v[i]) for k, v in states._asdict().items()} == reference.state_dict(), i
    assert reference.scale < 1  # the series did trigger reductions


def test_x64_is_restored():
    with jax.enable_x64(True):
        assert jnp.asarray(1.0).dtype == jnp.float64
    assert jnp.asarray(1.0).dtype == jnp.float32


EXPR = "warmup(3) >> cosine(0.1, 20, min=0.001) >> exp(0.001, 0.9, every=2, staircase=true)"


DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_counts_of_any_integer_dtype(precision):
    x64, tolerance = PRECISIONS[precision]
    want = lrdsl.curve(EXPR, 40)
    dtypes = [d for d in DTYPES if x64 or np.dtype(d).itemsize < 8]
    lr = jax.vmap(lrdsl.optax.schedule(EXPR))  # per scalar count, as optax calls it
    with jax.enable_x64(x64):
        counts = [jnp.arange(40, dtype=d) for d in dtypes]
        assert [c.dtype for c in counts] == dtypes
        values = jax.jit(lambda cs: [lr(c) for c in cs])(counts)
    for dtype, got in zip(dtypes, values):
        assert got.dtype == (jnp.float64 if x64 else jnp.float32)
        assert_close(got, want, tolerance, dtype)


def test_works_as_an_optax_schedule_and_injected_hyperparameter():
    expr = "warmup(2) >> cosine(0.5, 8)"
    want = lrdsl.curve(expr, 12)
    sgd = optax.sgd(lrdsl.optax.schedule(expr))
    state = sgd.init(jnp.zeros([]))
    steps = []
    for _ in range(12):
        updates, state = jax.jit(sgd.update)(jnp.ones([]), state)
        steps.append(-float(updates))
    assert_close(steps, want, F32, "sgd")
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=lrdsl.optax.schedule(expr))
    state = injected.init(jnp.zeros(3))
    seen = []
    for _ in range(12):
        _, state = jax.jit(injected.update)(jnp.ones(3), state, jnp.zeros(3))
        seen.append(float(state.hyperparams["learning_rate"]))
    # inject_hyperparams records the LR of the update it just made
    assert_close(seen, want, F32, "inject_hyperparams")


def test_transform_after_a_unit_optimizer_is_the_optimizer_with_that_lr():
    expr = "warmup(5) >> cosine(0.01, 45)"
    ours = optax.chain(optax.scale_by_adam(), lrdsl.optax.transform(expr))
    theirs = optax.adam(lrdsl.optax.schedule(expr))
    params = {"w": jnp.linspace(-1, 1, 5), "b": jnp.ones([])}
    grads = jax.tree.map(lambda p: jnp.sin(3 * p) + 0.1, params)
    s1, s2 = ours.init(params), theirs.init(params)
    for _ in range(60):
        u1, s1 = jax.jit(ours.update)(grads, s1, params)
        u2, s2 = jax.jit(theirs.update)(grads, s2, params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_a_report_without_a_plateau_is_ignored_and_no_value_is_no_report():
    tx = lrdsl.optax.transform("0.1")
    state = tx.init(jnp.zeros(2))
    updates, state = tx.update(jnp.ones(2), state, value=3.0)
    np.testing.assert_allclose(updates, [-0.1, -0.1])
    assert state.plateau is None and int(state.count) == 1
    tx = lrdsl.optax.transform("0.1 | plateau(loss, 0.5, patience=0)")
    state = tx.init(jnp.zeros(2))
    for _ in range(5):
        _, state = tx.update(jnp.ones(2), state)
    assert float(state.plateau.scale) == 1.0 and int(state.plateau.bad) == 0


def test_a_report_acts_from_the_next_update_on():
    tx = lrdsl.optax.transform("0.1 | plateau(loss, 0.5, patience=0)")
    state = tx.init(jnp.zeros([]))
    lrs = []
    for tick in range(4):
        updates, state = tx.update(jnp.ones([]), state, **({"value": 1.0} if tick in (0, 1) else {}))
        lrs.append(-float(updates))
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.05], rtol=1e-7)
    assert float(lrdsl.optax.learning_rate("0.1 | plateau(loss, 0.5, patience=0)", state)) == \
        pytest.approx(0.05)


def test_report_flag_decides_at_run_time():
    expr = "0.1 | plateau(loss, 0.5, patience=0)"
    tx = lrdsl.optax.transform(expr)

    def body(state, flag):
        updates, state = tx.update(jnp.ones([]), state, value=1.0, report=flag)
        return state, -updates

    flags = jnp.asarray([True, False, True, False, False, True, False])
    _, lrs = jax.jit(lambda s: jax.lax.scan(body, s, flags))(tx.init(jnp.zeros([])))
    # reports 1, 1, 1 at ticks 0, 2, 5: the first improves, each later one halves the scale
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025], rtol=1e-7)
    _, state = tx.update(jnp.ones([]), tx.init(jnp.zeros([])), value=1.0, report=False)
    assert float(state.plateau.best) == np.inf


def test_the_count_saturates_at_int32_max():
    tx = lrdsl.optax.transform("exp(0.1, k=1e-12)")
    state = tx.init(jnp.zeros([]))._replace(count=jnp.asarray(2**31 - 1, jnp.int32))
    _, state = tx.update(jnp.ones([]), state)
    assert int(state.count) == 2**31 - 1


# --- errors --------------------------------------------------------------------------------

def test_a_plateau_is_refused_by_schedule_with_a_pointer_to_transform():
    with pytest.raises(lrdsl.LrdslError, match=r"use lrdsl.optax.transform\(expr\)"):
        lrdsl.optax.schedule("cosine(0.1, 10) | plateau(val_loss)")


@pytest.mark.parametrize("make", [lrdsl.optax.schedule, lrdsl.optax.transform])
def test_bad_expressions_and_units_are_lrdsl_errors(make):
    with pytest.raises(lrdsl.LrdslSyntaxError):
        make("cosine(0.1,, 10)")
    with pytest.raises(lrdsl.UnitError):
        make("cosine(0.1, 50%)")
    with pytest.raises(lrdsl.LrdslError, match="steps_per_epoch must be a positive number"):
        make("cosine(0.1, 5ep)", steps_per_epoch=[1])


@pytest.mark.parametrize("value, match", [("high", "not a number"), ({"loss": 1.0}, "holds only: loss"),
                                          (jnp.ones(3), "one real number"), (1j, "one real number")])
def test_bad_reports_are_metric_errors(value, match):
    tx = lrdsl.optax.transform("0.1 | plateau(val_loss)")
    state = tx.init(jnp.zeros([]))
    with pytest.raises(lrdsl.MetricError, match=match):
        tx.update(jnp.ones([]), state, value=value)


def test_a_report_may_be_a_mapping_holding_the_monitor():
    tx = lrdsl.optax.transform("0.1 | plateau(val_loss)")
    update = jax.jit(lambda s, metrics: tx.update(jnp.ones([]), s, value=metrics))
    _, state = update(tx.init(jnp.zeros([])), {"val_loss": 2.0, "loss": 1.0})
    assert float(state.plateau.best) == 2.0


def test_learning_rate_needs_the_transform_state():
    tx = optax.chain(optax.scale_by_adam(), lrdsl.optax.transform("0.1"))
    state = tx.init(jnp.zeros(2))
    with pytest.raises(lrdsl.LrdslError, match=r"needs the state of lrdsl.optax.transform .*got tuple"):
        lrdsl.optax.learning_rate("0.1", state)
    assert float(lrdsl.optax.learning_rate("0.1", state[1])) == pytest.approx(0.1)


@pytest.mark.parametrize("expr", ["cosine(1e-50, 10)", "1e38 * 10", "step(0.1, 1e-46)",
                                  "quantize(step(1, 3.6, factor=0.5), 1.2)",
                                  "quantize(exp(0.1, 0.99999), 7.5)", "quantize(cosine(1, 100), 1e308)"])
def test_numbers_float32_cannot_hold_are_refused_in_float32_only(expr):
    sched = lrdsl.optax.schedule(expr)
    with pytest.raises(lrdsl.LrdslError, match="float32 unless jax_enable_x64"):
        jax.jit(sched)(jnp.int32(3))
    with pytest.raises(lrdsl.LrdslError, match="float32"):
        lrdsl.optax.transform(expr).update(jnp.ones([]), lrdsl.optax.transform(expr).init(None))
    with jax.enable_x64(True):
        assert_close(jax.jit(sched)(jnp.int32(3)), lrdsl.curve(expr, [3]), F64, expr)


EXTREME_TICKS = [0, 1, 2, 3, 50, 10**6]
#: extreme durations next to extreme values, and the value each formula gives (Python floats)
EXTREMES = {
    "cosine(0.1, 1e308)": lambda t: 0.1 * (1 + math.cos(math.pi * t / 1e308)) / 2,
    "cosine(1e300, 1e308, min=1e-300)": lambda t: 1e300 * (1 + math.cos(math.pi * t / 1e308)) / 2,
    "step(0.1, 1e308)": lambda t: 0.1,
    "linear(1e-300, 1, 1e300)": lambda t: 1e-300 * (1 - t / 1e300) + t / 1e300,
    "linear(0, 1e300, 1e-10)": lambda t: 1e300 * min(t, 1e-10) / 1e-10,
    "linear(0, 1e300, 1e-200)": lambda t: 1e300 * min(t, 1e-200) / 1e-200,
    "warmup(1e-10) >> 1e300": lambda t: 1e300 * min(t, 1e-10) / 1e-10,
    "exp(1e300, 0.5, every=1e-200)": lambda t: 1e300 * 0.5 ** (t / 1e-200),
    # a quotient of schedules whose divisor is a constant: XLA folded 1.7e308·(1/0.9) into inf
    "1.7976931348623157e308 * (linear(0.9, 0.45, 10) / 0.9)":
        lambda t: 1.7976931348623157e308 * ((0.9 - 0.045 * min(t, 10)) / 0.9),
    "1e300 * (linear(1, 0.5, 10) / (0.5 + linear(0.5, 1, 10)))":
        lambda t: 1e300 * ((1 - 0.05 * min(t, 10)) / (1 + 0.05 * min(t, 10))),
}


@pytest.mark.parametrize("expr", sorted(EXTREMES))
def test_extreme_durations_in_float64_equal_the_formula(expr):
    """XLA turns t/d into t·(1/d) and folds constants together: 1/1e308 is flushed to 0 and
    1e300·(1/1e-10) overflows, unless the division is kept out of its reach."""
    want = [EXTREMES[expr](float(t)) for t in EXTREME_TICKS]
    with jax.enable_x64(True):
        sched = lrdsl.optax.schedule(expr)
        counts = jnp.asarray(EXTREME_TICKS, jnp.int64)
        assert_close(jax.jit(sched)(counts), want, F64, expr)
        assert_close(sched(counts), want, F64, expr + " (not jitted)")


@pytest.mark.parametrize("expr", ["poly(5e-324, 100)", "linear(1e-310, 1, 10)", "cosine(0.1, 10, min=1e-310)"])
def test_subnormal_numbers_are_refused_in_float64(expr):
    """XLA on CPU flushes numbers below 2.2e-308 to 0 (poly(5e-324, 100) came out 0 throughout,
    where the reference is 5e-324): refused, as float32 refuses what it cannot hold."""
    with jax.enable_x64(True):
        with pytest.raises(lrdsl.LrdslError, match="below float64's smallest normal number, which "
                                                   "XLA flushes to 0"):
            jax.jit(lrdsl.optax.schedule(expr))(jnp.int32(3))
    with pytest.raises(lrdsl.LrdslError, match="float32"):
        jax.jit(lrdsl.optax.schedule(expr))(jnp.int32(3))
    assert lrdsl.plan(expr).subnormal_complaint
    assert lrdsl.plan("exp(1e-300, 0.5)").subnormal_complaint is None  # a tail becomes subnormal
    with jax.enable_x64(True):  # a share t/1e308 = 1e-308 may be flushed: < 2.2e-308 off, accepted
        got = lrdsl.optax.schedule("linear(1e-300, 1, 1e308)")(jnp.asarray([1, 2], jnp.int64))
    want = [1e-300 * (1 - t / 1e308) + t / 1e308 for t in (1.0, 2.0)]
    assert np.all(np.abs(np.asarray(got) - want) < 2.2250738585072014e-308)


def test_docstring_examples():
    result = doctest.testmod(lrdsl.optax, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --- a jitted training loop ---------------------------------------------------------------

LOOP_EXPR = "warmup(20) >> cosine(0.05, 180, min=0.001) | plateau(val_loss, 0.5, patience=1, threshold=0.02)"
EPOCHS, STEPS = 20, 10


def _problem():
    rng = np.random.RandomState(0)
    w_true = rng.randn(4).astype(np.float32)
    x = rng.randn(EPOCHS * STEPS, 16, 4).astype(np.float32)
    y = x @ w_true + 0.3 * rng.randn(EPOCHS * STEPS, 16).astype(np.float32)
    x_val = rng.randn(64, 4).astype(np.float32)
    y_val = x_val @ w_true + 0.3 * rng.randn(64).astype(np.float32)
    return (x.reshape(EPOCHS, STEPS, 16, 4), y.reshape(EPOCHS, STEPS, 16)), (x_val, y_val)


def _loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def _lr(state):
    """The LR of the next update, from the state of chain(scale_by_adam(), transform(...))."""
    return lrdsl.optax.learning_rate(LOOP_EXPR, state[1])


def _train(tx, params, state, batches, validation, report: bool, lr=_lr):
    """Epochs of STEPS updates in one jitted program (scan over epochs, scan over steps); the
    last update of each epoch carries the validation loss as its report (with ``report``)."""
    return _compiled(tx, report, lr)(params, state, batches, validation)


@functools.lru_cache(maxsize=None)
def _compiled(tx, report: bool, lr):
    def update(carry, batch, **value):
        params, state = carry
        grads = jax.grad(_loss)(params, *batch)
        updates, state = tx.update(grads, state, params, **value)
        return (optax.apply_updates(params, updates), state), lr(state)

    def epoch(carry, batches, validation):
        x, y = batches
        lr_before = lr(carry[1])
        carry, lrs = jax.lax.scan(update, carry, (x[:-1], y[:-1]))
        val_loss = _loss(carry[0], *validation)
        carry, _ = update(carry, (x[-1], y[-1]), **({"value": val_loss} if report else {}))
        # the LR each update of the epoch used: before it, then after each of the first STEPS-1
        return carry, (jnp.concatenate([lr_before[None], lrs]), val_loss)

    return jax.jit(lambda p, s, b, v: jax.lax.scan(functools.partial(epoch, validation=v), (p, s), b))


@pytest.fixture(scope="module")
def training_run():
    batches, validation = _problem()
    tx = optax.chain(optax.scale_by_adam(), lrdsl.optax.transform(LOOP_EXPR))
    params = {"w": jnp.zeros(4), "b": jnp.zeros([])}
    (final, state), (lrs, val_losses) = _train(tx, params, tx.init(params), batches, validation, True)
    return dict(batches=batches, validation=validation, tx=tx, params=params, final=final, state=state,
                lrs=np.asarray(lrs).reshape(-1), val_losses=np.asarray(val_losses, np.float64))


def test_a_jitted_training_loop_with_reports_follows_curve(training_run):
    run = training_run
    want = lrdsl.curve(LOOP_EXPR, EPOCHS * STEPS, metrics={"val_loss": run["val_losses"]},
                       report_every=STEPS)
    assert_close(run["lrs"], want, F32, "lr per update")
    assert int(run["state"][1].count) == EPOCHS * STEPS
    scale = float(run["state"][1].plateau.scale)
    assert scale < 1 and scale == PlateauRule.from_call(lrdsl.parse(LOOP_EXPR).options).scales(
        run["val_losses"].tolist())[-1]
    assert not np.allclose(want, lrdsl.curve(LOOP_EXPR, EPOCHS * STEPS), rtol=1e-3)  # it did act


def _no_lr(state):
    return jnp.zeros([])


def test_the_jitted_loop_trains_as_adam_with_the_curve_lrs(training_run):
    run = training_run
    want = lrdsl.curve(LOOP_EXPR, EPOCHS * STEPS, metrics={"val_loss": run["val_losses"]},
                       report_every=STEPS).astype(np.float32)
    reference = optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(lambda c: -jnp.asarray(want)[c]))
    (final, _), (_, val_losses) = _train(reference, run["params"], reference.init(run["params"]),
                                         run["batches"], run["validation"], False, lr=_no_lr)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(run["final"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(val_losses, run["val_losses"], rtol=1e-4)


def test_the_state_survives_a_host_round_trip_mid_run(training_run):
    run = training_run
    half = EPOCHS // 2
    first = jax.tree.map(lambda a: a[:half], run["batches"])
    second = jax.tree.map(lambda a: a[half:], run["batches"])
    tx = run["tx"]
    (params, state), _ = _train(tx, run["params"], tx.init(run["params"]), first, run["validation"], True)
    params, state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), (params, state))  # a checkpoint
    (final, state), (lrs, _) = _train(tx, params, state, second, run["validation"], True)
    np.testing.assert_allclose(np.asarray(lrs).reshape(-1), run["lrs"][half * STEPS:], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(run["final"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# --- parity with optax's own schedules ------------------------------------------------------

def _sgdr(*kwargs):
    return optax.sgdr_schedule([dict(k) for k in kwargs])


NATIVE = [
    # warmup_cosine_decay_schedule: a linear warm-up over warmup_steps, then a cosine over
    # decay_steps − warmup_steps (decay_steps counts the warm-up)
    ("warmup(10) >> cosine(0.1, 90, min=0.001)",
     lambda: optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 100, end_value=0.001), 130),
    ("warmup(10, start=0.1) >> cosine(0.1, 90)",
     lambda: optax.warmup_cosine_decay_schedule(0.01, 0.1, 10, 100), 130),
    # sgdr_schedule: warmup_cosine_decay_schedules joined at the sums of decay_steps; the last
    # holds its end value
    ("repeat(warmup(5) >> cosine(0.1, 15), 3)",
     lambda: _sgdr(*[dict(init_value=0.0, peak_value=0.1, warmup_steps=5, decay_steps=20)] * 3), 80),
    ("repeat(cosine(0.1, 25), 4)",
     lambda: _sgdr(*[dict(init_value=0.1, peak_value=0.1, warmup_steps=0, decay_steps=25)] * 4), 120),
    ("sgdr(0.1, 10, mult=2, decay=0.5)",
     lambda: _sgdr(*[dict(init_value=0.1 * 0.5**i, peak_value=0.1 * 0.5**i, warmup_steps=0,
                          decay_steps=10 * 2**i) for i in range(3)]), 70),
    # exponential_decay: rate^((count − transition_begin)/transition_steps), end_value a floor
    ("exp(0.1, 0.5, every=10)", lambda: optax.exponential_decay(0.1, 10, 0.5), 80),
    ("exp(0.1, 0.5, every=10, staircase=true)",
     lambda: optax.exponential_decay(0.1, 10, 0.5, staircase=True), 80),
    # quantize gives any schedule optax's staircase
    ("quantize(exp(0.1, 0.5), 10)",
     lambda: optax.exponential_decay(0.1, 10, 0.5 ** 10, staircase=True), 80),
    ("const(0.1, d=15) >> max(exp(0.1, 0.8, every=4), 0.01)",
     lambda: optax.exponential_decay(0.1, 4, 0.8, transition_begin=15, end_value=0.01), 120),
    # piecewise_constant_schedule: scales multiply in from count ≥ boundary on
    ("multistep(0.1, [30, 60, 90])",
     lambda: optax.piecewise_constant_schedule(0.1, {30: 0.1, 60: 0.1, 90: 0.1}), 120),
    ("piecewise([10, 25], [0.1, 0.05, 0.01])",
     lambda: optax.piecewise_constant_schedule(0.1, {10: 0.5, 25: 0.2}), 40),
    # cosine_onecycle_schedule(T, peak, pct): cosine from peak/div up to peak over
    # k = int(pct·T) counts, then down to peak/(div·final_div) at count T: OneCycleLR's phases
    # (which end at pct·d − 1 and d − 1) with d = T + 1, pct = (k + 1)/(T + 1) — or two anneals
    ("onecycle(0.1, 100, pct=0.3)", lambda: optax.cosine_onecycle_schedule(99, 0.1, 0.3), 130),
    (f"onecycle(0.2, 201, pct={51 / 201!r}, div=10, final_div=100)",
     lambda: optax.cosine_onecycle_schedule(200, 0.2, 0.25, 10.0, 100.0), 230),
    ("anneal(0.004, 0.1, 29) >> anneal(0.1, 4e-07, 70)",
     lambda: optax.cosine_onecycle_schedule(99, 0.1, 0.3), 130),
]


@pytest.mark.parametrize("expr, make, n", NATIVE, ids=[e for e, _, _ in NATIVE])
def test_parity_with_optax_schedules(expr, make, n):
    with jax.enable_x64(True):
        counts = jnp.arange(n, dtype=jnp.int32)  # what optax passes
        # optax divides int32 counts in float32 even under x64: give it int64 ones
        theirs = np.asarray(jax.jit(jax.vmap(make()))(counts.astype(jnp.int64)), np.float64)
        ours = np.asarray(jax.jit(jax.vmap(lrdsl.optax.schedule(expr)))(counts), np.float64)
    assert_close(ours, theirs, F64, expr)
    assert_close(lrdsl.curve(expr, n), theirs, F64, expr)


# --- Keras 3 on the JAX backend ---------------------------------------------------------------

KERAS_ON_JAX = textwrap.dedent("""
    import os, tempfile, numpy as np
    assert os.environ["KERAS_BACKEND"] == "jax"
    import keras, lrdsl, lrdsl.keras
    assert keras.backend.backend() == "jax"
    F32 = dict(rtol=4e-6, atol=1e-12)
    x, y = np.ones((64, 1), "float32"), np.zeros((64, 1), "float32")

    class Used(keras.callbacks.Callback):
        # the LR each compiled train step really applied: the loss mean(y_pred) has gradient 1
        # for the kernel, so SGD moves a kernel reset to 0 before each batch to -lr
        def __init__(self):
            super().__init__(); self.lrs = []
        def kernel(self):
            return self.model.layers[-1].kernel
        def on_train_batch_begin(self, batch, logs=None):
            self.kernel().assign(np.zeros((1, 1), "float32"))
        def on_train_batch_end(self, batch, logs=None):
            self.lrs.append(-float(keras.ops.convert_to_numpy(self.kernel())[0, 0]))

    @keras.saving.register_keras_serializable()
    def mean_output(y_true, y_pred):
        return keras.ops.mean(y_pred)

    def model(lr):
        m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
        m.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss=mean_output)
        return m

    expr = "warmup(1ep) >> cosine(0.1, 3ep)"
    used = Used()
    model(lrdsl.keras.schedule(expr, steps_per_epoch=4)).fit(
        x, y, batch_size=16, epochs=5, verbose=0, shuffle=False, callbacks=[used])
    np.testing.assert_allclose(used.lrs, lrdsl.curve(expr, 20, steps_per_epoch=4), **F32)
    print("schedule ok")

    P = "warmup(2) >> cosine(0.1, 10) | plateau(loss, 0.5, patience=1, threshold=10)"
    for units, ticks in (({}, np.repeat(np.arange(6), 4)), ({"steps_per_epoch": 4}, np.arange(24))):
        used = Used()
        history = model(0.5).fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False,
                                 callbacks=[lrdsl.keras.callback(P, **units), used])
        want = lrdsl.curve(P, ticks, metrics={"loss": history.history["loss"]}, **units)
        assert (want < lrdsl.curve(P, ticks, **units)).any()  # the plateau acted
        np.testing.assert_allclose(used.lrs, want, **F32)
        np.testing.assert_allclose(history.history["learning_rate"], want[3::4], **F32)
        print("callback ok", units)

    # save after 3 epochs, load (plateau state and iteration count restored), continue
    path = os.path.join(tempfile.mkdtemp(), "m.keras")
    straight = Used()
    model(0.5).fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False,
                   callbacks=[lrdsl.keras.callback(P, steps_per_epoch=4), straight])
    first, resumed = model(0.5), Used()
    first.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False,
              callbacks=[lrdsl.keras.callback(P, steps_per_epoch=4), resumed])
    first.save(path)
    loaded = keras.models.load_model(path)
    loaded.fit(x, y, batch_size=16, epochs=6, initial_epoch=3, verbose=0, shuffle=False,
               callbacks=[lrdsl.keras.callback(P, steps_per_epoch=4), resumed])
    np.testing.assert_allclose(resumed.lrs, straight.lrs, **F32)
    print("resume ok")
""")


@pytest.mark.slow
def test_keras_schedule_and_callback_on_the_jax_backend():
    pytest.importorskip("keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", KERAS_ON_JAX], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.split("\n")[:-1] == [
        "schedule ok", "callback ok {}", "callback ok {'steps_per_epoch': 4}", "resume ok"]


@pytest.mark.slow
def test_lrdsl_train_backend_keras_on_jax(tmp_path):
    pytest.importorskip("keras")
    from test_train import BIN, rows

    # threshold 0.9: a report improves only on a tenth of the best, so the second one is bad
    expr = "warmup(1ep) >> cosine(0.1, 100%) | plateau(val_loss, 0.5, patience=0, threshold=0.9)"
    out = tmp_path / "run"
    # JAX_LOG_COMPILES: JAX logs each compilation (into Hydra's app.log): the model ran on JAX
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "JAX_LOG_COMPILES": "1"}
    result = subprocess.run([str(BIN / "lrdsl"), "train", "backend=keras", "backend.keras_backend=jax",
                             "schedule=plateau", f"schedule.expr={expr!r}".replace("'", '"'),
                             "trainer.epochs=3", "trainer.progress=false", f"hydra.run.dir={out}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Compiling jit(train_step)" in (out / "app.log").read_text()
    metrics = rows(out / "metrics.csv")
    reports = {"val_loss": [float(r["val_loss"]) for r in metrics]}
    lrs = [float(r["lr"]) for r in rows(out / "lr.csv")]
    want = lrdsl.curve(expr, 3, total=3, metrics=reports)
    assert_close(lrs, want, F32, "lr.csv")
    assert want[-1] < lrdsl.curve(expr, 3, total=3)[-1]  # the plateau acted


def test_a_bad_keras_backend_is_a_config_error():
    from lrdsl.train.keras_loop import _use_keras_backend

    with pytest.raises(lrdsl.LrdslError, match="backend.keras_backend='jaxx' is not one of tensorflow, jax, torch"):
        _use_keras_backend("jaxx")



def test_a_schedule_prints_its_expression():
    fn = lrdsl.optax.schedule("warmup(5) >> cosine(0.1, 100)")
    assert "lrdsl.optax.schedule('warmup(5) >> cosine(0.1,100)')" in repr(fn)
    assert float(jax.jit(fn)(5)) == pytest.approx(0.1)
