"""The frameworks' internals lrdsl still relies on, each behind a guard: when a framework drops or
changes one, lrdsl says so with an LrdslError (or, for torch's first step, takes it itself)
instead of running at a silently wrong learning rate.

Each test changes a framework object the way a future release might, and checks the guard."""

import os
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

import lrdsl  # noqa: E402


# --- Keras ----------------------------------------------------------------------------------------
def _keras_model(optimizer):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _callback_on(model, expr="cosine(0.1, 10)", **kwargs):
    import lrdsl.keras
    callback = lrdsl.keras.callback(expr, **kwargs)
    callback.set_model(model)
    return callback


def test_keras_without_the_private_learning_rate_is_a_clear_error():
    keras = pytest.importorskip("keras")
    model = _keras_model(keras.optimizers.SGD(0.1))
    object.__delattr__(model.optimizer, "_learning_rate")  # a Keras that renamed it
    with pytest.raises(lrdsl.LrdslError, match="_learning_rate attribute of keras.optimizers.Optimizer"):
        _callback_on(model).on_train_begin()


def test_keras_whose_learning_rate_setter_keeps_the_schedule_elsewhere_is_a_clear_error():
    keras = pytest.importorskip("keras")

    class Elsewhere(keras.optimizers.SGD):
        @property
        def learning_rate(self):
            return self._get_current_learning_rate()

        @learning_rate.setter
        def learning_rate(self, value):
            object.__setattr__(self, "_somewhere_else", value)

    model = _keras_model(Elsewhere(0.1))
    with pytest.raises(lrdsl.LrdslError, match="does not hold it"):
        _callback_on(model).on_train_begin()


def test_keras_whose_momentum_cannot_hold_a_variable_is_a_clear_error():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() == "jax":
        pytest.skip("targets need the tensorflow or torch backend")

    class ReadOnly(keras.optimizers.SGD):
        pass

    optimizer = ReadOnly(0.1, momentum=0.9)
    ReadOnly.momentum = property(lambda self: 0.9)  # a momentum computed, not stored
    model = _keras_model(optimizer)
    with pytest.raises(lrdsl.LrdslError, match="momentum of ReadOnly"):
        _callback_on(model, momentum="0.9").on_train_begin()


def test_keras_whose_momentum_reads_back_otherwise_is_a_clear_error():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() == "jax":
        pytest.skip("targets need the tensorflow or torch backend")

    class Copied(keras.optimizers.SGD):  # a momentum kept as a float copy of what was set
        @property
        def momentum(self):
            return float(self.__dict__.get("_m", 0.9))

        @momentum.setter
        def momentum(self, value):
            self.__dict__["_m"] = value if isinstance(value, float) else 0.9

    model = _keras_model(Copied(0.1, momentum=0.9))
    with pytest.raises(lrdsl.LrdslError, match="scheduling it would have no effect"):
        _callback_on(model, momentum="0.9").on_train_begin()


def test_keras_schedule_state_in_the_saved_format_loads_through_the_runtime():
    pytest.importorskip("keras")
    import lrdsl.keras
    expr = "cosine(0.1, 10) | plateau(val_loss, 0.5)"
    saved = {"epoch": 3, "plateau": {"scale": 0.5, "best": 1.0, "bad": 0, "cooldown_left": 0}}
    schedule = lrdsl.keras.Schedule(expr, tick="epoch", state=saved)
    assert schedule.epoch == schedule.runtime.tick == 3 and schedule.plateau.scale == 0.5
    assert schedule.get_config()["state"] == saved  # the format it has always written
    assert schedule.lr_at(3) == pytest.approx(0.5 * lrdsl.curve("cosine(0.1, 10)", [3])[0])
    with pytest.raises(lrdsl.LrdslError, match="plateau"):
        lrdsl.keras.Schedule(expr, tick="epoch", state={"epoch": 3, "plateau": {"scale": 2.0}})
    with pytest.raises(lrdsl.LrdslError, match="epoch must be an integer"):
        lrdsl.keras.Schedule(expr, tick="epoch", state={"epoch": -1})


# --- torch ----------------------------------------------------------------------------------------
def test_torch_whose_constructor_takes_no_first_step_still_starts_at_tick_0(monkeypatch):
    torch = pytest.importorskip("torch")
    import lrdsl.torch
    from torch.optim.lr_scheduler import LRScheduler

    monkeypatch.setattr(LRScheduler, "_initial_step", lambda self: None)  # a torch without it
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = lrdsl.torch.scheduler(optimizer, "warmup(4) >> 0.1")
    assert sched.last_epoch == 0 and sched._step_count == 1
    assert optimizer.param_groups[0]["lr"] == sched.get_last_lr()[0] == lrdsl.curve("warmup(4) >> 0.1", [0])[0]


# --- Hugging Face ---------------------------------------------------------------------------------
def _hf_take_over(hf_scheduler):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import lrdsl.hf
    import lrdsl.torch
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = lrdsl.torch.scheduler(optimizer, "0.1")
    lrdsl.hf._take_over(hf_scheduler, sched, 1)


def test_hf_scheduler_whose_methods_cannot_be_replaced_is_a_clear_error():
    class Slotted:  # no instance __dict__: its methods cannot be rewritten on the instance
        __slots__ = ()

        def step(self):
            pass

    with pytest.raises(lrdsl.LrdslError, match="needs to replace step, get_last_lr"):
        _hf_take_over(Slotted())

    class Fixed:
        step = property(lambda self: (lambda: None))  # read-only: the Trainer would step it
        get_last_lr = state_dict = load_state_dict = None

    with pytest.raises(lrdsl.LrdslError, match="needs to replace step of the Trainer's scheduler"):
        _hf_take_over(Fixed())


# --- Lightning ------------------------------------------------------------------------------------
def test_lightning_whose_trainer_steps_other_scheduler_configs_is_a_clear_error():
    torch = pytest.importorskip("torch")
    pytest.importorskip("lightning")
    import lrdsl.lightning
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    trainer = types.SimpleNamespace(  # a trainer that no longer reads the strategy's list
        optimizers=[optimizer], estimated_stepping_batches=10, num_training_batches=5,
        accumulate_grad_batches=1, strategy=types.SimpleNamespace(lr_scheduler_configs=[]),
        lr_scheduler_configs=[])
    with pytest.raises(lrdsl.LrdslError, match="LR would stay at its first value"):
        lrdsl.lightning.Schedule("cosine(0.1, 10)").on_fit_start(trainer, None)
