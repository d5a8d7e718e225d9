"""Programs and clocks on the PyTorch scheduler (LANGUAGE.md §8, §9).

Expected values are closed forms written here (and, per channel, the reference evaluator
``lrdsl.curve``, which every backend must equal).
"""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lrdsl  # noqa: E402
import lrdsl.torch  # noqa: E402


def sgd(lr=1.0, momentum=0.9):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=momentum)


PROGRAM = """
lr = warmup(5) >> cosine(0.1, 45)
momentum = anneal(0.95, 0.85, 50)
ema = anneal(0.99, 1, 50)
kl = min(linear(0, 1, 20), 1)
"""


def test_every_channel_equals_the_reference_each_tick():
    optimizer = sgd()
    sched = lrdsl.torch.scheduler(optimizer, PROGRAM)
    want = lrdsl.curve(PROGRAM, 60)
    got = {name: [] for name in want}
    for _ in range(60):
        group = optimizer.param_groups[0]
        got["lr"].append(group["lr"])
        got["momentum"].append(group["momentum"])
        got["ema"].append(sched.value("ema"))
        got["kl"].append(sched.values()["kl"])
        optimizer.step()
        sched.step()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0, err_msg=name)
    # the free values, by formula: kl = t/20 up to 1, ema = 0.99 + 0.01·(1 − cos(π·t/50))/2
    t = np.arange(60)
    np.testing.assert_allclose(got["kl"], np.minimum(t / 20, 1), rtol=1e-12)
    np.testing.assert_allclose(got["ema"], 0.99 + 0.01 * (1 - np.cos(np.pi * np.minimum(t, 50) / 50)) / 2,
                               rtol=1e-12)
    assert "ema" not in optimizer.param_groups[0] and "kl" not in optimizer.param_groups[0]


# --- a tokens clock under a batch-size ramp ------------------------------------------------------

RAMP = """
lr = warmup(10k tok) >> cosine(3e-4, 90k tok)
batch_size = piecewise([20k tok, 50k tok], [4, 8, 16])
"""
SEQ_LEN = 128


def lr_at(position):
    """The closed form of RAMP's lr at a token position."""
    if position < 10_000:
        return 3e-4 * position / 10_000
    return 3e-4 * (1 + math.cos(math.pi * min(position - 10_000, 90_000) / 90_000)) / 2


def batch_at(position):
    return 4 if position < 20_000 else 8 if position < 50_000 else 16


def run(steps, sched=None, optimizer=None, processes=1):
    """Step a RAMP scheduler as a training loop would: draw batch_size samples (split over
    ``processes``, each stepping with the global count), step with the tokens consumed."""
    optimizer = optimizer or sgd()
    sched = sched or lrdsl.torch.scheduler(optimizer, RAMP, clock="tokens")
    seen = []
    for _ in range(steps):
        position = sched.runtime.position
        batch = int(sched.value("batch_size"))
        seen.append((position, optimizer.param_groups[0]["lr"], batch))
        per_process = batch // processes
        optimizer.step()
        sched.step(tokens=per_process * SEQ_LEN * processes)  # the global count
    return seen, sched, optimizer


def test_the_lr_follows_the_token_position_under_a_batch_size_ramp():
    seen, sched, _ = run(200)
    position = 0
    for got_position, lr, batch in seen:
        assert got_position == position
        assert batch == batch_at(position)
        assert lr == pytest.approx(lr_at(position), rel=1e-12, abs=1e-18)
        position += batch * SEQ_LEN
    assert sched.runtime.counters["tokens"] == position
    assert {b for _, _, b in seen} == {4, 8, 16}  # the ramp ran through its stages


@pytest.mark.parametrize("stop", [30, 45, 120])  # before, at and after the ramp's stages
def test_a_resume_mid_ramp_is_exact(stop):
    whole, _, _ = run(160)
    first, sched, _ = run(stop)
    state = sched.state_dict()
    optimizer = sgd()
    resumed = lrdsl.torch.scheduler(optimizer, RAMP, clock="tokens")
    resumed.load_state_dict(state)
    rest, _, _ = run(160 - stop, resumed, optimizer)
    assert first + rest == whole


def test_two_processes_of_half_the_batch_give_the_same_values():
    one, _, _ = run(150)
    two, _, _ = run(150, processes=2)
    assert one == two


# --- a ticks clock resumed on another number of processes ------------------------------------------

def test_a_rebase_onto_more_steps_per_epoch_continues_from_the_same_epoch():
    # 2 processes: 100 steps per epoch; stopped at tick 150 = 1.5 epochs.  Resumed on 1 process with
    # the same per-device batch: 200 steps per epoch, so 1.5 epochs is tick 300.
    expr = "linear(0.1, 0.05, 2ep)"
    sched = lrdsl.torch.scheduler(sgd(), expr, steps_per_epoch=100)
    for _ in range(150):
        sched.step()
    optimizer = sgd()
    resumed = lrdsl.torch.scheduler(optimizer, expr, steps_per_epoch=200)
    with pytest.raises(lrdsl.LrdslError, match="rebase=True"):
        resumed.load_state_dict(sched.state_dict())
    resumed.load_state_dict(sched.state_dict(), rebase=True)
    assert resumed.last_epoch == 300
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 - 0.05 * 1.5 / 2, rel=1e-12)  # 0.0625


