"""Hostile numbers through every path: parse, curve, the pure-float path (lrdsl parse/eval/--plot),
the PyTorch scheduler and the Keras schedule.  Only LrdslError, never NaN, inf or a negative value."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import lrdsl  # noqa: E402

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
import lrdsl.keras  # noqa: E402
import lrdsl.torch  # noqa: E402
import fuzz  # noqa: E402  (tests/fuzz.py: the driver of `make fuzz`, its generator and checks)

NUMBERS = ["0", "5e-324", "1e-310", "1e-300", "1e-46", "1e-7", "0.5", "0.99999", "1", "1.00001",
           "1.2", "2", "10", "1e6", "1e38", "1e39", "1e300", "1.7e308", "1e400", "-1", "3ep", "50%"]
TEMPLATES = [
    "cosine({a}, {b})", "cosine({a}, {b}, min={c})", "exp({a}, {b})", "exp({a}, {b}, d={c})",
    "exp({a}, k={b}, every={c})", "step({a}, {b}, factor={c})", "step({a}, {b}, factor={c}, d={a})",
    "sgdr({a}, {b}, mult={c}, decay={c})", "cyclic({a}, {b}, {c}, mode=exp_range, gamma={c})",
    "cyclic({a}, {b}, {c}, mode=triangular2)", "poly({a}, {b}, power={c})",
    "poly({a}, {b}, end={c}, cycle=true)", "invtime({a}, {b}, power={c})",
    "rsqrt({a}, d0={b}, power={c})", "anneal({a}, {b}, {c}, shape=exp)", "anneal({a}, {b}, {c}, power={a})",
    "warmup({a}, shape=exp, start={b}) >> {c}", "const({a}, d={b}) >> cooldown({c}, end={a})",
    "linear({a}, {b}, {c}) >> cooldown({c}, shape=cos)", "onecycle({a}, {b}, pct={c})",
    "onecycle({a}, 100, start={b}, end={c})", "multistep({a}, [{b}, {c}], factor={c})",
    "piecewise([{a}], [{b}, {c}])", "{a} * {b} * {c}", "{a} + {b} - {c}", "{a} - cosine({b}, {c})",
    "max({a}, exp({b}, {c}))", "min({a}, exp({b}, {c}, d=10))", "cosine({a}, 100)[{b}:]",
    "cosine(0.1, {a})[{b}:{c}]", "warmup({a}) >> {b} >> cooldown({c})", "repeat(cosine({a}, {b}), n={c})",
    "{a} | plateau(loss, factor={b}, min={c})", "{a} / {b} / {c}", "{a} / cosine({b}, 100, min={c})",
    "{a} * anneal(1, {b}, {c}, shape=linear) / anneal(1, {b}, {c})", "{a} / invtime({b}, {c}, d={a})",
    "{a} / (1 + linear(0, {b}, {c}))", "{a} / max(exp({b}, {c}), {a})",
    "repeat(cosine(0.1, {a}), mult={b}, decay={c}, n=3)", "repeat(cosine({a}, {b}), mult={c}, round=true)",
]
TICKS = np.array([0, 1, 2, 3, 7, 99, 100, 101, 1000, 10**5, 10**6 - 1, 10**6], dtype=np.float64)
UNITS = {"steps_per_epoch": 10, "total": 1000}


def _assert_safe(values, where):
    values = np.asarray(values, dtype=np.float64)
    assert np.all(np.isfinite(values)), f"{where}: not finite: {values}"
    assert np.all(values >= 0), f"{where}: negative: {values}"


def _through_every_path(text):
    try:
        compiled = lrdsl.plan(text, **UNITS)
    except lrdsl.LrdslError:
        return False
    _assert_safe(lrdsl.curve(text, TICKS, **UNITS), "curve")
    _assert_safe([compiled.value_at(t) for t in TICKS], "the float path")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = lrdsl.torch.scheduler(optimizer, text, **UNITS)
    for _ in range(3):
        sched.step()
    _assert_safe(sched.get_last_lr() + [sched.lr_at(10**6)], "torch")
    if compiled.plateau is None:
        try:
            schedule = lrdsl.keras.schedule(text, **UNITS)
        except lrdsl.LrdslError as error:
            assert "float32" in str(error), str(error)
        else:
            _assert_safe(keras.ops.convert_to_numpy(schedule(TICKS)), "keras")
    return True


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TEMPLATES), st.sampled_from(NUMBERS), st.sampled_from(NUMBERS),
       st.sampled_from(NUMBERS))
def test_hostile_numbers_give_lrdsl_errors_or_safe_values(template, a, b, c):
    _through_every_path(template.format(a=a, b=b, c=c))


@pytest.mark.parametrize("text", [
    "linear(0.9, 0, 7)", "cosine(0.1, 1e-320)", "exp(0.1, 2)", "exp(0.1, 0.99999)",
    "exp(1e-7, 1.2, d=100)", "sgdr(0.1, 10)", "cyclic(0.9, 0.8, 5)", "0.1 - cosine(0.05, 10)",
])
def test_the_issue_examples_are_safe_or_refused(text):
    refused = not _through_every_path(text)
    assert refused == (text in ("cosine(0.1, 1e-320)", "exp(0.1, 2)"))


def test_a_hand_built_call_is_checked_like_a_parsed_one():
    with pytest.raises(lrdsl.ArgumentError, match="must be ≥ 0"):
        lrdsl.Call("const", (-1.0, None))
    with pytest.raises(lrdsl.LrdslError):
        lrdsl.Call("cosine", (0.1,))
    assert lrdsl.Call("cosine", (0.1, 10, 0)) == lrdsl.parse("cosine(0.1, 10)")


def test_linear_ends_exactly_at_its_end_value_on_every_backend():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = lrdsl.torch.scheduler(optimizer, "linear(0.9, 0, 7)")
    for _ in range(8):
        sched.step()
    assert optimizer.param_groups[0]["lr"] == 0.0
    assert lrdsl.curve("linear(0.9, 0, 7)", [7, 8, 10**6]).tolist() == [0.0, 0.0, 0.0]
    keras_values = keras.ops.convert_to_numpy(lrdsl.keras.schedule("linear(0.9, 0, 7)")(np.array([7.0, 50.0])))
    assert keras_values.tolist() == [0.0, 0.0]
    assert math.copysign(1, lrdsl.plan("linear(0.9, 0, 7)").value_at(7)) == 1


def _draw(data):
    """The fuzz driver's ``pick``, drawn by Hypothesis so that a failure shrinks."""
    return lambda options: data.draw(st.sampled_from(list(options)))


