"""What lrdsl.lightning and lrdsl.hf share; imports no framework beyond lrdsl.torch's types."""

from __future__ import annotations

from typing import Iterable, Mapping

from lrdsl.channels import CONFIG_KEYS
from lrdsl.errors import LrdslError
from lrdsl.language.nodes import Plateau
from lrdsl.language.parser import parse
from lrdsl.language.plateau import PlateauRule


def gather_specs(expr, momentum=None, beta2=None, weight_decay=None) -> dict:
    """The callbacks' expressions by target (``expr`` is the LR), the unscheduled ones left out."""
    specs = dict(zip(CONFIG_KEYS, (expr, momentum, beta2, weight_decay)))  # "expr": the LR
    return {key: spec for key, spec in specs.items() if spec is not None}


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


def resume(sched, state: Mapping, who: str, settings: str) -> None:
    """``sched.load_state_dict(state)``, refusing a state of other expressions or another run
    length with an error that names what changed and the trainer settings behind it."""
    if isinstance(state, Mapping):
        now = sched.state_dict()
        changed = [f"{key} {state[key]!r} -> {now[key]!r}"
                   for key in ("expr", "targets", "steps_per_epoch", "total")
                   if key in state and state[key] != now[key]]
        if changed:
            raise LrdslError(f"{who} cannot resume this checkpoint, its schedule differs: "
                             f"{'; '.join(changed)}. Resume with the same expressions and the same "
                             f"run length ({settings})")
    sched.load_state_dict(state)
