"""The channel table (lrdsl.channels) and the framework-free runtime (lrdsl.runtime)."""

import math

import pytest

import lrdsl
from lrdsl import channels
from lrdsl.runtime import Runtime


def cosine(peak, d, t):
    return peak * 0.5 * (1 + math.cos(math.pi * min(t, d) / d))


def linear(start, end, d, t):
    return start + (end - start) * min(t, d) / d


# --- the channel table ----------------------------------------------------------------------

def test_the_targets_in_order_with_their_ranges_and_config_keys():
    assert channels.TARGETS == ("lr", "momentum", "beta2", "weight_decay")
    assert channels.CONFIG_KEYS == ("expr", "momentum", "beta2", "weight_decay")
    assert [channels.below_one(t) for t in channels.TARGETS] == [False, True, True, False]
    assert all(channels.target(t).optimizer_target for t in channels.TARGETS)
    assert channels.of_config_key("expr").name == "lr"
    assert channels.of_config_key("peak") is None


@pytest.mark.parametrize("name, group, place", [
    ("lr", {"lr": 0.1}, ("lr", None)),
    ("momentum", {"lr": 0.1, "momentum": 0.9}, ("momentum", None)),
    ("momentum", {"lr": 0.1, "betas": (0.9, 0.999)}, ("betas", 0)),  # Adam's beta1, as OneCycleLR
    ("beta2", {"lr": 0.1, "betas": (0.9, 0.999)}, ("betas", 1)),
    ("beta2", {"lr": 0.1, "momentum": 0.9}, None),
    ("weight_decay", {"lr": 0.1, "weight_decay": 0.0}, ("weight_decay", None)),
    ("momentum", {"lr": 0.1}, None),  # Adagrad
])
def test_where_a_target_lives_in_a_torch_param_group(name, group, place):
    target = channels.target(name)
    assert target.torch_place(group) == place
    expected = None if place is None else group[place[0]] if place[1] is None else group[place[0]][place[1]]
    assert target.torch_read(group) == expected


def test_where_a_target_lives_on_a_keras_optimizer():
    class SGD:
        momentum, weight_decay = 0.9, None

    class Adam:
        beta_1, beta_2, weight_decay = 0.9, 0.999, 0.01

    assert channels.target("momentum").keras_attribute(SGD()) == "momentum"
    assert channels.target("momentum").keras_attribute(Adam()) == "beta_1"
    assert channels.target("beta2").keras_attribute(SGD()) is None
    assert channels.target("weight_decay").keras_attribute(SGD()) == "weight_decay"  # None, yet writable


def test_any_other_name_is_a_free_value_and_a_bad_name_is_refused():
    ema = channels.channel("ema")
    assert not ema.optimizer_target and ema.below is None
    assert channels.channel("loss.kl").name == "loss.kl"
    with pytest.raises(lrdsl.LrdslError, match="not a channel name"):
        channels.channel("2x")
    with pytest.raises(lrdsl.LrdslError, match="unknown target 'ema'; lrdsl schedules lr, momentum"):
        channels.target("ema")


def test_a_range_rule_names_the_expression():
    channels.target("momentum").check_peak(0.99, "momentum: 0.99")
    with pytest.raises(lrdsl.LrdslError, match="momentum: 1.5 reaches 1.5; momentum must stay below 1"):
        channels.target("momentum").check_peak(1.5, "momentum: 1.5")


# --- the runtime ----------------------------------------------------------------------------

def test_values_of_every_channel_at_the_tick():
    rt = Runtime({"lr": "cosine(0.1, 100)", "momentum": "linear(0.5, 0.9, 10)", "kl": "linear(0, 1, 20)"})
    assert rt.tick == -1 and rt.value("lr") == pytest.approx(0.1, rel=1e-12)  # tick 0 before the first
    for t in range(30):
        rt.advance()
        assert rt.tick == t and rt.steps == t + 1
        assert rt.values() == pytest.approx({"lr": cosine(0.1, 100, t), "momentum": linear(0.5, 0.9, 10, t),
                                             "kl": linear(0, 1, 20, t)}, rel=1e-12)
    with pytest.raises(lrdsl.LrdslError, match="no channel 'beta2'"):
        rt.value("beta2")


def test_a_channel_given_per_group_needs_the_group():
    rt = Runtime({"lr": {"backbone": "0.01", "*": "0.1"}})
    assert rt.value("lr", "backbone") == 0.01 and rt.value("lr", 1) == 0.1
    assert rt.values() == {}
    with pytest.raises(lrdsl.LrdslError, match="name the group"):
        rt.value("lr")


