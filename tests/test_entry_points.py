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

    from lrdsl.train.artifacts import WriteError, plot_curves

    _epoch_files(tmp_path)

    def full(self, path, **kwargs):  # what PIL does when the disk fills mid-file
        Path(path).write_bytes(b"\x89PNG\r\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full)
    with pytest.raises(WriteError, match=r"curves\.png: no space left on device"):
        plot_curves(tmp_path, "title")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.csv", "metrics.csv"]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    from lrdsl.train.artifacts import WriteError
    from lrdsl.train.checkpoint import write_atomically

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
    from lrdsl.train.artifacts import RunLog, WriteError

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
