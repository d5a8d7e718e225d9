"""Keras 3 backend: graph-side schedules and one callback for any expression.

    sched = lrdsl.keras.schedule("warmup(5ep) >> cosine(0.1, 95ep)", steps_per_epoch=steps)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=sched), ...)

    model.fit(..., callbacks=[lrdsl.keras.callback("warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)")])

    cb = lrdsl.keras.callback("lr = 1e-3\nkl = linear(0, 1, 10ep)", steps_per_epoch=steps)
    ...  # in the model's train step or a layer: loss = recon + ops.add(cb.variable("kl"), 0.0) * kl

A :class:`Schedule` evaluates the same plan as :func:`lrdsl.curve` with ``keras.ops`` from
the optimizer's iteration counter: no Python per step, fine inside ``tf.function`` and
``jit_compile=True``, on the tensorflow, torch and jax backends.  It is registered with
Keras, so ``keras.models.load_model`` restores it (plateau state included) once
``lrdsl.keras`` is imported, with no ``custom_objects``.  A program's free values are
variables the compiled step writes and the model reads (docs/language.md "Programs").
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import keras
from keras import ops

from lrdsl import channels
from lrdsl.errors import ArgumentError, LrdslError, UnitError, did_you_mean
from lrdsl.language.nodes import Expr, Plateau
from lrdsl.language.parser import parse
from lrdsl.language.units import CONSTANTS, checked_tick, format_number
from lrdsl.programs import Program, is_program, program
from lrdsl.runtime import Runtime, program_specs

TICKS = ("step", "epoch")

log = logging.getLogger("lrdsl")


def _units(call: str, clock: str, constants: dict) -> dict[str, Any]:
    """The fixed conversion constants of a Keras schedule, on the ticks clock.

    Keras ``fit`` never says what a step consumed, so a samples or tokens clock (whose
    position is what the steps consumed) is refused: ``sp`` and ``tok`` durations convert to
    ticks through the per-step sizes given here instead (docs/language.md "Programs")."""
    if clock != "ticks":
        raise UnitError(f"{call}: clock={clock!r} counts what each step consumed, which Keras fit "
                        f"does not report; use the ticks clock (the default) with fixed "
                        f"samples_per_step= (and tokens_per_sample= or tokens_per_step=): sp and "
                        f"tok durations then convert to ticks through them", argument="clock")
    for name in constants:
        if name not in CONSTANTS:
            raise ArgumentError(f"{call}: unknown argument {name!r}{did_you_mean(name, CONSTANTS)} "
                                f"(the conversion constants are {', '.join(CONSTANTS)})",
                                argument=name)
    return {name: value for name, value in constants.items() if value is not None}


def _check_float32(compiled) -> None:
    """Refuse what float32 cannot hold, before the graph computes inf or 0/0 from it."""
    if compiled.float32_complaint:
        raise LrdslError(f"{compiled.expr}: {compiled.float32_complaint} (Keras computes schedules "
                         f"in float32)")


def _saved_epoch(state) -> int:
    """The epoch of a saved schedule's state: an integer ≥ 0 (a corrupt one is refused before
    the schedule is built, not read as a negative or NaN tick)."""
    if not isinstance(state, dict):
        raise LrdslError(f"not an lrdsl.keras.Schedule state: {state!r}")
    epoch = state.get("epoch", 0)
    number = float(epoch) if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else math.nan
    if not (math.isfinite(number) and number.is_integer() and number >= 0):
        raise LrdslError(f"lrdsl.keras.Schedule state: epoch must be an integer ≥ 0, got {epoch!r}")
    return int(number)


def _target_plan(runtime: Runtime, name: str, text):
    """A target's plan: no plateau, in the target's range (the runtime checks both), float32-safe."""
    compiled = runtime.plan_of(name, text)
    _check_float32(compiled)
    return compiled


def _attribute(optimizer, name: str) -> str:
    """The optimizer's attribute that holds a target: Adam-style beta_1 for momentum, else momentum."""
    attribute = channels.target(name).keras_attribute(optimizer)
    if attribute is None:
        raise LrdslError(f"{type(optimizer).__name__} has no {name} to schedule "
                         f"(looked for {', '.join(channels.target(name).keras)})")
    return attribute


