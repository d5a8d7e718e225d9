"""The checked door into the schedulers: group values, added groups, saved states, ticks and
reports are checked where they enter, so every backend gives the same result or a one-line
LrdslError naming what is wrong — never NaN, inf, a silent truncation or a raw traceback."""

import math
import warnings
from fractions import Fraction

import pytest

torch = pytest.importorskip("torch")

import lrdsl  # noqa: E402
import lrdsl.torch  # noqa: E402
from oracle import cosine  # noqa: E402

EXPR = "cosine(0.1, 20)"


def f(t):
    """EXPR at tick t, from LANGUAGE.md's formula."""
    return cosine(0.1, 20, t)


def _two_groups(second_lr, name="head", momentum=0.9):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [params[0]]}, {"params": [params[1]], "name": name}],
                          lr=0.1, momentum=momentum)
    opt.param_groups[1]["lr"] = second_lr  # after construction: torch checks only its defaults
    return opt


# --- 1. group values ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad, said", [
    (float("nan"), "lr is nan"), (float("inf"), "lr is inf"), (-0.1, "lr is -0.1"),
    (None, "lr is None"), ("0.1", "lr is '0.1'"),
    (torch.tensor(1), "lr is a tensor of shape .* dtype torch.int64"),
    (torch.tensor([0.1, 0.2]), "lr is a tensor of shape \\(2,\\)"),
    (torch.tensor(0.1, requires_grad=True), "lr is a tensor that requires grad"),
])
def test_a_bad_group_lr_is_an_error_naming_the_group(bad, said):
    with pytest.raises(lrdsl.LrdslError, match=f"^param group 1 \\('head'\\): {said}"):
        lrdsl.torch.scheduler(_two_groups(bad), EXPR)


def test_a_bad_group_momentum_is_an_error_naming_the_group():
    opt = _two_groups(0.1)
    opt.param_groups[0]["momentum"] = None
    with pytest.raises(lrdsl.LrdslError, match="^param group 0: momentum is None"):
        lrdsl.torch.scheduler(opt, EXPR, momentum="0.9")


def test_an_lr_tensor_made_integer_later_is_refused_not_truncated():
    opt = _two_groups(torch.tensor(0.01))
    sched = lrdsl.torch.scheduler(opt, EXPR)
    opt.param_groups[1]["lr"] = torch.tensor(0)
    with pytest.raises(lrdsl.LrdslError, match="param group 'head': lr is a tensor .* torch.int64"):
        sched.step()
    assert sched.last_epoch == 0  # the refused step took no tick


def test_a_ratio_that_overflows_a_float_still_gives_the_exact_finite_values():
    opt = _two_groups(1.0)
    opt.param_groups[0]["lr"] = 5e-324
    sched = lrdsl.torch.scheduler(opt, "1e-20")
    expected = float(Fraction(1e-20) * Fraction(1.0) / Fraction(5e-324))  # about 2e303
    assert sched.get_last_lr() == [1e-20, pytest.approx(expected, rel=1e-12)]
    assert opt.param_groups[1]["lr"] == pytest.approx(expected, rel=1e-12)


def test_a_ratio_whose_values_overflow_is_an_error_not_inf():
    opt = _two_groups(1.0)
    opt.param_groups[0]["lr"] = 5e-324
    with pytest.raises(lrdsl.LrdslError, match="^param group 1 \\('head'\\): lr would overflow"):
        lrdsl.torch.scheduler(opt, "0.1")


# --- 2. groups added after construction ---------------------------------------------------------

def _unfreeze(opt):
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.02, "name": "backbone"})


def test_a_group_added_later_is_scheduled_by_its_ratio_from_the_next_step():
    opt = _two_groups(0.1)
    sched = lrdsl.torch.scheduler(opt, EXPR)
    for _ in range(4):
        sched.step()
    _unfreeze(opt)
    assert opt.param_groups[2]["lr"] == 0.02  # untouched until the next step
    for t in range(5, 12):
        sched.step()
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs == pytest.approx([f(t), f(t), f(t) * 0.02 / 0.1], rel=1e-12)
        assert sched.get_last_lr() == lrs


