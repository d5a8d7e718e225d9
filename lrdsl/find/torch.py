"""The LR range test on PyTorch: ``lrdsl.torch.find_lr``.

    result = lrdsl.torch.find_lr(model, optimizer, loader, torch.nn.functional.cross_entropy)
    result.suggestion, result.valley       # steepest descent, fastai's valley
    result.plot("find.png")

The sweep ``anneal(start, end, steps, shape=exp)`` is run by :func:`lrdsl.torch.scheduler` on
the optimizer itself, so each recorded LR is the one its step used and equals
``lrdsl.curve`` of the sweep.  Single process: under DDP each rank would sweep on its own
(not DDP-aware; run it before wrapping the model, or on one rank).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Iterator

import torch

import lrdsl.torch
from lrdsl.errors import LrdslError
from lrdsl.find.sweep import FindResult, Recorder, check_sweep, sweep


def _batches(loader: Iterable) -> Iterator:
    """The loader's batches, over and over (a short loader is cycled)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise LrdslError("find_lr: the loader yielded no batches")


def _split(batch: Any, device: torch.device) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise LrdslError(f"find_lr: each batch must be (inputs, targets), got {type(batch).__name__}")
    x, y = batch[0], batch[1]
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
    if isinstance(y, torch.Tensor):
        y = y.to(device, non_blocking=True)
    return x, y


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def find_lr(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
            loss_fn: Callable[[Any, Any], torch.Tensor], *, start: float = 1e-7, end: float = 10,
            steps: int = 100, smooth: float = 0.98, diverge: float = 4,
            device: torch.device | str | None = None) -> FindResult:
    """Train ``steps`` steps with the LR swept geometrically from ``start`` to ``end``; undo them.

    Each step takes the next ``(inputs, targets)`` batch of ``loader`` (cycled if short), runs
    ``loss = loss_fn(model(inputs), targets)``, ``backward()`` and ``optimizer.step()``, and
    records the loss and its debiased moving average (β = ``smooth``).  It stops after the
    step whose smoothed loss exceeds ``diverge`` × the best smoothed loss (or is not finite).

    Afterwards the model's ``state_dict`` (buffers included) and the optimizer's state (its
    groups' lrs, momentum/Adam buffers, step counts) are restored bit for bit, tensor lrs in
    place, the model's train/eval mode as it was, and torch's RNG state (CPU, and the CUDA
    device used) as it was, so training afterwards runs as if the test never happened.  The
    loader's own iterator state (a shuffling sampler's generator) is not restored.

    Args:
        model, optimizer: the optimizer must hold the model's parameters; its group lrs only
            set the groups' ratios during the sweep (group 0 follows the sweep).
        loader: any iterable of ``(inputs, targets)`` batches, e.g. a ``DataLoader``.
        loss_fn: ``(outputs, targets) -> scalar tensor``.
        device: where batches are moved (default: the device of the model's first parameter).

    Returns a :class:`lrdsl.find.FindResult`: ``lrs``, ``losses``, ``smoothed``,
    ``suggestion`` (steepest descent), ``valley`` (fastai's rule), ``plot(path)``.
    """
    check_sweep(start, end, steps, smooth, diverge)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise LrdslError(f"find_lr needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
    device = torch.device(device) if device is not None else _device_of(model)
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    tensor_lrs = [group["lr"] for group in optimizer.param_groups]
    was_training = model.training
    expr = sweep(start, end, steps)
    recorder = Recorder(smooth, diverge)
    lrs: list[float] = []
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            scheduler = lrdsl.torch.scheduler(optimizer, expr)
            group = optimizer.param_groups[0]
            batches = _batches(loader)
            model.train()
            for _ in range(steps):
                x, y = _split(next(batches), device)
                lrs.append(float(group["lr"]))  # what this step uses (the scheduler's tick)
                loss = loss_fn(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if recorder.add(loss.item()):
                    break
        finally:
            model.load_state_dict(model_state)
            optimizer.load_state_dict(optimizer_state)
            for group, lr in zip(optimizer.param_groups, tensor_lrs):
                if isinstance(lr, torch.Tensor):  # the same tensor object: compiled steps keep it
                    lr.copy_(group["lr"])
                    group["lr"] = lr
            model.train(was_training)
            optimizer.zero_grad(set_to_none=True)
    return recorder.result(lrs, expr, steps)
