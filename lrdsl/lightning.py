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
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import LRSchedulerConfig

from lrdsl._trainers import gather_specs, monitors_of, resume
from lrdsl.errors import LrdslError, MetricError
from lrdsl.torch import Scheduler, Spec, scheduler

__all__ = ["Schedule"]


class Schedule(Callback):
    """A Lightning ``Callback`` driving the trainer's optimizer by lrdsl expressions.

    Args:
        expr: the LR: expression text, :class:`lrdsl.Expr`, or a mapping from param-group name or
            index to an expression (``"*"`` for the rest), as in :func:`lrdsl.torch.scheduler`.
        momentum, beta2, weight_decay: optional expressions for those hyperparameters
            (``momentum`` is Adam's ``betas[0]``), as in :func:`lrdsl.torch.scheduler`.

    After ``on_fit_start``, ``self.scheduler`` is the :class:`lrdsl.torch.Scheduler` in use.
    """

    def __init__(self, expr: Spec, *, momentum: Spec | None = None, beta2: Spec | None = None,
                 weight_decay: Spec | None = None):
        self._specs = gather_specs(expr, momentum, beta2, weight_decay)
        #: the metrics a plateau reads from ``trainer.callback_metrics``
        self.monitors: tuple[str, ...] = monitors_of(self._specs.values())
        self.scheduler: Scheduler | None = None
        self._pending: dict | None = None  # a checkpoint's state, loaded before the scheduler exists
        self._reported = False  # a plateau report was made in this fit
        self._warned = False  # that no report can come was said (once per callback)

    # --- building the scheduler ------------------------------------------------------------------
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise LrdslError(f"lrdsl.lightning.Schedule drives one optimizer; configure_optimizers "
                             f"returned {len(optimizers)}")
        optimizer = optimizers[0]
        self._reported = False
        total, per_epoch = _units(trainer)
        try:
            self.scheduler = scheduler(optimizer, self._specs["expr"], momentum=self._specs.get("momentum"),
                                       beta2=self._specs.get("beta2"),
                                       weight_decay=self._specs.get("weight_decay"),
                                       steps_per_epoch=per_epoch, total=total)
        except LrdslError as error:
            raise type(error)(f"{error} (lrdsl.lightning.Schedule: total={total} optimizer steps, "
                              f"steps_per_epoch={per_epoch})") from None
        configs = trainer.strategy.lr_scheduler_configs
        replaced = [c for c in configs if getattr(c.scheduler, "optimizer", None) is optimizer]
        for config in replaced:
            rank_zero_warn(f"lrdsl.lightning.Schedule replaces the {type(config.scheduler).__name__} "
                           f"that configure_optimizers returned")
        ours = LRSchedulerConfig(self.scheduler, interval="step", frequency=1)
        trainer.strategy.lr_scheduler_configs = [c for c in configs if c not in replaced] + [ours]
        if not any(c is ours for c in trainer.lr_scheduler_configs):  # what the fit loop steps
            raise LrdslError("lrdsl.lightning.Schedule needs the trainer to step the schedulers in "
                             "trainer.strategy.lr_scheduler_configs, which this Lightning version "
                             "does not; the LR would stay at its first value")
        if self._pending is not None:
            state, self._pending = self._pending, None
            resume(self.scheduler, state, "lrdsl.lightning.Schedule",
                   "max_epochs/max_steps, limit_train_batches, accumulate_grad_batches")

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
        self.scheduler.report({m: float(metrics[m]) for m in self.monitors})
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
    total = stepping if isinstance(stepping, (int, float)) and math.isfinite(stepping) and stepping > 0 else None
    return total, per_epoch
