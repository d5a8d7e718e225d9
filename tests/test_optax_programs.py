"""optax with programs and clocks (LANGUAGE.md §8, §9; docs/optax.md).

Every channel of ``lrdsl.optax.schedules`` at every position equals the reference evaluator
``lrdsl.curve(program, positions, clock=…)`` (float64 1e-12, float32 4e-6: LANGUAGE.md §5);
the transform's counters follow what each jitted update consumed, and the LR it applies under a
batch-size ramp equals a closed form written here at every token position, up to 10¹⁰ tokens,
where a float32 count could not tell two neighbouring positions apart.
"""

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

import lrdsl  # noqa: E402
import lrdsl.optax  # noqa: E402
from lrdsl.errors import UnitError  # noqa: E402
from lrdsl.optax import Count  # noqa: E402

from tolerances import PRECISIONS, assert_close  # noqa: E402


def counts(positions):
    """Positions as a batch of two-word counts (what the transform keeps; exact to 2⁵³)."""
    high, low = np.divmod(np.asarray(positions, np.int64), lrdsl.optax.WORD)
    return Count.of_words(high, low)


# --- schedules: every channel at every position is lrdsl.curve's ---------------------------------

LLM = ("lr = warmup(20M tok) >> cosine(3e-4, 1B tok, min=3e-5)\n"
       "batch_size = piecewise([100M tok, 500M tok], [256, 512, 1024])\n"
       "kl = min(linear(0, 1, 2B tok), 1)\n"
       "ema = anneal(0.996, 1, 10B tok)\n"
       "seq_len = linear(1024, 4096, 3B tok)\n")
#: positions a float32 count cannot hold (past 2²⁴), either side of every boundary, up to 1e10
TOKENS = sorted({0, 1, 2, 2 ** 24 - 1, 2 ** 24 + 1, 19_999_999, 20_000_000, 20_000_001,
                 99_999_999, 100_000_000, 120_000_001, 499_999_999, 500_000_000, 987_654_321,
                 1_019_999_000, 1_019_999_999, 1_020_000_000, 1_020_000_001, 1_999_999_999,
                 2_000_000_000, 2 ** 31 + 5, 2_999_999_999, 3_000_000_000, 5_000_000_001,
                 9_999_999_999, 10 ** 10}
                | set(range(1_000_000_000, 1_020_000_000, 999_983)))