def test_a_run_resumed_after_an_unfreeze_equals_the_uninterrupted_one():
    def run(stop=None, state=None):
        opt = _two_groups(0.1)
        if state is not None:
            _unfreeze(opt)  # the resumed run builds the group before the scheduler
        sched = lrdsl.torch.scheduler(opt, EXPR + " | plateau(val_loss, 0.5, patience=0)")
        if state is not None:
            sched.load_state_dict(state)
        lrs = {}
        while sched.last_epoch < 15:
            if sched.last_epoch == 3 and state is None:
                _unfreeze(opt)
            if sched.last_epoch % 4 == 3:
                sched.report(val_loss=1.0)
            sched.step()
            lrs[sched.last_epoch] = [g["lr"] for g in opt.param_groups]
            if sched.last_epoch == stop:
                return lrs, sched.state_dict()
        return lrs, None

    uninterrupted, _ = run()
    before, state = run(stop=8)
    after, _ = run(state=state)
    assert {**before, **after} == uninterrupted
    assert set(after) == set(range(9, 16))
    for t in range(4, 16):  # scale: 1 after the first report (best), halved at each later one
        scale = 0.5 ** max(0, (t - 4) // 4)
        assert uninterrupted[t][2] == pytest.approx(f(t) * scale * 0.2, rel=1e-12)


def test_an_added_group_follows_its_ratio_for_every_target():
    opt = _two_groups(0.1)
    sched = lrdsl.torch.scheduler(opt, EXPR, momentum="0.8")
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.05, "momentum": 0.45})
    sched.step()
    assert opt.param_groups[2]["lr"] == pytest.approx(f(1) * 0.05 / 0.1, rel=1e-12)
    assert opt.param_groups[2]["momentum"] == pytest.approx(0.8 * 0.45 / 0.9, rel=1e-12)


def test_a_bad_added_group_is_refused_naming_it_and_the_tick_kept():
    opt = _two_groups(0.1)
    sched = lrdsl.torch.scheduler(opt, EXPR)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": float("nan"), "name": "late"})
    with pytest.raises(lrdsl.LrdslError, match="^param group 2 \\('late'\\): lr is nan"):
        sched.step()
    assert sched.last_epoch == 0 and len(sched.get_last_lr()) == 2
    assert "initial_lr" not in opt.param_groups[2]  # a refused value is not kept as the base
    opt.param_groups[2]["lr"] = 0.01  # fixed: scheduled from the next step
    sched.step()
    assert opt.param_groups[2]["lr"] == pytest.approx(f(1) * 0.01 / 0.1, rel=1e-12)


def test_a_group_the_mapping_does_not_cover_is_refused_and_the_tick_kept():
    opt = _two_groups(0.1)
    sched = lrdsl.torch.scheduler(opt, {0: EXPR, "head": "0.01"})
    _unfreeze(opt)
    with pytest.raises(lrdsl.LrdslError, match="param group 2 \\('backbone'\\) is covered by no key"):
        sched.step()
    assert sched.last_epoch == 0
    assert len(sched.get_last_lr()) == 2


# --- 3. saved states ------------------------------------------------------------------------------

def _plateau_scheduler():
    opt = _two_groups(0.1)
    sched = lrdsl.torch.scheduler(opt, EXPR + " | plateau(val_loss, 0.5, patience=0)")
    sched.step(1.0)
    sched.step(2.0)
    return opt, sched


@pytest.mark.parametrize("field, bad", [
    ("last_epoch", -5), ("last_epoch", float("inf")), ("last_epoch", float("nan")),
    ("last_epoch", "3"), ("last_epoch", 1.5), ("last_epoch", None), ("_step_count", -1),
    ("expr", 3), ("targets", "momentum"), ("plateau", 1),
])
def test_a_corrupt_state_field_is_refused_and_changes_nothing(field, bad):
    opt, sched = _plateau_scheduler()
    before, lrs = sched.state_dict(), [g["lr"] for g in opt.param_groups]
    with pytest.raises(lrdsl.LrdslError, match=field.strip("_")):
        sched.load_state_dict({**before, field: bad})
    assert sched.state_dict() == before
    assert [g["lr"] for g in opt.param_groups] == lrs


@pytest.mark.parametrize("field, bad", [
    ("scale", float("nan")), ("scale", 2.0), ("scale", -0.5), ("best", float("nan")),
    ("best", "low"), ("bad", -1), ("bad", 1.5), ("cooldown_left", None), ("cooldown_left", True),
])
def test_a_corrupt_plateau_state_is_refused_and_changes_nothing(field, bad):
    opt, sched = _plateau_scheduler()
    before = sched.state_dict()
    key, plateau = next(iter(before["plateau"].items()))
    with pytest.raises(lrdsl.LrdslError, match=field):
        sched.load_state_dict({**before, "plateau": {key: {**plateau, field: bad}}})
    assert sched.state_dict() == before


def test_a_state_that_is_no_state_is_refused():
    _, sched = _plateau_scheduler()
    for bad in (None, [], {"x": 1}, {"expr": EXPR}):
        with pytest.raises(lrdsl.LrdslError, match="not an lrdsl scheduler state"):
            sched.load_state_dict(bad)


