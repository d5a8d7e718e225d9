"""The cuda paths, run for real where a GPU is present (skipped elsewhere: CI has none).

Tensor learning rates on the device updated in place, targets on a capturable optimizer, the
training app and the finder with trainer.device=cuda, Lightning on a GPU, optax on a GPU.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

import lrdsl  # noqa: E402
import lrdsl.torch  # noqa: E402

EXPR = "warmup(3) >> cosine(0.1, 20) | plateau(loss, 0.5, patience=0)"


def test_a_tensor_lr_on_the_device_follows_curve_in_place_with_targets():
    model = torch.nn.Linear(4, 1).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01, device="cuda"), capturable=True)
    lr_tensor = opt.param_groups[0]["lr"]
    momentum = "anneal(0.95, 0.85, 23)"
    sched = lrdsl.torch.scheduler(opt, EXPR, momentum=momentum)
    losses, lrs, betas = [], [], []
    x, y = torch.randn(32, 4, device="cuda"), torch.randn(32, 1, device="cuda")
    for _ in range(25):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lrs.append(float(opt.param_groups[0]["lr"]))
        betas.append(opt.param_groups[0]["betas"][0])
        losses.append(10.0)  # never improves: the plateau halves the scale at every report
        sched.step(losses[-1])
    assert opt.param_groups[0]["lr"] is lr_tensor and lr_tensor.device.type == "cuda"
    want = lrdsl.curve(EXPR, 26, metrics={"loss": losses})[:25]
    np.testing.assert_allclose(lrs, want, rtol=1e-6)  # a float32 tensor on the device
    np.testing.assert_allclose(betas, lrdsl.curve(momentum, 25), rtol=1e-12)


def test_a_compiled_optimizer_step_on_the_device_is_not_recompiled_by_lr_changes():
    model = torch.nn.Linear(8, 8).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1, device="cuda"), momentum=0.9)
    sched = lrdsl.torch.scheduler(opt, "warmup(5) >> cosine(0.1, 30)")
    compiles = []

    def backend(graph, inputs):
        compiles.append(1)
        return graph.forward

    step = torch.compile(opt.step, backend=backend)
    x = torch.randn(16, 8, device="cuda")
    for _ in range(30):
        model(x).square().mean().backward()
        step()
        opt.zero_grad()
        sched.step()
    assert len(compiles) <= 2, len(compiles)  # the first compilation (and its graph break), never one per LR


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(lrdsl.__file__).parent.parent),
                                                         os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "lrdsl", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_training_app_trains_on_cuda_and_writes_its_artifacts(tmp_path):
    run_dir = tmp_path / "run"
    out = _run("train", "backend=torch", "trainer.device=cuda", "trainer.epochs=3", "trainer.progress=false",
               f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.stdout.startswith("device: cuda:0 (")
    with open(run_dir / "lr.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(run_dir / "metrics.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    assert len(epochs) == 3 and rows
    ticks = [int(r["tick"]) for r in rows]
    assert ticks == list(range(len(ticks)))


def test_the_finder_runs_on_cuda(tmp_path):
    run_dir = tmp_path / "find"
    out = _run("find", "trainer.device=cuda", "find.steps=30", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert (run_dir / "find.csv").is_file() and "lrdsl train" in out.stdout


def test_lightning_on_a_gpu_follows_curve():
    lightning = pytest.importorskip("lightning")
    import lrdsl.lightning

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.lrs = []

        def training_step(self, batch, _):
            self.lrs.append(self.optimizers().param_groups[0]["lr"])
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    module = Tiny()
    trainer = lightning.Trainer(accelerator="gpu", devices=1, max_epochs=2, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                callbacks=[lrdsl.lightning.Schedule("warmup(2) >> cosine(0.1, 100%)")])
    trainer.fit(module, loader)
    np.testing.assert_allclose(module.lrs, lrdsl.curve("warmup(2) >> cosine(0.1, 100%)", 16, total=16),
                               rtol=1e-12)


def test_optax_on_a_gpu_equals_curve():
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("jax sees no GPU")
    import jax.numpy as jnp
    import lrdsl.optax

    expr = "warmup(10) >> cosine(0.1, 90)"
    lr = jax.jit(jax.vmap(lrdsl.optax.schedule(expr)))(jnp.arange(120, dtype=jnp.int32))
    np.testing.assert_allclose(np.asarray(lr), lrdsl.curve(expr, 120), rtol=4e-6, atol=1e-12)
