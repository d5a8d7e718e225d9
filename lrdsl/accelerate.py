"""Hugging Face Accelerate: an lrdsl scheduler passed to ``accelerator.prepare`` ticks once per
optimizer step, on every process, whatever the number of processes, the gradient accumulation
or ``split_batches`` (docs/distributed.md "Hugging Face Accelerate").

    model, opt, loader = accelerator.prepare(model, opt, loader)
    steps = math.ceil(len(loader) / accelerator.gradient_accumulation_steps)  # per epoch
    sched = accelerator.prepare(lrdsl.torch.scheduler(opt, expr, steps_per_epoch=steps,
                                                      total=epochs * steps))

Accelerate wraps a plain ``LRScheduler`` in its ``AcceleratedScheduler``, which steps it
``num_processes`` times per optimizer step (once with ``split_batches``): its convention is
that a schedule is written in the steps of one process's batches.  lrdsl's tick is an
optimizer step (``total`` and ``steps_per_epoch`` count what the prepared loader gives, which
is what one process with the same global batch takes), and ``report`` must stay reachable, so
an lrdsl scheduler answers Accelerate's "already prepared?" question (``_is_accelerate_prepared``,
read by ``Accelerator.prepare_scheduler``) with yes: Accelerate then registers it for
``save_state``/``load_state`` as it is and hands it back unwrapped.  From then on a
:class:`Follower` gates its ``step()``: a step ticks only if the optimizer took a step since
the last tick.  That is the wrapper's own rule (no tick while accumulating, none for a step
the grad scaler skipped), without its repetition, and it holds even where something else
still steps the scheduler several times per optimizer step.  On a samples or tokens clock, what
the calls that did not tick consumed is counted at the next tick.

This module imports neither ``accelerate`` nor :mod:`lrdsl.torch`: it is reached only when
Accelerate prepares a scheduler, so Accelerate is already imported; its state is read from
``sys.modules``.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any

import torch


def innermost(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside Accelerate's ``AcceleratedOptimizer`` (which is an
    ``Optimizer`` that never runs its own step hooks): the one whose ``step`` really runs."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


class Follower:
    """Counts the optimizer's real steps (a step post-hook) and lets the scheduler tick once
    per step: :meth:`ticks` says whether a ``step()`` call ticks."""

    def __init__(self, optimizer: torch.optim.Optimizer, runtime: Any):
        self.runtime = runtime  # the scheduler's position (not the scheduler: the hook would keep it)
        self.taken = 0  # the optimizer steps run so far
        self.seen = 0  # ... when the scheduler last ticked
        self.pending: tuple[int | None, int | None] = (None, None)  # samples, tokens not yet counted
        innermost(optimizer).register_step_post_hook(self._stepped)

    def _stepped(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.taken += 1

    def ticks(self, samples: int | None, tokens: int | None) -> tuple[bool, int | None, int | None]:
        """Whether this ``step(samples=, tokens=)`` ticks: only if the optimizer stepped since the
        last tick.  What a call that does not tick consumed (a micro-batch while gradients
        accumulate) is carried to the next tick: returned are the counts that tick passes on."""
        if self.taken == self.seen:
            self.pending = (_plus(self.pending[0], samples), _plus(self.pending[1], tokens))
            return False, None, None
        self.seen = self.taken
        samples, tokens = _plus(self.pending[0], samples), _plus(self.pending[1], tokens)
        self.pending = (None, None)
        if self.runtime.tick == 0:  # a fresh run's first tick: is an epoch right?
            check_epoch(self.runtime.steps_per_epoch)
        return True, samples, tokens


def _plus(carried: int | None, given: int | None) -> int | None:
    return given if carried is None else carried if given is None else carried + given


def check_epoch(steps_per_epoch: float | None) -> None:
    """Warn when ``steps_per_epoch`` is not the optimizer steps of an epoch of the prepared
    loader being iterated (``len`` of it over the gradient accumulation): ``ep`` would be off."""
    state = sys.modules.get("accelerate.state")
    if steps_per_epoch is None or state is None:
        return
    gradients = state.GradientState()
    references = gradients.dataloader_references
    loader = references[-1] if references else None
    try:
        batches = len(loader)  # type: ignore[arg-type]
    except TypeError:  # no loader being iterated, or an iterable one without a length
        return
    accumulation = gradients.num_steps
    expected = math.ceil(batches / accumulation)
    if steps_per_epoch != expected:
        warnings.warn(f"lrdsl: steps_per_epoch={steps_per_epoch:g} but an epoch of the prepared loader is "
                      f"{expected} optimizer steps ({batches} batches / {accumulation} accumulated): pass "
                      f"steps_per_epoch=math.ceil(len(loader) / accelerator.gradient_accumulation_steps) "
                      f"with the prepared loader", stacklevel=4)
