"""FSDP2 + torch.distributed.checkpoint (docs/distributed.md "FSDP2 and torch.distributed.checkpoint"):
the commands of the page, run by real torchrun processes (gloo on CPU).  The LRs of the saved run
and of each resumed one together must be lrdsl.curve of the uninterrupted single-process run at
the positions the steps started from, with the losses rank 0 reported."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

import lrdsl
import lrdsl.torch
from distributed_docs import BIN, ROOT, command, records

sys.path.insert(0, str(ROOT / "examples" / "distributed"))
import fsdp_dcp as example  # noqa: E402  (the schedules the example runs)


def start(text: str, out: Path) -> subprocess.Popen:
    """A command of the page, started (distributed_docs.run, without waiting)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OUT": str(out)}
    return subprocess.Popen(["bash", "-euo", "pipefail", "-c", text], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ranks(process: subprocess.Popen) -> list[dict]:
    """Each rank's JSON line, by rank."""
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return sorted(records(stdout), key=lambda line: line["rank"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The two saves at once, then the two resumes at once."""
    out = tmp_path_factory.mktemp("fsdp")
    saves = {"ticks": start(command("fsdp-save"), out), "samples": start(command("fsdp-samples-save"), out)}
    found = {f"{name} saved": ranks(process) for name, process in saves.items()}
    resumes = {"ticks": start(command("fsdp-resume-one"), out), "samples": start(command("fsdp-samples-resume"), out)}
    found.update({f"{name} resumed": ranks(process) for name, process in resumes.items()})
    return found


def check(saved: list[dict], resumed: list[dict], clock: str, processes: int) -> None:
    schedule = example.SCHEDULES[clock]
    assert [r["rank"] for r in saved] == [0, 1] and [r["rank"] for r in resumed] == list(range(processes))
    losses = saved[0]["reported"] + resumed[0]["reported"]
    positions = saved[0]["positions"] + resumed[0]["positions"]
    want = lrdsl.curve(schedule["expr"], positions, total=schedule["total"], clock=clock,
                       metrics={"loss": losses}, report_every=schedule["report_every"]).tolist()
    plain = lrdsl.curve(schedule["expr"], positions, total=schedule["total"], clock=clock).tolist()
    assert want != plain, "the plateau must fire for the test to mean anything"
    assert positions[-1] + (positions[-1] - positions[-2]) == schedule["total"]  # the whole run
    for before in saved:
        for after in resumed:
            assert before["positions"] + after["positions"] == positions
            assert before["lrs"] + after["lrs"] == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.slow
def test_resume_on_one_process_with_the_same_global_batch(runs):
    check(runs["ticks saved"], runs["ticks resumed"], "ticks", 1)
    assert runs["ticks saved"][0]["positions"] == list(range(6))


@pytest.mark.slow
def test_resume_on_two_processes_with_another_batch_on_the_samples_clock(runs):
    check(runs["samples saved"], runs["samples resumed"], "samples", 2)
    assert runs["samples resumed"][0]["positions"][:2] == [48, 52]  # 2 samples × 2 processes


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_another_program_is_refused_in_one_line_or_rebased_onto_the_state_read_whole(tmp_path):
    """One process, no process group (DCP then saves and loads locally)."""
    pytest.importorskip("torch.distributed.checkpoint")
    def build(expr, steps_per_epoch):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return lrdsl.torch.scheduler(optimizer, expr, steps_per_epoch=steps_per_epoch)

    saved_expr = "warmup(1ep) >> cosine(0.1, 5ep) | plateau(loss, 0.5, patience=0)"
    sched = build(saved_expr, 2)
    for _ in range(4):
        sched.step()
    sched.report(loss=1.0)
    sched.report(loss=2.0)  # the plateau has cut: its state must come along
    dcp.save({"scheduler": sched}, checkpoint_id=tmp_path / "ckpt")
    # same plateau, other units: DCP fills the fresh state, lrdsl refuses it in one line
    other_units = build(saved_expr, 4)
    with pytest.raises(lrdsl.LrdslError, match="pass rebase=True"):
        dcp.load({"scheduler": other_units}, checkpoint_id=tmp_path / "ckpt")
    # another expression (its plateau keyed by it): read whole, rebased (epoch 2 of 4 steps = tick
    # 8); the plateau rule is the same, so its saved cut carries over
    new_expr = "warmup(1ep) >> cosine(0.1, 6ep) | plateau(loss, 0.5, patience=0)"
    rebased = build(new_expr, 4)
    state = lrdsl.torch.checkpointed_state(tmp_path / "ckpt")
    assert state["expr"] == str(lrdsl.parse(saved_expr)) and state["last_epoch"] == 4
    rebased.load_state_dict(state, rebase=True)
    assert rebased.last_epoch == 8
    unscaled = lrdsl.curve("warmup(1ep) >> cosine(0.1, 6ep)", [8], steps_per_epoch=4)[0]
    assert rebased.get_last_lr() == pytest.approx([0.5 * unscaled], rel=1e-12)
    with pytest.raises(lrdsl.LrdslError, match="holds no 'sched' entry"):
        lrdsl.torch.checkpointed_state(tmp_path / "ckpt", "sched")