def test_lightning_callback_refuses_a_state_of_something_else():
    lightning = pytest.importorskip("lrdsl.lightning")
    with pytest.raises(lrdsl.LrdslError, match="lrdsl.lightning.Schedule.*'x'"):
        lightning.Schedule(EXPR).load_state_dict({"x": 1})


def test_hf_scheduler_front_refuses_a_state_of_something_else():
    hf = pytest.importorskip("lrdsl.hf")
    opt = _two_groups(0.1)
    front = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    hf._take_over(front, lrdsl.torch.scheduler(opt, EXPR), 2)
    with pytest.raises(lrdsl.LrdslError, match="lrdsl.hf.Schedule.*'x'"):
        front.load_state_dict({"x": 1})


# --- 4. ticks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), "3", None, 1.5, float("inf"), -2, True])
def test_a_bad_last_epoch_is_an_error(bad):
    with pytest.raises(lrdsl.LrdslError, match="^last_epoch must be an integer"):
        lrdsl.torch.scheduler(_two_groups(0.1), EXPR, last_epoch=bad)


@pytest.mark.parametrize("bad", [5.5, 1e300, float("inf"), float("nan"), "3", None])
def test_lr_at_refuses_what_is_no_tick(bad):
    sched = lrdsl.torch.scheduler(_two_groups(0.1), EXPR)
    with pytest.raises(lrdsl.LrdslError, match="tick"):
        sched.lr_at(bad)


def test_lr_at_counts_a_negative_tick_as_zero():
    sched = lrdsl.torch.scheduler(_two_groups(0.1), EXPR)
    assert sched.lr_at(-1) == sched.lr_at(-10 ** 6) == f(0)
    assert sched.lr_at(5.0) == pytest.approx(f(5), rel=1e-12)


# --- 5. reports ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [None, True, "0.3", b"0.3", torch.tensor([0.1, 0.2]), 10 ** 400])
def test_a_report_that_is_no_number_is_an_error_naming_the_monitor(bad):
    _, sched = _plateau_scheduler()
    before = sched.state_dict()
    with pytest.raises(lrdsl.LrdslError, match="'val_loss'"):
        sched.report(val_loss=bad)
    with pytest.raises(lrdsl.LrdslError, match="'val_loss'"):
        sched.step({"val_loss": bad})
    assert sched.state_dict() == before


# --- optax: the same ticks, checked reports --------------------------------------------------------

@pytest.fixture
def optax_door():
    jnp = pytest.importorskip("jax.numpy")
    return pytest.importorskip("lrdsl.optax"), jnp


def test_optax_schedule_counts_a_negative_count_as_zero(optax_door):
    lo, jnp = optax_door
    lr = lo.schedule(EXPR)
    assert float(lr(-1)) == float(lr(jnp.int32(-7))) == pytest.approx(f(0), rel=1e-6)
    assert float(lr(jnp.int32(5))) == pytest.approx(f(5), rel=1e-6)


def test_optax_transform_takes_a_huge_python_int_report(optax_door):
    lo, jnp = optax_door
    tx = lo.transform("0.1 | plateau(loss, 0.5, patience=0)")
    state = tx.init(jnp.zeros(1))
    _, state = tx.update(jnp.ones(1), state, value=10 ** 30)  # best 1e30
    _, state = tx.update(jnp.ones(1), state, value=10 ** 30)  # no improvement: halved
    assert float(state.plateau.scale) == 0.5


@pytest.mark.parametrize("bad, said", [
    (dict(value=1.0, report="yes"), "report must be a bool"),
    (dict(value=1.0, report=[True]), "report must be a bool"),
    (dict(value="x"), "'loss'"), (dict(value=True), "'loss'"), (dict(value=10 ** 400), None),
])
def test_optax_transform_refuses_what_is_no_report(optax_door, bad, said):
    lo, jnp = optax_door
    tx = lo.transform("0.1 | plateau(loss, 0.5, patience=0)")
    state = tx.init(jnp.zeros(1))
    if said is None:  # an int beyond float range is an infinite loss, as float('inf') would be
        _, state = tx.update(jnp.ones(1), state, **bad)
        assert float(state.plateau.best) == math.inf
        return
    with pytest.raises(lrdsl.LrdslError, match=said):
        tx.update(jnp.ones(1), state, **bad)


def test_optax_transform_refuses_a_state_that_is_not_its_own(optax_door):
    lo, jnp = optax_door
    tx = lo.transform("0.1 | plateau(loss, 0.5)")
    with pytest.raises(lrdsl.LrdslError, match="needs the state from init"):
        tx.update(jnp.ones(1), None)
    with pytest.raises(lrdsl.LrdslError, match="lacks a plateau state"):
        tx.update(jnp.ones(1), lo.transform("0.1").init(jnp.zeros(1)))