CLOCKS = [
    ("tokens", LLM, TOKENS, {}),
    ("samples", "lr = warmup(64 sp) >> cosine(0.1, 10k sp)\nkl = linear(0, 1, 2ep)\n"
                "batch_size = piecewise([1k sp, 5k tok], [8, 16, 32])",
     list(range(0, 12_000, 37)) + [2 ** 40], {"samples_per_epoch": 5000, "tokens_per_sample": 2}),
    ("ticks", "lr = warmup(5) >> cosine(0.1, 95)\ndropout = linear(0.1, 0, 1ep)\n"
              "batch_size = step(7, 30, factor=2.5, d=80)",
     list(range(0, 130)), {"steps_per_epoch": 50}),
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("clock, source, positions, options", CLOCKS, ids=[c[0] for c in CLOCKS])
def test_every_channel_at_every_position_is_curve(clock, source, positions, options, precision):
    x64, tolerance = PRECISIONS[precision]
    want = lrdsl.curve(source, np.asarray(positions, np.float64), clock=clock, **options)
    functions = lrdsl.optax.schedules(source, clock=clock, **options)
    assert list(functions) == list(want)
    with jax.enable_x64(x64):
        at = counts(positions) if clock != "ticks" else jnp.asarray(positions, jnp.int32)
        got = jax.jit(lambda c: {name: jax.vmap(f)(c) for name, f in functions.items()})(at)
    for name in want:
        assert got[name].dtype == (jnp.float64 if x64 else jnp.float32)
        assert_close(got[name], want[name], tolerance, name)
    integer = [name for name in want if lrdsl.channels.channel(name).integer]
    assert integer
    for name in integer:  # read rounded in-graph, as curve reads them
        assert np.array_equal(np.asarray(got[name], np.float64), want[name]), name


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_position_of_any_integer_dtype_or_a_python_int(precision):
    x64, tolerance = PRECISIONS[precision]
    lr = lrdsl.optax.schedules("lr = cosine(3e-4, 1B tok)", clock="tokens")["lr"]
    with jax.enable_x64(x64):
        small = [lr(jnp.asarray(999_000_000, d)) for d in ("int32", "uint32", "float32")]
        large = [lr(10 ** 10 - 1), lr(999_999_999)]  # Python ints, past int32 with x64 off
    for got in small:
        assert_close(got, lr_at(999_000_000), tolerance)
    assert float(large[0]) == 0.0
    assert_close(large[1], lr_at(999_999_999), tolerance)
    assert float(large[1]) > 0


def test_schedule_of_an_expression_takes_the_clock_and_constants():
    lr = lrdsl.optax.schedule("cosine(0.1, 10sp)", clock="tokens", tokens_per_sample=100)
    assert [float(lr(t)) for t in (0, 500, 1000)] == pytest.approx([0.1, 0.05, 0.0], rel=1e-6)
    plain = lrdsl.optax.schedule("warmup(2) >> 0.1")  # the ticks clock as before
    assert [round(float(plain(jnp.int32(t))), 6) for t in range(3)] == [0.0, 0.05, 0.1]


# --- Count: two int32 words --------------------------------------------------------------------

@pytest.mark.parametrize("x64", [False, True])
def test_a_count_adds_exactly_across_its_words(x64):
    with jax.enable_x64(x64):
        steps = [2 ** 30 - 1, 1, 2 ** 31 - 1, 7, 2 ** 30, 123_456_789]
        total = Count.of(0)
        add = jax.jit(lambda c, n: c.plus(n))
        for n in steps:
            total = add(total, jnp.asarray(n, jnp.int32))
        assert int(total) == sum(steps)
        assert int(Count.of(10 ** 10).plus(3 * 10 ** 9)) == 13 * 10 ** 9
        assert int(Count.of(5).plus(jnp.float32(2.6))) == 8  # a float count, rounded
        assert int(Count.of(2 ** 53)) == 2 ** 53
    with pytest.raises(lrdsl.LrdslError, match="2\\*\\*53"):
        Count.of(2 ** 53 + 1)


# --- the transform on a tokens clock under a batch-size ramp --------------------------------------

#: batch × SEQ_LEN is a multiple of 2 and no higher power: past 2³⁰ float32 would round every position
RAMP = ("lr = cosine(3e-4, 1B tok)\n"
        "batch_size = piecewise([100M tok, 500M tok], [250, 500, 1000])\n"
        "kl = min(linear(0, 1, 2B tok), 1)")
SEQ_LEN = 4099  # prime: positions are no multiples of a power of two


def lr_at(p):
    """cosine(3e-4, 1B tok) at token position p (LANGUAGE.md §2: min 0, held at t = d):
    3e-4·(1 + cos(πx))/2, written 3e-4·sin²(π(1 − x)/2) so that the tail, where 1 + cos
    cancels, keeps float64's precision."""
    left = max(10 ** 9 - p, 0) / 1e9  # exact: p is an integer
    return 3e-4 * math.sin(math.pi * left / 2) ** 2


def batch_at(p):
    return 250 if p < 1e8 else 500 if p < 5e8 else 1000


def run_ramp(x64: bool, steps: int):
    """``steps`` jitted updates in one scan; each reads batch_size from the state and consumes
    batch × SEQ_LEN tokens.  Returns the LR, batch size and kl each update saw, and the state."""
    tx = lrdsl.optax.transform(RAMP, clock="tokens")
    with jax.enable_x64(x64):
        grad = jnp.ones([], jnp.result_type(float))

        def body(state, _):
            batch = state.values["batch_size"]
            kl = state.values["kl"]
            updates, state = tx.update(grad, state, tokens=batch.astype(jnp.int32) * SEQ_LEN)
            return state, (-updates, batch, kl)

        state, (lrs, batches, kls) = jax.jit(
            lambda s: jax.lax.scan(body, s, None, length=steps))(tx.init(grad))
    return (np.asarray(lrs, np.float64), np.asarray(batches, np.float64),
            np.asarray(kls, np.float64), state)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_batch_size_ramp_on_a_tokens_clock_follows_the_closed_form(precision):
    x64, tolerance = PRECISIONS[precision]
    steps = 2700  # ≈ 1.03e10 tokens: past the cosine's end and 2³³
    lrs, batches, kls, state = run_ramp(x64, steps)
    positions, p = [], 0
    for _ in range(steps):  # the schedule's own ramp, by hand
        positions.append(p)
        p += batch_at(p) * SEQ_LEN
    assert p > 10 ** 10
    assert int(state.counters["tokens"]) == p
    assert int(state.counters["samples"]) == 0  # not derived from tokens (docs/optax.md)
    assert int(state.count) == steps
    assert batches.tolist() == [batch_at(q) for q in positions]
    assert_close(lrs, [lr_at(q) for q in positions], tolerance, "lr")
    assert_close(kls, [min(q / 2e9, 1.0) for q in positions], tolerance, "kl")
    near_end = [q for q in positions if 9.9e8 < q < 1e9]
    assert near_end and 1e9 - near_end[-1] < 5e6  # the tail float32 alone would get wrong
    with jax.enable_x64(x64):
        after = lrdsl.optax.learning_rate(RAMP, state, clock="tokens")
    assert_close(after, lr_at(p), tolerance, "learning_rate")


def test_the_transform_counts_in_a_chain_and_from_fixed_constants():
    source = "lr = cosine(0.1, 1k tok)\nkl = linear(0, 1, 40sp)"
    tx = optax.chain(optax.scale_by_adam(), lrdsl.optax.transform(
        source, clock="tokens", tokens_per_sample=50))
    params = jnp.zeros(2)
    state = tx.init(params)
    for _ in range(3):  # 4 samples of 50 tokens each update
        _, state = tx.update(jnp.ones(2), state, params, samples=4)
    mine = state[1]
    assert (int(mine.counters["samples"]), int(mine.counters["tokens"])) == (12, 600)
    assert float(mine.values["kl"]) == pytest.approx(600 / 2000)
    fixed = lrdsl.optax.transform(source, clock="tokens", tokens_per_sample=50, tokens_per_step=128)
    state = fixed.init(params)
    updates, state = fixed.update(jnp.ones(2), state)
    updates, state = fixed.update(jnp.ones(2), state)
    assert int(state.counters["tokens"]) == 256
    assert float(-updates[0]) == pytest.approx(0.1 * (1 + math.cos(math.pi * 128 / 1000)) / 2, rel=1e-6)


def test_a_plateau_on_a_tokens_clock():
    tx = lrdsl.optax.transform("cosine(1, 10k tok) | plateau(loss, 0.5, patience=0)", clock="tokens")
    state = tx.init(jnp.zeros(1))
    lrs = []
    for value in (1.0, 2.0, None):
        updates, state = tx.update(jnp.ones(1), state, tokens=1000,
                                   **({} if value is None else {"value": value}))
        lrs.append(-float(updates[0]))
    want = [(1 + math.cos(math.pi * p / 1e4)) / 2 for p in (0, 1000, 2000)]
    assert lrs == pytest.approx([want[0], want[1], want[2] * 0.5], rel=1e-6)


def test_on_a_ticks_clock_nothing_changes():
    tx = lrdsl.optax.transform("warmup(2) >> 0.1")
    state = tx.init(jnp.zeros(1))
    assert state.counters == {} and state.values == {}
    assert len(jax.tree.leaves(state)) == 1  # the tick alone, as before
    updates, state = tx.update(jnp.ones(1), state, tokens=10)  # a count is ignored on ticks
    assert state.counters == {} and int(state.count) == 1
    free = lrdsl.optax.transform("lr = 0.1\nkl = linear(0, 1, 4)")
    state = free.init(jnp.zeros(1))
    seen = []
    for _ in range(3):
        seen.append(float(state.values["kl"]))
        _, state = free.update(jnp.ones(1), state)
    assert seen == [0.0, 0.25, 0.5]


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lrdsl.optax.schedules, lrdsl.optax.transform])
def test_a_bare_number_on_a_tokens_clock_is_a_unit_error(make):
    with pytest.raises(UnitError) as error:
        make("lr = warmup(2000) >> cosine(3e-4, 1B tok)", clock="tokens")
    for word in ("lr: ", "warmup(2000)", "'d'", "bare number", "tokens clock"):
        assert word in str(error.value)


