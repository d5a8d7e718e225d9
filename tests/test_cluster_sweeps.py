"""Sweeps past one machine (docs/distributed.md): the submitit launcher and its SLURM config, and
several Optuna workers filling one study in a shared storage. The page's commands are what runs."""

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose as hydra_compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import lrdsl
from distributed_docs import run
from lrdsl.train.config import compose, conf_dir

TICKS = 23  # batches of 64 in digits' 1437 training images, per epoch: the app's defaults


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def overrides(job: Path) -> dict[str, str]:
    return dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))


def hydra_config(*overrides: str):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return hydra_compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


# --- the SLURM launcher config ---------------------------------------------------------------

def test_the_slurm_launcher_config_composes_with_lrdsl_defaults():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = hydra_config("hydra/launcher=slurm", "hydra.sweep.dir=/shared/sweep",
                            "hydra.launcher.partition=a100").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.account) == ("a100", None)
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
    assert (launcher.timeout_min, launcher.max_num_timeout, launcher.name) == (120, 0, "lrdsl")
    assert launcher.submitit_folder == "/shared/sweep/.submitit/%j"  # beside the runs, on the shared disk
    # submitit_slurm's schema underneath: a misspelt field fails when Hydra composes
    with pytest.raises(ConfigCompositionException):
        hydra_config("hydra/launcher=slurm", "hydra.launcher.partiton=a100")


