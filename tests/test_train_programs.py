"""The training app's programs: free values (dropout, ema, batch_size) as keys of ``schedule``,
the samples clock, the ema_cosine and batch_ramp presets, their lr.csv columns and resume.

Expected values are formulas written here; lrdsl.curve is the reference the run's logged
values are compared with as well."""

import os
import subprocess

import numpy as np
import pytest

import lrdsl
from lrdsl.train.config import compose
from test_train import BIN, rows
from test_train_resume import without_seconds

N = 1437  # training digits (1797, val_fraction 0.2)
EPOCHS = 2
T = EPOCHS * N  # the run's length in samples
EMA = "anneal(0.9, 0.99, 100%)"
DROPOUT = "linear(0.5, 0.1, 100%)"
#: batch_ramp with an EMA and a scheduled dropout: every free value the app reads, on the samples clock
PROGRAM = ["schedule=batch_ramp", "model.hidden=[16]", f"trainer.epochs={EPOCHS}",
           f'++schedule.ema="{EMA}"', f'++schedule.dropout="{DROPOUT}"']


def start(cwd, out, *overrides) -> subprocess.Popen:
    """``lrdsl train`` of :data:`PROGRAM`, started."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LRDSL_FAULT", None)
    return subprocess.Popen([str(BIN / "lrdsl"), "train", *PROGRAM, *overrides, "trainer.progress=false",
                             "trainer.device=cpu", f"hydra.run.dir={out}"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]


def ramp(s):
    """batch_ramp's batch size and LR factor at sample position ``s`` (30 % and 60 % of T)."""
    s = np.asarray(s, dtype=float)
    return (np.where(s < 0.3 * T, 32, np.where(s < 0.6 * T, 64, 128)),
            np.where(s < 0.3 * T, 1.0, np.where(s < 0.6 * T, 1.414, 2.0)))


def anneal(start, end, x):
    return start + (end - start) * (1 - np.cos(np.pi * x)) / 2


# -- configs: no training ----------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["++schedule.momentun=0.9"], "config key schedule.momentun=0.9: a named number called like schedule.momentum "
                                  "misspelt; did you mean schedule.momentum?"),
    (['++schedule.momentun="cosine(0.9, 100%)"'], "did you mean schedule.momentum?"),
    (['++schedule.ema="0.99 | plateau(val_loss)"'], "config key schedule.ema: only the learning rate"),
    (['++schedule.dropout="linear(0.5, 0, 10st)"', "schedule.unit=epoch"],
     "config key schedule.dropout counts optimizer steps (st)"),
    (['++schedule.dropout="linear(0.5,"'], "config key schedule.dropout: syntax error"),
    (['++schedule.kl="0.5"'], "config key schedule.kl='0.5': a schedule's extra keys are named numbers"),
    (['++schedule.dropuot="0.5"'], "did you mean schedule.dropout?"),
    (['++schedule.batch_size="64"'], "config key schedule.batch_size: a batch-size schedule changes the steps an "
                                     "epoch takes, so it runs on the samples clock"),
    (["schedule=batch_ramp", "backend=keras"], "config key schedule.batch_size: backend=keras does not honour"),
    (["schedule=ema_cosine", "backend=keras"], "config key schedule.ema: backend=keras does not honour"),
    (["schedule.clock=samples", "schedule.unit=epoch"], "schedule.clock=samples counts the samples each step draws"),
    (["schedule=batch_ramp", "trainer.strategy=ddp"], "schedule.clock=samples is for trainer.strategy=single"),
    (["schedule.clock=minutes"], "schedule.clock='minutes' is not one of ticks, samples"),
])
def test_bad_program_configs_are_one_line_errors_naming_the_key(overrides, message):
    with pytest.raises(lrdsl.LrdslError) as info:
        compose(overrides)
    first = info.value.pointed().split("\n")[0]
    assert message in first, first


