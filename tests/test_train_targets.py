"""The training app's schedule targets (momentum, beta2, weight decay), their presets, lr.csv
columns, and ``trainer.rebase=true``: a checkpoint continued under an edited schedule."""

import inspect
import math
import re

import numpy as np
import pytest

import lrdsl
from lrdsl.train.config import compose
from test_train import rows, run_train
from test_train_resume import _run_in_process

TINY = ["model.hidden=[16]", "trainer.batch_size=256", "trainer.epochs=3"]
STEPS = 6  # ceil(1437 training digits / 256)
TOTAL = 3 * STEPS
WD = "anneal(0.0001, 0.001, 100%)"


def _column(path, name):
    return [float(r[name]) for r in rows(path)]


def _torch_run(cfg, steps_per_epoch=23, epochs=10):
    """(optimizer, scheduler) as the torch loop builds them for ``cfg``, per step."""
    torch = pytest.importorskip("torch")
    from lrdsl.train.config import targets
    from lrdsl.train.torch_loop import build_optimizer

    optimizer = build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    units = {"steps_per_epoch": steps_per_epoch, "total": epochs * steps_per_epoch}
    return optimizer, lrdsl.torch.scheduler(optimizer, cfg.schedule.expr, **targets(cfg), **units), units


def _values(optimizer, target):
    group = optimizer.param_groups[0]
    if target in ("momentum", "beta2") and "betas" in group:
        return group["betas"][0 if target == "momentum" else 1]
    return group[target]


# -- presets: no training ---------------------------------------------------------------------

def test_every_preset_with_targets_composes_plans_and_each_target_equals_curve():
    seen = set()
    for option in ("onecycle", "cyclic", "dino", "wsd"):
        cfg = compose([f"schedule={option}", "trainer.epochs=10"])
        optimizer, sched, units = _torch_run(cfg)
        driven = {"lr": cfg.schedule.expr, **{t: cfg.schedule[t] for t in ("momentum", "beta2", "weight_decay")
                                              if cfg.schedule[t] is not None}}
        seen |= set(driven)
        got = {t: [] for t in driven}
        for _ in range(230):
            for t in driven:
                got[t].append(_values(optimizer, t))
            sched.step()
        for t, expr in driven.items():
            np.testing.assert_allclose(got[t], lrdsl.curve(expr, 230, **units), rtol=1e-12, err_msg=f"{option} {t}")
    assert seen == {"lr", "momentum", "weight_decay"}


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before")
def test_onecycle_and_cyclic_presets_cycle_momentum_as_their_pytorch_namesakes():
    torch = pytest.importorskip("torch")
    from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

    for option in ("onecycle", "cyclic"):
        cfg = compose([f"schedule={option}", "trainer.epochs=10"])
        assert cfg.optimizer.name == "sgd" and cfg.optimizer.momentum > 0  # the default sgd_momentum
        ours, sched, _ = _torch_run(cfg)
        native = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        if option == "onecycle":  # OneCycleLR's defaults: momentum 0.95 -> 0.85 -> 0.95
            reference = OneCycleLR(native, max_lr=0.1, total_steps=230)
        else:  # CyclicLR's defaults: momentum 0.9 -> 0.8 -> 0.9 against the LR, 2 epochs up
            reference = CyclicLR(native, base_lr=0.005, max_lr=0.1, step_size_up=2 * 23)
        for tick in range(230):
            for key in ("lr", "momentum"):
                assert ours.param_groups[0][key] == pytest.approx(native.param_groups[0][key], rel=1e-9, abs=1e-15), \
                    (option, key, tick)
            sched.step()
            if tick < 229:  # OneCycleLR refuses a step past total_steps
                reference.step()


