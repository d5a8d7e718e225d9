"""The Hydra training app: configs, both backends, artifacts, resume, sweeps, torchrun, wheel."""

import csv
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose as hydra_compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import OmegaConfBaseException

import lrdsl
from lrdsl.train.config import compose, conf_dir

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
GROUPS = {group: sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
          for group in ("schedule", "optimizer", "backend", "model", "data")}


def run_train(tmp_path, *overrides, name="run", timeout=600):
    out = tmp_path / name
    result = subprocess.run([str(BIN / "lrdsl"), "train", *overrides, "trainer.progress=false",
                             f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_group_option_composes_and_validates():
    assert len(GROUPS["schedule"]) >= 15 and len(GROUPS["optimizer"]) == 7
    for group, options in GROUPS.items():
        for option in options:
            extra = ["data.path=x.npz"] if (group, option) == ("data", "npz") else []
            cfg = compose([f"{group}={option}", *extra])
            assert cfg[group].name == option if group in ("backend", "model", "data") else True


def test_every_schedule_preset_instantiates_a_scheduler_and_matches_curve():
    torch = pytest.importorskip("torch")
    from hydra.utils import instantiate

    for option in GROUPS["schedule"]:
        cfg = compose([f"schedule={option}", "trainer.epochs=10"])
        per_step = cfg.schedule.unit == "step"
        units = {"steps_per_epoch": 23 if per_step else None, "total": 10 * (23 if per_step else 1)}
        snippet = {"_target_": "lrdsl.torch.scheduler", "_partial_": True, "expr": cfg.schedule.expr, **units}
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = instantiate(snippet)(opt)
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(49):
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        np.testing.assert_allclose(lrs, lrdsl.curve(cfg.schedule.expr, 50, **units), rtol=1e-12, err_msg=option)


def test_every_optimizer_and_model_builds_on_both_backends():
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    from lrdsl.train import keras_loop, torch_loop
    from lrdsl.train.data import load

    data = load(compose().data)
    for option in GROUPS["optimizer"]:
        cfg = compose([f"optimizer={option}"])
        assert isinstance(torch_loop.build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))]),
                          torch.optim.Optimizer)
        assert isinstance(keras_loop.build_optimizer(keras, cfg.optimizer), keras.optimizers.Optimizer)
    for option in GROUPS["model"]:
        cfg = compose([f"model={option}"])
        logits = torch_loop.build_model(cfg.model, data)(torch.from_numpy(data.x_val[:3]))
        assert logits.shape == (3, 10)
        assert keras_loop.build_model(keras, cfg.model, data)(data.x_val[:3]).shape == (3, 10)


def test_npz_data(tmp_path):
    from lrdsl.train.data import load

    rng = np.random.RandomState(0)
    np.savez(tmp_path / "d.npz", x=rng.randn(50, 6), y=np.arange(50) % 2)
    data = load(compose(["data=npz", f"data.path={tmp_path / 'd.npz'}"]).data)
    assert data.x_train.shape == (40, 6) and data.classes == 2
    with pytest.raises(lrdsl.LrdslError, match="data.path"):
        load(compose(["data=npz", f"data.path={tmp_path / 'missing.npz'}"]).data)
    flat_cnn = subprocess.run([str(BIN / "lrdsl"), "train", "data=npz", f"data.path={tmp_path / 'd.npz'}",
                               "model=cnn", f"hydra.run.dir={tmp_path / 'run'}"],
                              capture_output=True, text=True, cwd=tmp_path)
    assert flat_cnn.returncode == 2 and "Traceback" not in flat_cnn.stderr
    assert "model=cnn needs image data" in flat_cnn.stderr


def test_a_bad_key_a_bad_type_and_a_bad_expression_are_clear_errors():
    with pytest.raises(ConfigCompositionException, match="schedule.exprr"):
        compose(["schedule.exprr=1"])
    with pytest.raises((HydraException, OmegaConfBaseException), match="epochs"):
        compose(["trainer.epochs=many"])
    with pytest.raises(lrdsl.LrdslError) as info:
        compose(['schedule.expr="warmup(5) >> cosin(0.1, 10)"'])
    message = str(info.value.pointed())
    assert message.startswith("config key schedule.expr: unknown schedule 'cosin'; did you mean 'cosine'?")
    with pytest.raises(lrdsl.LrdslError) as info:
        compose(['schedule.expr="warmup(5) >> cosine(0.1,, 10)"'])
    assert "column 25" in str(info.value) and info.value.pointed().splitlines()[-1].strip() == "^"
    with pytest.raises(lrdsl.LrdslError, match="did you mean 'adam'"):
        compose(["optimizer.name=adma"])
    with pytest.raises(lrdsl.LrdslError, match="schedule.unit=step"):
        compose(['schedule.expr="cosine(0.1, 100st)"', "schedule.unit=epoch"])