def test_the_app_ends_a_misspelt_target_with_one_line_and_exit_2(capsys, tmp_path):
    from test_train_resume import _run_in_process

    code, lines = _run_in_process(capsys, "++schedule.momentun=0.9", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("lrdsl train: config key schedule.momentun=0.9") and \
        "did you mean schedule.momentum?" in lines[0]


def test_a_free_value_out_of_its_range_is_refused_naming_the_key():
    pytest.importorskip("torch")
    from lrdsl.train.data import load
    from lrdsl.train.torch_loop import _set_up

    cfg = compose(["++schedule.ema='anneal(0.9, 1.5, 100%)'", "trainer.device=cpu"])
    with pytest.raises(lrdsl.LrdslError, match=r"^config key schedule\.ema: .*reaches 1\.5.*at most 1"):
        _set_up(cfg, load(cfg.data))
    cfg = compose(["++schedule.dropout='linear(0.5, 1, 100%)'", "trainer.device=cpu"])
    with pytest.raises(lrdsl.LrdslError, match=r"^config key schedule\.dropout: .*below 1"):
        _set_up(cfg, load(cfg.data))


def test_a_number_under_a_free_value_is_its_constant_and_other_numbers_stay_named_numbers():
    from lrdsl.train.config import free_values

    assert free_values(compose(["++schedule.dropout=0.25"])) == {"dropout": "0.25"}
    assert free_values(compose(["schedule=onecycle"])) == {}  # peak and pct: named numbers


def test_presets_ema_cosine_and_batch_ramp_are_what_their_comments_say():
    from lrdsl.train.config import free_values, tick_units

    cfg = compose(["schedule=ema_cosine", "trainer.epochs=10"])
    _, _, units = tick_units(cfg, 23)
    t = np.arange(230)
    np.testing.assert_allclose(lrdsl.curve(free_values(cfg)["ema"], t, **units), anneal(0.99, 0.999, t / 230),
                               rtol=1e-12)
    cfg = compose(["schedule=batch_ramp", f"trainer.epochs={EPOCHS}"])
    _, _, units = tick_units(cfg, 23, N)
    assert units == {"clock": "samples", "total": T, "samples_per_epoch": N}
    s = np.arange(0, T, 7)
    size, factor = ramp(s)
    got = lrdsl.curve(str(lrdsl.program({"lr": cfg.schedule.expr, **free_values(cfg)})), s, **units)
    np.testing.assert_array_equal(got["batch_size"], size)
    np.testing.assert_allclose(got["lr"], 0.05 * factor, rtol=1e-12)


def test_ema_averages_with_each_updates_decay():
    torch = pytest.importorskip("torch")
    from lrdsl.train.torch_loop import Ema

    model = torch.nn.Linear(3, 2)
    ema = Ema(model)
    expected = [p.detach().clone() for p in model.parameters()]
    for decay in (0.5, 0.9, 0.99, 1.0):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model, decay)
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, model.parameters())]
        for got, want in zip(ema.model.parameters(), expected):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert ema.decay == 1.0


def test_set_dropout_sets_every_dropout_layer_of_the_app_models():
    pytest.importorskip("torch")
    from torch import nn

    from lrdsl.train.data import load
    from lrdsl.train.torch_loop import build_model, set_dropout

    cfg = compose(["model=cnn", "model.hidden=[8, 8]"])
    model = build_model(cfg.model, load(cfg.data))
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    set_dropout(layers, 0.375)
    assert len(layers) == 2 and all(m.p == 0.375 for m in model.modules() if isinstance(m, nn.Dropout))


