"""docs/distributed.md, DDP and multi-node torchrun: the page's commands on 2 CPU processes (gloo).

Expected LRs are ``lrdsl.curve`` of the expression over the optimizer steps of the global batch
(the single-process evaluator), with the plateau fed the mean of the ranks' reported losses.
"""

import csv
import math
import os
import signal
import subprocess
import uuid

import numpy as np
import pytest

pytest.importorskip("torch")

import lrdsl  # noqa: E402
from distributed_docs import BIN, ROOT, command, free_port, records, run  # noqa: E402

EXPR = "warmup(1ep) >> cosine(0.05, 100%) | plateau(val_loss, 0.5, patience=0)"  # the page's --expr
EPOCHS = 3
STEPS = math.ceil(192 / (2 * 8))  # ddp.py: 192 training samples, 2 processes × batches of 8


def rank_lines(stdout):
    lines = records(stdout)
    return {line["rank"]: line for line in lines}


def expected(by_rank):
    """curve over EPOCHS × STEPS ticks; report i (the mean over the ranks) acts from tick (i+1)·STEPS."""
    means = np.mean([by_rank[r]["val_loss"] for r in sorted(by_rank)], axis=0)
    n = EPOCHS * STEPS
    return lrdsl.curve(EXPR, n, steps_per_epoch=STEPS, total=n, metrics={"val_loss": means}, report_every=STEPS)


def read_lr_csv(path):
    with open(path, newline="") as f:
        return [float(row["lr"]) for row in csv.DictReader(f)]


def start_nodes(text, tmp_path, port, **env):
    """A command of the page started twice, as the two nodes of one job, each with its own OUT
    (as on two machines: the node without rank 0 must leave its OUT absent)."""
    job = f"test-{uuid.uuid4().hex[:8]}"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                   "PORT": str(port), "JOB": job, **env}
    outs = [tmp_path / f"node{i}" / "out" for i in range(2)]
    return outs, [subprocess.Popen(["bash", "-euo", "pipefail", "-c", text], cwd=ROOT,
                                   env={**environment, "OUT": str(out)}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True) for out in outs]


def finish(processes):
    """(stdout, stderr) of each process once all have ended well; on a timeout or a failure, none
    is left running."""
    results = []
    try:
        for process in processes:
            results.append(process.communicate(timeout=240))
    finally:
        for process in processes:  # each node: bash, torchrun and its worker, in a session of their own
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    for process, (stdout, stderr) in zip(processes, results):
        assert process.returncode == 0, stdout[-2000:] + stderr[-3000:]
    return results


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result = run("ddp", OUT=str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, rank_lines(result.stdout)


@pytest.fixture(scope="module")
def multinode(tmp_path_factory):
    """Both multi-node commands at once (two jobs of two nodes): {name: (OUTs, results by node)}."""
    ports = [free_port()]
    while len(ports) < 2:
        ports += [port for port in [free_port()] if port not in ports]
    jobs = {"script": start_nodes(command("multinode-ddp"), tmp_path_factory.mktemp("multinode-ddp"), ports[0]),
            "app": start_nodes(command("multinode-app"), tmp_path_factory.mktemp("multinode-app"), ports[1],
                               EPOCHS="1")}
    try:
        results = {name: finish(processes) for name, (_, processes) in jobs.items()}
    finally:
        for _, processes in jobs.values():
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
    return {name: (outs, results[name]) for name, (outs, _) in jobs.items()}


@pytest.mark.slow
def test_ddp_every_rank_reads_the_curve_over_global_batch_steps(ddp):
    out, by_rank = ddp
    assert sorted(by_rank) == [0, 1]
    assert by_rank[0]["lrs"] == by_rank[1]["lrs"]
    assert len(by_rank[0]["lrs"]) == EPOCHS * STEPS  # 12 an epoch, not the 24 of one process
    np.testing.assert_allclose(by_rank[0]["lrs"], expected(by_rank), rtol=1e-12, atol=0)


@pytest.mark.slow
def test_ddp_rank_zero_writes_its_lrs(ddp):
    out, by_rank = ddp
    assert sorted(p.name for p in out.iterdir()) == ["lr.csv"]
    assert read_lr_csv(out / "lr.csv") == by_rank[0]["lrs"]


@pytest.mark.slow
def test_multinode_ddp_every_rank_reads_the_curve_and_one_node_writes(multinode):
    outs, results = multinode["script"]
    per_node = [rank_lines(stdout) for stdout, _ in results]
    assert sorted(len(lines) for lines in per_node) == [1, 1]  # one process a node
    by_rank = {rank: line for lines in per_node for rank, line in lines.items()}
    assert sorted(by_rank) == [0, 1]
    assert by_rank[0]["lrs"] == by_rank[1]["lrs"]
    np.testing.assert_allclose(by_rank[0]["lrs"], expected(by_rank), rtol=1e-12, atol=0)
    writer = next(i for i, lines in enumerate(per_node) if 0 in lines)  # the rendezvous picks rank 0's node
    assert read_lr_csv(outs[writer] / "lr.csv") == by_rank[0]["lrs"]
    assert not outs[1 - writer].exists()  # the other node wrote nothing


@pytest.mark.slow
def test_multinode_app_writes_one_run_directory_from_rank_zero(multinode):
    outs, results = multinode["app"]
    printed = [stdout.count("artifacts: ") for stdout, _ in results]
    assert sorted(printed) == [0, 1]
    writer = printed.index(1)
    run_dir = outs[writer]
    assert f"artifacts: {run_dir}" in results[writer][0]
    assert not outs[1 - writer].exists()  # no run directory, no .hydra/, no log file on the other node
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == sorted([".hydra", ".lrdsl.lock", "app.log", "checkpoint.pt", "curves.png", "lr.csv",
                            "metrics.csv"])
    with open(run_dir / "lr.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["tick"]) for r in rows] == list(range(12))  # ceil(719 / 64) steps of the global batch
    from lrdsl.train.config import compose

    expr = compose().schedule.expr  # the default preset: its plateau hears its first report after the last step
    np.testing.assert_allclose([float(r["lr"]) for r in rows],
                               lrdsl.curve(expr, 12, steps_per_epoch=12, total=12), rtol=1e-12, atol=0)
    with open(run_dir / "metrics.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]  # written once
