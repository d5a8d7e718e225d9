"""Loads tests/cases.yaml for the language tests and the backends' tests."""

from pathlib import Path

import pytest
import yaml

_DATA = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text(encoding="utf-8"))

VALUE_CASES = _DATA["values"]
ERROR_CASES = _DATA["errors"]
PROGRAM_CASES = _DATA["programs"]


def value_params():
    return [pytest.param(case, id=case["expr"].replace("\n", " ")) for case in VALUE_CASES]


def program_params():
    return [pytest.param(case, id=" ; ".join(case["program"].split("\n")).strip(" ;"))
            for case in PROGRAM_CASES]


def error_params():
    return [pytest.param(case, id=case["expr"].replace("\n", " ") or "<empty>")
            for case in ERROR_CASES]


# Long horizons (LANGUAGE.md §5: float32 within tolerance at every tick up to 10⁶), one case or
# more per primitive: (expression, units).  The float32 backends' tests (Keras, optax) run them.
LONG = [
    ("0.1", {}), ("linear(0.1, 0, 1e6)", {}), ("linear(0.001, 0.1, 1e6)", {}),
    ("anneal(0.04, 0.4, 1e6)", {}), ("anneal(0.1, 0, 1e6, shape=linear, power=2)", {}),
    ("anneal(0.1, 0.001, 1e6, power=0.5)", {}), ("anneal(1e-7, 10, 1e6, shape=exp)", {}),
    ("warmup(1e5, shape=cos) >> 0.1", {}), ("warmup(1e5, start=0.001, shape=exp) >> 0.1", {}),
    ("warmup(1%) >> 3e-4 >> cooldown(20%, power=0.5)", {"total": 1e6}),
    ("warmup(1%) >> 3e-4 >> cooldown(20%, shape=cos)", {"total": 1e6}),
    ("cosine(0.1, 1e6)", {}), ("cosine(0.1, 1e6, min=0.001)", {}),
    ("poly(0.1, 1e6, power=2)", {}), ("poly(0.1, 1e5, power=3, cycle=true)", {}),
    ("poly(0, 1e6, end=0.1, power=0.5)", {}), ("step(0.1, 1e5, factor=0.5)", {}),
    ("step(0.1, 1000, factor=0.99)", {}), ("multistep(0.1, [3e5, 6e5, 9e5])", {}),
    ("piecewise([2e5, 7e5], [0.1, 0.01, 0.001])", {}), ("exp(0.1, 0.99999)", {}),
    ("exp(0.1, k=1e-5, every=10, staircase=true)", {}), ("exp(1e-7, 1.00002, d=1e6)", {}),
    ("invtime(0.1, 1e-4)", {}), ("invtime(0.1, 1e-3, power=0.5)", {}),
    ("rsqrt(0.01, d0=1e4)", {}), ("rsqrt(1, power=0.51)", {}),
    ("cyclic(0.001, 0.1, 1e4)", {}), ("cyclic(0.9, 0.8, 2e4, down=3e4, mode=triangular2)", {}),
    ("cyclic(0.001, 0.1, 1e4, mode=exp_range, gamma=0.99999)", {}),
    ("sgdr(0.1, 1e5)", {}), ("sgdr(0.1, 1e4, mult=2, min=1e-5)", {}),
    ("sgdr(0.1, 1000, decay=0.99)", {}), ("onecycle(0.1, 1e6)", {}),
    ("onecycle(0.85, 1e6, start=0.95, end=0.95)", {}),
    ("onecycle(0.1, 1e6, three_phase=true, anneal=linear)", {}),
    ("max(exp(0.1, 0.9999), 1e-4)", {}), ("min(cosine(0.1, 1e6), 0.05)", {}),
    ("cosine(0.1, 1e6)[5e5:]", {}), ("0.2 - cosine(0.1, 1e6)", {}),
    ("cosine(0.1, 5e5) + anneal(0, 0.01, 1e6)", {}), ("repeat(warmup(1e3) >> cosine(0.1, 9e4))", {}),
    ("quantize(cosine(1, 1e6), 7.5)", {}), ("warmup(500) >> quantize(cosine(0.1, 1e6), 1000)", {}),
    ("quantize(exp(0.1, 0.99999, d=1e6), 7.5)", {}), ("quantize(linear(0.1, 0, 999999.5), 3.25)", {}),
    ("quantize(step(1, 13, factor=0.9999, d=1e6), 3.25)", {}),
    ("repeat(cosine(0.1, 1000), mult=1.5)", {}), ("repeat(cosine(0.1, 1000), mult=1.5, round=true)", {}),
    ("repeat(cosine(0.1, 1000, min=1e-4), mult=2, decay=0.8)", {}),
    ("repeat(warmup(100) >> cosine(0.1, 900), mult=2, round=true)", {}),
    ("repeat(cosine(0.1, 7.7), mult=1.3, decay=0.999)", {}),
    ("repeat(anneal(0.01, 0.1, 333.3, shape=linear), n=12, mult=1.7, decay=1.05) >> 0.01", {}),
    ("0.1 * anneal(1, 0, 100%, shape=linear) / anneal(1, 0.5, 100%, shape=linear)", {"total": 1e6}),
    ("1 / (1 + linear(0, 9, 1e6))", {}), ("2 / cosine(1, 1e6, min=0.5)", {}),
    ("1 / invtime(10, 1e-4, d=1e6)", {}), ("warmup(1e4) >> 3e-4 / (1 + linear(0, 1, 9e5)) >> cooldown(9e4)", {}),
]


def long_ticks():
    """Sampled ticks up to 10⁶: log-spaced, a regular comb, the last 40 and around 10⁵."""
    import numpy as np

    t = np.concatenate([np.round(np.logspace(0, 6, 300)), np.arange(0, 10**6 + 1, 7919),
                        10**6 - np.arange(0, 40), 10**5 + np.arange(-3, 4), [0, 1, 2]])
    return np.unique(t[(t >= 0) & (t <= 10**6)])