# -- runs ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def program_runs(tmp_path_factory):
    """The program run uninterrupted, and the same stopped after epoch 1 and resumed in place."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("program")
    whole, cut = root / "whole", root / "cut"
    running = [start(root, whole), start(root, cut, "trainer.stop_after=1")]  # side by side
    for process in running:
        finished(process)
    finished(start(root, cut, f"trainer.resume={cut / 'checkpoint.pt'}"))
    return whole, cut


@pytest.mark.slow
def test_batch_ramp_draws_batches_of_batch_size_at_the_sample_position_and_lr_csv_equals_curve(program_runs):
    whole, _ = program_runs
    lr = rows(whole / "lr.csv")
    assert list(lr[0]) == ["tick", "lr", "batch_size", "dropout", "ema", "samples"]
    s = np.array([float(r["samples"]) for r in lr])
    assert [int(r["tick"]) for r in lr] == list(range(len(lr)))
    size, factor = ramp(s)
    drawn = np.diff(np.append(s, T))  # what each step drew: the position it moved the clock by
    epoch_end = (s // N + 1) * N
    np.testing.assert_array_equal(drawn, np.minimum(size, epoch_end - s))
    assert N in s and drawn[list(s).index(N) - 1] < size[list(s).index(N) - 1]  # epoch 1's last batch: short
    column = {name: np.array([float(r[name]) for r in lr]) for name in lr[0]}
    np.testing.assert_array_equal(column["batch_size"], size)
    np.testing.assert_allclose(column["lr"], 0.05 * factor, rtol=1e-12)
    np.testing.assert_allclose(column["ema"], anneal(0.9, 0.99, s / T), rtol=1e-12)
    np.testing.assert_allclose(column["dropout"], 0.5 + (0.1 - 0.5) * s / T, rtol=1e-12)
    program = lrdsl.program({"lr": "0.05 * piecewise([30%, 60%], [1, 1.414, 2])", "ema": EMA, "dropout": DROPOUT,
                             "batch_size": "piecewise([30%, 60%], [32, 64, 128])"})
    reference = lrdsl.curve(program, s, clock="samples", total=T, samples_per_epoch=N)
    for name, values in reference.items():
        np.testing.assert_allclose(column[name], values, rtol=1e-12, err_msg=name)


@pytest.mark.slow
def test_an_ema_run_logs_val_acc_ema_and_draws_a_panel_per_channel(program_runs):
    whole, _ = program_runs
    metrics = rows(whole / "metrics.csv")
    assert list(metrics[0]) == ["epoch", "lr", "loss", "val_loss", "val_acc", "val_acc_ema", "seconds"]
    assert len(metrics) == EPOCHS and all(0 < float(r["val_acc_ema"]) <= 1 for r in metrics)
    assert [r["val_acc_ema"] for r in metrics] != [r["val_acc"] for r in metrics]
    from PIL import Image

    width, _ = Image.open(whole / "curves.png").size
    assert width > 90 * (14 + 4 * 3) * 0.9  # lr, three channel panels, loss, accuracy


@pytest.mark.slow
def test_a_program_run_resumed_mid_run_continues_exactly(program_runs):
    whole, cut = program_runs
    assert without_seconds(cut / "metrics.csv") == without_seconds(whole / "metrics.csv")
    assert (cut / "lr.csv").read_bytes() == (whole / "lr.csv").read_bytes()


def test_keras_set_dropout_takes_effect_in_the_next_fit():
    keras = pytest.importorskip("keras")
    from lrdsl.train.keras_loop import scheduled_dropout, set_dropout

    keras.utils.set_random_seed(0)
    x = np.random.RandomState(0).normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), scheduled_dropout(keras)(0.0),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    def train_loss():  # lr 0: the weights stay; the loss differs from evaluate's only by dropout
        return model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0).history["loss"][0]

    evaluated = model.evaluate(x, y, batch_size=64, verbose=0)
    assert train_loss() == pytest.approx(evaluated, rel=1e-6)
    set_dropout(model, dropouts, 0.9)
    assert dropouts[0].rate == 0.9 and train_loss() != pytest.approx(evaluated, rel=1e-3)
    set_dropout(model, dropouts, 0.0)
    assert train_loss() == pytest.approx(evaluated, rel=1e-6)


def test_a_checkpoint_manifest_holds_the_free_values_and_clock_and_rebase_names_them(tmp_path):
    from lrdsl.train import checkpoint as ckpt
    from lrdsl.train.data import load

    cfg = compose(["trainer.epochs=3"])
    data = load(cfg.data)
    old = ckpt.manifest(cfg, data, backend="torch", epochs_done=1, ticks_done=6, units={"total": 18})
    assert old["config"]["schedule.free"] is None and old["config"]["schedule.clock"] == "ticks"
    before_programs = {**old, "config": {k: v for k, v in old["config"].items()
                                         if k not in ("schedule.free", "schedule.clock")}}
    ckpt.check_manifest(before_programs, old, tmp_path)  # a checkpoint from before programs: the same run
    new = ckpt.manifest(compose(["trainer.epochs=3", f'++schedule.ema="{EMA}"']), data, backend="torch",
                        epochs_done=0, ticks_done=0, units={"total": 18})
    assert new["config"]["schedule.free"] == {"ema": str(lrdsl.parse(EMA))}
    with pytest.raises(lrdsl.LrdslError, match=r"schedule\.free=null; this run has schedule\.free=.*rebase=true"):
        ckpt.check_manifest(old, new, tmp_path)
    ckpt.check_manifest(old, new, tmp_path, rebase=True)

    class Now:
        def value(self, name):
            return {"ema": 0.925}[name]

        def get_last(self, target):
            return [0.05]

    lines = ckpt.rebase_lines(old, new, {"lr": 0.05, "momentum": 0.9, "beta2": None, "weight_decay": 0.0}, Now())
    assert f"rebase at tick 6: ema unscheduled -> {lrdsl.parse(EMA)} (now 0.925)" in lines


@pytest.mark.slow
def test_keras_run_sets_the_dropout_rate_of_each_epochs_first_tick(tmp_path):
    pytest.importorskip("keras")
    from test_train import run_train

    out, _ = run_train(tmp_path, "backend=keras", "model.hidden=[16]", "model.dropout=0", "trainer.batch_size=256",
                       "trainer.epochs=3", f'++schedule.dropout="{DROPOUT}"')
    lr = rows(out / "lr.csv")
    assert list(lr[0]) == ["tick", "lr", "dropout"]
    steps = 6  # ceil(1437 / 256)
    t = np.array([int(r["tick"]) for r in lr])
    np.testing.assert_array_equal(t, np.arange(3 * steps))
    first = t // steps * steps  # the epoch's first tick
    np.testing.assert_allclose([float(r["dropout"]) for r in lr], 0.5 + (0.1 - 0.5) * first / (3 * steps),
                               rtol=1e-12)
    np.testing.assert_allclose([float(r["dropout"]) for r in lr],
                               lrdsl.curve(DROPOUT, first, steps_per_epoch=steps, total=3 * steps), rtol=1e-12)