class TargetVariable(keras.Variable):
    """An optimizer hyperparameter that lrdsl writes each step, read inside the compiled step.

    Keras's SGD and RMSprop decide in Python whether momentum is on (``momentum != 0``); a
    comparison with a plain number therefore answers for the value the optimizer was built
    with (``built_value``), while arithmetic and ``ops.cast`` read the variable.
    """

    def __init__(self, value: float, built_value: float, name: str):
        super().__init__(float(value), dtype="float32", trainable=False, name=name)
        self.built_value = float(built_value)

    def _compared(self, other, op, fallback):
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return op(self.built_value, other)
        return fallback(other)

    def __eq__(self, other):
        return self._compared(other, lambda a, b: a == b, super().__eq__)

    def __ne__(self, other):
        return self._compared(other, lambda a, b: a != b, super().__ne__)

    def __gt__(self, other):
        return self._compared(other, lambda a, b: a > b, super().__gt__)

    def __lt__(self, other):
        return self._compared(other, lambda a, b: a < b, super().__lt__)

    __hash__ = keras.Variable.__hash__


def _floats_in_config(optimizer) -> None:
    """Saving the optimizer writes the targets' current values as floats, not variables.

    The optimizer's own get_config would put the :class:`TargetVariable` in the config, which
    does not serialize: the instance gets a get_config that writes its value (Keras saves
    through the instance's method, as it does for any object's own get_config)."""
    if getattr(optimizer.get_config, "lrdsl_floats", False):
        return
    plain = type(optimizer).get_config

    def get_config():
        config = plain(optimizer)
        return {k: float(ops.convert_to_numpy(v)) if isinstance(v, TargetVariable) else v
                for k, v in config.items()}
    get_config.lrdsl_floats = True  # type: ignore[attr-defined]
    optimizer.get_config = get_config


def _given_learning_rate(optimizer):
    """What the optimizer holds as its learning rate: a variable, or the schedule object itself.

    Keras's public ``learning_rate`` evaluates a schedule at the current step; the object is
    only on the private ``_learning_rate`` (where Keras's own get_config reads it).  lrdsl needs
    it to pick up a schedule restored by ``load_model``, plateau state included.  Guarded: a
    Keras without it is a clear error, not a schedule silently started over.
    """
    try:
        return optimizer._learning_rate
    except AttributeError:
        raise LrdslError(f"lrdsl needs the _learning_rate attribute of keras.optimizers.Optimizer "
                         f"(the learning rate or schedule it was given), which this Keras version "
                         f"({keras.__version__}) lacks; lrdsl.keras supports the Keras 3 releases "
                         f"that hold it") from None


def _set_learning_rate(optimizer, schedule: "Schedule") -> None:
    """``optimizer.learning_rate = schedule`` (Keras's public setter), checked to have taken."""
    optimizer.learning_rate = schedule
    if _given_learning_rate(optimizer) is not schedule:
        raise LrdslError(f"lrdsl set the learning_rate of {type(optimizer).__name__} to its schedule, "
                         f"but the optimizer does not hold it (its _learning_rate is "
                         f"{_given_learning_rate(optimizer)!r}); this Keras version "
                         f"({keras.__version__}) keeps schedules elsewhere")


def _put_untracked(optimizer, attribute: str, variable: "TargetVariable") -> None:
    """Put ``variable`` in the optimizer's ``attribute`` without Keras tracking it.

    Not through the optimizer's __setattr__, which would track it as one of its own variables:
    a saved optimizer would then hold one more than a fresh one, and load_model would skip
    restoring its state (the iteration count included) without a word.  Keras has no public
    way to hold an untracked variable, so object.__setattr__ it is, guarded: the attribute
    must then read back as the variable, and the optimizer's variables must not have grown.
    """
    before = len(optimizer.variables)
    try:
        object.__setattr__(optimizer, attribute, variable)
    except AttributeError as error:
        raise LrdslError(f"lrdsl needs to set {attribute} of {type(optimizer).__name__} to a variable "
                         f"it writes each step, which this Keras version ({keras.__version__}) "
                         f"refuses ({error})") from None
    if getattr(optimizer, attribute, None) is not variable or len(optimizer.variables) != before:
        raise LrdslError(f"lrdsl needs {attribute} of {type(optimizer).__name__} to be a plain "
                         f"attribute that the update step reads, which it is not in this Keras "
                         f"version ({keras.__version__}): scheduling it would have no effect")


