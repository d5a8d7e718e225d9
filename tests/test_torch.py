"""PyTorch backend: parity with torch's own schedulers, with lrdsl.curve, and its protocol."""

import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as native  # noqa: E402

import lrdsl  # noqa: E402
import lrdsl.torch  # noqa: E402
from cases import value_params  # noqa: E402


def _optimizer(lr=0.1, groups=(1.0,), momentum=0.9, tensor_lr=False):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in groups]
    group_list = [{"params": [p], "lr": torch.tensor(lr * g) if tensor_lr else lr * g}
                  for p, g in zip(params, groups)]
    return torch.optim.SGD(group_list, lr=lr, momentum=momentum)


def native_lrs(make, n, lr=0.1, metrics=None):
    opt = _optimizer(lr)
    sched = make(opt)
    out = [opt.param_groups[0]["lr"]]
    for i in range(n - 1):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        out.append(opt.param_groups[0]["lr"])
    return np.array(out)


def our_lrs(expr, n, metrics=None, **units):
    opt = _optimizer(0.123)  # the optimizer's own lr does not matter: the expression is absolute
    sched = lrdsl.torch.scheduler(opt, expr, **units)
    out = [opt.param_groups[0]["lr"]]
    for i in range(n - 1):
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[i])
        out.append(opt.param_groups[0]["lr"])
    assert sched.get_last_lr() == [out[-1]]
    return np.array(out)


PARITY = []
for every in (1, 3, 10):
    for gamma in (0.1, 0.5, 0.9):
        PARITY.append((f"step(0.1, {every}, factor={gamma})",
                       lambda o, e=every, g=gamma: native.StepLR(o, step_size=e, gamma=g), 60))
for milestones in ([5], [3, 10, 20], [2, 2, 7]):
    PARITY.append((f"multistep(0.1, {milestones}, factor=0.5)",
                   lambda o, m=milestones: native.MultiStepLR(o, milestones=m, gamma=0.5), 40))
for gamma in (0.5, 0.9, 0.999):
    PARITY.append((f"exp(0.1, {gamma})", lambda o, g=gamma: native.ExponentialLR(o, gamma=g), 100))
for t_max, eta_min in ((10, 0.0), (50, 0.001), (7, 0.05)):
    PARITY.append((f"cosine(0.1, {t_max}, min={eta_min})",
                   lambda o, t=t_max, m=eta_min: native.CosineAnnealingLR(o, T_max=t, eta_min=m), t_max + 1))
for warm, start, t_max in ((5, 0.1, 20), (3, 0.5, 10), (10, 0.01, 90)):
    PARITY.append((f"warmup({warm}, start={start}) >> cosine(0.1, {t_max})",
                   lambda o, w=warm, s=start, t=t_max: native.SequentialLR(
                       o, [native.LinearLR(o, start_factor=s, end_factor=1.0, total_iters=w),
                           native.CosineAnnealingLR(o, T_max=t)], milestones=[w]), warm + t_max + 1))
for iters, power in ((10, 1.0), (30, 2.0), (25, 0.5)):
    PARITY.append((f"poly(0.1, {iters}, power={power})",
                   lambda o, i=iters, p=power: native.PolynomialLR(o, total_iters=i, power=p), iters + 10))
for mode, up, down, gamma in (("triangular", 5, 5, 1.0), ("triangular", 3, 7, 1.0),
                              ("triangular2", 4, 6, 1.0), ("exp_range", 5, 5, 0.99)):
    expr = f"cyclic(0.01, 0.1, {up}, down={down}, mode={mode}, gamma={gamma})"
    PARITY.append((expr, lambda o, m=mode, u=up, d=down, g=gamma: native.CyclicLR(
        o, base_lr=0.01, max_lr=0.1, step_size_up=u, step_size_down=d, mode=m, gamma=g,
        cycle_momentum=False), 60))
