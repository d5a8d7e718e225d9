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

Programs and clocks (docs/language.md "Language v3: optax on a samples or tokens clock"):
:func:`schedules` gives one function per channel; on a ``samples`` or ``tokens`` clock the
position is what training consumed, kept by :func:`transform` as a :class:`Count` (two int32
words, exact to 2⁵³) from ``update(..., tokens=n)``, and those formulas are evaluated in float64
inside the trace (only the value is rounded to float32), so a 10¹⁰-token run keeps float32's
tolerance without ``jax_enable_x64``.

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

from lrdsl import channels
from lrdsl.errors import LrdslError, MetricError
from lrdsl.language.nodes import Expr
from lrdsl.language.plan import FLOAT32_MAX, Plan, plan
from lrdsl.programs import Program, channel_plans, is_program, naming, program
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
             total: float | None = None, clock: str = "ticks",
             **constants: float | None) -> Callable[[Any], jax.Array]:
    """An optax schedule ``count -> lr`` for a time schedule: pure and jittable.

    ``lr(count) = f(count)``, the plan's formulas evaluated with ``jax.numpy`` at the tick
    ``count`` (optax's update counter; a negative count is tick 0).  ``steps_per_epoch``
    converts ``ep`` durations (a tick is an update); ``total`` (in updates) resolves ``%``.  Usable wherever optax takes a
    schedule: ``optax.sgd(schedule(...))``, ``optax.inject_hyperparams(optax.adam)(
    learning_rate=schedule(...))``.

    On a ``samples`` or ``tokens`` ``clock`` (docs/language.md "Clocks") the argument is the
    clock's position instead (what training consumed so far: an integer, a :class:`Count`),
    ``total`` counts that unit and ``constants`` are the fixed conversions
    (``tokens_per_sample``, …); see :func:`schedules`.

    A ``| plateau`` needs metric reports, which a schedule never sees: use :func:`transform`.

        >>> import jax.numpy as jnp
        >>> lr = schedule("warmup(2) >> 0.1")
        >>> [round(float(lr(jnp.int32(t))), 6) for t in range(4)]
        [0.0, 0.05, 0.1, 0.1]
    """
    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total, clock=clock, **constants)
    if compiled.plateau is not None:
        raise LrdslError(f"{compiled.expr}: a plateau reacts to metric reports, which an optax "
                         f"schedule never sees; use lrdsl.optax.transform(expr) and pass "
                         f"update(..., value=metric)", expr=str(compiled.expr))
    return _schedule_function(compiled)


def _schedule_function(compiled: Plan, channel: channels.Channel | None = None):
    """position -> value of one plan (an integer channel read rounded, halves up)."""
    integer = channel is not None and channel.integer

    if compiled.units.clock == "ticks":
        def lrdsl_schedule(count):
            value = _values(compiled, _tick(count))
            return jnp.floor(value + 0.5) if integer else value
    else:
        _count_check(compiled)

        def lrdsl_schedule(count):
            return _count_values(compiled, count, integer)

    lrdsl_schedule.expr = compiled.expr  # type: ignore[attr-defined]  # the canonical expression, for logs
    # print(schedule) shows <function lrdsl.optax.schedule('warmup(5) >> cosine(0.1,100)') at 0x…>
    lrdsl_schedule.__qualname__ = lrdsl_schedule.__name__ = f"lrdsl.optax.schedule({str(compiled.expr)!r})"
    return lrdsl_schedule


def schedules(source, *, clock: str = "ticks", steps_per_epoch: float | None = None,
              total: float | None = None,
              **constants: float | None) -> dict[str, Callable[[Any], jax.Array]]:
    """One pure, jittable function ``position -> value`` per channel of a program
    (docs/language.md "Programs"): ``{name: schedule}``, in the program's order.

    ``position`` is the clock's: the tick (optax's update count) on the ``ticks`` clock; what
    training consumed so far on a ``samples`` or ``tokens`` clock — an integer of any dtype,
    a Python int, or a :class:`Count` (the counters :func:`transform` keeps), exact to 2⁵³.
    An integer channel (``batch_size``, ``seq_len``) is read rounded, halves up, as
    :func:`lrdsl.curve` reads it.  ``lr`` may not carry ``| plateau`` here (use
    :func:`transform`).  The values are those of ``lrdsl.curve(program, positions,
    clock=…)``: to 1e-12 with ``jax_enable_x64``, within 4e-6 in float32.

        >>> fs = schedules("lr = cosine(1, 1k tok); kl = linear(0, 1, 4k tok)", clock="tokens")
        >>> [round(float(fs[name](500)), 6) for name in fs]
        [0.5, 0.125]
    """
    out = {}
    for name, (channel, made) in channel_plans(source, steps_per_epoch=steps_per_epoch, total=total,
                                               clock=clock, **constants).items():
        with naming(name):
            if made.plateau is not None:
                raise LrdslError(f"a plateau reacts to metric reports, which an optax schedule "
                                 f"never sees; use lrdsl.optax.transform(program) and pass "
                                 f"update(..., value=metric)", expr=str(made.expr))
            out[name] = _schedule_function(made, channel)
    return out