@pytest.mark.parametrize("make", [lrdsl.optax.schedules, lrdsl.optax.transform])
def test_a_missing_constant_is_a_unit_error_naming_call_argument_constant(make):
    with pytest.raises(UnitError) as error:
        make("lr = 0.1\nkl = linear(0, 1, 10ep)", clock="tokens")
    for word in ("kl: ", "linear(0,1,10ep)", "'d'", "tokens_per_epoch"):
        assert word in str(error.value)
    with pytest.raises(UnitError, match="'d'.*tokens_per_sample"):
        lrdsl.optax.schedule("cosine(0.1, 10sp)", clock="tokens")


def test_an_update_that_says_nothing_consumed_on_a_tokens_clock_is_refused():
    tx = lrdsl.optax.transform("cosine(0.1, 1k tok)", clock="tokens")
    state = tx.init(jnp.zeros(1))
    with pytest.raises(lrdsl.LrdslError, match="tokens=n.*tokens_per_step"):
        tx.update(jnp.ones(1), state)
    ticks_state = lrdsl.optax.transform("cosine(0.1, 10)").init(jnp.zeros(1))
    with pytest.raises(lrdsl.LrdslError, match="no tokens counter"):
        tx.update(jnp.ones(1), ticks_state, tokens=5)


@pytest.mark.parametrize("source, match", [
    ("lr = 0.1\nmomentum = 0.9", "momentum is an optimizer hyperparameter"),
    ("kl = linear(0, 1, 10)", "has no lr"),
    ("lr = 0.1\nkl = 0.5 | plateau(loss)", "only lr may carry"),
])
def test_what_the_transform_cannot_write_is_refused(source, match):
    with pytest.raises(lrdsl.LrdslError, match=match):
        lrdsl.optax.transform(source)


