"""The array namespace for plain Python floats: the catalogue's formulas, one tick at a time.

It lets ``lrdsl parse``, the warm-up targets and the terminal plot evaluate a schedule exactly
without importing numpy (a third of a CLI call's time).  Same names as ``numpy``/``keras.ops``.
"""

import math

cos, floor, ceil, sqrt, log = math.cos, math.floor, math.ceil, math.sqrt, math.log
minimum, maximum = min, max


def zeros_like(t):
    return 0.0


def where(condition, a, b):
    return a if condition else b


def power(base, exponent):
    try:
        return float(base) ** exponent
    except OverflowError:
        return math.inf


def exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def mod(a, b):
    return math.fmod(a, b)