def _after_each_update(optimizer, schedule: "Schedule") -> bool:
    """Have ``optimizer.apply`` call ``schedule.after_update(optimizer.iterations)`` once its
    update is done, inside the compiled train step.

    Free values are read by the model's loss or layers, before the optimizer runs: the LR
    schedule, which the optimizer calls during its update (and anyone reading
    ``optimizer.learning_rate`` calls between steps), is too late and too often to write
    them.  So ``apply`` (which ``apply_gradients`` and Keras's train steps call) is wrapped on
    the instance, once, and writes the values of the next step's tick after the iteration
    counter moves; a later callback on the same optimizer only swaps the schedule it calls.
    Set with object.__setattr__, untracked, as :func:`_put_untracked` does.  Returns whether
    anything changed (a step traced before then must be traced again)."""
    box = optimizer.__dict__.get("_lrdsl_after_update")
    if box is not None:
        changed = box[0] is not schedule
        box[0] = schedule
        return changed
    box = [schedule]
    plain = optimizer.apply

    def apply(grads, trainable_variables=None):
        result = plain(grads, trainable_variables)
        box[0].after_update(optimizer.iterations)
        return result
    object.__setattr__(optimizer, "apply", apply)
    object.__setattr__(optimizer, "_lrdsl_after_update", box)
    if getattr(optimizer, "apply", None) is not apply:
        raise LrdslError(f"lrdsl needs to wrap apply of {type(optimizer).__name__} to write the free "
                         f"values after each update, which this Keras version ({keras.__version__}) "
                         f"does not allow")
    return True


