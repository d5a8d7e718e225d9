"""Nothing lost, nothing mixed: run directories, bad data and configs, plots, compare, the
Keras callback's order."""

import csv
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lrdsl

BIN = Path(sys.executable).parent
TINY = ["model.hidden=[16]", "trainer.batch_size=256", "trainer.progress=false"]


def train_in_process(capsys, *overrides, quiet_hydra=True):
    """``lrdsl train`` in this process: (exit code, non-empty stderr lines)."""
    from lrdsl.train import main

    extra = ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # no handlers on capsys's stream
    extra += ["hydra.output_subdir=null"] if quiet_hydra else []
    code = 0
    try:
        main([*overrides, *extra])
    except SystemExit as exit_:
        code = exit_.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# -- every run owns its directory -----------------------------------------------------------

@pytest.mark.slow
def test_two_runs_started_together_in_one_directory_get_separate_clean_runs(tmp_path):
    """Both ask for the same directory at once (as two runs started in the same second do with
    the default outputs/DATE/TIME); each gets its own, with its own complete files."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen([str(BIN / "lrdsl"), "train", *TINY, "trainer.epochs=2",
                                   "hydra.run.dir=${lrdsl.claim:outputs/together}"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    runs = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert runs == ["together", "together-2"]
    ticks = 2 * -(-1437 // 256)  # 2 epochs of ceil(1437 / 256) batches
    for name in runs:
        run = tmp_path / "outputs" / name
        with open(run / "metrics.csv", newline="") as f:
            metrics = list(csv.reader(f))
        assert [r[0] for r in metrics] == ["epoch", "1", "2"] and {len(r) for r in metrics} == {6}
        with open(run / "lr.csv", newline="") as f:
            lrs = list(csv.reader(f))
        assert [int(r[0]) for r in lrs[1:]] == list(range(ticks)) and {len(r) for r in lrs} == {2}
        assert (run / "checkpoint.pt").is_file() and (run / "curves.png").is_file()
        assert (run / ".hydra" / "overrides.yaml").is_file()
    assert sorted(out.split("artifacts: ")[1].split()[0] for out, _ in outputs) == \
        [str(tmp_path / "outputs" / name) for name in runs]


def test_the_default_run_and_sweep_directories_are_claimed(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lrdsl.train import rundir
    from lrdsl.train.config import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        cfg = compose(config_name="train", return_hydra_config=True)
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        assert OmegaConf.to_container(cfg, resolve=False)["hydra"][key.split(".")[1]]["dir"].startswith(
            "${lrdsl.claim:"), key
    assert "lrdsl.train.rundir.OwnRunDir" in str(cfg.hydra.callbacks)
    # claim: the first asker gets the path, the next process path-2, then path-3
    base = str(tmp_path / "12-00-00")
    try:
        assert rundir.claim(base) == base and rundir.claim(base) == base  # stable in one process
        rundir._claimed.clear()  # as another process would start
        assert rundir.claim(base) == base + "-2"
        rundir._claimed.clear()
        assert rundir.claim(base) == base + "-3"
    finally:
        rundir.release()


def test_a_torchrun_rank_other_than_0_has_hydra_write_nothing(tmp_path, monkeypatch):
    """OwnRunDir on rank 1: no run directory of its own (the cwd), no .hydra/, no log file."""
    from hydra import compose, initialize_config_dir

    from lrdsl.train import rundir
    from lrdsl.train.config import conf_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    logger = "+hydra.job_logging.loggers.lrdsl.handlers=[file,console]"  # a logger of the file handler too
    for overrides in ([logger], ["hydra/job_logging=disabled"]):
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = compose(config_name="train", overrides=[*overrides, f"hydra.run.dir={tmp_path / 'run'}"],
                          return_hydra_config=True)
        logging = cfg.hydra.job_logging
        files = [name for name, h in (logging.get("handlers") or {}).items() if "filename" in h]
        assert files == (["file"] if overrides == [logger] else [])  # Hydra's default logs to a file
        rundir.OwnRunDir().on_run_start(cfg)
        assert cfg.hydra.run.dir == str(tmp_path) and cfg.hydra.output_subdir is None
        assert all("filename" not in h for h in (logging.get("handlers") or {}).values())
        if files:
            assert logging.root.handlers == ["console"] and logging.loggers.lrdsl.handlers == ["console"]
    assert list(tmp_path.iterdir()) == []


def test_a_directory_a_live_run_holds_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    busy = tmp_path / "busy"
    busy.mkdir()
    holder = os.open(busy / ".lrdsl.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds it
    monkeypatch.chdir(tmp_path)
    try:
        code, err = train_in_process(capsys, *TINY, f"hydra.run.dir={busy}", quiet_hydra=False)
    finally:
        os.close(holder)
    assert code == 2 and err == [f"lrdsl train: output directory {busy} is in use by another lrdsl run; "
                                 f"give this one its own hydra.run.dir (or wait for that run to end)"]
    assert sorted(p.name for p in busy.iterdir()) == [".lrdsl.lock"]  # no .hydra/, no log


# -- bad data and configs: one line, exit 2, before anything trains -------------------------

def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _bad_inputs(tmp_path):
    rng = np.random.RandomState(0)
    x, y = rng.rand(60, 5), np.arange(60) % 3
    (tmp_path / "text.npz").write_text("not an archive\n")
    np.save(tmp_path / "array.npy", x)
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")
    (tmp_path / "a-file").write_text("")
    return [  # (overrides, the gist of the one line)
        (["data=npz", f"data.path={tmp_path / 'text.npz'}"], "is not a readable .npz file"),
        (["data=npz", f"data.path={tmp_path / 'array.npz'}"], "is a .npy array, not an .npz archive"),
        (["data=npz", f"data.path={_npz(tmp_path, 'keys.npz', a=x, b=y)}"], "needs arrays x and y"),
        (["data=npz", f"data.path={_npz(tmp_path, 'flat.npz', x=x[:, 0], y=y)}"],
         "x must be N×features or N×H×W, got shape (60,)"),
        (["data=npz", f"data.path={_npz(tmp_path, 'neg.npz', x=x, y=y - 1)}"], "y holds a negative label (-1)"),
        (["data=npz", f"data.path={_npz(tmp_path, 'float.npz', x=x, y=y + 0.5)}"],
         "y must hold integer class labels 0, 1, 2, …, got dtype float64 with non-integer values"),
        (["data=npz", f"data.path={_npz(tmp_path, 'sizes.npz', x=x, y=y[:-1])}"], "x has 60 samples but y has 59"),
        (["data=npz", f"data.path={_npz(tmp_path, 'empty.npz', x=x[:0], y=y[:0])}"], "x and y are empty"),
        (["data=npz", f"data.path={_npz(tmp_path, 'nan.npz', x=x * np.nan, y=y)}"], "x holds NaN or infinite values"),
        (["data=npz", f"data.path={_npz(tmp_path, 'one.npz', x=x[:4], y=np.array([0, 1, 2, 2]))}"],
         "cannot split off data.val_fraction=0.2 for validation"),
        (["data=npz", f"data.path={_npz(tmp_path, 'split.npz', x_train=x, y_train=y, x_val=x[:, :2], y_val=y)}"],
         "x_train samples have shape (5,) but x_val samples (2,)"),
        (["data=npz"], "config key data.path: data=npz needs data.path=FILE.npz"),
        (["model.dropout=1.5"], "config key model.dropout must be in [0, 1), got 1.5"),
        (["data.val_fraction=0"], "config key data.val_fraction must be in (0, 1), exclusive, got 0.0"),
        (["optimizer.momentum=-1"], "config key optimizer.momentum must be in [0, 1), got -1.0"),
        (["optimizer.weight_decay=-0.1"], "config key optimizer.weight_decay must be ≥ 0, got -0.1"),
        (["trainer.stop_after=-1"], "config key trainer.stop_after must be ≥ 1 (or null), got -1"),
        (["trainer.stop_after=0"], "config key trainer.stop_after must be ≥ 1 (or null), got 0"),
        (["trainer.seed=-3"], "config key trainer.seed must be in [0, 2³²), got -3"),
        (["model.hidden=[16,0]"], "config key model.hidden must be widths ≥ 1, got [16, 0]"),
        (["trainer.resume=nowhere.pt"], "config key trainer.resume: no checkpoint at nowhere.pt"),
        ([f"hydra.run.dir={tmp_path / 'a-file' / 'run'}"],
         f"output directory {tmp_path / 'a-file' / 'run'} is not writable (Not a directory)"),
    ]


@pytest.mark.slow  # no training, but ~20 in-process Hydra runs
def test_bad_data_and_configs_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for overrides, gist in _bad_inputs(tmp_path):
        run = [] if any(o.startswith("hydra.run.dir") for o in overrides) else [f"hydra.run.dir={tmp_path / 'run'}"]
        code, err = train_in_process(capsys, *TINY, *overrides, *run)
        assert code == 2 and len(err) == 1 and err[0].startswith("lrdsl train: "), (overrides, err)
        assert gist in err[0], (overrides, err[0])
        assert not (tmp_path / "run" / "metrics.csv").exists(), overrides  # nothing trained


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    monkeypatch.chdir(tmp_path)
    code, err = train_in_process(capsys, *TINY, f"hydra.run.dir={locked / 'run'}")
    assert code == 2 and len(err) == 1 and "is not writable" in err[0], err


@pytest.mark.slow
def test_a_bad_file_from_the_command_line_has_no_traceback(tmp_path):
    path = _npz(tmp_path, "flat.npz", x=np.zeros(20), y=np.arange(20) % 2)
    result = subprocess.run([str(BIN / "lrdsl"), "train", "data=npz", f"data.path={path}",
                             f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"lrdsl train: {path}: x must be N×features or N×H×W, "
                                                  f"got shape (20,)"]


# -- logs: a resumed run starts from exactly the checkpoint's rows -------------------------

def test_restore_logs_cuts_at_the_checkpoint_and_drops_a_torn_line(tmp_path):
    from lrdsl.train.resume import restore_logs

    metrics = "epoch,lr,loss,val_loss,val_acc,seconds\r\n" + "".join(
        f"{e},0.1,1.{e},2.{e},0.{e},0.5\r\n" for e in range(1, 5)) + "5,0.1,1."
    lrs = "tick,lr\r\n" + "".join(f"{t},0.0{t}\r\n" for t in range(12)) + "12,0.0"
    (tmp_path / "metrics.csv").write_text(metrics, newline="")
    (tmp_path / "lr.csv").write_text(lrs, newline="")
    restore_logs(tmp_path, tmp_path, epochs_done=2, ticks_done=6)  # in place
    assert (tmp_path / "metrics.csv").read_bytes().decode().split("\r\n") == metrics.split("\r\n")[:3] + [""]
    assert (tmp_path / "lr.csv").read_bytes().decode().split("\r\n") == lrs.split("\r\n")[:7] + [""]
    other = tmp_path / "other"
    other.mkdir()
    restore_logs(tmp_path, other, epochs_done=4, ticks_done=99)  # asks beyond what is there
    assert (other / "metrics.csv").read_text() == (tmp_path / "metrics.csv").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.csv", "metrics.csv", "other"]  # no temporaries


# -- plots: bounded work, exact at boundaries -----------------------------------------------

def test_a_billion_tick_plot_samples_a_bounded_number_of_ticks_exact_at_boundaries(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from lrdsl.plot.image import MAX_POINTS, save_figure

    drawn = []
    original = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append((np.asarray(args[0]), np.asarray(args[1])))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    save_figure("warmup(1000003) >> 0.1", tmp_path / "a.png", ticks=10**9)
    t, lr = drawn[-1]
    assert len(t) <= MAX_POINTS + 2
    assert {1000002.0, 1000003.0} <= set(t.tolist()) and t[0] == 0 and t[-1] == 10**9 - 1
    at = dict(zip(t.tolist(), lr.tolist()))
    assert at[1000002.0] == pytest.approx(0.1 * 1000002 / 1000003, rel=1e-12) and at[1000003.0] == 0.1
    save_figure("cosine(0.1, 1e30)", tmp_path / "b.png", ticks=int(1.1e30))
    t, lr = drawn[-1]
    assert len(t) <= MAX_POINTS + 2 and lr[0] == pytest.approx(0.1)
    np.testing.assert_allclose(lr, 0.05 * (1 + np.cos(np.pi * np.minimum(t / 1e30, 1))), rtol=1e-9, atol=1e-15)
    save_figure("step(0.1, 10, factor=0.5)", tmp_path / "c.png", ticks=100)  # small: every tick
    assert drawn[-1][0].tolist() == list(range(100))


@pytest.mark.slow
def test_parse_plot_of_a_huge_horizon_runs_in_bounded_memory(tmp_path):
    """Under a 2 GiB address-space limit: the old per-tick plot needed 7.45 GiB."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    for args in (["cosine(0.1, 1e30)"], ["--ticks", "1000000000", "warmup(5) >> cosine(0.1, 100)"]):
        result = subprocess.run([str(BIN / "lrdsl"), "parse", "--plot", str(tmp_path / "p.png"), *args],
                                capture_output=True, text=True, preexec_fn=limit, env=env, timeout=120)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert (tmp_path / "p.png").stat().st_size > 10_000


