"""Keras backend: parity with Keras's own schedules and ReduceLROnPlateau, with lrdsl.curve,
with the PyTorch backend; real fit() runs; save/load; the torch Keras backend."""

import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
import lrdsl  # noqa: E402
import lrdsl.keras  # noqa: E402
from cases import LONG, long_ticks, value_params  # noqa: E402

schedules = keras.optimizers.schedules
F32 = dict(rtol=2e-6, atol=1e-8)


def keras_values(schedule, n):
    return np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in range(n)])


def ours(expr, n, **units):
    sched = lrdsl.keras.schedule(expr, **units)
    return np.asarray(keras.ops.convert_to_numpy(sched(np.arange(n))), dtype=np.float64)


NATIVE = []
for staircase in (False, True):
    NATIVE.append((f"exp(0.1, 0.5, every=10, staircase={str(staircase).lower()})",
                   lambda s=staircase: schedules.ExponentialDecay(0.1, 10, 0.5, staircase=s), 60))
    NATIVE.append((f"invtime(0.1, 0.5, every=10, staircase={str(staircase).lower()})",
                   lambda s=staircase: schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=s), 60))
for cycle in (False, True):
    NATIVE.append((f"poly(0.1, 20, end=0.001, power=2, cycle={str(cycle).lower()})",
                   lambda c=cycle: schedules.PolynomialDecay(0.1, 20, 0.001, power=2, cycle=c), 70))
NATIVE += [
    ("cosine(0.1, 50)", lambda: schedules.CosineDecay(0.1, 50), 70),
    ("cosine(0.1, 50, min=0.01)", lambda: schedules.CosineDecay(0.1, 50, alpha=0.1), 70),
    # Keras counts decay_steps after the warm-up; its warm-up starts at initial_learning_rate
    ("warmup(10) >> cosine(0.1, 50)",
     lambda: schedules.CosineDecay(0.0, 50, warmup_target=0.1, warmup_steps=10), 70),
    ("warmup(10, start=0.1) >> cosine(0.2, 40, min=0.02)",
     lambda: schedules.CosineDecay(0.02, 40, alpha=0.1, warmup_target=0.2, warmup_steps=10), 60),
    ("sgdr(0.1, 10)", lambda: schedules.CosineDecayRestarts(0.1, 10, t_mul=1.0, m_mul=1.0), 45),
    ("sgdr(0.1, 10, mult=2, decay=0.5)",
     lambda: schedules.CosineDecayRestarts(0.1, 10, t_mul=2.0, m_mul=0.5), 80),
    # lrdsl switches at the boundary tick, Keras one tick later: boundaries shift by one
    ("piecewise([10, 25], [0.1, 0.01, 0.001])",
     lambda: schedules.PiecewiseConstantDecay([9, 24], [0.1, 0.01, 0.001]), 40),
    # quantize is staircase=True for any schedule: ExponentialDecay's staircase over n ticks is
    # the continuous decay held per n ticks, rate^n per step of the stairs
    ("quantize(exp(0.1, 0.5), 10)",
     lambda: schedules.ExponentialDecay(0.1, 10, 0.5 ** 10, staircase=True), 60),
    ("quantize(exp(0.1, 0.5, every=10), 10)",
     lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True), 60),
    ("quantize(invtime(0.1, 0.5, every=10), 10)",
     lambda: schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True), 60),
    # a quantized linear decay is piecewise constant at its period starts (Keras a tick later)
    ("quantize(linear(0.1, 0, 40), 10)",
     lambda: schedules.PiecewiseConstantDecay([9, 19, 29, 39], [0.1, 0.075, 0.05, 0.025, 0.0]), 60),
]


@pytest.mark.parametrize("expr, make, n", NATIVE, ids=[e for e, _, _ in NATIVE])
def test_parity_with_keras_schedules(expr, make, n):
    np.testing.assert_allclose(ours(expr, n), keras_values(make(), n), **F32)
    np.testing.assert_allclose(ours(expr, n), lrdsl.curve(expr, n), **F32)


class _FakeModel:
    """Just enough of a model for a callback: an optimizer."""

    def __init__(self, lr):
        self.optimizer = keras.optimizers.SGD(learning_rate=lr)


