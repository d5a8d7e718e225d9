"""The LR range test: smoothing, stop rule and suggestions against formulas written here; both
backends on linear regression with a known Hessian; exact restoration; the `lrdsl find` app."""

import copy
import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lrdsl  # noqa: E402
from lrdsl.find.sweep import FindResult, Recorder, check_sweep, steepest, sweep, valley  # noqa: E402

BIN = Path(sys.executable).parent


# --- the backend-free part ---------------------------------------------------------------------

def debiased_ema(losses, beta):
    """s_i = Σ_k (1 − β)·β^(i−k)·L_k / (1 − β^(i+1)), written out (not the running form)."""
    out = []
    for i in range(len(losses)):
        total = sum((1 - beta) * beta ** (i - k) * losses[k] for k in range(i + 1))
        out.append(total / (1 - beta ** (i + 1)))
    return np.array(out)


def fastai_valley(losses):
    """fastai.callback.schedule.valley, as published (double loop), on a list of losses."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2), lds[max_end]


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.98])
def test_smoothing_is_the_debiased_ema(beta):
    losses = list(np.random.default_rng(1).uniform(1, 2, 40))
    recorder = Recorder(beta, diverge=1e9)
    for loss in losses:
        assert not recorder.add(loss)
    np.testing.assert_allclose(recorder.smoothed, debiased_ema(losses, beta), rtol=1e-12)
    assert recorder.smoothed[0] == pytest.approx(losses[0], rel=1e-12)  # debiased from the start


def test_stops_at_the_first_step_past_diverge_times_the_best():
    losses = [3.0 - 0.1 * i for i in range(20)] + [2.0 * 1.6 ** i for i in range(40)]
    smoothed = debiased_ema(losses, 0.9)
    expected = next(i for i in range(len(losses)) if smoothed[i] > 4 * smoothed[:i + 1].min())
    recorder = Recorder(0.9, 4)
    stops = [recorder.add(loss) for loss in losses[:expected + 1]]
    assert stops == [False] * expected + [True]


def test_a_nan_loss_stops_the_sweep():
    recorder = Recorder(0.98, 4)
    assert not recorder.add(1.0)
    assert recorder.add(math.nan)


def test_steepest_is_the_most_negative_slope_against_log_lr():
    lrs = 1e-4 * 10 ** (np.arange(60) / 10)
    x = np.log(lrs)
    smoothed = 2 - np.tanh((x - x[37]) / 0.7) + 0.02 * x  # steepest fall at index 37
    assert steepest(lrs, smoothed) == 37
    # central differences by hand, one-sided at the ends
    slope = [(smoothed[1] - smoothed[0]) / (x[1] - x[0])]
    slope += [(smoothed[i + 1] - smoothed[i - 1]) / (x[i + 1] - x[i - 1]) for i in range(1, 59)]
    slope += [(smoothed[59] - smoothed[58]) / (x[59] - x[58])]
    assert steepest(lrs, smoothed) == int(np.argmin(slope))
    assert steepest(lrs, np.linspace(1, 2, 60)) is None  # never falls: no suggestion


@pytest.mark.parametrize("seed", range(30))
def test_valley_is_fastais_rule(seed):
    rng = np.random.default_rng(seed)
    losses = list(np.cumsum(rng.normal(-0.05, 0.3, int(rng.integers(5, 80)))))
    index, length = fastai_valley(losses)
    expected = None if length < 2 else min(max(index, 0), len(losses) - 1)
    assert valley(np.array(losses)) == expected


def test_suggestions_skip_the_first_tenth_and_the_last_five_points():
    steps = 100
    lrs = 1e-7 * (1e8) ** (np.arange(steps) / steps)
    smoothed = np.full(steps, 2.0)
    smoothed[3] = -50.0  # a cliff in the skipped head
    smoothed[97] = -50.0  # and in the skipped tail
    smoothed[40:60] = np.linspace(2.0, 1.0, 20)  # the real descent
    result = FindResult(lrs=lrs, losses=smoothed, smoothed=smoothed, expr=sweep(1e-7, 10, steps),
                        steps=steps, diverge=4, stopped_early=False)
    assert 40 <= result.suggestion_index < 60 and result.suggestion == lrs[result.suggestion_index]
    assert 10 <= result.valley_index < 95


def test_no_suggestion_when_the_loss_blows_up_at_once(tmp_path):
    recorder = Recorder(0.98, 4)
    assert recorder.add(2.0) is False and recorder.add(math.inf) is True
    result = recorder.result(lrdsl.curve(sweep(1e-7, 10, 100), 100), sweep(1e-7, 10, 100), 100)
    assert result.suggestion is None and result.valley is None and result.stopped_early
    lines = result.summary()
    assert lines[0] == "stopped at step 2/100: the loss was not finite at lr 1.2e-07"
    assert all("too few steps" in line for line in lines[1:]) and len(lines) == 3
    assert result.plot(tmp_path / "f.png").exists() and "lr" in result.text_plot()


@pytest.mark.parametrize("kwargs, words", [
    (dict(start=1.0, end=0.1), "start must be < end"),
    (dict(start=0.1, end=0.1), "start must be < end"),
    (dict(start=0.0), "start must be a finite LR > 0"),
    (dict(end=math.inf), "end must be finite"),
    (dict(steps=9), "steps must be an integer ≥ 10"),
    (dict(steps=50.5), "steps must be an integer"),
    (dict(smooth=1.0), "smooth must be in [0, 1)"),
    (dict(diverge=1.0), "diverge must be > 1"),
    (dict(start=math.nan), "start must be a number"),
])
def test_a_bad_sweep_is_a_one_line_error(kwargs, words):
    args = dict(start=1e-7, end=10, steps=100, smooth=0.98, diverge=4) | kwargs
    with pytest.raises(lrdsl.LrdslError) as info:
        check_sweep(**args, prefix="config key find.")
    assert str(info.value).startswith("config key find.") and words in str(info.value)
    assert "\n" not in str(info.value)


def test_csv_text_plot_and_command(tmp_path):
    steps = 50
    lrs = lrdsl.curve(sweep(1e-5, 1, steps), steps)
    recorder = Recorder(0.9, 4)
    for i in range(steps):
        if recorder.add(2.5 - math.tanh((i - 30) / 5)):
            break
    result = recorder.result(lrs, sweep(1e-5, 1, steps), steps)
    rows = list(csv.DictReader(open(result.write_csv(tmp_path / "find.csv"))))
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed"] and len(rows) == steps
    assert [float(r["lr"]) for r in rows] == list(lrs)  # written exactly
    assert [float(r["smoothed"]) for r in rows] == list(result.smoothed)
    text = result.text_plot(width=80, height=10)
    assert re.search("[\u2801-\u28ff]", text) and text.splitlines()[-1].endswith("  lr")
    assert f"{result.suggestion:.3g}".replace("e-0", "e-") in text.splitlines()[-1]
    command = result.summary(["optimizer=adam"])[2].strip()
    expr = re.fullmatch(r"""lrdsl train optimizer=adam 'schedule\.expr="(.*)"'""", command).group(1)
    assert str(lrdsl.parse(expr)) == f"warmup(5%) >> cosine({float(f'{result.suggestion:.3g}')!r},95%)"


# --- linear regression with a known Hessian --------------------------------------------------------
# Plain GD on 0.5·||Xw − y||²/n contracts every error component iff lr < 2/λ_max(XᵀX/n): below
# that training converges (the loss falls monotonically), above it it diverges.

N, D = 256, 8


def regression():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, D)) * np.linspace(0.5, 2.0, D)).astype(np.float32)
    y = (x @ rng.standard_normal((D, 1))).astype(np.float32)
    x64 = x.astype(np.float64)
    limit = 2 / np.linalg.eigvalsh(x64.T @ x64 / N).max()
    return x, y, limit


SWEEP = dict(start=1e-4, end=10, steps=100)


def assert_sensible(result, limit):
    for name in ("suggestion", "valley"):
        lr = getattr(result, name)
        assert lr is not None and limit / 100 < lr < limit / 2, (name, lr, limit)
    assert result.stopped_early and result.lrs[-1] > limit  # no blow-up while lr < 2/λ_max
    assert len(result.lrs) < SWEEP["steps"]


torch = None


@pytest.fixture(scope="module")
def torch_module():
    global torch
    torch = pytest.importorskip("torch")
    import lrdsl.torch  # noqa: F401

    return torch


def half_mse(output, target):
    return 0.5 * ((output - target) ** 2).sum(1).mean()


@pytest.mark.slow
def test_torch_suggestion_lies_where_gd_converges(torch_module):
    x, y, limit = regression()
    model = torch.nn.Linear(D, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrdsl.torch.find_lr(model, optimizer, [(torch.from_numpy(x), torch.from_numpy(y))],
                                 half_mse, **SWEEP)
    assert_sensible(result, limit)
    n = len(result.lrs)
    np.testing.assert_array_equal(result.lrs, lrdsl.curve(result.expr, n))  # the LR each step used
    closed = 1e-4 * (10 / 1e-4) ** (np.arange(n) / 100)
    np.testing.assert_allclose(result.lrs, closed, rtol=1e-12)
    assert np.all(np.diff(result.losses[result.lrs < limit]) < 0)  # GD below 2/λ_max: monotone


def _state_equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(u, v) for u, v in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _net():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                               torch.nn.Dropout(0.2), torch.nn.Linear(16, 3))


def _loader(batches=4, size=16):
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(size, 6, generator=g), torch.randint(0, 3, (size,), generator=g))
            for _ in range(batches)]


@pytest.mark.slow
@pytest.mark.parametrize("make", ["sgd_nesterov", "adam"])
def test_torch_restores_weights_optimizer_state_and_rng_bitwise(torch_module, make):
    model = _net()
    groups = [{"params": model[0].parameters(), "lr": 0.05},
              {"params": list(model[1].parameters()) + list(model[4].parameters()), "lr": 0.01}]
    optimizer = (torch.optim.SGD(groups, momentum=0.9, nesterov=True, weight_decay=1e-4)
                 if make == "sgd_nesterov" else torch.optim.Adam(groups))
    loader = _loader()
    for x, y in loader[:2]:  # a used optimizer: momentum / Adam buffers and step counts exist
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    result = lrdsl.torch.find_lr(model, optimizer, loader, torch.nn.functional.cross_entropy,
                                 start=1e-5, end=100, steps=60)
    assert len(result.lrs) > 12  # it trained (4 batches, cycled) before stopping or finishing
    assert _state_equal(model.state_dict(), weights) and _state_equal(optimizer.state_dict(), state)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.01]
    assert all("initial_lr" not in g for g in optimizer.param_groups)  # the sweep's scheduler left
    assert torch.equal(torch.get_rng_state(), rng) and not model.training


@pytest.mark.slow
def test_torch_restores_after_an_error_and_keeps_a_tensor_lr_object(torch_module):
    model = _net()
    lr = torch.tensor(0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    weights, state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    calls = []

    def failing(output, target):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("boom")
        return torch.nn.functional.cross_entropy(output, target)

    with pytest.raises(RuntimeError, match="boom"):
        lrdsl.torch.find_lr(model, optimizer, _loader(), failing, steps=20)
    assert _state_equal(model.state_dict(), weights) and _state_equal(optimizer.state_dict(), state)
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)


@pytest.mark.slow
def test_torch_early_stop_follows_the_smoothed_loss(torch_module):
    """A loss scripted per step: the sweep stops exactly where the formula says."""
    scripted = [3.0 - 0.05 * i for i in range(30)] + [1.5 * 1.5 ** i for i in range(70)]
    scripted = [float(np.float32(v)) for v in scripted]  # the loss is a float32 tensor
    smoothed = debiased_ema(scripted, 0.98)
    expected = next(i for i in range(100) if smoothed[i] > 4 * smoothed[:i + 1].min())
    weight = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.register_parameter("w", weight)
    model.forward = lambda x: weight * 0 + x
    step = iter(range(100))

    def loss(output, target):
        return output.sum() * 0 + scripted[next(step)]

    result = lrdsl.torch.find_lr(model, torch.optim.SGD([weight], lr=1.0),
                                 [(torch.zeros(1), torch.zeros(1))], loss, smooth=0.98)
    assert len(result.lrs) == expected + 1 and result.stopped_early
    np.testing.assert_allclose(result.smoothed, smoothed[:expected + 1], rtol=1e-12)


def test_find_lr_refuses_bad_arguments(torch_module):
    model = torch.nn.Linear(2, 1)
    with pytest.raises(lrdsl.LrdslError, match="start must be < end"):
        lrdsl.torch.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), [], half_mse, start=1, end=1)
    with pytest.raises(lrdsl.LrdslError, match="yielded no batches"):
        lrdsl.torch.find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), [], half_mse)
    with pytest.raises(lrdsl.LrdslError, match="torch.optim.Optimizer"):
        lrdsl.torch.find_lr(model, object(), [], half_mse)


# --- Keras -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_module():
    keras = pytest.importorskip("keras")
    import lrdsl.keras  # noqa: F401

    return keras


@pytest.mark.slow
def test_keras_suggestion_lies_where_gd_converges(keras_module):
    keras = keras_module
    x, y, limit = regression()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=lambda t, o: 0.5 * keras.ops.mean(keras.ops.sum((o - t) ** 2, axis=1)))
    model.train_on_batch(x, y)  # a train function traced for these shapes holds lr 0.1
    result = lrdsl.keras.find_lr(model, x, y, batch_size=N, **SWEEP)
    assert_sensible(result, limit)  # so the sweep really drove the steps
    n = len(result.lrs)
    np.testing.assert_allclose(result.lrs, lrdsl.curve(result.expr, n), rtol=2e-6)  # float32
    np.testing.assert_allclose(result.lrs, 1e-4 * (10 / 1e-4) ** (np.arange(n) / 100), rtol=2e-6)
    assert np.all(np.diff(result.losses[result.lrs < limit * 0.9]) < 0)


def _keras_net(keras):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dropout(0.2),
                              keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.slow
def test_keras_restores_every_variable_the_lr_and_the_train_function(keras_module):
    keras = keras_module
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    twin, model = _keras_net(keras), _keras_net(keras)
    for m in (twin, model):
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # built, traced, iterations 4
    lr_variable, paths = model.optimizer._learning_rate, [v.path for v in model.optimizer.variables]
    values = [v.numpy() for v in model.variables]
    optimizer_values = [v.numpy() for v in model.optimizer.variables]
    result = lrdsl.keras.find_lr(model, x, y, batch_size=16, start=1e-5, end=100, steps=40)
    assert 8 < len(result.lrs) < 40 and result.stopped_early  # lr 100 blows it up
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(values, model.variables))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(optimizer_values, model.optimizer.variables))
    assert model.optimizer._learning_rate is lr_variable
    assert [v.path for v in model.optimizer.variables] == paths  # saved checkpoints keep their order
    assert int(model.optimizer.iterations) == 4
    # training on: the same update as the twin that never ran the test (lr 0.05, same momentum)
    for m in (twin, model):
        m.train_on_batch(x[:16], y[:16])
    for a, b in zip(twin.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_keras_find_lr_needs_a_compiled_model(keras_module):
    keras = keras_module
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(lrdsl.LrdslError, match="compile the model first"):
        lrdsl.keras.find_lr(model, np.zeros((4, 2)), np.zeros(4))


# --- the LR each step used, read back from the weights ---------------------------------------------
# Loss = w (a 1×1 linear layer on input 1): the gradient is 1, so plain SGD gives
# w_{k+1} = w_k − lr_k and the recorded losses differ by exactly the LR each step used.

STAIR = dict(start=1e-2, end=1.0, steps=20)


def used_lrs(result):
    return -np.diff(result.losses)


@pytest.mark.slow
def test_torch_each_step_uses_the_recorded_lr(torch_module):
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 10.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.step()  # a used optimizer: the sweep still starts at its tick 0
    result = lrdsl.torch.find_lr(model, optimizer, [(torch.ones(1, 1), torch.zeros(1, 1))],
                                 lambda output, target: output.mean(), **STAIR)
    assert len(result.lrs) == 20
    np.testing.assert_allclose(used_lrs(result), result.lrs[:-1], rtol=1e-4)
    np.testing.assert_allclose(result.lrs, 1e-2 * 100 ** (np.arange(20) / 20), rtol=1e-12)


@pytest.mark.slow
def test_keras_each_step_uses_the_recorded_lr(keras_module):
    keras = keras_module
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant(10.0))])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=lambda t, o: keras.ops.mean(o))
    x, y = np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32)
    model.train_on_batch(x, y)  # iterations = 1, and a train function traced with lr 0.5
    result = lrdsl.keras.find_lr(model, x, y, batch_size=1, **STAIR)
    assert len(result.lrs) == 20
    np.testing.assert_allclose(used_lrs(result), result.lrs[:-1], rtol=1e-4)
    np.testing.assert_allclose(result.lrs, 1e-2 * 100 ** (np.arange(20) / 20), rtol=2e-6)


# --- the Hydra app and the CLI -------------------------------------------------------------------

def test_find_config_is_the_train_config_plus_find():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lrdsl.train.config import conf_dir
    import lrdsl.train.find_app  # noqa: F401  (registers find_schema)

    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        for overrides in ([], ["optimizer=adam", "backend=keras", "trainer.batch_size=32"]):
            train = OmegaConf.to_container(compose(config_name="train", overrides=overrides))
            found = OmegaConf.to_container(compose(config_name="find", overrides=overrides))
            assert found.pop("find") == dict(start=1e-7, end=10.0, steps=100, smooth=0.98, diverge=4.0)
            assert found == train
        # hydra settings too (run directories, callbacks): find.yaml must carry train.yaml's
        hydra = [compose(config_name=name, return_hydra_config=True).hydra for name in ("train", "find")]
        for key in ("run", "sweep", "callbacks"):
            assert OmegaConf.to_container(hydra[0][key]) == OmegaConf.to_container(hydra[1][key]), key
        with pytest.raises(Exception, match="stpes"):
            compose(config_name="find", overrides=["find.stpes=50"])
        with pytest.raises(Exception, match="steps"):
            compose(config_name="find", overrides=["find.steps=many"])


def test_the_ready_command_keeps_the_train_overrides():
    from lrdsl.train.find_app import train_args

    assert train_args(["optimizer=adam", "find.end=1", "find=default", "schedule.expr=x",
                       "backend=keras", "+find.extra=1"]) == ["optimizer=adam", "backend=keras"]


def run_find(tmp_path, *overrides, code=0):
    out = tmp_path / "run"
    result = subprocess.run([str(BIN / "lrdsl"), "find", *overrides, f"hydra.run.dir={out}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "100"})
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.mark.slow
@pytest.mark.parametrize("overrides, words", [
    (["find.start=1", "find.end=0.1"], "config key find.start must be < end"),
    (["find.steps=5"], "config key find.steps must be an integer ≥ 10"),
    (["trainer.strategy=ddp"], "not DDP-aware"),
])
def test_a_bad_find_config_is_one_line_and_exit_2(tmp_path, overrides, words):
    _, result = run_find(tmp_path, *overrides, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrdsl find: ") and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture(scope="module", params=["torch", "keras"])
def cli_run(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"find-{request.param}")
    return (request.param, *run_find(tmp, f"backend={request.param}", "find.steps=30", "find.end=100",
                                     "trainer.device=cpu", "optimizer=adam"))


@pytest.mark.slow
def test_cli_writes_csv_png_plot_and_a_ready_command(cli_run):
    backend, out, result = cli_run
    rows = list(csv.DictReader(open(out / "find.csv")))
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed"] and 10 < len(rows) <= 30
    lrs = [float(r["lr"]) for r in rows]
    np.testing.assert_allclose(lrs, lrdsl.curve("anneal(1e-7, 100, 30, shape=exp)", len(rows)),
                               rtol=0 if backend == "torch" else 2e-6)
    assert (out / "find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search("[\u2801-\u28ff]", result.stdout) and "  lr\n" in result.stdout
    commands = re.findall(r"""lrdsl train backend=\w+ trainer.device=cpu optimizer=adam """
                          r"""'schedule\.expr="(warmup\(5%\) >> cosine\(([0-9.e-]+), 95%\))"'""", result.stdout)
    assert commands, result.stdout
    for expr, lr in commands:
        lrdsl.parse(expr)
        assert 1e-7 <= float(lr) <= 100


def test_find_is_a_cli_subcommand():
    from lrdsl.cli import build_parser

    assert "find" in build_parser().format_help()
