"""Training with Keras 3: the lrdsl callback drives the optimizer's LR.

Each epoch is one ``fit`` call on data shuffled with ``seed + epoch`` and a reseeded RNG, so
a run resumed from ``checkpoint.keras`` (model, optimizer, schedule state and the lrdsl
manifest in one file) trains exactly as the uninterrupted one.

A scheduled ``dropout`` is set per epoch: Keras's Dropout reads its rate when the train step is
traced, so each epoch sets every Dropout layer's rate to the schedule's value at the epoch's
first tick and has ``fit`` trace the step anew.  (``ema`` and ``batch_size`` are the torch
loop's: config.FREE_VALUES.)
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lrdsl
from lrdsl import channels
from lrdsl.errors import LrdslError
from lrdsl.train import checkpoint as ckpt
from lrdsl.train.checkpoint import rebase_lines
from lrdsl.train.config import free_values, run_title, targets as scheduled_targets, tick_units
from lrdsl.train.console import epoch_line
from lrdsl.train.csv_files import lr_columns
from lrdsl.train.resume import end_epoch, restore_logs, resume_checkpoint
from lrdsl.train.run_log import RunLog, closing_run
from lrdsl.train.data import Dataset


KERAS_BACKENDS = ("tensorflow", "jax", "torch")


def _use_keras_backend(name: str | None) -> None:
    """``backend.keras_backend``: Keras reads KERAS_BACKEND once, at its first import."""
    if name is None:
        return
    if name not in KERAS_BACKENDS:
        raise LrdslError(f"config key backend.keras_backend={name!r} is not one of "
                         f"{', '.join(KERAS_BACKENDS)}")
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise LrdslError(f"backend.keras_backend={name}, but Keras is already running on "
                         f"{keras.backend.backend()} in this process")
    os.environ["KERAS_BACKEND"] = name


def _select_device(device: str):
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before TensorFlow starts
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if device == "cuda":
        import tensorflow as tf

        if keras.backend.backend() == "tensorflow" and not tf.config.list_physical_devices("GPU"):
            raise LrdslError("trainer.device=cuda, but TensorFlow sees no GPU; use auto or cpu")
    return keras


def scheduled_dropout(keras):
    """The Dropout layer of a model whose dropout is scheduled: Keras's own, except that it
    always has its random generator (Keras makes none for a rate of 0, and a built layer can
    gain no state), so a rate of 0 may later rise.  Registered for ``load_model``."""
    found = keras.saving.get_registered_object("lrdsl>ScheduledDropout")
    if found is not None:
        return found

    @keras.saving.register_keras_serializable(package="lrdsl")
    class ScheduledDropout(keras.layers.Dropout):
        def __init__(self, rate, **kwargs):
            super().__init__(0.5, **kwargs)  # a positive rate: Keras makes the generator
            self.rate = float(rate)

    return ScheduledDropout


def build_model(keras, cfg, data: Dataset, scheduled: bool = False):
    """The model; ``scheduled``: its dropout layers are :func:`scheduled_dropout`'s."""
    dropout = scheduled_dropout(keras) if scheduled else keras.layers.Dropout
    layers = [keras.Input(data.x_train.shape[1:])]
    if cfg.name == "cnn":
        assert data.image_shape is not None  # the app checks model=cnn against the data first
        layers.append(keras.layers.Reshape((*data.image_shape, 1)))
        for channels in cfg.channels:
            layers += [keras.layers.Conv2D(channels, 3, padding="same", activation="relu"),
                       keras.layers.MaxPooling2D(2, padding="same")]
    layers.append(keras.layers.Flatten())
    for width in cfg.hidden:
        layers += [keras.layers.Dense(width, activation="relu"), dropout(cfg.dropout)]
    layers.append(keras.layers.Dense(data.classes))
    return keras.Sequential(layers)


def build_optimizer(keras, cfg):
    o = keras.optimizers
    wd = cfg.weight_decay or None
    if cfg.name == "sgd":
        return o.SGD(learning_rate=0.1, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                     weight_decay=wd)
    if cfg.name == "rmsprop":
        return o.RMSprop(learning_rate=0.01, momentum=cfg.momentum, weight_decay=wd)
    if cfg.name == "adamw":
        return o.AdamW(learning_rate=0.01, weight_decay=cfg.weight_decay)
    classes = {"adam": o.Adam, "adagrad": o.Adagrad, "adadelta": o.Adadelta}
    return classes[cfg.name](learning_rate=0.01, weight_decay=wd)  # the schedule sets the lr


def optimizer_value(keras, optimizer, target: str) -> float | None:
    """The optimizer's current ``target`` (``lr``, ``momentum``…) as a float, None if it has none.

    A value may be a float, a variable or (the LR) a schedule: a schedule is read at the
    optimizer's current iteration, as Keras does.
    """
    if target == "lr":
        value = optimizer.learning_rate
    else:
        attribute = channels.target(target).keras_attribute(optimizer)
        value = None if attribute is None else getattr(optimizer, attribute)
        if value is None:  # no such attribute, or Keras's weight_decay=None
            return None
        if callable(value) and not hasattr(value, "assign"):  # a schedule object
            value = value(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(value))


