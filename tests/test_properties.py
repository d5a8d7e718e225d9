"""Properties over generated expressions and hostile text."""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lrdsl
from lrdsl.language.units import Duration
from tests import fuzz

lrs = st.floats(1e-6, 10, allow_nan=False).map(lambda x: float(f"{x:.4g}"))
fractions = st.floats(0.01, 0.99).map(lambda x: round(x, 3))
units = st.sampled_from(["", "ep", "st", "%", "sp", "tok"])
durations = st.builds(lambda v, u: Duration(float(v), u), st.integers(1, 500), units)
ticks_only = st.integers(2, 500).map(float)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in ("true", "false"))
monitors = st.one_of(names, st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                                    min_size=1, max_size=8))


def _call(name, *args, **kwargs):
    return st.builds(lambda a, k: lrdsl.call(name, *a, **k), st.tuples(*args),
                     st.fixed_dictionaries({}, optional=kwargs))


bounded = st.one_of(
    _call("cosine", lrs, durations, min=st.just(0.0)),
    _call("linear", lrs, lrs, durations),
    _call("poly", lrs, durations, end=st.just(0.0), power=st.floats(0, 3).map(lambda x: round(x, 2))),
    _call("const", lrs, durations),
    st.builds(lambda lr, e, f, d: lrdsl.call("step", lr, e, factor=f, d=d), lrs, durations, fractions, durations),
    st.builds(lambda lr, r, d, s: lrdsl.call("exp", lr, r, d=d, staircase=s), lrs, fractions, durations, st.booleans()),
    _call("onecycle", lrs, st.integers(20, 500).map(float), pct=st.floats(0.1, 0.45).map(lambda x: round(x, 2)),
          anneal=st.sampled_from(["cos", "linear"]), three_phase=st.booleans(),
          start=st.one_of(st.none(), lrs), end=st.one_of(st.none(), lrs)),
    _call("anneal", lrs, lrs, durations, shape=st.sampled_from(["cos", "linear", "exp"]),
          power=st.sampled_from([0.5, 1.0, 2.0])),
    st.builds(lambda d, e: lrdsl.call("poly", 0.0, d, end=e), durations, lrs),
    st.builds(lambda a, s, e: a[s:e], st.sampled_from([lrdsl.call("cosine", 0.1, 400), lrdsl.call("sgdr", 0.1, 7)]),
              st.one_of(st.none(), st.integers(1, 50)), st.integers(60, 300)),
)
unbounded = st.one_of(
    lrs.map(lrdsl.const),
    _call("step", lrs, durations, factor=fractions),
    _call("multistep", lrs, st.lists(ticks_only, min_size=1, max_size=3).map(sorted)),
    _call("piecewise", st.just([10.0, 20.0]), st.lists(lrs, min_size=3, max_size=3)),
    st.builds(lambda lr, k: lrdsl.call("exp", lr, k=k), lrs, fractions),
    _call("invtime", lrs, fractions, every=durations, staircase=st.booleans()),
    _call("rsqrt", lrs, d0=durations),
    _call("cyclic", st.just(0.0), lrs, durations, mode=st.sampled_from(["triangular", "triangular2", "exp_range"])),
    _call("cyclic", lrs, lrs, durations, mode=st.sampled_from(["triangular", "triangular2"])),
    _call("invtime", lrs, fractions, power=st.sampled_from([0.5, 2.0])),
    _call("rsqrt", lrs, power=st.sampled_from([0.25, 0.51, 1.0])),
    _call("sgdr", lrs, durations, mult=st.sampled_from([1.0, 2.0, 1.5])),
    _call("poly", lrs, durations, cycle=st.just(True)),
)


def _valid(build):
    """Compose, or None where the shape rules refuse (warm-up before warm-up, unbounded prefix)."""
    def attempt(*args):
        try:
            return build(*args)
        except lrdsl.ArgumentError:
            return None
    return attempt


shapes = st.sampled_from(["linear", "cos", "exp"])


