"""JAX / optax backend: a pure schedule and a gradient transformation for any expression.

    tx = optax.sgd(lrdsl.optax.schedule("warmup(5ep) >> cosine(0.1, 95ep)", steps_per_epoch=steps))

    tx = optax.chain(optax.scale_by_adam(),
                     lrdsl.optax.transform("warmup(500) >> cosine(1e-3, 9500) | plateau(val_loss, 0.5)"))
    updates, state = tx.update(grads, state, params)                    # a plain step
    updates, state = tx.update(grads, state, params, value=val_loss)    # the epoch's last step

Both evaluate the plan's formulas (the catalogue's, written once) with ``jax.numpy`` as the
array namespace, so they are pure and jittable and give the numbers of :func:`lrdsl.curve`:
in float64 (``jax_enable_x64``) to 1e-12 relative, in float32 within docs/language.md "Tolerances".

Extreme numbers: XLA rewrites a division by a constant into a product with its reciprocal
and folds constants together, so the plan is evaluated with :data:`XLA_NUMPY`, whose
``divide`` keeps every share t/d of a duration (1e-289 to 1e308 ticks) in range.  XLA on CPU
also flushes subnormal numbers (below 2.2e-308 in float64) to 0.  A plan that folds one in
(``poly(5e-324, 100)``, ``linear(1e-310, 1, 10)``) is refused in float64, as float32 refuses
numbers it cannot hold; a value or intermediate that only *becomes* subnormal (a long
exponential tail) comes out 0, less than 2.2e-308 from the reference.
The tick is optax's update count (``count`` of ``int32`` or any integer dtype).

optax's own ``contrib.reduce_on_plateau`` scales the updates on its own clock and cannot be
placed *under* a time schedule; here the plateau's scale s is kept beside the tick in the
transformation's state and the step is ``-min(f(t), max(f(t)·s, min))`` (docs/language.md "Reports and the plateau").
Its rule is written ``plateau(value, factor, patience=p − 1, threshold=rtol, atol=atol,
cooldown=c)`` (tests/test_plateau_peers.py holds the two to the same scales).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple


import jax
import jax.numpy as jnp
import optax

from lrdsl.errors import LrdslError, MetricError
from lrdsl.language.nodes import Expr
from lrdsl.language.plan import Plan, plan
from lrdsl.language.plateau import PlateauRule
from lrdsl.runtime import plateau_step

class _XlaNumpy:
    """``jax.numpy`` with a division XLA does not rewrite into trouble: the plan's namespace.

    XLA's simplifier turns ``a / c`` (c a constant or a broadcast scalar) into ``a · (1/c)``
    and folds ``(a · c₁) · c₂`` into ``a · (c₁·c₂)``.  For d = 1e308 the reciprocal is below
    the smallest normal float and XLA on CPU flushes it to 0 (``cosine(0.1, 1e308)`` gave 0);
    for d = 1e-10 beside a value 1e300 the folded constant overflows (``linear(0, 1e300,
    1e-10)`` gave inf, and 0·inf = NaN at tick 0).  It moves constants through a division as
    well: ``(a·c) / b`` becomes ``a · (c · 1/b)``.  So the catalogue divides by a duration with
    ``xp.divide``, and here a divisor known when tracing is first scaled, with the numerator,
    by a power of two if its reciprocal would not be a normal number of the dtype; both then
    pass an optimization barrier, and so does the quotient: no constant folds into ``1/b``.
    A divisor traced as an array (``a / b`` of two schedules, ``b`` maybe a constant one) passes
    the same barriers: ``1.7e308 * (x / 0.9)`` was folded into ``(1.7e308 · 1/0.9) · x``, inf.
    """

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def divide(a, b):
        if not isinstance(b, (int, float)):  # a quotient of schedules: its divisor may be a
            a, b = jax.lax.optimization_barrier((a, b))  # constant XLA would fold as 1/b
            return jax.lax.optimization_barrier(a / b)
        dtype = _float_dtype()
        half = jnp.finfo(dtype).maxexp // 2  # 512 in float64, 64 in float32
        exponent = math.frexp(b)[1]
        if abs(exponent) > half:  # 1/b would be subnormal or inf: bring b near 1 first
            scale = 2.0 ** (-half if exponent > 0 else half)
            a, b = a * scale, b * scale
        a, b = jax.lax.optimization_barrier((a, jnp.asarray(b, dtype)))
        return jax.lax.optimization_barrier(a / b)


XLA_NUMPY = _XlaNumpy()


def _float_dtype():
    """float64 when ``jax_enable_x64`` is on (decided at trace time), else float32."""
    return jnp.result_type(float)


def _values(compiled: Plan, count):
    """f(count) from an update count of any integer (or float) dtype, in the default float."""
    dtype = _float_dtype()
    if dtype == jnp.float32:
        complaint = compiled.float32_complaint
        if complaint:
            raise LrdslError(f"{compiled.expr}: {complaint} (JAX computes in float32 unless "
                             f"jax_enable_x64 is on)", expr=str(compiled.expr))
    elif compiled.subnormal_complaint:
        raise LrdslError(f"{compiled.expr}: {compiled.subnormal_complaint}, which XLA flushes to 0",
                         expr=str(compiled.expr))
    return compiled.values(jnp.asarray(count).astype(dtype), XLA_NUMPY)


def _tick(count):
    """The tick of an update count: a negative count is tick 0 (traced, so it cannot be an
    error; lrdsl.torch's ``lr_at`` counts a negative tick as 0 too)."""
    return jnp.maximum(count, 0)


def schedule(expr: str | Expr, *, steps_per_epoch: float | None = None,
             total: float | None = None) -> Callable[[Any], jax.Array]:
    """An optax schedule ``count -> lr`` for a time schedule: pure and jittable.

    ``lr(count) = f(count)``, the plan's formulas evaluated with ``jax.numpy`` at the tick
    ``count`` (optax's update counter; a negative count is tick 0).  ``steps_per_epoch``
    converts ``ep`` durations (a tick is an update); ``total`` (in updates) resolves ``%``.  Usable wherever optax takes a
    schedule: ``optax.sgd(schedule(...))``, ``optax.inject_hyperparams(optax.adam)(
    learning_rate=schedule(...))``.

    A ``| plateau`` needs metric reports, which a schedule never sees: use :func:`transform`.

    >>> import jax.numpy as jnp
    >>> lr = schedule("warmup(2) >> 0.1")
    >>> [round(float(lr(jnp.int32(t))), 6) for t in range(4)]
    [0.0, 0.05, 0.1, 0.1]
    """
    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total)
    if compiled.plateau is not None:
        raise LrdslError(f"{compiled.expr}: a plateau reacts to metric reports, which an optax "
                         f"schedule never sees; use lrdsl.optax.transform(expr) and pass "
                         f"update(..., value=metric)", expr=str(compiled.expr))

    def lrdsl_schedule(count):
        return _values(compiled, _tick(count))

    lrdsl_schedule.expr = compiled.expr  # type: ignore[attr-defined]  # the canonical expression, for logs
    return lrdsl_schedule