def _bugs(tally) -> str:
    return fuzz.report(tally) if tally.bug_count() else ""


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_expressions_are_parsed_planned_and_evaluated_safely(data):
    # the driver's generator covers the whole language (every primitive and keyword, every
    # operator, slices, units, plateau, extreme numbers); the float64 paths only, so this
    # runs in the edit-test loop
    case = fuzz.case(_draw(data))
    tally = fuzz.Tally()
    fuzz.check_core(case, tally)
    assert not tally.bug_count(), _bugs(tally)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_expressions_agree_on_the_float32_and_jax_backends(data):
    pytest.importorskip("jax")
    case = fuzz.case(_draw(data))
    tally = fuzz.Tally()
    compiled, ticks, _ = fuzz.check_core(case, tally, torch=False)
    if compiled is not None:
        fuzz.check_keras(case, tally, compiled, ticks)
        queue = fuzz.JaxQueue(tally, fuzz.BACKENDS)
        queue.add(case, compiled, ticks)
        queue.flush()
    assert not tally.bug_count(), _bugs(tally)


@pytest.mark.slow
def test_the_fuzz_driver_finds_no_bug_in_a_fixed_sample():
    pytest.importorskip("jax")
    tally = fuzz.fuzz(n=400, seed=20260101)
    tried = tally.counts["parse"]["tried"]
    assert tried == 400 and tally.counts["torch"]["accepted"] > 50  # the sample did run
    assert not tally.bug_count(), _bugs(tally)


