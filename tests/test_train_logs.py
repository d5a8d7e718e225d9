"""trainer.logger=tensorboard on both backends, schedule named numbers, and an Optuna sweep
of them tabled by ``lrdsl compare`` (issue #14, part 2)."""

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lrdsl.errors import LrdslError
from lrdsl.train.config import compose

BIN = Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
EPOCHS, BATCH = 2, 128


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _events(directory):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(Path(directory).glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})  # 0: keep every event
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def tensorboard_runs(tmp_path_factory):
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("tb")
    runs = {}
    for backend in ("torch", "keras"):
        out = root / backend
        result = subprocess.run(
            [str(BIN / "lrdsl"), "train", f"backend={backend}", "schedule=onecycle", "schedule.peak=0.2",
             f"trainer.epochs={EPOCHS}", f"trainer.batch_size={BATCH}", "trainer.logger=tensorboard",
             "trainer.progress=false", f"hydra.run.dir={out}"],
            capture_output=True, text=True, cwd=root, env=ENV, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        runs[backend] = out
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_tensorboard_scalars_per_epoch_and_tick(tensorboard_runs, backend):
    torch = pytest.importorskip("torch")
    out = tensorboard_runs[backend]
    events = _events(out)
    tags = set(events.Tags()["scalars"])
    assert {"learning_rate", "momentum", "loss", "val_loss", "val_acc",
            "tick/learning_rate", "tick/momentum"} <= tags
    # per epoch: steps 1..EPOCHS, the values of metrics.csv (float32 in the event file)
    metrics = _rows(out / "metrics.csv")
    assert len(metrics) == EPOCHS  # the CSV is still written
    for tag, column in (("learning_rate", "lr"), ("loss", "loss"), ("val_loss", "val_loss"),
                        ("val_acc", "val_acc")):
        got = events.Scalars(tag)
        assert [e.step for e in got] == list(range(1, EPOCHS + 1))
        for event, row in zip(got, metrics):
            assert event.value == pytest.approx(float(row[column]), rel=1e-6, abs=1e-12), tag
    # per tick: the LR and momentum torch's own OneCycleLR gives (peak 0.2 from schedule.peak,
    # pct 0.3, div 25, final div 1e4, momentum 0.95 -> 0.85 -> 0.95)
    ticks = events.Scalars("tick/learning_rate")
    total = len(ticks)
    assert [e.step for e in ticks] == list(range(total)) and total % EPOCHS == 0
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.9)
    native = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=total, pct_start=0.3)
    lrs, momenta = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        momenta.append(opt.param_groups[0]["momentum"])
        opt.step()
        native.step()
    assert [e.value for e in ticks] == pytest.approx(lrs, rel=1e-5, abs=1e-9)
    assert [e.value for e in events.Scalars("tick/momentum")] == pytest.approx(momenta, rel=1e-5)
    # the epoch's momentum: its last tick's
    per_epoch = total // EPOCHS
    assert [e.value for e in events.Scalars("momentum")] == pytest.approx(
        [momenta[per_epoch * (e + 1) - 1] for e in range(EPOCHS)], rel=1e-5)


def test_named_numbers_interpolate_and_are_checked():
    cfg = compose(["schedule=onecycle", "schedule.peak=0.3", "schedule.pct=0.25"])
    assert cfg.schedule.expr == "onecycle(0.3, 100%, pct=0.25)"
    assert cfg.schedule.momentum.endswith("pct=0.25)")
    cfg = compose(["schedule.expr='warmup(${schedule.warm}) >> cosine(${schedule.peak}, 100%)'",
                   "+schedule.warm=5", "+schedule.peak=0.05"])
    assert cfg.schedule.expr == "warmup(5) >> cosine(0.05, 100%)"
    for overrides, message in (
            (["schedule=onecycle", "schedule.peak=abc"], "schedule.peak='abc': a schedule's extra keys are named numbers"),
            (["+schedule.unti=epoch"], "did you mean schedule.unit?"),
            (["schedule=onecycle", "schedule.peak=-1"], "schedule.expr"),  # a negative peak: the expression's error
            (["trainer.logger=tb"], "trainer.logger='tb' is not one of csv, tensorboard")):
        with pytest.raises(LrdslError, match=re.escape(message)):
            compose(overrides)


@pytest.mark.slow
def test_optuna_sweep_of_named_numbers_and_compare(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "lrdsl", "train", "-m", "experiment=tune_onecycle", "hydra.sweeper.n_trials=3",
         "trainer.epochs=1", f"trainer.batch_size={BATCH}", "trainer.progress=false", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    import yaml

    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in trials] == ["0", "1", "2"]
    finals, searched = {}, {}
    for trial in trials:
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((trial / ".hydra/overrides.yaml").read_text()))
        peak, pct = float(overrides["schedule.peak"]), float(overrides["schedule.pct"])
        assert 0.01 <= peak <= 1.0 and 0.1 <= pct <= 0.5
        searched[trial.name] = (peak, pct)
        # the trial really ran its sampled peak: the onecycle formula's LR at its first tick
        first_lr = float(_rows(trial / "lr.csv")[0]["lr"])
        assert first_lr == pytest.approx(peak / 25, rel=1e-6)
        finals[trial.name] = float(_rows(trial / "metrics.csv")[-1]["val_loss"])
    # the objective Optuna saw is each trial's final val_loss (what the app returns)
    best = min(finals, key=finals.get)
    assert results["best_value"] == pytest.approx(finals[best])
    assert (results["best_params"]["schedule.peak"], results["best_params"]["schedule.pct"]) == \
        pytest.approx(searched[best])
    table = subprocess.run([str(BIN / "lrdsl"), "compare", str(sweep), "--out", str(tmp_path / "c.png")],
                           capture_output=True, text=True, env=ENV, timeout=120)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["trial", "schedule.peak", "schedule.pct"]
    body = [line.split() for line in lines[1:4]]
    assert [row[0].lstrip("*") for row in body] == sorted(finals, key=finals.get)  # best first
    assert body[0][0] == f"*{best}" and not any(row[0].startswith("*") for row in body[1:])
    for row in body:
        assert float(row[1]) == pytest.approx(searched[row[0].lstrip("*")][0], rel=1e-3)
        assert float(row[4]) == pytest.approx(finals[row[0].lstrip("*")], abs=1e-4)
    assert f"best schedule.peak={searched[best][0]:.4g}" in table.stdout
    assert (tmp_path / "c.png").stat().st_size > 0
