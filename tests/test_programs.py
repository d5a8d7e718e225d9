"""Programs and clocks in the language (LANGUAGE.md §8, §9; docs/language.md "Programs", "Clocks").

Expected values are formulas written here; positions on a samples or tokens clock are counts
converted by hand from the constants each test passes.
"""

import math

import numpy as np
import pytest

import lrdsl
from lrdsl.language.units import Duration


# --- units and suffixes ------------------------------------------------------------------------

@pytest.mark.parametrize("text, value, unit", [
    ("warmup(2k) >> 0.1", 2000.0, ""),
    ("cosine(3e-4, 1.5B tok)", 1.5e9, "tok"),
    ("cosine(3e-4, 375Mtok)", 375e6, "tok"),
    ("cosine(3e-4, 2T tokens)", 2e12, "tok"),
    ("cosine(3e-4, 64 samples)", 64.0, "sp"),
    ("cosine(3e-4, 1 sample)", 1.0, "sp"),
    ("cosine(3e-4, 10 token)", 10.0, "tok"),
    ("cosine(3e-4, 3ksp)", 3000.0, "sp"),
])
def test_durations_take_samples_tokens_and_scale_suffixes(text, value, unit):
    expr = lrdsl.parse(text)
    assert [d for _, _, d in expr.durations()] == [Duration(value, unit)]
    assert lrdsl.parse(str(expr)) == expr


@pytest.mark.parametrize("text", ["cosine(1, 2K)", "cosine(1, 2 k)", "cosine(1, 2kk)", "cosine(1, 2m tok)"])
def test_suffixes_are_case_sensitive_and_attached(text):
    with pytest.raises(lrdsl.LrdslSyntaxError):
        lrdsl.parse(text)


# --- clocks: what a duration is in positions ----------------------------------------------------

@pytest.mark.parametrize("expr, options, d", [
    # ticks clock: sp through samples_per_step, tok through tokens_per_step (or the two)
    ("cosine(1, 64sp)", {"samples_per_step": 32}, 64 / 32),
    ("cosine(1, 4k tok)", {"tokens_per_step": 1000}, 4000 / 1000),
    ("cosine(1, 4k tok)", {"samples_per_step": 4, "tokens_per_sample": 250}, 4000 / (4 * 250)),
    # samples clock
    ("cosine(1, 100sp)", {"clock": "samples"}, 100),
    ("cosine(1, 1000tok)", {"clock": "samples", "tokens_per_sample": 50}, 1000 / 50),
    ("cosine(1, 3st)", {"clock": "samples", "samples_per_step": 32}, 3 * 32),
    ("cosine(1, 2ep)", {"clock": "samples", "samples_per_epoch": 1797}, 2 * 1797),
    ("cosine(1, 2ep)", {"clock": "samples", "steps_per_epoch": 10, "samples_per_step": 8}, 2 * 80),
    ("cosine(1, 50%)", {"clock": "samples", "total": 5000}, 2500),
    # tokens clock
    ("cosine(1, 1.5B tok)", {"clock": "tokens"}, 1.5e9),
    ("cosine(1, 10sp)", {"clock": "tokens", "tokens_per_sample": 2048}, 10 * 2048),
    ("cosine(1, 10st)", {"clock": "tokens", "tokens_per_step": 4096}, 10 * 4096),
    ("cosine(1, 10st)", {"clock": "tokens", "samples_per_step": 2, "tokens_per_sample": 512}, 10 * 1024),
    ("cosine(1, 1ep)", {"clock": "tokens", "tokens_per_epoch": 1e6}, 1e6),
    ("cosine(1, 1ep)", {"clock": "tokens", "samples_per_epoch": 100, "tokens_per_sample": 7}, 700),
])
def test_durations_convert_to_the_clocks_unit(expr, options, d):
    compiled = lrdsl.plan(expr, **options)
    assert compiled.duration == pytest.approx(d, rel=1e-15)
    positions = np.array([0.0, d / 2, d])
    np.testing.assert_allclose(lrdsl.curve(expr, positions, **options),
                               (1 + np.cos(np.pi * positions / d)) / 2, atol=1e-15)