def test_the_fuzz_checks_tell_a_bug_from_a_rounding():
    case = fuzz.Case("0.1", {"steps_per_epoch": 1, "total": 10}, [])
    tally = fuzz.Tally()
    run = fuzz.Run(tally, case)
    ticks = np.array([0.0, 1.0])
    run("floats", lambda: [0.1, 0.1 * (1 + 1e-13)], [0.1, 0.1], ticks)
    run("torch", lambda: [0.1, 0.1 * (1 + 1e-11)], [0.1, 0.1], ticks)
    run("keras", lambda: [0.1, np.float32(0.1)], [0.1, 0.1], ticks, fuzz.F32)
    run("optax32", lambda: [0.1, float("nan")], [0.1, 0.1], ticks, fuzz.F32)
    run("optax64", lambda: [0.1, -0.0 - 1e-300], [0.1, 0.0], ticks)
    run("curve", lambda: 1 / 0, None, ticks)
    run("plan", lambda: lrdsl.plan("exp(0.1, 2)"), values=False)
    counts = {backend: +tally.counts[backend] for backend in tally.counts}
    assert counts == {"floats": {"tried": 1, "accepted": 1}, "torch": {"tried": 1, "disagree": 1},
                      "keras": {"tried": 1, "accepted": 1}, "optax32": {"tried": 1, "unsafe": 1},
                      "optax64": {"tried": 1, "unsafe": 1}, "curve": {"tried": 1, "exception": 1},
                      "plan": {"tried": 1, "rejected": 1}}
    assert tally.bug_count() == 4 and "tick 1" in tally.bugs[0].detail


#: v2 fuzz finds near repeat's numerics (a growing period past float range, a cycle of a
#: subnormal length), and their v3 repeat spellings
REPEAT_HOSTILE = [
    "sgdr(2, 3, mult=1e308)", "poly(3, 2.2250738585072014e-308, end=5e-324, cycle=true)[:1 epochs]",
    "repeat(cosine(2, 3), mult=1e308)", "repeat(cosine(2, 3), mult=1e308, round=true)",
    "repeat(cosine(2, 3), n=3, mult=1e308, decay=1e-300)",
    "repeat(poly(3, 2.2250738585072014e-308, end=5e-324)[:1 epochs], mult=1.5)",
    # Hypothesis' find: the table's last entry (only an end tick) had a length of 1e69, which
    # Keras could not put in a float32 constant
    "repeat(cosine(0.1, 1e-7), mult=1e38, decay=5e-324, n=3)",
]


@pytest.mark.parametrize("text", REPEAT_HOSTILE)
def test_fuzz_finds_near_repeat_give_values_or_one_line_errors_on_every_backend(text):
    for options in fuzz.OPTIONS:
        case = fuzz.Case(text, dict(options), [])
        tally = fuzz.Tally()
        compiled, ticks, _ = fuzz.check_core(case, tally)
        if compiled is not None:
            fuzz.check_keras(case, tally, compiled, ticks)
            queue = fuzz.JaxQueue(tally, fuzz.BACKENDS)
            queue.add(case, compiled, ticks)
            queue.flush()
        assert not tally.bug_count(), fuzz.report(tally)
        try:
            plan = lrdsl.plan(text, **options)
        except lrdsl.LrdslError as error:
            assert "\n" not in str(error)
            continue
        at = np.array([0.0, 1.0, 3.0, 4.0, 5.0, 1e6])  # tick 4: where the poly's fuzz find broke
        _assert_safe(plan.values(at), f"curve {text}")
        _assert_safe([plan.value_at(t) for t in at], f"the float path {text}")
        if plan.float32_complaint is None:
            schedule = lrdsl.keras.schedule(text, **options)
            _assert_safe(keras.ops.convert_to_numpy(schedule(at)), f"keras {text}")