def test_only_lr_carries_a_plateau_and_targets_stay_in_range():
    with pytest.raises(lrdsl.LrdslError, match="only the learning rate may carry"):
        Runtime({"lr": "0.1", "ema": "0.9 | plateau(loss)"}).value("ema")
    with pytest.raises(lrdsl.LrdslError, match="momentum must stay below 1"):
        Runtime({"lr": "0.1", "momentum": "linear(0.5, 1, 10)"}).value("momentum")
    with pytest.raises(lrdsl.LrdslError, match="not a channel name"):
        Runtime({"lr": "0.1", "a b": "1"})


def _plateau_runtime():
    # patience 0: the second report that does not improve cuts the LR in half
    rt = Runtime({"lr": "cosine(0.1, 100) | plateau(loss, 0.5, patience=0)"})
    rt.value("lr")  # builds the plateau state
    return rt


def test_reports_lower_the_lr_by_the_plateau_rule():
    rt = _plateau_runtime()
    for t in range(5):
        rt.advance()
    rt.report({"loss": 1.0})  # improves on inf
    assert rt.value("lr") == pytest.approx(cosine(0.1, 100, 4), rel=1e-12)
    rt.report(1.0)  # no improvement: bad count 1 > patience 0
    assert rt.value("lr") == pytest.approx(0.5 * cosine(0.1, 100, 4), rel=1e-12)
    with pytest.raises(lrdsl.LrdslError, match="holds only: acc"):
        rt.report({"acc": 0.3})


def test_post_takes_the_reports_and_decide_acts_on_them_later():
    rt = _plateau_runtime()
    posted = []
    rt.post = posted.append
    rt.report({"loss": 1.0})
    rt.report(0.75)
    state = next(iter(rt.plateaus.values()))
    assert posted == [[1.0], [0.75]] and state.scale == 1.0  # posted: nothing decided yet
    with pytest.raises(lrdsl.LrdslError, match="holds only: acc"):
        rt.report({"acc": 0.3})  # a bad metric is refused before it is posted
    assert posted == [[1.0], [0.75]]
    # saved as decided (the pending reports), the live state untouched
    saved = rt.state_dict(pending=[[2.0], [2.0]])
    assert next(iter(saved["plateau"].values()))["scale"] == 0.5 and state.scale == 1.0
    rt.decide([[1.0], [1.25]])  # 1.0 improves on inf; 1.25 does not, and patience is 0
    assert state.scale == 0.5


def test_state_dict_resumes_exactly_and_refuses_other_expressions_unless_rebased():
    rt = _plateau_runtime()
    for t in range(7):
        rt.advance()
    rt.report(1.0)
    rt.report(1.0)
    state = rt.state_dict()
    assert state["last_epoch"] == 6 and state["_step_count"] == 7 and "counters" not in state
    again = _plateau_runtime()
    again.load_state_dict(state)
    assert again.tick == 6 and again.value("lr") == rt.value("lr") == pytest.approx(0.5 * cosine(0.1, 100, 6))
    other = Runtime({"lr": "cosine(0.2, 100) | plateau(loss, 0.5, patience=0)"})
    other.value("lr")
    with pytest.raises(lrdsl.LrdslError, match="pass rebase=True"):
        other.load_state_dict(state)
    assert other.tick == -1  # a refused state changes nothing
    other.load_state_dict(state, rebase=True)  # same plateau rule: its state carries over
    assert other.value("lr") == pytest.approx(0.5 * cosine(0.2, 100, 6), rel=1e-12)


def test_a_counting_clocks_state_resumes_its_counters():
    rt = Runtime({"lr": "cosine(1, 1k tok)"}, clock="tokens", tokens_per_sample=8)
    rt.advance()  # the first tick consumes nothing
    rt.advance(tokens=40)
    rt.advance(samples=3)  # 24 tokens through tokens_per_sample
    state = rt.state_dict()
    assert state["clock"] == "tokens" and state["counters"] == {"samples": 8, "tokens": 64}
    again = Runtime({"lr": "cosine(1, 1k tok)"}, clock="tokens", tokens_per_sample=8)
    again.load_state_dict(state)
    assert again.counters == {"samples": 8, "tokens": 64} and again.position == 64
    assert again.value("lr") == pytest.approx(0.5 * (1 + math.cos(math.pi * 64 / 1000)), rel=1e-12)


