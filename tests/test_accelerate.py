"""Hugging Face Accelerate (docs/distributed.md "Hugging Face Accelerate"): the page's commands,
run on two gloo processes; every rank's LRs are those ``lrdsl.curve`` gives one process with
the same global batch.

The example trains on 64 samples with a global batch of 8 (4 per process, or 8 split), so an
epoch of one process with that batch is 8 optimizer steps, 4 with gradient accumulation 2.
"""

import math
import re

import pytest
import torch

import lrdsl
import lrdsl.torch
from distributed_docs import command, records, run

SAMPLES, GLOBAL_BATCH = 64, 8


def steps_per_epoch(accumulation: int = 1) -> int:
    """Optimizer steps of one epoch of a single process whose batch is the global one."""
    return math.ceil(SAMPLES / (GLOBAL_BATCH * accumulation))


def lrs_of(result) -> dict[str, list[list[float]]]:
    """Each expression's LR sequences, one per rank, from the example's JSON lines."""
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, dict[int, list[float]]] = {}
    for record in records(result.stdout):
        found.setdefault(record["expr"], {})[record["rank"]] = record["lrs"]
    for expr, ranks in found.items():
        assert sorted(ranks) == [0, 1], f"{expr}: ranks {sorted(ranks)}"
    return {expr: [ranks[0], ranks[1]] for expr, ranks in found.items()}


def exprs(name: str) -> list[str]:
    return re.findall(r'--expr "([^"]+)"', command(name))


def flag(name: str, option: str) -> str:
    return re.search(rf"--{option} (\S+)", command(name)).group(1)


def expected(expr: str, epochs: int, accumulation: int = 1, **options) -> list[float]:
    """The single-process run with the same global batch: ``lrdsl.curve``, the reference."""
    per_epoch = steps_per_epoch(accumulation)
    steps = epochs * per_epoch
    return lrdsl.curve(expr, steps, total=steps, steps_per_epoch=per_epoch, **options).tolist()


