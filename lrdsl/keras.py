"""Keras 3 backend: graph-side schedules and one callback for any expression.

    sched = lrdsl.keras.schedule("warmup(5ep) >> cosine(0.1, 95ep)", steps_per_epoch=steps)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=sched), ...)

    model.fit(..., callbacks=[lrdsl.keras.callback("warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)")])

A :class:`Schedule` evaluates the same plan as :func:`lrdsl.curve` with ``keras.ops`` from
the optimizer's iteration counter: no Python per step, fine inside ``tf.function`` and
``jit_compile=True``, on the tensorflow, torch and jax backends.  It is registered with
Keras, so ``keras.models.load_model`` restores it (plateau state included) once
``lrdsl.keras`` is imported, with no ``custom_objects``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from lrdsl.errors import LrdslError
from lrdsl.nodes import Expr, Plateau
from lrdsl.parser import parse
from lrdsl.plan import plan
from lrdsl.plateau import PlateauState

TICKS = ("step", "epoch")


FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.401298464324817e-45  # the smallest subnormal


def _check_float32(compiled) -> None:
    """Refuse what float32 cannot hold, before the graph computes inf or 0/0 from it."""
    if compiled.range[1] > FLOAT32_MAX:
        raise LrdslError(f"{compiled.expr}: reaches {compiled.range[1]:.3g}, beyond float32 "
                         f"(Keras computes schedules in float32)")
    for number in compiled.constants():
        if abs(number) > FLOAT32_MAX and number != float("inf") or 0 < abs(number) < FLOAT32_TINY:
            raise LrdslError(f"{compiled.expr}: the number {number:.3g} does not fit float32 "
                             f"(Keras computes schedules in float32)")


@keras.saving.register_keras_serializable(package="lrdsl")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The LR of an lrdsl expression, evaluated in the graph.

    ``tick="step"``: the tick is the optimizer's iteration counter.  ``tick="epoch"``: the
    tick is an epoch number held in a variable that :class:`Callback` sets at each epoch
    start.  A ``| plateau`` is applied as min(f, max(f·s, min)) with the scale s held in a
    variable; :meth:`report` updates it from epoch-end logs.
    """

    def __init__(self, expr: str | Expr, steps_per_epoch: float | None = None,
                 total: float | None = None, tick: str = "step", state: dict | None = None):
        super().__init__()
        if tick not in TICKS:
            raise LrdslError(f"tick must be one of {', '.join(TICKS)}, got {tick!r}")
        self.expr = parse(expr)
        self.steps_per_epoch, self.total, self.tick = steps_per_epoch, total, tick
        self.plan = plan(self.expr, steps_per_epoch=steps_per_epoch, total=total)
        _check_float32(self.plan)
        rule = self.plan.plateau
        self.plateau = PlateauState(rule) if rule is not None else None
        self.epoch = 0
        if state:
            self.epoch = int(state.get("epoch", 0))
            if self.plateau is not None and state.get("plateau"):
                self.plateau.load_state_dict(state["plateau"])
        self._scale = keras.Variable(self.plateau.scale if self.plateau else 1.0, dtype="float32",
                                     trainable=False, name="lrdsl_plateau_scale")
        self._epoch = keras.Variable(float(self.epoch), dtype="float32", trainable=False,
                                     name="lrdsl_epoch")

    def __call__(self, step):
        step = ops.convert_to_tensor(step)
        t = ops.cast(step, "float32") if self.tick == "step" else self._read(self._epoch, "epoch", step)
        f = self.plan.values(t, ops)
        if self.plateau is None:
            return f
        return self.plan.plateau.apply(f, self._read(self._scale, "scale", step), ops)

    def _read(self, variable, name: str, step):
        """The epoch or plateau scale in force when the step runs.

        Keras on JAX hands a jitted train step only the model's and the optimizer's variables;
        any other variable is frozen into the compiled step when it is traced.  These two
        change between steps, and tracking them in the optimizer would change what its saved
        variables are, so a traced step on JAX reads them from the host at run time.
        """
        if keras.backend.backend() != "jax":
            return ops.convert_to_tensor(variable)
        import jax
        import numpy as np
        from jax.experimental import io_callback

        if not isinstance(step, jax.core.Tracer):  # evaluated now, not compiled
            return ops.convert_to_tensor(variable)

        def now():
            return np.float32(self.epoch if name == "epoch" else self.plateau.scale)
        return io_callback(now, jax.ShapeDtypeStruct((), np.float32))

    def lr_at(self, tick: float) -> float:
        """The LR at ``tick`` under the current plateau state, in Python floats."""
        f = self.plan.value_at(tick)
        return f if self.plateau is None else self.plateau.lr(f)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch.assign(float(epoch))

    def report(self, logs) -> None:
        """One epoch-end report: the plateau reads its monitor from ``logs``."""
        if self.plateau is not None:
            self._scale.assign(self.plateau.report(logs))

    def same_as(self, other: "Schedule") -> bool:
        return (str(self.expr), self.steps_per_epoch, self.total, self.tick) == \
               (str(other.expr), other.steps_per_epoch, other.total, other.tick)

    def get_config(self) -> dict[str, Any]:
        state = {"epoch": self.epoch,
                 "plateau": self.plateau.state_dict() if self.plateau is not None else None}
        return {"expr": str(self.expr), "steps_per_epoch": self.steps_per_epoch,
                "total": self.total, "tick": self.tick, "state": state}

    def __repr__(self) -> str:
        return f"lrdsl.keras.Schedule({str(self.expr)!r}, tick={self.tick!r})"


