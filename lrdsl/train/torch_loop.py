"""Training with PyTorch: one lrdsl scheduler, single process or DDP under torchrun.

The schedule is a program (docs/app.md): besides the LR and the optimizer targets it may hold
the free values ``dropout`` (every dropout layer's ``p``, set before each batch), ``ema`` (the
decay of an exponential moving average of the weights, updated after each optimizer step and
validated each epoch as ``val_acc_ema``) and, on the samples clock, ``batch_size`` (the size of
the batch drawn next).

Each epoch reseeds from ``seed + epoch`` (shuffle and dropout), so a run resumed from a
checkpoint trains exactly as the uninterrupted one: same losses, so the same plateau
reports, so the same LR sequence.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import lrdsl.torch
from lrdsl import channels
from lrdsl.errors import LrdslError
from lrdsl.train import checkpoint as ckpt
from lrdsl.train.checkpoint import rebase_lines
from lrdsl.train.config import free_values, program_of, run_title, targets as scheduled_targets, tick_units
from lrdsl.train.console import epoch_line
from lrdsl.train.csv_files import lr_columns, metric_columns
from lrdsl.train.resume import end_epoch, restore_logs, resume_checkpoint
from lrdsl.train.run_log import RunLog, closing_run
from lrdsl.train.data import Dataset


def build_model(cfg, data: Dataset) -> nn.Module:
    layers: list[nn.Module] = []
    if cfg.name == "cnn":
        assert data.image_shape is not None  # the app checks model=cnn against the data first
        height, width = data.image_shape
        layers.append(nn.Unflatten(1, (1, height)))
        channels = 1
        for out in cfg.channels:
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            channels = out
        features = channels * height * width
    else:
        features = data.features
    layers.append(nn.Flatten())
    for width_ in cfg.hidden:
        layers += [nn.Linear(features, width_), nn.ReLU(), nn.Dropout(cfg.dropout)]
        features = width_
    layers.append(nn.Linear(features, data.classes))
    return nn.Sequential(*layers)


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
    name, wd = cfg.name, cfg.weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=0.01, momentum=cfg.momentum, weight_decay=wd)
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta}
    return classes[name](params, lr=0.01, weight_decay=wd)  # the schedule sets the lr


def _wants_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def _device(cuda: bool, local_rank: int) -> torch.device:
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LrdslError("trainer.device=cuda, but no CUDA device is visible; use auto or cpu")
    return torch.device("cuda", local_rank)


class _Distributed:
    """Rank, world size and the collective helpers (a no-op when single)."""

    def __init__(self, strategy: str, device_kind: str):
        self.active = strategy == "ddp"
        if self.active:
            if "RANK" not in os.environ:
                raise LrdslError("trainer.strategy=ddp runs under torchrun: "
                                 "torchrun --nproc_per_node=2 -m lrdsl.train trainer.strategy=ddp")
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))

    def sum(self, values: list[float], device) -> list[float]:
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def finish(self) -> None:
        """Wait for every rank, then leave the process group (however the epochs ended)."""
        if self.active:
            dist.barrier()
            dist.destroy_process_group()


def _loader(x, y, batch_size, seed, epoch, distributed: _Distributed, shuffle: bool):
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    sampler: torch.utils.data.Sampler
    if distributed.active:
        shards: torch.utils.data.DistributedSampler = torch.utils.data.DistributedSampler(
            dataset, distributed.world, distributed.rank, shuffle=shuffle, seed=seed)
        shards.set_epoch(epoch)
        sampler = shards
    elif shuffle:
        sampler = torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        sampler = torch.utils.data.SequentialSampler(dataset)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def _evaluate(model, loader, device, distributed) -> tuple[float, float]:
    model.eval()
    loss_sum = correct = count = 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            count += len(y)
    loss_sum, correct, count = distributed.sum([loss_sum, correct, count], device)
    return loss_sum / count, correct / count


def train(cfg, data: Dataset, out: Path) -> dict:
    """Train ``cfg``'s model on ``data`` into ``out``; the last epoch's metrics row."""
    trainer = cfg.trainer
    run = _set_up(cfg, data)
    checkpoint = resume_checkpoint(trainer)
    expected = ckpt.manifest(cfg, data, backend="torch", epochs_done=0, ticks_done=0, units=run.units)
    resumed = None if checkpoint is None else _resume(run, checkpoint, expected, trainer.rebase)
    if run.distributed.rank == 0:
        _take_directory(out, run, checkpoint, resumed, expected)
    start = 0 if resumed is None else resumed.epochs_done
    log = RunLog(out, enabled=run.distributed.rank == 0, append=checkpoint is not None,
                 targets=run.columns, logger=trainer.logger, ticks_per_epoch=run.ticks_per_epoch,
                 ema=run.ema is not None, samples=run.samples)
    val_loader = _loader(data.x_val, data.y_val, 512, trainer.seed, 0, run.distributed, False)
    result: dict = {}
    try:
        with closing_run(log, out, run_title(cfg, "torch"), plot=run.distributed.rank == 0):
            for epoch in range(start, end_epoch(trainer, start)):
                result = _epoch(run, epoch, data, val_loader, trainer, log, out, expected)
    finally:
        run.distributed.finish()
    return result


@dataclass
class _Run:
    """What the epochs work on: the model, its optimizer and scheduler, where they run, and the
    schedule's units (``tick_units``) and scheduled targets."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: lrdsl.torch.Scheduler
    device: torch.device
    distributed: _Distributed
    per_step: bool
    ticks_per_epoch: int
    units: dict
    targets: dict
    #: the free values (dropout, ema, batch_size): {name: expression}
    free: dict
    #: the model's dropout layers (set by a ``dropout`` channel)
    dropouts: list
    #: the EMA of the weights (an ``ema`` channel), or None
    ema: "Ema | None"
    #: whether the schedule runs on the samples clock (lr.csv's ``samples`` column)
    samples: bool

    @property
    def columns(self) -> tuple[str, ...]:
        """lr.csv's channel columns: the targets, then the free values."""
        return (*self.targets, *self.free)


