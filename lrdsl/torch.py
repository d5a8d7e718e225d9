"""PyTorch backend: one ``LRScheduler`` for any expression, driving the LR and, optionally,
momentum (or Adam's beta1), beta2 and weight decay (docs/language.md "Targets and channels").

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
does not persist.  Groups keep their ratios (docs/language.md): group g gets value · initial_g / initial_ref,
ref the first group whose initial value is nonzero; a group whose initial value is 0 stays 0;
a group added later is scheduled by the same rule from the next step (see :class:`Scheduler`).
A target may instead map group names or indices to expressions (``*`` for the rest): then
each group's value is absolute.
"""

from __future__ import annotations

import importlib
import logging
import math
import numbers
import weakref
from typing import Any, Callable, Mapping, Union

import torch
from torch.optim.lr_scheduler import LRScheduler

from lrdsl import accelerate as _accelerate, channels
from lrdsl import distributed as _distributed
from lrdsl.distributed import Rounds
from lrdsl.errors import LrdslError
from lrdsl.language.nodes import Expr
from lrdsl.language.parser import parse
from lrdsl.language.plan import Plan
from lrdsl.language.plateau import PlateauState
from lrdsl.language.units import checked_tick as _tick
from lrdsl.runtime import CHUNK, Curve, Grid, GridCurve, Runtime, canonical as _canonical, curve, describe as _describe  # noqa: F401  (CHUNK: re-exported)
from lrdsl.runtime import program_specs, ratio as _ratio
from lrdsl.programs import Program

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
    """One target of one param group: the :class:`lrdsl.runtime.Curve` of its plan (ratio and
    plateau included) and how its value is written into the group."""

    __slots__ = ("index", "curve", "at", "write")

    def __init__(self, index: int, values: Curve, write: Callable[[dict, float], None]):
        self.index, self.curve, self.write = index, values, write
        # the bound method a step calls without a detour: on a counting clock it takes the index
        # the scheduler's grid gave (one per step for every curve), else the tick
        self.at = values.at_index if isinstance(values, GridCurve) else values.at

    @property
    def plateau(self) -> PlateauState | None:
        return self.curve.plateau

    def peak(self) -> float:
        return self.curve.peak()


