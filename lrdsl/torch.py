"""PyTorch backend: one ``LRScheduler`` for any expression, driving the LR and, optionally,
momentum (or Adam's beta1), beta2 and weight decay (LANGUAGE.md §7).

    sched = lrdsl.torch.scheduler(optimizer, "warmup(5ep) >> cosine(0.1, 95ep) | plateau(val_loss, 0.5)",
                                  momentum="onecycle(0.85, 100ep, start=0.95, end=0.95)",
                                  steps_per_epoch=len(loader))
    for epoch in range(epochs):
        for batch in loader:
            ...; optimizer.step(); sched.step()
        sched.report(val_loss=validate())

Each value at tick t is the reference :func:`lrdsl.curve` value, computed in closed form from
the tick (each plan is evaluated in vectorized float64 chunks of ticks), never by multiplying
the previous value: nothing drifts, resume is exact, and an outside edit to a group's value
does not persist.  Groups keep their ratios (§5): group g gets value · initial_g / initial_ref,
ref the first group whose initial value is nonzero; a group whose initial value is 0 stays 0.
A target may instead map group names or indices to expressions (``*`` for the rest): then
each group's value is absolute.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Union

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LRScheduler

from lrdsl.errors import LrdslError
from lrdsl.nodes import Expr, Plateau
from lrdsl.parser import parse
from lrdsl.plan import Plan, plan
from lrdsl.plateau import PlateauRule, PlateauState

#: ticks evaluated per vectorized batch
CHUNK = 4096

#: the hyperparameters a schedule can drive, in the order they are written each step
TARGETS = ("lr", "momentum", "beta2", "weight_decay")

Spec = Union[str, Expr, Mapping[Union[str, int], Union[str, Expr]]]

log = logging.getLogger("lrdsl")


def _set_lr(group: dict, value: float) -> None:
    current = group["lr"]
    if type(current) is float or not isinstance(current, torch.Tensor):  # the cheap test first
        group["lr"] = value
    else:
        current.fill_(value)  # in place: a compiled optimizer step sees no new constant


def _set_key(key: str) -> Callable[[dict, float], None]:
    def set_value(group: dict, value: float) -> None:
        group[key] = value
    return set_value


def _set_beta(index: int) -> Callable[[dict, float], None]:
    def set_value(group: dict, value: float) -> None:
        betas = list(group["betas"])
        betas[index] = value
        group["betas"] = tuple(betas)  # as OneCycleLR writes Adam's beta1
    return set_value


def _slot(target: str, group: dict) -> tuple[Callable[[dict], float], Callable[[dict, float], None]] | None:
    """(read, write) for the target in a param group, or None if the group has no such value."""
    if target == "lr":
        return (lambda g: float(g["lr"])), _set_lr
    if target == "momentum" and "betas" in group:  # Adam-style: beta1, as OneCycleLR does
        return (lambda g: float(g["betas"][0])), _set_beta(0)
    if target == "beta2" and "betas" in group:
        return (lambda g: float(g["betas"][1])), _set_beta(1)
    if target in ("momentum", "weight_decay") and target in group:
        return (lambda g: float(g[target])), _set_key(target)
    return None


def _accessors(target: str, group: dict) -> tuple[Callable[[dict], float], Callable[[dict, float], None]]:
    """(read, write) of a target the group is known to have (checked when the plans are made)."""
    accessors = _slot(target, group)
    if accessors is None:
        raise LrdslError(f"param group has no {target}")
    return accessors


class _Slot:
    """One target of one param group: its plan, evaluated CHUNK ticks at a time in float64,
    the group's ratio, the plateau (LR only) and how the value is written."""

    __slots__ = ("index", "plan", "scale", "plateau", "write", "start", "values")

    def __init__(self, index: int, compiled: Plan, scale: float, plateau: PlateauState | None,
                 write: Callable[[dict, float], None]):
        self.index, self.plan, self.scale, self.plateau, self.write = index, compiled, scale, plateau, write
        self.start = -CHUNK
        self.values: list[float] = []

    def at(self, tick: int) -> float:
        """The value at ``tick``: f(tick), lowered by the plateau, times the group's ratio."""
        i = tick - self.start
        if 0 <= i < CHUNK:
            f = self.values[i]
        else:
            self.start = tick
            self.values = self.plan.values(np.arange(tick, tick + CHUNK, dtype=np.float64)).tolist()
            f = self.values[0]
        plateau = self.plateau
        if plateau is not None:
            f = plateau.rule.apply(f, plateau.scale)
        return f * self.scale