def test_dino_picks_adamw_with_rising_weight_decay_and_wsd_cools_down_as_one_minus_sqrt():
    cfg = compose(["schedule=dino", "trainer.epochs=10"])
    assert cfg.optimizer.name == "adamw"
    assert compose(["schedule=dino", "optimizer=sgd_momentum"]).optimizer.name == "sgd"  # yours wins
    n = 230
    t = np.arange(n)
    decay = lrdsl.curve(cfg.schedule.weight_decay, t, steps_per_epoch=23, total=n)
    np.testing.assert_allclose(decay, 0.04 + (0.4 - 0.04) * (1 - np.cos(np.pi * t / n)) / 2, rtol=1e-12)
    wsd = compose(["schedule=wsd"]).schedule.expr
    n = 200
    t = np.arange(n)
    lr = lrdsl.curve(wsd, t, steps_per_epoch=20, total=n)
    warm, cool = 10, 40  # 5 % and 20 % of 200 ticks
    np.testing.assert_allclose(lr[:warm], 0.1 * t[:warm] / warm, rtol=1e-12)
    np.testing.assert_allclose(lr[warm:n - cool], 0.1, rtol=1e-12)
    x = (t[n - cool:] - (n - cool)) / cool
    np.testing.assert_allclose(lr[n - cool:], 0.1 * (1 - np.sqrt(x)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("overrides, message", [
    (["schedule=onecycle", "optimizer=adagrad"],
     "config key schedule.momentum: optimizer.name=adagrad has no momentum to schedule; use one of sgd, rmsprop"),
    (["schedule.beta2=0.99"], "config key schedule.beta2: optimizer.name=sgd has no beta2"),
    (['schedule.momentum="0.9 | plateau(val_loss)"'], "schedule.momentum: only the learning rate"),
    (['schedule.weight_decay="cosine(0.1, 10st)"', "schedule.unit=epoch"],
     "config key schedule.weight_decay counts optimizer steps (st)"),
    (['schedule.momentum="onecycle(0.85,"'], "config key schedule.momentum: "),
    (["trainer.rebase=true"], "trainer.rebase=true continues a checkpoint under a new schedule: it needs trainer.resume"),
])
def test_bad_target_configs_are_one_line_errors(overrides, message):
    with pytest.raises(lrdsl.LrdslError) as info:
        compose(overrides)
    assert message in str(info.value) and "\n" not in str(info.value).split("\n")[0]


def test_restore_logs_fills_a_newly_scheduled_target_and_drops_an_unscheduled_one(tmp_path):
    from lrdsl.train.resume import restore_logs

    (tmp_path / "metrics.csv").write_text("epoch,lr,loss,val_loss,val_acc,seconds\r\n1,0.1,1,1,0.5,1\r\n",
                                          newline="")
    (tmp_path / "lr.csv").write_text("tick,lr,momentum\r\n0,0.1,0.95\r\n1,0.2,0.9\r\n2,0.3,0.85\r\n", newline="")
    out = tmp_path / "out"
    out.mkdir()
    restore_logs(tmp_path, out, 1, 2, ("tick", "lr", "weight_decay"), fill={"weight_decay": 0.0})
    assert (out / "lr.csv").read_text() == "tick,lr,weight_decay\n0,0.1,0.0\n1,0.2,0.0\n"
    with pytest.raises(lrdsl.LrdslError, match="has no column beta2"):
        restore_logs(tmp_path, out, 1, 2, ("tick", "lr", "beta2"), fill={})


# -- training: one torch run with targets, then a rebased resume of its checkpoint --------------

@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory):
    """A 3-epoch onecycle run (momentum + weight decay) stopped after 2 epochs, and its
    checkpoint resumed with trainer.rebase=true under an edited LR, no momentum, another wd."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("targets")
    common = ["schedule=onecycle", *TINY]
    part, _ = run_train(root, *common, f'schedule.weight_decay="{WD}"', "trainer.stop_after=2", name="part")
    rebased, result = run_train(root, *common, 'schedule.expr="onecycle(0.05, 100%)"', "schedule.momentum=null",
                                'schedule.weight_decay="anneal(0.001, 0.01, 100%)"',
                                f"trainer.resume={part / 'checkpoint.pt'}", "trainer.rebase=true", name="rebased")
    return root, part, rebased, result.stdout


@pytest.mark.slow
def test_lr_csv_logs_every_scheduled_target_per_tick_and_curves_png_draws_them(torch_runs):
    _, part, _, _ = torch_runs
    header = (part / "lr.csv").read_text().splitlines()[0]
    assert header == "tick,lr,momentum,weight_decay"
    assert _column(part / "lr.csv", "tick") == list(range(2 * STEPS))
    units = {"steps_per_epoch": STEPS, "total": TOTAL}
    for column, expr in (("lr", "onecycle(0.1, 100%)"), ("momentum", "onecycle(0.85, 100%, start=0.95, end=0.95)"),
                         ("weight_decay", WD)):
        np.testing.assert_allclose(_column(part / "lr.csv", column), lrdsl.curve(expr, 2 * STEPS, **units),
                                   rtol=1e-12, err_msg=column)
    metrics = rows(part / "metrics.csv")
    assert list(metrics[0]) == ["epoch", "lr", "loss", "val_loss", "val_acc", "seconds"]
    assert float(metrics[0]["lr"]) == lrdsl.curve("onecycle(0.1, 100%)", [STEPS - 1], **units)[0]  # its last step
    import matplotlib.image

    assert matplotlib.image.imread(part / "curves.png").shape[1] == (14 + 2 * 4) * 90  # 3 panels + 2 targets


@pytest.mark.slow
def test_a_rebased_resume_continues_under_the_edited_schedule_from_the_checkpoint_tick(torch_runs):
    _, part, rebased, stdout = torch_runs
    units = {"steps_per_epoch": STEPS, "total": TOTAL}
    tick = 2 * STEPS
    old = lambda expr: lrdsl.curve(expr, [tick], **units)[0]  # noqa: E731
    lines = [line for line in stdout.splitlines() if line.startswith("rebase at")]
    assert lines[0] == (f"rebase at tick {tick}: lr {old('onecycle(0.1, 100%)'):.6g} -> "
                        f"{old('onecycle(0.05, 100%)'):.6g} (onecycle(0.1,100%) -> onecycle(0.05,100%))")
    momentum = old("onecycle(0.85, 100%, start=0.95, end=0.95)")
    assert lines[1] == (f"rebase at tick {tick}: momentum {momentum:.6g} -> {momentum:.6g} "
                        f"(onecycle(0.85,100%,start=0.95,end=0.95) -> unscheduled, kept)")
    assert lines[2].startswith(f"rebase at tick {tick}: weight_decay {old(WD):.6g} -> "
                               f"{old('anneal(0.001, 0.01, 100%)'):.6g} (anneal(0.0001,0.001,100%) -> ")
    assert len(lines) == 3
    # the ticks before the switch are the checkpointed run's, those after the new schedule's
    assert (rebased / "lr.csv").read_text().splitlines()[0] == "tick,lr,weight_decay"
    assert _column(rebased / "lr.csv", "tick") == list(range(TOTAL))
    lr, wd = _column(rebased / "lr.csv", "lr"), _column(rebased / "lr.csv", "weight_decay")
    assert lr[:tick] == _column(part / "lr.csv", "lr") and wd[:tick] == _column(part / "lr.csv", "weight_decay")
    np.testing.assert_allclose(lr[tick:], lrdsl.curve("onecycle(0.05, 100%)", TOTAL, **units)[tick:], rtol=1e-12)
    np.testing.assert_allclose(wd[tick:], lrdsl.curve("anneal(0.001, 0.01, 100%)", TOTAL, **units)[tick:],
                               rtol=1e-12)
    assert [int(r["epoch"]) for r in rows(rebased / "metrics.csv")] == [1, 2, 3]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows(rebased / "metrics.csv"))


@pytest.mark.slow
def test_an_edited_schedule_without_rebase_is_one_line_naming_trainer_rebase(torch_runs, tmp_path, capsys,
                                                                             monkeypatch):
    _, part, _, _ = torch_runs
    monkeypatch.chdir(tmp_path)
    checkpoint = part / "checkpoint.pt"
    code, err = _run_in_process(capsys, "schedule=onecycle", *TINY, f'schedule.weight_decay="{WD}"',
                                'schedule.expr="onecycle(0.05, 100%)"', f"trainer.resume={checkpoint}",
                                f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and len(err) == 1, err
    assert err[0] == (f"lrdsl train: trainer.resume: {checkpoint} was saved with schedule.expr='onecycle(0.1,100%)'; "
                      f"this run has schedule.expr='onecycle(0.05,100%)' (pass trainer.rebase=true to continue it "
                      f"under the new schedule from its tick {2 * STEPS})")
    # rebase lets the schedule differ, nothing else
    code, err = _run_in_process(capsys, "schedule=onecycle", *TINY, "model.hidden=[32]", "trainer.rebase=true",
                                f"trainer.resume={checkpoint}", f"hydra.run.dir={tmp_path / 'run2'}")
    assert code == 2 and len(err) == 1 and "was saved with model.hidden=[16]" in err[0], err
    assert not (tmp_path / "run" / "metrics.csv").exists() and not (tmp_path / "run2" / "metrics.csv").exists()


# -- Keras: the same wiring; its callback gains the targets in lrdsl.keras ----------------------

@pytest.mark.slow
def test_keras_run_logs_targets_and_rebases(tmp_path):
    pytest.importorskip("keras")
    import lrdsl.keras

    if "momentum" not in inspect.signature(lrdsl.keras.callback).parameters:
        pytest.skip("lrdsl.keras.callback has no targets yet (momentum=, weight_decay=, rebase=)")
    common = ["backend=keras", "schedule=onecycle", *TINY, f'schedule.weight_decay="{WD}"']
    part, _ = run_train(tmp_path, *common, "trainer.stop_after=1", name="part")
    units = {"steps_per_epoch": STEPS, "total": TOTAL}
    for column, expr in (("lr", "onecycle(0.1, 100%)"), ("momentum", "onecycle(0.85, 100%, start=0.95, end=0.95)"),
                         ("weight_decay", WD)):
        np.testing.assert_allclose(_column(part / "lr.csv", column), lrdsl.curve(expr, STEPS, **units),
                                   rtol=2e-6, atol=1e-9, err_msg=column)  # float32 in Keras
    rebased, result = run_train(tmp_path, *common, 'schedule.expr="onecycle(0.05, 100%)"',
                                f"trainer.resume={part / 'checkpoint.keras'}", "trainer.rebase=true", name="rebased")
    assert re.search(rf"^rebase at tick {STEPS}: lr \S+ -> \S+ \(onecycle\(0.1,100%\) -> onecycle\(0.05,100%\)\)$",
                     result.stdout, re.M), result.stdout
    np.testing.assert_allclose(_column(rebased / "lr.csv", "lr")[STEPS:],
                               lrdsl.curve("onecycle(0.05, 100%)", TOTAL, **units)[STEPS:], rtol=2e-6, atol=1e-9)
