"""Every case of tests/cases.yaml against the reference evaluator, and the canonical form."""

import re

import numpy as np
import pytest

import lrdsl
from lrdsl.language.units import Duration
from cases import error_params, value_params
from oracle import expected


@pytest.mark.parametrize("case", value_params())
def test_values(case):
    options = case.get("options", {})
    got = lrdsl.curve(case["expr"], case["ticks"], **options)
    want = expected(case["expect"], case["ticks"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", value_params())
def test_the_float_path_equals_the_oracle(case):
    """lrdsl parse/eval/--plot evaluate with plain floats (lrdsl.floats), not numpy."""
    from lrdsl.language.curve import lr_function

    options = case.get("options", {})
    units = {k: options[k] for k in ("steps_per_epoch", "total") if k in options}
    every = options.get("report_every") or options.get("steps_per_epoch") or 1
    lr = lr_function(lrdsl.plan(case["expr"], **units), options.get("metrics"), every)
    got = [lr(float(t)) for t in case["ticks"]]
    assert all(type(v) is float for v in got)
    np.testing.assert_allclose(got, expected(case["expect"], case["ticks"]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", value_params())
def test_canonical_form_round_trips(case):
    expr = lrdsl.parse(case["expr"])
    text = str(expr)
    if "canonical" in case:
        assert text == case["canonical"]
    assert lrdsl.parse(text) == expr
    assert str(lrdsl.parse(text)) == text
    assert hash(lrdsl.parse(text)) == hash(expr)
    assert repr(expr) == text


@pytest.mark.parametrize("case", error_params())
def test_errors(case):
    error_class = getattr(lrdsl, case["error"])
    with pytest.raises(error_class) as info:
        lrdsl.curve(case["expr"], 4, **case.get("options", {}))
    error = info.value
    assert isinstance(error, lrdsl.LrdslError) and isinstance(error, ValueError)
    if "column" in case:
        assert error.column == case["column"]
        pointer = error.pointed().splitlines()
        assert pointer[-1].index("^") - 2 == case["column"] - 1  # caret under the column
    if "match" in case:
        assert re.search(case["match"], str(error)), str(error)
    if not isinstance(error, lrdsl.LrdslSyntaxError):
        assert "\n" not in error.message  # one line, naming the call and the argument


def test_syntax_error_says_what_was_expected():
    with pytest.raises(lrdsl.LrdslSyntaxError) as info:
        lrdsl.parse("warmup(5) >> ")
    error = info.value
    assert (error.line, error.column) == (1, 14)
    assert "a number" in error.expected and "a name" in error.expected
    assert str(error).splitlines()[1:] == ["  warmup(5) >> ", "  " + " " * 13 + "^"]


@pytest.mark.parametrize("text, canonical", [
    ("warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)",
     "warmup(5) >> cosine(0.1,100) | plateau(val_loss,factor=0.5)"),
    ("cosine( 0.10 , 1e2 , min = 0 )", "cosine(0.1,100)"),
    ("  # a comment\n warmup(5)  # ramp\n >> cosine(0.1, 100)", "warmup(5) >> cosine(0.1,100)"),
    ("exp(0.1, k=1e-3)", "exp(0.1,k=0.001)"),
    ("exp(1e-5, 0.5, every=10)", "exp(1e-5,0.5,every=10)"),
    ("0.5 * (warmup(1) >> 1)", "0.5 * (warmup(1) >> 1)"),
    ("(0.5 * 2) * cosine(1, 2)", "0.5 * 2 * cosine(1,2)"),
    ("cosine(0.1, 100) | plateau('val/loss', mode=max)", 'cosine(0.1,100) | plateau("val/loss",mode=max)'),
    ("cosine(0.1, 100) | plateau(\"val_loss\")", "cosine(0.1,100) | plateau(val_loss)"),
    ("repeat(cosine(0.1, 10), 3)", "repeat(cosine(0.1,10),n=3)"),
    ("poly(0.1, 10, cycle=false)", "poly(0.1,10)"),
    ("cosine(0.1, 3 ep) ", "cosine(0.1,3ep)"),
    ("warmup(2 epochs) >> cosine(0.1, 8 epochs)", "warmup(2ep) >> cosine(0.1,8ep)"),
    ("0.2 - (0.1 - 0.05)", "0.2 - (0.1 - 0.05)"),
    ("(0.2 - 0.1) - 0.05", "0.2 - 0.1 - 0.05"),
    ("0.1 + (0.2 + 0.3)", "0.1 + 0.2 + 0.3"),
    ("(0.1 + 0.2) * cosine(1, 10)[0:5]", "(0.1 + 0.2) * cosine(1,10)[:5]"),
    ("(warmup(2) >> 0.1)[1:]", "(warmup(2) >> 0.1)[1:]"),
    ("min( cosine(0.1, 10) , 0.05 )", "min(cosine(0.1,10),0.05)"),
    ("onecycle(0.85, 100, start=0.95, end=0.95)", "onecycle(0.85,100,start=0.95,end=0.95)"),
    ("cosine(0.1, 100)[5 ep:10 epochs]", "cosine(0.1,100)[5ep:10ep]"),
])
def test_canonical_text(text, canonical):
    if canonical is None:
        with pytest.raises(lrdsl.LrdslSyntaxError):
            lrdsl.parse(text)
        return
    assert str(lrdsl.parse(text)) == canonical


def test_equal_expressions_are_equal():
    a = lrdsl.parse("cosine(0.1, 100, min=0)")
    b = lrdsl.parse("cosine(.1, 100.0)")
    assert a == b and hash(a) == hash(b) and str(a) == str(b)
    assert lrdsl.parse("cosine(0.1, 100)") != lrdsl.parse("cosine(0.1, 101)")
    assert lrdsl.parse("const(0.1)") == lrdsl.parse("0.1")


def test_ast_is_frozen_and_composable():
    expr = lrdsl.parse("warmup(5) >> cosine(0.1, 100)")
    assert isinstance(expr, lrdsl.Sequence)
    with pytest.raises(AttributeError):
        expr.parts = ()
    built = lrdsl.call("warmup", 5) >> lrdsl.call("cosine", 0.1, 100)
    assert built == expr
    assert str(0.5 * built) == "0.5 * (warmup(5) >> cosine(0.1,100))"
    with pytest.raises(lrdsl.ArgumentError):
        lrdsl.call("cosine", 0.1, 100) >> lrdsl.call("warmup", 5)
    with pytest.raises(lrdsl.UnknownNameError, match="did you mean 'cosine'"):
        lrdsl.call("cosin", 0.1, 100)


def test_parse_is_cached_and_accepts_an_expr():
    text = "warmup(3) >> cosine(0.1, 30)"
    assert lrdsl.parse(text) is lrdsl.parse(text)
    expr = lrdsl.parse(text)
    assert lrdsl.parse(expr) is expr


def test_primitives_catalogue_lists_every_primitive_with_a_formula():
    catalogue = lrdsl.primitives()
    assert set(catalogue) >= {"const", "linear", "warmup", "cosine", "poly", "step", "multistep",
                              "piecewise", "exp", "invtime", "rsqrt", "cyclic", "sgdr",
                              "onecycle", "repeat", "plateau"}
    for name, primitive in catalogue.items():
        assert primitive.doc.strip(), name
        assert primitive.signature().startswith(name + "(")
        lrdsl.parse(primitive.example)  # every example in the catalogue parses


def test_curve_takes_counts_and_arrays():
    assert lrdsl.curve("0.1", 0).shape == (0,)
    assert lrdsl.curve("0.1", np.array([[0, 1], [2, 3]])).shape == (2, 2)
    for bad in (-1, [-1], [np.nan], "x", True):
        with pytest.raises(lrdsl.LrdslError):
            lrdsl.curve("0.1", bad)
    with pytest.raises(lrdsl.UnitError):
        lrdsl.curve("0.1", 3, steps_per_epoch=0)


def test_curve_is_vectorized_and_unbounded_schedules_keep_going():
    t = np.arange(0, 10**6, 997)
    got = lrdsl.curve("sgdr(0.1, 1000, mult=2)", t)
    assert got.shape == t.shape and np.all((got >= 0) & (got <= 0.1))
    assert lrdsl.curve("step(1, 10)", [10**6])[0] == 0.0  # 0.1^100000 underflows, never raises


def test_python_operators_build_the_same_nodes_as_the_text():
    cosine, warmup = lrdsl.call("cosine", 0.1, 100), lrdsl.call("warmup", 5)
    pairs = [
        (cosine + 0.01, "cosine(0.1, 100) + 0.01"),
        (0.2 - cosine, "0.2 - cosine(0.1, 100)"),
        (0.3 - (0.2 - cosine), "0.3 - (0.2 - cosine(0.1, 100))"),
        (cosine[5:], "cosine(0.1, 100)[5:]"),
        (cosine[:50], "cosine(0.1, 100)[0:50]"),
        (cosine["1ep":"2 epochs"], "cosine(0.1, 100)[1ep:2ep]"),
        (warmup >> cosine[5:], "warmup(5) >> cosine(0.1, 100)[5:]"),
        (2 * cosine[3:], "2 * cosine(0.1, 100)[3:]"),
        (lrdsl.call("max", lrdsl.call("exp", 0.1, 0.97), 1e-4), "max(exp(0.1, 0.97), 1e-4)"),
        (lrdsl.call("min", cosine, 0.05, cosine + 0.01), "min(cosine(0.1, 100), 0.05, cosine(0.1, 100) + 0.01)"),
    ]
    for built, text in pairs:
        assert built == lrdsl.parse(text), text
        assert lrdsl.parse(str(built)) == built
    assert isinstance(cosine + 0.01, lrdsl.Sum) and isinstance(0.2 - cosine, lrdsl.Difference)
    assert isinstance(cosine[5:], lrdsl.Slice)
    with pytest.raises(lrdsl.ArgumentError):
        cosine[5]
    with pytest.raises(lrdsl.ArgumentError):
        cosine[1:5:2]
    with pytest.raises(lrdsl.ArgumentError):
        warmup + cosine  # a warm-up needs '>>'


# quantize with a decimal period: period q begins on every·q as written, where an inner step
# of that same decimal length switches.  Float64 only (float32 refuses such a period: it
# cannot hold 1.2 or 7.7, nor place their boundaries over an unbounded run).
DECIMAL_PERIODS = [
    # 10 periods of 7.7 begin on tick 77 (q = ⌊10t/77⌋, the step's level ⌊q/10⌋)
    ("quantize(step(1, 77, factor=0.5), 7.7)", [0, 7, 8, 76, 77, 78, 153, 154, 155],
     lambda t: 0.5 ** ((10 * t // 77) // 10)),
    # 3·1.2 is 3.5999999999999996 in floats, yet period 3 begins on 3.6, where the step is
    ("quantize(step(1, 3.6, factor=0.5), 1.2)", [0, 3, 4, 7, 8, 11, 12, 100],
     lambda t: 0.5 ** ((10 * t // 12) // 3)),
]


@pytest.mark.parametrize("expr, ticks, formula", DECIMAL_PERIODS, ids=[e for e, _, _ in DECIMAL_PERIODS])
def test_quantize_periods_begin_where_the_decimal_period_does(expr, ticks, formula):
    want = [formula(t) for t in ticks]
    np.testing.assert_allclose(lrdsl.curve(expr, ticks), want, rtol=1e-12)
    plan = lrdsl.plan(expr)
    np.testing.assert_allclose([plan.value_at(t) for t in ticks], want, rtol=1e-12)
    assert "not a float32 number" in plan.float32_complaint


def test_a_hand_built_quantize_is_the_parsed_one_and_reports_every_as_a_written_duration():
    cosine = lrdsl.parse("cosine(0.1, 10ep)")
    built = lrdsl.Quantize(cosine, "1ep")
    assert built == lrdsl.parse("quantize(cosine(0.1, 10ep), 1 epoch)") == \
        lrdsl.call("quantize", cosine, Duration(1.0, "ep"))
    assert str(built) == "quantize(cosine(0.1,10ep),1ep)" and lrdsl.parse(str(built)) == built
    assert [(argument, str(d)) for _, argument, d in built.durations()] == [("every", "1ep"), ("d", "10ep")]
    assert built.bounded and not lrdsl.Quantize(lrdsl.call("exp", 0.1, 0.9), 10).bounded
    assert lrdsl.Quantize(lrdsl.call("exp", 0.1, 0.9), 10).units() == {""}
    with pytest.raises(lrdsl.ArgumentError, match="inside quantize"):
        lrdsl.Quantize(lrdsl.call("warmup", 5), 2)
    with pytest.raises(lrdsl.ArgumentError, match="'every' must be > 0"):
        lrdsl.Quantize(cosine, 0)
    lrdsl.parse("quantize(warmup(5) >> cosine(0.1, 100), 10)")  # a warm-up with its '>>' is fine
def test_division_operators_build_the_same_nodes_as_the_text():
    cosine, linear = lrdsl.call("cosine", 1, 10, min=0.5), lrdsl.call("linear", 1, 2, 10)
    pairs = [
        (2 / cosine, "2 / cosine(1, 10, min=0.5)"),
        (cosine / 4, "cosine(1, 10, min=0.5) / 4"),
        (0.1 * cosine / linear, "0.1 * cosine(1, 10, min=0.5) / linear(1, 2, 10)"),
        (cosine / linear / 2, "cosine(1, 10, min=0.5) / linear(1, 2, 10) / 2"),
        (cosine / (linear / 2), "cosine(1, 10, min=0.5) / (linear(1, 2, 10) / 2)"),
        (cosine / (linear * 2), "cosine(1, 10, min=0.5) / (linear(1, 2, 10) * 2)"),
        (3 * (cosine / linear), "3 * (cosine(1, 10, min=0.5) / linear(1, 2, 10))"),
        (cosine / linear * 3, "cosine(1, 10, min=0.5) / linear(1, 2, 10) * 3"),
    ]
    for built, text in pairs:
        assert built == lrdsl.parse(text), text
        assert lrdsl.parse(str(built)) == built and str(lrdsl.parse(str(built))) == str(built)
    quotient = cosine / linear
    assert isinstance(quotient, lrdsl.Quotient)
    assert (quotient.dividend, quotient.divisor) == (cosine, linear)
    # '*' and '/' bind alike, from the left: a * b / c is (a * b) / c, a / b * c is (a / b) * c
    assert lrdsl.parse("2 * cosine(1, 10) / 4") == lrdsl.Quotient(2 * lrdsl.call("cosine", 1, 10), 4)
    assert lrdsl.parse("2 / cosine(1, 10, min=0.5) * 4") == lrdsl.Product((2 / cosine, 4))
    assert str(lrdsl.parse("1 / (2 * cosine(1, 10, min=0.5))")) == "1 / (2 * cosine(1,10,min=0.5))"
    assert str(lrdsl.parse("(1 / cosine(1, 10, min=0.5)) * 2")) == "1 / cosine(1,10,min=0.5) * 2"
    assert str(lrdsl.parse("1+2/4")) == "1 + 2 / 4"
    with pytest.raises(lrdsl.ArgumentError, match="after '/'"):
        cosine / lrdsl.call("warmup", 5)  # a warm-up needs '>>', at any depth
    with pytest.raises(lrdsl.ArgumentError, match="before '/'"):
        lrdsl.call("cooldown", 5) / cosine
    with pytest.raises(lrdsl.ArgumentError):
        cosine / "x"


def test_a_long_run_of_factors_parses_flat_and_quickly():
    import time
    start = time.perf_counter()
    expr = lrdsl.parse(" * ".join(["1.0001"] * 3000) + " / 2")
    assert time.perf_counter() - start < 5
    assert isinstance(expr, lrdsl.Quotient) and len(expr.dividend.factors) == 3000


def test_division_proves_its_divisor_positive_and_names_it():
    # every argument narrows a range: d= bounds invtime's fall, so it divides
    assert lrdsl.plan("1 / invtime(10, 0.1, d=100)").range == pytest.approx((0.1, 1.1), rel=1e-15)
    assert lrdsl.plan("exp(1, 0.5, d=10)").range == pytest.approx((0.5 ** 10, 1), rel=1e-15)
    assert lrdsl.plan("step(1, 3, d=10)").range == pytest.approx((0.1 ** 3, 1), rel=1e-12)
    assert lrdsl.plan("rsqrt(1, d0=4, d=100)").range == pytest.approx((0.2, 1), rel=1e-15)
    assert lrdsl.plan("invtime(1, 1)").range == (0.0, 1.0)  # unbounded: falls towards 0
    rex = lrdsl.plan("anneal(1, 0, 10, shape=linear) / anneal(1, 0.5, 10, shape=linear)")
    assert rex.range == (0.0, 2.0)  # [0 / 1, 1 / 0.5], interval division
    with pytest.raises(lrdsl.ArgumentError) as info:
        lrdsl.curve("0.5 + 1/cosine(0.1, 100)", 3)
    assert "the divisor of '/', cosine(0.1,100), may reach 0" in str(info.value)
    assert info.value.expr == "0.5 + 1 / cosine(0.1,100)"
    assert info.value.pointed().splitlines()[-1] == "  " + " " * 10 + "^"  # under the divisor


def test_float32_refuses_a_divisor_it_would_flush_to_zero():
    # float32 flushes 0.5^150 (7e-46) to 0: the quotient would be inf there
    complaint = lrdsl.plan("1e-20 / exp(1, 0.5, d=150) * 1e-20").float32_complaint
    assert complaint and "divisor" in complaint and "smallest normal" in complaint
    assert "beyond float32" in lrdsl.plan("1e30 / exp(1, 0.5, d=100) * 1e-30").float32_complaint
    assert lrdsl.plan("0.1 * anneal(1, 0, 100, shape=linear) / anneal(1, 0.5, 100, shape=linear)"
                      ).float32_complaint is None


def test_float32_refuses_a_divisor_that_would_amplify_a_flushed_number():
    # linear·1e-8 is 1e-44 at tick 1, which float32 flushes to 0; divided by 1e-30 it is 1e-14
    complaint = lrdsl.plan("linear(0, 1e-30, 1e6) * 1e-8 / 1e-30").float32_complaint
    assert complaint and "flushes to 0" in complaint
    for fine in ("1 / (1 + linear(0, 9, 100))", "2 / cosine(1, 10, min=0.5)", "cosine(1, 10) / 4",
                 "1e-6 / anneal(1, 1e-6, 100)"):
        assert lrdsl.plan(fine).float32_complaint is None, fine


def test_float32_refuses_a_flushed_intermediate_a_later_factor_would_bring_back():
    # poly(10, 10) / 1e37 is below 1.18e-38 near its end: float32 gives 0 there, and · 1e37 keeps
    # it 0 where the reference is ~0.1 (fuzz seed 21, case 1843); as much for a product
    for text in ("poly(10, 10) / 1e37 * 1e37", "poly(10, 10) * 1e-37 * 1e37"):
        complaint = lrdsl.plan(text).float32_complaint
        assert complaint and "flushes to 0" in complaint, text
    for fine in ("0.1 * cosine(1, 100)", "1e6 * cosine(1e-6, 100)", "2 * cosine(0.1, 100) / 4"):
        assert lrdsl.plan(fine).float32_complaint is None, fine