def train(cfg, data: Dataset, out: Path) -> dict:
    """Train ``cfg``'s model on ``data`` into ``out``; the last epoch's metrics row."""
    trainer = cfg.trainer
    keras = _start_keras(trainer, cfg.backend.get("keras_backend"))
    steps = -(-len(data.x_train) // trainer.batch_size)
    per_step, ticks_per_epoch, units = tick_units(cfg, steps)
    targets, free = scheduled_targets(cfg), free_values(cfg)
    checkpoint = resume_checkpoint(trainer)
    expected = ckpt.manifest(cfg, data, backend="keras", epochs_done=0, ticks_done=0, units=units)
    if checkpoint is None:
        model, meta = _fresh_model(keras, cfg, data), None
    else:
        model, meta = _resume(keras, checkpoint, expected, trainer.rebase, steps)
    start = 0 if meta is None else meta["epochs_done"]
    ckpt.remove_stray_temporaries(out)
    saved_values: dict = {}
    if checkpoint is not None:
        saved_values = _saved_values(keras, model.optimizer, start * ticks_per_epoch)
        restore_logs(checkpoint.parent, out, start, start * ticks_per_epoch, lr_columns((*targets, *free)),
                     fill={**{name: math.nan for name in free}, **saved_values})
    import lrdsl.keras

    schedule_cb = lrdsl.keras.callback(cfg.schedule.expr, momentum=targets.get("momentum"),
                                       beta2=targets.get("beta2"), weight_decay=targets.get("weight_decay"),
                                       rebase=bool(trainer.rebase and checkpoint is not None), **units)
    log = RunLog(out, append=checkpoint is not None, targets=(*targets, *free), logger=trainer.logger,
                 ticks_per_epoch=ticks_per_epoch)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)] if free else []
    recorder = _recorder(keras, schedule_cb, log)
    rebase = _Rebase(meta, expected, saved_values) if meta is not None and trainer.rebase else None
    ticks = _tick_logger(keras, schedule_cb, recorder, log, targets, per_step, rebase, dropouts)
    result: dict = {}
    with closing_run(log, out, run_title(cfg, "keras")):
        for epoch in range(start, end_epoch(trainer, start)):
            if dropouts:
                rate = float(lrdsl.curve(free["dropout"], [epoch * ticks_per_epoch], **units)[0])
                set_dropout(model, dropouts, rate)
            _fit_epoch(keras, model, data, trainer, epoch, [recorder, schedule_cb, ticks])
            result = recorder.row
            print(epoch_line(result, trainer.epochs), flush=True)
            ckpt.save_keras(out / "checkpoint.keras", model,
                            {**expected, "epochs_done": epoch + 1, "ticks_done": (epoch + 1) * ticks_per_epoch})
    return result


def _start_keras(trainer, backend: str | None):
    """Keras on ``backend.keras_backend`` and ``trainer.device``, deterministic; the module."""
    _use_keras_backend(backend)
    import lrdsl.keras  # Keras starts here, on the backend just chosen

    if trainer.strategy != "single":
        raise LrdslError("trainer.strategy=ddp is for backend=torch (under torchrun)")
    keras = _select_device(trainer.device)
    scheduled_dropout(keras)  # registered before a checkpoint is loaded
    print(f"device: keras on {keras.backend.backend()}, "
          f"{'cpu' if trainer.device == 'cpu' else trainer.device}", flush=True)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # same seed, same run (CPU and GPU)
    return keras


