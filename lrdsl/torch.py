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
        self._values_from = -CHUNK  # empty: the first lookup refills
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
        groups = self.optimizer.param_groups
        # one group holding a float lr: step() stores into it directly
        self._plain = len(groups) == 1 and type(groups[0]["lr"]) is float
        self._world: bool | None = None  # whether reports are averaged over ranks; see _across_ranks
        self._first_tick = self.last_epoch + 1
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
        f = self._values[i] if 0 <= i < CHUNK else self._refill(tick)
        plateau = self._plateau
        return f if plateau is None else plateau.lr(f)

    def _write(self, lr: float) -> None:
        """Set every group's lr to ``lr`` times its ratio; tensors in place."""
        for group, ratio in zip(self.optimizer.param_groups, self._ratios):
            current = group["lr"]
            if isinstance(current, torch.Tensor):
                current.fill_(lr * ratio)  # in place: a compiled optimizer step sees no new constant
            else:
                group["lr"] = lr * ratio

    # --- the scheduler protocol ------------------------------------------------------------
    def step(self, metrics: float | Mapping[str, Any] | None = None, epoch: None = None) -> None:
        """Advance one tick; with ``metrics`` (the monitor's value, or a dict) also report."""
        # This runs on every batch, so lr_at(), report() and PlateauState.report_value() are
        # inlined: a call costs as much as the work (bench/torch_step.py).
        if epoch is not None:
            raise LrdslError("step(epoch=...) is not supported: lrdsl schedules are closed-form in "
                             "the tick; resume with load_state_dict() or last_epoch=")
        plateau = self._plateau
        if metrics is not None and plateau is not None:  # report first: a bad metric changes nothing
            value = metrics if type(metrics) is float else plateau.rule.value_in(metrics)
            if self._world is not False:
                value = self._across_ranks(value)
            # PlateauState.report_value(value), inlined
            rule = plateau.rule
            if value < plateau.bar if rule.minimize else value > plateau.bar:  # NaN never improves
                plateau.best = value
                plateau.bar = value * rule.bar_scale + rule.bar_shift
                bad = 0
            else:
                bad = plateau.bad + 1
            if plateau.cooldown_left > 0:
                plateau.cooldown_left -= 1
                bad = 0
            if bad > rule.patience:
                plateau.scale *= rule.factor
                plateau.cooldown_left = rule.cooldown
                bad = 0
            plateau.bad = bad
        tick = self.last_epoch + 1
        self.last_epoch = tick
        i = tick - self._values_from
        lr = self._values[i] if 0 <= i < CHUNK else self._refill(tick)
        if plateau is not None:  # PlateauRule.apply: min(f, max(f·s, min))
            f = lr
            lr = f * plateau.scale
            if lr < self._plateau_min:
                lr = self._plateau_min
            if lr > f:
                lr = f
        if self._plain:
            self.optimizer.param_groups[0]["lr"] = lr
        else:
            self._write(lr)

    def report(self, metrics: float | Mapping[str, Any] | None = None, /, **named: Any) -> None:
        """Report validation metrics to the plateau without advancing the tick.

        ``report(val_loss=0.3)``, ``report({"val_loss": 0.3})`` or ``report(0.3)``.  The new
        scale applies at once, to the current tick on.
        """
        plateau = self._plateau
        if plateau is None:
            return
        value = plateau.rule.value_in(named if metrics is None else metrics)
        plateau.report_value(self._across_ranks(value))
        self._write(self.lr_at(self.last_epoch))

    def _across_ranks(self, value: float) -> float:
        """Under torch.distributed, the average over ranks, so every rank decides alike.

        Whether a process group is up is looked up at the first report and then kept: the
        group is initialized before training starts, and step(metric) must stay cheap.
        """
        if self._world is None:
            self._world = _DISTRIBUTED and dist.is_initialized()
        return _mean_across_ranks(value) if self._world else value

    @property
    def _step_count(self) -> int:
        """step() calls so far, the one at construction included (as PyTorch counts them)."""
        return self.last_epoch - self._first_tick + 1

    @_step_count.setter
    def _step_count(self, count: int) -> None:
        self._first_tick = self.last_epoch - count + 1

    @property
    def _last_lr(self) -> list[float]:
        """PyTorch's cached last LRs, which some wrappers read: derived, so step() skips a list."""
        return self.get_lr()

    def get_last_lr(self) -> list[float]:
        """The groups' learning rates at the current tick (floats, also for tensor lrs)."""
        return self.get_lr()

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
        self._write(self.lr_at(self.last_epoch))

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


from lrdsl.torch_find import find_lr  # noqa: E402  (the LR range test; after scheduler, which it uses)
