"""Hugging Face ``transformers.Trainer``: a callback that makes the Trainer follow an expression.

    trainer = transformers.Trainer(model, args, train_dataset=..., eval_dataset=..., callbacks=[
        lrdsl.hf.Schedule("warmup(5%) >> cosine(3e-4, 95%) | plateau(eval_loss, 0.5)")])
    trainer.train()                      # whatever args.lr_scheduler_type says

The tick is the optimizer step (``state.global_step``): tick k's values are in force during
optimizer step k (0-based), and the ``learning_rate`` the Trainer logs at step k+1 (it reads it
before the scheduler steps) is ``lrdsl.curve(expr, n, steps_per_epoch=E, total=T)[k]`` with

- ``T = state.max_steps``, the run's optimizer steps (``max_steps``, or ``num_train_epochs``
  times E), for ``%``;
- ``E = ceil(len(train_dataloader) / gradient_accumulation_steps)``, the Trainer's own count of
  update steps per epoch, for ``ep``.

How: the Trainer creates its scheduler (``create_scheduler``, from ``lr_scheduler_type``) and,
on resume, loads ``scheduler.pt`` into it before any callback runs.  At ``on_train_begin`` this
callback builds a :class:`lrdsl.torch.Scheduler` on the Trainer's optimizer and takes the
Trainer's scheduler object over: its ``step`` does nothing, its ``get_last_lr`` (what the
Trainer logs as ``learning_rate``) and ``state_dict`` are lrdsl's.  The lrdsl scheduler steps
in ``on_step_end``, once per optimizer step (so gradient accumulation counts optimizer steps).
A plateau's monitor is looked up in each evaluation's metrics under its own name or with HF's
``eval_`` prefix and reported at once (an ``eval_on_start`` evaluation is not a report).

State: ``scheduler.pt`` holds lrdsl's state (the canonical expressions, the tick, the plateau
state) beside an empty ``lr_lambdas``, so the Trainer's own ``load_state_dict`` on a fresh
``LambdaLR`` (or ``ReduceLROnPlateau``, or any torch scheduler) keeps it as an attribute, where
``on_train_begin`` picks it up: ``train(resume_from_checkpoint=...)`` with the Trainer's default
settings continues with exactly the uninterrupted LR sequence.

Programs: ``expr`` may be a program; its free values are read with ``value(name)`` /
``values()`` and put in the Trainer's training logs beside ``learning_rate`` (in ``on_log``, with
the values of the same optimizer step).  Clocks: a ``tokens`` clock steps by the growth of
``state.num_input_tokens_seen`` (gathered over the processes by the Trainer; it needs
``include_num_input_tokens_seen``), a ``samples`` clock by the global batch of one optimizer
step; the state in ``scheduler.pt`` holds the counters.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping

from transformers import TrainerCallback

from lrdsl._trainers import Source, reading, resume
from lrdsl.errors import LrdslError, MetricError
from lrdsl.programs import Program
from lrdsl.torch import Scheduler, Spec

__all__ = ["Schedule", "STATE_KEY"]

log = logging.getLogger("lrdsl")

#: the key of lrdsl's state in ``scheduler.pt`` and, after a load, on the Trainer's scheduler
STATE_KEY = "lrdsl_schedule"

_WHO = "lrdsl.hf.Schedule"
_SETTINGS = "num_train_epochs/max_steps, gradient_accumulation_steps, the batch size"


def _no_step(*args: Any, **kwargs: Any) -> None:
    """The Trainer's scheduler steps no more: lrdsl's scheduler owns the LR."""


class Schedule(TrainerCallback):
    """A ``transformers.TrainerCallback`` driving the Trainer's optimizer by an lrdsl program
    or expression.

    Args:
        expr: a program (:func:`lrdsl.program`, its text with ``name = …`` lines) or the LR:
            expression text, :class:`lrdsl.Expr`, or a mapping from param-group index to an
            expression (``"*"`` for the rest), as in :func:`lrdsl.torch.scheduler`.
        momentum, beta2, weight_decay: optional expressions for those hyperparameters (AdamW's
            ``betas[0]``, ``betas[1]``, ``weight_decay``), as in :func:`lrdsl.torch.scheduler`.
            The Trainer puts biases and norms in a group with weight decay 0, which stays 0
            (groups keep their ratios) as long as ``TrainingArguments.weight_decay`` is nonzero.
        clock: ``"ticks"`` (optimizer steps, the default), ``"samples"`` (each step consumes
            ``per_device_train_batch_size × gradient_accumulation_steps × world_size``, unless
            ``samples_per_step`` is given) or ``"tokens"`` (each step consumes what the
            Trainer's ``state.num_input_tokens_seen`` grew by, all processes together: needs
            ``TrainingArguments(include_num_input_tokens_seen=True)``).
        total: the run's length in the clock's unit, for ``%``; by default ``state.max_steps``
            optimizer steps, converted where a step's size is fixed.
        log: put the program's free values in the Trainer's logs beside ``learning_rate``.
        constants: ``samples_per_step``, ``tokens_per_sample``, ``samples_per_epoch``,
            ``tokens_per_epoch``, ``tokens_per_step``, as in :func:`lrdsl.torch.scheduler`.

    During ``train()``, ``self.scheduler`` is the :class:`lrdsl.torch.Scheduler` in use, and
    ``value(name)`` / ``values()`` give the program's values in force for the coming step.
    """

    def __init__(self, expr: Spec | Program, *, momentum: Spec | None = None, beta2: Spec | None = None,
                 weight_decay: Spec | None = None, clock: str = "ticks", total: float | None = None,
                 log: bool = True, **constants: float | None):
        self._program = Source(_WHO, expr, {"momentum": momentum, "beta2": beta2,
                                            "weight_decay": weight_decay}, clock, total, constants)
        self._log = log
        #: the metrics a plateau reads from each evaluation
        self.monitors: tuple[str, ...] = self._program.monitors
        #: the program's free values, logged beside the LR
        self.free: tuple[str, ...] = self._program.free
        self.scheduler: Scheduler | None = None
        self._training = False  # between on_train_begin and on_train_end
        self._stepped = False  # an optimizer step was taken in this train() call
        self._reported = False  # a plateau report was made in this train() call
        self._warned = False  # that no report can come was said (once per callback)
        self._seen = 0  # state.num_input_tokens_seen at the last step (tokens clock)
        self._in_force: dict[str, float] = {}  # the free values of the step just taken, to log

    # --- the program's values --------------------------------------------------------------------
    def value(self, name: str) -> float:
        """Channel ``name``'s value in force for the coming optimizer step (a free value such
        as ``kl``, or a target's expression value before group ratios)."""
        return reading(self.scheduler, _WHO).value(name)

    def values(self) -> dict[str, float]:
        """Every channel's value now, by name (see :meth:`value`)."""
        return reading(self.scheduler, _WHO).values()

    # --- the Trainer's hooks ---------------------------------------------------------------------
    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None,
                       train_dataloader=None, **kwargs):
        if optimizer is None or lr_scheduler is None:
            raise LrdslError(f"{_WHO} needs the Trainer's optimizer and lr_scheduler at "
                             "on_train_begin (got none: is it a transformers.Trainer?)")
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
        steps, per_epoch = _units(args, state, train_dataloader)
        sched = self._program.build(optimizer, steps, per_epoch, _SETTINGS, **_clock_constants(self._program, args))
        # a resumed Trainer loads scheduler.pt before this hook, into its own scheduler: torch's
        # LambdaLR.load_state_dict puts the saved keys in the object's __dict__ (its documented
        # behaviour), where lrdsl's state waits for us (or our load_state_dict below put it)
        _take_over(lr_scheduler, sched, len(optimizer.param_groups))  # first: it checks the object
        saved = vars(lr_scheduler).pop(STATE_KEY, None)
        if saved is not None:
            resume(sched, saved, _WHO, _SETTINGS)
        elif state.global_step > 0:
            # a checkpoint without lrdsl's state (another scheduler's scheduler.pt): the time
            # schedule resumes at the Trainer's step, the plateau starts fresh
            if self._program.clock != "ticks":
                raise LrdslError(f"{_WHO}: the checkpoint holds no lrdsl state, so the "
                                 f"{self._program.clock} counted so far are unknown; resume from a "
                                 f"checkpoint saved with this callback")
            log.warning("lrdsl.hf.Schedule: the checkpoint holds no lrdsl state; continuing at "
                        "step %d with a fresh plateau", state.global_step)
            now = sched.state_dict()
            sched.load_state_dict({**now, "last_epoch": state.global_step,
                                   "_step_count": state.global_step + 1})
        self.scheduler = sched
        self._seen = state.num_input_tokens_seen or 0
        self._in_force = {}
        self._training, self._stepped, self._reported = True, False, False

    def on_step_end(self, args, state, control, **kwargs):
        if not self._training:
            return
        sched = self.scheduler
        if self.free:  # what the Trainer logs is the step just taken's: its LR, and these
            self._in_force = {name: sched.value(name) for name in self.free}
        if self._program.clock == "tokens":
            seen = state.num_input_tokens_seen  # gathered over the processes by the Trainer
            tokens, self._seen = seen - self._seen, seen
            sched.step(tokens=tokens)
        else:
            sched.step()  # ticks, or samples from samples_per_step
        self._stepped = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        # the training logs (those with learning_rate, read before the scheduler stepped) get
        # the free values in force for the same optimizer step; the Trainer appended its copy
        # to log_history before this hook, so it gets them too
        if not (self._log and self._in_force and logs is not None and "learning_rate" in logs):
            return
        logs.update(self._in_force)
        history = state.log_history
        if history and history[-1].get("step") == state.global_step and "learning_rate" in history[-1]:
            history[-1].update(self._in_force)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not (self._training and self._stepped and self.monitors):
            return  # after train(), before the first step (eval_on_start), or no plateau
        metrics = metrics or {}
        report = {}
        for monitor in self.monitors:
            key = monitor if monitor in metrics else f"eval_{monitor}"
            if key not in metrics:
                present = ", ".join(sorted(metrics)) or "nothing"
                raise MetricError(f"plateau monitors '{monitor}', but the evaluation's metrics hold "
                                  f"only: {present} (looked for '{monitor}' and 'eval_{monitor}')")
            report[monitor] = float(metrics[key])
        self.scheduler.report(report, collective=True)  # every process evaluates and comes here
        self._reported = True

    def on_epoch_end(self, args, state, control, **kwargs):
        # evaluations by steps ran within the epoch; one by epoch runs after this hook, and the
        # Trainer's own flow callback (first in the list) has asked for it already
        if (self._training and self.monitors and not self._reported and not self._warned
                and not control.should_evaluate):
            self._warned = True
            monitor = self.monitors[0]
            strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))  # an enum or text
            warnings.warn(f"lrdsl.hf.Schedule: the plateau monitors '{monitor}', but epoch "
                          f"{round(state.epoch or 0)} ended without an evaluation to report it "
                          f"(eval_strategy={strategy!r}), "
                          f"so the plateau cannot fire; set eval_strategy='epoch' (or 'steps') and "
                          f"give the Trainer an eval_dataset, or drop '| plateau'", stacklevel=2)

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False


