"""µs per jitted step of ``optax.chain(scale_by_adam(), lrdsl.optax.transform(...))`` on a
tokens clock against the same cosine on the ticks clock (tiny model, 4 parameters).

    .venv/bin/python bench/optax_tokens.py

A tokens clock keeps two counters (one int32[2] leaf each) and evaluates its scalar formulas in
float64 inside the trace (docs/optax.md): the counters add leaves to every jitted
call's arguments and results, the float64 scalars cost nothing measurable inside a ``lax.scan``.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import lrdsl.optax  # noqa: E402

TICKS = "cosine(3e-4, 1000000)"
TOKENS = "cosine(3e-4, 1B tok)"
PROGRAM = "lr = warmup(20M tok) >> cosine(3e-4, 1B tok)\nkl = min(linear(0, 1, 2B tok), 1)"


def per_call(tx, extra, n=2000, repeats=5) -> float:
    params = jnp.zeros(4)

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jnp.ones(4), s, p, **extra)
        return optax.apply_updates(p, updates), s

    p, s = step(params, tx.init(params))
    jax.block_until_ready(p)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            p, s = step(p, s)
        jax.block_until_ready(p)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def in_scan(tx, extra, n=20000, repeats=5) -> float:
    params = jnp.zeros(4)

    def body(carry, _):
        p, s = carry
        updates, s = tx.update(jnp.ones(4), s, p, **extra)
        return (optax.apply_updates(p, updates), s), None

    run = jax.jit(lambda c: jax.lax.scan(body, c, None, length=n)[0])
    carry = run((params, tx.init(params)))
    jax.block_until_ready(carry)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        carry = run(carry)
        jax.block_until_ready(carry)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> None:
    tokens = {"tokens": 512 * 4096}
    rows = [("ticks clock, lr", lrdsl.optax.transform(TICKS), {}),
            ("tokens clock, lr", lrdsl.optax.transform(TOKENS, clock="tokens"), tokens),
            ("tokens clock, lr + kl", lrdsl.optax.transform(PROGRAM, clock="tokens"), tokens)]
    print("| transform | one call per step (µs) | in one lax.scan (µs) |\n|---|---|---|")
    for name, transform, extra in rows:
        tx = optax.chain(optax.scale_by_adam(), transform)
        print(f"| {name} | {per_call(tx, extra):.2f} | {in_scan(tx, extra):.3f} |")


if __name__ == "__main__":
    main()