def _drive(callback, model, series, monitor="val_loss"):
    callback.set_model(model)
    callback.on_train_begin()
    lrs = []
    for epoch, value in enumerate(series):
        callback.on_epoch_begin(epoch)
        lrs.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
        callback.on_epoch_end(epoch, {monitor: value})
    return lrs


@pytest.mark.parametrize("patience", [1, 2, 4])
@pytest.mark.parametrize("min_delta", [0.0, 0.01, 0.05])
@pytest.mark.parametrize("mode", ["min", "max"])
def test_parity_with_keras_reduce_on_plateau(patience, min_delta, mode):
    series = [1.0, 0.9, 0.89, 0.9, 0.88, 0.88, 0.8, 0.8, 0.8, 0.85, 0.79, 0.79, 0.79, 0.79, 0.79, 0.6]
    series = series if mode == "min" else [-v for v in series]
    native = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=patience,
                                               min_delta=min_delta, mode=mode, min_lr=0.01)
    theirs = _drive(native, _FakeModel(0.1), series)
    # LANGUAGE.md §4: Keras patience=p+1, min_delta=δ ≙ lrdsl patience=p, threshold=δ, abs
    expr = (f"0.1 | plateau(val_loss, 0.5, patience={patience - 1}, mode={mode}, "
            f"threshold={min_delta}, threshold_mode=abs, min=0.01)")
    mine = _drive(lrdsl.keras.callback(expr), _FakeModel(0.5), series)
    np.testing.assert_allclose(mine, theirs, **F32)
    np.testing.assert_allclose(mine, lrdsl.curve(expr, len(series), metrics={"val_loss": series}), **F32)