def _take_over(hf_scheduler, sched: Scheduler, groups: int) -> None:
    """Make the Trainer's scheduler object a front for ``sched`` (instance attributes win over
    its class's methods): the Trainer's calls to step, get_last_lr and state_dict reach lrdsl.

    A callback is handed the Trainer's scheduler but cannot replace it (the Trainer keeps its
    own reference), so its methods are rewritten on the instance; checked below, so that a
    scheduler whose methods cannot be replaced is an error, not an LR silently stepped twice.
    """

    def state_dict() -> dict:
        # lr_lambdas: what LambdaLR.load_state_dict pops before it updates its __dict__
        return {STATE_KEY: sched.state_dict(), "lr_lambdas": [None] * groups}

    def load_state_dict(state: Mapping) -> None:
        # the Trainer loads scheduler.pt before on_train_begin: keep it for then, as an
        # unpatched torch scheduler's load_state_dict would
        if not isinstance(state, Mapping) or STATE_KEY not in state:
            held = ", ".join(map(repr, state)) if isinstance(state, Mapping) else repr(state)
            raise LrdslError(f"lrdsl.hf.Schedule cannot load this scheduler state: it holds {held}, "
                             f"not {STATE_KEY!r}")
        vars(hf_scheduler)[STATE_KEY] = state[STATE_KEY]  # where LambdaLR's own load puts it

    fronts = {"step": _no_step, "get_last_lr": sched.get_last_lr, "state_dict": state_dict,
              "load_state_dict": load_state_dict}
    for name, method in fronts.items():
        try:
            setattr(hf_scheduler, name, method)
        except AttributeError:  # __slots__, or a read-only property
            pass  # named below
    kept = [name for name, method in fronts.items() if getattr(hf_scheduler, name, None) != method]
    if kept:
        raise LrdslError(f"lrdsl.hf.Schedule needs to replace {', '.join(kept)} of the Trainer's "
                         f"scheduler ({type(hf_scheduler).__name__}) on the instance, which this "
                         f"scheduler does not allow; this transformers version is not supported")