class Scheduler(LRScheduler):
    """An ``LRScheduler`` running lrdsl expressions; see :func:`scheduler`.

    Param groups: every group's value of every scheduled target (and its ``initial_<target>``)
    is checked when the scheduler is built — a finite number ≥ 0, or a one-element floating
    tensor without grad — and an offending group is an :class:`LrdslError` naming it.  A group
    added later (``optimizer.add_param_group``, as when a backbone is unfrozen) is scheduled
    from the next ``step()`` on, by the per-group rule (docs/language.md) from its own initial value (its value when
    the scheduler first sees it, kept as ``initial_lr`` like the others) against the same
    reference group; a run resumed with the group already present then continues exactly as
    the uninterrupted one (its ``initial_lr`` is in the optimizer's state).

    Ticks: a tick given in Python (``last_epoch``, ``lr_at``, a loaded state) is an integer;
    a fractional, non-finite or non-numeric one is an :class:`LrdslError`.  ``lr_at`` of a
    negative tick is the value at tick 0, as :func:`lrdsl.optax.schedule` clamps its count.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, expr: Spec | Program, *,
                 momentum: Spec | None = None, beta2: Spec | None = None,
                 weight_decay: Spec | None = None, steps_per_epoch: float | None = None,
                 total: float | None = None, last_epoch: int = -1, clock: str = "ticks",
                 **constants: float | None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LrdslError(f"scheduler() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
        last_epoch = _tick(last_epoch, "last_epoch", lowest=-1)
        specs = program_specs(expr, {"momentum": momentum, "beta2": beta2,
                                     "weight_decay": weight_decay})
        #: the position, plans, plateaus and saved state: everything but the writing into groups
        self.runtime = Runtime(specs, steps_per_epoch=steps_per_epoch, total=total,
                               tick=last_epoch, clock=clock, **constants)
        self.specs: dict[str, Spec] = self.runtime.specs
        #: the channels written into the param groups (the others are free values: value(name))
        self.targets = [name for name in self.specs if name in channels.CHANNELS]
        lr = self.specs.get("lr")
        self.expr = parse(lr) if lr is not None and not isinstance(lr, Mapping) else None
        self.steps_per_epoch, self.total = steps_per_epoch, total
        self._plans = {target: self._plans_of(target, optimizer, 0) for target in self.targets}
        #: on a counting clock, the positions every curve of this scheduler is read at (one
        #: index per step for all of them); None on the ticks clock
        self._grid: Grid | None = Grid() if clock != "ticks" else None
        self._grid_curves: list[GridCurve] = []  # every curve on the grid, refreshed together
        self._grid_version = -1  # the grid version they were last refreshed for
        #: free values: name -> (the curve's at, the channel's read or None), read when asked
        #: at ``_where``, the tick (or the grid index) the last step wrote
        self._free: dict[str, tuple[Callable[[int], float], Callable | None]] = {}
        self._where = 0
        for name in self.specs:
            if name not in channels.CHANNELS:  # a free value: proven in its range now
                compiled = self.runtime.plan_of(name, self.specs[name])  # type: ignore[arg-type]
                channel = channels.channel(name)
                found = curve(compiled, grid=self._grid)
                at = found.at_index if isinstance(found, GridCurve) else found.at
                if isinstance(found, GridCurve):
                    self._grid_curves.append(found)
                self._free[name] = (at, channel.read if channel.integer else None)
        self._follower: _accelerate.Follower | None = None  # under Accelerate: see lrdsl.accelerate
        #: the rounds of this scheduler's plateau reports under torch.distributed (None: not
        #: looked up yet, or a single process); see lrdsl.distributed and _first_post
        self._rounds: Rounds | None = None
        self._hook: Any = None
        self._rewrite = False  # write the values again at the next optimizer step (a load)
        self._local = False  # no process group of more than one rank: reports decided at once
        self._remember_initial_values(optimizer.param_groups, 0, last_epoch)
        # each group's slots, built before LRScheduler.__init__, whose constructor then takes
        # tick 0 through our step(); no torch hook is overridden (its _initial_step is private)
        self.optimizer = optimizer
        self._slots: dict[str, list[_Slot]] = {target: [] for target in self._plans}
        self._refs: dict[str, float | None] = {}  # per target: the reference group's initial value
        self._add_slots(0)
        super().__init__(optimizer, last_epoch)
        if self.runtime.tick == last_epoch:  # a torch whose constructor takes no first step
            self.step()
        if self.runtime.plateaus:
            # whether a process group is up is looked up at the first report or optimizer step
            # (it is initialized before training starts), then kept: step(metric) stays cheap
            self.runtime.post = self._first_post
            self._hook = _accelerate.innermost(optimizer).register_step_pre_hook(_decide_before(self))

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
            plans.append(self.runtime.plan_of(target, chosen[i]))
        return plans

    def _remember_initial_values(self, groups: list[dict], start: int, last_epoch: int) -> None:
        """``initial_<target>`` in each group from ``start`` on, as torch keeps ``initial_lr``:
        the ratio rule's base."""
        kept = []  # every value checked before any is kept
        for target in self.targets:
            key = "initial_lr" if target == "lr" else f"initial_{target}"
            for i in range(start, len(groups)):
                group = groups[i]
                value = _accessors(target, group)[0](group)
                _checked(value, f"param group {_group_name(group, i)}: {target}")
                if last_epoch == -1:
                    kept.append((group, key, value.clone() if isinstance(value, torch.Tensor) else value))
                elif key not in group:
                    raise LrdslError(f"last_epoch={last_epoch} needs the optimizer's saved '{key}' in "
                                     f"param group {i}: load the optimizer's state first")
        for group, key, value in kept:
            group.setdefault(key, value)

    def _add_slots(self, start: int) -> None:
        """Slots for the param groups from ``start`` on; nothing changes unless all are fine."""
        groups = self.optimizer.param_groups
        slots: dict[str, list[_Slot]] = {}
        plateaus = dict(self.runtime.plateaus)  # taken only if every group is fine
        grid_curves: list[GridCurve] = []
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
                slot = _Slot(i, curve(compiled, ratio, state, self._grid), write)
                if isinstance(slot.curve, GridCurve):
                    grid_curves.append(slot.curve)
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
        self._grid_curves.extend(grid_curves)
        self._grid_version = -2  # new curves: refresh them all at the next step
        self.runtime.adopt_plateaus(plateaus)
        self._refs = refs
        self._lr_slots = self._slots.get("lr", [])
        self._other_slots = [slot for target, slots_ in self._slots.items() if target != "lr"
                             for slot in slots_]
        self._single = self._lr_slots[0] if len(self._lr_slots) == 1 and not self._other_slots else None
        self._groups = len(groups)

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
        self.base_lrs.extend(groups[i].get("initial_lr", groups[i]["lr"]) for i in range(count, len(groups)))

    # --- the scheduler protocol ------------------------------------------------------------------
    def step(self, metrics: float | Mapping[str, Any] | None = None,  # type: ignore[override]
             epoch: None = None, *, samples: int | None = None,
             tokens: int | None = None) -> None:  # as ReduceLROnPlateau.step(metrics); step(epoch) is deprecated
        """Advance one tick; with ``metrics`` (the monitor's value, or a dict) report first.

        ``samples=``/``tokens=``: what the step consumed (a samples or tokens clock moves by
        it; on the ticks clock the counts are kept for a later rebase onto such a clock).
        """
        if epoch is not None:
            raise LrdslError("step(epoch=...) is not supported: lrdsl schedules are closed-form in "
                             "the tick; resume with load_state_dict() or last_epoch=")
        if self._follower is not None:  # under Accelerate: one tick per optimizer step
            ticks, samples, tokens = self._follower.ticks(samples, tokens)
            if not ticks:
                if metrics is not None:
                    self.report(metrics)
                return
        runtime = self.runtime
        if metrics is not None:  # report first: a bad metric changes nothing
            runtime.report(metrics)
        if type(tokens) is int and runtime._tokens_only and samples is None and 0 <= tokens \
                and runtime.tick >= 0:  # the hot case of a tokens clock: step(tokens=n)
            counters = runtime.counters
            position = counters["tokens"] + tokens
            if position <= runtime.warn_after and position <= 9007199254740992:  # 2**53
                self._apply(position)  # first: a group it refuses leaves the position as it was
                counters["tokens"] = position
                runtime.tick += 1
                runtime.steps += 1
                return
        if runtime.clock == "ticks" and samples is None and tokens is None:
            tick = runtime.tick + 1
            self._apply(tick)  # first: a group it refuses leaves the tick as it was
            runtime.tick = tick  # Runtime.advance, inlined: this is every step's path
            runtime.steps += 1
            if tick > runtime.warn_after:
                runtime.past_the_end()
            return
        counts = runtime.counted(samples, tokens) if runtime.tick >= 0 or samples is not None \
            or tokens is not None else (None, None)
        self._apply(runtime.after(counts))  # first: a group it refuses leaves the position as it was
        runtime.add(counts)
        runtime.tick += 1
        runtime.steps += 1
        if runtime.position > runtime.warn_after:
            runtime.past_the_end()

    def _apply(self, tick: int) -> None:
        """Write every target's value at position ``tick`` (the tick, or the samples or tokens
        counted) into its group; keep the LRs as _last_lr."""
        # the group dicts are looked up each time: Optimizer.load_state_dict replaces them
        groups = self.optimizer.param_groups
        if len(groups) != self._groups:
            self._follow_groups(groups)
        grid = self._grid
        if grid is not None:  # a counting clock: the position's index once, for every curve
            tick = grid.index(tick)
            if grid.version != self._grid_version:  # off the grid: every chunk anew
                for found in self._grid_curves:
                    found.refresh()
                self._grid_version = grid.version
            self._where = tick  # where value() reads the free values
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

    def report(self, metrics: float | Mapping[str, Any] | None = None, /, *, process_group: Any = None,
               collective: bool = False, **named: Any) -> None:
        """Report validation metrics to the plateau without advancing the tick.

        ``report(val_loss=0.3)``, ``report({"val_loss": 0.3})`` or ``report(0.3)``.  In one
        process the new scale applies at once, to the current tick on.  Under torch.distributed
        (docs/distributed.md "Plateau reports") a report is posted, never waited on: any rank
        or set of ranks may report, and every rank decides alike, on the mean over the ranks
        that reported, at its next optimizer step, before that step reads the LR.
        ``process_group=``: average over and decide on that group's ranks only.
        ``collective=True``: every rank of the group calls this at the same point (as
        validation hooks of Lightning or the HF Trainer do), so the mean is taken now by an
        all_reduce and applies at once; a rank that does not call it would leave the others
        waiting.
        """
        if not self.runtime.plateaus:
            return
        metrics = named if metrics is None else metrics
        if (collective or process_group is not None) and _distributed.world():
            group = _distributed.members(process_group)  # checked before anything is posted or sent
            values = self.runtime.monitored(metrics)
            if collective:
                self.runtime.decide([_distributed.mean_across(values, process_group)])
            else:
                self._rounds_up().post(values, process_group if group is not None else None)
                return
        else:
            self.runtime.report(metrics)
        self._apply(self.runtime.position)

    def _rounds_up(self) -> Rounds:
        if self._rounds is None:
            self._rounds = Rounds(repr(self.runtime.canonical()), self._decided)
            self.runtime.post = self._rounds.post
        return self._rounds

    def _first_post(self, values: list[float]) -> None:
        """The runtime's first post: through the store under torch.distributed, else decided here."""
        if _distributed.world():
            self._rounds_up().post(values)
        else:
            self.runtime.post = None
            self.runtime.decide([values])

    def _before_optimizer_step(self) -> None:
        """At each optimizer step, on every rank: decide the round's reports."""
        if self._rewrite:
            self._rewrite = False
            self._apply(self.runtime.position)
        if self._rounds is None:
            if self._local or not _distributed.world():
                # a single process: reports are decided when made.  The hook stays (a load
                # needs it; torch's get_state_dict steps a fresh optimizer to build its state)
                self._local = True
                return
            self._rounds_up()
        self._rounds.step()  # type: ignore[union-attr]

    def _decided(self, reports: list[list[float]]) -> None:
        self.runtime.decide(reports)
        self._apply(self.runtime.position)

    def lr_at(self, tick: int) -> float:
        """The learning rate of group 0 at ``tick`` (a position in the clock's unit; a negative
        one counts as 0) under the current plateau state."""
        if not self._lr_slots:
            raise LrdslError("this scheduler does not drive the learning rate")
        position = max(_tick(tick, "lr_at's tick", lowest=-2 ** 53), 0)
        slot = self._lr_slots[0]
        if self.runtime.clock == "ticks":
            return slot.at(position)
        # a curve of its own: a look elsewhere must not move the step's stride (CountCurve)
        return curve(slot.curve.plan, slot.curve.scale, slot.plateau).at(position)

    def value(self, name: str) -> float:
        """Channel ``name``'s value now: a free value of the program (``ema``, ``kl``; a
        ``batch_size`` read rounded), or a target's expression value (before group ratios)."""
        found = self._free.get(name)
        if found is None:
            return self.runtime.value(name)
        grid = self._grid
        if grid is not None and grid.version != self._grid_version:  # moved since the step
            self._apply(self.runtime.position)
        at, read = found
        where = self._where if grid is not None else self.runtime.position
        return at(where) if read is None else read(at(where))

    def values(self) -> dict[str, float]:
        """Every channel's value now, by name (see :meth:`value`)."""
        return self.runtime.values()

    def get_lr(self) -> list[float]:  # type: ignore[override]  # floats, also for tensor lrs
        """The groups' learning rates at the current tick, in closed form."""
        if not self._lr_slots:  # a program without lr: the groups keep theirs
            return [group["lr"] for group in self.optimizer.param_groups]
        return [slot.curve.at(self.runtime.position) for slot in self._lr_slots]

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        """The groups' learning rates at the current tick (floats, also for tensor lrs)."""
        return [float(lr) for lr in self._last_lr]

    def get_last(self, target: str) -> list[float]:
        """The groups' values of ``target`` ('lr', 'momentum', 'beta2', 'weight_decay') now."""
        if target not in self._slots:
            raise LrdslError(f"this scheduler does not drive {target!r}; it drives "
                             f"{', '.join(self._slots)}")
        return [slot.curve.at(self.runtime.position) for slot in self._slots[target]]

    # Hugging Face Accelerate asks this before wrapping a scheduler; lrdsl.accelerate says why the
    # answer is yes (prepare then registers this scheduler for save_state as it is, unwrapped)
    @property
    def _is_accelerate_prepared(self) -> bool:
        if self._follower is None:
            self._follower = _accelerate.Follower(self.optimizer, self.runtime)
        return True

    @_is_accelerate_prepared.setter
    def _is_accelerate_prepared(self, value: bool) -> None:
        pass  # prepare() marks what it prepared; this scheduler already is

    # the position lives in the runtime; LRScheduler's names for it stay readable and settable:
    # its constructor writes last_epoch and (a private name, read by nothing of ours but kept for
    # code that reads it as on torch's own schedulers) _step_count
    @property
    def last_epoch(self) -> int:  # type: ignore[override]
        return self.runtime.tick

    @last_epoch.setter
    def last_epoch(self, tick: int) -> None:
        self.runtime.tick = tick

    @property
    def _step_count(self) -> int:
        return self.runtime.steps

    @_step_count.setter
    def _step_count(self, steps: int) -> None:
        self.runtime.steps = steps

    def state_dict(self) -> dict[str, Any]:
        """The canonical expressions, their units, the tick and the plateau states (the
        runtime's), and the groups' initial LRs as torch keeps them."""
        # under torch.distributed, the reports posted for the coming optimizer step are saved as
        # decided (the round is sealed: every rank decides it alike), as the run will have them
        state = self.runtime.state_dict(self._rounds.sealed(posted_only=True) if self._rounds is not None else None)
        state["base_lrs"] = [float(b) for b in self.base_lrs]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], rebase: bool = False) -> None:
        """Continue from a saved state: exactly the sequence of an uninterrupted run.

        A state saved under other expressions (or units) is an error unless ``rebase=True``:
        then this scheduler's expressions continue from the saved tick; a plateau keeps its
        saved state when the saved expression has the same plateau rule, else it starts
        fresh (either way it is logged on the ``lrdsl`` logger).
        """
        # every field is checked before anything changes: a refused state leaves the run as it was
        loaded = self.runtime.checked(state_dict, rebase)
        groups = self.optimizer.param_groups
        if len(groups) != self._groups:  # before the state changes: a refused group keeps it
            self._follow_groups(groups)
        self.runtime.load(loaded)
        self._apply(self.runtime.position)
        # the optimizer's state, loaded after this (dcp.load takes its keys in sorted order), holds
        # the LR in force when it was saved, before reports that state_dict() saved as decided:
        # the next optimizer step writes the values again
        self._rewrite = self._hook is not None
        if loaded.rebased:
            log.info("lrdsl: rebased at tick %d from %s to %s", loaded.tick, _describe(loaded.saved),
                     _describe(self.runtime.canonical()))

    def __repr__(self) -> str:
        return f"lrdsl.torch.Scheduler({_describe({t: _canonical(s) for t, s in self.specs.items()})}, " \
               f"tick={self.last_epoch})"


