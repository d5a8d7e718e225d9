"""fit() wall time: lrdsl.keras vs Keras's own schedule and callback, measured in one run.

    .venv/bin/python bench/keras_fit.py

Rows: ``lrdsl.keras.schedule("warmup >> cosine")`` vs ``CosineDecay(warmup_target, warmup_steps)``;
``lrdsl.keras.callback("… | plateau")`` vs a float LR with ``ReduceLROnPlateau``.  Each fit is
a small MLP on 4096×32 random data, batch 32, 8 epochs; best of 5 after a warm-up fit.
Target (issue #4): every ratio ≤ 1.05.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lrdsl.keras  # noqa: E402

EPOCHS, BATCH, N = 8, 32, 4096
STEPS = N // BATCH


def data():
    rng = np.random.RandomState(0)
    x = rng.randn(N, 32).astype("float32")
    return x, (x[:, :4].sum(1) > 0).astype("float32")


def fit_seconds(make_optimizer, callbacks=lambda: ()):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=make_optimizer(), loss="binary_crossentropy")
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_split=0.1)  # trace, warm up
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, validation_split=0.1,
              callbacks=list(callbacks()))
    return time.perf_counter() - start


def best_pair(ours, native, repeat=5):
    """Best-of-``repeat`` for each, run alternately so drift on a shared machine hits both."""
    mine, theirs = [], []
    for _ in range(repeat):
        mine.append(ours())
        theirs.append(native())
    return min(mine), min(theirs)


def main():
    warm = 2 * STEPS
    expr = f"warmup({warm}) >> cosine(0.1, {EPOCHS * STEPS})"
    rows = []
    ours, native = best_pair(
        lambda: fit_seconds(lambda: keras.optimizers.SGD(learning_rate=lrdsl.keras.schedule(expr))),
        lambda: fit_seconds(lambda: keras.optimizers.SGD(
            learning_rate=keras.optimizers.schedules.CosineDecay(
                0.0, EPOCHS * STEPS, warmup_target=0.1, warmup_steps=warm))))
    rows.append(("schedule: warmup+cosine", ours, "CosineDecay(warmup)", native))

    def reduce_on_plateau():
        return [keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2)]

    plateau = "0.1 | plateau(val_loss, 0.5, patience=1)"
    ours, native = best_pair(
        lambda: fit_seconds(lambda: keras.optimizers.SGD(learning_rate=0.1),
                            lambda: [lrdsl.keras.callback(plateau)]),
        lambda: fit_seconds(lambda: keras.optimizers.SGD(learning_rate=0.1), reduce_on_plateau))
    rows.append(("callback: const | plateau", ours, "ReduceLROnPlateau", native))
    full = f"{expr} | plateau(val_loss, 0.5, patience=1)"
    ours, native = best_pair(
        lambda: fit_seconds(lambda: keras.optimizers.SGD(learning_rate=0.1),
                            lambda: [lrdsl.keras.callback(full, steps_per_epoch=STEPS)]),
        lambda: fit_seconds(lambda: keras.optimizers.SGD(learning_rate=0.1), reduce_on_plateau))
    rows.append(("callback: warmup+cosine | plateau", ours, "ReduceLROnPlateau", native))
    print(f"keras {keras.__version__} ({keras.backend.backend()}), {EPOCHS} epochs × {STEPS} steps, best of 5")
    print(f"{'lrdsl':<36} {'s':>7}   {'native':<22} {'s':>7} {'ratio':>7}  target ≤ 1.05")
    for name, mine, other, theirs in rows:
        ratio = mine / theirs
        print(f"{name:<36} {mine:>7.3f}   {other:<22} {theirs:>7.3f} {ratio:>7.3f}  "
              f"{'ok' if ratio <= 1.05 else 'MISS'}")


if __name__ == "__main__":
    main()
