"""Keras 3: a program's free values are variables the compiled step reads (LANGUAGE.md §8), on the
ticks clock with sp/tok through fixed constants (§9).

Expected values come from formulas written here, or from lrdsl.curve, the reference evaluator
every backend is compared with."""

import math
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
import lrdsl  # noqa: E402
import lrdsl.keras  # noqa: E402

#: float32 against the float64 reference (docs/language.md "Tolerances")
F32 = dict(rtol=4e-6, atol=1e-12)

TF = keras.backend.backend() == "tensorflow"


def _value(v):
    return float(keras.ops.convert_to_numpy(v))


# --- the VAE the issue names --------------------------------------------------------------------

class VAE(keras.Model):
    """A tiny dense VAE whose loss is recon + w·KL, w read from the callback's variable inside
    the compiled train step; the step returns what it used, and counts its traces."""

    def __init__(self, weight, traces):
        super().__init__()
        # a lambda and a namespace: Keras would track (copy) a variable, dict or list attribute
        self.weight, self.traces = weight, traces
        self.encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                                         keras.layers.Dense(4)])
        self.decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, activation="tanh"),
                                         keras.layers.Dense(6)])
        self.seed = keras.random.SeedGenerator(0)

    def call(self, x):
        return self.decoder(self.encoder(x)[:, :2])

    def train_step(self, data):
        import tensorflow as tf

        self.traces.n += 1  # Python runs here only while the step is traced
        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            stats = self.encoder(x)
            mean, logvar = stats[:, :2], stats[:, 2:]
            z = mean + keras.ops.exp(0.5 * logvar) * keras.random.normal(keras.ops.shape(mean), seed=self.seed)
            rec = keras.ops.mean(keras.ops.square(x - self.decoder(z)))
            kl = -0.5 * keras.ops.mean(1 + logvar - keras.ops.square(mean) - keras.ops.exp(logvar))
            # read now, as a tensor (on TF, convert_to_tensor of a variable is the variable,
            # which the returned logs would read again after the step's update)
            w = keras.ops.add(self.weight(), 0.0)
            loss = rec + w * kl
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        return {"loss": loss, "rec": rec, "kl_div": kl, "w": w}


class PerBatch(keras.callbacks.Callback):
    """Each batch's logs, and the free values' variables at batch begin and end."""

    def __init__(self, callback, names):
        super().__init__()
        self.callback, self.names = callback, names
        self.logs, self.begin, self.end = [], {n: [] for n in names}, {n: [] for n in names}

    def on_train_batch_begin(self, batch, logs=None):
        for name in self.names:
            self.begin[name].append(_value(self.callback.variable(name)))

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append({k: float(v) for k, v in (logs or {}).items()})
        for name in self.names:
            self.end[name].append(_value(self.callback.variable(name)))


@pytest.mark.skipif(not TF, reason="the VAE's train step uses tf.GradientTape")
def test_a_vae_reads_its_kl_weight_per_step_traced_once():
    program = "lr = 1e-3\nkl = linear(0, 1, 10ep)"
    steps, epochs = 4, 12  # 10 epochs of warm-up, then two holding 1
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")

    def run(epochs):
        callback = lrdsl.keras.callback(program, steps_per_epoch=steps)
        traces = SimpleNamespace(n=0)
        model = VAE(lambda: callback.variable("kl"), traces)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        reader = PerBatch(callback, ["kl"])
        history = model.fit(x, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
                            callbacks=[callback, reader])
        return traces.n, reader, history

    traces, reader, history = run(epochs)
    n = steps * epochs
    kl = np.minimum(np.arange(n + 1) / (10 * steps), 1.0)  # linear(0, 1, 10ep), from the formula
    reference = lrdsl.curve(program, n + 1, steps_per_epoch=steps)["kl"]
    np.testing.assert_allclose(kl, reference, rtol=1e-15)
    used = [logs["w"] for logs in reader.logs]  # what each step's loss read, inside the step
    np.testing.assert_allclose(used, reference[:n], **F32)
    # and it is what the loss was made of: loss = rec + w·KL
    np.testing.assert_allclose([logs["loss"] for logs in reader.logs],
                               [logs["rec"] + k * logs["kl_div"] for logs, k in zip(reader.logs, kl)],
                               rtol=1e-5)
    # read back between steps: during batch t the value of tick t, after it the next tick's
    np.testing.assert_allclose(reader.begin["kl"], reference[:n], **F32)
    np.testing.assert_allclose(reader.end["kl"], reference[1:], **F32)
    assert history.history["kl"] == pytest.approx(reference[steps - 1:n:steps].tolist(), rel=4e-6)
    # traced as often as the same model reading a constant variable without lrdsl (TF traces a
    # first call twice, for the optimizer's variables), and no more over 12 epochs than over 1
    plain = SimpleNamespace(n=0)
    model = VAE(lambda: fixed, plain)
    fixed = keras.Variable(0.5, trainable=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, batch_size=8, epochs=2, verbose=0)
    assert traces == plain.n == run(1)[0]
    assert plain.n <= 2