def _extend(children):
    seq_prefix = st.one_of(bounded, bounded.map(lambda b: lrdsl.call("warmup", 3) >> b))
    return st.one_of(
        st.builds(_valid(lambda a, b: a >> b), seq_prefix, children),
        st.builds(_valid(lambda a, b: a * b), children, children),
        st.builds(_valid(lambda k, a: k * a), lrs, children),
        st.builds(_valid(lambda a, b: a + b), children, children),
        st.builds(_valid(lambda k, a: k - a), st.floats(10, 30).map(lambda x: round(x, 1)), children),
        st.builds(_valid(lambda a, b: a / b), children, children),  # b may reach 0: refused
        st.builds(_valid(lambda a, k, b: a / (k + b)), children, lrs, children),  # b > 0
        st.builds(_valid(lambda k, a, b: k * a / lrdsl.call("max", b, k)), lrs, children, children),
        st.builds(_valid(lambda a, k: a / k), children, lrs),
        st.builds(_valid(lambda a, b: lrdsl.call("min", a, b)), children, children),
        st.builds(_valid(lambda a, k: lrdsl.call("max", a, k)), children, lrs),
        st.builds(_valid(lambda b, s: lrdsl.call("warmup", 2, shape=s, start=0.1) >> b), children, shapes),
        st.builds(_valid(lambda b, d, s: b >> lrdsl.call("cooldown", d, end=0.1, shape=s)), bounded,
                  durations, shapes),
        st.builds(_valid(lambda a, d: lrdsl.call("warmup", 5) >> a >> lrdsl.call("cooldown", d)),
                  unbounded, st.integers(1, 100).map(float)),
        st.builds(_valid(lambda a, s: a[s:]), children, st.integers(1, 5)),
        st.builds(_valid(lrdsl.Repeat), st.one_of(bounded, children),
                  st.one_of(st.none(), st.integers(1, 5).map(float)),
                  st.sampled_from([1.0, 1.0, 1.5, 2.0, 3.0, 1.3]),
                  st.sampled_from([1.0, 1.0, 0.5, 0.9, 1.2]), st.booleans()),
        st.builds(_valid(lambda a, e: lrdsl.call("quantize", a, e)), children,
                  st.one_of(durations, st.sampled_from([0.5, 1.5, 7.5, 2.25]).map(Duration))),
    ).filter(lambda e: e is not None)