def test_a_typo_inside_a_group_file_fails_loudly(tmp_path):
    from lrdsl.train.config import validate

    (tmp_path / "schedule").mkdir()
    (tmp_path / "schedule" / "typo.yaml").write_text("exprr: cosine(0.1, 10)\n")
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "typo.yaml").write_text("nmae: sgd\n")
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        with pytest.raises(ConfigCompositionException):
            hydra_compose(config_name="train", overrides=[f"hydra.searchpath=[file://{tmp_path}]",
                                                          "optimizer=typo"])
        # a schedule is an open mapping (it may hold named numbers, issue #14): the app's
        # validation refuses an extra key that is not a number
        cfg = hydra_compose(config_name="train", overrides=[f"hydra.searchpath=[file://{tmp_path}]",
                                                            "schedule=typo"])
    with pytest.raises(lrdsl.LrdslError, match=r"schedule\.exprr=.*did you mean schedule\.expr\?"):
        validate(cfg)


def test_shipped_configs_pass_lrdsl_check():
    result = subprocess.run([str(BIN / "lrdsl"), "check", str(conf_dir())], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # every string under an expression key (the LR's, the targets' and the free values'), counted here with PyYAML;
    # interpolated ones (onecycle's ${schedule.peak}) are the app's to check once filled in
    keys = ("expr", "schedule", "momentum", "beta2", "weight_decay", "ema", "dropout", "batch_size")
    count = 0
    for path in conf_dir().rglob("*.yaml"):
        data = yaml.safe_load(path.read_text()) or {}
        for node in [data, *(v for v in data.values() if isinstance(v, dict))]:
            count += sum(1 for k in keys if isinstance(node.get(k), str) and "${" not in node[k])
    assert count >= 15 and "0 bad" in result.stdout and f"{count} expression(s)" in result.stdout


def _expected_lrs(out: Path, expr: str, per_epoch_ticks: int, epochs: int):
    metrics = rows(out / "metrics.csv")
    reports = {"val_loss": [float(r["val_loss"]) for r in metrics],
               "val_acc": [float(r["val_acc"]) for r in metrics], "loss": [float(r["loss"]) for r in metrics]}
    n = epochs * per_epoch_ticks
    return lrdsl.curve(expr, n, steps_per_epoch=per_epoch_ticks if per_epoch_ticks > 1 else None,
                       total=n, metrics=reports, report_every=per_epoch_ticks)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_train_writes_artifacts_and_lr_csv_equals_curve(tmp_path, backend):
    pytest.importorskip(backend)
    out, result = run_train(tmp_path, f"backend={backend}", "trainer.epochs=2")
    for name in ("metrics.csv", "lr.csv", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / ("checkpoint.pt" if backend == "torch" else "checkpoint.keras")).exists()
    assert "epoch   2/2  lr" in result.stdout and f"artifacts: {out}" in result.stdout
    metrics = rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in metrics] == [1, 2]
    assert 0 < float(metrics[-1]["val_acc"]) <= 1
    lrs = rows(out / "lr.csv")
    ticks_per_epoch = len(lrs) // 2
    assert ticks_per_epoch == 23  # 1437 training digits / batch 64
    expr = compose().schedule.expr
    np.testing.assert_allclose([float(r["lr"]) for r in lrs], _expected_lrs(out, expr, 23, 2),
                               rtol=2e-6 if backend == "keras" else 1e-12,
                               atol=1e-8 if backend == "keras" else 0)  # float32 eps × peak lr
    assert [int(r["tick"]) for r in lrs] == list(range(46))


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_train_is_deterministic_on_cpu(tmp_path, backend):
    pytest.importorskip(backend)
    a, _ = run_train(tmp_path, f"backend={backend}", "trainer.epochs=2", name="a")
    b, _ = run_train(tmp_path, f"backend={backend}", "trainer.epochs=2", name="b")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows(a / "metrics.csv")) == strip(rows(b / "metrics.csv"))


@pytest.mark.parametrize("backend, schedule", [("torch", "warmup_cosine"), ("torch", "plateau"),
                                               ("keras", "warmup_cosine")])