def _group_name(group: dict, index: int) -> str:
    return f"{index} ({group['name']!r})" if "name" in group else str(index)


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


def _decide_before(scheduler: Scheduler) -> Callable[..., None]:
    """An optimizer step pre-hook deciding ``scheduler``'s reports; it holds the scheduler weakly
    (a scheduler replaced on the same optimizer stops deciding)."""
    ref = weakref.ref(scheduler)

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        found = ref()
        if found is not None:
            found._before_optimizer_step()
    return hook


def checkpointed_state(checkpoint_id: Any, key: str = "scheduler") -> dict[str, Any]:
    """The scheduler state saved under ``key`` by ``torch.distributed.checkpoint.save``, read whole.

    ``dcp.load`` fills only the keys of the state it is given, and a fresh scheduler's state has
    other keys when its plateau expression differs from the saved one: to continue a saved run
    under another program, read the saved state with this (on every rank, as ``dcp.load``) and
    pass it to ``sched.load_state_dict(state, rebase=True)``.
    """
    import torch.distributed.checkpoint as dcp

    try:
        metadata = dcp.FileSystemReader(checkpoint_id).read_metadata()
    except (OSError, ValueError) as error:
        raise LrdslError(f"{checkpoint_id}: not a torch.distributed.checkpoint directory ({error})") from None
    template: dict[str, Any] = {}
    for path in (getattr(metadata, "planner_data", None) or {}).values():  # fqn -> the keys to it
        if path and path[0] == key:
            node = template
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = None  # a plain value: dcp.load puts the saved one in its place
    if key not in template:
        raise LrdslError(f"{checkpoint_id} holds no {key!r} entry; pass the key the scheduler "
                         f"was saved under")
    dcp.load(template, checkpoint_id=checkpoint_id)
    return template[key]