def same(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and got == pytest.approx(want, rel=1e-12, abs=1e-15)


# --- the runs, shared by the assertions -------------------------------------------------------------
@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("accelerate")


@pytest.fixture(scope="module")
def saved(state):
    """The page's first run: four schedules over 5 epochs, saving the state after step 19."""
    return lrs_of(run("accelerate", OUT=str(state)))


@pytest.fixture(scope="module")
def resumed(saved, state):
    return lrs_of(run("accelerate-resume", OUT=str(state)))


@pytest.fixture(scope="module")
def accumulated():
    return lrs_of(run("accelerate-accumulation"))


@pytest.fixture(scope="module")
def split():
    return lrs_of(run("accelerate-split"))


@pytest.fixture(scope="module")
def checked():
    result = run("accelerate-check")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --- every rank follows the single-process curve --------------------------------------------------
@pytest.mark.slow
def test_prepared_after_the_loader(saved):
    """total = epochs · len(prepared loader): `%`, `ep` and bare ticks on both ranks."""
    plain = [e for e in exprs("accelerate") if "plateau" not in e]
    assert len(plain) == 3 and set(plain) <= set(saved)
    for expr in plain:
        want = expected(expr, 5)
        assert want[-1] < want[len(want) // 2] and want[0] == 0  # the schedule runs its course
        for rank, got in enumerate(saved[expr]):
            assert same(got, want), f"{expr}, rank {rank}: {got} != {want}"


@pytest.mark.slow
def test_accumulation_and_prepared_before(accumulated):
    """Gradient accumulation 2, scheduler built before one prepare(model, opt, loader, sched)."""
    assert "--accumulation 2" in command("accelerate-accumulation") and "--before" in command("accelerate-accumulation")
    assert len(exprs("accelerate-accumulation")) == 3 and set(exprs("accelerate-accumulation")) == set(accumulated)
    for expr, ranks in accumulated.items():
        want = expected(expr, 3, accumulation=2)
        assert len(want) == 12
        for rank, got in enumerate(ranks):
            assert same(got, want), f"{expr}, rank {rank}: {got} != {want}"


@pytest.mark.slow
def test_split_batches(split):
    assert "--split-batches" in command("accelerate-split")
    assert len(exprs("accelerate-split")) == 3 and set(exprs("accelerate-split")) == set(split)
    for expr, ranks in split.items():
        want = expected(expr, 3)
        for rank, got in enumerate(ranks):
            assert same(got, want), f"{expr}, rank {rank}: {got} != {want}"


# --- plateau through the prepared object ---------------------------------------------------------
def reductions(losses: list[float], factor: float, patience: int, threshold: float = 1e-4) -> list[float]:
    """The plateau's scale after each report, by its rule (mode min, relative threshold,
    no cooldown): more than ``patience`` reports not below best·(1 − threshold) cut by ``factor``."""
    scale, best, bad, scales = 1.0, math.inf, 0, []
    for value in losses:
        if value < best * (1 - threshold):
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            scale, bad = scale * factor, 0
        scales.append(scale)
    return scales


@pytest.mark.slow
def test_plateau_reports_through_the_prepared_scheduler(saved):
    """Each rank reports its own validation loss; the decision is that of their average."""
    expr = next(e for e in exprs("accelerate") if "plateau(val_loss, 0.5, patience=1)" in e)
    per_rank = [[float(v) for v in epoch.split(":")] for epoch in flag("accelerate", "val-loss").split(",")]
    average = [sum(values) / len(values) for values in per_rank]
    scales = reductions(average, 0.5, 1)
    assert scales == [1, 1, 1, 0.5, 0.5]  # cut at report 3 (after the 4th epoch) ...
    for rank in (0, 1):  # ... which neither rank's own losses would give
        assert reductions([values[rank] for values in per_rank], 0.5, 1) != scales
    epoch = steps_per_epoch()
    bare = expected(expr.split("|")[0], 5)
    want = [bare[t] * (1.0 if t < epoch else scales[t // epoch - 1]) for t in range(len(bare))]
    assert want == pytest.approx(expected(expr, 5, metrics={"val_loss": average}), rel=1e-12)
    for rank, got in enumerate(saved[expr]):
        assert same(got, want), f"rank {rank}: {got} != {want}"


# --- save_state / load_state -----------------------------------------------------------------------
@pytest.mark.slow
def test_load_state_resumes_exactly(saved, resumed):
    """Saved after step 19 and resumed: the concatenated LRs are the uninterrupted run's."""
    k = int(flag("accelerate", "save-at"))
    assert exprs("accelerate-resume") == exprs("accelerate") and set(resumed) == set(saved)
    for expr, ranks in resumed.items():
        for rank, got in enumerate(ranks):
            uninterrupted = saved[expr][rank]
            assert len(uninterrupted) == 40 and len(got) == 40 - k
            assert same(uninterrupted[:k] + got, uninterrupted), f"{expr}, rank {rank}"
    # the plateau's state travelled: its cut (report 3, tick 32) comes after the resume at 19
    plateau = next(e for e in resumed if "plateau" in e)
    assert resumed[plateau][0][32 - k] == pytest.approx(0.5 * expected(plateau.split("|")[0], 5)[32])


# --- the misuse that warns ------------------------------------------------------------------------
@pytest.mark.slow
def test_steps_per_epoch_that_forgets_the_accumulation_warns(checked):
    message = ("lrdsl: steps_per_epoch=16 but an epoch of the prepared loader is 8 optimizer steps "
               "(16 batches / 2 accumulated): pass steps_per_epoch=math.ceil(len(loader) / "
               "accelerator.gradient_accumulation_steps) with the prepared loader")
    assert checked.stderr.count(message) == 1, checked.stderr[-3000:]


# --- the gate, in one process ------------------------------------------------------------------------
def prepared(expr: str, **options):
    """A scheduler after Accelerate's ``prepare`` looked at it (the question it asks is the hook)."""
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = lrdsl.torch.scheduler(opt, expr, **options)
    assert getattr(sched, "_is_accelerate_prepared", False) is True  # prepare_scheduler's question
    return model, opt, sched


def test_a_step_the_grad_scaler_skips_does_not_tick():
    model, opt, sched = prepared("warmup(4) >> 0.1")
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0)
    ticks = []
    for overflow in (False, True, False):
        loss = model(torch.ones(1, 2)).sum() * (math.inf if overflow else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        opt.zero_grad()
        ticks.append(sched.last_epoch)
    assert ticks == [1, 1, 2]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 2 / 4)


def test_one_tick_per_optimizer_step_and_one_report():
    """Stepped twice per optimizer step (as Accelerate's wrapper would on two processes), it
    ticks once; step(metric) without an optimizer step reports and does not tick."""
    model, opt, sched = prepared("0.1 | plateau(val_loss, 0.5, patience=0)")
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    sched.step()
    sched.step()
    assert sched.last_epoch == 1
    sched.step({"val_loss": 1.0})
    sched.step({"val_loss": 1.0})  # one bad report with patience 0: one cut, not two
    assert sched.last_epoch == 1 and sched.get_last_lr() == [pytest.approx(0.05)]


def test_what_the_calls_that_do_not_tick_consumed_is_counted():
    """On a tokens clock under accumulation: every micro-batch's tokens, one tick per step."""
    model, opt, sched = prepared("warmup(100tok) >> 0.1", clock="tokens")
    sched.step(tokens=10)  # micro-batches while gradients accumulate: no optimizer step
    sched.step(tokens=10)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    sched.step(tokens=10)
    assert sched.last_epoch == 1 and sched.get_last_lr() == [pytest.approx(0.1 * 30 / 100)]