@pytest.mark.parametrize("expr, options, words", [
    ("cosine(1, 100)", {"clock": "samples"}, ["cosine(1,100)", "'d'", "bare number", "samples clock"]),
    ("warmup(2000) >> 0.1", {"clock": "tokens"}, ["warmup(2000)", "'d'", "bare number"]),
    ("cosine(1, 2ep)", {"clock": "tokens"}, ["'d'", "tokens_per_epoch"]),
    ("cosine(1, 2ep)", {"clock": "samples"}, ["'d'", "samples_per_epoch"]),
    ("cosine(1, 10st)", {"clock": "tokens"}, ["'d'", "tokens_per_step", "batch-size ramp"]),
    ("cosine(1, 10st)", {"clock": "samples"}, ["'d'", "samples_per_step"]),
    ("cosine(1, 10sp)", {"clock": "tokens"}, ["'d'", "tokens_per_sample"]),
    ("cosine(1, 10tok)", {"clock": "samples"}, ["'d'", "tokens_per_sample"]),
    ("cosine(1, 10sp)", {}, ["'d'", "samples_per_step"]),
    ("cosine(1, 10tok)", {"samples_per_step": 4}, ["'d'", "tokens_per_step"]),
    ("step(1, 10tok, d=1k tok) >> 0.1", {"clock": "samples"}, ["step", "'every'", "tokens_per_sample"]),
    ("cosine(1, 10%)", {"clock": "tokens"}, ["'d'", "total"]),
    # on the ticks clock sp/tok make the tick a step, so 1ep beside them needs steps_per_epoch
    ("linear(1, 0, 1ep) >> linear(1, 0, 1k sp)", {"samples_per_step": 500},
     ["counts epochs", "'d' (1000sp) samples", "steps_per_epoch"]),
    ("linear(1, 0, 1k tok) >> cosine(1, 1ep)", {"tokens_per_step": 500}, ["counts epochs", "tokens", "steps_per_epoch"]),
])
def test_a_conversion_that_lacks_a_constant_names_call_argument_and_constant(expr, options, words):
    with pytest.raises(lrdsl.UnitError) as caught:
        lrdsl.plan(expr, **options)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    assert "\n" not in str(caught.value)


def test_defaults_are_no_bare_numbers_on_a_tokens_clock():
    # exp's every=1 is a default: one token per decay step, not a written bare number
    positions = np.array([0.0, 10.0, 1000.0])
    np.testing.assert_allclose(lrdsl.curve("exp(1, 0.999, d=1k tok)", positions, clock="tokens"),
                               0.999 ** np.minimum(positions, 1000), rtol=1e-12)


@pytest.mark.parametrize("options, words", [
    ({"clock": "steps"}, "clock must be one of ticks, samples, tokens"),
    ({"samples_per_step": 0}, "samples_per_step must be a positive number"),
    ({"tokens_per_sample": float("inf")}, "tokens_per_sample must be a positive number"),
    ({"tokens_per_batch": 4}, "unknown conversion constant 'tokens_per_batch'"),
])
def test_bad_clock_options_are_lrdsl_errors(options, words):
    with pytest.raises(lrdsl.LrdslError, match=words):
        lrdsl.plan("cosine(1, 10)", **options)


def test_positions_stay_exact_to_2_53():
    # token counts up to 2⁵³: a cosine over 8·10¹⁵ tokens, exact in float64 to its last token
    d = 8e15
    positions = np.array([0.0, 2.0 ** 52, d - 1, d])
    want = (1 + np.cos(np.pi * positions / d)) / 2
    want[-2] = math.sin(math.pi / 2 * 1 / d) ** 2  # one token before the end: sin²(π/2·left/d)
    np.testing.assert_allclose(lrdsl.curve("cosine(1, 8000T tok)", positions, clock="tokens"), want,
                               rtol=1e-12, atol=0)


# --- programs ----------------------------------------------------------------------------------

PROGRAM = """
# LANGUAGE.md §8's example
lr           = warmup(2k) >> 3e-4 >> cooldown(20%, power=0.5) | plateau(val_loss, 0.5)
weight_decay = anneal(0.04, 0.4, 100%)
ema          = anneal(0.996, 1, 100%)          # read by the user's EMA code
kl           = min(linear(0, 1, 10%),
                   1)                           # an expression may span lines
"""


def test_a_program_parses_orders_and_round_trips():
    program = lrdsl.program(PROGRAM)
    assert list(program) == ["lr", "weight_decay", "ema", "kl"]  # lr, targets, the rest sorted
    assert program.free == ("ema", "kl")
    assert program["kl"] == lrdsl.parse("min(linear(0, 1, 10%), 1)")
    assert str(program).splitlines() == [
        "lr = warmup(2000) >> 0.0003 >> cooldown(20%,power=0.5) | plateau(val_loss,factor=0.5)",
        "weight_decay = anneal(0.04,0.4,100%)", "ema = anneal(0.996,1,100%)",
        "kl = min(linear(0,1,10%),1)"]
    assert lrdsl.program(str(program)) == program
    assert hash(lrdsl.program(str(program))) == hash(program)
    assert lrdsl.program("kl = 1; lr = 0.1") == lrdsl.program("lr = 0.1\nkl = 1")


def test_every_expression_is_the_program_lr():
    program = lrdsl.program("warmup(5) >> cosine(0.1, 100)")
    assert list(program) == ["lr"]
    assert str(program) == "warmup(5) >> cosine(0.1,100)"  # the expression's canonical text
    assert lrdsl.program(lrdsl.parse("0.1")) == lrdsl.program("lr = 0.1")
    assert lrdsl.program({"lr": "0.1", "loss.kl": lrdsl.parse("0.5")}) == lrdsl.program(
        "loss.kl = 0.5; lr = 0.1")


