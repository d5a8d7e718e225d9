"""Reduce-on-plateau: the rule (from ``plateau(...)``) and its state, kept apart from time.

The plateau never touches the time schedule f; it holds a scale s that
reports may lower, and the learning rate is ``min(f, max(f·s, min))``.  The
update rules are PyTorch's ``ReduceLROnPlateau`` step for step, so
``const(lr) | plateau(...)`` reproduces its LR sequence.  One difference,
on purpose: PyTorch skips a reduction smaller than ``eps=1e-8`` in absolute
LR; the scale here is independent of the LR, so no such floor applies.

Two v3 options bring in the other libraries' rules: ``atol=`` (optax's
``contrib.reduce_on_plateau``: an improvement must also beat best by atol) and
``best=running`` (scikit-learn's adaptive rate: best is the lowest value so far, moved
by every report below it).  At their defaults the rule is PyTorch's, bit for bit.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Mapping

from lrdsl.language import floats
from lrdsl.errors import MetricError


def reports_in_force(t, every: float, reports: int, xp=floats):
    """How many reports act on tick ``t``: report i acts from tick (i+1)·every on."""
    return xp.minimum(xp.floor(t / every), reports)


def _is_bool_array(value) -> bool:
    """A numpy, torch or JAX boolean (its dtype says bool)."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and "bool" in str(dtype)


@dataclass(frozen=True)
class PlateauRule:
    monitor: str
    factor: float = 0.1
    patience: int = 10
    mode: str = "min"
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min: float = 0.0
    #: (v3) the absolute margin an improvement needs on top of the threshold (optax's atol)
    atol: float = 0.0
    #: (v3) "improvement": best moves only on an improvement (PyTorch); "running": best is the
    #: lowest (max: highest) value reported so far (scikit-learn's adaptive rate)
    best: str = "improvement"
    #: a report improves on ``best`` when it beats the bar ``best·bar_scale + bar_shift``: lies
    #: below it in min mode, above it in max mode.  That is PyTorch's rule bit for bit:
    #: best·(1 ∓ threshold) for "rel", best ∓ threshold for "abs" (x·1 and x + 0 are exact),
    #: and optax's (1 − rtol)·best − atol with the atol folded into the shift (∓ atol; x − 0 is
    #: exact, so atol=0 changes no bar).  NaN never improves.  Set once from mode,
    #: threshold_mode and atol: it runs on every report.
    bar_scale: float = field(init=False, repr=False, compare=False)
    bar_shift: float = field(init=False, repr=False, compare=False)
    minimize: bool = field(init=False, repr=False, compare=False)
    #: best="running": every report below (max: above) best moves it, improvement or not
    running: bool = field(init=False, repr=False, compare=False)

    @classmethod
    def from_call(cls, options) -> "PlateauRule":
        a = options.arguments
        mode = a["mode"]
        if mode == "auto":
            lowered = a["monitor"].lower()
            mode = "max" if ("acc" in lowered or "auc" in lowered) else "min"
        return cls(a["monitor"], a["factor"], int(a["patience"]), mode, a["threshold"],
                   a["threshold_mode"], int(a["cooldown"]), a["min"], a["atol"], a["best"])

    def __post_init__(self):
        object.__setattr__(self, "minimize", self.mode == "min")
        sign = -1.0 if self.minimize else 1.0
        rel = self.threshold_mode == "rel"
        object.__setattr__(self, "bar_scale", 1.0 + sign * self.threshold if rel else 1.0)
        object.__setattr__(self, "bar_shift", (0.0 if rel else sign * self.threshold) + sign * self.atol)
        object.__setattr__(self, "running", self.best == "running")

    def monitored(self, mapping: Mapping, what: str = "the report"):
        """``mapping[monitor]``, or a :class:`MetricError` naming what the mapping holds."""
        if self.monitor not in mapping:
            present = ", ".join(sorted(map(str, mapping))) or "nothing"
            raise MetricError(f"plateau monitors '{self.monitor}', but {what} holds only: {present}")
        return mapping[self.monitor]

    def value_in(self, metrics) -> float:
        """The monitored value of one report (a number, or a mapping holding the monitor)."""
        if type(metrics) is float:
            return metrics
        if isinstance(metrics, Mapping):
            metrics = self.monitored(metrics)
        # float() would take "0.3" and True: a string or a flag reported is a bug, not a loss
        if not (isinstance(metrics, (str, bytes, bool)) or _is_bool_array(metrics)):
            try:
                return float(metrics)
            except (TypeError, ValueError, RuntimeError, OverflowError):
                pass
        raise MetricError(f"plateau: the value reported for '{self.monitor}' is not a number: "
                          f"{metrics!r}")

    def apply(self, f, scale, xp=floats):
        """LR = min(f, max(f·s, min)): lowers the schedule down to ``min``, never lifts it."""
        return xp.minimum(f, xp.maximum(f * scale, self.min))

    def scales(self, values) -> list[float]:
        """Scale after 0, 1, …, len(values) reports of the monitored values."""
        state = PlateauState(self)
        out = [state.scale]
        for value in values:
            state.report(value)
            out.append(state.scale)
        return out