@keras.saving.register_keras_serializable(package="lrdsl")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The LR of an lrdsl expression, evaluated in the graph.

    ``tick="step"``: the tick is the optimizer's iteration counter.  ``tick="epoch"``: the
    tick is an epoch number held in a variable that :class:`Callback` sets at each epoch
    start.  A ``| plateau`` is applied as min(f, max(f·s, min)) with the scale s held in a
    variable; :meth:`report` updates it from epoch-end logs.
    """

    def __init__(self, expr: str | Expr, steps_per_epoch: float | None = None,
                 total: float | None = None, tick: str = "step", state: dict | None = None,
                 targets: dict | None = None, constants: dict | None = None):
        super().__init__()
        if tick not in TICKS:
            raise LrdslError(f"tick must be one of {', '.join(TICKS)}, got {tick!r}")
        self.expr = parse(expr)
        self.steps_per_epoch, self.total, self.tick = steps_per_epoch, total, tick
        self.constants = _units("lrdsl.keras.Schedule", "ticks", dict(constants or {}))
        #: the plans, the plateau state and its reports, and for tick="epoch" the position (the
        #: epoch; the graph reads it from a variable).  For tick="step" the position is the
        #: optimizer's iteration counter, in the graph.
        self.runtime = Runtime({"lr": self.expr, **(targets or {})}, steps_per_epoch=steps_per_epoch,
                               total=total, tick=0, **self.constants)
        self.plan = self.runtime.plan_of("lr", self.expr)
        _check_float32(self.plan)
        plans = {name: _target_plan(self.runtime, name, text) for name, text in (targets or {}).items()}
        # and as a program's: no free value named like a misspelt target
        program({"lr": self.expr, **(targets or {})})
        #: target -> its plan (momentum, beta2, weight_decay): values written each step by __call__
        self.targets = {name: p for name, p in plans.items() if name in channels.CHANNELS}
        #: free value -> its plan: values written after each update into the variables the
        #: callback holds (:meth:`after_update`), for the model's next step to read
        self.free = {name: p for name, p in plans.items() if name not in channels.CHANNELS}
        self._driven: dict[str, Any] = {}  # target -> the optimizer's variable it writes
        self._free_variables: dict[str, Any] = {}  # free value -> the variable it writes
        self.plateau = self.runtime.plateau_of(self.plan)
        if state:  # checked and taken by the runtime, as a torch scheduler's state is
            self.runtime.load(self.runtime.checked(self._runtime_state(state)))
        self._scale = keras.Variable(self.plateau.scale if self.plateau else 1.0, dtype="float32",
                                     trainable=False, name="lrdsl_plateau_scale")
        self._epoch = keras.Variable(float(self.epoch), dtype="float32", trainable=False,
                                     name="lrdsl_epoch")

    @property
    def epoch(self) -> int:
        """The epoch in force: the runtime's tick (the schedule's tick when ``tick="epoch"``)."""
        return self.runtime.tick

    def _runtime_state(self, state) -> dict[str, Any]:
        """The saved form get_config has always written (``{"epoch", "plateau"}``, beside the
        expressions) as the runtime's state."""
        epoch = _saved_epoch(state)
        plateau = state.get("plateau") if self.plateau is not None else None
        return {**self.runtime.state_dict(), "last_epoch": epoch, "_step_count": epoch,
                "plateau": {str(self.plan.expr): plateau} if plateau else None}

    def state_dict(self) -> dict[str, Any]:
        """The runtime's state: expressions, units, the epoch as its tick, the plateau's state."""
        return self.runtime.state_dict()

    def load(self, loaded) -> None:
        """Take a state checked by ``self.runtime.checked``: the epoch and the plateau state."""
        self.runtime.load(loaded)
        self._epoch.assign(float(self.epoch))
        if self.plateau is not None:
            self._scale.assign(self.plateau.scale)

    def __call__(self, step):
        step = ops.convert_to_tensor(step)
        t = ops.cast(step, "float32") if self.tick == "step" else self._read(self._epoch, "epoch", step)
        t = ops.maximum(t, 0.0)  # a negative tick counts as 0, as on torch and optax
        # the optimizer asks for the LR before its update step: the targets of the same tick are
        # written here, inside the compiled step, so the update reads them (no retrace, no lag)
        for name, variable in self._driven.items():
            variable.assign(self.targets[name].values(t, ops))
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

    def drive(self, optimizer, free_variables: dict | None = None) -> bool:
        """Put a variable in each target's place on ``optimizer`` for :meth:`__call__` to write,
        and have each free value written into its variable after every update.  Returns
        whether the compiled step must be traced again to do so (something new was put in
        place, or other variables are written)."""
        changed = False  # a schedule already in place writes the targets' variables it traced
        self._driven = {}
        if (self.targets or self.free) and keras.backend.backend() == "jax":
            # a jitted JAX step is stateless: a variable written inside it is not carried out
            raise LrdslError(f"scheduling {', '.join([*self.targets, *self.free])} needs the "
                             f"tensorflow or torch Keras backend; on JAX use lrdsl.optax for the "
                             f"whole optimizer")
        new = dict(free_variables or {})
        changed |= [id(v) for v in self._free_variables.values()] != [id(v) for v in new.values()]
        self._free_variables = new
        if self.free or "_lrdsl_after_update" in optimizer.__dict__:
            changed |= _after_each_update(optimizer, self)
        for name, compiled in self.targets.items():
            attribute = _attribute(optimizer, name)
            current = getattr(optimizer, attribute)
            if isinstance(current, TargetVariable):
                built = current.built_value
            else:
                built = float(current) if current is not None else 0.0
                if name == "momentum" and attribute == "momentum" and built == 0:
                    raise LrdslError(f"{type(optimizer).__name__}(momentum=0) has no momentum slots "
                                     f"(Keras creates them only for a nonzero momentum): build it "
                                     f"with the momentum the schedule starts at")
                current = TargetVariable(compiled.value_at(0), built, name=f"lrdsl_{name}")
                _put_untracked(optimizer, attribute, current)
                changed = True
            self._driven[name] = current
        if self.targets:
            _floats_in_config(optimizer)
        return changed

    def target_at(self, name: str, tick: float) -> float:
        """A target's or a free value's value at ``tick``, in Python floats (an integer channel
        read rounded, halves up)."""
        compiled = self.targets.get(name) or self.free[name]
        return channels.channel(name).read(compiled.value_at(max(tick, 0)))

    def after_update(self, iterations) -> None:
        """Write each free value at the optimizer's new ``iterations`` (the next step's tick)
        into its variable: called inside the compiled step, right after the update, so the
        next step's loss reads it (no retrace: the value is computed in the graph).  On epoch
        ticks the callback sets them at each epoch start instead."""
        if self.tick != "step":
            return
        t = ops.maximum(ops.cast(ops.convert_to_tensor(iterations), "float32"), 0.0)
        for name, variable in self._free_variables.items():
            variable.assign(channels.channel(name).read(self.free[name].values(t, ops)))

    def set_free(self, tick: int) -> None:
        """Set each free value's variable to its value at ``tick``, from Python (outside the
        compiled step: at train begin, and at each epoch start on epoch ticks)."""
        for name, variable in self._free_variables.items():
            variable.assign(self.target_at(name, tick))

    def lr_at(self, tick: float) -> float:
        """The LR at ``tick`` (an integer; a negative one counts as 0) under the current plateau
        state, in Python floats."""
        f = self.plan.value_at(max(checked_tick(tick, "lr_at's tick", lowest=-2 ** 53), 0))
        return f if self.plateau is None else self.plateau.lr(f)

    def set_epoch(self, epoch: int) -> None:
        self.runtime.tick = int(epoch)
        self._epoch.assign(float(epoch))

    def report(self, logs) -> None:
        """One epoch-end report: the plateau reads its monitor from ``logs``."""
        if self.plateau is not None:
            self.runtime.report(logs)
            self._scale.assign(self.plateau.scale)

    def same_as(self, other: "Schedule") -> bool:
        return self.identity() == other.identity()

    def identity(self) -> tuple:
        """What must match for a saved schedule to continue as this one."""
        return (str(self.expr), self.steps_per_epoch, self.total, self.tick,
                tuple(sorted((n, str(p.expr)) for n, p in {**self.targets, **self.free}.items())),
                tuple(sorted(self.constants.items())))

    def get_config(self) -> dict[str, Any]:
        state = {"epoch": self.epoch,
                 "plateau": self.plateau.state_dict() if self.plateau is not None else None}
        config: dict[str, Any] = {
            "expr": str(self.expr), "steps_per_epoch": self.steps_per_epoch, "total": self.total,
            "tick": self.tick, "state": state,
            "targets": {name: str(p.expr) for name, p in {**self.targets, **self.free}.items()}}
        if self.constants:
            config["constants"] = dict(self.constants)
        return config

    def __repr__(self) -> str:
        return f"lrdsl.keras.Schedule({str(self.expr)!r}, tick={self.tick!r})"


