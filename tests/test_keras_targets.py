"""Keras 3: momentum / beta_1, beta_2 and weight decay driven inside the compiled step (LANGUAGE.md §7)."""

import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
import lrdsl  # noqa: E402
import lrdsl.keras  # noqa: E402

F32 = dict(rtol=2e-6, atol=1e-9)
MOMENTUM = "anneal(0.95, 0.85, 16)"
WEIGHT_DECAY = "anneal(0, 0.01, 16, shape=linear)"
BETA2 = "anneal(0.99, 0.999, 16)"


def _value(v):
    return float(keras.ops.convert_to_numpy(v))


class Reader(keras.callbacks.Callback):
    """The optimizer's hyperparameters after each batch: the values that batch's update used."""

    def __init__(self, names):
        super().__init__()
        self.names, self.seen = names, {n: [] for n in names}

    def on_train_batch_end(self, batch, logs=None):
        for name in self.names:
            self.seen[name].append(_value(getattr(self.model.optimizer, name)))


def _fit(optimizer, callbacks, epochs=2, model=None):
    x, y = np.random.default_rng(0).random((64, 3), "float32"), np.zeros((64, 1), "float32")
    if model is None:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks)
    return model, history


@pytest.mark.parametrize("optimizer, momentum_attr", [
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), "momentum"),
    (lambda: keras.optimizers.RMSprop(0.01, momentum=0.5), "momentum"),
    (lambda: keras.optimizers.Adam(0.01), "beta_1"),
    (lambda: keras.optimizers.AdamW(0.01), "beta_1"),
])
def test_targets_read_back_per_batch_equal_curve(optimizer, momentum_attr):
    opt = optimizer()
    names = [momentum_attr, "weight_decay"] + (["beta_2"] if momentum_attr == "beta_1" else [])
    reader = Reader(names)
    targets = dict(momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    if "beta_2" in names:
        targets["beta2"] = BETA2
    _, history = _fit(opt, [lrdsl.keras.callback("cosine(0.1, 16)", steps_per_epoch=8, **targets), reader])
    np.testing.assert_allclose(reader.seen[momentum_attr], lrdsl.curve(MOMENTUM, 16), **F32)
    np.testing.assert_allclose(reader.seen["weight_decay"], lrdsl.curve(WEIGHT_DECAY, 16), **F32)
    if "beta_2" in names:
        np.testing.assert_allclose(reader.seen["beta_2"], lrdsl.curve(BETA2, 16), **F32)
    # the epoch logs: Keras's own key for the LR, and each target, at the epoch's last tick
    assert set(history.history) >= {"learning_rate", "momentum", "weight_decay"}
    np.testing.assert_allclose(history.history["momentum"], lrdsl.curve(MOMENTUM, [7, 15]), **F32)
    np.testing.assert_allclose(history.history["learning_rate"], lrdsl.curve("cosine(0.1, 16)", [7, 15]), **F32)


def test_an_update_matches_a_hand_computation():
    # one weight w, loss = mean(w·x) with x = 1: the gradient is 1 at every step
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    lr, momentum, wd = "linear(0.1, 0.05, 6)", "anneal(0.9, 0.5, 6, shape=linear)", "0.1"
    model.fit(np.ones((6, 1), "float32"), np.zeros((6, 1), "float32"), batch_size=1, epochs=1, verbose=0,
              shuffle=False, callbacks=[lrdsl.keras.callback(lr, momentum=momentum, weight_decay=wd,
                                                             steps_per_epoch=6)])
    w, velocity = 1.0, 0.0
    for eta, m, decay in zip(lrdsl.curve(lr, 6), lrdsl.curve(momentum, 6), lrdsl.curve(wd, 6)):
        w -= w * decay * eta  # Keras's decoupled weight decay, applied before the update
        velocity = m * velocity - eta * 1.0
        w += velocity
    assert _value(model.layers[0].kernel[0, 0]) == pytest.approx(w, rel=1e-5)


def test_changing_targets_never_retrace_the_train_step():
    def traces(epochs):
        opt = keras.optimizers.SGD(0.1, momentum=0.9)
        count = {"n": 0}
        update = opt.update_step

        def counting(*args, **kwargs):  # Python runs here only while tracing
            count["n"] += 1
            return update(*args, **kwargs)
        opt.update_step = counting
        _fit(opt, [lrdsl.keras.callback("cosine(0.1, 40)", momentum="anneal(0.95, 0.85, 40)",
                                        weight_decay="anneal(0, 0.01, 40, shape=linear)",
                                        steps_per_epoch=8)], epochs=epochs)
        return count["n"]
    once, five = traces(1), traces(5)
    assert once == five and once <= 2 * 2  # kernel and bias, traced once (plus Keras's symbolic build)


def test_save_load_keeps_the_targets_and_a_csv_logger_names_them_like_keras(tmp_path):
    spec = dict(momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, steps_per_epoch=8)
    reader = Reader(["momentum"])
    log = tmp_path / "log.csv"
    model, _ = _fit(keras.optimizers.SGD(0.1, momentum=0.9),
                    [lrdsl.keras.callback("cosine(0.1, 32)", **spec), reader,
                     keras.callbacks.CSVLogger(str(log))])
    with open(log, newline="") as f:
        header = next(csv.reader(f))
    assert {"learning_rate", "momentum", "weight_decay"} <= set(header)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config()["momentum"] == pytest.approx(reader.seen["momentum"][-1], rel=1e-6)
    later = Reader(["momentum"])
    _fit(None, [lrdsl.keras.callback("cosine(0.1, 32)", **spec), later], model=loaded)
    np.testing.assert_allclose(later.seen["momentum"], lrdsl.curve(MOMENTUM, np.arange(16, 32)), **F32)


def test_a_loaded_model_continues_under_an_edited_expression_only_with_rebase(tmp_path):
    model, _ = _fit(keras.optimizers.SGD(0.1, momentum=0.9),
                    [lrdsl.keras.callback("warmup(4) >> 0.1", steps_per_epoch=8)])
    model.save(tmp_path / "m.keras")
    wsd = "warmup(4) >> 0.1 >> cooldown(16)"
    loaded = keras.models.load_model(tmp_path / "m.keras")
    with pytest.raises(lrdsl.LrdslError, match="rebase=True"):
        _fit(None, [lrdsl.keras.callback(wsd, steps_per_epoch=8, total=32)], model=loaded)
    loaded = keras.models.load_model(tmp_path / "m.keras")
    lrs = []

    class LR(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            lrs.append(_value(self.model.optimizer.learning_rate))
    _fit(None, [lrdsl.keras.callback(wsd, steps_per_epoch=8, total=32, rebase=True), LR()], model=loaded)
    np.testing.assert_allclose(lrs, lrdsl.curve(wsd, np.arange(16, 32), total=32), **F32)


def test_bad_targets_are_clear_errors():
    with pytest.raises(lrdsl.LrdslError, match="must stay below 1"):
        lrdsl.keras.callback("0.1", momentum="anneal(0.9, 1.1, 10)")
    with pytest.raises(lrdsl.LrdslError, match="only the learning rate"):
        lrdsl.keras.callback("0.1", momentum="0.9 | plateau(loss)")
    with pytest.raises(lrdsl.LrdslError, match="Adagrad has no momentum"):
        _fit(keras.optimizers.Adagrad(0.1), [lrdsl.keras.callback("0.1", momentum="0.9")])
    with pytest.raises(lrdsl.LrdslError, match="momentum=0"):
        _fit(keras.optimizers.SGD(0.1), [lrdsl.keras.callback("0.1", momentum="0.9")])
