"""The one runtime: a compiled program's position, plateau state, reports and saved state.

A backend writes values into its framework; everything else a running schedule needs is here,
framework-free (docs/language.md "Reports and the plateau", "Values and the per-group rule" and "Targets and channels"):

- the **channels** (:mod:`lrdsl.channels`): name → spec, an expression (text or
  :class:`lrdsl.Expr`) or, for an optimizer target, a mapping of param-group keys to
  expressions (docs/language.md);
- their **plans**, compiled once per canonical text and shared (:meth:`Runtime.plan_of`);
- the **position**: ``tick``, the ticks taken (−1 before the first), and ``steps``, the
  calls that advanced it.  Clocks (docs/language.md "Clocks") add their counters (samples, tokens) beside ``tick``
  in :attr:`Runtime.counters`; the schedule's position is then the clock's counter;
- the **plateau** states, one per ``| plateau`` expression, and :meth:`Runtime.report`;
- :meth:`Runtime.state_dict` / :meth:`Runtime.load_state_dict` (``rebase=``), every field
  checked before anything changes;
- the value of each channel at the position: :meth:`Runtime.value`, :meth:`Runtime.values`.

:class:`Curve` is one plan's values, evaluated CHUNK ticks at a time in float64, lowered by
its plateau and times a ratio (the per-group rule, docs/language.md): what a backend writes into one place.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import numpy as np

from lrdsl import channels
from lrdsl.errors import LrdslError
from lrdsl.language.nodes import Expr, Plateau
from lrdsl.language.parser import parse
from lrdsl.language.plan import Plan, plan
from lrdsl.language.plateau import PlateauRule, PlateauState
from lrdsl.language.units import Units, checked_tick
from lrdsl.programs import Program, is_program, program

#: ticks evaluated per vectorized batch
CHUNK = 4096

Spec = Union[str, Expr, Mapping[Union[str, int], Union[str, Expr]]]

log = logging.getLogger("lrdsl")


class Curve:
    """One plan's values: f(tick) in closed form, lowered by the plateau, times ``scale`` (a
    param group's ratio, docs/language.md).  Values are computed CHUNK ticks at a time and kept, so a step
    costs a list lookup."""

    __slots__ = ("plan", "scale", "plateau", "start", "values")

    def __init__(self, compiled: Plan, scale: float = 1.0, plateau: PlateauState | None = None):
        self.plan, self.scale, self.plateau = compiled, scale, plateau
        self.start = -CHUNK
        self.values: list[float] = []

    def at(self, tick: int) -> float:
        """The value at ``tick``: f(tick), lowered by the plateau, times the ratio."""
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
        """The largest value the curve can take (inf where that overflows)."""
        return self.plan.range[1] * self.scale


class FarCurve(Curve):
    """A curve whose ratio initial_g / initial_ref overflows a float (a subnormal reference):
    the ratio is kept as m·2**e and applied with ldexp, so f·ratio is exact wherever it is
    finite (the backend checks :meth:`peak` for the plan's largest value)."""

    __slots__ = ("exponent",)

    def __init__(self, compiled: Plan, ratio: tuple[float, int], plateau: PlateauState | None = None):
        super().__init__(compiled, ratio[0], plateau)
        self.exponent = ratio[1]

    def at(self, tick: int) -> float:
        return math.ldexp(super().at(tick), self.exponent)

    def peak(self) -> float:
        try:
            return math.ldexp(super().peak(), self.exponent)
        except OverflowError:
            return math.inf


class CountCurve(Curve):
    """A curve on a samples or tokens clock: positions are counts that advance by what each
    step consumed.  Values are computed CHUNK positions at a time along the stride of the last
    two positions asked (a fixed batch size), so a step costs a lookup until the stride changes
    (a batch-size ramp moves it once per stage)."""

    __slots__ = ("stride", "last")

    def __init__(self, compiled: Plan, scale: float = 1.0, plateau: PlateauState | None = None):
        super().__init__(compiled, scale, plateau)
        self.stride: int = 1
        self.last: int | None = None

    def at(self, position: int) -> float:  # type: ignore[override]
        i, off = divmod(position - self.start, self.stride)
        if off == 0 and 0 <= i < CHUNK:
            f = self.values[i]
        else:
            last = self.last
            if last is not None and position > last:
                self.stride = position - last
            self.start = position
            grid = position + self.stride * np.arange(CHUNK, dtype=np.float64)
            self.values = self.plan.values(grid).tolist()
            f = self.values[0]
        self.last = position
        plateau = self.plateau
        if plateau is not None:
            f = plateau.rule.apply(f, plateau.scale)
        return f * self.scale


class Grid:
    """The positions one scheduler's curves are read at on a counting clock: CHUNK of them from
    ``start``, ``stride`` apart (the stride of the last two positions: a fixed batch).  The
    scheduler finds a position's index once per step, and each :class:`GridCurve` looks its
    value up there; a position off the grid starts a new one (``version``), and each curve
    recomputes its chunk when it next reads."""

    __slots__ = ("start", "stride", "last", "version", "positions")

    def __init__(self):
        self.start, self.stride, self.last, self.version = 0, 1, None, -1
        self.positions: Any = None

    def index(self, position: int) -> int:
        i, off = divmod(position - self.start, self.stride)
        if not (off == 0 and 0 <= i < CHUNK and self.positions is not None):
            last = self.last
            if last is not None and position > last:
                self.stride = position - last
            self.start, self.version, i = position, self.version + 1, 0
            self.positions = position + self.stride * np.arange(CHUNK, dtype=np.float64)
        self.last = position
        return i


class GridCurve(Curve):
    """A curve on a counting clock read through its scheduler's shared :class:`Grid`."""

    __slots__ = ("grid", "version")

    def __init__(self, compiled: Plan, scale: float, plateau: PlateauState | None, grid: Grid):
        super().__init__(compiled, scale, plateau)
        self.grid, self.version = grid, -1

    def refresh(self) -> None:
        """Evaluate the chunk at the grid's positions (its scheduler calls this for all its
        curves when the grid moves, so that a step's lookups need no check)."""
        self.values = self.plan.values(self.grid.positions).tolist()
        self.version = self.grid.version

    def at_index(self, i: int) -> float:
        """The value at the grid's i-th position; the chunk must be fresh (:meth:`refresh`)."""
        f = self.values[i]
        plateau = self.plateau
        if plateau is not None:
            f = plateau.rule.apply(f, plateau.scale)
        return f * self.scale

    def at(self, position: int) -> float:  # type: ignore[override]
        i = self.grid.index(position)
        if self.version != self.grid.version:
            self.refresh()
        return self.at_index(i)


def ratio(initial: float, ref: float | None) -> float | tuple[float, int]:
    """The per-group rule (docs/language.md): a group's values are value · initial_g /
    initial_ref (ref: the first group whose initial value is nonzero; none: the value itself).
    Where the ratio overflows (a subnormal ref), it is given as (m, e) with ratio = m·2**e,
    for :class:`FarCurve`."""
    if ref is None:
        return 1.0
    quotient = initial / ref
    if math.isfinite(quotient):
        return quotient
    (m, e), (m_ref, e_ref) = math.frexp(initial), math.frexp(ref)
    return m / m_ref, e - e_ref


def curve(compiled: Plan, scale: float | tuple[float, int] = 1.0,
          plateau: PlateauState | None = None, grid: Grid | None = None) -> Curve:
    """A :class:`Curve` (on a samples or tokens clock a :class:`GridCurve` on ``grid``, or a
    :class:`CountCurve` of its own), or a :class:`FarCurve` for a ratio given as (m, e)."""
    if isinstance(scale, tuple):
        return FarCurve(compiled, scale, plateau)
    if compiled.units.clock != "ticks":
        if grid is not None:
            return GridCurve(compiled, scale, plateau, grid)
        return CountCurve(compiled, scale, plateau)
    return Curve(compiled, scale, plateau)


def plateau_step(rule: PlateauRule, scale, best, bad, cooldown_left, value, where):
    """One report of ``value`` as a pure function of the plateau's fields, for array backends
    (optax's pytree state, a compiled step): :meth:`PlateauState.report_value` with ``where``
    (``jnp.where``, ``np.where``…) in place of branches.  Returns (scale, best, bad,
    cooldown_left); the caller keeps its own dtypes.

    Improved when ``value`` beats the bar ``best·bar_scale + bar_shift`` (below it for min,
    above it for max; NaN never does).  A bad report during cooldown does not count; more
    than ``patience`` bad reports multiply the scale by ``factor`` and start the cooldown.
    With ``best="running"`` best moves on every report below it (max: above), improvement or
    not; ``rule.running`` is a Python bool, so a compiled step holds one of the two.
    """
    bar = best * rule.bar_scale + rule.bar_shift
    minimize = rule.minimize
    improved = value < bar if minimize else value > bar
    if rule.running:
        best = where(value < best if minimize else value > best, value, best)
    else:
        best = where(improved, value, best)
    bad = where(improved, 0, bad + 1)
    cooling = cooldown_left > 0
    cooldown_left = where(cooling, cooldown_left - 1, cooldown_left)
    bad = where(cooling, 0, bad)
    cut = bad > rule.patience
    return (where(cut, scale * rule.factor, scale), best, where(cut, 0, bad),
            where(cut, rule.cooldown, cooldown_left))


def program_specs(source, targets: Mapping[str, Spec | None]) -> dict[str, Spec]:
    """The channels of a backend's arguments: an expression (the LR) or a program
    (:func:`lrdsl.program`, its text, a :class:`~lrdsl.Program`), plus the targets given by
    keyword (``momentum=…``); a channel given both ways is an error."""
    given = {name: spec for name, spec in targets.items() if spec is not None}
    if not is_program(source) or (isinstance(source, Mapping) and not isinstance(source, Program)):
        return {"lr": source, **given}  # a mapping here is the LR per param group
    compiled = program(source)
    twice = sorted(set(compiled) & set(given))
    if twice:
        raise LrdslError(f"{twice[0]} is given twice: in the program and as {twice[0]}=")
    return {**dict(compiled), **given}


def canonical(spec: Spec) -> str | dict:
    """The saved form of a channel's spec: canonical text, or a mapping of it."""
    if isinstance(spec, Mapping):
        return {str(key): str(parse(value)) for key, value in spec.items()}
    return str(parse(spec))


@dataclass(frozen=True)
class LoadedState:
    """A saved state, checked: what :meth:`Runtime.load` takes (nothing has changed yet)."""

    tick: int
    steps: int
    plateaus: dict
    saved: dict
    rebased: bool
    counters: dict = None  # type: ignore[assignment]  # what the steps consumed (samples, tokens)


class Runtime:
    """The framework-free state of a running program; see the module docstring.

    ``specs`` maps channel names (``lr`` first, then any of :mod:`lrdsl.channels`, or a free
    value's name) to specs.  ``post``, when a backend sets it, takes each report's values (one
    per plateau, in order) instead of the plateaus: the backend decides later, with
    :meth:`decide` (PyTorch under torch.distributed: docs/distributed.md "Plateau reports").
    """

    def __init__(self, specs: Mapping[str, Spec], *, steps_per_epoch: float | None = None,
                 total: float | None = None, tick: int = -1, clock: str = "ticks",
                 **constants: float | None):
        for name in specs:
            channels.channel(name)  # a bad name fails here, naming it
        self.specs: dict[str, Spec] = dict(specs)
        self.steps_per_epoch, self.total = steps_per_epoch, total
        #: the clock and its fixed conversions (docs/language.md "Clocks"): every plan's units
        self.clock = clock
        self.constants = {k: v for k, v in constants.items() if v is not None}
        Units(steps_per_epoch, total, clock, **self.constants)  # a bad option fails here
        #: the position: ticks taken (−1 before the first) and calls that advanced them
        self.tick, self.steps = tick, 0
        #: what the steps consumed (docs/language.md "Clocks"): samples and tokens, where known; on a samples
        #: or tokens clock the schedule's position is its counter.  Saved with the state.
        self.counters: dict[str, int] = {} if clock == "ticks" else {"samples": 0, "tokens": 0}
        # a tokens clock with nothing to derive: step(tokens=n) adds n and nothing else
        self._counter = None if clock == "ticks" else clock
        self._tokens_only = clock == "tokens" and not {"samples_per_step", "tokens_per_sample"} & set(self.constants)
        self._readers: dict[str, Callable[[int], float]] = {}  # value()'s hot path, per channel
        #: the position past which a step warns, once: ``total`` when an expression uses % (a
        #: run longer than the total it was planned for is a likely unit mistake), else never
        self.warn_after: float = math.inf
        if total is not None and any("%" in units_of(spec) for spec in self.specs.values()):
            self.warn_after = total
        self.plans: dict[str, Plan] = {}  # canonical text -> its plan, shared by every place
        self.plateaus: dict[str, PlateauState] = {}  # a plateau expression's text -> its state
        self._only: PlateauState | None = None  # the plateau, when there is exactly one
        self.post: Callable[[list[float]], None] | None = None
        self._curves: dict[tuple, Curve] = {}  # (name, group key) -> its unscaled curve, for value()

    # --- plans --------------------------------------------------------------------------------
    def plan_of(self, name: str, spec: str | Expr) -> Plan:
        """The plan of one expression of channel ``name``, compiled once per canonical text;
        checked: only ``lr`` carries a plateau, and the channel's range (momentum below 1)."""
        key = str(parse(spec))
        compiled = self.plans.get(key)
        if compiled is None:
            compiled = plan(spec, steps_per_epoch=self.steps_per_epoch, total=self.total,
                            clock=self.clock, **self.constants)
        # checked per channel, not per text: the cache is shared by every channel
        if name != "lr" and compiled.plateau is not None:
            raise LrdslError(f"{name}: only the learning rate may carry '| plateau', got {key}")
        channels.channel(name).check_range(*compiled.range, f"{name}: {key}")
        self.plans[key] = compiled
        return compiled

    def plateau_of(self, compiled: Plan) -> PlateauState | None:
        """The plateau state of a plan (one per plateau expression, shared), or None."""
        if compiled.plateau is None:
            return None
        state = self.plateaus.get(str(compiled.expr))
        if state is None:
            state = PlateauState(compiled.plateau)
            self.adopt_plateaus({**self.plateaus, str(compiled.expr): state})
        return state

    def adopt_plateaus(self, plateaus: dict[str, PlateauState]) -> None:
        """Take these plateau states (a backend builds them aside, then commits them whole)."""
        self.plateaus = plateaus
        self._only = next(iter(plateaus.values())) if len(plateaus) == 1 else None

    # --- values -------------------------------------------------------------------------------
    def value(self, name: str, key: str | int | None = None) -> float:
        """Channel ``name``'s value at the current tick (tick 0 before the first), plateau
        included; for a channel given per group, the expression of group ``key``."""
        reader = self._readers.get(name) if key is None else None
        if reader is not None:
            return reader(self.position)
        value = self._value(name, key)
        spec = self.specs[name]
        if key is None and not isinstance(spec, Mapping):
            found = self._curves[(name, None)]
            read = channels.channel(name).read
            self._readers[name] = found.at if not channels.channel(name).integer else (
                lambda position: read(found.at(position)))
        return value

    def _value(self, name: str, key: str | int | None) -> float:
        if name not in self.specs:
            raise LrdslError(f"no channel {name!r}; this program has {', '.join(self.specs)}")
        spec = self.specs[name]
        if isinstance(spec, Mapping):
            if key is None or (key not in spec and "*" not in spec):
                raise LrdslError(f"{name} is given per param group ({', '.join(map(str, spec))}): "
                                 f"name the group")
            spec = spec[key] if key in spec else spec["*"]
        found = self._curves.get((name, key))
        if found is None:
            compiled = self.plan_of(name, spec)
            found = self._curves[(name, key)] = curve(compiled, 1.0, self.plateau_of(compiled))
        return channels.channel(name).read(found.at(self.position))

    def values(self) -> dict[str, float]:
        """Every channel given by one expression, by name, at the current position (an integer
        channel, a batch size, read rounded)."""
        return {name: self.value(name) for name, spec in self.specs.items() if not isinstance(spec, Mapping)}

    # --- position and reports -------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Where the schedules are read: the tick (0 before the first), or on a samples or
        tokens clock what the steps so far consumed."""
        counter = self._counter
        if counter is None:
            return self.tick if self.tick > 0 else 0
        return self.counters[counter]

    def advance(self, samples: int | None = None, tokens: int | None = None) -> None:
        """One tick on; on a samples or tokens clock, by what the step consumed (the first
        tick, which a scheduler takes when it is built, consumes nothing)."""
        if samples is not None or tokens is not None or (self.clock != "ticks" and self.tick >= 0):
            self.add(self.counted(samples, tokens))
        self.tick += 1
        self.steps += 1

    def counted(self, samples: Any, tokens: Any) -> tuple[Any, Any]:
        """What one step consumed, (samples, tokens), each checked, or derived from the fixed
        constants (``samples_per_step``, ``tokens_per_sample``, ``tokens_per_step``), None where
        unknown; the clock's own count is required.  Changes nothing."""
        if type(tokens) is int and samples is None and self._tokens_only and tokens >= 0:
            return None, tokens  # the hot case: a tokens clock stepped with tokens=n
        c = self.constants
        samples, tokens = _count(samples, "samples"), _count(tokens, "tokens")
        if samples is None:
            samples = c.get("samples_per_step")
            if samples is None and tokens is not None and "tokens_per_sample" in c:
                samples = tokens / c["tokens_per_sample"]
        if tokens is None:
            tokens = c.get("tokens_per_step")
            if tokens is None and samples is not None and "tokens_per_sample" in c:
                tokens = samples * c["tokens_per_sample"]
        if (self.clock == "samples" and samples is None) or (self.clock == "tokens" and tokens is None):
            fixed = "samples_per_step" if self.clock == "samples" else \
                "tokens_per_step (or samples_per_step and tokens_per_sample)"
            raise LrdslError(f"step() on a {self.clock} clock needs what the step consumed: pass "
                             f"{self.clock}=n, or fix {fixed} when the schedule is built")
        return samples, tokens

    def past_the_end(self) -> None:
        """Warn, once, that the position has passed ``total`` on a schedule using ``%``."""
        self.warn_after = math.inf
        unit = "tick" if self.clock == "ticks" else self.clock
        warnings.warn(
            f"lrdsl: the schedule is at {unit} {self.position}, past total={self.total:g}, and its "
            f"% durations were planned for a run of {self.total:g}: the % part has ended and its "
            f"last value holds. If the run is meant to be longer, total is too small — is one step() "
            f"one optimizer step? (gradient accumulation, or Accelerate stepping the scheduler "
            f"once per process, change that)", stacklevel=3)

    def consume(self, samples: Any = None, tokens: Any = None) -> None:
        """Add what one step consumed to the counters, without moving the tick."""
        self.add(self.counted(samples, tokens))

    def after(self, counts: tuple[Any, Any]) -> int:
        """The position once ``counts`` (from :meth:`counted`) are added: changes nothing."""
        if self.clock == "ticks":
            return self.tick + 1
        count = counts[self.clock == "tokens"]
        return self.counters[self.clock] + (count or 0)  # none: the first tick, taken at build

    def add(self, counts: tuple[Any, Any]) -> None:
        """Add counts from :meth:`counted` to the counters (exact to 2**53)."""
        samples, tokens = counts
        if samples is None and type(tokens) is int and self._tokens_only:  # the hot case
            total = self.counters["tokens"] + tokens
            if total <= 2 ** 53:
                self.counters["tokens"] = total
                return
        for key, value in zip(("samples", "tokens"), counts):
            if value is not None:
                total = self.counters.get(key, 0) + value
                if total > 2 ** 53:
                    raise LrdslError(f"the {key} counter passed 2**53, beyond what float64 counts exactly")
                self.counters[key] = int(total) if float(total).is_integer() else total

    def report(self, metrics) -> None:
        """One report to every plateau (one value per monitor, all read before any state changes).

        ``metrics``: the monitored value, or a mapping holding each plateau's monitor.
        """
        plateau = self._only
        if plateau is not None and self.post is None:  # the common case: step(metric) is hot
            plateau.report_value(metrics if type(metrics) is float else plateau.rule.value_in(metrics))
            return
        values = self.monitored(metrics)
        if self.post is not None:
            self.post(values)
        else:
            self.decide([values])

    def monitored(self, metrics) -> list[float]:
        """Each plateau's monitored value in ``metrics`` (all read before any state changes)."""
        return [state.rule.value_in(metrics) for state in self.plateaus.values()]

    def decide(self, reports: list[list[float]]) -> None:
        """Report each of ``reports`` (one value per plateau, in order) to the plateaus."""
        for values in reports:
            for state, value in zip(self.plateaus.values(), values):
                state.report_value(value)

    # --- saved state ----------------------------------------------------------------------------
    def canonical(self) -> dict:
        """The channels' canonical specs and the units: what a saved state must match."""
        out: dict[str, Any] = {"lr": None, **{name: canonical(spec) for name, spec in self.specs.items()},
               "units": (self.steps_per_epoch, self.total)}
        if self.clock != "ticks" or self.constants:
            out["clock"] = (self.clock, tuple(sorted(self.constants.items())))
        return out

    def state_dict(self, pending: list[list[float]] | None = None) -> dict[str, Any]:
        """The canonical expressions, their units, the position and the plateau states.

        The keys are those ``lrdsl.torch.Scheduler`` has always saved (``last_epoch`` is the
        tick), so every saved scheduler state loads here.  ``pending``: reports posted but
        not yet decided (see :meth:`decide`), saved as decided.
        """
        plateaus = self.plateaus
        if pending:
            plateaus = {key: copy.copy(state) for key, state in plateaus.items()}
            for values in pending:
                for decided, value in zip(plateaus.values(), values):
                    decided.report_value(value)
        state: dict[str, Any] = {
            "expr": canonical(self.specs["lr"]) if "lr" in self.specs else None,  # None: no lr
            "targets": {name: canonical(spec) for name, spec in self.specs.items() if name != "lr"},
            "steps_per_epoch": self.steps_per_epoch, "total": self.total,
            "last_epoch": self.tick, "_step_count": self.steps,
            "plateau": {key: plateau.state_dict() for key, plateau in plateaus.items()} or None,
        }
        if self.counters:
            state["counters"] = dict(self.counters)
        if self.clock != "ticks" or self.constants:
            state["clock"], state["constants"] = self.clock, dict(self.constants)
        return state

    def checked(self, state_dict: Mapping[str, Any], rebase: bool = False) -> LoadedState:
        """A saved state, every field checked, changing nothing: a refused state leaves the run
        as it was.  A state of other expressions (or units) is refused unless ``rebase``."""
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
        clock, constants = state_dict.get("clock", "ticks"), state_dict.get("constants") or {}
        if not isinstance(constants, Mapping) or clock not in ("ticks", "samples", "tokens"):
            raise LrdslError(f"not an lrdsl scheduler state: clock {clock!r}, constants {constants!r}")
        if clock != "ticks" or constants:
            saved["clock"] = (clock, tuple(sorted(constants.items())))
        for name, text in saved.items():
            if name not in ("units", "clock") and not (_is_saved_text(text) or (name == "lr" and text is None)):
                raise LrdslError(f"not an lrdsl scheduler state: its {name} expression is {text!r}")
        tick = checked_tick(state_dict["last_epoch"], "the state's last_epoch")
        steps = checked_tick(state_dict.get("_step_count", tick + 1), "the state's _step_count")
        plateaus = state_dict.get("plateau") or {}
        if not isinstance(plateaus, Mapping):
            raise LrdslError(f"not an lrdsl scheduler state: plateau is {plateaus!r}")
        if "scale" in plateaus:  # a v1 state: the one plateau's state, saved bare
            plateaus = {saved["lr"]: plateaus}
        plateaus = {key: PlateauState.checked(value, f"the state's plateau {key!r}")
                    for key, value in plateaus.items()}
        counters = state_dict.get("counters") or {}
        if not isinstance(counters, Mapping):
            raise LrdslError(f"not an lrdsl scheduler state: counters is {counters!r}")
        counters = {key: _saved_count(counters[key], key) for key in ("samples", "tokens")
                    if key in counters}
        ours = self.canonical()
        rebased = saved != ours
        if rebased and not rebase:
            raise LrdslError(f"this scheduler state was saved from {describe(saved)}, not from "
                             f"{describe(ours)}; pass rebase=True to continue the saved run "
                             f"under the new schedule from where it stopped")
        if rebased:
            tick, counters = self._carried(tick, counters, state_dict.get("steps_per_epoch"),
                                           clock, dict(constants))
        elif self.clock != "ticks":
            counters = {"samples": 0, "tokens": 0, **counters}
        return LoadedState(tick, steps, plateaus, saved, rebased, counters)

    def _carried(self, tick: int, counters: dict, steps_per_epoch, clock: str,
                 constants: dict) -> tuple[int, dict]:
        """The saved position in this runtime's units (a rebase): the same samples or tokens
        on a counting clock; on the ticks clock the same epochs (or samples), so a run resumed
        on half the processes, with twice the steps per epoch, continues where it stopped."""
        if (steps_per_epoch, clock, constants) == (self.steps_per_epoch, self.clock, self.constants):
            return tick, counters
        saved = Units(steps_per_epoch, None, clock, **constants)
        if self.clock != "ticks":
            count = counters.get(self.clock)
            if count is None and clock == "ticks" and tick >= 0:
                try:
                    count = round(tick * saved.factor("st") / saved.factor(CLOCK_UNITS[self.clock]))
                except LrdslError:
                    count = None
            if count is None:
                raise LrdslError(f"rebase: the saved run counted no {self.clock}, so its position "
                                 f"cannot be carried over to a {self.clock} clock: resume with the "
                                 f"saved units (clock={clock}, {describe_constants(steps_per_epoch, constants)})")
            return tick, {**counters, self.clock: count}
        now = Units(self.steps_per_epoch, None, "ticks", **self.constants)
        if clock != "ticks":  # from a count back to ticks: the per-step size of this run
            count, unit = counters.get(clock, 0), CLOCK_UNITS[clock]
            try:
                return round(count * now.factor(unit)), counters
            except LrdslError:
                raise LrdslError(f"rebase: the saved run stopped at {count} {clock}; to continue it "
                                 f"on a ticks clock pass {'samples_per_step' if clock == 'samples' else 'tokens_per_step'} "
                                 f"(this run's per-step size)") from None
        if steps_per_epoch is not None and self.steps_per_epoch is not None:
            epochs = tick / steps_per_epoch
            moved = epochs * self.steps_per_epoch
            if moved != round(moved):
                log.info("lrdsl: rebase: epoch %.6g falls between ticks with steps_per_epoch=%g; "
                         "continuing at the nearest", epochs, self.steps_per_epoch)
            return round(moved), counters
        if "samples" in counters and "samples_per_step" in self.constants:
            return round(counters["samples"] / self.constants["samples_per_step"]), counters
        if steps_per_epoch == self.steps_per_epoch:
            return tick, counters  # only other constants, not used on the ticks clock
        raise LrdslError(f"rebase: the saved run stopped at tick {tick} with steps_per_epoch="
                         f"{steps_per_epoch}; this one has steps_per_epoch={self.steps_per_epoch}, so "
                         f"its position cannot be carried over: pass steps_per_epoch= for both runs "
                         f"(or the same units as the saved run)")

    def load(self, loaded: LoadedState) -> None:
        """Take a :meth:`checked` state: position and plateaus.  On a rebase a plateau keeps
        its saved state when the saved expression has the same plateau rule, else it starts
        fresh (either way it is logged on the ``lrdsl`` logger)."""
        tick, plateaus = loaded.tick, loaded.plateaus
        for key, state in self.plateaus.items():
            match = key if key in plateaus else next(
                (k for k in plateaus if _plateau_rule(k) == state.rule), None)
            if match is not None:
                state.load_checked(plateaus[match])
            if loaded.rebased:
                log.info("lrdsl: rebased at tick %d; the plateau on %s %s", tick, state.rule.monitor,
                         "keeps its saved state" if match is not None else "starts fresh (its rule changed)")
        self.tick, self.steps = tick, loaded.steps
        if loaded.counters is not None:
            self.counters = dict(loaded.counters)

    def load_state_dict(self, state_dict: Mapping[str, Any], rebase: bool = False) -> None:
        """:meth:`checked`, then :meth:`load`."""
        self.load(self.checked(state_dict, rebase))

    def __repr__(self) -> str:
        return f"lrdsl.runtime.Runtime({describe(self.canonical())}, tick={self.tick})"


#: the unit each counting clock counts
CLOCK_UNITS = {"samples": "sp", "tokens": "tok"}


def describe_constants(steps_per_epoch, constants: Mapping) -> str:
    """steps_per_epoch and the conversion constants, for messages."""
    return ", ".join([f"steps_per_epoch={steps_per_epoch}"] + [f"{k}={v}" for k, v in constants.items()])


def _saved_count(value: Any, what: str) -> int:
    """A saved counter: an integer from 0 to 2**53."""
    return checked_tick(value, f"the state's {what} counter")


def units_of(spec: Spec) -> set[str]:
    """The duration units a channel's spec writes (every group's, for a per-group mapping)."""
    if isinstance(spec, Mapping):
        return set().union(*(parse(value).units() for value in spec.values()))
    return parse(spec).units()


def _count(value: Any, what: str) -> int | None:
    """A step's count of samples or tokens: None, or an integer ≥ 0 (a tensor's item will do)."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    if item is not None and not isinstance(value, (int, float)):
        value = item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(float(value)) and float(value).is_integer() and float(value) >= 0):
        raise LrdslError(f"{what}= must be a whole count ≥ 0 of what the step consumed, got {value!r}")
    return int(float(value))


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


def describe(specs: Mapping) -> str:
    """name=expression pairs (and units) of canonical specs, for messages."""
    parts = [f"{name}={spec!r}" for name, spec in specs.items() if name != "units"]
    units = specs.get("units")
    if units is not None and units != (None, None):
        parts.append(f"steps_per_epoch={units[0]}, total={units[1]}")
    return ", ".join(parts)
