"""Epoch time of the torch training loop: lrdsl.torch.scheduler vs the native SequentialLR stack.

    .venv/bin/python bench/train_overhead.py

The MLP of the default config on the bundled digits, scheduler stepped per batch.  Epochs of
the two loops alternate (so drift on a shared machine hits both); median of 40 each.
Target (issue #6): ratio ≤ 1.01.
"""

import statistics
import time
import warnings

import torch
from torch.optim import lr_scheduler as native

import lrdsl.torch
from lrdsl.train.config import compose
from lrdsl.train.data import load
from lrdsl.train.torch_loop import build_model

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
EPOCHS = 40


def setup(make_scheduler):
    torch.manual_seed(0)
    cfg = compose()
    data = load(cfg.data)
    model = build_model(cfg.model, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, len(x), 64)]
    return model, optimizer, make_scheduler(optimizer, len(batches)), batches


def epoch_seconds(model, optimizer, scheduler, batches):
    start = time.perf_counter()
    for xb, yb in batches:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def main():
    total = EPOCHS * 23
    ours = setup(lambda o, s: lrdsl.torch.scheduler(o, f"warmup({4 * s}) >> cosine(0.1, {total - 4 * s})"))
    theirs = setup(lambda o, s: native.SequentialLR(
        o, [native.LinearLR(o, 1e-8, 1.0, total_iters=4 * s), native.CosineAnnealingLR(o, T_max=total - 4 * s)],
        milestones=[4 * s]))
    times_ours, times_theirs = [], []
    for _ in range(EPOCHS):
        times_ours.append(epoch_seconds(*ours))
        times_theirs.append(epoch_seconds(*theirs))
    a, b = statistics.median(times_ours), statistics.median(times_theirs)
    print(f"torch {torch.__version__}, MLP on digits, 23 steps/epoch, median of {EPOCHS} epochs each")
    print(f"lrdsl.torch.scheduler        {a * 1e3:8.2f} ms/epoch")
    print(f"SequentialLR(LinearLR, Cos.) {b * 1e3:8.2f} ms/epoch")
    print(f"ratio {a / b:.3f}  (target ≤ 1.01: {'ok' if a / b <= 1.01 else 'MISS'})")


if __name__ == "__main__":
    main()