class PlateauArrays(NamedTuple):
    """The plateau's state as arrays (the fields of :class:`lrdsl.language.plateau.PlateauState`)."""

    scale: jax.Array
    best: jax.Array
    bad: jax.Array
    cooldown_left: jax.Array


class TransformState(NamedTuple):
    """``count``: the tick (updates so far, int32); ``plateau``: None without ``| plateau``."""

    count: jax.Array  # type: ignore[assignment]  # optax's states name their tick count too
    plateau: PlateauArrays | None


def plateau_init(rule: PlateauRule) -> PlateauArrays:
    """Scale 1, no best yet (±inf), no bad reports, no cooldown."""
    dtype = _float_dtype()
    return PlateauArrays(scale=jnp.ones([], dtype),
                         best=jnp.asarray(jnp.inf if rule.minimize else -jnp.inf, dtype),
                         bad=jnp.zeros([], jnp.int32), cooldown_left=jnp.zeros([], jnp.int32))


def plateau_report(rule: PlateauRule, state: PlateauArrays, value) -> PlateauArrays:
    """One report of the monitored ``value``: the runtime's pure
    :func:`lrdsl.runtime.plateau_step` with ``jnp.where``, in the state's dtypes."""
    value = jnp.asarray(value, state.best.dtype)
    scale, best, bad, cooldown_left = plateau_step(rule, *state, value, jnp.where)
    return PlateauArrays(scale=scale, best=best, bad=bad.astype(jnp.int32),
                         cooldown_left=cooldown_left.astype(jnp.int32))


def _monitored(rule: PlateauRule, value):
    """The reported value as a scalar: a number, a 0-d array, or a mapping holding the monitor."""
    if isinstance(value, Mapping):
        value = rule.monitored(value, "value")
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2 ** 1024 else math.inf  # jnp would try int32
    try:
        array = jnp.asarray(value)
    except (TypeError, ValueError):
        raise MetricError(f"plateau: the value reported for '{rule.monitor}' is not a number: "
                          f"{value!r}") from None
    if array.shape != () or not (jnp.issubdtype(array.dtype, jnp.floating)
                                 or jnp.issubdtype(array.dtype, jnp.integer)):
        raise MetricError(f"plateau: the value reported for '{rule.monitor}' must be one real "
                          f"number, got an array of shape {array.shape} and dtype {array.dtype}")
    return array