@pytest.mark.slow
def test_the_page_shows_what_the_slurm_jobs_ask_for():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run("slurm-config", PARTITION="h100", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    shown = yaml.safe_load(result.stdout)
    assert shown["partition"] == "h100" and shown["gpus_per_node"] == 1 and shown["tasks_per_node"] == 1
    assert shown["_target_"].endswith("SlurmLauncher") and shown["timeout_min"] == 120


# --- the submitit launcher, locally ------------------------------------------------------------

SCHEDULES = ("cosine", "wsd", "sgdr")  # the page's sweep


@pytest.fixture(scope="module")
def submitit_sweep(tmp_path_factory):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = tmp_path_factory.mktemp("submitit") / "sweep"
    result = run("slurm-local", OUT=str(out), EPOCHS="1", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_submitit_runs_each_job_in_its_own_process_and_lr_csv_equals_curve(submitit_sweep):
    out, _ = submitit_sweep
    jobs = sorted(p for p in out.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    assert sorted(overrides(job)["schedule"] for job in jobs) == sorted(SCHEDULES)
    for job in jobs:
        expr = compose([f"schedule={overrides(job)['schedule']}", "trainer.epochs=1"]).schedule.expr
        lrs = [float(r["lr"]) for r in rows(job / "lr.csv")]
        np.testing.assert_allclose(lrs, lrdsl.curve(expr, TICKS, steps_per_epoch=TICKS, total=TICKS),
                                   rtol=1e-12, err_msg=job.name)
    # submitit's own record: three jobs (three processes, their pids the local job ids), each of
    # which trained one run folder and ended normally
    logs = sorted((out / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 3 and len({log.parent.name for log in logs}) == 3
    trained = set()
    for log in logs:
        text = log.read_text()
        assert "Job completed successfully" in text, text[-2000:]
        trained |= set(re.findall(rf"artifacts: {re.escape(str(out))}/(\d)\b", text))
    assert trained == {"0", "1", "2"}


@pytest.mark.slow
def test_lrdsl_compare_reads_the_submitit_sweep(submitit_sweep):
    out, result = submitit_sweep
    table = result.stdout[result.stdout.index("run "):].splitlines()
    assert table[0].split()[:3] == ["run", "epochs", "final"]
    assert sorted(line.split()[0] for line in table[1:4]) == sorted(f"schedule={s}" for s in SCHEDULES)
    assert (out / "compare.png").stat().st_size > 10_000


# --- distributed Optuna: two workers, one study ------------------------------------------------

def test_the_optuna_preset_seeds_a_study_in_memory_but_not_a_shared_one():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    seed = lambda *o: hydra_config("experiment=tune_onecycle", *o).hydra.sweeper.sampler.seed  # noqa: E731
    assert seed() == 0  # one process: reproducible
    assert seed("hydra.sweeper.storage=sqlite:///study.db") is None  # shared: each worker its own draw
    assert seed("hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.sampler.seed=2") == 2


TRIALS = 2  # per worker


@pytest.fixture(scope="module")
def optuna_study(tmp_path_factory):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = tmp_path_factory.mktemp("optuna") / "tune"
    created = run("optuna-create", OUT=str(out), timeout=120)
    assert created.returncode == 0, created.stderr[-2000:]
    workers = run("optuna-workers", OUT=str(out), TRIALS=str(TRIALS), EPOCHS="1", timeout=300)
    logs = "".join((out / f"worker-{w}.log").read_text()[-2000:] for w in (1, 2) if (out / f"worker-{w}.log").exists())
    assert workers.returncode == 0, workers.stderr[-2000:] + logs
    compared = run("optuna-compare", OUT=str(out), timeout=120)
    assert compared.returncode == 0, compared.stderr[-2000:]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="tune_onecycle", storage=f"sqlite:///{out}/study.db")
    return out, study.get_trials(), compared.stdout


PARAMS = ("schedule.peak", "schedule.pct")


@pytest.mark.slow
def test_two_workers_fill_one_study_each_trial_run_once_with_distinct_parameters(optuna_study):
    out, trials, _ = optuna_study
    assert sorted(t.number for t in trials) == list(range(2 * TRIALS))
    assert all(t.state.name == "COMPLETE" for t in trials)
    drawn = [tuple(t.params[p] for p in PARAMS) for t in trials]
    assert len(set(drawn)) == len(drawn), drawn  # the workers' samplers did not draw alike
    # every trial ran exactly once: one run folder per trial, in its worker's own sweep folder
    jobs = sorted(out.glob("worker-*/[0-9]*"))
    assert [f"{j.parent.name}/{j.name}" for j in jobs] == [f"worker-{w}/{n}" for w in (1, 2) for n in range(TRIALS)]
    by_params = {tuple(t.params[p] for p in PARAMS): t for t in trials}
    ran = [tuple(float(overrides(job)[p]) for p in PARAMS) for job in jobs]
    assert sorted(ran) == sorted(by_params)
    for job, params in zip(jobs, ran):
        trial = by_params[params]
        # the folder is that trial's run: it trained with the drawn peak (onecycle's first LR is
        # peak/25) and its final val_loss is the value the study holds
        assert float(rows(job / "lr.csv")[0]["lr"]) == pytest.approx(params[0] / 25, rel=1e-12)
        assert float(rows(job / "metrics.csv")[-1]["val_loss"]) == pytest.approx(trial.value, rel=1e-12)


@pytest.mark.slow
def test_lrdsl_compare_reads_the_shared_study_best_first(optuna_study):
    _, trials, stdout = optuna_study
    lines = stdout.splitlines()
    assert lines[0].split() == ["trial", "schedule.pct", "schedule.peak", "value", "state"]
    body = [line.split() for line in lines[1:1 + len(trials)]]
    ranked = sorted(trials, key=lambda t: t.value)
    assert [row[0].lstrip("*") for row in body] == [str(t.number) for t in ranked]
    assert body[0][0] == f"*{ranked[0].number}" and not any(row[0].startswith("*") for row in body[1:])
    for row, trial in zip(body, ranked):
        assert float(row[1]) == pytest.approx(trial.params["schedule.pct"], rel=1e-3)
        assert float(row[2]) == pytest.approx(trial.params["schedule.peak"], rel=1e-3)
        assert float(row[3]) == pytest.approx(trial.value, abs=1e-4) and row[4] == "COMPLETE"
    assert f"best trial {ranked[0].number}: " in stdout and f"{2 * TRIALS} trials" in stdout


def stored_study(path: Path, direction: str):
    """A study in a SQLite file with three finished trials and a failed one (no process started)."""
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import UniformDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="s", direction=direction)
    space = {"schedule.peak": UniformDistribution(0.0, 1.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # add_trial, create_trial
        for peak, value in ((0.5, 2.0), (0.25, 3.0), (0.75, 1.0)):
            study.add_trial(optuna.trial.create_trial(params={"schedule.peak": peak}, distributions=space, value=value))
        study.add_trial(optuna.trial.create_trial(params={"schedule.peak": 0.1}, distributions=space,
                                                  state=optuna.trial.TrialState.FAIL))
    return f"sqlite:///{path}"


@pytest.mark.parametrize("direction, order", [("minimize", ["*2", "0", "1", "3"]), ("maximize", ["*1", "0", "2", "3"])])
def test_lrdsl_compare_ranks_a_study_in_its_direction_unfinished_trials_last(tmp_path, capsys, direction, order):
    from lrdsl.cli import main

    storage = stored_study(tmp_path / "s.db", direction)
    assert main(["compare", storage]) == 0  # the storage's only study
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == order
    assert lines[4].split()[1:] == ["0.1", "-", "FAIL"]
    best = {"minimize": "best trial 2: schedule.peak=0.75  -> 1.0000", "maximize": "best trial 1: schedule.peak=0.25  -> 3.0000"}
    assert best[direction] in lines and f"optuna study s ({direction}): 4 trials (3 complete, 1 fail)" in lines


def test_lrdsl_compare_names_a_missing_study_or_storage(tmp_path, capsys):
    from lrdsl.cli import main

    storage = stored_study(tmp_path / "s.db", "minimize")
    for argv, message in (
            ([storage, "--study", "t"], f"lrdsl compare: no study 't' in {storage}; expected one of s"),
            ([f"sqlite:///{tmp_path}/none.db"], f"no such SQLite file: {tmp_path}/none.db"),
            (["sqlite://"], "sqlite:// holds no Optuna study (create one with optuna create-study"),  # in memory
            ([storage, "--out", "x.png"], "--out names the runs' figure"),
            ([str(tmp_path), "--study", "s"], "--study reads an Optuna storage")):
        assert main(["compare", *argv]) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "none.db").exists()  # not created by looking
