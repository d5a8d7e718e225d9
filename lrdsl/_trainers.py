"""What lrdsl.lightning and lrdsl.hf share; imports no framework beyond lrdsl.torch's types."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

from lrdsl import channels
from lrdsl.errors import ArgumentError, LrdslError, did_you_mean
from lrdsl.language.nodes import Plateau
from lrdsl.language.parser import parse
from lrdsl.language.plateau import PlateauRule
from lrdsl.language.units import CONSTANTS, Units
from lrdsl.runtime import CLOCK_UNITS, program_specs
from lrdsl.torch import scheduler


def monitors_of(specs: Iterable) -> tuple[str, ...]:
    """The plateau monitors of the targets' specs (text, Expr, or a mapping of them), in order.

    Parsing here makes a bad expression fail when the callback is built; units (``%``, ``ep``)
    are resolved later, when the trainer knows the run's length.
    """
    monitors: list[str] = []
    for spec in specs:
        for text in (spec.values() if isinstance(spec, Mapping) else [spec]):
            expr = parse(text)
            if isinstance(expr, Plateau):
                monitor = PlateauRule.from_call(expr.options).monitor
                if monitor not in monitors:
                    monitors.append(monitor)
    return tuple(monitors)


class Source:
    """What both callbacks are given: a program or an expression (the LR), the targets given
    by keyword, the clock, its fixed constants and an optional ``total`` in the clock's unit;
    checked when the callback is built, turned into :func:`lrdsl.torch.scheduler`'s arguments
    when the trainer knows its run."""

    def __init__(self, who: str, source: Any, targets: Mapping[str, Any], clock: str,
                 total: float | None, constants: Mapping[str, float | None]):
        self.who = who
        self.source = source
        self.targets = {name: spec for name, spec in targets.items() if spec is not None}
        #: every channel by name: lr and the optimizer targets first, then the free values
        self.specs = program_specs(source, self.targets)
        #: the free values' names (read with value(name), logged beside the LR)
        self.free: tuple[str, ...] = tuple(name for name in self.specs if name not in channels.CHANNELS)
        #: the metrics a plateau reads
        self.monitors: tuple[str, ...] = monitors_of(self.specs.values())
        for name in constants:
            if name not in CONSTANTS:
                raise ArgumentError(f"{who}: no option {name!r}{did_you_mean(name, CONSTANTS)}",
                                    argument=name)
        self.clock, self.total = clock, total
        self.constants = {name: value for name, value in constants.items() if value is not None}
        try:
            Units(None, total, clock, **self.constants)  # a bad clock or constant fails now
        except LrdslError as error:
            raise type(error)(f"{who}: {error}") from None

    def per_step(self, **extra: float) -> float | None:
        """The clock's positions one optimizer step moves by, where the constants fix it."""
        if self.clock == "ticks":
            return 1.0
        try:
            return Units(None, None, self.clock, **{**self.constants, **extra}).factor("st")
        except LrdslError:
            return None

    def counts_fixed(self) -> bool:
        """Whether the constants say what each step consumes on this clock."""
        return self.per_step() is not None

    def build(self, optimizer, steps: float | None, per_epoch: float | None, settings: str,
              make: Callable | None = None, **extra):
        """The :class:`lrdsl.torch.Scheduler` (or ``make``'s subclass) for a run of ``steps``
        optimizer steps, ``per_epoch`` of them an epoch: ``total`` is ``steps`` in the clock's
        unit where the constants fix a step's size, unless given; errors name the settings."""
        total = self.total
        if total is None and steps is not None:
            size = self.per_step(**extra)
            total = None if size is None else steps if size == 1 else steps * size
            if isinstance(total, float) and total.is_integer():
                total = int(total)  # as the trainer counts: 18, not 18.0, in messages and states
        constants = {**self.constants, **extra}
        try:
            return (make or scheduler)(optimizer, self.source, **self.targets, clock=self.clock,
                                       steps_per_epoch=per_epoch, total=total, **constants)
        except LrdslError as error:
            unit = "optimizer steps" if self.clock == "ticks" else self.clock
            raise type(error)(f"{error} ({self.who}: total={total} {unit}, steps_per_epoch={per_epoch}"
                              f"{''.join(f', {k}={v}' for k, v in constants.items())}; {settings})") from None


def reading(scheduler, who: str):
    """The scheduler a callback runs, or an error saying it runs only during training."""
    if scheduler is None:
        raise LrdslError(f"{who} has no values before training starts: read them from the "
                         f"training step (or after on_train_begin / on_fit_start)")
    return scheduler


def split_count(value: Any, clock: str, who: str) -> dict[str, Any]:
    """What a count function returned, as {"samples": n, "tokens": m}: a number counts the
    clock's unit; a mapping names its counts."""
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in CLOCK_UNITS]
        if unknown or not value:
            raise ArgumentError(f"{who}: count must return a number or a dict with 'samples' and/or "
                                f"'tokens', got {dict(value)!r}", argument="count")
        return dict(value)
    if clock == "ticks":
        raise ArgumentError(f"{who}: on the ticks clock count must return a dict "
                            f"({{'samples': n, 'tokens': m}}), got {value!r}", argument="count")
    if isinstance(value, bool) or value is None:
        raise ArgumentError(f"{who}: count must return what the batch consumed, got {value!r}",
                            argument="count")
    return {clock: value}


def resume(sched, state: Mapping, who: str, settings: str) -> None:
    """``sched.load_state_dict(state)``, refusing a state of other expressions, another run
    length or another clock with an error that names what changed and the settings behind it."""
    if isinstance(state, Mapping):
        now = sched.state_dict()
        keys = ("expr", "targets", "steps_per_epoch", "total", "clock", "constants")
        changed = [f"{key} {state.get(key)!r} -> {now.get(key)!r}" for key in keys
                   if (key in state or key in now) and state.get(key) != now.get(key)
                   and not (key in ("clock", "constants") and not state.get(key) and not now.get(key))]
        if changed:
            raise LrdslError(f"{who} cannot resume this checkpoint, its schedule differs: "
                             f"{'; '.join(changed)}. Resume with the same program and the same "
                             f"run length ({settings})")
    sched.load_state_dict(state)


def finite(value: Any) -> float | None:
    """A positive finite number, or None."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None
