"""Time of the LR range test vs the same number of plain training steps, on both backends.

    .venv/bin/python bench/find.py

The default config's MLP on the bundled digits, batches of 64, 100 steps.  ``find_lr`` runs its
whole job: snapshot, sweep (scheduler, loss read back every step, smoothing, stop rule),
restore.  The sweep ends at lr 0.05 so that it never stops early: both sides take all 100
steps.  Plain steps: the same forward/backward/step loop with a constant LR (torch: no loss
read back; Keras: ``train_on_batch``, and ``fit`` for reference).  Runs alternate (drift on a
shared machine hits both); medians.  Target (issue #13): ratio ≤ 1.1.
"""

import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

STEPS, BATCH, REPEATS = 100, 64, 15
SWEEP = dict(start=1e-7, end=0.05, steps=STEPS)


def digits():
    from lrdsl.train.config import compose
    from lrdsl.train.data import load

    cfg = compose()
    return cfg, load(cfg.data)


def bench_torch(cfg, data):
    import torch

    import lrdsl.torch
    from lrdsl.train.torch_loop import build_model, build_optimizer

    torch.set_num_threads(1)

    def fresh():
        torch.manual_seed(0)
        model = build_model(cfg.model, data)
        return model, build_optimizer(cfg.optimizer, model.parameters())

    # two copies: the plain loop's training must not move the weights find_lr starts from
    model, optimizer = fresh()
    trained, trained_optimizer = fresh()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x) - BATCH + 1, BATCH)]
    loss_fn = torch.nn.functional.cross_entropy

    def plain():
        trained.train()
        for step in range(STEPS):
            xb, yb = batches[step % len(batches)]
            loss = loss_fn(trained(xb), yb)
            trained_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trained_optimizer.step()

    def find():
        result = lrdsl.torch.find_lr(model, optimizer, batches, loss_fn, **SWEEP)
        assert len(result.lrs) == STEPS, "the sweep stopped early: lower SWEEP['end']"

    return timed(find, plain)


def bench_keras(cfg, data):
    import keras
    import numpy as np

    import lrdsl.keras
    from lrdsl.train.keras_loop import build_model, build_optimizer

    x, y = data.x_train, data.y_train
    order = np.arange(STEPS * BATCH) % len(x)

    def fresh():
        keras.utils.set_random_seed(0)
        model = build_model(keras, cfg.model, data)
        model.compile(optimizer=build_optimizer(keras, cfg.optimizer),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    # each side gets a fresh compiled model, so each traces its train function once
    def plain():
        model = fresh()
        for step in range(STEPS):
            index = order[step * BATCH:(step + 1) * BATCH]
            float(model.train_on_batch(x[index], y[index]))

    def fit():
        fresh().fit(x[order], y[order], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    def find():
        result = lrdsl.keras.find_lr(fresh(), x, y, batch_size=BATCH, **SWEEP)
        assert len(result.lrs) == STEPS, "the sweep stopped early: lower SWEEP['end']"

    return timed(find, plain, fit, repeats=7)


def timed(*functions, repeats=REPEATS):
    for f in functions:  # warm-up: imports, first traces, allocator
        f()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for f, record in zip(functions, times):
            began = time.perf_counter()
            f()
            record.append(time.perf_counter() - began)
    return [statistics.median(t) for t in times]


def main():
    cfg, data = digits()
    find, plain = bench_torch(cfg, data)
    import torch

    print(f"torch {torch.__version__}, MLP {list(cfg.model.hidden)} on digits, batch {BATCH}, "
          f"{STEPS} steps, median of {REPEATS}")
    print(f"  find_lr (snapshot, sweep, restore)  {find * 1e3:8.1f} ms")
    print(f"  {STEPS} plain training steps            {plain * 1e3:8.1f} ms")
    print(f"  ratio {find / plain:.3f}   (target ≤ 1.1)")
    find, plain, fit = bench_keras(cfg, data)
    import keras

    print(f"keras {keras.__version__} ({keras.backend.backend()}), same model and data, fresh compiled "
          f"model each run (one trace each), median of 7")
    print(f"  find_lr (snapshot, sweep, restore)  {find * 1e3:8.1f} ms")
    print(f"  {STEPS} plain train_on_batch steps      {plain * 1e3:8.1f} ms")
    print(f"  {STEPS} steps of fit()                  {fit * 1e3:8.1f} ms")
    print(f"  ratio {find / plain:.3f} vs train_on_batch, {find / fit:.3f} vs fit   (target ≤ 1.1)")


if __name__ == "__main__":
    main()
