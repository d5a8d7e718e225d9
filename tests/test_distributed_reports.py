"""Plateau reports under torch.distributed (docs/distributed.md "Plateau reports"): real
processes (torchrun, gloo on CPU), no mocks.  Every expected LR sequence is lrdsl.curve of the
single-process run with the reports the test knows were made (their mean where several ranks
report), or the plain curve for ranks a report must not reach.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lrdsl
from distributed_docs import BIN, ROOT, command, records

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import distributed_reports as case  # noqa: E402  (the script the processes run: its constants)
sys.path.insert(0, str(ROOT / "examples" / "distributed"))
import rank0_report as example  # noqa: E402

TICKS = case.EPOCHS * case.STEPS
UNITS = dict(steps_per_epoch=case.STEPS, total=TICKS)


def expected(values=None):
    """The single-process LRs of case.EXPR with one report per epoch of ``values``."""
    metrics = None if values is None else {"val_loss": list(values)}
    return lrdsl.curve(case.EXPR, TICKS, metrics=metrics, **UNITS).tolist()


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """At once: tests/distributed_reports.py and the page's rank-0 example, on 2 processes each."""
    out = tmp_path_factory.mktemp("reports")
    cases = start([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
                   str(HERE / "distributed_reports.py"), str(out)])
    example = start(["bash", "-euo", "pipefail", "-c", command("rank0-report")])
    printed = finished(example)
    finished(cases)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)], printed


@pytest.fixture(scope="module")
def ranks(runs):
    """Every case's LRs on each rank."""
    return runs[0]


def test_a_report_from_rank_0_alone_reaches_every_rank(ranks):
    for name in ("rank0", "step_metric", "accumulate"):  # report(), step(metric), mid-accumulation
        want = expected(case.VALUES)
        assert want != expected(), "the plateau must fire for the test to mean anything"
        for rank in ranks:
            assert rank[name] == pytest.approx(want, rel=1e-12, abs=0), name


def test_every_rank_reporting_decides_on_the_mean(ranks):
    mean = np.mean([case.EVERY[0], case.EVERY[1]], axis=0)
    want = expected(mean)
    assert want != expected(case.EVERY[0]) and want != expected(case.EVERY[1])
    for rank in ranks:
        assert rank["every"] == pytest.approx(want, rel=1e-12, abs=0)


def test_a_group_decides_alone(ranks):
    assert ranks[1]["subgroup"] == pytest.approx(expected(case.VALUES), rel=1e-12, abs=0)
    assert ranks[0]["subgroup"] == pytest.approx(expected(), rel=1e-12, abs=0)  # outside the group


def test_a_late_report_is_decided_alike_on_every_rank(ranks):
    """Rank 1 reports after its backward: at that step or the next, the same on both ranks."""
    assert ranks[0]["late"] == ranks[1]["late"]
    # report i made in step 3(i+1) acts from that step or the one after: each candidate's LRs
    in_force = [np.array(expected(case.VALUES[:k])) if k else np.array(expected()) for k in range(4)]
    candidates = []
    for delays in np.ndindex(2, 2, 2):
        starts = [case.STEPS * (i + 1) + d for i, d in enumerate(delays)]
        reports = [sum(t >= s for s in starts) for t in range(TICKS)]
        candidates.append([in_force[k][t] for t, k in enumerate(reports)])
    assert any(ranks[1]["late"] == pytest.approx(c, rel=1e-12, abs=0) for c in candidates)


def test_a_checkpoint_written_after_a_rank_0_report_resumes_exactly(ranks):
    for rank in ranks:
        assert rank["saved"] == pytest.approx(expected(case.VALUES), rel=1e-12, abs=0)


def test_a_report_on_a_group_without_this_rank_is_refused_in_one_line(ranks):
    message = ranks[1]["refused"]
    assert "not this rank (1)" in message and "\n" not in message


def test_the_documented_rank_0_validation(runs):
    lines = sorted(records(runs[1]), key=lambda line: line["rank"])
    assert [line["rank"] for line in lines] == [0, 1]
    losses = lines[0]["val_losses"]
    expr = example.EXPR
    want = lrdsl.curve(expr, 12, steps_per_epoch=3, total=12, metrics={"val_loss": losses}).tolist()
    assert want != lrdsl.curve(expr, 12, steps_per_epoch=3, total=12).tolist()  # it fired
    for line in lines:
        assert line["lrs"] == pytest.approx(want, rel=1e-12, abs=0)