#: a :class:`Count`'s low word holds this many units before it carries into the high word
WORD = 2 ** 30


class Count(NamedTuple):
    """A counter of what the steps consumed (samples or tokens): ``high · 2³⁰ + low``, two
    int32 words in one array ``words = [high, low]`` (the last axis; one pytree leaf, which a
    jitted step's dispatch pays for), so it counts exactly to 2⁵³ (float64's whole numbers)
    with ``jax_enable_x64`` off, where an int32 stops at 2.1·10⁹ and a float32 at 2²⁴.
    ``int(count)`` reads it on the host."""

    words: jax.Array

    @property
    def high(self) -> jax.Array:
        return self.words[..., 0]

    @property
    def low(self) -> jax.Array:
        return self.words[..., 1]

    def __int__(self) -> int:
        return int(self.high) * WORD + int(self.low)

    @classmethod
    def of(cls, n: int = 0) -> "Count":
        """A count of ``n`` (a Python int, 0 to 2⁵³)."""
        if not 0 <= n <= 2 ** 53:
            raise LrdslError(f"a count must be from 0 to 2**53, got {n!r}")
        return cls(jnp.asarray(divmod(int(n), WORD), jnp.int32))

    @classmethod
    def of_words(cls, high, low) -> "Count":
        """The count ``high · 2³⁰ + low`` of two int32 arrays (low in [0, 2³⁰))."""
        return cls(jnp.stack([jnp.asarray(high, jnp.int32), jnp.asarray(low, jnp.int32)], -1))

    def plus(self, n) -> "Count":
        """This count and ``n`` more (an integer array of any dtype, a float rounded, a Python
        int); a negative ``n`` adds nothing (traced, so it cannot be an error)."""
        high: Any
        low: Any
        if isinstance(n, int) and not isinstance(n, bool):
            if n < 0:
                raise LrdslError(f"a step consumes a count ≥ 0, got {n}")
            high, low = divmod(n, WORD)
        else:
            array = jnp.asarray(n)
            if not jnp.issubdtype(array.dtype, jnp.integer):
                array = jnp.round(array)
            array = jnp.maximum(array, 0)
            high, low = array // WORD, array % WORD
        low = self.low + jnp.asarray(low).astype(jnp.int32)
        return Count.of_words(self.high + jnp.asarray(high).astype(jnp.int32) + low // WORD,
                              low % WORD)


def _position64(position):
    """A clock's position in float64 (inside ``jax.enable_x64``): a :class:`Count`, an integer
    or float array, a Python number; negative is 0."""
    if isinstance(position, Count):
        value = position.high.astype(jnp.float64) * float(WORD) + position.low.astype(jnp.float64)
    else:
        value = jnp.asarray(position).astype(jnp.float64)
    return jnp.maximum(value, 0.0)


def _count_check(compiled: Plan) -> None:
    """What a counting clock's plan needs: float64 (XLA flushes subnormals) and, where JAX
    computes in float32, values float32 holds."""
    if compiled.subnormal_complaint:
        raise LrdslError(f"{compiled.expr}: {compiled.subnormal_complaint}, which XLA flushes to 0",
                         expr=str(compiled.expr))
    if compiled.range[1] > FLOAT32_MAX and _float_dtype() == jnp.float32:
        raise LrdslError(f"{compiled.expr}: reaches {compiled.range[1]:.3g}, beyond float32 (JAX "
                         f"computes in float32 unless jax_enable_x64 is on)", expr=str(compiled.expr))