# -- compare: a bad run is a warning, not a traceback ---------------------------------------

def test_compare_skips_unreadable_runs_with_one_line_each(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from lrdsl.cli import main

    header = "epoch,lr,loss,val_loss,val_acc,seconds\n"
    good = header + "1,0.1,2.0,1.9,0.5,1.0\n2,0.05,1.5,1.4,0.7,1.0\n"
    runs = {"0": good, "1": good + "3,0.1,1,2,3,4,5,6,7,8,9\n", "2": "", "3": header + "1,0.1,x,1,1,1\n",
            "4": header, "5": "epoch,lr\n1,0.1\n"}
    for name, text in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(text)
        (tmp_path / name / "lr.csv").write_text("tick,lr\n0,0.1\n1,0.1\n")
    (tmp_path / "0" / "lr.csv").write_text("tick,lr\n")
    (tmp_path / "6").mkdir()
    (tmp_path / "6" / "metrics.csv").write_text(good.replace("0.7", "0.8") + "3,0.1,1.")  # torn last line: left out
    assert main(["compare", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    table = [line.split() for line in out.splitlines()[1:] if line.strip() and not line.startswith("figure")]
    assert [(row[0], row[1], row[-1]) for row in table] == [("6", "2", "0.8000"), ("0", "2", "0.7000")]
    *warnings, note = err.strip().splitlines()
    assert note.startswith(f"lrdsl compare: note: {tmp_path / '6' / 'metrics.csv'} line 4 is torn"), note
    assert [w.split(": ", 2)[1] for w in warnings] == [f"skipping {tmp_path / n}" for n in "12345"], warnings
    assert "line 4 has 11 fields" in warnings[0] and "is empty" in warnings[1] and "not numeric" in warnings[2]
    assert "no epoch rows" in warnings[3] and "lacks column(s) loss" in warnings[4]
    for name in "06":
        (tmp_path / name / "metrics.csv").write_text(header)
    assert main(["compare", str(tmp_path)]) == 2  # nothing left to compare: the CLI's one-line error


# -- the Keras callback's saved state, whatever the callback order --------------------------

@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_first", [True, False])
def test_keras_model_checkpoint_saves_the_reported_plateau_state_in_any_order(tmp_path, checkpoint_first):
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    import lrdsl.keras

    rng = np.random.RandomState(0)
    x, y = rng.rand(256, 8).astype("float32"), rng.randint(0, 3, 256)  # random labels: val_loss stalls
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    schedule = lrdsl.keras.callback("0.5 | plateau(val_loss, 0.5, patience=1, threshold=0.05)")
    saver = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}.keras"))  # one per epoch
    history = model.fit(x[:192], y[:192], validation_data=(x[192:], y[192:]), epochs=6, batch_size=64,
                        verbose=0, callbacks=[saver, schedule] if checkpoint_first else [schedule, saver])
    # PyTorch's own ReduceLROnPlateau, fed the same validation losses
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    native = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1, threshold=0.05, eps=0)
    ran_at, after = [], []  # the LR each epoch ran at (before its own report), and after it
    for value in history.history["val_loss"]:
        ran_at.append(optimizer.param_groups[0]["lr"])
        native.step(value)
        after.append(optimizer.param_groups[0]["lr"])
    assert len(set(after)) >= 3  # reductions at two epochs at least, or the test would prove nothing
    for epoch, expected in enumerate(after, start=1):
        saved = keras.models.load_model(tmp_path / f"m-{epoch}.keras").optimizer._learning_rate
        assert isinstance(saved, lrdsl.keras.Schedule)
        assert saved.lr_at(0) == pytest.approx(expected, rel=1e-12), epoch
    np.testing.assert_allclose(history.history["learning_rate"], ran_at, rtol=1e-12)
