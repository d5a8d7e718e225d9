"""Periodic constructs (poly's cycle, cyclic, sgdr, repeat): the position within a period exact on
every float64 backend at large ticks, periods too short to place a tick in refused, and sgdr's
restart table covering every tick a backend counts.  Expected values from Fraction arithmetic on
the numbers as written, never from lrdsl."""

import decimal
import importlib
import math
from fractions import Fraction

import numpy as np
import pytest

import lrdsl

LARGE = [0, 1, 9, 10, 11, 77, 4095, 65535, 65536, 99999, 10**5, 262143, 999999, 10**6]


def _position(t: int, period: Fraction) -> Fraction:
    return t - math.floor(t / period) * period


def _cosine(lr: float, period: str):
    p = Fraction(period)

    def value(t):  # (1 + cos πu)/2 = sin²(π(1 − u)/2), from its small end
        u = _position(t, p) / p
        return lr * (math.cos(math.pi * float(u) / 2) ** 2 if u <= Fraction(1, 2)
                     else math.sin(math.pi * float(1 - u) / 2) ** 2)
    return value


def _triangle(low: float, high: float, up: str):
    size = 2 * Fraction(up)

    def value(t):
        m = _position(t, size)
        s = m / Fraction(up) if m <= Fraction(up) else (size - m) / Fraction(up)
        return float(Fraction(low) + (Fraction(high) - Fraction(low)) * s)
    return value


def _cycling_poly(lr: float, d: str):
    p = Fraction(d)

    def value(t):
        span = p * max(1, math.ceil(t / p))
        return float(Fraction(lr) * (1 - t / span))
    return value


EXACT = [
    ("repeat(cosine(0.1, 9.999999999))", _cosine(0.1, "9.999999999")),
    ("sgdr(1e-7, 10.000000001)", _cosine(1e-7, "10.000000001")),
    ("cyclic(10, 2, 10.000000001)", _triangle(10, 2, "10.000000001")),
    ("cyclic(3e-4, 0.5, 9.999999999)", _triangle(3e-4, 0.5, "9.999999999")),
    ("poly(0.5, 9.999999999, cycle=true)", _cycling_poly(0.5, "9.999999999")),
    ("repeat(linear(1, 0, 7.7))", lambda t: float(1 - _position(t, Fraction("7.7")) / Fraction("7.7"))),
]


def _close(got, want, expr):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = np.abs(got - want) > 1e-12 * np.abs(want)
    assert not bad.any(), (expr, np.asarray(LARGE)[bad][:5], got[bad][:5], want[bad][:5])


@pytest.mark.parametrize("expr, exact", EXACT, ids=[e for e, _ in EXACT])
def test_the_reference_places_large_ticks_as_exact_arithmetic(expr, exact):
    want = [exact(t) for t in LARGE]
    _close(lrdsl.curve(expr, LARGE), want, expr)
    compiled = lrdsl.plan(expr)
    _close([compiled.value_at(t) for t in LARGE], want, expr + " (float path)")


@pytest.mark.parametrize("expr, exact", EXACT, ids=[e for e, _ in EXACT])
def test_jax_float64_places_large_ticks_as_exact_arithmetic(expr, exact):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    optax_backend = importlib.import_module("lrdsl.optax")
    with jax.enable_x64(True):
        fn = jax.jit(jax.vmap(optax_backend.schedule(expr)))
        got = np.asarray(fn(jnp.asarray(LARGE, jnp.int64)), np.float64)
    _close(got, [exact(t) for t in LARGE], expr + " (JAX float64)")


@pytest.mark.parametrize("expr", [
    "poly(1e-7, 1e-38, cycle=true)",
    "poly(10, 1e-46, end=0, cycle=true)",
    "cyclic(3e-4, 10, 1e-38steps, mode=exp_range)",
    "repeat(cyclic(0, 10, 1e-46st, mode=exp_range, d=1e9st))",
    "(repeat(anneal(10, 0.001, 1e-46, shape=exp)))[100steps:]",
    "min(0.5, repeat(anneal(1e-38, 2, 1e-38ep, shape=linear)))",
    "sgdr(2, 1e-46, min=0.1, decay=0.1)",
    "repeat(linear(1, 0, 0.03))",
])
def test_a_period_too_short_to_place_a_tick_in_is_refused(expr):
    with pytest.raises(lrdsl.LrdslError, match="shorter than 1/32 tick") as error:
        lrdsl.plan(expr, steps_per_epoch=3)
    assert "\n" not in str(error.value)
    assert str(error.value).split(":")[0].split("(")[0] in ("poly", "cyclic", "repeat", "sgdr")


def test_a_period_of_a_32nd_tick_stays_within_its_range_at_every_tick():
    # 1/32 tick: positions are whole multiples of 1/32 in [0, 1/32): 0 at every whole tick
    ticks = np.array([0, 1, 7, 2**20 + 1, 2**31 - 1, 2**40 + 3, 2**60], np.float64)
    got = lrdsl.plan("repeat(linear(1, 0, 0.03125))").values(ticks)
    np.testing.assert_array_equal(got, np.ones_like(ticks))
    # 0.1 tick past the ticks the position is exact for: still within [0, 1]
    got = lrdsl.plan("repeat(linear(1, 0, 0.1))").values(np.array([2.0**53 + 2, 2.0**60]))
    assert np.all((got >= 0) & (got <= 1))


def test_a_restart_longer_than_any_tick_is_its_peak():
    # restart 1 begins at 0.77 (tick 1) and lasts 0.77·1.7976931348623157e308 ticks
    expr = "sgdr(10, 1%, mult=1.7976931348623157e308, min=10)"
    got = lrdsl.curve(expr, np.arange(0, 200), total=77)
    np.testing.assert_array_equal(got, 10.0)
    got = lrdsl.curve("sgdr(2, 0.77, mult=1.7976931348623157e308)", [0, 1, 2, 10**6])
    want = [2.0, 2 * (1 + math.cos(math.pi * 0.23 / 1.3842237138439831e308)) / 2, 2.0, 2.0]
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_a_growing_sgdr_past_its_restart_table_is_refused_unless_bounded():
    refusal = r"mult=1\.0000001 restarts 32768 times by tick .*d="
    with pytest.raises(lrdsl.LrdslError, match=refusal) as error:
        lrdsl.plan("sgdr(2, 2, mult=1.0000001)")
    assert str(error.value).startswith("sgdr:") and "\n" not in str(error.value)
    # bounded within its table it is computed from the table alone: Fraction restarts
    expr = "sgdr(2, 2, mult=1.0000001, d=60000)"
    ticks = [0, 1, 2, 3, 4095, 59999, 60000]
    mult = Fraction("1.0000001")

    def exact(t):  # restart i begins at Bᵢ = 2·(multⁱ − 1)/(mult − 1), decimal to 60 digits
        with decimal.localcontext() as context:
            context.prec = 60
            m = decimal.Decimal("1.0000001")

            def begins(i):
                return 2 * (m ** i - 1) / (m - 1)
            i = int(math.log1p(t / 2 * 1e-7) / math.log(1.0000001))
            while begins(i) > t:
                i -= 1
            while begins(i + 1) <= t:
                i += 1
            into = (t - begins(i)) / (2 * m ** i)
            return 2 * (1 + math.cos(math.pi * float(into))) / 2
    want = [exact(t) for t in ticks]
    np.testing.assert_allclose(lrdsl.curve(expr, ticks), want, rtol=1e-12)
    compiled = lrdsl.plan(expr)
    np.testing.assert_allclose([compiled.value_at(t) for t in ticks], want, rtol=1e-12)