def _count_values(compiled: Plan, position, integer: bool = False):
    """f(position) on a samples or tokens clock, in the default float.

    A count passes 2²⁴ (float32's whole numbers) within minutes of a language model's
    training, and a schedule's tail needs the position *left* to its end exactly
    (docs/language.md "Language v3: optax on a samples or tokens clock"), so the position and
    the formulas are evaluated in float64 (``jax.enable_x64`` around the trace of these few
    scalar operations) and only the value is rounded to float32: 6e-8 relative, well inside
    the 4e-6 of docs/language.md "Tolerances".
    """
    dtype = _float_dtype()
    _count_check(compiled)
    with jax.enable_x64(True):
        value = compiled.values(_position64(position), XLA_NUMPY)
        if integer:
            value = jnp.floor(value + 0.5)
        return value.astype(dtype)


class PlateauArrays(NamedTuple):
    """The plateau's state as arrays (the fields of :class:`lrdsl.language.plateau.PlateauState`)."""

    scale: jax.Array
    best: jax.Array
    bad: jax.Array
    cooldown_left: jax.Array


class TransformState(NamedTuple):
    """``count``: the tick (updates so far, int32); ``plateau``: None without ``| plateau``;
    ``counters``: on a samples or tokens clock, what the updates consumed
    (``{"samples": Count, "tokens": Count}``, docs/language.md "Clocks"), else empty;
    ``values``: each free value of the program at the position of the next update
    (``state.values["kl"]``), read by the training step."""

    count: jax.Array  # type: ignore[assignment]  # optax's states name their tick count too
    plateau: PlateauArrays | None
    counters: Mapping[str, Count] = {}
    values: Mapping[str, jax.Array] = {}


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


def transform(source: str | Expr | Program | Mapping, *, steps_per_epoch: float | None = None,
              total: float | None = None, clock: str = "ticks",
              **constants: float | None) -> optax.GradientTransformationExtraArgs:
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

    ``source`` may be a program (docs/language.md "Programs"): ``lr`` scales the updates and
    every free value is in ``state.values`` at the position of the next update.  On a
    ``samples`` or ``tokens`` ``clock`` the position is what the updates consumed:
    ``update(..., samples=n)`` / ``update(..., tokens=n)`` (extra arguments, passed through
    ``optax.chain``) say what this update's batch held, and the state's ``counters`` add it
    up, after this update's step; a count not given comes from the fixed constants
    (``samples_per_step``, ``tokens_per_step``, ``tokens_per_sample``).

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
    lr_plan, free = _transform_plans(source, steps_per_epoch, total, clock, constants)
    rule = lr_plan.plateau
    counting = clock != "ticks"
    for made in (lr_plan, *(made for made, _ in free.values())) if counting else ():
        _count_check(made)

    def at(compiled: Plan, counters, count, integer=False):
        if counting:
            return _count_values(compiled, counters[clock], integer)
        value = _values(compiled, _tick(count))
        return jnp.floor(value + 0.5) if integer else value

    def free_values(counters, count):
        return {name: at(made, counters, count, channel.integer)
                for name, (made, channel) in free.items()}

    def init(params) -> TransformState:
        del params
        count = jnp.zeros([], jnp.int32)
        counters = {"samples": Count.of(0), "tokens": Count.of(0)} if counting else {}
        return TransformState(count, plateau_init(rule) if rule is not None else None,
                              counters, free_values(counters, count))

    def update(updates, state: TransformState, params=None, *, value=None, report=True,
               samples=None, tokens=None, **extra_args):
        del params, extra_args
        _check_update(state, rule, report)
        if counting and set(getattr(state, "counters", None) or {}) != {"samples", "tokens"}:
            raise LrdslError(f"lrdsl.optax.transform: the state holds no {clock} counter; it "
                             f"comes from the init() of a transform on another clock")
        lr = at(lr_plan, state.counters, state.count)
        plateau = state.plateau
        if plateau is not None and rule is not None:
            lr = rule.apply(lr, plateau.scale, jnp)
            if value is not None and report is not False:
                reported = plateau_report(rule, plateau, _monitored(rule, value))
                plateau = reported if report is True else jax.tree.map(
                    lambda new, old: jnp.where(report, new, old), reported, plateau)
        updates = jax.tree.map(lambda g: (-lr).astype(g.dtype) * g, updates)
        count = optax.safe_increment(state.count)
        counters = _consumed(state.counters, clock, constants, samples, tokens) if counting else {}
        return updates, TransformState(count, plateau, counters, free_values(counters, count))

    return optax.GradientTransformationExtraArgs(init, update)