@pytest.mark.parametrize("bad, words", [
    ({"expr": "0.1"}, "lacks last_epoch"),
    ({"expr": "0.1", "last_epoch": 1.5}, "last_epoch"),
    ({"expr": 3, "last_epoch": 1}, "its lr expression is 3"),
    ({"expr": "0.1", "last_epoch": 1, "plateau": {"0.1": {"scale": 2}}}, "plateau"),
])
def test_a_corrupt_state_is_refused_before_anything_changes(bad, words):
    rt = Runtime({"lr": "0.1"})
    with pytest.raises(lrdsl.LrdslError, match=words):
        rt.load_state_dict(bad, rebase=True)
    assert rt.tick == -1 and rt.steps == 0


def test_the_torch_scheduler_saves_the_runtime_state_plus_base_lrs():
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched = lrdsl.torch.scheduler(opt, "cosine(0.1, 100) | plateau(loss, 0.5, patience=0)",
                                  momentum="linear(0.5, 0.9, 10)")
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state == {**sched.runtime.state_dict(), "base_lrs": [0.1]}
    assert sched.last_epoch == sched.runtime.tick == 3 and sched._step_count == 4
    assert sched.runtime.value("momentum") == pytest.approx(linear(0.5, 0.9, 10, 3), rel=1e-12)
    assert opt.param_groups[0]["momentum"] == pytest.approx(linear(0.5, 0.9, 10, 3), rel=1e-12)


@pytest.mark.parametrize("options", ["loss, 0.5, patience=1, cooldown=2", "acc, 0.3, patience=0, threshold=0.1",
                                     "loss, 0.5, patience=2, threshold=0.05, threshold_mode=abs",
                                     "loss, 0.5, patience=1, threshold=0.05, atol=0.02, cooldown=1",
                                     "acc, 0.5, patience=0, threshold=0.01, threshold_mode=abs, atol=0.1",
                                     "loss, 0.5, patience=1, threshold=0.2, threshold_mode=abs, best=running",
                                     "acc, 0.5, patience=1, threshold=0.1, atol=0.05, best=running, cooldown=1"])
def test_the_pure_plateau_step_is_the_stateful_one(options):
    np = pytest.importorskip("numpy")
    from lrdsl.language.plan import plan
    from lrdsl.language.plateau import PlateauState
    from lrdsl.runtime import plateau_step

    rule = plan(f"0.1 | plateau({options})").plateau
    state = PlateauState(rule)
    fields = (1.0, state.best, 0, 0)
    reports = [1.0, 0.9, 0.95, 0.95, 0.95, 0.5, float("nan"), 0.5, 0.7, 0.8, 0.9, 0.2, 0.2, 0.2, 0.2]
    for value in reports:
        state.report_value(value)
        fields = tuple(x.item() for x in plateau_step(rule, *map(np.asarray, fields), np.float64(value), np.where))
        assert fields == (state.scale, state.best, state.bad, state.cooldown_left)


def test_a_target_sharing_the_lr_text_still_may_not_carry_its_plateau():
    # plans are shared by canonical text: the check is per channel, not per compiled text
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.5)
    with pytest.raises(lrdsl.LrdslError, match="momentum: only the learning rate may carry"):
        lrdsl.torch.scheduler(opt, "0.5 | plateau(loss)", momentum="0.5 | plateau(loss)")


@pytest.mark.parametrize("best", ["improvement", "running"])
def test_a_plateau_state_copies_and_pickles_with_its_rule(best):
    # best=running is a PlateauState subclass chosen by PlateauState(rule): copy and pickle
    # rebuild the object without the rule, and must keep the class and the state
    import copy
    import pickle

    from lrdsl.language.plan import plan
    from lrdsl.language.plateau import PlateauState

    state = PlateauState(plan(f"0.1 | plateau(loss, 0.5, patience=0, threshold=0.1, best={best})").plateau)
    for value in (1.0, 0.95, 0.93):
        state.report_value(value)
    twins = [copy.deepcopy(state), pickle.loads(pickle.dumps(state))]
    for twin in twins:
        assert type(twin) is type(state) and twin.state_dict() == state.state_dict()
    state.report_value(0.92)
    for twin in twins:
        twin.report_value(0.92)
        assert twin.state_dict() == state.state_dict()
    # running: best 0.93 → 0.92 (below it), improvement: best stays 1.0
    assert state.best == (0.92 if best == "running" else 1.0)
