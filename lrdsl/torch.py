"""PyTorch backend: one ``LRScheduler`` for any expression.

    sched = lrdsl.torch.scheduler(optimizer, "warmup(5ep) >> cosine(0.1, 95ep) | plateau(val_loss, 0.5)",
                                  steps_per_epoch=len(loader))
    for epoch in range(epochs):
        for batch in loader:
            ...; optimizer.step(); sched.step()
        sched.report(val_loss=validate())

The LR at tick t is the reference :func:`lrdsl.curve` value, computed in closed form from
the tick (the plan is evaluated in vectorized float64 chunks of ticks), never by multiplying
the previous LR: nothing drifts, and an outside edit to ``group["lr"]`` does not persist.
Parameter groups keep their ratios: group g gets value · initial_lr_g / initial_lr_0.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LRScheduler

from lrdsl.errors import LrdslError
from lrdsl.nodes import Expr
from lrdsl.parser import parse
from lrdsl.plan import plan
from lrdsl.plateau import PlateauState

#: ticks evaluated per vectorized batch
CHUNK = 4096


class Scheduler(LRScheduler):
    """An ``LRScheduler`` running an lrdsl expression; see :func:`scheduler`."""

    def __init__(self, optimizer: torch.optim.Optimizer, expr: str | Expr, *,
                 steps_per_epoch: float | None = None, total: float | None = None,
                 last_epoch: int = -1):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LrdslError(f"scheduler() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.expr = parse(expr)
        self.steps_per_epoch, self.total = steps_per_epoch, total
        self._plan = plan(self.expr, steps_per_epoch=steps_per_epoch, total=total)
        rule = self._plan.plateau
        self._plateau = PlateauState(rule) if rule is not None else None
        self._plateau_min = rule.min if rule is not None else 0.0
        self._values: list[float] = []
        self._values_from = 0
        try:
            super().__init__(optimizer, last_epoch)
        except KeyError as error:  # last_epoch ≥ 0 on groups that never had a scheduler
            raise LrdslError(f"last_epoch={last_epoch} needs the optimizer's saved 'initial_lr': "
                             f"load the optimizer's state first ({error})") from None

    def _initial_step(self) -> None:
        bases = [float(b) for b in self.base_lrs]
        if bases[0] == 0 and any(bases):
            raise LrdslError("parameter group 0 has lr=0, so the other groups' lr ratios to it are "
                             "undefined; give group 0 a nonzero lr")
        self._ratios = [b / bases[0] if bases[0] else 1.0 for b in bases]
        self._step_count = 0
        self.step()

    # --- values ----------------------------------------------------------------------------
    def _refill(self, tick: int) -> float:
        """Evaluate the next CHUNK ticks at once (vectorized, float64) and return tick's value."""
        self._values_from = tick
        self._values = self._plan.values(np.arange(tick, tick + CHUNK, dtype=np.float64)).tolist()
        return self._values[0]

    def lr_at(self, tick: int) -> float:
        """The learning rate of group 0 at ``tick`` under the current plateau state."""
        i = tick - self._values_from
        f = self._values[i] if 0 <= i < len(self._values) else self._refill(tick)
        plateau = self._plateau
        if plateau is None:
            return f
        lr = f * plateau.scale  # PlateauRule.apply, inlined: min(f, max(f·s, min))
        if lr < self._plateau_min:
            lr = self._plateau_min
        return f if lr > f else lr

    def _apply(self) -> None:
        # the hot path: one list lookup, the plateau's min/max, one store per group
        lr = self.lr_at(self.last_epoch)
        groups = self.optimizer.param_groups
        if len(groups) == 1 and type(groups[0]["lr"]) is float:  # the common case, ratio 1
            groups[0]["lr"] = lr
            self._last_lr = [lr]
            return
        last = []
        for group, ratio in zip(groups, self._ratios):
            value = lr * ratio
            current = group["lr"]
            if type(current) is float or not isinstance(current, torch.Tensor):
                group["lr"] = value
            else:
                current.fill_(value)  # in place: a compiled optimizer step sees no new constant
            last.append(value)
        self._last_lr = last

    # --- the scheduler protocol ------------------------------------------------------------
    def step(self, metrics: float | Mapping[str, Any] | None = None, epoch: None = None) -> None:
        """Advance one tick; with ``metrics`` (the monitor's value, or a dict) also report."""
        if epoch is not None:
            raise LrdslError("step(epoch=...) is not supported: lrdsl schedules are closed-form in "
                             "the tick; resume with load_state_dict() or last_epoch=")
        if metrics is not None and self._plateau is not None:
            self._report(metrics)
        self._step_count += 1
        self.last_epoch += 1
        self._apply()

    def report(self, metrics: float | Mapping[str, Any] | None = None, /, **named: Any) -> None:
        """Report validation metrics to the plateau without advancing the tick.

        ``report(val_loss=0.3)``, ``report({"val_loss": 0.3})`` or ``report(0.3)``.  The new
        scale applies at once, to the current tick on.
        """
        if self._plateau is None:
            return
        self._report(named if metrics is None else metrics)
        self._apply()

    def _report(self, metrics) -> None:
        value = self._plateau.rule.value_in(metrics)
        if _DISTRIBUTED and dist.is_initialized():
            value = _mean_across_ranks(value)
        self._plateau.report_value(value)

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch) * r for r in self._ratios]

    def state_dict(self) -> dict[str, Any]:
        """The canonical expression, its units, the tick and the plateau state."""
        return {
            "expr": str(self.expr), "steps_per_epoch": self.steps_per_epoch, "total": self.total,
            "last_epoch": self.last_epoch, "_step_count": self._step_count,
            "base_lrs": [float(b) for b in self.base_lrs],
            "plateau": self._plateau.state_dict() if self._plateau is not None else None,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from a saved state: exactly the sequence of an uninterrupted run."""
        saved = (state_dict.get("expr"), state_dict.get("steps_per_epoch"), state_dict.get("total"))
        ours = (str(self.expr), self.steps_per_epoch, self.total)
        if saved != ours:
            raise LrdslError(f"this scheduler state was saved from {saved[0]!r} "
                             f"(steps_per_epoch={saved[1]}, total={saved[2]}), not from {ours[0]!r} "
                             f"(steps_per_epoch={ours[1]}, total={ours[2]})")
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        if self._plateau is not None and state_dict.get("plateau") is not None:
            self._plateau.load_state_dict(state_dict["plateau"])
        self._apply()

    def __repr__(self) -> str:
        return f"lrdsl.torch.Scheduler({str(self.expr)!r}, tick={self.last_epoch})"


_DISTRIBUTED = dist.is_available()


def _mean_across_ranks(value: float) -> float:
    """Under torch.distributed, the average over ranks, so every rank decides alike."""
    if dist.get_world_size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
        else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / dist.get_world_size()


def scheduler(optimizer: torch.optim.Optimizer, expr: str | Expr, *,
              steps_per_epoch: float | None = None, total: float | None = None,
              last_epoch: int = -1) -> Scheduler:
    """An ``LRScheduler`` for ``expr`` on ``optimizer``; the LR of tick 0 is in force at once.

    Args:
        optimizer: any ``torch.optim.Optimizer``; its groups' lrs only set the groups' ratios.
        expr: expression text or :class:`lrdsl.Expr`.
        steps_per_epoch: pass it when you call ``step()`` per batch (converts ``ep``).
        total: the run's length in ticks, for ``%`` durations.
        last_epoch: the last tick already taken, as in PyTorch (−1 for a fresh start).

    ``step()`` advances a tick, ``step(metrics)`` advances and reports, ``report(**metrics)``
    reports only.  In Hydra: ``{_target_: lrdsl.torch.scheduler, _partial_: true, expr: ...}``.
    """
    return Scheduler(optimizer, expr, steps_per_epoch=steps_per_epoch, total=total,
                     last_epoch=last_epoch)