@pytest.mark.skipif(not TF, reason="the VAE's train step uses tf.GradientTape")
def test_steps_per_execution_still_writes_every_step():
    program = "lr = 1e-3\nkl = linear(0, 1, 16)"
    callback = lrdsl.keras.callback(program, steps_per_epoch=8)
    model = VAE(lambda: callback.variable("kl"), SimpleNamespace(n=0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=4)
    reader = PerBatch(callback, ["kl"])
    model.fit(np.ones((64, 6), "float32"), batch_size=8, epochs=2, verbose=0, shuffle=False,
              callbacks=[callback, reader])
    # one log per execution of 4 steps: the last step's weight, (4k + 3)/16
    used = [logs["w"] for logs in reader.logs]
    np.testing.assert_allclose(used, [(4 * k + 3) / 16 for k in range(4)], **F32)


# --- a program on a Keras SGD: lr, momentum and free values together -------------------------

PROGRAM = """
lr = warmup(4) >> cosine(0.1, 28)
momentum = anneal(0.95, 0.85, 32)
kl = linear(0, 1, 2ep)
batch_size = linear(8, 12, 32)
"""


class Hyper(keras.callbacks.Callback):
    """The LR and momentum each batch's update used (read before it runs and after)."""

    def __init__(self):
        super().__init__()
        self.lr, self.momentum = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.lr.append(_value(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        self.momentum.append(_value(self.model.optimizer.momentum))


def _fit(callbacks, epochs=2, model=None, optimizer=None, initial_epoch=0):
    x, y = np.random.default_rng(0).random((128, 3), "float32"), np.zeros((128, 1), "float32")
    if model is None:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False, callbacks=callbacks,
                        initial_epoch=initial_epoch)
    return model, history


def test_lr_momentum_and_free_values_in_one_program_on_sgd():
    callback = lrdsl.keras.callback(PROGRAM, steps_per_epoch=16)
    hyper, free = Hyper(), PerBatch(callback, ["kl", "batch_size"])
    _, history = _fit([callback, hyper, free])
    t = np.arange(32)
    reference = lrdsl.curve(PROGRAM, 32, steps_per_epoch=16)
    lr = np.where(t < 4, 0.1 * t / 4, 0.05 * (1 + np.cos(np.pi * (t - 4) / 28)))
    momentum = 0.85 + 0.05 * (1 + np.cos(np.pi * t / 32))
    np.testing.assert_allclose(reference["lr"], lr, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(reference["momentum"], momentum, rtol=1e-12)
    np.testing.assert_allclose(hyper.lr, reference["lr"], **F32)
    np.testing.assert_allclose(hyper.momentum, reference["momentum"], **F32)
    np.testing.assert_allclose(free.begin["kl"], t / 32, **F32)
    # an integer channel is read rounded, halves up, in the graph: 8 + t/8 is 8.5 at t = 4 -> 9
    batch_size = np.floor(8 + t / 8 + 0.5)
    assert free.begin["batch_size"] == batch_size.tolist()
    assert free.end["batch_size"][:-1] == batch_size[1:].tolist()
    assert free.begin["batch_size"][4] == 9.0
    assert history.history["batch_size"] == [batch_size[15], batch_size[31]]
    # free values are never written into the optimizer
    assert not hasattr(callback.model.optimizer, "kl")


def test_free_values_never_retrace_the_train_step():
    def traces(epochs):
        count = {"n": 0}

        class Counted(keras.layers.Layer):
            def call(self, x):
                count["n"] += 1  # Python runs here only while tracing
                return x * callback.variable("kl")
        callback = lrdsl.keras.callback("lr = 0.1\nkl = linear(0, 1, 40)", steps_per_epoch=16)
        model = keras.Sequential([keras.Input((3,)), Counted(), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        _fit([callback], epochs=epochs, model=model)
        return count["n"]
    once = traces(1)
    assert once == traces(4) and once <= 2  # the train step (and Keras's symbolic build)


def test_per_epoch_ticks_set_free_values_at_each_epoch():
    callback = lrdsl.keras.callback("lr = cosine(0.1, 4)\nema = anneal(0.9, 0.99, 4)")
    reader = PerBatch(callback, ["ema"])
    _, history = _fit([callback, reader], epochs=4)
    ema = [0.99 - 0.045 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    np.testing.assert_allclose(reader.begin["ema"][::16], ema, **F32)
    np.testing.assert_allclose(reader.end["ema"][15::16], ema, **F32)
    np.testing.assert_allclose(history.history["ema"], ema, **F32)


def test_samples_and_tokens_through_fixed_constants():
    program = "lr = linear(0.1, 0.05, 1k sp)\nkl = linear(0, 1, 2k tok)"
    callback = lrdsl.keras.callback(program, samples_per_step=8, tokens_per_sample=16, steps_per_epoch=16)
    hyper, free = Hyper(), PerBatch(callback, ["kl"])
    _fit([callback, hyper, free])
    t = np.arange(32)
    np.testing.assert_allclose(hyper.lr, 0.1 - 0.05 * t * 8 / 1000, **F32)  # 8 samples a step
    np.testing.assert_allclose(free.begin["kl"], np.minimum(t * 8 * 16 / 2000, 1), **F32)
    assert callback.schedule.get_config()["constants"] == {"samples_per_step": 8, "tokens_per_sample": 16}
    assert lrdsl.keras.schedule("linear(0.1, 0, 1k tok)", tokens_per_step=100).plan.value_at(5) == \
        pytest.approx(0.1 * (1 - 500 / 1000))


# --- state: saving, resuming, rebasing --------------------------------------------------------

def test_save_load_resume_carries_every_channel(tmp_path):
    spec = dict(steps_per_epoch=16)
    callback = lrdsl.keras.callback(PROGRAM, **spec)
    model, _ = _fit([callback])
    saved = lrdsl.keras._given_learning_rate(model.optimizer)  # the Schedule object itself
    assert saved.get_config()["targets"] == {"momentum": "anneal(0.95,0.85,32)", "kl": "linear(0,1,2ep)",
                                             "batch_size": "linear(8,12,32)"}
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    restored = lrdsl.keras._given_learning_rate(loaded.optimizer)
    assert set(restored.free) == {"kl", "batch_size"} and set(restored.targets) == {"momentum"}
    again = lrdsl.keras.callback(PROGRAM, **spec)
    hyper, free = Hyper(), PerBatch(again, ["kl", "batch_size"])
    _fit([again, hyper, free], model=loaded, epochs=4, initial_epoch=2)  # ticks 32 … 63
    t = np.arange(32, 64)
    reference = lrdsl.curve(PROGRAM, t, steps_per_epoch=16)
    np.testing.assert_allclose(free.begin["kl"], reference["kl"], **F32)
    np.testing.assert_allclose(free.begin["kl"], np.ones(32), **F32)
    assert free.begin["batch_size"] == [12.0] * 32
    np.testing.assert_allclose(hyper.momentum, reference["momentum"], **F32)
    assert again.schedule is restored  # picked up, not started over


def test_a_changed_free_value_continues_only_with_rebase(tmp_path):
    model, _ = _fit([lrdsl.keras.callback("lr = 0.1\nkl = linear(0, 1, 64)", steps_per_epoch=16)])
    model.save(tmp_path / "m.keras")
    edited = "lr = 0.1\nkl = linear(0, 0.5, 64)"
    with pytest.raises(lrdsl.LrdslError, match="rebase=True"):
        _fit([lrdsl.keras.callback(edited, steps_per_epoch=16)], model=keras.models.load_model(tmp_path / "m.keras"))
    callback = lrdsl.keras.callback(edited, steps_per_epoch=16, rebase=True)
    free = PerBatch(callback, ["kl"])
    _fit([callback, free], model=keras.models.load_model(tmp_path / "m.keras"), epochs=3, initial_epoch=2)
    np.testing.assert_allclose(free.begin["kl"], 0.5 * np.arange(32, 48) / 64, **F32)


def test_the_callback_config_is_the_whole_program():
    callback = lrdsl.keras.callback("lr = 0.1\nkl = linear(0, 1, 8)", momentum="0.9", samples_per_step=4)
    config = callback.get_config()
    assert config["expr"] == "lr = 0.1\nmomentum = 0.9\nkl = linear(0,1,8)"
    assert config["samples_per_step"] == 4
    copy = lrdsl.keras.Callback(**config)
    assert copy.schedule.identity() == callback.schedule.identity()
    assert lrdsl.keras.callback("cosine(0.1, 8)").get_config()["expr"] == "cosine(0.1,8)"


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: lrdsl.keras.callback("lr = 0.1\nkl = linear(0, 1, 1k sp)", clock="samples", samples_per_step=8),
     r"clock='samples'.*Keras fit does not report.*samples_per_step"),
    (lambda: lrdsl.keras.schedule("linear(0.1, 0, 1k tok)", clock="tokens"), r"clock='tokens'.*ticks"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nkl = linear(0, 1, 1k sp)"), "samples_per_step"),
    (lambda: lrdsl.keras.callback("0.1", samples_per_stp=8), r"samples_per_stp.*did you mean 'samples_per_step'"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nkl = 0.5 | plateau(loss)"), "only lr may carry"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nkl = 0.5", momentum="0.9 | plateau(loss)"),
     "momentum: only the learning rate"),
    (lambda: lrdsl.keras.Schedule("0.1", targets={"kl": "0.5 | plateau(loss)"}), "kl: only the learning rate"),
    (lambda: lrdsl.keras.callback("kl = linear(0, 1, 8)"), r"no lr.*lr = 0.001"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nema = anneal(0.9, 1.1, 8)"), "ema must stay at most 1"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nbatch_size = linear(0, 8, 8)"), "integer ≥ 1"),
    (lambda: lrdsl.keras.callback("lr = cosine(0.1, 2ep)\nkl = linear(0, 1, 100st)"), "steps_per_epoch"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nkl = linear(1e-50, 1, 8)"), "float32"),
    (lambda: lrdsl.keras.schedule("lr = 0.1\nkl = linear(0, 1, 8)"), r"lrdsl.keras.callback\(program\)"),
    (lambda: lrdsl.keras.callback("lr = 0.1\nmomentun = 0.9"), "misspelt"),
])
def test_refused_with_a_clear_error(call, match):
    with pytest.raises(lrdsl.LrdslError, match=match):
        call()


def test_variable_names_the_free_values():
    callback = lrdsl.keras.callback("lr = 0.1\nmomentum = 0.9\nkl = linear(0, 1, 8)\nloss.aux = 0.5")
    assert _value(callback.variable("loss.aux")) == 0.5
    assert not callback.variable("kl").trainable and callback.variable("kl").dtype == "float32"
    with pytest.raises(lrdsl.LrdslError, match=r"'momentum' is an optimizer target.*kl, loss.aux"):
        callback.variable("momentum")
    with pytest.raises(lrdsl.LrdslError, match=r"'ema' is not in the program.*kl, loss.aux"):
        callback.variable("ema")


# --- other Keras backends (a process each: Keras reads KERAS_BACKEND once) -------------------

OTHER_BACKEND = textwrap.dedent("""
    import os, sys, numpy as np
    import keras, lrdsl, lrdsl.keras
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    program = "lr = 0.05\\nkl = linear(0, 1, 12)\\nbatch_size = linear(8, 12, 16)"
    cb = lrdsl.keras.callback(program, steps_per_epoch=16)  # 64 samples in batches of 4
    used = []

    class Weighted(keras.layers.Layer):
        def call(self, x):
            w = keras.ops.add(cb.variable("kl"), 0.0)
            if keras.backend.backend() == "torch":  # eager: what this step's forward pass read
                used.append((float(keras.ops.convert_to_numpy(w)),
                             float(keras.ops.convert_to_numpy(cb.variable("batch_size")))))
            self.add_loss(w * keras.ops.mean(keras.ops.square(x)))
            return x
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), Weighted(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    x = np.random.RandomState(0).randn(64, 4).astype("float32")
    try:
        model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[cb])
    except lrdsl.LrdslError as error:
        print("refused:", error)
        sys.exit(0)
    reference = lrdsl.curve(program, 16, steps_per_epoch=16)
    used = used[-16:]  # the 16 steps (Keras calls the layer symbolically before them)
    np.testing.assert_allclose([u[0] for u in used], reference["kl"], rtol=4e-6, atol=1e-12)
    assert [u[1] for u in used] == reference["batch_size"].tolist()
    print("ok", len(used))
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend, expected", [("torch", "ok 16"), ("jax", "refused:")])
def test_free_values_on_the_torch_backend_and_refused_on_jax(backend, expected):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", OTHER_BACKEND], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(expected), last
    if backend == "jax":
        assert "tensorflow or torch Keras backend" in last and "kl" in last


def test_a_model_fit_before_the_callback_runs_the_program_from_then_on():
    # fit makes its train function before callbacks start: one traced by an earlier fit
    # without lrdsl must not keep running the old LR and writing no free value
    x, y = np.random.default_rng(0).random((32, 3), "float32"), np.ones((32, 1), "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = keras.ops.convert_to_numpy(model.layers[0].kernel).copy()
    callback = lrdsl.keras.callback("lr = 0\nkl = linear(0, 1, 8)", steps_per_epoch=4)
    free = PerBatch(callback, ["kl"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback, free])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[0].kernel), before)  # lr = 0
    np.testing.assert_allclose(free.end["kl"], np.arange(5, 9) / 8, **F32)  # ticks 4 … 7, then the next
