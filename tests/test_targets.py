"""Momentum, beta2 and weight-decay schedules on PyTorch (LANGUAGE.md §7): parity with OneCycleLR's and
CyclicLR's own momentum cycling, per-group mappings, clear errors, resume and rebase."""

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as native  # noqa: E402

import lrdsl  # noqa: E402
import lrdsl.torch  # noqa: E402


def _params(n=1):
    return [torch.nn.Parameter(torch.zeros(2)) for _ in range(n)]


def _trace(opt, sched, n, read):
    """The value read from the optimizer's first group after construction and after each step."""
    out = [read(opt.param_groups[0])]
    for _ in range(n - 1):
        opt.step()
        sched.step()
        out.append(read(opt.param_groups[0]))
    return np.array(out)


def _momentum(group):
    return group["betas"][0] if "betas" in group else group["momentum"]


OPTIMIZERS = {
    "sgd": lambda: torch.optim.SGD(_params(), lr=0.1, momentum=0.9),
    "adam": lambda: torch.optim.Adam(_params(), lr=0.1, betas=(0.9, 0.999)),
}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("anneal, three_phase", [("cos", False), ("linear", False), ("cos", True)])
def test_onecycle_momentum_matches_onecyclelr(optimizer, anneal, three_phase):
    n, pct = 100, 0.25
    opt = OPTIMIZERS[optimizer]()
    theirs = native.OneCycleLR(opt, max_lr=0.1, total_steps=n, pct_start=pct, anneal_strategy=anneal,
                               three_phase=three_phase, cycle_momentum=True)
    want_lr = _trace(opt, theirs, n, lambda g: g["lr"])
    opt = OPTIMIZERS[optimizer]()
    theirs = native.OneCycleLR(opt, max_lr=0.1, total_steps=n, pct_start=pct, anneal_strategy=anneal,
                               three_phase=three_phase, cycle_momentum=True)
    want_m = _trace(opt, theirs, n, _momentum)

    options = f"pct={pct},anneal={anneal},three_phase={str(three_phase).lower()}"
    lr, momentum = f"onecycle(0.1,{n},{options})", f"onecycle(0.85,{n},{options},start=0.95,end=0.95)"
    opt = OPTIMIZERS[optimizer]()
    ours = lrdsl.torch.scheduler(opt, lr, momentum=momentum)
    got_lr = _trace(opt, ours, n, lambda g: g["lr"])
    opt = OPTIMIZERS[optimizer]()
    ours = lrdsl.torch.scheduler(opt, lr, momentum=momentum)
    got_m = _trace(opt, ours, n, _momentum)
    # OneCycleLR's linear anneal rounds its tiny final value (4e-7) by 2e-18; ours is exact
    np.testing.assert_allclose(got_lr, want_lr, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_m, want_m, rtol=1e-12)
    assert got_m.min() == pytest.approx(0.85) and got_m[0] == pytest.approx(0.95)
    if optimizer == "adam":
        assert opt.param_groups[0]["betas"][1] == 0.999  # beta2 untouched


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.97)])
def test_cyclic_momentum_matches_cycliclr(mode, gamma):
    n, up, down = 60, 5, 8
    make = lambda o: native.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=up, step_size_down=down,  # noqa: E731
                                     mode=mode, gamma=gamma, cycle_momentum=True,
                                     base_momentum=0.8, max_momentum=0.9)
    opt = OPTIMIZERS["sgd"]()
    want_m = _trace(opt, make(opt), n, _momentum)
    opt = OPTIMIZERS["sgd"]()
    want_lr = _trace(opt, make(opt), n, lambda g: g["lr"])
    extra = f",mode={mode}" + (f",gamma={gamma}" if gamma != 1 else "")
    lr, momentum = f"cyclic(0.001,0.1,{up},down={down}{extra})", f"cyclic(0.9,0.8,{up},down={down}{extra})"
    opt = OPTIMIZERS["sgd"]()
    got_m = _trace(opt, lrdsl.torch.scheduler(opt, lr, momentum=momentum), n, _momentum)
    opt = OPTIMIZERS["sgd"]()
    got_lr = _trace(opt, lrdsl.torch.scheduler(opt, lr, momentum=momentum), n, lambda g: g["lr"])
    np.testing.assert_allclose(got_lr, want_lr, rtol=1e-12)
    np.testing.assert_allclose(got_m, want_m, rtol=1e-12)


