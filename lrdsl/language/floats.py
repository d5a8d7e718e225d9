"""The array namespace for plain Python floats: the catalogue's formulas, one tick at a time.

It lets ``lrdsl parse``, the warm-up targets and the terminal plot evaluate a schedule exactly
without importing numpy (a third of a CLI call's time).  Same names and the same IEEE results
as ``numpy`` / ``keras.ops`` / ``jax.numpy`` where Python's ``math`` would raise instead
(overflow gives inf, log(0) gives −inf); tests hold it to numpy and to the oracle.
"""

import bisect
import math

cos, sin, sqrt = math.cos, math.sin, math.sqrt


def minimum(a, b):
    return a if a < b else b  # 3× faster than builtins.min for two floats (a hot path's cost)


def maximum(a, b):
    return a if a > b else b


def floor(x):
    return float(math.floor(x)) if math.isfinite(x) else x  # inf stays inf, as in numpy


def ceil(x):
    return float(math.ceil(x)) if math.isfinite(x) else x


def divide(a, b):
    return a / b


def zeros_like(t):
    return 0.0


def where(condition, a, b):
    return a if condition else b


def square(x):
    return x * x


def power(base, exponent):
    try:
        return float(base) ** exponent
    except OverflowError:
        return math.inf
    except ZeroDivisionError:  # 0 ** negative
        return math.inf


def exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def expm1(x):
    try:
        return math.expm1(x)
    except OverflowError:
        return math.inf


def log(x):
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def log1p(x):
    return math.log1p(x) if x > -1 else (-math.inf if x == -1 else math.nan)


def mod(a, b):
    return math.fmod(a, b)


# Table lookups (sgdr's restart ticks): one tick is a plain float, a table a tuple.

def array(values):
    return values


def shape(x):
    return ()


def reshape(x, shape):
    return x


def searchsorted(table, value, side="left"):
    return (bisect.bisect_right if side == "right" else bisect.bisect_left)(table, value)


def take(table, index):
    return table[int(index)]