schedules = st.recursive(st.one_of(bounded, unbounded), _extend, max_leaves=6)
expressions = st.one_of(
    schedules,
    st.builds(lambda s, m, f, p: lrdsl.Plateau(s, lrdsl.call("plateau", m, f, patience=p)),
              schedules, monitors, fractions, st.integers(0, 5).map(float)),
    # (v3) atol= and best=
    st.builds(lambda s, m, f, a, b: lrdsl.Plateau(s, lrdsl.call("plateau", m, f, atol=a, best=b)),
              schedules, monitors, fractions, st.sampled_from([0.0, 1e-3, 0.5]),
              st.sampled_from(["improvement", "running"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_generated_expressions_round_trip(expr):
    text = str(expr)
    again = lrdsl.parse(text)
    assert again == expr
    assert str(again) == text
    assert hash(again) == hash(expr)


channel_names = st.one_of(st.sampled_from(["lr", "momentum", "beta2", "weight_decay", "kl", "ema",
                                            "loss.kl", "mix.web"]), names.filter(
    lambda n: n not in ("momentum", "beta2", "weight_decay") and not n.startswith(("mom", "beta", "weight"))))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(channel_names, expressions, min_size=1, max_size=4))
def test_generated_programs_round_trip(channels):
    channels = {name: expr.schedule if name != "lr" and isinstance(expr, lrdsl.Plateau) else expr
                for name, expr in channels.items()}
    try:
        program = lrdsl.program(channels)
    except lrdsl.ProgramError as error:  # a generated name close to a target's
        assert "misspelt" in str(error)
        return
    text = str(program)
    assert lrdsl.program(text) == program
    assert str(lrdsl.program(text)) == text
    assert dict(program) == channels


#: plan-time refusals a generated expression may meet (its numbers, not its shape, are at fault)
REFUSALS = ("may go negative", "already ended", "not before its end", "no room to stretch",
            "cool-down from 0", "warm-up to 0", "the divisor of '/'", "beyond float range",
            "round=true runs whole-tick periods")  # repeat(..., round=true) of a sub-tick period


#: the units generated expressions are evaluated with: sp and tok convert through the batch
UNITS = {"steps_per_epoch": 10, "total": 1000, "samples_per_step": 4, "tokens_per_sample": 8}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_generated_expressions_evaluate_finite_and_nonnegative(expr):
    try:
        values = lrdsl.curve(expr, np.arange(0, 2000, 7), **UNITS)
    except lrdsl.LrdslError as error:
        assert any(words in str(error) for words in REFUSALS), str(error)
        return
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    compiled = lrdsl.plan(expr, **UNITS)
    low, high = compiled.range
    # a difference's rounding is relative to its operands (docs/language.md, "Tolerance of a
    # difference"): 10 − anneal(10, 10, d) is proven [0, 0] and may come out 1.8e-15
    slack = 1e-12 * fuzz.cancelled(compiled.schedule) + 1e-300
    assert np.all(values >= low * (1 - 1e-12) - slack) and np.all(values <= high * (1 + 1e-12) + slack)


def _only_lrdsl_errors(text):
    try:
        expr = lrdsl.parse(text)
    except lrdsl.LrdslError:
        return
    assert lrdsl.parse(str(expr)) == expr
    try:
        lrdsl.curve(expr, 5, steps_per_epoch=3, total=100)
    except lrdsl.LrdslError:
        pass


ALPHABET = st.sampled_from(list("()[],=*/>|#%.\"' \n0123456789eEabcdpstw_+-") +
                           ["warmup", "cosine", "repeat", "quantize", "plateau", ">>", "ep", "st", "n=",
                            "true", "1e999", "-1", "onecycle", "piecewise", "val_loss"])


@settings(max_examples=500, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_arbitrary_token_soup_raises_only_lrdsl_errors(text):
    _only_lrdsl_errors(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_lrdsl_errors(text):
    _only_lrdsl_errors(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.data())
def test_mutations_of_valid_expressions_raise_only_lrdsl_errors(expr, data):
    text = str(expr)
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 4)))
    insert = data.draw(st.one_of(st.just(""), ALPHABET, st.text(max_size=3)))
    _only_lrdsl_errors(text[:i] + insert + text[j:])


def test_long_and_deep_inputs_never_overflow_the_stack():
    long_sequence = " >> ".join(["cosine(0.1, 10)"] * 6000) + " >> 0.1"
    assert len(long_sequence) > 100_000
    values = lrdsl.curve(long_sequence, [0, 10, 59_999, 60_000])
    assert values.tolist()[-1] == 0.1
    long_product = " * ".join(["0.999"] * 20_000)
    assert math.isclose(lrdsl.curve(long_product, 1)[0], 0.999 ** 20_000)
    assert math.isclose(lrdsl.curve(long_product + " / 2 * 4", 1)[0], 0.999 ** 20_000 * 2)
    for chain in (" - ".join(["1"] * 5000), " / ".join(["1"] * 5000), "1" + " / 1 * 1" * 5000):
        with pytest.raises(lrdsl.LrdslError, match="nests deeper than 64"):
            lrdsl.parse(chain)  # each '-' or '/' holds the one before: as deep as parentheses
    for deep in ("(" * 1000 + "0.1" + ")" * 1000, "(" * 1000, "repeat(" * 1000 + "cosine(1,2)" + ")" * 1000,
                 "[" * 1000, "x" * 100_000, "1" * 100_000, "#" * 100_000):
        _only_lrdsl_errors(deep)
    assert lrdsl.parse("(" * 60 + "0.1" + ")" * 60) == lrdsl.parse("0.1")


def test_import_lrdsl_leaves_the_frameworks_out():
    code = ("import sys, lrdsl; lrdsl.curve(lrdsl.parse('warmup(5) >> cosine(0.1, 100)'), 10); "
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'matplotlib', 'jax', 'lightning', 'transformers') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