def schedule(expr: str | Expr | Program, *, steps_per_epoch: float | None = None,
             total: float | None = None, clock: str = "ticks", **constants: float | None) -> Schedule:
    """A ``LearningRateSchedule`` for a time schedule (no plateau), per optimizer step.

    ``steps_per_epoch`` converts ``ep`` durations; ``total`` (in steps) resolves ``%``;
    ``samples_per_step``, ``tokens_per_sample`` or ``tokens_per_step`` convert ``sp`` and
    ``tok`` durations (the ticks clock only: Keras fit never says what a step consumed).
    An expression with ``| plateau`` needs metrics, which only a callback sees: use
    :func:`callback` for it, as for a program with more channels than ``lr``.
    """
    fixed = _units("lrdsl.keras.schedule", clock, constants)
    if isinstance(expr, Mapping) or (isinstance(expr, str) and is_program(expr)):
        compiled = program(expr)  # type: ignore[arg-type]
        if tuple(compiled) != ("lr",):
            raise LrdslError(f"lrdsl.keras.schedule: the program has {', '.join(compiled)}; a "
                             f"LearningRateSchedule drives only lr: use lrdsl.keras.callback(program) "
                             f"for the other channels")
        expr = compiled["lr"]
    parsed = parse(expr)
    if isinstance(parsed, Plateau):
        raise LrdslError(f"{parsed}: a plateau reacts to validation metrics, which a "
                         f"LearningRateSchedule never sees; use lrdsl.keras.callback(expr) instead",
                         expr=str(parsed))
    return Schedule(parsed, steps_per_epoch=steps_per_epoch, total=total, constants=fixed)


