"""LANGUAGE.md §5's tolerances for a backend against the float64 reference, and the assertion
the backend tests share: (relative, share of the schedule's largest value), whichever is larger."""

import numpy as np

F32 = (4e-6, 1e-12)
F64 = (1e-12, 1e-14)
#: optax's two precisions: (jax_enable_x64, tolerance)
PRECISIONS = {"float32": (False, F32), "float64": (True, F64)}


def assert_close(got, want, tolerance, what=""):
    rel, of_peak = tolerance
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bound = np.maximum(rel * np.abs(want), of_peak * np.max(np.abs(want), initial=0.0))
    bad = ~(np.abs(got - want) <= bound)  # a NaN is bad too
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} values off, first at index "
                           f"{np.argmax(bad)}: got {got[bad][0]!r}, want {want[bad][0]!r}")