def test_a_rebase_that_cannot_carry_the_position_says_what_to_pass():
    sched = lrdsl.torch.scheduler(sgd(), "linear(0.1, 0.05, 200)")
    for _ in range(150):
        sched.step()
    resumed = lrdsl.torch.scheduler(sgd(), "linear(0.1, 0.05, 2ep)", steps_per_epoch=200)
    with pytest.raises(lrdsl.LrdslError, match="steps_per_epoch"):
        resumed.load_state_dict(sched.state_dict(), rebase=True)


def test_a_tokens_clock_resumes_on_a_samples_per_step_change():
    # saved with 4 samples per step, resumed with 8: the token counter carries over as is
    program = "lr = cosine(1, 100k tok)"
    sched = lrdsl.torch.scheduler(sgd(), program, clock="tokens", samples_per_step=4, tokens_per_sample=128)
    for _ in range(50):
        sched.step()  # the fixed per-step size: 512 tokens a step
    assert sched.runtime.counters == {"samples": 200, "tokens": 25_600}
    optimizer = sgd()
    resumed = lrdsl.torch.scheduler(optimizer, program, clock="tokens", samples_per_step=8,
                                    tokens_per_sample=128)
    resumed.load_state_dict(sched.state_dict(), rebase=True)
    assert optimizer.param_groups[0]["lr"] == pytest.approx((1 + math.cos(math.pi * 0.256)) / 2, rel=1e-12)
    resumed.step()
    assert resumed.runtime.counters["tokens"] == 25_600 + 1024


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda s: s.step(), "needs what the step consumed: pass tokens=n"),
    (lambda s: s.step(tokens=-1), "whole count ≥ 0"),
    (lambda s: s.step(tokens=2.5), "whole count ≥ 0"),
    (lambda s: s.step(tokens="10"), "whole count ≥ 0"),
    (lambda s: s.value("nothing"), "no channel 'nothing'"),
])
def test_bad_steps_and_reads_are_lrdsl_errors(make, words):
    sched = lrdsl.torch.scheduler(sgd(), RAMP, clock="tokens")
    with pytest.raises(lrdsl.LrdslError, match=words):
        make(sched)
    assert sched.runtime.counters["tokens"] == 0  # a refused step changes nothing


@pytest.mark.parametrize("program, kwargs, words", [
    ("lr = 0.1\nmomentum = 0.9", {"momentum": "0.8"}, "momentum is given twice"),
    ("lr = 0.1\nema = anneal(0.9, 1.1, 10)", {}, "ema must stay at most 1"),
    ("lr = 0.1\nbatch_size = linear(0, 8, 10)", {}, "batch_size is an integer"),
    ("lr = cosine(0.1, 1000)", {"clock": "tokens"}, "bare number on a tokens clock"),
    ("lr = cosine(0.1, 2ep)", {"clock": "tokens", "samples_per_step": 4}, "tokens_per_epoch"),
])
def test_bad_programs_are_lrdsl_errors(program, kwargs, words):
    with pytest.raises(lrdsl.LrdslError, match=words):
        lrdsl.torch.scheduler(sgd(), program, **kwargs)


def test_a_program_without_lr_leaves_the_lr_alone():
    optimizer = sgd(lr=0.3)
    sched = lrdsl.torch.scheduler(optimizer, "kl = linear(0, 1, 10)")
    for _ in range(5):
        optimizer.step()
        sched.step()
    assert optimizer.param_groups[0]["lr"] == 0.3
    assert sched.value("kl") == pytest.approx(0.5)


# --- the case table's programs, stepped with what each step consumed --------------------------------

from cases import program_params  # noqa: E402
from oracle import expected  # noqa: E402


@pytest.mark.parametrize("case", program_params())
def test_every_program_case_steps_to_its_formulas(case):
    # reach each position of the case by steps: tick by tick, or by what a step consumed
    options = dict(case.get("options", {}))
    clock = options.get("clock", "ticks")
    optimizer = sgd()
    sched = lrdsl.torch.scheduler(optimizer, case["program"], **options)
    for position in case["ticks"]:
        moved = position - sched.runtime.position
        if clock == "ticks":
            for _ in range(moved):
                sched.step()
        elif moved:
            sched.step(**{clock: moved})
        for name, formula in case["expect"].items():
            want = expected(formula, [position])[0]
            got = optimizer.param_groups[0][name] if name in ("lr", "momentum") else sched.value(name)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (name, position)


# --- past the end ----------------------------------------------------------------------------------

def test_a_run_past_total_on_a_percent_schedule_warns_once_with_the_numbers():
    optimizer = sgd()
    sched = lrdsl.torch.scheduler(optimizer, "warmup(25%) >> cosine(0.1, 75%)", total=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(8):  # a run of total steps ends at tick 8: no warning
            optimizer.step()
            sched.step()
        assert not caught
        for _ in range(5):
            optimizer.step()
            sched.step()
    assert len(caught) == 1
    assert "tick 9, past total=8" in str(caught[0].message)
    # without % the total is only a length for the plan: running on is no mistake
    other = lrdsl.torch.scheduler(sgd(), "cosine(0.1, 8)", total=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(12):
            other.step()
    assert not caught
