"""Durations and their conversion to ticks.

A bare number counts ticks (one tick = one ``step()`` of the compiled
scheduler).  ``ep`` and ``st`` are converted with ``steps_per_epoch``; ``%`` is
a share of ``total``.  Without ``steps_per_epoch`` an expression may use
``ep`` *or* ``st`` — the tick is then that unit — but not both, and not ``ep``
beside bare tick counts written in the expression (defaults do not count): a
unit is never reinterpreted silently.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any

from lrdsl.errors import ArgumentError, LrdslError, UnitError

#: spelling in the text -> canonical unit
UNIT_SPELLINGS = {"": "", "ep": "ep", "epoch": "ep", "epochs": "ep",
                  "st": "st", "step": "st", "steps": "st", "%": "%"}


def format_number(x: float) -> str:
    """The shortest text that reads back as ``x``: ``100``, ``0.1``, ``1e-5``."""
    x = float(x)
    if not math.isfinite(x):
        return repr(x)  # 'inf', 'nan': never canonical, but an error message may show one
    text = repr(x)
    mantissa, _, exponent = text.partition("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    text = f"{mantissa}e{int(exponent)}" if exponent else mantissa
    if x == int(x) and len(str(int(x))) <= len(text):
        return str(int(x))
    return text


@dataclass(frozen=True)
class Duration:
    """A length of time as written: ``value`` in ``unit`` ('' ticks, 'ep', 'st', '%')."""

    value: float
    unit: str = ""

    def __str__(self) -> str:
        return format_number(self.value) + self.unit


@dataclass(frozen=True)
class Units:
    """How durations become ticks for one compilation.

    ``steps_per_epoch`` and ``total`` come from the caller; ``uses`` is the set
    of units the expression writes, so a missing option is named precisely.
    """

    steps_per_epoch: float | None = None
    total: float | None = None

    def __post_init__(self):
        for name in ("steps_per_epoch", "total"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not (  # True is no step count
                    isinstance(value, (int, float)) and math.isfinite(value) and value > 0)):
                raise UnitError(f"{name} must be a positive number, got {value!r}")

    def check(self, written) -> None:
        """Raise :class:`UnitError` if the written durations cannot all be converted.

        ``written`` holds (where, argument, duration) for each duration the expression
        writes, ``where`` being the call (or slice) it belongs to.
        """
        first: dict[str, tuple[str, str, Duration]] = {}
        for item in written:
            first.setdefault(item[2].unit, item)

        def at(unit):
            where, argument, duration = first[unit]
            return f"{where}, argument '{argument}' ({duration})"
        if "%" in first and self.total is None:
            raise UnitError(f"{at('%')} is a share of the run: pass total= (the run's length in ticks)")
        if self.steps_per_epoch is None and "ep" in first:
            if "st" in first:
                raise UnitError(f"{at('ep')} counts epochs and {at('st')} steps: pass "
                                f"steps_per_epoch= to convert between them")
            if "" in first:
                raise UnitError(f"{at('ep')} counts epochs and {at('')} bare ticks: pass "
                                f"steps_per_epoch= (steps_per_epoch=1 if you step once per epoch)")

    def ticks(self, duration: Duration | None) -> float:
        """The duration in ticks (``inf`` for None, which means unbounded)."""
        if duration is None:
            return math.inf
        ticks = duration.value
        if duration.unit == "%":
            if self.total is None:
                raise UnitError(f"{duration} needs total= (the run's length in ticks)")
            ticks = duration.value * self.total / 100.0
        elif duration.unit == "ep" and self.steps_per_epoch is not None:
            ticks = duration.value * self.steps_per_epoch
        if not math.isfinite(ticks):
            raise UnitError(f"{duration} is {ticks} ticks: too long to count")
        if ticks == 0 and duration.value != 0:
            raise UnitError(f"{duration} rounds to 0 ticks: steps_per_epoch or total is too small")
        return ticks


def checked_tick(value: Any, what: str, lowest: int = 0) -> int:
    """A tick given in Python: an integer (an integral float will do) from ``lowest`` to 2**53,
    where float64, in which plans are evaluated, still counts every tick."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LrdslError(f"{what} must be an integer tick, got {value!r}")
    if isinstance(value, numbers.Integral):
        tick = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        tick = int(float(value))
    else:
        raise LrdslError(f"{what} must be an integer tick, got {value!r}")
    if not lowest <= tick <= 2 ** 53:
        raise LrdslError(f"{what} must be an integer from {lowest} to 2**53, got {value!r}")
    return tick


def parse_duration(text: str) -> Duration:
    """``"5ep"``, ``"10%"``, ``"2 epochs"``, ``"30"`` -> :class:`Duration` (for ``expr["5ep":]``)."""
    match = re.fullmatch(r"\s*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)\s*"
                         r"(epochs?|ep|steps?|st|%)?\s*", text)
    if match is None:
        raise ArgumentError(f"not a duration: {text!r} (write 5ep, 500st, 10% or a tick count)")
    return Duration(float(match.group(1)), UNIT_SPELLINGS[match.group(4) or ""])