@pytest.mark.parametrize("case", value_params())
def test_every_core_case_equals_curve_and_the_torch_backend(case):
    options = dict(case.get("options", {}))
    metrics = options.pop("metrics", None)
    every = options.pop("report_every", None) or options.get("steps_per_epoch") or 1
    ticks = case["ticks"]
    n = int(max(ticks, default=0)) + 1
    sched = lrdsl.keras.Schedule(case["expr"], tick="step", **options)
    optimizer = keras.optimizers.SGD(learning_rate=sched)
    series = next(iter(metrics.values())) if metrics else []
    used = []
    for tick in range(n):
        if metrics and tick % every == 0 and 0 < tick // every <= len(series):
            sched.report({k: v[tick // every - 1] for k, v in metrics.items()})
        if tick in ticks:
            optimizer.iterations.assign(tick)  # what the optimizer reads its LR from
            used.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
    want = lrdsl.curve(case["expr"], ticks, metrics=metrics, report_every=every if metrics else None,
                       **options)
    np.testing.assert_allclose(used, want, **F32)
    torch = pytest.importorskip("torch")
    torch_backend = pytest.importorskip("lrdsl.torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    torch_sched = torch_backend.scheduler(opt, case["expr"], **options)
    torch_lrs = [opt.param_groups[0]["lr"]]
    for tick in range(1, n):
        torch_sched.step()
        if metrics and tick % every == 0 and tick // every <= len(series):
            torch_sched.report({k: v[tick // every - 1] for k, v in metrics.items()})
        torch_lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(used, [torch_lrs[int(t)] for t in ticks], **F32)


def _data(n=64):
    rng = np.random.RandomState(0)
    x = rng.randn(n, 4).astype("float32")
    return x, (x.sum(1) > 0).astype("float32")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(1, activation="sigmoid")])


class LrRecorder(keras.callbacks.Callback):
    """The LR the optimizer uses for each batch, read back before the batch runs."""

    def __init__(self):
        super().__init__()
        self.lrs = []

    def on_train_batch_begin(self, batch, logs=None):
        self.lrs.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


@pytest.mark.parametrize("jit", [False, True])
def test_fit_with_a_per_step_schedule(jit):
    x, y = _data()
    expr = "warmup(1ep) >> cosine(0.1, 3ep)"
    model, recorder = _model(), LrRecorder()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lrdsl.keras.schedule(expr, steps_per_epoch=4)),
                  loss="binary_crossentropy", jit_compile=jit)
    model.fit(x, y, batch_size=16, epochs=5, verbose=0, shuffle=False, callbacks=[recorder])
    np.testing.assert_allclose(recorder.lrs, lrdsl.curve(expr, 20, steps_per_epoch=4), **F32)


PLATEAU = "warmup(2) >> cosine(0.1, 10) | plateau(loss, 0.5, patience=1, threshold=10)"
# threshold=10 (rel): no report ever improves, so the scale halves every second report


def test_fit_with_the_callback_per_epoch_ticks_and_plateau(tmp_path):
    x, y = _data()
    model, recorder = _model(), LrRecorder()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False,
                        callbacks=[lrdsl.keras.callback(PLATEAU), recorder,
                                   keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    want = lrdsl.curve(PLATEAU, 6, metrics={"loss": history.history["loss"]})
    np.testing.assert_allclose(recorder.lrs[::4], want, **F32)
    assert all(np.allclose(recorder.lrs[4 * e:4 * e + 4], want[e], **F32) for e in range(6))
    np.testing.assert_allclose(history.history["learning_rate"], want, **F32)
    import csv

    with open(tmp_path / "log.csv", newline="") as f:
        logged = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    np.testing.assert_allclose(logged, history.history["learning_rate"], rtol=1e-12)
    assert want[5] < lrdsl.curve(PLATEAU, 6)[5]  # the plateau did act


def test_fit_with_the_callback_per_step_ticks_and_plateau():
    x, y = _data()
    model, recorder = _model(), LrRecorder()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0, shuffle=False,
                        callbacks=[lrdsl.keras.callback(PLATEAU, steps_per_epoch=4), recorder])
    want = lrdsl.curve(PLATEAU, 20, steps_per_epoch=4, metrics={"loss": history.history["loss"]})
    np.testing.assert_allclose(recorder.lrs, want, **F32)
    # the logged LR is the one the epoch's last step used (tick 4e + 3), not the next tick's
    np.testing.assert_allclose(history.history["learning_rate"], want[3::4], **F32)


def test_callback_steps_per_epoch_is_checked_against_the_steps_fit_runs():
    """64 samples in batches of 16 look like 4 steps an epoch; validation_split=0.25 trains on 48:
    3 steps.  steps_per_epoch=4 would stretch every ep by 4/3: an error after the first epoch."""
    x, y = _data(64)
    expr = "warmup(1ep) >> cosine(0.1, 3ep)"
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
    with pytest.raises(lrdsl.UnitError) as raised:
        model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0,
                  callbacks=[lrdsl.keras.callback(expr, steps_per_epoch=4)])
    message = str(raised.value)
    assert "steps_per_epoch=4 but fit ran 3 steps in its first epoch" in message
    assert "pass steps_per_epoch=3" in message and "\n" not in message
    model, recorder = _model(), LrRecorder()  # the count it names is the one that gives curve's LRs
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0, shuffle=False,
              callbacks=[lrdsl.keras.callback(expr, steps_per_epoch=3), recorder])
    np.testing.assert_allclose(recorder.lrs, lrdsl.curve(expr, 6, steps_per_epoch=3), **F32)


def test_missing_monitor_is_an_error_naming_the_metrics_present():
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    with pytest.raises(lrdsl.MetricError, match="holds only: loss"):
        model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                  callbacks=[lrdsl.keras.callback("0.1 | plateau(val_loss)")])


def test_a_plateau_is_never_silently_ignored():
    with pytest.raises(lrdsl.LrdslError, match="use lrdsl.keras.callback"):
        lrdsl.keras.schedule("cosine(0.1, 10) | plateau(val_loss)")