class Ema:
    """An exponential moving average of a model's weights whose decay changes every update:
    ``ema ← decay · ema + (1 − decay) · weights`` after each optimizer step, ``decay`` the
    schedule's ``ema`` at that step (``torch.optim.swa_utils.AveragedModel`` with such an
    ``avg_fn``, except that the first update averages too instead of copying: the average
    starts from the initial weights).  Buffers are copied."""

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        #: the decay of the last update (what lr.csv's ema column shows)
        self.decay = math.nan

    def update(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        with torch.no_grad():
            for average, weight in zip(self.model.parameters(), model.parameters()):
                average.mul_(decay).add_(weight.detach(), alpha=1.0 - decay)
            for kept, buffer in zip(self.model.buffers(), model.buffers()):
                kept.copy_(buffer)

    def reset(self, model: nn.Module) -> None:
        """Start the average at ``model``'s weights (a rebase that adds ``ema``)."""
        self.model.load_state_dict(model.state_dict())

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def set_dropout(dropouts: list, rate: float) -> None:
    """Every dropout layer's rate (``p``): read at the next forward pass."""
    for layer in dropouts:
        layer.p = rate


def _set_up(cfg, data: Dataset) -> _Run:
    """The processes and device, then a fresh model, optimizer and scheduler, seeded."""
    trainer = cfg.trainer
    cuda = _wants_cuda(trainer.device)
    distributed = _Distributed(trainer.strategy, "cuda" if cuda else "cpu")
    device = _device(cuda, distributed.local_rank)
    if distributed.rank == 0:
        name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
        print(f"device: {device}{name}" + (f", {distributed.world} processes" if distributed.active else ""),
              flush=True)
    torch.manual_seed(trainer.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    model = build_model(cfg.model, data).to(device)
    if distributed.active:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    steps = len(_loader(data.x_train, data.y_train, trainer.batch_size, trainer.seed, 0, distributed, True))
    per_step, ticks_per_epoch, units = tick_units(cfg, steps, len(data.x_train))
    targets, free = scheduled_targets(cfg), free_values(cfg)
    program = program_of(cfg)
    try:
        scheduler = lrdsl.torch.scheduler(optimizer, program, **units)
    except LrdslError as error:  # a channel out of its range: "ema: … reaches 1.5; …"
        channel = next((n for n in program if error.message.startswith(f"{n}:")), None)
        if channel is None:
            raise
        key = "expr" if channel == "lr" else channel
        raise LrdslError(f"config key schedule.{key}{error.message[len(channel):]}") from None
    plain: nn.Module = model.module if distributed.active else model  # type: ignore[assignment]
    dropouts = [m for m in plain.modules() if isinstance(m, nn.Dropout)] if "dropout" in free else []
    ema = Ema(plain) if "ema" in free else None
    return _Run(model, optimizer, scheduler, device, distributed, per_step, ticks_per_epoch, units, targets,
                {name: free[name] for name in program.free}, dropouts, ema, units.get("clock") == "samples")


@dataclass
class _Resumed:
    """Where a checkpoint left its run: its manifest, its epochs, and the values it had in force
    at its tick (plateau included): what a rebase switches from, and the constants of targets it
    did not schedule."""

    meta: dict
    epochs_done: int
    saved_values: dict


def _resume(run: _Run, checkpoint: Path, expected: dict, rebase: bool) -> _Resumed:
    """Load ``checkpoint`` into the run's model, optimizer and scheduler."""
    if checkpoint.suffix == ".keras":
        raise LrdslError(f"trainer.resume: {checkpoint} is a Keras checkpoint; this run has backend=torch")
    state = ckpt.load_torch(checkpoint, expected, run.device, rebase=rebase)
    try:
        plain: nn.Module = run.model.module if run.distributed.active else run.model  # type: ignore[assignment]
        plain.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        saved_values = {t: group_value(run.optimizer.param_groups[0], t) for t in channels.TARGETS}
        run.scheduler.load_state_dict(state["scheduler"], rebase=rebase)
        if run.ema is not None and "ema" in state:
            run.ema.load_state_dict(state["ema"])
        elif run.ema is not None:  # a rebase that adds ema starts the average at the weights
            run.ema.reset(plain)
    except LrdslError as error:
        raise LrdslError(f"trainer.resume: {checkpoint}: {error}") from None
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise LrdslError(f"trainer.resume: {checkpoint} does not fit this run's model or optimizer "
                         f"({str(error).strip().splitlines()[0][:160]})") from None
    meta = state["lrdsl"]
    if run.scheduler.last_epoch != meta["ticks_done"]:
        raise LrdslError(f"trainer.resume: {checkpoint} is inconsistent (scheduler at tick "
                         f"{run.scheduler.last_epoch}, manifest at {meta['ticks_done']})")
    return _Resumed(meta, meta["epochs_done"], saved_values)


def _take_directory(out: Path, run: _Run, checkpoint: Path | None, resumed: _Resumed | None,
                    expected: dict) -> None:
    """Rank 0: clear a killed run's temporaries; on a resume, the logs cut at the checkpoint and
    a rebase's lines."""
    ckpt.remove_stray_temporaries(out)
    if checkpoint is None or resumed is None:
        return
    # a column the checkpointed run did not have (a free value or val_acc_ema a rebase adds) is nan there
    fill = {**{c: math.nan for c in (*run.free, "samples", "val_acc_ema")}, **resumed.saved_values}
    restore_logs(checkpoint.parent, out, resumed.epochs_done, run.scheduler.last_epoch,
                 lr_columns(run.columns, run.samples), fill=fill, metrics=metric_columns(run.ema is not None))
    for line in rebase_lines(resumed.meta, expected, resumed.saved_values, run.scheduler):
        print(line, flush=True)


def _epoch(run: _Run, epoch: int, data: Dataset, val_loader, trainer, log: RunLog, out: Path,
           expected: dict) -> dict:
    """Train one epoch, validate, log and print its row, step the schedule, checkpoint."""
    began = time.perf_counter()
    loss, lr_used = _train_epoch(run, epoch, data, trainer, log)
    val_loss, val_acc = _evaluate(run.model, val_loader, run.device, run.distributed)
    metrics = {"loss": loss, "val_loss": val_loss, "val_acc": val_acc}
    if run.ema is not None:
        metrics["val_acc_ema"] = _evaluate(run.ema.model, val_loader, run.device, run.distributed)[1]
    row = dict(epoch=epoch + 1, lr=lr_used, seconds=round(time.perf_counter() - began, 3), **metrics)
    log.epoch(**row)  # written before anything below can fail
    if run.distributed.rank == 0:
        print(epoch_line(row, trainer.epochs), flush=True)
    # every rank validates and reports here: the mean over ranks is taken at once (a collective),
    # so the checkpoint rank 0 writes next holds the report
    run.scheduler.report(metrics, collective=True)  # acts from the next step on
    if not run.per_step:
        run.scheduler.step()  # the next epoch's tick
    if run.distributed.rank == 0:
        _save(out / "checkpoint.pt", run.model, run.optimizer, run.scheduler,
              {**expected, "epochs_done": epoch + 1, "ticks_done": run.scheduler.last_epoch},
              run.distributed, run.ema)
    return row


def _train_epoch(run: _Run, epoch: int, data: Dataset, trainer, log: RunLog) -> tuple[float, float]:
    """One pass over the shuffled training data: (mean loss, the LR of its last batch)."""
    torch.manual_seed(trainer.seed + epoch)  # dropout: the same in a resumed run
    if "batch_size" in run.free:
        loader = _ramped_batches(run.scheduler, data, trainer.seed, epoch)
    else:
        loader = _loader(data.x_train, data.y_train, trainer.batch_size, trainer.seed, epoch, run.distributed, True)
    run.model.train()
    scheduler, free = run.scheduler, run.free
    loss_sum = seen = 0.0
    for x, y in _progress(loader, epoch, trainer, run.distributed.rank):
        x, y = x.to(run.device), y.to(run.device)
        lr_used = scheduler.get_last_lr()[0]  # the batch's LR: after the last one, the epoch's
        if run.dropouts:
            set_dropout(run.dropouts, scheduler.value("dropout"))
        decay = scheduler.value("ema") if run.ema is not None else math.nan
        if run.per_step or seen == 0:
            # the values in force for this batch, as applied: the layers' p, the EMA's decay
            applied = {"dropout": run.dropouts[0].p if run.dropouts else math.nan, "ema": decay,
                       "batch_size": scheduler.value("batch_size") if "batch_size" in free else math.nan}
            log.tick(scheduler.last_epoch, lr_used, *(scheduler.get_last(t)[0] for t in run.targets),
                     *(applied[name] for name in free),
                     *((scheduler.runtime.counters["samples"],) if run.samples else ()))
        loss = nn.functional.cross_entropy(run.model(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.ema is not None:
            run.ema.update(run.model.module if run.distributed.active else run.model, decay)  # type: ignore[arg-type]
        if run.per_step:
            if run.samples:  # the position moves by the batch drawn
                scheduler.step(samples=len(y))
            else:
                scheduler.step()
        loss_sum += float(loss.detach()) * len(y)
        seen += len(y)
    loss_sum, seen = run.distributed.sum([loss_sum, seen], run.device)
    return loss_sum / seen, lr_used


def _ramped_batches(scheduler, data: Dataset, seed: int, epoch: int):
    """One pass over the data shuffled for ``epoch``, each batch as large as the schedule's
    ``batch_size`` at the position it is drawn at (the scheduler steps between batches); the
    last batch is what is left."""
    n = len(data.x_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    start = 0
    while start < n:
        index = order[start:start + int(scheduler.value("batch_size"))]
        start += len(index)
        yield x[index], y[index]


def group_value(group: dict, target: str) -> float | None:
    """A param group's value of ``target`` (momentum: Adam's beta1), None if it has none."""
    value = channels.target(target).torch_read(group)
    return None if value is None else float(value)


def _save(path: Path, model, optimizer, scheduler, meta: dict, distributed, ema: Ema | None = None) -> None:
    """One file, atomically: the states and the manifest (see :mod:`lrdsl.train.checkpoint`)."""
    state = {"model": (model.module if distributed.active else model).state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    if ema is not None:
        state["ema"] = ema.state_dict()
    ckpt.save_torch(path, state, meta)


def _progress(loader, epoch, trainer, rank):
    if not trainer.progress or rank != 0:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}/{trainer.epochs}", leave=False, unit="batch",
                dynamic_ncols=True)

