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
ref the first group whose initial value is nonzero; a group whose initial value is 0 stays 0;
a group added later is scheduled by the same rule from the next step (see :class:`Scheduler`).
A target may instead map group names or indices to expressions (``*`` for the rest): then
each group's value is absolute.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable, Mapping, Union

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LRScheduler

from lrdsl import channels
from lrdsl.errors import LrdslError
from lrdsl.nodes import Expr, Plateau
from lrdsl.parser import parse
from lrdsl.plan import Plan, plan
from lrdsl.units import checked_tick as _tick
from lrdsl.plateau import PlateauRule, PlateauState

#: ticks evaluated per vectorized batch
CHUNK = 4096

#: the hyperparameters a schedule can drive, in the order they are written each step
TARGETS = channels.TARGETS

Spec = Union[str, Expr, Mapping[Union[str, int], Union[str, Expr]]]

log = logging.getLogger("lrdsl")


def _set_lr(group: dict, value: float) -> None:
    current = group["lr"]
    if type(current) is float or not isinstance(current, torch.Tensor):  # the cheap test first
        group["lr"] = value
    else:
        # a tensor put there since construction: fill_ would truncate an integer one, or refuse
        if not current.is_floating_point() or current.requires_grad:
            _checked(current, f"param group {group['name']!r}: lr" if "name" in group else "a param group's lr")
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


def _slot(target: str, group: dict) -> tuple[Callable[[dict], Any], Callable[[dict, float], None]] | None:
    """(read, write) for the target in a param group, or None if the group has no such value.

    ``read`` gives the raw value (a float, a tensor, or whatever was put there): see :func:`_checked`.
    """
    place = channels.target(target).torch_place(group)  # where each target lives: lrdsl.channels
    if place is None:
        return None
    key, index = place
    if index is not None:  # Adam-style betas[index]
        return (lambda g: g[key][index]), _set_beta(index)
    if key == "lr":
        return (lambda g: g["lr"]), _set_lr
    return (lambda g: g[key]), _set_key(key)


def _accessors(target: str, group: dict) -> tuple[Callable[[dict], Any], Callable[[dict, float], None]]:
    """(read, write) of a target the group is known to have (checked when the plans are made)."""
    accessors = _slot(target, group)
    if accessors is None:
        raise LrdslError(f"param group has no {target}")
    return accessors