# --- report_every ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["7", 0, -1, float("inf"), float("nan"), True])
def test_curve_refuses_a_report_every_that_is_no_positive_finite_number(bad):
    with pytest.raises(lrdsl.LrdslError, match="report_every"):
        lrdsl.curve("0.1 | plateau(loss, 0.5, patience=0)", 5, metrics={"loss": [1, 1]},
                    report_every=bad)


# --- 6. plateaus that cannot fire ---------------------------------------------------------------

PLATEAU = "cosine(0.1, 100%) | plateau(val_loss, 0.5)"


def _lightning_fit(with_validation, epochs=2, **trainer_args):
    L = pytest.importorskip("lightning")
    import lrdsl.lightning
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Validated(Tiny):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = L.Trainer(max_epochs=epochs, callbacks=[lrdsl.lightning.Schedule(PLATEAU)],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, **trainer_args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Validated() if with_validation else Tiny(), loader,
                    loader if with_validation else None)
    return [str(w.message) for w in caught if "lrdsl" in str(w.message)]


def test_lightning_warns_once_when_no_validation_can_report_the_monitor():
    said = _lightning_fit(with_validation=False, epochs=3)
    assert len(said) == 1
    assert "monitors 'val_loss'" in said[0] and "epoch 0 ended without a validation" in said[0]


def test_lightning_says_nothing_when_validation_reports_the_monitor():
    assert _lightning_fit(with_validation=True) == []
    assert _lightning_fit(with_validation=True, check_val_every_n_epoch=2) == []


def _hf_train(eval_strategy):
    pytest.importorskip("transformers")
    import lrdsl.hf
    from transformers import Trainer, TrainingArguments

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def forward(self, x, labels=None):
            loss = (self.layer(x).squeeze(-1) - labels).pow(2).mean()
            return {"loss": loss}

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"x": torch.full((2,), float(i)), "labels": torch.tensor(float(i % 2))}

    import tempfile
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=4, num_train_epochs=3,
                                 learning_rate=0.1, eval_strategy=eval_strategy, save_strategy="no",
                                 report_to=[], disable_tqdm=True, use_cpu=True, logging_strategy="no")
        trainer = Trainer(model=Tiny(), args=args, train_dataset=Rows(),
                          eval_dataset=Rows() if eval_strategy != "no" else None,
                          callbacks=[lrdsl.hf.Schedule(PLATEAU.replace("val_loss", "eval_loss"))])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train()
    return [str(w.message) for w in caught if "lrdsl" in str(w.message)]


def test_hf_warns_once_when_no_evaluation_can_report_the_monitor():
    said = _hf_train("no")
    assert len(said) == 1
    assert "monitors 'eval_loss'" in said[0] and "eval_strategy='no'" in said[0]


def test_hf_says_nothing_when_each_epoch_is_evaluated():
    assert _hf_train("epoch") == []


def test_keras_fit_without_validation_says_so_at_the_first_epoch_end():
    keras = pytest.importorskip("keras")
    import numpy as np

    import lrdsl.keras
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(lrdsl.MetricError, match="monitors 'val_loss'.*pass validation_data"):
        model.fit(np.zeros((8, 2)), np.zeros((8, 1)), batch_size=4, epochs=3, verbose=0,
                  callbacks=[seen, lrdsl.keras.callback("0.1 | plateau(val_loss, 0.5)")])
    assert epochs == [0]


@pytest.mark.parametrize("state, said", [
    ({"epoch": -5}, "epoch must be an integer"), ({"epoch": float("nan")}, "epoch must be an integer"),
    ({"epoch": "3"}, "epoch must be an integer"), ({"epoch": 1.5}, "epoch must be an integer"),
    ({"epoch": 2, "plateau": {"scale": float("nan"), "best": 1.0, "bad": 0, "cooldown_left": 0}},
     "scale must be a number"),
])
def test_keras_schedule_refuses_a_corrupt_saved_state(state, said):
    pytest.importorskip("keras")
    import lrdsl.keras
    config = lrdsl.keras.callback("0.1 | plateau(val_loss, 0.5)").schedule.get_config()
    with pytest.raises(lrdsl.LrdslError, match=said):
        lrdsl.keras.Schedule.from_config({**config, "state": state})


def test_keras_schedule_counts_a_negative_tick_as_zero_and_refuses_a_fraction():
    keras = pytest.importorskip("keras")
    import lrdsl.keras

    schedule = lrdsl.keras.schedule("linear(0.2, 0.1, 10)")
    assert schedule.lr_at(-3) == schedule.lr_at(0) == 0.2
    assert float(schedule(keras.ops.convert_to_tensor(-3))) == pytest.approx(0.2)
    with pytest.raises(lrdsl.LrdslError, match="integer tick"):
        schedule.lr_at(2.5)
