"""PyTorch Lightning: a callback that owns the schedule of the trainer's optimizer.

    trainer = lightning.Trainer(max_epochs=100, callbacks=[
        lrdsl.lightning.Schedule("warmup(5ep) >> cosine(0.1, 95ep) | plateau(val_loss, 0.5)"),
        lightning.pytorch.callbacks.LearningRateMonitor("step")])
    trainer.fit(module)                       # configure_optimizers returns just the optimizer

The tick is the optimizer step: tick k's values are in force during optimizer step k (0-based),
so the LR read from the optimizer at step k is ``lrdsl.curve(expr, n, steps_per_epoch=E,
total=T)[k]`` with

- ``T = trainer.estimated_stepping_batches`` (optimizer steps of the whole run: ``max_epochs``,
  ``max_steps``, ``limit_train_batches`` and ``accumulate_grad_batches`` included), for ``%``;
- ``E = ceil(num_training_batches / accumulate_grad_batches)``, the optimizer steps of one epoch
  (Lightning steps on an epoch's last batch even when its accumulation is short), for ``ep``.

The callback builds a :class:`lrdsl.torch.Scheduler` at ``on_fit_start`` and puts it in
``trainer.strategy.lr_scheduler_configs`` with ``interval="step"`` (replacing any scheduler
``configure_optimizers`` returned for that optimizer, as ``StochasticWeightAveraging`` does), so
Lightning steps it after each optimizer step (never on an accumulating batch) and
``LearningRateMonitor`` finds and logs it.  A plateau's monitor is read from
``trainer.callback_metrics`` at the end of each validation of ``fit`` (the sanity check is
not a report) and reported at once: report i acts from the next optimizer step on, which is
``curve(..., metrics=..., report_every=E)`` when validation runs at each epoch's end.

State: the scheduler's state (canonical expressions, tick, plateau state) is the callback's
``state_dict`` in Lightning checkpoints; ``fit(ckpt_path=...)`` restores it (and Lightning's
own ``lr_schedulers`` entry, the same state), so the run continues with exactly the
uninterrupted LR sequence, whether the checkpoint was saved at the end of the training epoch
(``ModelCheckpoint``'s default) or after validation (``save_on_train_epoch_end=False``, also
mid-epoch with ``val_check_interval``): the report comes first, in ``on_validation_end``, and
Lightning runs checkpoint callbacks after all others.  Lightning's own ``reduce_on_plateau`` path is not used, so its one-tick lag
after a ``ckpt_path`` resume does not arise.

Programs: ``expr`` may be a program; its free values (``kl``, ``ema``…) are read with
``value(name)`` / ``values()`` and logged with ``pl_module.log`` at each batch start, as
``LearningRateMonitor`` logs the LR, so a logger gets both at the same step.  Clocks: on a
``samples`` or ``tokens`` clock ``count(batch)`` says what each training batch consumed in this
process; the counts of an optimizer step's batches are added up, summed over the processes
(``trainer.strategy.reduce``), and given to the scheduler when Lightning steps it, so the
schedule moves by the global batch alike on one process or several.  The checkpointed state
holds the counters.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import LRSchedulerConfig

from lrdsl._trainers import Source, finite, reading, resume, split_count
from lrdsl.errors import ArgumentError, LrdslError, MetricError
from lrdsl.programs import Program as ProgramType
from lrdsl.torch import Scheduler, Spec

__all__ = ["Schedule"]

_WHO = "lrdsl.lightning.Schedule"
_SETTINGS = "max_epochs/max_steps, limit_train_batches, accumulate_grad_batches"


class Schedule(Callback):
    """A Lightning ``Callback`` driving the trainer's optimizer by an lrdsl program or expression.

    Args:
        expr: a program (:func:`lrdsl.program`, its text with ``name = …`` lines) or the LR:
            expression text, :class:`lrdsl.Expr`, or a mapping from param-group name or index
            to an expression (``"*"`` for the rest), as in :func:`lrdsl.torch.scheduler`.
        momentum, beta2, weight_decay: optional expressions for those hyperparameters
            (``momentum`` is Adam's ``betas[0]``), as in :func:`lrdsl.torch.scheduler`.
        clock: ``"ticks"`` (optimizer steps, the default), ``"samples"`` or ``"tokens"``.
        count: ``count(batch)``, what one training batch consumed, called on each batch (as
            the training step gets it) in this process: a number in the clock's unit or a
            dict ``{"samples": n, "tokens": m}``.  The counts of the batches of one optimizer
            step are summed over the accumulated batches and over the processes (DDP: each
            process counts its own batch, lrdsl adds them up), so the schedule moves by the
            global batch.  Not needed where the constants fix a step's size.
        total: the run's length in the clock's unit, for ``%``; by default the trainer's
            optimizer steps, converted where the constants fix a step's size.
        log: log the program's free values beside the LR at every step (``pl_module.log``).
        constants: ``samples_per_step``, ``tokens_per_sample``, ``samples_per_epoch``,
            ``tokens_per_epoch``, ``tokens_per_step``, as in :func:`lrdsl.torch.scheduler`
            (a step's sizes are global: all processes together).

    After ``on_fit_start``, ``self.scheduler`` is the :class:`lrdsl.torch.Scheduler` in use,
    and ``value(name)`` / ``values()`` give the program's values in force for the coming step.
    """

    def __init__(self, expr: Spec | ProgramType, *, momentum: Spec | None = None,
                 beta2: Spec | None = None, weight_decay: Spec | None = None,
                 clock: str = "ticks", count: Callable[[Any], Any] | None = None,
                 total: float | None = None, log: bool = True, **constants: float | None):
        self._program = Source(_WHO, expr, {"momentum": momentum, "beta2": beta2,
                                             "weight_decay": weight_decay}, clock, total, constants)
        if count is not None and not callable(count):
            raise ArgumentError(f"{_WHO}: count must be a function of the batch, got {count!r}",
                                argument="count")
        if count is None and not self._program.counts_fixed():
            raise ArgumentError(f"{_WHO}: a {clock} clock needs what each batch consumed: pass "
                                f"count=lambda batch: ... (e.g. batch['input_ids'].numel() for "
                                f"tokens), or fix the step's size with the constants "
                                f"(samples_per_step, tokens_per_step)", argument="count")
        self.count = count
        self._log = log
        #: the metrics a plateau reads from ``trainer.callback_metrics``
        self.monitors: tuple[str, ...] = self._program.monitors
        #: the program's free values, logged at every step
        self.free: tuple[str, ...] = self._program.free
        self.scheduler: Scheduler | None = None
        self._pending: dict | None = None  # a checkpoint's state, loaded before the scheduler exists
        self._counted: dict[str, Any] = {}  # this process's counts since the last optimizer step
        self._reported = False  # a plateau report was made in this fit
        self._warned = False  # that no report can come was said (once per callback)

    # --- the program's values --------------------------------------------------------------------
    def value(self, name: str) -> float:
        """Channel ``name``'s value in force for the coming optimizer step (a free value such
        as ``kl``, or a target's expression value before group ratios)."""
        return reading(self.scheduler, _WHO).value(name)

    def values(self) -> dict[str, float]:
        """Every channel's value now, by name (see :meth:`value`)."""
        return reading(self.scheduler, _WHO).values()

    # --- building the scheduler ------------------------------------------------------------------
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise LrdslError(f"{_WHO} drives one optimizer; configure_optimizers "
                             f"returned {len(optimizers)}")
        optimizer = optimizers[0]
        self._reported = False
        self._counted = {}
        total, per_epoch = _units(trainer)
        make = None if self.count is None else \
            functools.partial(_Counted, functools.partial(self._take_counts, trainer))
        self.scheduler = self._program.build(optimizer, total, per_epoch, _SETTINGS, make)
        configs = trainer.strategy.lr_scheduler_configs
        replaced = [c for c in configs if getattr(c.scheduler, "optimizer", None) is optimizer]
        for config in replaced:
            rank_zero_warn(f"{_WHO} replaces the {type(config.scheduler).__name__} "
                           f"that configure_optimizers returned")
        ours = LRSchedulerConfig(self.scheduler, interval="step", frequency=1)
        trainer.strategy.lr_scheduler_configs = [c for c in configs if c not in replaced] + [ours]
        if not any(c is ours for c in trainer.lr_scheduler_configs):  # what the fit loop steps
            raise LrdslError(f"{_WHO} needs the trainer to step the schedulers in "
                             "trainer.strategy.lr_scheduler_configs, which this Lightning version "
                             "does not; the LR would stay at its first value")
        if self._pending is not None:
            state, self._pending = self._pending, None
            resume(self.scheduler, state, _WHO, _SETTINGS)

    # --- counting and logging --------------------------------------------------------------------
    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                             batch: Any, batch_idx: int) -> None:
        if self.scheduler is None:
            return
        if self.count is not None:
            # counted at the batch's start: Lightning steps the schedulers before on_train_batch_end
            for key, n in split_count(self.count(batch), self._program.clock, _WHO).items():
                self._counted[key] = self._counted.get(key, 0) + n
        if self._log and self.free:
            # as LearningRateMonitor logs the LR: at each batch start, the values in force for
            # the optimizer step this batch belongs to, under the step the loggers give it
            for name in self.free:
                pl_module.log(name, torch.tensor(self.scheduler.value(name), dtype=torch.float64),
                              on_step=True, on_epoch=False, batch_size=1)

    def _take_counts(self, trainer: "pl.Trainer") -> tuple[Any, Any]:
        """(samples, tokens) the optimizer step just taken consumed on all processes."""
        counted, self._counted = self._counted, {}
        keys = sorted(counted)
        if trainer.world_size > 1 and keys:
            device = trainer.strategy.root_device
            local = torch.stack([torch.as_tensor(counted[k], dtype=torch.int64, device=device)
                                 for k in keys])
            total = trainer.strategy.reduce(local, reduce_op="sum")
            counted = dict(zip(keys, total.tolist()))
        return counted.get("samples"), counted.get("tokens")

    # --- plateau reports -------------------------------------------------------------------------
    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if (self.scheduler is None or not self.monitors or trainer.sanity_checking
                or trainer.state.fn != TrainerFn.FITTING):
            return
        metrics = trainer.callback_metrics
        missing = [m for m in self.monitors if m not in metrics]
        if missing:
            present = ", ".join(sorted(metrics)) or "nothing"
            raise MetricError(f"plateau monitors '{missing[0]}', but trainer.callback_metrics holds "
                              f"only: {present} (log it with self.log('{missing[0]}', ...) in "
                              f"validation_step)")
        # every rank validates and comes here: the mean over ranks is taken at once (a collective)
        self.scheduler.report({m: float(metrics[m]) for m in self.monitors}, collective=True)
        self._reported = True

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # an epoch's validation runs before this hook: an epoch that should have validated and
        # did not, or a fit with no validation loop at all, leaves the plateau unable to fire
        if not self.monitors or self._reported or self._warned or trainer.state.fn != TrainerFn.FITTING:
            return
        every = trainer.check_val_every_n_epoch
        if not trainer.enable_validation or (every is not None and trainer.current_epoch + 1 >= every):
            self._warned = True
            monitor = self.monitors[0]
            rank_zero_warn(f"lrdsl.lightning.Schedule: the plateau monitors '{monitor}', but epoch "
                           f"{trainer.current_epoch} ended without a validation to report it, so the "
                           f"plateau cannot fire; give fit() val_dataloaders and a validation_step "
                           f"that logs '{monitor}', or drop '| plateau'")

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = self._pending if self._pending is not None or self.scheduler is None \
            else self.scheduler.state_dict()
        return {} if state is None else {"scheduler": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        # the checkpoint is restored before on_fit_start builds the scheduler (Lightning restores
        # callbacks first, then sets up the optimizers; each fit builds a new one): keep it until then
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("scheduler"), dict):
            held = ", ".join(map(repr, state_dict)) if isinstance(state_dict, dict) else repr(state_dict)
            raise LrdslError(f"lrdsl.lightning.Schedule cannot load this callback state: it holds "
                             f"{held}, not a 'scheduler' state")
        self._pending = state_dict["scheduler"]


def _units(trainer: "pl.Trainer") -> tuple[float | None, float | None]:
    """(total optimizer steps of the run, optimizer steps per epoch); None where infinite."""
    stepping = trainer.estimated_stepping_batches  # also loads the train dataloader if needed
    batches = trainer.num_training_batches
    per_epoch: float | None = None
    if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
        per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    return finite(stepping), per_epoch


class _Counted(Scheduler):
    """A scheduler that, stepped by Lightning with no counts, takes them from ``counts()``:
    what the batches of the optimizer step consumed, as the callback counted them."""

    def __init__(self, counts: Callable[[], tuple[Any, Any]], *args: Any, **kwargs: Any):
        self._counts: Callable[[], tuple[Any, Any]] | None = None  # the first tick consumes nothing
        super().__init__(*args, **kwargs)
        self._counts = counts

    def step(self, metrics: float | Mapping[str, Any] | None = None,  # type: ignore[override]
             epoch: None = None, *, samples: int | None = None, tokens: int | None = None) -> None:
        if samples is None and tokens is None and self._counts is not None:
            samples, tokens = self._counts()
        super().step(metrics, epoch, samples=samples, tokens=tokens)