def test_resume_matches_the_uninterrupted_run(tmp_path, backend, schedule):
    pytest.importorskip(backend)
    common = [f"backend={backend}", f"schedule={schedule}", "trainer.epochs=4",
              "schedule.expr=" + repr(compose([f"schedule={schedule}"]).schedule.expr.replace(
                  "patience=2", "patience=0")).replace("'", '"')]
    whole, _ = run_train(tmp_path, *common, name="whole")
    part, _ = run_train(tmp_path, *common, "trainer.stop_after=2", name="part")
    assert len(rows(part / "metrics.csv")) == 2
    checkpoint = part / ("checkpoint.pt" if backend == "torch" else "checkpoint.keras")
    resumed, _ = run_train(tmp_path, *common, f"trainer.resume={checkpoint}", name="resumed")
    lr_whole = [float(r["lr"]) for r in rows(whole / "lr.csv")]
    lr_resumed = [float(r["lr"]) for r in rows(resumed / "lr.csv")]
    assert lr_resumed == lr_whole
    vals = lambda d: [float(r["val_loss"]) for r in rows(d / "metrics.csv")]  # noqa: E731
    np.testing.assert_allclose(vals(resumed), vals(whole), rtol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_failed_run_keeps_the_metrics_it_wrote(tmp_path, backend):
    pytest.importorskip(backend)
    out = tmp_path / "failed"
    result = subprocess.run([str(BIN / "lrdsl"), "train", f"backend={backend}", "trainer.epochs=3",
                             "trainer.progress=false", 'schedule.expr="cosine(0.1, 100%) | plateau(val_los)"',
                             f"hydra.run.dir={out}"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.search(r"lrdsl train: plateau monitors 'val_los', but the report holds only: .*\bloss, .*val_acc, val_loss",
                     result.stderr), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert [r["epoch"] for r in rows(out / "metrics.csv")] == ["1"]  # the epoch it finished
    assert len(rows(out / "lr.csv")) == 23 and (out / "curves.png").exists()


def test_multirun_then_compare(tmp_path):
    out, _ = run_train(tmp_path, "-m", "schedule=step_decay,sgdr", "trainer.epochs=2")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0", "1"]
    result = subprocess.run([str(BIN / "lrdsl"), "compare", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "epochs", "final"]
    assert {lines[1].split()[0], lines[2].split()[0]} == {"schedule=step_decay", "schedule=sgdr"}
    assert (out / "compare.png").stat().st_size > 10_000
    bad = subprocess.run([str(BIN / "lrdsl"), "compare", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_parallel_sweep_with_the_joblib_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    out, _ = run_train(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       "schedule=constant,cosine", "trainer.epochs=1")
    assert all((out / n / "metrics.csv").exists() for n in ("0", "1"))


@pytest.mark.slow
def test_torchrun_ddp_on_gloo(tmp_path):
    """docs/distributed.md's command for the app under torchrun --standalone, 2 processes."""
    pytest.importorskip("torch")
    from distributed_docs import run

    out = tmp_path / "ddp"
    result = run("ddp-app", EPOCHS="1", OUT=str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("epoch   1/1") == 1  # rank 0 alone reports and writes
    assert result.stdout.count(f"artifacts: {out}") == 1
    lrs = rows(out / "lr.csv")
    assert len(lrs) == 12  # each rank sees half the batches: ceil(ceil(1437 / 2) / 64)
    np.testing.assert_allclose([float(r["lr"]) for r in lrs],
                               _expected_lrs(out, compose().schedule.expr, 12, 1), rtol=1e-12)


def test_wheel_installs_into_a_fresh_venv_and_trains(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels)], check=True, capture_output=True)
    wheel = next(wheels.glob("lrdsl-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "lrdsl/grammar/lrdsl.lark" in names and "lrdsl/conf/train.yaml" in names
    assert "lrdsl/conf/schedule/warmup_cosine.yaml" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    # the dependencies come from this venv's site-packages, added as a plain path: its .pth
    # files (the editable install pointing at the source tree) are not processed
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import lrdsl.language.parser as p; print(p.__file__); print(p.grammar_path())"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout.split()
    assert all(w.startswith(str(venv)) for w in where), where
    out = tmp_path / "wheel-run"
    result = subprocess.run([str(venv / "bin" / "lrdsl"), "train", "trainer.epochs=1", "trainer.progress=false",
                             f"hydra.run.dir={out}"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "metrics.csv").exists() and (out / "lr.csv").exists()