def test_weight_decay_and_beta2_follow_curve_and_get_last_reads_them():
    opt = torch.optim.AdamW(_params(), lr=0.1, betas=(0.9, 0.99), weight_decay=0.04)
    wd, b2 = "anneal(0.04, 0.4, 30)", "anneal(0.95, 0.999, 30, shape=linear)"
    sched = lrdsl.torch.scheduler(opt, "cosine(0.1, 30)", weight_decay=wd, beta2=b2)
    seen_wd, seen_b2 = [], []
    for _ in range(40):
        seen_wd.append(opt.param_groups[0]["weight_decay"])
        seen_b2.append(opt.param_groups[0]["betas"][1])
        assert sched.get_last("weight_decay") == [seen_wd[-1]]
        opt.step()
        sched.step()
    np.testing.assert_allclose(seen_wd, lrdsl.curve(wd, 40), rtol=1e-12)
    np.testing.assert_allclose(seen_b2, lrdsl.curve(b2, 40), rtol=1e-12)
    assert opt.param_groups[0]["betas"][0] == 0.9  # beta1 untouched: no momentum expression
    assert sched.get_last_lr() == sched.get_last("lr")
    with pytest.raises(lrdsl.LrdslError, match="does not drive 'momentum'"):
        sched.get_last("momentum")


def test_targets_follow_the_ratio_rule_and_a_zero_group_stays_zero():
    groups = [{"params": _params(), "weight_decay": 0.01}, {"params": _params(), "weight_decay": 0.0},
              {"params": _params(), "weight_decay": 0.02}]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    sched = lrdsl.torch.scheduler(opt, "0.1", weight_decay="linear(0.1, 0.2, 10)")
    for _ in range(5):
        sched.step()
    value = lrdsl.curve("linear(0.1, 0.2, 10)", [5])[0]
    assert [g["weight_decay"] for g in opt.param_groups] == pytest.approx([value, 0.0, 2 * value])
    # no group with a nonzero initial value: every group gets the value itself
    opt = torch.optim.SGD([{"params": [p]} for p in _params(2)], lr=0.1, momentum=0.0)
    lrdsl.torch.scheduler(opt, "0.1", momentum="0.9")
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.9]


def test_per_group_mappings_by_name_and_index():
    groups = [{"params": _params(), "name": "backbone", "lr": 0.01},
              {"params": _params(), "name": "head"}, {"params": _params()}]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    spec = {"backbone": "0.001", 2: "cosine(0.1, 10)", "*": "warmup(2) >> 0.05"}
    sched = lrdsl.torch.scheduler(opt, spec, momentum={"head": "0.95", "*": "0.9"})
    for _ in range(3):
        sched.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == [0.001, 0.05, lrdsl.curve("cosine(0.1, 10)", [3])[0]]  # absolute: no ratios
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.95, 0.9]
    assert sched.state_dict()["expr"] == {"backbone": "0.001", "2": "cosine(0.1,10)", "*": "warmup(2) >> 0.05"}


@pytest.mark.parametrize("spec, words", [
    ({"backbone": "0.1"}, "group 1 .*covered by no key.*0 \\('backbone'\\), 1"),
    ({"trunk": "0.1", "*": "0.1"}, "'trunk' matches no param group"),
    ({5: "0.1", "*": "0.1"}, "5 matches no param group"),
])
def test_mapping_errors_list_the_groups(spec, words):
    opt = torch.optim.SGD([{"params": _params(), "name": "backbone"}, {"params": _params()}], lr=0.1)
    with pytest.raises(lrdsl.LrdslError, match=words):
        lrdsl.torch.scheduler(opt, spec)


def test_unsupported_targets_and_out_of_range_values_are_clear_errors():
    with pytest.raises(lrdsl.LrdslError, match="Adagrad has no momentum"):
        lrdsl.torch.scheduler(torch.optim.Adagrad(_params(), lr=0.1), "0.1", momentum="0.9")
    with pytest.raises(lrdsl.LrdslError, match="SGD has no beta2"):
        lrdsl.torch.scheduler(torch.optim.SGD(_params(), lr=0.1), "0.1", beta2="0.99")
    groups = [{"params": _params(), "momentum": 0.5}, {"params": _params(), "momentum": 0.9}]
    with pytest.raises(lrdsl.LrdslError, match="param group 1: momentum would reach 1.62"):
        lrdsl.torch.scheduler(torch.optim.SGD(groups, lr=0.1), "0.1", momentum="0.9")
    with pytest.raises(lrdsl.LrdslError, match="only the learning rate may carry"):
        lrdsl.torch.scheduler(torch.optim.SGD(_params(), lr=0.1, momentum=0.9), "0.1",
                              momentum="0.9 | plateau(loss)")