def _canonical(spec: Spec) -> str | dict:
    """The saved form of a target's spec: canonical text, or a mapping of it."""
    if isinstance(spec, Mapping):
        return {str(key): str(parse(value)) for key, value in spec.items()}
    return str(parse(spec))


class Scheduler(LRScheduler):
    """An ``LRScheduler`` running lrdsl expressions; see :func:`scheduler`."""

    def __init__(self, optimizer: torch.optim.Optimizer, expr: Spec, *,
                 momentum: Spec | None = None, beta2: Spec | None = None,
                 weight_decay: Spec | None = None, steps_per_epoch: float | None = None,
                 total: float | None = None, last_epoch: int = -1):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LrdslError(f"scheduler() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        specs = {"lr": expr, "momentum": momentum, "beta2": beta2, "weight_decay": weight_decay}
        self.specs: dict[str, Spec] = {t: s for t, s in specs.items() if s is not None}
        self.expr = parse(expr) if not isinstance(expr, Mapping) else None
        self.steps_per_epoch, self.total = steps_per_epoch, total
        self._plans = self._compile(optimizer)
        self._world: bool | None = None  # whether reports are averaged over ranks; see _across_ranks
        self._remember_initial_values(optimizer, last_epoch)
        try:
            super().__init__(optimizer, last_epoch)
        except KeyError as error:  # last_epoch ≥ 0 on groups that never had a scheduler
            raise LrdslError(f"last_epoch={last_epoch} needs the optimizer's saved 'initial_lr': "
                             f"load the optimizer's state first ({error})") from None

    # --- construction ------------------------------------------------------------------------
    def _compile(self, optimizer) -> dict[str, list[Plan]]:
        """target -> the plan of each param group (shared when the target is one expression)."""
        groups = optimizer.param_groups
        plans: dict[str, list[Plan]] = {}
        for target, spec in self.specs.items():
            if isinstance(spec, Mapping):
                chosen = _per_group(spec, groups, target)
            else:
                chosen = [spec] * len(groups)
            compiled = {}
            for text in chosen:
                key = str(parse(text))
                if key not in compiled:
                    compiled[key] = plan(text, steps_per_epoch=self.steps_per_epoch, total=self.total)
                    if target != "lr" and compiled[key].plateau is not None:
                        raise LrdslError(f"{target}: only the learning rate may carry '| plateau', "
                                         f"got {key}")
            plans[target] = [compiled[str(parse(text))] for text in chosen]
            for i, group in enumerate(groups):
                if _slot(target, group) is None:
                    raise LrdslError(f"{type(optimizer).__name__} has no {target} to schedule "
                                     f"(param group {i} holds {', '.join(sorted(k for k in group if k != 'params'))})")
        return plans

    def _remember_initial_values(self, optimizer, last_epoch: int) -> None:
        """``initial_<target>`` in each group, as torch keeps ``initial_lr``: the ratio rule's base."""
        for target in self.specs:
            if target == "lr":
                continue
            key = f"initial_{target}"
            for i, group in enumerate(optimizer.param_groups):
                if last_epoch == -1:
                    group.setdefault(key, _accessors(target, group)[0](group))
                elif key not in group:
                    raise LrdslError(f"last_epoch={last_epoch} needs the optimizer's saved '{key}' in "
                                     f"param group {i}: load the optimizer's state first")

    def _initial_step(self) -> None:
        """Build each group's slots (LRScheduler.__init__ calls this once), then take tick 0."""
        groups = self.optimizer.param_groups
        plateaus: dict[str, PlateauState] = getattr(self, "_plateaus", {})
        self._plateaus: dict[str, PlateauState] = {}
        self._slots: dict[str, list[_Slot]] = {}
        for target, per_group in self._plans.items():
            initial = [float(b) for b in self.base_lrs] if target == "lr" else \
                [float(g[f"initial_{target}"]) for g in groups]
            scales = _ratios(initial) if not isinstance(self.specs[target], Mapping) else [1.0] * len(groups)
            slots = []
            for i, (group, compiled, scale) in enumerate(zip(groups, per_group, scales)):
                state = None
                if compiled.plateau is not None:
                    key = str(compiled.expr)
                    state = self._plateaus.setdefault(key, plateaus.get(key) or PlateauState(compiled.plateau))
                if target in ("momentum", "beta2") and compiled.range[1] * scale >= 1:
                    raise LrdslError(f"param group {_group_name(group, i)}: {target} would reach "
                                     f"{compiled.range[1] * scale:.4g} (from {compiled.expr}, ×{scale:g} "
                                     f"for the group's ratio); it must stay below 1")
                slots.append(_Slot(i, compiled, scale, state, _accessors(target, group)[1]))
            self._slots[target] = slots
        self._lr_slots = self._slots["lr"]
        self._plateau = next(iter(self._plateaus.values())) if len(self._plateaus) == 1 else None
        self._other_slots = [slot for target, slots in self._slots.items() if target != "lr"
                             for slot in slots]
        self._single = self._lr_slots[0] if len(self._lr_slots) == 1 and not self._other_slots else None
        self._step_count = 0
        self.step()

    # --- the scheduler protocol ------------------------------------------------------------------
    def step(self, metrics: float | Mapping[str, Any] | None = None,  # type: ignore[override]
             epoch: None = None) -> None:  # as ReduceLROnPlateau.step(metrics); step(epoch) is deprecated
        """Advance one tick; with ``metrics`` (the monitor's value, or a dict) report first."""
        if epoch is not None:
            raise LrdslError("step(epoch=...) is not supported: lrdsl schedules are closed-form in "
                             "the tick; resume with load_state_dict() or last_epoch=")
        if metrics is not None:  # report first: a bad metric changes nothing
            self._report(metrics)
        self.last_epoch += 1
        self._step_count += 1
        self._apply(self.last_epoch)

    def _apply(self, tick: int) -> None:
        """Write every target's value of ``tick`` into its group; keep the LRs as _last_lr."""
        # the group dicts are looked up each time: Optimizer.load_state_dict replaces them
        groups = self.optimizer.param_groups
        if self._single is not None:  # one group, the LR alone: no loops to set up
            value = self._single.at(tick)
            _set_lr(groups[0], value)
            self._last_lr = [value]
            return
        lrs: list[float | torch.Tensor] = []  # the type torch gives _last_lr; ours holds floats
        for slot in self._lr_slots:
            value = slot.at(tick)
            _set_lr(groups[slot.index], value)
            lrs.append(value)
        for slot in self._other_slots:
            slot.write(groups[slot.index], slot.at(tick))
        self._last_lr = lrs

    def report(self, metrics: float | Mapping[str, Any] | None = None, /, **named: Any) -> None:
        """Report validation metrics to the plateau without advancing the tick.

        ``report(val_loss=0.3)``, ``report({"val_loss": 0.3})`` or ``report(0.3)``.  The new
        scale applies at once, to the current tick on.
        """
        if not self._plateaus:
            return
        self._report(named if metrics is None else metrics)
        self._apply(self.last_epoch)

    def _report(self, metrics) -> None:
        """One report to every plateau (one value per monitor, checked before any state changes)."""
        plateau = self._plateau
        if plateau is not None:  # the common case: one plateau, a float reported
            value = metrics if type(metrics) is float else plateau.rule.value_in(metrics)
            plateau.report_value(value if self._world is False else self._across_ranks(value))
            return
        values = [(state, state.rule.value_in(metrics)) for state in self._plateaus.values()]
        for state, value in values:
            state.report_value(self._across_ranks(value))

    def _across_ranks(self, value: float) -> float:
        """Under torch.distributed, the average over ranks, so every rank decides alike.

        Whether a process group is up is looked up at the first report and then kept: the
        group is initialized before training starts, and step(metric) must stay cheap.
        """
        if self._world is None:
            self._world = _DISTRIBUTED and dist.is_initialized()
        return _mean_across_ranks(value) if self._world else value

    def lr_at(self, tick: int) -> float:
        """The learning rate of group 0 at ``tick`` under the current plateau state."""
        return self._lr_slots[0].at(tick)

    def get_lr(self) -> list[float]:  # type: ignore[override]  # floats, also for tensor lrs
        """The groups' learning rates at the current tick, in closed form."""
        return [slot.at(self.last_epoch) for slot in self._slots["lr"]]

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        """The groups' learning rates at the current tick (floats, also for tensor lrs)."""
        return [float(lr) for lr in self._last_lr]

    def get_last(self, target: str) -> list[float]:
        """The groups' values of ``target`` ('lr', 'momentum', 'beta2', 'weight_decay') now."""
        if target not in self._slots:
            raise LrdslError(f"this scheduler does not drive {target!r}; it drives "
                             f"{', '.join(self._slots)}")
        return [slot.at(self.last_epoch) for slot in self._slots[target]]

    def state_dict(self) -> dict[str, Any]:
        """The canonical expressions, their units, the tick and the plateau states."""
        return {
            "expr": _canonical(self.specs["lr"]),
            "targets": {t: _canonical(s) for t, s in self.specs.items() if t != "lr"},
            "steps_per_epoch": self.steps_per_epoch, "total": self.total,
            "last_epoch": self.last_epoch, "_step_count": self._step_count,
            "base_lrs": [float(b) for b in self.base_lrs],
            "plateau": {key: state.state_dict() for key, state in self._plateaus.items()} or None,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any], rebase: bool = False) -> None:
        """Continue from a saved state: exactly the sequence of an uninterrupted run.

        A state saved under other expressions (or units) is an error unless ``rebase=True``:
        then this scheduler's expressions continue from the saved tick; a plateau keeps its
        saved state when the saved expression has the same plateau rule, else it starts
        fresh (either way it is logged on the ``lrdsl`` logger).
        """
        try:
            saved = {"lr": state_dict["expr"], **state_dict.get("targets", {}),
                     "units": (state_dict.get("steps_per_epoch"), state_dict.get("total"))}
            tick = int(state_dict["last_epoch"])
            steps = int(state_dict.get("_step_count", tick + 1))
            plateaus = dict(state_dict.get("plateau") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise LrdslError(f"not an lrdsl scheduler state: {error!r}") from None
        if "scale" in plateaus:  # a v1 state: the one plateau's state, saved bare
            plateaus = {saved["lr"]: plateaus}
        ours = {**{t: _canonical(s) for t, s in self.specs.items()},
                "units": (self.steps_per_epoch, self.total)}
        rebased = saved != ours
        if rebased and not rebase:
            raise LrdslError(f"this scheduler state was saved from {_describe(saved)}, not from "
                             f"{_describe(ours)}; pass rebase=True to continue the saved run "
                             f"under the new schedule from its tick {tick}")
        for key, state in self._plateaus.items():
            match = key if key in plateaus else next(
                (k for k in plateaus if _plateau_rule(k) == state.rule), None)
            if match is not None:
                state.load_state_dict(plateaus[match])
            if rebased:
                log.info("lrdsl: rebased at tick %d; the plateau on %s %s", tick, state.rule.monitor,
                         "keeps its saved state" if match is not None else "starts fresh (its rule changed)")
        self.last_epoch, self._step_count = tick, steps
        self._apply(tick)
        if rebased:
            log.info("lrdsl: rebased at tick %d from %s to %s", tick, _describe(saved), _describe(ours))

    def __repr__(self) -> str:
        return f"lrdsl.torch.Scheduler({_describe({t: _canonical(s) for t, s in self.specs.items()})}, " \
               f"tick={self.last_epoch})"


def _plateau_rule(text: str):
    """The plateau rule of a saved expression's text, or None."""
    try:
        expr = parse(text)
    except LrdslError:
        return None
    return PlateauRule.from_call(expr.options) if isinstance(expr, Plateau) else None


def _describe(specs: Mapping) -> str:
    """target=expression pairs (and units) of canonical specs, for messages."""
    parts = [f"{target}={spec!r}" for target, spec in specs.items() if target != "units"]
    units = specs.get("units")
    if units is not None and units != (None, None):
        parts.append(f"steps_per_epoch={units[0]}, total={units[1]}")
    return ", ".join(parts)


def _group_name(group: dict, index: int) -> str:
    return f"{index} ({group['name']!r})" if "name" in group else str(index)


def _ratios(initial: list[float]) -> list[float]:
    """§5: value · initial_g / initial_ref, ref the first nonzero; all zero: the value itself."""
    ref = next((v for v in initial if v != 0), None)
    if ref is None:
        return [1.0] * len(initial)
    return [v / ref for v in initial]


def _per_group(spec: Mapping, groups: list[dict], target: str) -> list:
    """Each group's expression from a mapping of group names / indices (``*`` for the rest)."""
    names = [g.get("name") for g in groups]
    listing = ", ".join(f"{i}" + (f" ({n!r})" if n is not None else "") for i, n in enumerate(names))
    chosen: list = [None] * len(groups)
    for key, expr in spec.items():
        if key == "*":
            continue
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise LrdslError(f"{target}: a group key is a name or an index, got {key!r}")
        matches = [i for i, name in enumerate(names) if name == key] if isinstance(key, str) else \
            ([key] if 0 <= key < len(groups) else [])
        if not matches:
            raise LrdslError(f"{target}: {key!r} matches no param group; the groups are {listing}")
        for i in matches:
            chosen[i] = expr
    for i in range(len(groups)):
        if chosen[i] is None:
            if "*" not in spec:
                raise LrdslError(f"{target}: param group {_group_name(groups[i], i)} is covered by no "
                                 f"key; the groups are {listing} (use '*' for the rest)")
            chosen[i] = spec["*"]
    return chosen


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


def scheduler(optimizer: torch.optim.Optimizer, expr: Spec, *, momentum: Spec | None = None,
              beta2: Spec | None = None, weight_decay: Spec | None = None,
              steps_per_epoch: float | None = None, total: float | None = None,
              last_epoch: int = -1) -> Scheduler:
    """An ``LRScheduler`` for ``expr`` on ``optimizer``; tick 0's values are in force at once.

    Args:
        optimizer: any ``torch.optim.Optimizer``; its groups' values only set the groups' ratios.
        expr: the LR: expression text, :class:`lrdsl.Expr`, or a mapping from param-group name
            or index to an expression (``"*"`` for every group not named).
        momentum: SGD/RMSprop ``momentum``, or ``betas[0]`` for Adam-style optimizers.
        beta2: ``betas[1]``.
        weight_decay: ``weight_decay``.
        steps_per_epoch: pass it when you call ``step()`` per batch (converts ``ep``).
        total: the run's length in ticks, for ``%`` durations and stretched segments.
        last_epoch: the last tick already taken, as in PyTorch (−1 for a fresh start).

    ``step()`` advances a tick, ``step(metrics)`` reports then advances, ``report(**metrics)``
    reports only; ``get_last_lr()`` gives the LRs, ``get_last("momentum")`` the other targets.
    In Hydra: ``{_target_: lrdsl.torch.scheduler, _partial_: true, expr: ...}``.
    """
    return Scheduler(optimizer, expr, momentum=momentum, beta2=beta2, weight_decay=weight_decay,
                     steps_per_epoch=steps_per_epoch, total=total, last_epoch=last_epoch)


from lrdsl.torch_find import find_lr  # noqa: E402, F401  (re-exported: the LR range test, after scheduler, which it uses)
