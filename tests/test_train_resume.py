"""Crashes and resume: ``kill -9`` at chosen and random moments, then resume in place, gives
byte for byte the files of an uninterrupted run; a bad checkpoint is one line, exit 2.

The kill that matters is deterministic: ``LRDSL_FAULT=checkpoint@E`` SIGKILLs the run after
epoch E's CSV rows, between writing its checkpoint to a temporary file and renaming it.  One
more kill (torch) lands at a random moment.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
EPOCHS = 4
TINY = ["model.hidden=[16]", "trainer.batch_size=256", f"trainer.epochs={EPOCHS}", "trainer.progress=false",
        'schedule.expr="warmup(10%) >> cosine(0.1, 90%) | plateau(val_loss, 0.5, patience=0)"']
SUFFIX = {"torch": ".pt", "keras": ".keras"}


def launch(cwd, out, *overrides, fault=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    env.pop("LRDSL_FAULT", None)
    if fault:
        env["LRDSL_FAULT"] = fault
    return subprocess.Popen([str(BIN / "lrdsl"), "train", *TINY, *overrides, f"hydra.run.dir={out}"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout + stderr


def without_seconds(path: Path) -> list[str]:
    """metrics.csv's lines without the last column (the epoch's wall time)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per backend, with its wall time: the reference every crash test
    compares with, and the checkpoints the validation tests tamper with."""
    runs = {}

    def get(backend):
        pytest.importorskip(backend)
        if backend not in runs:
            root = tmp_path_factory.mktemp(f"whole-{backend}")
            began = time.monotonic()
            code, output = finish(launch(root, root / "run", f"backend={backend}"))
            assert code == 0, output[-3000:]
            runs[backend] = (root / "run", time.monotonic() - began)
        return runs[backend]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_kill_9_anywhere_then_resume_in_place_gives_the_uninterrupted_files(tmp_path, backend, uninterrupted):
    whole, seconds = uninterrupted(backend)
    out = tmp_path / "run"
    checkpoint = out / f"checkpoint{SUFFIX[backend]}"
    resume = [f"backend={backend}", f"trainer.resume={checkpoint}"]

    # killed right after epoch 3's metrics.csv row, mid-checkpoint: the CSV files are an
    # epoch ahead of the checkpoint (epoch 2, still whole), the temporary is left behind
    code, output = finish(launch(tmp_path, out, f"backend={backend}", fault="checkpoint@3"))
    assert code == -signal.SIGKILL, output[-2000:]
    assert len(list(out.glob(".checkpoint.tmp-*"))) == 1
    assert len(without_seconds(out / "metrics.csv")) == 1 + 3

    if backend == "torch":  # Keras starts too slowly for one more run in the test budget
        # resumed, then killed at a random moment (or not at all, if the run is faster); the
        # later half of a run's time is where it trains and writes
        process = launch(tmp_path, out, *resume)
        delay = random.uniform(0.5, 1.0) * seconds
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        code, output = finish(process)
        assert code in (0, -signal.SIGKILL), f"killed after {delay:.2f}s: {output[-2000:]}"

    # resumed to the end
    code, output = finish(launch(tmp_path, out, *resume))
    assert code == 0, output[-3000:]

    assert without_seconds(out / "metrics.csv") == without_seconds(whole / "metrics.csv")
    assert (out / "lr.csv").read_bytes() == (whole / "lr.csv").read_bytes()
    assert [p.name for p in out.iterdir() if ".tmp" in p.name] == []


def _run_in_process(capsys, *overrides):
    """``lrdsl train`` in this process: (exit code, stderr lines)."""
    from lrdsl.train import main

    code = 0
    try:
        main([*overrides, "hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"])
    except SystemExit as exit_:
        code = exit_.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _tampered(tmp_path, source: Path, how: str) -> Path:
    data = bytearray(source.read_bytes())
    target = tmp_path / f"{how}{source.suffix}"
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = bytearray()
    elif how == "flipped":  # a byte in the middle of the weights: the zip's largest record
        import struct
        import zipfile

        with zipfile.ZipFile(source) as archive:
            record = max(archive.infolist(), key=lambda info: info.file_size)
        names, extra = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
        start = record.header_offset + 30 + names + extra  # past the record's local header
        data[start + record.file_size // 2] ^= 0x55
    if how == "foreign":  # another program's checkpoint
        import torch

        torch.save({"step": 3, "weights": torch.zeros(3)}, target)
        return target
    target.write_bytes(bytes(data))
    return target


TORCH_CASES = [  # (what is wrong, overrides, the message's gist)
    ("truncated", [], "cannot be read as a PyTorch checkpoint: truncated, corrupt or not one"),
    ("empty", [], "cannot be read as a PyTorch checkpoint"),
    ("flipped", [], "is corrupt (its contents do not match the checksum"),
    ("foreign", [], "is not a checkpoint written by lrdsl train (no lrdsl manifest in it"),
    ("ok", ["optimizer=adam"], "was saved with optimizer.name='sgd'; this run has optimizer.name='adam'"),
    ("ok", ["model.hidden=[32]"], "was saved with model.hidden=[16]; this run has model.hidden=[32]"),
    ("ok", ["trainer.batch_size=128"], "was saved with trainer.batch_size=256; this run has trainer.batch_size=128"),
    ("ok", ['schedule.expr="cosine(0.1, 100%)"'], "was saved with schedule.expr='warmup("),
    ("ok", ["backend=keras"], "is not a .keras checkpoint; this run has backend=keras"),
]


@pytest.mark.slow
@pytest.mark.parametrize("how, overrides, message", TORCH_CASES,
                         ids=[f"{c[0]}-{'+'.join(c[1]) or 'bytes'}" for c in TORCH_CASES])
def test_a_bad_torch_checkpoint_is_one_line_before_training(tmp_path, capsys, monkeypatch, uninterrupted,
                                                            how, overrides, message):
    whole, _ = uninterrupted("torch")
    checkpoint = whole / "checkpoint.pt" if how == "ok" else _tampered(tmp_path, whole / "checkpoint.pt", how)
    monkeypatch.chdir(tmp_path)
    code, err = _run_in_process(capsys, *TINY, *overrides, f"trainer.resume={checkpoint}",
                                f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"lrdsl train: trainer.resume: {checkpoint}") and message in err[0], err[0]
    if "schedule.expr" in overrides[0] if overrides else False:
        assert "; this run has schedule.expr='cosine(" in err[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()  # nothing trained


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: what torch.load(weights_only=False) would do."""

    def __init__(self, marker):
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    marker, checkpoint = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"model": _RunsCode(marker)}, checkpoint)
    monkeypatch.chdir(tmp_path)
    code, err = _run_in_process(capsys, *TINY, f"trainer.resume={checkpoint}", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and len(err) == 1 and "cannot be read as a PyTorch checkpoint" in err[0], err
    assert not marker.exists()  # weights_only=True: the pickle's code never ran


@pytest.mark.slow
@pytest.mark.parametrize("how, overrides, message", [
    ("truncated", [], "cannot be read as a Keras checkpoint: truncated, corrupt or not one"),
    ("flipped", [], "is corrupt (member"),
    ("ok", ["optimizer=adam"], "was saved with optimizer.name='sgd'; this run has optimizer.name='adam'"),
])
def test_a_bad_keras_checkpoint_is_one_line_before_training(tmp_path, capsys, monkeypatch, uninterrupted,
                                                            how, overrides, message):
    whole, _ = uninterrupted("keras")
    source = whole / "checkpoint.keras"
    checkpoint = source if how == "ok" else _tampered(tmp_path, source, how)
    monkeypatch.chdir(tmp_path)
    code, err = _run_in_process(capsys, *TINY, "backend=keras", *overrides, f"trainer.resume={checkpoint}",
                                f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"lrdsl train: trainer.resume: {checkpoint}") and message in err[0], err[0]
