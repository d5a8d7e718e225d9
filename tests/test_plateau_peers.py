"""The v3 plateau options against the libraries they come from (LANGUAGE.md §4).

- ``atol=``: optax's ``contrib.reduce_on_plateau(factor, patience, rtol, atol, cooldown)`` driven
  with the same values as ``1 | plateau(m, factor, patience=p−1, threshold=rtol, atol=atol,
  cooldown=c)``: the scale after every report is the same number.
- ``best=running``: scikit-learn's ``learning_rate='adaptive'`` (factor 0.2, ``tol`` as an abs
  threshold), its LR observed from the library itself: MLPRegressor's optimizer after each
  ``partial_fit`` epoch; SGDRegressor's from the weights of a one-sample, one-weight problem,
  where an epoch is one update w ← w·(1 − eta) and the loss is sklearn's squared loss ½·w².
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lrdsl
from lrdsl.language.plan import plan
from lrdsl.language.plateau import PlateauState


def _scales(expr: str, values) -> list[float]:
    """The plateau's scale after each report (the reference's state, fed one value at a time)."""
    state = PlateauState(plan(expr).plateau)
    return [state.report_value(float(v)) for v in values]


def _creeping(seed: int, n: int = 80) -> np.ndarray:
    """A loss that mostly creeps down by less than the tolerances below, with stalls and jumps."""
    rng = np.random.RandomState(seed)
    steps = rng.choice([0.0, 0.002, 0.01, 0.03, 0.1, -0.02], size=n, p=[0.2, 0.25, 0.25, 0.15, 0.1, 0.05])
    return 2.0 - np.cumsum(steps)


@pytest.mark.parametrize("factor, patience, rtol, atol, cooldown", [
    (0.5, 1, 0.0, 0.02, 0), (0.5, 3, 0.01, 0.005, 0), (0.3, 2, 0.005, 0.02, 2), (0.7, 4, 0.02, 0.0, 1),
])
def test_atol_is_optax_reduce_on_plateau(factor, patience, rtol, atol, cooldown):
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    values = _creeping(patience * 7 + cooldown)
    with jax.enable_x64(True):
        tx = optax.contrib.reduce_on_plateau(factor=factor, patience=patience, rtol=rtol, atol=atol,
                                             cooldown=cooldown, accumulation_size=1)
        params = jnp.zeros([], jnp.float64)
        state = tx.init(params)
        update = jax.jit(tx.update)
        theirs = []
        for value in values:
            _, state = update(params, state, value=jnp.asarray(value, jnp.float64))
            theirs.append(float(state.scale))
    expr = f"1 | plateau(m, {factor}, patience={patience - 1}, threshold={rtol}, atol={atol}, cooldown={cooldown})"
    assert _scales(expr, values) == theirs
    assert len(set(theirs)) >= 3  # optax did cut, more than once
    if atol > 0:  # and atol mattered: without it the sequence differs
        assert _scales(expr.replace(f", atol={atol}", ""), values) != theirs


def _mlp_run(tol, n_iter_no_change, epochs, fit=False):
    from sklearn.neural_network import MLPRegressor

    rng = np.random.RandomState(0)
    X = rng.randn(64, 3)
    y = X @ np.array([1.0, -2.0, 0.5])
    model = MLPRegressor(hidden_layer_sizes=(4,), activation="identity", solver="sgd", learning_rate="adaptive",
                         learning_rate_init=0.002, momentum=0.0, alpha=0.0, batch_size=64, shuffle=False,
                         tol=tol, n_iter_no_change=n_iter_no_change, random_state=0, max_iter=epochs)
    if fit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning
            model.fit(X, y)
        return list(model.loss_curve_), [model._optimizer.learning_rate]
    lrs = []
    for _ in range(epochs):  # one epoch each: the adaptive rate and its counts carry over
        model.partial_fit(X, y)
        lrs.append(model._optimizer.learning_rate)
    return list(model.loss_curve_), lrs


def test_best_running_is_sklearn_mlp_adaptive():
    pytest.importorskip("sklearn")
    n, tol, epochs = 2, 0.1, 16  # 16 epochs: sklearn stops cutting once its rate is ≤ 1e-6
    losses, lrs = _mlp_run(tol, n, epochs)
    assert all(0 < a - b < tol for a, b in zip(losses, losses[1:]))  # creeping down, never by tol
    # fit() runs the same epochs as partial_fit one at a time
    assert _mlp_run(tol, n, epochs, fit=True) == (losses, lrs[-1:])
    # MLP cuts after more than n_iter_no_change bad epochs: patience = n
    expr = f"0.002 | plateau(loss, 0.2, patience={n}, threshold={tol}, threshold_mode=abs, best=running)"
    ours = lrdsl.curve(expr, epochs + 1, metrics={"loss": losses})[1:]  # tick k+1: after k+1 reports
    np.testing.assert_allclose(ours, lrs, rtol=1e-12)
    assert min(lrs) < 1e-5  # sklearn cut four times and more
    improvement = lrdsl.curve(expr.replace(", best=running", ""), epochs + 1, metrics={"loss": losses})[1:]
    assert not np.allclose(improvement, lrs, rtol=1e-6)  # the running best is what makes it sklearn


def _sgd_lrs(eta0, tol, n, epochs):
    """SGDRegressor's rate in each epoch, and the loss it saw, on X=[[1]], y=[0], w₀=1, no
    intercept or penalty: epoch k updates w once, w_k = w_{k−1}·(1 − eta_k), after a loss of
    ½·w_{k−1}² (sklearn's SquaredLoss).  fit(max_iter=k) is deterministic: its coef_ is w_k."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDRegressor

    weights = [1.0]
    for k in range(1, epochs + 1):
        model = SGDRegressor(learning_rate="adaptive", eta0=eta0, tol=tol, n_iter_no_change=n, max_iter=k,
                             penalty=None, alpha=0.0, fit_intercept=False, shuffle=False, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(np.array([[1.0]]), np.array([0.0]), coef_init=np.array([1.0]))
        assert model.n_iter_ == k
        weights.append(float(model.coef_[0]))
    etas = [1 - b / a for a, b in zip(weights, weights[1:])]
    losses = [0.5 * w * w for w in weights[:-1]]
    return etas, losses


def test_best_running_is_sklearn_sgd_adaptive():
    pytest.importorskip("sklearn")
    eta0, tol, n, epochs = 0.02, 0.05, 3, 18
    etas, losses = _sgd_lrs(eta0, tol, n, epochs)
    assert all(0 < a - b < tol for a, b in zip(losses, losses[1:]))
    # SGD cuts at n_iter_no_change bad epochs: patience = n − 1; epoch k runs at the rate after
    # the k − 1 reports before it
    expr = f"{eta0} | plateau(loss, 0.2, patience={n - 1}, threshold={tol}, threshold_mode=abs, best=running)"
    ours = lrdsl.curve(expr, epochs, metrics={"loss": losses})
    np.testing.assert_allclose(ours, etas, rtol=1e-6)  # etas read back from w, to ~1e-11
    assert min(etas) < eta0 * 0.2 ** 4
    improvement = lrdsl.curve(expr.replace(", best=running", ""), epochs, metrics={"loss": losses})
    assert not np.allclose(improvement, etas, rtol=1e-3)