@keras.saving.register_keras_serializable(package="lrdsl")
class Callback(keras.callbacks.Callback):
    """Puts an lrdsl :class:`Schedule` on the model's optimizer and feeds its plateau.

    Per-step ticks when ``steps_per_epoch`` is given (or the expression counts ``st``): the
    schedule runs in the graph from the iteration counter and only the plateau scale is
    touched, at epoch end.  Otherwise a tick is an epoch: the epoch variable is set at each
    epoch start.  ``momentum``, ``beta2`` and ``weight_decay`` expressions drive the
    optimizer's ``momentum`` / ``beta_1``, ``beta_2`` and ``weight_decay`` inside the
    compiled step, at the same tick as the LR.  ``expr`` may be a program
    (:func:`lrdsl.program`, its text, a mapping): its free values (every channel that is no
    optimizer target: ``kl``, ``ema``, ``batch_size``) are non-trainable float32 variables,
    :meth:`variable`, written inside the compiled step right after each update with the next
    step's value, so the model's loss or layers read the value of the step they run in, with
    no retrace (integer channels read rounded, halves up).  Writes ``learning_rate`` (Keras's
    own key), each scheduled target and each free value (unless a metric has its name) into
    the epoch logs (put it before a CSVLogger).  After ``load_model`` the optimizer's saved
    schedule, every channel and the plateau state included, is picked up; with
    ``rebase=True`` a saved schedule of another program continues under this one from its
    tick (the plateau state carries over when the rule is the same).
    """

    def __init__(self, expr: str | Expr | Program, steps_per_epoch: float | None = None,
                 total: float | None = None, momentum: str | Expr | None = None,
                 beta2: str | Expr | None = None, weight_decay: str | Expr | None = None,
                 rebase: bool = False, clock: str = "ticks", **constants: float | None):
        super().__init__()
        self.constants = _units("lrdsl.keras.callback", clock, constants)
        if isinstance(expr, Mapping) and not isinstance(expr, Program):
            expr = program(expr)  # Keras has no param groups: a mapping is a program
        specs = program_specs(expr, {"momentum": momentum, "beta2": beta2, "weight_decay": weight_decay})
        if "lr" not in specs:
            raise LrdslError(f"lrdsl.keras.callback: the program has no lr ({', '.join(specs)}); the "
                             f"Keras callback runs every channel from the optimizer's learning-rate "
                             f"schedule, so give it one: lr = the optimizer's learning rate (e.g. "
                             f"lr = 0.001) for a constant LR")
        self.expr = parse(specs["lr"])  # type: ignore[arg-type]
        self.steps_per_epoch, self.total, self.rebase = steps_per_epoch, total, rebase
        #: every channel but lr, canonical text: the optimizer targets and the free values
        self.targets = {name: str(parse(text)) for name, text in specs.items()  # type: ignore[arg-type]
                        if name != "lr"}
        written = set().union(*(parse(text).units() for text in specs.values()))  # type: ignore[arg-type]
        per_step = steps_per_epoch is not None or bool(written & {"st", "sp", "tok"})
        if per_step and steps_per_epoch is None and "ep" in written:
            raise UnitError(f"lrdsl.keras.callback: the program counts epochs in one place and "
                            f"steps (or samples, tokens) in another: pass steps_per_epoch= to "
                            f"convert between them", argument="steps_per_epoch")
        self.tick = "step" if per_step else "epoch"
        self.schedule = Schedule(self.expr, steps_per_epoch, total, tick=self.tick,
                                 targets=self.targets, constants=self.constants)
        #: free value -> the variable the model reads: float32, not trainable, at tick 0 now
        self._variables = {name: keras.Variable(self.schedule.target_at(name, 0), dtype="float32",
                                                trainable=False, name=f"lrdsl_{name}")
                           for name in self.schedule.free}
        self._in_epoch: int | None = None  # the epoch fit is in, between its begin and end
        #: the steps counted in fit's first epoch, until they are compared with steps_per_epoch
        self._steps_seen: int | None = None
        self._train_logs: dict | None = None
        self._reported: tuple | None = None  # (the epoch's LR before its report, a deferred error)

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        changed = False
        current = _given_learning_rate(optimizer)
        if isinstance(current, Schedule) and current.same_as(self.schedule):
            self.schedule = current  # restored by load_model: keep its plateau state
        elif isinstance(current, Schedule) and current is not self.schedule:
            if not self.rebase:
                raise LrdslError(f"the model was saved with the schedule {current.identity()[0]!r}, "
                                 f"not {str(self.expr)!r}; pass rebase=True to continue it under "
                                 f"the new expression from its tick")
            self._rebase_from(current)
            _set_learning_rate(optimizer, self.schedule)
            changed = True
        elif isinstance(current, keras.optimizers.schedules.LearningRateSchedule) and \
                current is not self.schedule:
            raise LrdslError(f"the optimizer already has a learning-rate schedule ({current!r}); "
                             f"build it with a float learning_rate and let lrdsl.keras.callback "
                             f"set it")
        else:
            _set_learning_rate(optimizer, self.schedule)
            changed = True
        changed |= self.schedule.drive(optimizer, self._variables)
        if changed and getattr(self.model, "train_function", None) is not None:
            # fit made its train function before on_train_begin; one traced by an earlier fit
            # would still run the old learning rate and write no free value: make it anew (a
            # function not yet traced costs nothing; the next step traces it once)
            self.model.make_train_function(force=True)
        if self.tick == "step":  # the first step's values; later ones are written in the step
            self.schedule.set_free(int(ops.convert_to_numpy(optimizer.iterations)))
        # steps_per_epoch turns ep into steps: the first epoch of each fit shows whether it is right
        self._steps_seen = 0 if self.tick == "step" and self.steps_per_epoch is not None else None

    def variable(self, name: str):
        """The variable holding free value ``name``: float32, not trainable, read by the
        model's loss or layers inside the compiled step, in arithmetic (``ops.add(v, 0.0)`` for a
        tensor of the value read then: on TensorFlow ``convert_to_tensor`` of a variable is the
        variable, which a returned log reads after the update).  During a step it holds that
        step's value; between steps, the value of the next one (the tick
        ``optimizer.iterations``; on epoch ticks, the epoch's)."""
        found = self._variables.get(name)
        if found is None:
            what = ("an optimizer target, written into the optimizer (read model.optimizer's "
                    "attribute)" if name in channels.CHANNELS else "not in the program")
            raise LrdslError(f"lrdsl.keras.callback.variable: {name!r} is {what}; the free values "
                             f"are {', '.join(self._variables) or 'none'}", argument="name")
        return found

    def _rebase_from(self, saved: "Schedule") -> None:
        """Continue ``saved``'s run under this callback's schedule, through the runtime (as a
        torch scheduler's ``load_state_dict(rebase=True)``): its epoch, and its plateau state
        when the rule is the same (logged either way)."""
        self.schedule.load(self.schedule.runtime.checked(saved.state_dict(), rebase=True))
        log.info("lrdsl: rebased from %s to %s at epoch %d", saved.expr, self.expr, self.schedule.epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self._steps_seen is not None:  # batch: the last step's index (steps_per_execution runs several)
            self._steps_seen = batch + 1

    def _check_steps_per_epoch(self) -> None:
        """After fit's first epoch: ``steps_per_epoch`` must be the steps fit ran, or every ``ep``
        duration lands on the wrong step (already in that epoch: so an error, not an adjustment)."""
        seen, self._steps_seen = self._steps_seen, None
        steps = self.steps_per_epoch
        if not seen or steps is None or seen == steps:
            return
        given = format_number(float(steps))
        raise UnitError(f"lrdsl.keras.callback: steps_per_epoch={given} but fit ran {seen} steps in "
                        f"its first epoch, so 1ep would last {given} steps, "
                        f"{format_number(round(float(steps) / seen, 3))} of fit's epochs: pass "
                        f"steps_per_epoch={seen} (with validation_split, fit trains on the rest of the "
                        f"data: ceil(len(x) · (1 − validation_split) / batch_size))",
                        argument="steps_per_epoch")

    def on_epoch_begin(self, epoch, logs=None):
        self._in_epoch, self._reported, self._train_logs = epoch, None, None
        if self.tick == "epoch":
            self.schedule.set_epoch(epoch)
            self.schedule.set_free(epoch)

    # The plateau report is made as soon as the epoch's logs are known: at the end of fit's
    # validation pass (on_test_end), before any callback's on_epoch_end.  So a ModelCheckpoint
    # listed before this callback saves the state after this epoch's report, exactly as one
    # listed after it does.  Without validation data, the report waits for on_epoch_end.

    def on_test_begin(self, logs=None):
        if self._in_epoch is not None and self._reported is None:
            # fit's validation pass resets the metrics right after this: keep the training ones
            self._train_logs = {name: float(ops.convert_to_numpy(value))
                                for name, value in self.model.get_metrics_result().items()}

    def on_test_end(self, logs=None):
        if self._in_epoch is None or self._train_logs is None or self._reported:
            return  # an evaluate() outside fit, or a second validation pass
        epoch_logs = dict(self._train_logs)
        epoch_logs.update({f"val_{name}": value for name, value in (logs or {}).items()})
        self._report(self._in_epoch, epoch_logs)

    def _report(self, epoch: int, logs) -> None:
        self._reported = (self.last_lr(epoch), None)  # the LR the epoch ran at: before the report
        try:
            self.schedule.report(logs)
        except LrdslError as error:  # raised at on_epoch_end: callbacks before this one see the epoch
            monitor = self.schedule.plateau.rule.monitor if self.schedule.plateau else ""
            if monitor.startswith("val_") and not any(str(k).startswith("val_") for k in logs or {}):
                error = type(error)(f"{error} (fit ran no validation: pass validation_data or "
                                    f"validation_split to fit(), or monitor a training metric)")
            self._reported = (self._reported[0], error)

    def last_tick(self, epoch: int) -> int:
        """The tick the epoch ended on: the epoch itself, or the last step taken."""
        if self.tick == "epoch":
            return epoch
        return max(int(ops.convert_to_numpy(self.model.optimizer.iterations)) - 1, 0)

    def last_lr(self, epoch: int) -> float:
        """The LR of the epoch's last tick (what ``learning_rate`` in the epoch logs says)."""
        if self._reported and self._in_epoch == epoch:
            return self._reported[0]
        return self.schedule.lr_at(self.last_tick(epoch))

    def on_epoch_end(self, epoch, logs=None):
        self._check_steps_per_epoch()
        logs = logs if logs is not None else {}
        if not self._reported:
            self._report(epoch, logs)
        lr, error = self._reported
        logs["learning_rate"] = lr
        for name in self.schedule.targets:
            logs[name] = self.schedule.target_at(name, self.last_tick(epoch))
        for name in self.schedule.free:  # a metric of the same name keeps its place
            logs.setdefault(name, self.schedule.target_at(name, self.last_tick(epoch)))
        self._in_epoch = None
        if error is not None:
            raise error

    def get_config(self) -> dict[str, Any]:
        """Every channel as one program's text under ``expr`` (the expression's own text when
        only lr is given), the units and ``rebase``: ``Callback(**config)`` is this callback."""
        text = str(program({"lr": self.expr, **self.targets}))
        return {"expr": text, "steps_per_epoch": self.steps_per_epoch, "total": self.total,
                "rebase": self.rebase, **self.constants}


def callback(expr: str | Expr | Program, *, momentum: str | Expr | None = None,
             beta2: str | Expr | None = None, weight_decay: str | Expr | None = None,
             steps_per_epoch: float | None = None, total: float | None = None,
             rebase: bool = False, clock: str = "ticks", **constants: float | None) -> Callback:
    """A callback that runs any expression or program, ``| plateau`` included (on lr), and
    optionally schedules the optimizer's momentum (``beta_1`` on Adam-style optimizers),
    ``beta_2`` and weight decay; a program's free values are variables the model reads
    (:meth:`Callback.variable`).  ``samples_per_step``, ``tokens_per_sample`` or
    ``tokens_per_step`` convert ``sp`` and ``tok`` durations to ticks; the clock is ticks
    only, as Keras fit never says what a step consumed.  See :class:`Callback`."""
    return Callback(expr, steps_per_epoch=steps_per_epoch, total=total, momentum=momentum,
                    beta2=beta2, weight_decay=weight_decay, rebase=rebase, clock=clock, **constants)


def __getattr__(name: str) -> Any:
    """``find_lr``, the LR range test (:mod:`lrdsl.find.keras`), re-exported on first use: it is
    built on :func:`schedule` and imports this module, so importing it here would be a cycle."""
    if name == "find_lr":
        return importlib.import_module("lrdsl.find.keras").find_lr
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
