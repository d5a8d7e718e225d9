"""Durations and their conversion to the clock's positions (docs/language.md "Clocks").

On the ``ticks`` clock (the default) a bare number counts ticks (one tick = one ``step()``
of the compiled scheduler).  ``ep`` and ``st`` are converted with ``steps_per_epoch``; ``%``
is a share of ``total``.  Without ``steps_per_epoch`` an expression may use ``ep`` *or*
``st`` — the tick is then that unit — but not both, and not ``ep`` beside bare tick counts
written in the expression (defaults do not count): a unit is never reinterpreted silently.
``sp`` and ``tok`` convert through ``samples_per_step`` and ``tokens_per_step``.

On a ``samples`` or ``tokens`` clock (docs/language.md "Clocks") a position counts what training
consumed, every duration converts to that unit through the fixed constants given
(:data:`CONSTANTS`), and a bare number is an error.  A duration's number may carry a scale
suffix ``k``, ``M``, ``B``, ``T`` (×10³ … 10¹²).
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
                  "st": "st", "step": "st", "steps": "st", "%": "%",
                  "sp": "sp", "sample": "sp", "samples": "sp",
                  "tok": "tok", "token": "tok", "tokens": "tok"}
#: a duration's scale suffixes (case-sensitive): 2k, 1.5B tok, 375Mtok
SUFFIXES = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
#: the clocks a schedule's position may count (docs/language.md "Clocks"), and the unit each counts
CLOCKS = {"ticks": "", "samples": "sp", "tokens": "tok"}
#: the fixed conversion constants a compilation may be given, besides steps_per_epoch and total
CONSTANTS = ("samples_per_step", "tokens_per_sample", "samples_per_epoch", "tokens_per_epoch",
             "tokens_per_step")
_UNIT_WORDS = {"": "bare numbers", "ep": "epochs", "st": "steps", "%": "shares of total",
               "sp": "samples", "tok": "tokens"}


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
    """How durations become positions on the clock for one compilation.

    ``steps_per_epoch``, ``total`` (in the clock's unit), the ``clock`` and the fixed
    constants of :data:`CONSTANTS` come from the caller; a constant left out is one the run
    does not fix (the per-step size under a batch-size ramp), and a duration that needs it
    is an error naming the call, the argument and the constant.
    """

    steps_per_epoch: float | None = None
    total: float | None = None
    clock: str = "ticks"
    samples_per_step: float | None = None
    tokens_per_sample: float | None = None
    samples_per_epoch: float | None = None
    tokens_per_epoch: float | None = None
    tokens_per_step: float | None = None

    def __post_init__(self):
        for name in ("steps_per_epoch", "total") + CONSTANTS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not (  # True is no step count
                    isinstance(value, (int, float)) and math.isfinite(value) and value > 0)):
                raise UnitError(f"{name} must be a positive number, got {value!r}")
        if self.clock not in CLOCKS:
            raise UnitError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")

    # --- the constants, given or derived from others ------------------------------------------
    def _tokens_per_step(self) -> float | None:
        if self.tokens_per_step is not None:
            return self.tokens_per_step
        if self.samples_per_step is not None and self.tokens_per_sample is not None:
            return self.samples_per_step * self.tokens_per_sample
        return None

    def _samples_per_epoch(self) -> float | None:
        if self.samples_per_epoch is not None:
            return self.samples_per_epoch
        if self.steps_per_epoch is not None and self.samples_per_step is not None:
            return self.steps_per_epoch * self.samples_per_step
        if self.tokens_per_epoch is not None and self.tokens_per_sample is not None:
            return self.tokens_per_epoch / self.tokens_per_sample
        return None

    def _tokens_per_epoch(self) -> float | None:
        if self.tokens_per_epoch is not None:
            return self.tokens_per_epoch
        per_step = self._tokens_per_step()
        if self.steps_per_epoch is not None and per_step is not None:
            return self.steps_per_epoch * per_step
        samples = self._samples_per_epoch()
        if samples is not None and self.tokens_per_sample is not None:
            return samples * self.tokens_per_sample
        return None

    def factor(self, unit: str) -> float:
        """Positions per ``unit`` on this clock; a :class:`UnitError` naming the constant that
        is missing (callers prefix the call and argument)."""
        if unit == "%":
            if self.total is None:
                raise UnitError(f"is a share of the run: pass total= (the run's length in "
                                f"{self.clock})")
            return self.total / 100.0
        if unit == CLOCKS[self.clock]:
            return 1.0
        if unit == "":
            raise UnitError(f"is a bare number on a {self.clock} clock: write its unit "
                            f"(2000st, 2k tok, 1ep); a unit is never guessed")
        per_step = "tokens_per_step (or samples_per_step and tokens_per_sample)"
        tokens = self.tokens_per_sample
        if self.clock == "ticks":
            sp, tok = self.samples_per_step, self._tokens_per_step()
            found = {"st": (1.0, ""),
                     "ep": (self.steps_per_epoch or 1.0, ""),  # ep alone: the tick is an epoch
                     "sp": (None if sp is None else 1.0 / sp, "samples_per_step"),
                     "tok": (None if tok is None else 1.0 / tok, per_step)}[unit]
        elif self.clock == "samples":
            found = {"tok": (None if tokens is None else 1.0 / tokens, "tokens_per_sample"),
                     "st": (self.samples_per_step, "samples_per_step"),
                     "ep": (self._samples_per_epoch(), "samples_per_epoch (or steps_per_epoch "
                                                       "and samples_per_step)")}[unit]
        else:
            found = {"sp": (tokens, "tokens_per_sample"),
                     "st": (self._tokens_per_step(), per_step),
                     "ep": (self._tokens_per_epoch(), "tokens_per_epoch (or samples_per_epoch "
                                                      "and tokens_per_sample)")}[unit]
        if found[0] is None:
            ramp = "" if unit != "st" or self.clock == "ticks" else (
                " (under a batch-size ramp the per-step size is not fixed: write the duration "
                f"in {self.clock})")
            raise UnitError(f"counts {_UNIT_WORDS[unit]} on a {self.clock} clock: pass "
                            f"{found[1]}, fixed for the run{ramp}")
        return found[0]

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
        if self.clock == "ticks" and self.steps_per_epoch is None and "ep" in first:
            for unit in ("st", "sp", "tok"):  # a step's samples or tokens make the tick a step
                if unit in first:
                    raise UnitError(f"{at('ep')} counts epochs and {at(unit)} {_UNIT_WORDS[unit]}: "
                                    f"pass steps_per_epoch= to convert between them")
            if "" in first:
                raise UnitError(f"{at('ep')} counts epochs and {at('')} bare ticks: pass "
                                f"steps_per_epoch= (steps_per_epoch=1 if you step once per epoch)")
        for unit in first:
            try:
                self.factor(unit)
            except UnitError as error:
                raise UnitError(f"{at(unit)} {error}") from None

    def ticks(self, duration: Duration | None) -> float:
        """The duration in the clock's positions (ticks on the ticks clock; ``inf`` for None,
        which means unbounded)."""
        if duration is None:
            return math.inf
        try:  # a bare number here is a default (every=1): written ones were checked (check)
            ticks = duration.value * (self.factor(duration.unit) if duration.unit else 1.0)
        except UnitError as error:
            raise UnitError(f"{duration} {error}") from None
        if not math.isfinite(ticks):
            raise UnitError(f"{duration} is {ticks} {self.clock}: too long to count")
        if ticks == 0 and duration.value != 0:
            raise UnitError(f"{duration} rounds to 0 {self.clock}: a conversion constant is too small")
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


_DURATION = re.compile(r"\s*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)([kMBT]?)\s*"
                       r"(epochs?|ep|steps?|st|samples?|sp|tokens?|tok|%)?\s*")


def parse_duration(text: str) -> Duration:
    """``"5ep"``, ``"10%"``, ``"2 epochs"``, ``"1.5B tok"``, ``"30"`` -> :class:`Duration`
    (for ``expr["5ep":]`` and the parser's duration tokens)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ArgumentError(f"not a duration: {text!r} (write 5ep, 500st, 2k tok, 10% or a tick count)")
    value = float(match.group(1)) * SUFFIXES.get(match.group(4), 1.0)
    return Duration(value, UNIT_SPELLINGS[match.group(5) or ""])