def test_a_plateau_in_schedules_points_to_the_transform():
    with pytest.raises(lrdsl.LrdslError, match="lr: .*lrdsl.optax.transform"):
        lrdsl.optax.schedules("lr = 0.1 | plateau(loss)\nkl = 0.5")


def test_a_free_value_outside_its_range_is_refused():
    with pytest.raises(lrdsl.LrdslError, match="ema: .*at most 1"):
        lrdsl.optax.schedules("lr = 0.1\nema = linear(0.99, 1.01, 10)")
    with pytest.raises(lrdsl.LrdslError, match="batch_size: .*integer"):
        lrdsl.optax.schedules("lr = 0.1\nbatch_size = linear(0, 8, 10)")


def test_the_state_survives_a_host_round_trip_and_resumes_the_same_values():
    tx = lrdsl.optax.transform(RAMP, clock="tokens")
    step = jax.jit(lambda s: tx.update(jnp.ones([]), s,
                                       tokens=s.values["batch_size"].astype(jnp.int32) * SEQ_LEN))
    state, straight, resumed = tx.init(jnp.ones([])), [], []
    for _ in range(40):
        updates, state = step(state)
        straight.append(float(updates))
    state = tx.init(jnp.ones([]))
    for i in range(40):
        if i == 20:  # to the host and back, the counters as Python ints in between
            saved = jax.device_get(state)
            tokens = int(saved.counters["tokens"])
            state = saved._replace(counters={"samples": Count.of(0), "tokens": Count.of(tokens)})
        updates, state = step(state)
        resumed.append(float(updates))
    assert resumed == straight


# --- the case table's programs, each channel jitted, float32 and float64 -----------------------------

from cases import program_params  # noqa: E402
from oracle import expected  # noqa: E402


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize("case", program_params())
def test_every_program_case_in_optax(case, x64):
    options = dict(case.get("options", {}))
    with jax.enable_x64(x64):
        schedules = lrdsl.optax.schedules(case["program"], **options)
        assert sorted(schedules) == sorted(case["expect"])
        for name, formula in case["expect"].items():
            fn = jax.jit(schedules[name])
            got = [float(fn(int(t))) for t in case["ticks"]]
            want = expected(formula, case["ticks"])
            np.testing.assert_allclose(got, want, rtol=1e-12 if x64 else 4e-6,
                                       atol=1e-15 if x64 else 1e-12 * max(want), err_msg=name)