@pytest.mark.parametrize("text, error, words, column", [
    ("lr = 0.1\nmomentun = 0.9", lrdsl.ProgramError, "looks like the optimizer target 'momentum'", None),
    ("lr = 0.1\nweight_decy = 0.01", lrdsl.ProgramError, "'weight_decay' misspelt", None),
    ("ema = 0.99 | plateau(loss)", lrdsl.ProgramError, "only lr may carry '| plateau'", None),
    ("lr = 1\nlr = 2", lrdsl.ProgramError, "given twice", None),
    ("foo bar = 1", lrdsl.ProgramError, "comes before the first '='", 1),
    ("lr = 0.1; 0.2", lrdsl.ProgramError, "after ';'", 10),
    ("lr = 0.1\nkl = cosin(1, 10)", lrdsl.UnknownNameError, "kl: unknown schedule 'cosin'", 6),
    ("lr = 0.1; kl = cosine(1,", lrdsl.LrdslSyntaxError, "kl: ", 25),
])
def test_program_errors_name_the_channel_and_point_into_the_text(text, error, words, column):
    with pytest.raises(error) as caught:
        lrdsl.program(text)
    assert words in str(caught.value)
    if column is not None:
        assert caught.value.column == column
        line = caught.value.pointed().splitlines()
        assert line[-1].index("^") - 2 == column - 1


def test_a_program_curve_gives_every_channel():
    values = lrdsl.curve("lr = 0.1; kl = linear(0, 1, 4); batch_size = piecewise([2], [255.5, 512])", 6)
    assert sorted(values) == ["batch_size", "kl", "lr"]
    np.testing.assert_array_equal(values["lr"], [0.1] * 6)
    np.testing.assert_allclose(values["kl"], np.minimum(np.arange(6), 4) / 4)
    np.testing.assert_array_equal(values["batch_size"], [256, 256, 512, 512, 512, 512])  # halves up
    assert isinstance(lrdsl.curve("cosine(1, 4)", 4), np.ndarray)  # an expression: one array


def test_a_program_curve_drives_the_plateau_of_lr_with_metrics():
    values = lrdsl.curve("lr = 0.1 | plateau(loss, 0.5, patience=0); kl = 1", 3, metrics={"loss": [1, 1]})
    np.testing.assert_allclose(values["lr"], [0.1, 0.1, 0.05])
    np.testing.assert_allclose(values["kl"], [1, 1, 1])


@pytest.mark.parametrize("text, words", [
    ("ema = anneal(0.99, 1.5, 10)", "ema must stay at most 1"),
    ("dropout = 1", "dropout must stay below 1"),
    ("momentum = 1.2", "momentum must stay below 1"),
    ("batch_size = linear(0, 4, 10)", "batch_size is an integer ≥ 1"),
    ("seq_len = 0.4", "seq_len is an integer ≥ 1"),
])
def test_declared_ranges_are_proven_before_anything_runs(text, words):
    with pytest.raises(lrdsl.LrdslError, match=words):
        lrdsl.curve(text, 3)


def test_a_program_on_a_tokens_clock():
    # a batch-size ramp on a tokens clock, the LR scaled with it (LANGUAGE.md §9)
    text = ("lr = 3e-4 * piecewise([10k tok, 50k tok], [1, 1.41, 2])\n"
            "batch_size = piecewise([10k tok, 50k tok], [256, 512, 1024])")
    positions = np.array([0, 9999, 10000, 49999, 50000, 1e6])
    values = lrdsl.curve(text, positions, clock="tokens")
    level = np.searchsorted([10000, 50000], positions, side="right")
    np.testing.assert_allclose(values["lr"], 3e-4 * np.array([1, 1.41, 2])[level], rtol=1e-15)
    np.testing.assert_array_equal(values["batch_size"], np.array([256, 512, 1024])[level])


# --- the case table's programs -----------------------------------------------------------------

from cases import program_params  # noqa: E402
from oracle import expected  # noqa: E402


@pytest.mark.parametrize("case", program_params())
def test_every_program_case_equals_its_formulas(case):
    values = lrdsl.curve(case["program"], np.asarray(case["ticks"], dtype=np.float64), **case.get("options", {}))
    assert sorted(values) == sorted(case["expect"])
    for name, formula in case["expect"].items():
        np.testing.assert_allclose(values[name], expected(formula, case["ticks"]), rtol=1e-12, atol=1e-15,
                                   err_msg=name)


def test_a_program_given_where_one_expression_is_expected_says_so():
    with pytest.raises(lrdsl.LrdslSyntaxError, match="is a program, not one expression") as caught:
        lrdsl.plan("lr = 0.1; kl = 1")
    assert caught.value.column == 4
