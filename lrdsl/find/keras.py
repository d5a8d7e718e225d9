"""The LR range test on Keras 3: ``lrdsl.keras.find_lr``.

    model.compile(optimizer=keras.optimizers.SGD(momentum=0.9), loss=...)
    result = lrdsl.keras.find_lr(model, x, y, batch_size=64)
    result.suggestion, result.valley       # steepest descent, fastai's valley
    result.plot("find.png")

The sweep ``anneal(start, end, steps, shape=exp)`` runs as an :func:`lrdsl.keras.schedule` on
the model's own optimizer, in the graph, from its iteration counter; the recorded LRs are that
schedule's float32 values at ticks 0 … n − 1, i.e. ``lrdsl.curve`` of the sweep to float32.
Single process only (a ``tf.distribute`` strategy is not handled).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

import lrdsl.keras
from lrdsl.errors import LrdslError
from lrdsl.find.sweep import FindResult, Recorder, check_sweep, sweep


def _batch_indices(count: int, batch_size: int, seed: int):
    """Batch index arrays: a fresh permutation per pass over the data (seeded), cycled."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(count)
        for begin in range(0, count, batch_size):
            yield order[begin:begin + batch_size]


def find_lr(model: keras.Model, x, y, *, batch_size: int = 32, start: float = 1e-7,
            end: float = 10, steps: int = 100, smooth: float = 0.98, diverge: float = 4,
            seed: int = 0) -> FindResult:
    """Train ``steps`` batches with the LR swept geometrically from ``start`` to ``end``; undo them.

    ``model`` must be compiled (its optimizer and loss are used; one ``train_on_batch`` per
    step, batches drawn from ``x``, ``y`` in a seeded random order, cycled).  Each step's
    loss and its debiased moving average (β = ``smooth``) are recorded; the sweep stops after
    the step whose smoothed loss exceeds ``diverge`` × the best smoothed loss (or is not
    finite).

    Afterwards every model variable (weights, BatchNorm statistics, dropout seed states) and
    every optimizer variable (iteration counter, lr, slots) holds its value from before, bit
    for bit, the optimizer's learning rate (a float variable or a schedule) is back, and so is
    the model's compiled train function.  An unbuilt model or optimizer is built first (its
    initial weights are then the ones restored).

    Returns a :class:`lrdsl.find.FindResult`: ``lrs``, ``losses``, ``smoothed``,
    ``suggestion`` (steepest descent), ``valley`` (fastai's rule), ``plot(path)``.
    """
    check_sweep(start, end, steps, smooth, diverge)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise LrdslError(f"find_lr: batch_size must be an integer ≥ 1, got {batch_size!r}")
    optimizer = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or optimizer is None:
        raise LrdslError("find_lr: compile the model first (model.compile(optimizer=..., loss=...)); "
                         "the test trains with its optimizer and loss")
    if optimizer.gradient_accumulation_steps:
        raise LrdslError("find_lr: an optimizer with gradient_accumulation_steps is not supported")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise LrdslError(f"find_lr: x and y must be arrays of samples (numpy or tensors), got "
                         f"{type(x).__name__} and {type(y).__name__}")
    if len(x) == 0 or len(x) != len(y):
        raise LrdslError(f"find_lr: x and y must hold the same number (≥ 1) of samples, "
                         f"got {len(x)} and {len(y)}")
    if not model.built:
        model(x[:1])
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    model_values = [v.numpy() for v in model.variables]
    optimizer_values = [v.numpy() for v in optimizer.variables]
    # guarded read: a Keras without _learning_rate is an LrdslError here, before the swap below
    learning_rate, train_function = lrdsl.keras._given_learning_rate(optimizer), model.train_function
    expr = sweep(start, end, steps)
    schedule = lrdsl.keras.schedule(expr)
    recorder = Recorder(smooth, diverge)
    try:
        optimizer.iterations.assign(0)  # the schedule's tick
        # Swapped in directly, on the private attribute read above: the public learning_rate
        # setter untracks the optimizer's lr variable, which would reorder its saved variables
        # for good (test_find checks the variable and the order come back).
        optimizer._learning_rate = schedule
        model.train_function = None  # a train function traced before captured the old lr
        batches = _batch_indices(len(x), batch_size, seed)
        for _ in range(steps):
            index = next(batches)
            logs = model.train_on_batch(x[index], y[index], return_dict=True)
            if recorder.add(float(logs["loss"])):
                break
    finally:
        optimizer._learning_rate = learning_rate
        model.train_function = train_function
        for variable, value in zip(model.variables, model_values):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, optimizer_values):
            variable.assign(value)
        model.reset_metrics()
    taken = len(recorder.losses)
    lrs = ops.convert_to_numpy(schedule(np.arange(taken))).astype(np.float64)
    return recorder.result(lrs, expr, steps)
