"""µs per jitted training step: optax.adam with lrdsl.optax.schedule vs with optax's own
warmup_cosine_decay_schedule (the same numbers), measured in one run.

    .venv/bin/python bench/optax_step.py

Target (issue #15): every ratio ≤ 1.05.  Two loops per model: one jitted step per Python call
(dispatch included), and all steps in one jitted ``lax.scan`` (the compiled step alone).  The
tiny model is where the schedule's share of a step is largest; in the MLP's step it is noise.  The last rows compare
``| plateau`` through ``lrdsl.optax.transform`` (a report every 100 steps) with optax's
schedule chained to ``contrib.reduce_on_plateau`` (which cannot sit under the schedule).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import lrdsl.optax  # noqa: E402

EXPR = "warmup(500) >> cosine(0.001, 9500)"
PLATEAU = EXPR + " | plateau(loss, 0.5, patience=2)"


def native_schedule():
    return optax.warmup_cosine_decay_schedule(0.0, 0.001, 500, 10000)


def _check_same_numbers():
    """The two schedules agree in float64 (optax's float32 cosine tail cancels: see the tests)."""
    with jax.enable_x64(True):
        counts = jnp.arange(0, 12000, 7, dtype=jnp.int64)
        ours = jax.vmap(lrdsl.optax.schedule(EXPR))(counts)
        theirs = jax.vmap(native_schedule())(counts)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14 * 0.001)


#: name: (layer widths, outputs, batch, steps per timing, timings per side)
MODELS = {
    "tiny (4→1)": ((4,), 1, 16, 1000, 41),
    "mlp (784→128→10)": ((784, 128), 10, 64, 200, 21),
}


def _model(widths, outputs, batch, steps, rounds):
    rng = np.random.RandomState(0)
    sizes = [*widths, outputs]
    params = [(jnp.asarray(rng.randn(a, b) / np.sqrt(a), jnp.float32), jnp.zeros(b, jnp.float32))
              for a, b in zip(sizes, sizes[1:])]
    xs = jnp.asarray(rng.randn(steps, batch, widths[0]), jnp.float32)
    ys = jnp.asarray(rng.randn(steps, batch, outputs), jnp.float32)
    return params, xs, ys, rounds


def _loss(params, x, y):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return jnp.mean((x @ w + b - y) ** 2)


def _step(tx, report_every=None):
    def step(params, state, x, y, count):
        loss, grads = jax.value_and_grad(_loss)(params, x, y)
        if report_every is None:
            updates, state = tx.update(grads, state, params)
        else:  # both sides get value= on every step; lrdsl reports only at an epoch's end
            updates, state = tx.update(grads, state, params, value=loss,
                                       report=(count + 1) % report_every == 0)
        return optax.apply_updates(params, updates), state, loss
    return step


def per_call(tx, params, xs, ys, **kw):
    """A timer of len(xs) jitted steps, one Python call each (batches already on the device)."""
    step = jax.jit(_step(tx, **kw))
    state = tx.init(params)
    batches = [(xs[i], ys[i], jnp.int32(i)) for i in range(len(xs))]
    step(params, state, *batches[0])[2].block_until_ready()  # compile

    def run():
        p, s = params, state
        for x, y, i in batches:
            p, s, loss = step(p, s, x, y, i)
        loss.block_until_ready()
    return run


def in_scan(tx, params, xs, ys, **kw):
    """A timer of len(xs) steps in one jitted lax.scan: the compiled step alone."""
    step = _step(tx, **kw)

    @jax.jit
    def scan(params, state):
        def body(carry, batch):
            p, s, loss = step(*carry, *batch)
            return (p, s), loss
        return jax.lax.scan(body, (params, state), (xs, ys, jnp.arange(len(xs))))[1]

    state = tx.init(params)
    scan(params, state).block_until_ready()  # compile
    return lambda: scan(params, state).block_until_ready()


def compare(make_timer, native, ours, params, xs, ys, rounds, **kw) -> tuple[float, float, float]:
    """(native, ours) µs per step, each the best of ``rounds`` timings, and the ratio: the median
    over rounds of ours/native timed back to back (first one side, then the other, alternating),
    so that drift in the machine's load cancels."""
    timers = [make_timer(native, params, xs, ys, **kw), make_timer(ours, params, xs, ys, **kw)]
    times = np.zeros((rounds, 2))
    for round_ in range(rounds):
        for side in (0, 1) if round_ % 2 else (1, 0):
            start = time.perf_counter()
            timers[side]()
            times[round_, side] = (time.perf_counter() - start) / len(xs) * 1e6
    return times[:, 0].min(), times[:, 1].min(), float(np.median(times[:, 1] / times[:, 0]))


class _ReportAware:
    """optax's plateau ignores a ``report`` argument; this keeps the two loops' calls alike."""

    def __init__(self, tx):
        self.tx = tx
        self.init = tx.init

    def update(self, updates, state, params=None, *, report=None, **extra):
        return self.tx.update(updates, state, params, **extra)


def main():
    _check_same_numbers()
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}; "
          f"µs per step, best of the timings per side (see MODELS)")
    print(f"schedule: {EXPR}  vs  optax.warmup_cosine_decay_schedule(0, 1e-3, 500, 10000)\n")
    print(f"{'model':20} {'loop':9} {'optax µs':>9} {'lrdsl µs':>9} {'ratio':>6}  (median of paired timings)")
    rows = []
    for name, shape in MODELS.items():
        params, xs, ys, rounds = _model(*shape)
        native = optax.adam(native_schedule())
        ours = optax.adam(lrdsl.optax.schedule(EXPR))
        for loop, timer in (("per call", per_call), ("in scan", in_scan)):
            t, o, ratio = compare(timer, native, ours, params, xs, ys, rounds)
            rows.append(ratio)
            print(f"{name:20} {loop:9} {t:9.2f} {o:9.2f} {ratio:6.3f}")
    params, xs, ys, rounds = _model(*MODELS["tiny (4→1)"])
    native = _ReportAware(optax.chain(optax.adam(native_schedule()),
                                      optax.contrib.reduce_on_plateau(factor=0.5, patience=2,
                                                                      accumulation_size=100)))
    ours = optax.chain(optax.scale_by_adam(), lrdsl.optax.transform(PLATEAU))
    for loop, timer in (("per call", per_call), ("in scan", in_scan)):
        t, o, ratio = compare(timer, native, ours, params, xs, ys, rounds, report_every=100)
        print(f"{'tiny | plateau':20} {loop:9} {t:9.2f} {o:9.2f} {ratio:6.3f}")
    print(f"\nworst schedule ratio: {max(rows):.3f} (target ≤ 1.05)")


if __name__ == "__main__":
    main()