def _clock_constants(program: Source, args) -> dict[str, float]:
    """What the clock needs from the Trainer: on a samples clock ``samples_per_step``, where
    not given, the global batch of one optimizer step (``train_batch_size ×
    gradient_accumulation_steps × world_size``); on a tokens clock, the Trainer's token count."""
    if program.clock != "samples" or "samples_per_step" in program.constants:
        if program.clock == "tokens" and getattr(args, "include_num_input_tokens_seen", False) in (
                False, None, "no"):
            raise LrdslError(f"{_WHO}: a tokens clock steps by the Trainer's "
                             f"state.num_input_tokens_seen, which it counts only with "
                             f"TrainingArguments(include_num_input_tokens_seen=True)")
        return {}
    if getattr(args, "auto_find_batch_size", False):
        raise LrdslError(f"{_WHO}: a samples clock with auto_find_batch_size: the batch size "
                         f"is not known before training; pass samples_per_step= (the global "
                         f"batch of one optimizer step) or turn auto_find_batch_size off")
    return {"samples_per_step": args.train_batch_size * args.gradient_accumulation_steps * args.world_size}


def _units(args, state, train_dataloader) -> tuple[float | None, float | None]:
    """(total optimizer steps, optimizer steps per epoch), as the Trainer counts them."""
    total = state.max_steps if state.max_steps and state.max_steps > 0 else None
    per_epoch = None
    try:
        batches = len(train_dataloader)
    except TypeError:  # an iterable dataset: no epochs to count (max_steps is required then)
        batches = None
    if batches:
        accumulation = args.gradient_accumulation_steps
        per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    return total, per_epoch