def _checked(value: Any, where: str) -> float:
    """A group's value as a float: a finite number ≥ 0, or a one-element floating tensor that
    needs no grad (lrdsl writes a tensor value in place: an integer tensor would truncate it,
    a leaf that requires grad refuses the write)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise LrdslError(f"{where} is a tensor of shape {tuple(value.shape)} and dtype "
                             f"{value.dtype}; a tensor value must hold one floating-point number")
        if value.requires_grad:
            raise LrdslError(f"{where} is a tensor that requires grad; lrdsl writes it in place "
                             f"each step: pass a float, or a tensor without grad")
        value = value.item()
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LrdslError(f"{where} is {value!r}; it must be a number")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise LrdslError(f"{where} is {value!r}; it must be finite and ≥ 0")
    return value


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

    def peak(self) -> float:
        """The largest value the slot can take (inf where that overflows)."""
        return self.plan.range[1] * self.scale


class _FarSlot(_Slot):
    """A slot whose ratio initial_g / initial_ref overflows a float (a subnormal reference):
    the ratio is kept as m·2**e and applied with ldexp, so f·ratio is exact wherever it is
    finite (checked at construction for the plan's largest value)."""

    __slots__ = ("exponent",)

    def __init__(self, index: int, compiled: Plan, ratio: tuple[float, int], plateau: PlateauState | None,
                 write: Callable[[dict, float], None]):
        super().__init__(index, compiled, ratio[0], plateau, write)
        self.exponent = ratio[1]

    def at(self, tick: int) -> float:
        return math.ldexp(super().at(tick), self.exponent)

    def peak(self) -> float:
        try:
            return math.ldexp(super().peak(), self.exponent)
        except OverflowError:
            return math.inf


def _canonical(spec: Spec) -> str | dict:
    """The saved form of a target's spec: canonical text, or a mapping of it."""
    if isinstance(spec, Mapping):
        return {str(key): str(parse(value)) for key, value in spec.items()}
    return str(parse(spec))


class Scheduler(LRScheduler):
    """An ``LRScheduler`` running lrdsl expressions; see :func:`scheduler`.

    Param groups: every group's value of every scheduled target (and its ``initial_<target>``)
    is checked when the scheduler is built — a finite number ≥ 0, or a one-element floating
    tensor without grad — and an offending group is an :class:`LrdslError` naming it.  A group
    added later (``optimizer.add_param_group``, as when a backbone is unfrozen) is scheduled
    from the next ``step()`` on, by §5's ratio rule from its own initial value (its value when
    the scheduler first sees it, kept as ``initial_lr`` like the others) against the same
    reference group; a run resumed with the group already present then continues exactly as
    the uninterrupted one (its ``initial_lr`` is in the optimizer's state).

    Ticks: a tick given in Python (``last_epoch``, ``lr_at``, a loaded state) is an integer;
    a fractional, non-finite or non-numeric one is an :class:`LrdslError`.  ``lr_at`` of a
    negative tick is the value at tick 0, as :func:`lrdsl.optax.schedule` clamps its count.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, expr: Spec, *,
                 momentum: Spec | None = None, beta2: Spec | None = None,
                 weight_decay: Spec | None = None, steps_per_epoch: float | None = None,
                 total: float | None = None, last_epoch: int = -1):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LrdslError(f"scheduler() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        last_epoch = _tick(last_epoch, "last_epoch", lowest=-1)
        specs = {"lr": expr, "momentum": momentum, "beta2": beta2, "weight_decay": weight_decay}
        self.specs: dict[str, Spec] = {t: s for t, s in specs.items() if s is not None}
        self.expr = parse(expr) if not isinstance(expr, Mapping) else None
        self.steps_per_epoch, self.total = steps_per_epoch, total
        self._compiled: dict[str, Plan] = {}  # canonical text -> its plan, shared by groups
        self._plans = {target: self._plans_of(target, optimizer, 0) for target in self.specs}
        self._world: bool | None = None  # whether reports are averaged over ranks; see _across_ranks
        self._remember_initial_values(optimizer.param_groups, 0, last_epoch)
        try:
            super().__init__(optimizer, last_epoch)
        except KeyError as error:  # last_epoch ≥ 0 on groups that never had a scheduler
            raise LrdslError(f"last_epoch={last_epoch} needs the optimizer's saved 'initial_lr': "
                             f"load the optimizer's state first ({error})") from None

    # --- construction ------------------------------------------------------------------------
    def _plans_of(self, target: str, optimizer, start: int) -> list[Plan]:
        """The plan of each param group from ``start`` on (one plan per distinct expression)."""
        groups = optimizer.param_groups
        spec = self.specs[target]
        chosen = _per_group(spec, groups, target) if isinstance(spec, Mapping) else [spec] * len(groups)
        plans = []
        for i in range(start, len(groups)):
            if _slot(target, groups[i]) is None:
                raise LrdslError(f"{type(optimizer).__name__} has no {target} to schedule "
                                 f"(param group {i} holds {', '.join(sorted(k for k in groups[i] if k != 'params'))})")
            key = str(parse(chosen[i]))
            if key not in self._compiled:
                compiled = plan(chosen[i], steps_per_epoch=self.steps_per_epoch, total=self.total)
                if target != "lr" and compiled.plateau is not None:
                    raise LrdslError(f"{target}: only the learning rate may carry '| plateau', "
                                     f"got {key}")
                self._compiled[key] = compiled
            plans.append(self._compiled[key])
        return plans

    def _remember_initial_values(self, groups: list[dict], start: int, last_epoch: int) -> None:
        """``initial_<target>`` in each group from ``start`` on, as torch keeps ``initial_lr``:
        the ratio rule's base."""
        for target in self.specs:
            key = "initial_lr" if target == "lr" else f"initial_{target}"
            for i in range(start, len(groups)):
                group = groups[i]
                value = _accessors(target, group)[0](group)
                _checked(value, f"param group {_group_name(group, i)}: {target}")
                if target == "lr" and start == 0:
                    continue  # LRScheduler.__init__ sets initial_lr
                if last_epoch == -1:
                    group.setdefault(key, value.clone() if isinstance(value, torch.Tensor) else value)
                elif key not in group:
                    raise LrdslError(f"last_epoch={last_epoch} needs the optimizer's saved '{key}' in "
                                     f"param group {i}: load the optimizer's state first")

    def _initial_step(self) -> None:
        """Build each group's slots (LRScheduler.__init__ calls this once), then take tick 0."""
        self._plateaus: dict[str, PlateauState] = {}
        self._slots: dict[str, list[_Slot]] = {target: [] for target in self._plans}
        self._refs: dict[str, float | None] = {}  # per target: the reference group's initial value
        self._add_slots(0)
        self._step_count = 0
        self.step()

    def _add_slots(self, start: int) -> None:
        """Slots for the param groups from ``start`` on; nothing changes unless all are fine."""
        groups = self.optimizer.param_groups
        slots: dict[str, list[_Slot]] = {}
        plateaus = dict(self._plateaus)
        refs = dict(self._refs)
        for target, per_group in self._plans.items():
            key = "initial_lr" if target == "lr" else f"initial_{target}"
            initial = [_checked(groups[i][key], f"param group {_group_name(groups[i], i)}: {key}")
                       for i in range(start, len(groups))]
            if target not in refs:  # the first groups fix the reference for good
                refs[target] = next((v for v in initial if v != 0), None)
            ref = None if isinstance(self.specs[target], Mapping) else refs[target]
            slots[target] = []
            for i, value in enumerate(initial, start):
                compiled = per_group[i]
                state = None
                if compiled.plateau is not None:
                    state = plateaus.setdefault(str(compiled.expr), PlateauState(compiled.plateau))
                ratio = _ratio(value, ref)
                write = _accessors(target, groups[i])[1]
                slot = _FarSlot(i, compiled, ratio, state, write) if isinstance(ratio, tuple) \
                    else _Slot(i, compiled, ratio, state, write)
                peak = slot.peak()
                shown = f"{value!r}/{ref!r}" if isinstance(ratio, tuple) else f"{ratio:g}"
                if not math.isfinite(peak):
                    raise LrdslError(f"param group {_group_name(groups[i], i)}: {target} would overflow "
                                     f"(from {compiled.expr}, ×{shown} for the group's ratio: its "
                                     f"initial {target} over the first nonzero group's)")
                if channels.below_one(target) and peak >= 1:
                    raise LrdslError(f"param group {_group_name(groups[i], i)}: {target} would reach "
                                     f"{peak:.4g} (from {compiled.expr}, ×{shown} for the group's "
                                     f"ratio); it must stay below 1")
                slots[target].append(slot)
        for target, new in slots.items():
            self._slots[target].extend(new)
        self._plateaus, self._refs = plateaus, refs
        self._lr_slots = self._slots["lr"]
        self._plateau = next(iter(self._plateaus.values())) if len(self._plateaus) == 1 else None
        self._other_slots = [slot for target, slots_ in self._slots.items() if target != "lr"
                             for slot in slots_]
        self._single = self._lr_slots[0] if len(self._lr_slots) == 1 and not self._other_slots else None
        self._groups = len(self._lr_slots)

    def _follow_groups(self, groups: list[dict]) -> None:
        """Schedule the groups added since the last step (``add_param_group``)."""
        count = self._groups
        if len(groups) < count:
            raise LrdslError(f"the optimizer has {len(groups)} param groups, fewer than the {count} "
                             f"this scheduler drives")
        plans = {target: self._plans_of(target, self.optimizer, count) for target in self._plans}
        self._remember_initial_values(groups, count, -1)
        saved = {target: list(per_group) for target, per_group in self._plans.items()}
        for target, new in plans.items():
            self._plans[target].extend(new)
        try:
            self._add_slots(count)
        except LrdslError:
            self._plans = saved
            raise
        self.base_lrs.extend(groups[i]["initial_lr"] for i in range(count, len(groups)))

    # --- the scheduler protocol ------------------------------------------------------------------
    def step(self, metrics: float | Mapping[str, Any] | None = None,  # type: ignore[override]
             epoch: None = None) -> None:  # as ReduceLROnPlateau.step(metrics); step(epoch) is deprecated
        """Advance one tick; with ``metrics`` (the monitor's value, or a dict) report first."""
        if epoch is not None:
            raise LrdslError("step(epoch=...) is not supported: lrdsl schedules are closed-form in "
                             "the tick; resume with load_state_dict() or last_epoch=")
        if metrics is not None:  # report first: a bad metric changes nothing
            self._report(metrics)
        self._apply(self.last_epoch + 1)  # first: a group it refuses leaves the tick as it was
        self.last_epoch += 1
        self._step_count += 1

    def _apply(self, tick: int) -> None:
        """Write every target's value of ``tick`` into its group; keep the LRs as _last_lr."""
        # the group dicts are looked up each time: Optimizer.load_state_dict replaces them
        groups = self.optimizer.param_groups
        if len(groups) != self._groups:
            self._follow_groups(groups)
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
        """The learning rate of group 0 at ``tick`` (a negative tick counts as 0) under the
        current plateau state."""
        return self._lr_slots[0].at(max(_tick(tick, "lr_at's tick", lowest=-2 ** 53), 0))

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
        # every field is checked before anything changes: a refused state leaves the run as it was
        if not isinstance(state_dict, Mapping):
            raise LrdslError(f"not an lrdsl scheduler state: a {type(state_dict).__name__}")
        missing = [key for key in ("expr", "last_epoch") if key not in state_dict]
        if missing:
            raise LrdslError(f"not an lrdsl scheduler state: it lacks {' and '.join(missing)} (it "
                             f"holds {', '.join(map(str, state_dict)) or 'nothing'})")
        targets = state_dict.get("targets") or {}
        if not isinstance(targets, Mapping):
            raise LrdslError(f"not an lrdsl scheduler state: targets is {targets!r}")
        saved = {"lr": state_dict["expr"], **targets,
                 "units": (state_dict.get("steps_per_epoch"), state_dict.get("total"))}
        for target, text in saved.items():
            if target != "units" and not _is_saved_text(text):
                raise LrdslError(f"not an lrdsl scheduler state: its {target} expression is {text!r}")
        tick = _tick(state_dict["last_epoch"], "the state's last_epoch")
        steps = _tick(state_dict.get("_step_count", tick + 1), "the state's _step_count")
        plateaus = state_dict.get("plateau") or {}
        if not isinstance(plateaus, Mapping):
            raise LrdslError(f"not an lrdsl scheduler state: plateau is {plateaus!r}")
        if "scale" in plateaus:  # a v1 state: the one plateau's state, saved bare
            plateaus = {saved["lr"]: plateaus}
        plateaus = {key: PlateauState.checked(value, f"the state's plateau {key!r}")
                    for key, value in plateaus.items()}
        ours = {**{t: _canonical(s) for t, s in self.specs.items()},
                "units": (self.steps_per_epoch, self.total)}
        rebased = saved != ours
        if rebased and not rebase:
            raise LrdslError(f"this scheduler state was saved from {_describe(saved)}, not from "
                             f"{_describe(ours)}; pass rebase=True to continue the saved run "
                             f"under the new schedule from its tick {tick}")
        groups = self.optimizer.param_groups
        if len(groups) != self._groups:  # before the state changes: a refused group keeps it
            self._follow_groups(groups)
        for key, state in self._plateaus.items():
            match = key if key in plateaus else next(
                (k for k in plateaus if _plateau_rule(k) == state.rule), None)
            if match is not None:
                state.load_checked(plateaus[match])
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


def _is_saved_text(text: Any) -> bool:
    """Whether a saved expression is canonical text, or a mapping of group keys to it."""
    if isinstance(text, Mapping):
        return all(isinstance(key, (str, int)) and isinstance(value, str) for key, value in text.items())
    return isinstance(text, str)


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


def _ratio(initial: float, ref: float | None) -> float | tuple[float, int]:
    """§5: a group's values are value · initial_g / initial_ref (ref: the first group whose
    initial value is nonzero; none: the value itself).  Where the ratio overflows (a subnormal
    ref), it is given as (m, e) with ratio = m·2**e, for :class:`_FarSlot`."""
    if ref is None:
        return 1.0
    ratio = initial / ref
    if math.isfinite(ratio):
        return ratio
    (m, e), (m_ref, e_ref) = math.frexp(initial), math.frexp(ref)
    return m / m_ref, e - e_ref


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
        last_epoch: the last tick already taken, as in PyTorch (−1 for a fresh start): an
            integer ≥ −1.

    ``step()`` advances a tick, ``step(metrics)`` reports then advances, ``report(**metrics)``
    reports only; ``get_last_lr()`` gives the LRs, ``get_last("momentum")`` the other targets.
    In Hydra: ``{_target_: lrdsl.torch.scheduler, _partial_: true, expr: ...}``.
    """
    return Scheduler(optimizer, expr, momentum=momentum, beta2=beta2, weight_decay=weight_decay,
                     steps_per_epoch=steps_per_epoch, total=total, last_epoch=last_epoch)


from lrdsl.torch_find import find_lr  # noqa: E402, F401  (re-exported: the LR range test, after scheduler, which it uses)
