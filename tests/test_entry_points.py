"""Every entry point is total: a full disk, a stray Unicode digit, a list where a number or an
expression belongs, a torn CSV line — each is one line (exit 2), never a traceback, and
nothing a run had written is lost.

The full-disk runs are real: a tmpfs a few pages large (skipped where ``mount`` is not
allowed), and ``/dev/full`` (ENOSPC on every write) everywhere else.
"""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lrdsl
from lrdsl.errors import LrdslError

TINY = ["model.hidden=[16]", "trainer.batch_size=256", "trainer.epochs=4", "trainer.progress=false"]


def lrdsl_cli(*args, cwd=None, env=None):
    """``lrdsl ARGS`` as a subprocess: (exit code, stdout, stderr)."""
    source = str(Path(lrdsl.__file__).resolve().parents[1])  # this checkout, not an installed copy
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", **(env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    env.pop("LRDSL_FAULT", None)
    done = subprocess.run([sys.executable, "-m", "lrdsl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def without_seconds(path: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


def real_stderr(stderr: str) -> list[str]:
    """stderr without TensorFlow's start-up chatter (absl and oneDNN notes)."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(("WARNING: All log messages", "I0000", "W0000", "E0000"))]


# -- a full disk ----------------------------------------------------------------------------

def _epoch_files(directory: Path) -> None:
    (directory / "metrics.csv").write_text("epoch,lr,loss,val_loss,val_acc,seconds\r\n1,0.1,2.0,1.9,0.5,0.1\r\n")
    (directory / "lr.csv").write_text("tick,lr\r\n0,0.1\r\n1,0.05\r\n")


def test_curves_png_on_a_full_disk_is_one_error_and_no_partial_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from lrdsl.train.plots import plot_curves
    from lrdsl.train.write_error import WriteError

    _epoch_files(tmp_path)

    def full(self, path, **kwargs):  # what PIL does when the disk fills mid-file
        Path(path).write_bytes(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full)
    with pytest.raises(WriteError, match=r"curves\.png: no space left on device"):
        plot_curves(tmp_path, "title")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.csv", "metrics.csv"]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    from lrdsl.train.checkpoint import write_atomically
    from lrdsl.train.write_error import WriteError

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"epoch 1")

    def full(temp: Path) -> None:
        temp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temp))

    with pytest.raises(WriteError, match=rf"cannot write {path}: no space left on device"):
        write_atomically(path, full, epoch=2)
    assert path.read_bytes() == b"epoch 1" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_the_logs_on_a_full_disk_are_one_error(tmp_path):
    """/dev/full: every write fails with ENOSPC, as on a full disk, for any user."""
    from lrdsl.train.run_log import RunLog
    from lrdsl.train.write_error import WriteError

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    (tmp_path / "lr.csv").symlink_to("/dev/full")
    with pytest.raises(WriteError, match="no space left on device"):
        log = RunLog(tmp_path)
        log.tick(0, 0.1)
        log.epoch(epoch=1, lr=0.1, loss=2.0, val_loss=1.9, val_acc=0.5, seconds=0.1)
        log.close()


@pytest.mark.slow
def test_train_on_dev_full_is_one_line_exit_2(tmp_path):
    """lr.csv is /dev/full: the first epoch's rows cannot be written."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    run = tmp_path / "run"
    run.mkdir()
    (run / "lr.csv").symlink_to("/dev/full")
    code, out, err = lrdsl_cli("train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert code == 2, err
    lines = real_stderr(err)
    assert len(lines) == 1 and lines[0].startswith("lrdsl train: error: cannot write"), err
    assert "no space left on device" in lines[0] and "no checkpoint was written" in lines[0]
    assert "Traceback" not in err and not (run / "curves.png").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mount of the given size (a function ``mount(size) -> Path``; ``grow(size)``
    remounts it larger); skipped where mounting is not allowed."""
    mounted = []
    point = tmp_path / "disk"
    point.mkdir()

    def mount(size: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    def grow(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)

    mount.grow = grow  # type: ignore[attr-defined]
    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend, size", [("torch", "40k"), ("keras", "60k")])
def test_train_on_a_full_disk_is_one_line_and_resumes_exactly(tmp_path, small_disk, backend, size):
    """The disk fills while epoch 2's checkpoint is written (its temporary does not fit beside
    epoch 1's): one line naming the file and ENOSPC, exit 2, no partial curves.png; once the disk
    is larger, resuming in place gives the uninterrupted run's metrics.csv and lr.csv."""
    pytest.importorskip(backend)
    disk = small_disk(size)
    run = disk / "run"
    suffix = ".keras" if backend == "keras" else ".pt"
    code, out, err = lrdsl_cli("train", *TINY, f"backend={backend}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert code == 2, out + err
    lines = real_stderr(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("lrdsl train: error: cannot write ") and "no space left on device" in lines[0]
    assert f"trainer.resume={run / ('checkpoint' + suffix)}" in lines[0]
    assert not (run / "curves.png").exists() and not list(run.glob(".*.tmp-*"))

    small_disk.grow("20m")
    code, out, err = lrdsl_cli("train", *TINY, f"backend={backend}", f"hydra.run.dir={run}",
                               f"trainer.resume={run / ('checkpoint' + suffix)}", cwd=tmp_path)
    assert code == 0, out + err
    whole = tmp_path / "whole"
    code, out, err = lrdsl_cli("train", *TINY, f"backend={backend}", f"hydra.run.dir={whole}", cwd=tmp_path)
    assert code == 0, out + err
    assert without_seconds(run / "metrics.csv") == without_seconds(whole / "metrics.csv")
    assert (run / "lr.csv").read_bytes() == (whole / "lr.csv").read_bytes()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


# -- the CLI's numeric flags: ASCII, finite, in range -----------------------------------------

def _cli(capsys, *args):
    from lrdsl.cli import main

    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("args, words", [
    (["parse", "cosine(0.1, 100)", "--plot", "-", "--ticks", "\uff19\uff10"], "--ticks takes a whole number"),
    (["parse", "cosine(0.1, 100)", "--plot", "-", "--ticks", "\u0661\u0662"], "--ticks takes a whole number"),
    (["eval", "cosine(0.1, 100)", "--at", "\uff19"], "--at takes finite ticks"),
    (["eval", "cosine(0.1, 100)", "--at", "1,\u0663"], "--at takes finite ticks"),
    (["eval", "cosine(0.1, 50%)", "--at", "1", "--total", "\uff11\uff10\uff10"], "--total must be a positive number"),
    (["eval", "cosine(0.1, 50%)", "--at", "1", "--total", "1e400"], "--total must be a positive number"),
    (["eval", "cosine(0.1, 50%)", "--at", "1", "--total=-inf"], "--total must be a positive number"),
    (["parse", "cosine(0.1, 2ep)", "--steps-per-epoch", "\u0665"], "--steps-per-epoch must be a positive number"),
    (["parse", "cosine(0.1, 2ep)", "--steps-per-epoch", "NaN"], "--steps-per-epoch must be a positive number"),
    (["eval", "cosine(0.1, 100) | plateau(loss, 0.5)", "--at", "1", "--metric", "loss=1,\uff12"],
     "--metric takes NAME=V1,V2"),
    (["eval", "cosine(0.1, 100) | plateau(loss, 0.5)", "--at", "1", "--metric", "loss=nan"],
     "--metric takes NAME=V1,V2"),
    (["check", ".", "--total", "\uff11"], "--total must be a positive number"),
    (["check", ".", "--steps-per-epoch", "1e999"], "--steps-per-epoch must be a positive number"),
])
def test_numeric_flags_take_ascii_finite_numbers_only(capsys, args, words):
    """int() and float() read any Unicode digit ("９" is 9) and "nan"/"1e400": the flags do not."""
    status, out, err = _cli(capsys, *args)
    assert (status, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith(f"lrdsl {args[0]}: ") and words in err, err


@pytest.mark.parametrize("args, first", [
    (["eval", "cosine(0.1, 100)", "--at", "0, 1_0, 5.5e1"], "0\t0.1"),
    (["eval", "cosine(0.1, 50%)", "--at", "0", "--total", "1_000"], "0\t0.1"),
    (["eval", "cosine(0.1, 2ep)", "--at", "0", "--steps-per-epoch", "10.0"], "0\t0.1"),
    (["parse", "cosine(0.1, 100)", "--plot", "-", "--ticks", "1_000"], "cosine(0.1,100)"),
])
def test_ascii_numbers_still_work(capsys, args, first):
    status, out, err = _cli(capsys, *args)
    assert status == 0 and out.splitlines()[0] == first, err


# -- a list where an expression belongs ------------------------------------------------------

@pytest.mark.parametrize("key", ["momentum", "beta2", "weight_decay", "expr"])
def test_a_list_valued_schedule_key_is_one_line_in_the_app(key):
    from lrdsl.train.config import compose

    with pytest.raises(LrdslError, match=rf"^config key schedule\.{key} must be an expression, got \[0\.9, 0\.8\]$"):
        compose(["optimizer=adam", f"schedule.{key}=[0.9,0.8]"])


def test_check_reports_a_list_or_mapping_under_an_expression_key(tmp_path, capsys):
    config = tmp_path / "schedule.yaml"
    config.write_text("expr: cosine(0.1, 100)\nmomentum: [0.9, 0.8]\nbeta2:\n  value: 0.99\n"
                      "weight_decay:\n  - 1e-4\nschedule:\n  expr: warmup(5) >> cosine(0.1, 100)\n")
    status, out, err = _cli(capsys, "check", str(config))
    assert status == 1
    lines = err.splitlines()
    assert lines[:3] == [f"{config}:2: momentum: a list, not an expression (give one expression per key, "
                         f"e.g. momentum: \"cosine(0.9, 100%)\")",
                         f"{config}:4: beta2: a mapping, not an expression (give one expression per key, "
                         f"e.g. beta2: \"cosine(0.9, 100%)\")",
                         f"{config}:6: weight_decay: a list, not an expression (give one expression per key, "
                         f"e.g. weight_decay: \"cosine(0.9, 100%)\")"]
    assert lines[3] == (f"5 expression(s) checked, 3 bad — in {config} "
                        f"(beta2 ×1, expr ×2, momentum ×1, weight_decay ×1)")


def test_check_still_reads_a_schedule_mapping(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("schedule:\n  expr: cosine(0.1, 100)\n  momentum: 0.9\n")
    assert _cli(capsys, "check", str(config))[0] == 0


# -- compare: a torn last line ----------------------------------------------------------------

def test_compare_says_which_metrics_line_is_torn_and_shows_the_complete_rows(tmp_path, capsys):
    for run in ("0", "1"):
        (tmp_path / run).mkdir()
        _epoch_files(tmp_path / run)
        with open(tmp_path / run / "metrics.csv", "a", newline="") as f:
            f.write("2,0.05,1.5,1.4,0.75,0.1\r\n")
    with open(tmp_path / "1" / "metrics.csv", "a", newline="") as f:
        f.write("3,0.01,1.2,1.")  # killed mid-write
    status, out, err = _cli(capsys, "compare", str(tmp_path))
    assert status == 0
    assert err.splitlines() == [f"lrdsl compare: note: {tmp_path / '1' / 'metrics.csv'} line 4 is torn "
                                f"('3,0.01,1.2,1.', no line end: a run killed mid-write?); showing the "
                                f"complete rows before it"]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert rows["1"][1:] == rows["0"][1:] == ["2", "0.05", "1.5000", "1.4000", "0.7500", "0.7500"]


# -- a config Hydra cannot compose ------------------------------------------------------------

@pytest.mark.parametrize("program, override, words", [
    ("train", "trainer.epochs=1e400", "trainer.epochs=1e400: Value 'inf' of type 'float' could not be "
                                      "converted to Integer"),
    ("train", "trainer.batch_size=many", "trainer.batch_size=many: Value 'many' of type 'str' could not be "
                                         "converted to Integer"),
    ("train", "optimizer.momentum=[0.9,0.8]", "Value '[0.9, 0.8]' of type 'list' could not be converted to Float"),
    ("train", "trainer.epochs=\uff19", "trainer.epochs=\uff19"),
    ("train", "foo=1", "Could not override 'foo'; To append to your config use +foo=1: Key 'foo' not in "
                       "'TrainConfig'"),
    ("train", "schedule=nosuch", "Could not find 'schedule/nosuch'; Available options in 'schedule': "
                                 "batch_ramp, constant, cosine,"),
    ("train", "trainer.epochs=1,2", "add --multirun"),
    ("find", "find.steps=1e400", "find.steps=1e400: Value 'inf'"),
])
def test_an_override_hydra_cannot_compose_is_one_line_exit_2(tmp_path, capsys, monkeypatch, program, override,
                                                               words):
    """Hydra prints these on several lines (or a partial traceback) and exits 1."""
    from lrdsl.cli import main

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main([program, override, f"hydra.run.dir={tmp_path / 'run'}"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"lrdsl {program}: error: ") and words in err, err
    assert "HYDRA_FULL_ERROR" not in os.environ  # set for the call only


def test_a_users_hydra_full_error_still_gets_hydras_exception(tmp_path, monkeypatch):
    from hydra.errors import HydraException

    from lrdsl.cli import main

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setenv("LRDSL_DEBUG", "1")  # the CLI's one-line report of unexpected errors, off
    with pytest.raises(HydraException):
        main(["train", "foo=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


# -- other writes: compare's figure, find's results -----------------------------------------

@pytest.mark.parametrize("out, words", [
    ("missing-dir/compare.png", "No such file or directory"),
    ("compare.jpgg", "Format 'jpgg' is not supported"),
])
def test_compare_figure_that_cannot_be_written_is_one_line(tmp_path, capsys, out, words):
    (tmp_path / "0").mkdir()
    _epoch_files(tmp_path / "0")
    status, stdout, err = _cli(capsys, "compare", str(tmp_path), "--out", str(tmp_path / out))
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"lrdsl compare: cannot write the figure {tmp_path / out}: ") and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0"]  # no temporary left


@pytest.mark.slow
def test_find_on_a_full_disk_is_one_line_exit_2(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    run = tmp_path / "run"
    run.mkdir()
    (run / "find.csv").symlink_to("/dev/full")
    code, out, err = lrdsl_cli("find", "model.hidden=[16]", "find.steps=20", f"hydra.run.dir={run}", cwd=tmp_path)
    assert code == 2, out + err
    assert real_stderr(err) == [f"lrdsl find: error: cannot write the results in {run}: no space left on device"]


@pytest.mark.parametrize("program", ["train", "find"])
def test_an_interpolation_that_does_not_resolve_is_one_line_naming_the_key(tmp_path, capsys, program):
    """It fails when the job reads the key, inside Hydra's job: Hydra logged 'Error executing job' too."""
    from lrdsl.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([program, "schedule.expr=${oops}", "hydra/job_logging=none", "hydra/hydra_logging=none",
              f"hydra.run.dir={tmp_path / 'run'}"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and err == (f"lrdsl {program}: error: config key schedule.expr: "
                                             f"Interpolation key 'oops' not found\n"), err


def test_find_refusing_its_run_directory_says_lrdsl_find(tmp_path):
    # a subprocess: Hydra's logging set up in this process would outlive the captured stderr
    (tmp_path / "file").write_text("")
    code, out, err = lrdsl_cli("find", f"hydra.run.dir={tmp_path / 'file' / 'run'}", cwd=tmp_path)
    lines = real_stderr(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"lrdsl find: output directory {tmp_path / 'file' / 'run'} is not writable"), err