def transform(expr: str | Expr, *, steps_per_epoch: float | None = None,
              total: float | None = None) -> optax.GradientTransformationExtraArgs:
    """Scale updates by ``-lr(t)``: the step of any expression, ``| plateau`` included.

    Put it after a unit-learning-rate optimizer:
    ``optax.chain(optax.scale_by_adam(), transform(expr))`` is ``optax.adam(lr)``.

    The state (:class:`TransformState`) holds the tick ``t`` (updates so far) and, for
    ``| plateau``, the plateau's scale, best, bad-report count and cooldown counter.
    ``update(updates, state, params, value=metric)`` reports ``metric`` (the monitor's value,
    or a mapping holding it) to the plateau *after* this update's step, so the report acts
    from the next update on — the report at the end of an epoch of docs/language.md "Reports and the plateau"; without
    ``value`` nothing is reported.  Inside one compiled loop, ``report=flag`` (a traced bool)
    decides at run time: ``update(..., value=loss, report=step % 100 == 99)``.  The step at
    tick t is ``-min(f(t), max(f(t)·s, min))`` (``-f(t)`` without a plateau).  Pure and
    jittable; the count saturates at int32's max.

    >>> import jax.numpy as jnp
    >>> tx = transform("0.1 | plateau(loss, 0.5, patience=0)")
    >>> state = tx.init(jnp.zeros(1))
    >>> for report in ({"value": 1.0}, {"value": 1.0}, {}):  # best 1, then no improvement
    ...     updates, state = tx.update(jnp.ones(1), state, **report)
    ...     print(round(-float(updates[0]), 6))
    0.1
    0.1
    0.05
    """
    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total)
    rule = compiled.plateau

    def init(params) -> TransformState:
        del params
        return TransformState(jnp.zeros([], jnp.int32),
                              plateau_init(rule) if rule is not None else None)

    def update(updates, state: TransformState, params=None, *, value=None, report=True,
               **extra_args):
        del params, extra_args
        _check_update(state, rule, report)
        lr = _values(compiled, _tick(state.count))
        plateau = state.plateau
        if plateau is not None and rule is not None:
            lr = rule.apply(lr, plateau.scale, jnp)
            if value is not None and report is not False:
                reported = plateau_report(rule, plateau, _monitored(rule, value))
                plateau = reported if report is True else jax.tree.map(
                    lambda new, old: jnp.where(report, new, old), reported, plateau)
        updates = jax.tree.map(lambda g: (-lr).astype(g.dtype) * g, updates)
        return updates, TransformState(optax.safe_increment(state.count), plateau)

    return optax.GradientTransformationExtraArgs(init, update)


def _check_update(state, rule: PlateauRule | None, report) -> None:
    """Refuse, before tracing anything, a state that is not this transform's and a ``report``
    that is no flag (jnp.where would take a string for a condition, or fail deep in jax)."""
    if not isinstance(state, tuple) or getattr(state, "count", None) is None:
        raise LrdslError(f"lrdsl.optax.transform: update() needs the state from init(), got "
                         f"{type(state).__name__}")
    if (rule is None) != (getattr(state, "plateau", None) is None):
        raise LrdslError(f"lrdsl.optax.transform: the state {'lacks' if rule else 'has'} a plateau "
                         f"state; it comes from another expression's init()")
    if isinstance(report, bool):
        return
    try:
        flag = jnp.asarray(report)
    except (TypeError, ValueError):
        flag = None
    if flag is None or flag.dtype != jnp.bool_ or flag.shape != ():
        raise LrdslError(f"lrdsl.optax.transform: report must be a bool (or a traced one), got "
                         f"{report!r}")


def learning_rate(expr: str | Expr, state: TransformState, *, steps_per_epoch: float | None = None,
          total: float | None = None) -> jax.Array:
    """The learning rate the next update of :func:`transform` will use, from its state."""
    if not isinstance(state, TransformState):
        raise LrdslError(f"learning_rate() needs the state of lrdsl.optax.transform (a TransformState), "
                         f"got {type(state).__name__}; in a chain, pick it out: state[i]")
    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total)
    lr = _values(compiled, _tick(state.count))
    if compiled.plateau is None or state.plateau is None:
        return lr
    return compiled.plateau.apply(lr, state.plateau.scale, jnp)