def _fresh_model(keras, cfg, data: Dataset):
    """A new model, seeded, compiled with its optimizer, loss and accuracy metric."""
    keras.utils.set_random_seed(cfg.trainer.seed)
    model = build_model(keras, cfg.model, data, scheduled="dropout" in free_values(cfg))
    model.compile(optimizer=build_optimizer(keras, cfg.optimizer),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    return model


def _resume(keras, checkpoint: Path, expected: dict, rebase: bool, steps: int) -> tuple:
    """(model, manifest) from ``checkpoint``, its optimizer's step checked against the manifest."""
    if checkpoint.suffix != ".keras":
        raise LrdslError(f"trainer.resume: {checkpoint} is not a .keras checkpoint; this run has "
                         f"backend=keras")
    model, meta = ckpt.load_keras(checkpoint, expected, keras, rebase=rebase)
    start = meta["epochs_done"]
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if iterations != start * steps:
        raise LrdslError(f"trainer.resume: {checkpoint} is inconsistent (optimizer at step "
                         f"{iterations}, manifest after {start} epochs of {steps} steps)")
    return model, meta


def set_dropout(model, dropouts: list, rate: float) -> None:
    """Every Dropout layer's rate, in force from the next ``fit``: its train step is traced
    anew (Keras reads the rate when it traces the step)."""
    for layer in dropouts:
        if rate > 0 and not hasattr(layer, "seed_generator"):  # Keras makes none for a rate of 0
            raise LrdslError("schedule.dropout: this model's dropout layers were built with rate 0 and "
                             "cannot draw masks (a checkpoint of a run without a scheduled dropout, "
                             "trained with model.dropout=0); resume without schedule.dropout")
        layer.rate = rate
    model.train_function = None  # fit() makes it again


def _saved_values(keras, optimizer, tick: int) -> dict:
    """What the checkpointed run had in force at its tick: a rebase's "before", and the
    constants of targets it did not schedule."""
    values = {t: optimizer_value(keras, optimizer, t) for t in channels.TARGETS}
    loaded = getattr(optimizer, "_learning_rate", None)
    if loaded is not None and hasattr(loaded, "lr_at"):  # an lrdsl schedule: its LR at the tick, plateau included
        values["lr"] = float(loaded.lr_at(tick))
    return values


def _recorder(keras, schedule_cb, log: RunLog):
    """A callback that writes the epoch row, listed before the schedule callback so that the
    row is written before the schedule's report can fail; ``.row`` is the last one."""

    class Recorder(keras.callbacks.Callback):  # keras: imported per backend, passed in
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.began = epoch, time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.row = dict(epoch=epoch + 1, lr=schedule_cb.last_lr(epoch), loss=float(logs["loss"]),
                            val_loss=float(logs["val_loss"]), val_acc=float(logs["val_acc"]),
                            seconds=round(time.perf_counter() - self.began, 3))
            log.epoch(**self.row)

    return Recorder()


@dataclass
class _Rebase:
    """A rebased resume: the checkpoint's manifest, this run's, and the values in force at the
    checkpoint's tick, for :func:`rebase_lines`."""

    meta: dict
    expected: dict
    saved_values: dict

    def print_lines(self, now: dict) -> None:
        """The switch's lines, ``now`` being this run's values at its first tick."""
        now = {**now, **{t: self.saved_values[t] for t in channels.OTHER_TARGETS if t not in now}}
        for line in rebase_lines(self.meta, self.expected, self.saved_values, _Fixed(now)):
            print(line, flush=True)


def _tick_logger(keras, schedule_cb, recorder, log: RunLog, targets: dict, per_step: bool,
                 rebase: _Rebase | None, dropouts: list):
    """A callback for lr.csv: each tick's values, read before its batch and after the schedule
    callback's batch and epoch starts (it is listed after it), and the Dropout layers' rate
    (``dropouts``: with a scheduled dropout); on a rebased resume, the switch's lines, once."""

    class Ticks(keras.callbacks.Callback):  # keras: imported per backend, passed in
        def __init__(self, rebase: _Rebase | None):
            super().__init__()
            self.rebase = rebase

        def on_train_batch_begin(self, batch, logs=None):
            if per_step or batch == 0:
                optimizer = self.model.optimizer
                tick = int(keras.ops.convert_to_numpy(optimizer.iterations)) if per_step else recorder.epoch
                # the callback's schedule writes a target inside the compiled step, when the step
                # asks for the LR: read now, the optimizer still holds the previous tick's value
                schedule = getattr(schedule_cb, "schedule", None)
                values = [optimizer_value(keras, optimizer, "lr")] + [
                    float(schedule.target_at(t, tick)) if hasattr(schedule, "target_at")
                    else optimizer_value(keras, optimizer, t) for t in targets]
                log.tick(tick, *values, *((dropouts[0].rate,) if dropouts else ()))
                rebase, self.rebase = self.rebase, None  # its lines, once
                if rebase is not None:
                    rebase.print_lines(dict(zip(("lr", *targets), values)))

    return Ticks(rebase)


def _fit_epoch(keras, model, data: Dataset, trainer, epoch: int, callbacks: list) -> None:
    """One ``fit`` call over the data shuffled for ``epoch``, every RNG reseeded from it."""
    keras.utils.set_random_seed(trainer.seed + epoch)
    _reseed_layers(keras, model, trainer.seed + epoch)  # dropout: the same in a resumed run
    order = np.random.RandomState(trainer.seed + epoch).permutation(len(data.x_train))
    model.fit(data.x_train[order], data.y_train[order], batch_size=trainer.batch_size,
              initial_epoch=epoch, epochs=epoch + 1, shuffle=False,
              validation_data=(data.x_val, data.y_val), callbacks=callbacks,
              verbose=1 if trainer.progress else 0)


class _Fixed:
    """``get_last(target)`` over values already read (what :func:`rebase_lines` asks for)."""

    def __init__(self, values: dict):
        self.values = values

    def get_last(self, target: str) -> list:
        return [self.values[target]]


def _reseed_layers(keras, model, seed: int) -> None:
    """Set each layer's own seed generator (dropout) from the epoch's seed.

    Keras layers draw from a per-layer state that ``set_random_seed`` does not touch and that a
    loaded model rebuilds afresh; pinning it per epoch makes a resumed run draw the same masks.
    """
    for index, layer in enumerate(model.layers):
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            dtype = keras.ops.convert_to_numpy(generator.state).dtype
            generator.state.assign(np.array([seed * 1009 + index, 0], dtype=dtype))