def scheduler(optimizer: torch.optim.Optimizer, expr: Spec | Program, *, momentum: Spec | None = None,
              beta2: Spec | None = None, weight_decay: Spec | None = None,
              steps_per_epoch: float | None = None, total: float | None = None,
              last_epoch: int = -1, clock: str = "ticks", **constants: float | None) -> Scheduler:
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
        clock: ``ticks`` (default), ``samples`` or ``tokens``: what the schedules' positions
            count (docs/language.md "Clocks"); ``step(samples=…, tokens=…)`` says what a step
            consumed.
        constants: the fixed conversions ``samples_per_step``, ``tokens_per_sample``,
            ``samples_per_epoch``, ``tokens_per_epoch``, ``tokens_per_step``.

    ``expr`` may be a program (:func:`lrdsl.program`, or its text with ``name = …`` lines):
    ``lr`` and the optimizer targets are written into the groups, every other channel is a
    free value read with ``value(name)`` / ``values()``.

    ``step()`` advances a tick, ``step(metrics)`` reports then advances, ``report(**metrics)``
    reports only; ``get_last_lr()`` gives the LRs, ``get_last("momentum")`` the other targets.
    In Hydra: ``{_target_: lrdsl.torch.scheduler, _partial_: true, expr: ...}``.
    """
    return Scheduler(optimizer, expr, momentum=momentum, beta2=beta2, weight_decay=weight_decay,
                     steps_per_epoch=steps_per_epoch, total=total, last_epoch=last_epoch,
                     clock=clock, **constants)


def __getattr__(name: str) -> Any:
    """``find_lr``, the LR range test (:mod:`lrdsl.find.torch`), re-exported on first use: it is
    built on :func:`scheduler` and imports this module, so importing it here would be a cycle."""
    if name == "find_lr":
        return importlib.import_module("lrdsl.find.torch").find_lr
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