def _transform_plans(source, steps_per_epoch, total, clock, constants):
    """The plan of ``lr`` and {free value: (plan, channel)} of an expression or a program."""
    if not is_program(source):
        return plan(source, steps_per_epoch=steps_per_epoch, total=total, clock=clock,
                    **constants), {}
    compiled = program(source)
    if "lr" not in compiled:
        raise LrdslError(f"lrdsl.optax.transform scales the updates by lr; the program has no lr "
                         f"(it has {', '.join(compiled)}): use lrdsl.optax.schedules for its values")
    others = [name for name in compiled if name in channels.CHANNELS and name != "lr"]
    if others:
        raise LrdslError(f"lrdsl.optax.transform writes only lr (it scales the updates); "
                         f"{others[0]} is an optimizer hyperparameter: pass it with "
                         f"optax.inject_hyperparams and lrdsl.optax.schedules on a ticks clock")
    lr_plan, free = None, {}
    for name, (channel, made) in channel_plans(compiled, steps_per_epoch=steps_per_epoch, total=total,
                                               clock=clock, **constants).items():
        if name == "lr":
            lr_plan = made
        else:
            free[name] = (made, channel)
    return lr_plan, free


def _consumed(counters: Mapping[str, Count], clock: str, constants: Mapping[str, Any],
              samples, tokens) -> dict[str, Count]:
    """The counters after one update that consumed ``samples`` and ``tokens`` (given, or from
    the fixed constants, as :meth:`lrdsl.runtime.Runtime.consume`; samples are not derived
    from tokens, which would take a division)."""
    fixed_counts = {key: _whole(value, key) for key, value in constants.items()
                    if key in ("tokens_per_sample", "samples_per_step", "tokens_per_step")
                    and value is not None}
    per_sample = fixed_counts.get("tokens_per_sample")
    if samples is None:
        samples = fixed_counts.get("samples_per_step")
    if tokens is None:
        tokens = fixed_counts.get("tokens_per_step")
        if tokens is None and samples is not None and per_sample is not None:
            tokens = samples * per_sample
    counts = {"samples": samples, "tokens": tokens}
    if counts[clock] is None:
        fixed = "samples_per_step" if clock == "samples" else \
            "tokens_per_step (or samples_per_step and tokens_per_sample)"
        raise LrdslError(f"lrdsl.optax.transform: update() on a {clock} clock needs what the step "
                         f"consumed: pass {clock}=n, or fix {fixed} when the transform is built")
    return {key: counters[key] if counts[key] is None else counters[key].plus(_whole(counts[key], key))
            for key in ("samples", "tokens")}


def _whole(n, what: str):
    """A fixed constant is a Python float: a whole number, as an int; a count as given."""
    if isinstance(n, float):
        if not n.is_integer():
            raise LrdslError(f"lrdsl.optax.transform counts whole {what}; a step of {n:g} {what} "
                             f"is not one")
        return int(n)
    return n


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


def learning_rate(expr: str | Expr | Program | Mapping, state: TransformState, *,
                  steps_per_epoch: float | None = None, total: float | None = None,
                  clock: str = "ticks", **constants: float | None) -> jax.Array:
    """The learning rate the next update of :func:`transform` will use, from its state (for a
    program, its ``lr``; the options as given to :func:`transform`)."""
    if not isinstance(state, TransformState):
        raise LrdslError(f"learning_rate() needs the state of lrdsl.optax.transform (a TransformState), "
                         f"got {type(state).__name__}; in a chain, pick it out: state[i]")
    if is_program(expr):
        compiled_program = program(expr)
        if "lr" not in compiled_program:
            raise LrdslError(f"learning_rate(): the program has no lr (it has "
                             f"{', '.join(compiled_program)})")
        expr = compiled_program["lr"]
    assert isinstance(expr, (str, Expr))
    compiled = plan(expr, steps_per_epoch=steps_per_epoch, total=total, clock=clock, **constants)
    if clock == "ticks":
        lr = _values(compiled, _tick(state.count))
    else:
        lr = _count_values(compiled, state.counters[clock])
    if compiled.plateau is None or state.plateau is None:
        return lr
    return compiled.plateau.apply(lr, state.plateau.scale, jnp)