for t0, mult, eta_min in ((10, 1, 0.0), (5, 2, 0.001), (3, 2, 0.0), (7, 1, 0.01)):
    PARITY.append((f"sgdr(0.1, {t0}, mult={mult}, min={eta_min})",
                   lambda o, t=t0, m=mult, e=eta_min: native.CosineAnnealingWarmRestarts(
                       o, T_0=t, T_mult=m, eta_min=e), 120))
for anneal, three, pct, total in (("cos", False, 0.3, 100), ("linear", False, 0.25, 80),
                                  ("cos", True, 0.3, 100), ("linear", True, 0.2, 50)):
    expr = f"onecycle(0.1, {total}, pct={pct}, anneal={anneal}, three_phase={str(three).lower()})"
    PARITY.append((expr, lambda o, a=anneal, th=three, p=pct, t=total: native.OneCycleLR(
        o, max_lr=0.1, total_steps=t, pct_start=p, anneal_strategy=a, three_phase=th,
        cycle_momentum=False), total))


@pytest.mark.parametrize("expr, make, n", PARITY, ids=[p[0] for p in PARITY])
def test_parity_with_native_scheduler(expr, make, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's own deprecation chatter
        theirs = native_lrs(make, n)
    ours = our_lrs(expr, n)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours, lrdsl.curve(expr, n), rtol=1e-12, atol=0)


PLATEAU_METRICS = {
    "falls then stalls": [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.79, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8],
    "noisy": [1.0, 1.2, 0.9, 0.95, 0.91, 0.9, 0.89999, 0.7, 0.71, 0.72, 0.73, 0.74, 0.69, 0.75],
    "with nan": [1.0, float("nan"), 0.9, float("nan"), float("nan"), float("nan"), 0.5, 0.6],
}


