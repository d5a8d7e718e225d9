"""REX against pytorch_optimizer's own REXScheduler (Chen et al. 2022), the peer lrdsl's `a / b`
reproduces: lr = min + (max − min)·(1 − x)/(1 − x/2), x = t/T."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rex = pytest.importorskip("pytorch_optimizer.lr_scheduler.rex")

import lrdsl  # noqa: E402


@pytest.mark.parametrize("total, max_lr, min_lr", [(100, 0.1, 0.0), (37, 1.0, 0.001), (1000, 3e-4, 1e-5)])
def test_rex_is_pytorch_optimizer_rex_scheduler(total, max_lr, min_lr):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    native = rex.REXScheduler(optimizer, total_steps=total, max_lr=max_lr, min_lr=min_lr)
    got = []
    for _ in range(total + 5):  # its k-th step() sets the LR of tick k (k ≥ 1)
        native.step()
        got.append(optimizer.param_groups[0]["lr"])
    expr = (f"{min_lr} + {max_lr - min_lr} * anneal(1, 0, 100%, shape=linear) "
            f"/ anneal(1, 0.5, 100%, shape=linear)")
    ours = lrdsl.curve(expr, np.arange(1, total + 6), total=total)
    np.testing.assert_allclose(ours, got, rtol=1e-12, atol=1e-15)
    x = np.minimum(np.arange(1, total + 6), total) / total  # the published formula, written here
    np.testing.assert_allclose(ours, min_lr + (max_lr - min_lr) * (1 - x) / (1 - x / 2), rtol=1e-12, atol=1e-15)