EXPRS = [("warmup(5) >> cosine(0.1, 40)", "onecycle(0.85, 45, start=0.95, end=0.95)"),
         ("warmup(5) >> cosine(0.1, 40) | plateau(loss, 0.5, patience=1)", "cyclic(0.9, 0.8, 7)")]


@pytest.mark.parametrize("lr, momentum", EXPRS)
@pytest.mark.parametrize("stop", [1, 9, 23])
def test_resume_restores_every_target_exactly(lr, momentum, stop):
    losses = [1.0, 0.9, 0.95, 0.97, 0.99, 0.7, 0.8, 0.85, 0.86, 0.9] * 5

    def run(sched, opt, ticks, out):
        for i in ticks:
            out.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"],
                        opt.param_groups[0]["weight_decay"]))
            opt.step()
            sched.step(losses[i]) if "plateau" in lr else sched.step()

    def make():
        opt = torch.optim.SGD(_params(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        return opt, lrdsl.torch.scheduler(opt, lr, momentum=momentum, weight_decay="anneal(1e-4, 1e-3, 45)")
    opt, sched = make()
    want = []
    run(sched, opt, range(45), want)
    opt, sched = make()
    got = []
    run(sched, opt, range(stop), got)
    state, opt_state = sched.state_dict(), opt.state_dict()
    opt2 = torch.optim.SGD(_params(), lr=0.5, momentum=0.1, weight_decay=0.3)
    opt2.load_state_dict(opt_state)
    second = lrdsl.torch.scheduler(opt2, lr, momentum=momentum, weight_decay="anneal(1e-4, 1e-3, 45)",
                                   last_epoch=stop - 1)
    second.load_state_dict(state)
    run(second, opt2, range(stop, 45), got)
    assert got == want


@pytest.mark.parametrize("with_plateau", [False, True])
@pytest.mark.parametrize("at", [20, 35, 50])
def test_wsd_branched_from_a_stable_checkpoint_equals_the_uninterrupted_run(with_plateau, at, caplog):
    tail = " | plateau(loss, 0.5, patience=0, threshold=10)" if with_plateau else ""
    stable, wsd = f"warmup(10) >> 0.1{tail}", f"warmup(10) >> 0.1 >> cooldown(20, power=0.5){tail}"
    losses = [1.0] * 80

    def run(sched, opt, ticks, out):
        for i in ticks:
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(losses[i]) if with_plateau else sched.step()
    opt = torch.optim.SGD(_params(), lr=0.1)
    want = []
    run(lrdsl.torch.scheduler(opt, wsd, total=at + 20), opt, range(at + 25), want)

    opt = torch.optim.SGD(_params(), lr=0.1)
    first = lrdsl.torch.scheduler(opt, stable)
    got = []
    run(first, opt, range(at), got)
    state = first.state_dict()
    branch = lrdsl.torch.scheduler(opt, wsd, total=at + 20)
    with pytest.raises(lrdsl.LrdslError, match="rebase=True"):
        branch.load_state_dict(state)
    with caplog.at_level(logging.INFO, logger="lrdsl"):
        branch.load_state_dict(state, rebase=True)
    run(branch, opt, range(at, at + 25), got)
    assert got == want
    assert got[-1] == 0.0 and max(got) == pytest.approx(0.1 if not with_plateau else max(want))
    if with_plateau:
        assert "keeps its saved state" in caplog.text
    assert "rebased at tick" in caplog.text


def test_rebase_with_another_plateau_rule_starts_it_fresh(caplog):
    opt = torch.optim.SGD(_params(), lr=0.1)
    first = lrdsl.torch.scheduler(opt, "0.1 | plateau(loss, 0.5, patience=0)")
    for _ in range(3):
        first.step(1.0)
    assert first.get_last_lr() == [0.025]
    other = lrdsl.torch.scheduler(opt, "0.1 | plateau(loss, 0.1, patience=0)")
    with caplog.at_level(logging.INFO, logger="lrdsl"):
        other.load_state_dict(first.state_dict(), rebase=True)
    assert other.get_last_lr() == [0.1] and other.last_epoch == 3
    assert "starts fresh" in caplog.text


def test_a_v1_state_still_loads():
    v1 = {"expr": "0.1 | plateau(loss,factor=0.5,patience=0)", "steps_per_epoch": None, "total": None,
          "last_epoch": 4, "_step_count": 5, "base_lrs": [0.1],
          "plateau": {"scale": 0.25, "best": 1.0, "bad": 0, "cooldown_left": 0}}
    sched = lrdsl.torch.scheduler(torch.optim.SGD(_params(), lr=0.1), v1["expr"])
    sched.load_state_dict(v1)
    assert sched.get_last_lr() == [0.025] and sched.last_epoch == 4