@pytest.mark.parametrize("series", list(PLATEAU_METRICS), ids=list(PLATEAU_METRICS))
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode, threshold", [("rel", 1e-4), ("rel", 0.05), ("abs", 0.02)])
@pytest.mark.parametrize("patience, cooldown", [(0, 0), (1, 0), (2, 1), (0, 3)])
def test_parity_with_reduce_on_plateau(series, mode, threshold_mode, threshold, patience, cooldown):
    values = PLATEAU_METRICS[series]
    values = values if mode == "min" else [-v for v in values]
    n = len(values) + 1
    theirs = native_lrs(lambda o: native.ReduceLROnPlateau(
        o, mode=mode, factor=0.5, patience=patience, threshold=threshold,
        threshold_mode=threshold_mode, cooldown=cooldown, min_lr=0.01), n, metrics=values)
    expr = (f"0.1 | plateau(m, 0.5, patience={patience}, mode={mode}, threshold={threshold}, "
            f"threshold_mode={threshold_mode}, cooldown={cooldown}, min=0.01)")
    ours = our_lrs(expr, n, metrics=values)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    np.testing.assert_allclose(ours, lrdsl.curve(expr, n, metrics={"m": values}), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:lrdsl. the schedule is at")  # cases read ticks past total on purpose
@pytest.mark.parametrize("case", value_params())
def test_every_core_case_equals_curve(case):
    options = dict(case.get("options", {}))
    metrics = options.pop("metrics", None)
    every = options.pop("report_every", None) or options.get("steps_per_epoch") or 1
    n = int(max(case["ticks"], default=0)) + 1
    opt = _optimizer()
    sched = lrdsl.torch.scheduler(opt, case["expr"], **options)
    series = next(iter(metrics.values())) if metrics else []
    lrs = [opt.param_groups[0]["lr"]]
    for tick in range(1, n):
        opt.step()
        sched.step()
        if tick % every == 0 and tick // every - 1 < len(series):
            sched.report({k: v[tick // every - 1] for k, v in metrics.items()})
        lrs.append(opt.param_groups[0]["lr"])
    want = lrdsl.curve(case["expr"], n, metrics=metrics, report_every=every if metrics else None, **options)
    np.testing.assert_allclose(lrs, want, rtol=1e-12, atol=1e-15)


def test_a_million_ticks_match_curve_without_drift():
    expr = "warmup(1000) >> cosine(0.1, 500000) >> exp(0.01, 0.99999)"
    n = 10**6
    opt = _optimizer()
    sched = lrdsl.torch.scheduler(opt, expr)
    lrs = np.empty(n)
    lrs[0] = opt.param_groups[0]["lr"]
    for i in range(1, n):
        sched.step()
        lrs[i] = opt.param_groups[0]["lr"]
    want = lrdsl.curve(expr, n)
    assert np.max(np.abs(lrs - want) / np.maximum(np.abs(want), 1e-300)) <= 1e-12


@pytest.mark.parametrize("expr", [
    "warmup(5) >> cosine(0.1, 40) | plateau(val_loss, 0.5, patience=1)",
    "onecycle(0.1, 60)",
    "repeat(warmup(2) >> cosine(0.1, 8)) * 0.5",
])
@pytest.mark.parametrize("stop", [0, 1, 4, 5, 17, 33])
def test_resume_gives_the_uninterrupted_sequence(expr, stop):
    losses = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8] * 6

    def run(sched, opt, ticks, lrs):
        for tick in ticks:
            opt.step()
            sched.step(losses[tick])
            lrs.append(opt.param_groups[0]["lr"])

    opt = _optimizer()
    straight = lrdsl.torch.scheduler(opt, expr)
    want = [opt.param_groups[0]["lr"]]
    run(straight, opt, range(50), want)

    opt = _optimizer()
    first = lrdsl.torch.scheduler(opt, expr)
    got = [opt.param_groups[0]["lr"]]
    run(first, opt, range(stop), got)
    saved = first.state_dict()
    opt2 = _optimizer(lr=0.5)
    second = lrdsl.torch.scheduler(opt2, expr)
    second.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == got[-1]
    run(second, opt2, range(stop, 50), got)
    np.testing.assert_array_equal(got, want)


def test_loading_a_state_of_another_expression_fails():
    saved = lrdsl.torch.scheduler(_optimizer(), "cosine(0.1, 10)").state_dict()
    other = lrdsl.torch.scheduler(_optimizer(), "cosine(0.1, 20)")
    with pytest.raises(lrdsl.LrdslError, match="saved from lr='cosine.*rebase=True"):
        other.load_state_dict(saved)
    spe = lrdsl.torch.scheduler(_optimizer(), "cosine(0.1, 10)", steps_per_epoch=3)
    with pytest.raises(lrdsl.LrdslError, match="steps_per_epoch"):
        spe.load_state_dict(saved)


def test_state_dict_round_trips_through_torch_save(tmp_path):
    sched = lrdsl.torch.scheduler(_optimizer(), "0.1 | plateau(val_loss, 0.5, patience=0)")
    sched.step(1.0)
    sched.step(2.0)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["expr"] == "0.1 | plateau(val_loss,factor=0.5,patience=0)"
    again = lrdsl.torch.scheduler(_optimizer(), state["expr"])
    again.load_state_dict(state)
    assert again.get_last_lr() == sched.get_last_lr() == [0.05]


def test_parameter_groups_keep_their_ratios():
    opt = _optimizer(lr=0.2, groups=(1.0, 0.1, 3.0))
    sched = lrdsl.torch.scheduler(opt, "warmup(2) >> cosine(0.1, 10)")
    for _ in range(4):
        sched.step()
    base = lrdsl.curve("warmup(2) >> cosine(0.1, 10)", [4])[0]
    got = [g["lr"] for g in opt.param_groups]
    np.testing.assert_allclose(got, [base, base * 0.1, base * 3.0], rtol=1e-12)


def test_outside_edits_to_the_lr_do_not_persist():
    opt = _optimizer()
    sched = lrdsl.torch.scheduler(opt, "cosine(0.1, 10)")
    sched.step()
    opt.param_groups[0]["lr"] = 123.0
    sched.step()
    assert opt.param_groups[0]["lr"] == lrdsl.curve("cosine(0.1, 10)", [2])[0]


def test_tensor_lr_is_updated_in_place():
    opt = _optimizer(tensor_lr=True)
    lr_tensor = opt.param_groups[0]["lr"]
    sched = lrdsl.torch.scheduler(opt, "warmup(3) >> 0.1")
    for _ in range(3):
        sched.step()
    assert opt.param_groups[0]["lr"] is lr_tensor
    assert math.isclose(lr_tensor.item(), 0.1, rel_tol=1e-7)  # a float32 tensor
    assert sched.get_last_lr() == [0.1]  # as floats


@pytest.mark.parametrize("mode, threshold_mode", [("min", "rel"), ("max", "rel"), ("min", "abs"),
                                                  ("max", "abs")])
@pytest.mark.parametrize("patience, cooldown, extra", [(0, 0, ""), (2, 1, ""), (1, 3, ""),
                                                     (1, 1, ", atol=0.02"), (2, 0, ", best=running"),
                                                     (1, 2, ", atol=0.01, best=running")])
def test_step_metric_and_report_then_step_agree_with_curve(mode, threshold_mode, patience, cooldown, extra):
    # step(m) reports through the runtime's fast path; report(m) through the general one
    rng = np.random.default_rng(patience * 10 + cooldown)
    values = list(np.round(rng.uniform(0.5, 1.0, 60), 2))  # ties, improvements and stalls
    values[7] = values[30] = float("nan")
    expr = (f"warmup(3) >> cosine(0.1, 70) | plateau(m, 0.7, patience={patience}, mode={mode}, "
            f"threshold=0.01, threshold_mode={threshold_mode}, cooldown={cooldown}, min=0.002{extra})")
    a_opt, b_opt = _optimizer(), _optimizer()
    a, b = lrdsl.torch.scheduler(a_opt, expr), lrdsl.torch.scheduler(b_opt, expr)
    a_lrs, b_lrs = [], []
    for value in values:
        a.step(value)
        b.report(m=value)
        b.step()
        a_lrs.append(a_opt.param_groups[0]["lr"])
        b_lrs.append(b_opt.param_groups[0]["lr"])
    assert a_lrs == b_lrs
    assert a.state_dict()["plateau"] == b.state_dict()["plateau"]
    want = lrdsl.curve(expr, len(values) + 1, metrics={"m": values})[1:]
    np.testing.assert_allclose(a_lrs, want, rtol=1e-12)
    scale = next(iter(a.state_dict()["plateau"].values()))["scale"]
    assert len(set(a_lrs)) > 10 and scale < 1  # the plateau did act


def test_an_optimizer_state_loaded_after_the_scheduler_is_followed():
    # Optimizer.load_state_dict replaces the param group dicts; the scheduler must write the new ones
    opt = _optimizer()
    sched = lrdsl.torch.scheduler(opt, "cosine(0.1, 10)")
    other = _optimizer(lr=0.7)
    opt.load_state_dict(other.state_dict())
    sched.step()
    assert opt.param_groups[0]["lr"] == lrdsl.curve("cosine(0.1, 10)", [1])[0]


def test_report_and_step_metrics_forms():
    expr = "0.1 | plateau(val_loss, 0.5, patience=0)"
    a = lrdsl.torch.scheduler(_optimizer(), expr)
    a.report(val_loss=1.0)
    a.report({"val_loss": 2.0})
    assert a.get_last_lr() == [0.05]
    a.report(3.0)
    assert a.get_last_lr() == [0.025]
    with pytest.raises(lrdsl.MetricError, match="holds only: loss"):
        a.report(loss=1.0)
    with pytest.raises(lrdsl.MetricError, match="not a number"):
        a.step("high")
    assert a.last_epoch == 0 and a.get_last_lr() == [0.025]  # a failed step changes nothing
    with pytest.raises(lrdsl.LrdslError):
        a.step(epoch=3)
    b = lrdsl.torch.scheduler(_optimizer(), "cosine(0.1, 10)")
    b.step(0.5)  # no plateau: a reported metric changes nothing
    assert b.get_last_lr() == [lrdsl.curve("cosine(0.1, 10)", [1])[0]]


def test_bad_arguments_are_lrdsl_errors():
    with pytest.raises(lrdsl.LrdslError):
        lrdsl.torch.scheduler("not an optimizer", "0.1")
    with pytest.raises(lrdsl.UnitError, match="steps_per_epoch"):
        lrdsl.torch.scheduler(_optimizer(), "warmup(1ep) >> cosine(0.1, 10st)")
    with pytest.raises(lrdsl.LrdslError, match="initial_lr"):
        lrdsl.torch.scheduler(_optimizer(), "0.1", last_epoch=5)


def _train_step(model, opt, scaler=None):
    x = torch.randn(4, 3)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return float(loss.detach())


def test_lightning_style_loop_and_grad_scaler_loop_warn_nothing():
    torch.manual_seed(0)
    expr = "warmup(1ep) >> cosine(0.1, 3ep) | plateau(val_loss, 0.5, patience=0)"
    for use_scaler in (False, True):
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = lrdsl.torch.scheduler(opt, expr, steps_per_epoch=5)
        # what Lightning does with {"scheduler": sched, "interval": "step", "monitor": "val_loss"}:
        config = {"scheduler": sched, "interval": "step", "monitor": "val_loss"}
        scaler = torch.amp.GradScaler("cpu", enabled=use_scaler) if use_scaler else None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(4):
                for _ in range(5):
                    _train_step(model, opt, scaler)
                    config["scheduler"].step()
                config["scheduler"].report(val_loss=1.0)  # from on_validation_epoch_end
        want = lrdsl.curve(expr, [20], steps_per_epoch=5, metrics={"val_loss": [1.0] * 4})[0]
        assert sched.get_last_lr() == [want]


def test_hydra_partial_instantiation():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"_target_": "lrdsl.torch.scheduler", "_partial_": True,
                            "expr": "warmup(2) >> cosine(0.1, 10)"})
    opt = _optimizer()
    sched = instantiate(cfg)(opt)
    assert isinstance(sched, native.LRScheduler)
    assert opt.param_groups[0]["lr"] == 0.0


GLOO_WORKER = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    import lrdsl.torch
    rank = int(sys.argv[1])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    # made before the process group: whether reports are averaged is decided at the first one
    sched = lrdsl.torch.scheduler(opt, "0.1 | plateau(val_loss, 0.5, patience=0)")
    dist.init_process_group("gloo", rank=rank, world_size=2,
                            init_method="tcp://127.0.0.1:" + sys.argv[2])
    # rank 0 sees a stalling loss, rank 1 an improving one; their mean decides
    series = [[1.0, 1.0, 1.0, 1.0], [1.0, 0.5, 0.2, 0.1]][rank]
    for value in series[:2]:
        sched.step(value)
    for value in series[2:]:
        sched.report(val_loss=value)
        sched.step()
    print(repr(sched.get_last_lr()[0]), flush=True)
    dist.barrier()  # neither rank tears down while the other is still talking
    dist.destroy_process_group()
    os._exit(0)  # skip C++ static teardown: gloo's threads sometimes abort it at exit
""")


def test_two_gloo_processes_end_with_identical_lrs(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = tmp_path / "worker.py"
    script.write_text(GLOO_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    lrs = [float(out.strip().splitlines()[-1]) for out, _ in outs]
    # means: 1.0, 0.75, 0.6, 0.55 — each an improvement, so no reduction on either rank
    assert lrs[0] == lrs[1] == 0.1