def test_callback_refuses_to_replace_another_schedule():
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedules.ExponentialDecay(0.1, 10, 0.5)),
                  loss="binary_crossentropy")
    with pytest.raises(lrdsl.LrdslError, match="already has a learning-rate schedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[lrdsl.keras.callback("0.1")])


@pytest.mark.parametrize("expr", [PLATEAU, "warmup(2) >> cosine(0.1, 10)"], ids=["plateau", "no plateau"])
@pytest.mark.parametrize("per_step", [False, True])
def test_save_load_and_continue_gives_the_uninterrupted_lrs(tmp_path, per_step, expr):
    x, y = _data()
    units = {"steps_per_epoch": 4} if per_step else {}

    def fresh():
        model = _model()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="binary_crossentropy")
        return model

    straight, recorder = fresh(), LrRecorder()
    straight.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False,
                 callbacks=[lrdsl.keras.callback(expr, **units), recorder])

    first, got, saved = fresh(), LrRecorder(), lrdsl.keras.callback(expr, **units)
    first.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[saved, got])
    first.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no custom_objects
    restored = loaded.optimizer._learning_rate
    assert isinstance(restored, lrdsl.keras.Schedule)
    if restored.plateau is not None:
        assert restored.plateau.scale == 0.5
        assert restored.plateau.state_dict() == saved.schedule.plateau.state_dict()
    loaded.fit(x, y, batch_size=16, epochs=6, initial_epoch=3, verbose=0, shuffle=False,
               callbacks=[lrdsl.keras.callback(expr, **units), got])
    np.testing.assert_allclose(got.lrs, recorder.lrs, **F32)


def test_a_plain_schedule_round_trips_through_model_save(tmp_path):
    model = _model()
    sched = lrdsl.keras.schedule("warmup(1ep) >> cosine(0.1, 3ep)", steps_per_epoch=4)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=sched), loss="binary_crossentropy")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras").optimizer._learning_rate
    assert loaded.get_config()["expr"] == "warmup(1ep) >> cosine(0.1,3ep)"
    assert loaded.steps_per_epoch == 4
    np.testing.assert_allclose(keras_values(loaded, 16), keras_values(sched, 16), rtol=0)


TORCH_BACKEND = textwrap.dedent("""
    import os, numpy as np
    os.environ["KERAS_BACKEND"] = "torch"
    import keras, lrdsl, lrdsl.keras
    assert keras.backend.backend() == "torch"
    x = np.random.RandomState(0).randn(32, 4).astype("float32"); y = (x.sum(1) > 0).astype("float32")
    lrs = []
    rec = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: lrs.append(
        float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    expr = "warmup(3) >> cosine(0.1, 5) >> 0.001"
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lrdsl.keras.schedule(expr)), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[rec])
    np.testing.assert_allclose(lrs, lrdsl.curve(expr, 8), rtol=2e-6, atol=1e-8)
    print("ok", len(lrs))
""")


def test_schedule_under_the_torch_keras_backend():
    pytest.importorskip("torch")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run([sys.executable, "-c", TORCH_BACKEND], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "ok 8"


# --- float32 over long horizons (LANGUAGE.md §5: 4e-6 relative, or 1e-12 of the peak) --------
@pytest.mark.parametrize("expr, units", LONG, ids=[e for e, _ in LONG])
def test_float32_stays_within_tolerance_for_a_million_ticks(expr, units):
    t = long_ticks()
    sched = lrdsl.keras.schedule(expr, **units)
    got = np.asarray(keras.ops.convert_to_numpy(sched(t)), dtype=np.float64)
    want = lrdsl.curve(expr, t, **units)
    allowed = np.maximum(4e-6 * np.abs(want), 1e-12 * want.max())
    worst = int(np.argmax(np.abs(got - want) - allowed))
    assert np.all(np.abs(got - want) <= allowed), \
        f"tick {t[worst]:g}: float32 {got[worst]!r} vs float64 {want[worst]!r}"
    assert np.all(np.isfinite(got)) and np.all(got >= 0)


def test_every_primitive_has_a_long_horizon_case():
    written = " ".join(expr for expr, _ in LONG)
    missing = [name for name, p in lrdsl.primitives().items()
               if p.value is not None and f"{name}(" not in written]
    assert not missing or missing == ["const"], missing


@pytest.mark.parametrize("expr", ["cosine(1e-50, 10)", "1e38 * 10", "step(0.1, 1e-46)",
                                  "quantize(step(1, 3.6, factor=0.5), 1.2)",
                                  "quantize(exp(0.1, 0.99999), 7.5)", "quantize(cosine(1, 100), 1e308)"])
def test_numbers_float32_cannot_hold_are_refused(expr):
    lrdsl.plan(expr)  # fine in float64
    with pytest.raises(lrdsl.LrdslError, match="float32"):
        lrdsl.keras.schedule(expr)
