"""States saved by lrdsl v2 (commit 01c793a, before the package layout and the runtime) still
load: a scheduler's state_dict and an app checkpoint, both written by that version's code and
kept in tests/data/."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import lrdsl.torch  # noqa: E402

DATA = Path(__file__).parent / "data"


def test_a_v2_scheduler_state_loads_and_continues():
    # saved after 12 steps of warmup(5) >> cosine(0.1, 40), the plateau halved once (scale 0.5),
    # momentum anneal(0.95, 0.85, 45), group lrs 0.1 and 0.05
    saved = torch.load(DATA / "v2_torch_scheduler.pt", weights_only=True)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1, "momentum": 0.9},
                           {"params": [model.bias], "lr": 0.05, "momentum": 0.9}], lr=0.1)
    sched = lrdsl.torch.scheduler(opt, "warmup(5) >> cosine(0.1, 40) | plateau(val_loss, 0.5, patience=1)",
                                  momentum="anneal(0.95, 0.85, 45)")
    sched.load_state_dict(saved["scheduler"])

    def lr(t):  # the plateau's scale 0.5 times the cosine segment, which starts at tick 5
        return 0.5 * 0.1 * (1 + math.cos(math.pi * min(t - 5, 40) / 40)) / 2

    assert [g["lr"] for g in opt.param_groups] == pytest.approx(saved["lr"], rel=1e-12)
    for tick in range(13, 30):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(lr(tick), rel=1e-12)
        assert opt.param_groups[1]["lr"] == pytest.approx(lr(tick) / 2, rel=1e-12)
        momentum = 0.95 - 0.1 * (1 - math.cos(math.pi * tick / 45)) / 2  # anneal: shape cos
        assert opt.param_groups[0]["momentum"] == pytest.approx(momentum, rel=1e-12)


@pytest.mark.slow
def test_a_v2_app_checkpoint_resumes_to_the_uninterrupted_run(tmp_path):
    # written by v2's `lrdsl train` with these settings and trainer.stop_after=2
    args = ["model.hidden=[16]", "trainer.batch_size=256", "trainer.epochs=4", "trainer.progress=false"]
    source = str(Path(lrdsl.__file__).resolve().parents[1])
    env = {"PYTHONPATH": source, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}

    def train(run, *more):
        done = subprocess.run([sys.executable, "-m", "lrdsl", "train", *args, *more, f"hydra.run.dir={run}"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]

    resumed = train(tmp_path / "resumed", f"trainer.resume={DATA / 'v2_app_checkpoint.pt'}")
    whole = train(tmp_path / "whole")
    assert resumed[0] == whole[0] and resumed[1:] == whole[3:5]  # header; epochs 3 and 4