def schedule(expr: str | Expr, *, steps_per_epoch: float | None = None,
             total: float | None = None) -> Schedule:
    """A ``LearningRateSchedule`` for a time schedule (no plateau), per optimizer step.

    ``steps_per_epoch`` converts ``ep`` durations; ``total`` (in steps) resolves ``%``.
    An expression with ``| plateau`` needs metrics, which only a callback sees: use
    :func:`callback` for it.
    """
    parsed = parse(expr)
    if isinstance(parsed, Plateau):
        raise LrdslError(f"{parsed}: a plateau reacts to validation metrics, which a "
                         f"LearningRateSchedule never sees; use lrdsl.keras.callback(expr) instead",
                         expr=str(parsed))
    return Schedule(parsed, steps_per_epoch=steps_per_epoch, total=total)


@keras.saving.register_keras_serializable(package="lrdsl")
class Callback(keras.callbacks.Callback):
    """Puts an lrdsl :class:`Schedule` on the model's optimizer and feeds its plateau.

    Per-step ticks when ``steps_per_epoch`` is given (or the expression counts ``st``): the
    schedule runs in the graph from the iteration counter and only the plateau scale is
    touched, at epoch end.  Otherwise a tick is an epoch: the epoch variable is set at each
    epoch start.  Writes ``lr`` into the epoch logs (put it before a CSVLogger).  After
    ``load_model`` the optimizer's saved schedule, plateau state included, is picked up.
    """

    def __init__(self, expr: str | Expr, steps_per_epoch: float | None = None,
                 total: float | None = None):
        super().__init__()
        self.expr = parse(expr)
        self.steps_per_epoch, self.total = steps_per_epoch, total
        per_step = steps_per_epoch is not None or "st" in self.expr.units()
        self.tick = "step" if per_step else "epoch"
        self.schedule = Schedule(self.expr, steps_per_epoch, total, tick=self.tick)

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        current = optimizer._learning_rate
        if isinstance(current, Schedule) and current.same_as(self.schedule):
            self.schedule = current  # restored by load_model: keep its plateau state
        elif isinstance(current, keras.optimizers.schedules.LearningRateSchedule) and \
                current is not self.schedule:
            raise LrdslError(f"the optimizer already has a learning-rate schedule ({current!r}); "
                             f"build it with a float learning_rate and let lrdsl.keras.callback "
                             f"set it")
        else:
            optimizer.learning_rate = self.schedule

    def on_epoch_begin(self, epoch, logs=None):
        if self.tick == "epoch":
            self.schedule.set_epoch(epoch)

    def last_lr(self, epoch: int) -> float:
        """The LR of the epoch's last tick (what ``lr`` in the epoch logs says)."""
        if self.tick == "epoch":
            return self.schedule.lr_at(epoch)
        return self.schedule.lr_at(max(int(ops.convert_to_numpy(self.model.optimizer.iterations)) - 1, 0))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["lr"] = self.last_lr(epoch)
        self.schedule.report(logs)

    def get_config(self) -> dict[str, Any]:
        return {"expr": str(self.expr), "steps_per_epoch": self.steps_per_epoch, "total": self.total}


def callback(expr: str | Expr, *, steps_per_epoch: float | None = None,
             total: float | None = None) -> Callback:
    """A callback that runs any expression, ``| plateau`` included; see :class:`Callback`."""
    return Callback(expr, steps_per_epoch=steps_per_epoch, total=total)