class PlateauState:
    """Mutable plateau state: scale, best, bad-report count, cooldown counter.

    ``bar`` is what the next report must beat to improve, kept from ``best`` (see PlateauRule).
    """

    def __new__(cls, rule: PlateauRule | None = None):  # None: copy and pickle make it bare
        """A :class:`RunningPlateauState` for ``best=running``: PyTorch's rule keeps its body
        as it was, with no test of the option on every report."""
        if cls is PlateauState and rule is not None and rule.running:
            cls = RunningPlateauState
        return super().__new__(cls)

    def __init__(self, rule: PlateauRule):
        self.rule = rule
        self.scale = 1.0
        self._set_best(math.inf if rule.minimize else -math.inf)
        self.bad = 0
        self.cooldown_left = 0

    def _set_best(self, best: float) -> None:
        self.best = best
        self.bar = best * self.rule.bar_scale + self.rule.bar_shift

    def report(self, metrics) -> float:
        """Take one report (number or mapping); return the new scale."""
        return self.report_value(self.rule.value_in(metrics))

    def report_value(self, value: float) -> float:
        """Take one report of the monitored value; return the new scale.

        This runs on every ``step(metric)`` of ``lrdsl.torch``, hence the plain branches
        (``best=running`` is :class:`RunningPlateauState`, built by ``PlateauState(rule)``);
        :func:`lrdsl.runtime.plateau_step` is the same rule for array backends (optax), held
        equal to this one by tests/test_runtime.py and tests/test_optax.py.
        """
        rule = self.rule
        if value < self.bar if rule.minimize else value > self.bar:  # improves (NaN never does)
            self._set_best(value)
            bad = 0
        else:
            bad = self.bad + 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            bad = 0  # bad reports during cooldown do not count
        if bad > rule.patience:
            self.scale *= rule.factor
            self.cooldown_left = rule.cooldown
            bad = 0
        self.bad = bad
        return self.scale

    def lr(self, f: float) -> float:
        """The plateau applied to the time schedule's value ``f``."""
        return self.rule.apply(f, self.scale)

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad,
                "cooldown_left": self.cooldown_left}

    @staticmethod
    def checked(state, what: str = "plateau state") -> dict:
        """A saved state's fields, checked (a scale in [0, 1], a best that is not NaN, counts that
        are integers ≥ 0), so that a corrupt state is refused before anything changes."""
        if not isinstance(state, Mapping):
            raise MetricError(f"{what} is not a plateau state: {state!r}")
        missing = [key for key in ("scale", "best", "bad", "cooldown_left") if key not in state]
        if missing:
            raise MetricError(f"{what} is not a plateau state: it lacks {', '.join(missing)}")
        fields = {}
        for key in ("scale", "best"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
                raise MetricError(f"{what}: {key} must be a number, got {value!r}")
            fields[key] = float(value)
        if not 0 <= fields["scale"] <= 1:  # 1 times factors in (0, 1)
            raise MetricError(f"{what}: scale must be in [0, 1], got {state['scale']!r}")
        for key in ("bad", "cooldown_left"):
            value = state[key]
            number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) \
                else math.nan
            if not (math.isfinite(number) and number.is_integer() and number >= 0):
                raise MetricError(f"{what}: {key} must be an integer ≥ 0, got {value!r}")
            fields[key] = int(number)
        return fields

    def load_checked(self, fields: Mapping) -> None:
        """Take the fields :meth:`checked` returned."""
        self.scale = fields["scale"]
        self._set_best(fields["best"])
        self.bad = fields["bad"]
        self.cooldown_left = fields["cooldown_left"]

    def load_state_dict(self, state: Mapping) -> None:
        self.load_checked(self.checked(state))


class RunningPlateauState(PlateauState):
    """``best=running``: the report as with ``best=improvement`` (the bar from the best before
    it, the bad count, cooldown, cuts), then best ← the lower (max: higher) of the best before
    it and the value: the lowest value so far, whether or not the report improved (an
    improvement above best, under a relative bar over a negative best, leaves it; NaN too)."""

    def report_value(self, value: float) -> float:
        best = self.best
        scale = _report_value(self, value)
        if value < best if self.rule.minimize else value > best:  # NaN never is
            best = value
        self._set_best(best)
        return scale


_report_value = PlateauState.report_value
