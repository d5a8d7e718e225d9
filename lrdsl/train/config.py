"""Hydra config: dataclass schemas in the ConfigStore, the conf/ directory, validation.

A misspelt key or a wrong type fails when Hydra composes (the schemas are structured
configs); a bad schedule expression fails right after, naming the key with a caret.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from lrdsl import channels
from lrdsl.errors import LrdslError, did_you_mean, misspelling_of
from lrdsl.language.nodes import Plateau
from lrdsl.language.parser import parse
from lrdsl.train.tensorboard_log import tensorboard_writer
from lrdsl.train.rundir import register_resolver

UNITS = ("step", "epoch")
#: the optimizer hyperparameters a schedule config may drive besides the LR (lrdsl.channels)
TARGETS = tuple(channels.CHANNELS[t].config_key for t in channels.OTHER_TARGETS)
#: which of this app's optimizers have each target, on both backends (momentum: SGD/RMSprop,
#: or Adam's beta1): the app's optimizer menu, not the target's meaning, so it lives here
TARGET_OPTIMIZERS = {
    "momentum": ("sgd", "rmsprop", "adam", "adamw"),
    "beta2": ("adam", "adamw"),
    "weight_decay": ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"),
}


#: a schedule config's own keys, and their defaults; any other key is a named number (a number)
#: or a free value's expression (text: ``ema: anneal(0.99, 0.999, 100%)``)
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "expr": MISSING,
    "unit": "step",  # what one tick is: "step" (the scheduler steps per batch) or "epoch"
    "clock": "ticks",  # what positions count: "ticks" (steps or epochs) or "samples" (backend=torch)
    # optional schedules of other hyperparameters (expressions; no ``| plateau``); None: untouched
    **{key: None for key in TARGETS},
}
SCHEDULE_KEYS = tuple(SCHEDULE_DEFAULTS)
CLOCKS = ("ticks", "samples")
#: the free values this app reads (lrdsl.channels.FREE), and the backends that honour each:
#: the model's dropout rate (torch: per step; Keras: per epoch, its Dropout's rate is a constant
#: of the compiled step), an EMA of the weights (its decay) and the batch size drawn
FREE_VALUES = {"dropout": ("torch", "keras"), "ema": ("torch",), "batch_size": ("torch",)}


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class BackendConfig:
    name: str = "torch"
    #: backend=keras: Keras 3's own backend (tensorflow, jax or torch); null: $KERAS_BACKEND
    keras_backend: Optional[str] = None


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    channels: list[int] = field(default_factory=lambda: [16, 32])
    dropout: float = 0.0


@dataclass
class DataConfig:
    name: str = "digits"
    path: Optional[str] = None
    val_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    strategy: str = "single"
    resume: Optional[str] = None
    stop_after: Optional[int] = None
    progress: bool = True
    #: with resume: continue the checkpoint under an edited schedule (expressions/targets) from its tick
    rebase: bool = False
    #: csv (metrics.csv and lr.csv alone) or tensorboard (those, and TensorBoard event files)
    logger: str = "csv"


@dataclass
class TrainConfig:
    # a schedule is an open mapping, not a dataclass: besides SCHEDULE_KEYS it holds named
    # numbers (``peak: 0.1`` with ``expr: onecycle(${schedule.peak}, 100%)``) that a sweeper
    # can search; validate() checks its keys and types instead (a misspelt key is not a number)
    schedule: Dict[str, Any] = field(default_factory=lambda: dict(SCHEDULE_DEFAULTS))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


ConfigStore.instance().store(name="train_schema", node=TrainConfig)
register_resolver()  # ${lrdsl.claim:…} in conf/train.yaml's hydra.run.dir


def seed_unless_shared(seed: Optional[int], storage: Optional[str]) -> Optional[int]:
    """An Optuna sampler's seed: ``seed`` for a study held in memory (one worker: the sweep is
    reproducible), None when the study lives in a storage (``hydra.sweeper.storage``), which
    several workers may share: with one seed they would all draw the same parameters, so each
    seeds its sampler from fresh entropy instead.  ``${lrdsl.seed_unless_shared:0,${hydra.sweeper.storage}}``
    in conf/experiment/tune_onecycle.yaml; a worker's explicit ``hydra.sweeper.sampler.seed=N``
    replaces it."""
    return seed if storage in (None, "") else None


def _register_seed_resolver() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("lrdsl.seed_unless_shared"):
        OmegaConf.register_new_resolver("lrdsl.seed_unless_shared", seed_unless_shared)


_register_seed_resolver()

CHOICES = {
    "optimizer.name": ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"),
    "backend.name": ("torch", "keras"),
    "model.name": ("mlp", "cnn"),
    "data.name": ("digits", "npz"),
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.strategy": ("single", "ddp"),
    "trainer.logger": ("csv", "tensorboard"),
    "schedule.unit": UNITS,
    "schedule.clock": CLOCKS,
}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


#: every numeric config field: (key, test, the range in words)
RANGES = (
    ("trainer.epochs", lambda x: x >= 1, "≥ 1"),
    ("trainer.batch_size", lambda x: x >= 1, "≥ 1"),
    ("trainer.seed", lambda x: 0 <= x < 2**32, "in [0, 2³²)"),
    ("trainer.stop_after", lambda x: x is None or x >= 1, "≥ 1 (or null)"),
    ("optimizer.momentum", lambda x: _finite(x) and 0 <= x < 1, "in [0, 1)"),
    ("optimizer.weight_decay", lambda x: _finite(x) and x >= 0, "≥ 0"),
    ("model.dropout", lambda x: _finite(x) and 0 <= x < 1, "in [0, 1)"),
    ("model.hidden", lambda x: x >= 1, "widths ≥ 1"),
    ("model.channels", lambda x: x >= 1, "channel counts ≥ 1"),
    ("data.val_fraction", lambda x: _finite(x) and 0 < x < 1, "in (0, 1), exclusive"),
    ("data.split_seed", lambda x: 0 <= x < 2**32, "in [0, 2³²)"),
)
LISTS = ("model.hidden", "model.channels")


def _show(value) -> str:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value))
    return repr(value) if isinstance(value, str) else str(value)


def conf_dir() -> Path:
    """The shipped configs: inside the installed package, else the source tree's conf/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise LrdslError(f"lrdsl's Hydra configs are missing (looked in {here / 'conf'}); reinstall lrdsl")


def validate(cfg: Any) -> None:
    """Check what the schema cannot: choices, the expression, and its units against the unit."""
    from omegaconf import OmegaConf

    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in choices:
            raise LrdslError(f"config key {key}={value!r} is not one of {', '.join(choices)}"
                             + did_you_mean(str(value), choices))
    for key, check, words in RANGES:
        value = OmegaConf.select(cfg, key)
        values = list(value) if key in LISTS else [value]
        if key in LISTS and not values:
            raise LrdslError(f"config key {key} must list at least one width, got []")
        for item in values:
            if not check(item):
                raise LrdslError(f"config key {key} must be {words}, got {_show(value)}")
    if cfg.data.name == "npz" and (OmegaConf.is_missing(cfg.data, "path") or cfg.data.path in (None, "")):
        raise LrdslError("config key data.path: data=npz needs data.path=FILE.npz")
    _check_schedule_keys(cfg)
    for key in ("expr", *TARGETS, *free_values(cfg)):
        _check_expression(cfg, key)
    program_of(cfg)  # the channels together: a misspelt target, a plateau outside lr
    _check_program(cfg)
    if cfg.trainer.logger == "tensorboard":
        tensorboard_writer()  # fails now, naming the extra, rather than after the first epoch
    if cfg.trainer.rebase and not cfg.trainer.resume:
        raise LrdslError("config key trainer.rebase=true continues a checkpoint under a new schedule: "
                         "it needs trainer.resume=PATH")


def _check_schedule_keys(cfg: Any) -> None:
    """``schedule``: expr is set, expressions are text, and every other key is a named number
    (a finite int or float) — the checks a dataclass schema would make, on an open mapping."""
    import difflib

    from omegaconf import OmegaConf

    for key in cfg.schedule:
        if key in SCHEDULE_KEYS:
            continue
        value = cfg.schedule[key]
        if _finite(value) and key not in FREE_VALUES:  # a named number: not a channel's misspelt name
            close = misspelling_of(str(key), [*TARGETS, *FREE_VALUES, *SCHEDULE_KEYS])
            if close is not None:
                raise LrdslError(f"config key schedule.{key}={_show(value)}: a named number called like "
                                 f"schedule.{close} misspelt; did you mean schedule.{close}? (rename "
                                 f"it, e.g. {key}_value, if it really is a named number)")
        # text under a target's misspelt name: lrdsl.program refuses it (program_of), naming it
        misspelt = isinstance(value, str) and misspelling_of(str(key), TARGETS) is not None
        if not (_finite(value) or key in FREE_VALUES and isinstance(value, str) or misspelt):
            near = difflib.get_close_matches(str(key), [*SCHEDULE_KEYS, *FREE_VALUES], n=1, cutoff=0.6)
            raise LrdslError(f"config key schedule.{key}={_show(value)}: a schedule's extra keys are named "
                             f"numbers (e.g. peak: 0.1, used as ${{schedule.peak}} in expr) or the free values "
                             f"this app reads, {', '.join(FREE_VALUES)} (expressions: e.g. ema: "
                             f"'anneal(0.99, 0.999, 100%)'), and this is neither"
                             + (f"; did you mean schedule.{near[0]}?" if near else
                                f"; the schedule's own keys are {', '.join(SCHEDULE_KEYS)}"))
    if OmegaConf.is_missing(cfg.schedule, "expr"):
        raise LrdslError("config key schedule.expr is missing: pick a preset (schedule=cosine) or set "
                         "schedule.expr='<expression>'")
    for key in ("expr", *TARGETS):
        value = cfg.schedule[key]
        if not (isinstance(value, str) or key != "expr" and value is None or _finite(value)):
            raise LrdslError(f"config key schedule.{key} must be an expression, got {_show(value)}")


def _check_expression(cfg: Any, key: str) -> None:
    """``schedule.<key>`` parses, suits schedule.unit, and (a target) the optimizer has it."""
    text = cfg.schedule[key]
    if text is None:
        return
    try:
        expr = parse(str(text))
    except LrdslError as error:
        raise LrdslError(f"config key schedule.{key}: {error.pointed()}", expr=error.expr) from None
    if cfg.schedule.unit == "epoch" and "st" in expr.units():
        raise LrdslError(f"config key schedule.{key} counts optimizer steps (st), but schedule.unit is "
                         "epoch: set schedule.unit=step")
    if key == "expr":
        return
    if isinstance(expr, Plateau):
        raise LrdslError(f"config key schedule.{key}: only the learning rate (schedule.expr) may carry "
                         f"'| plateau', got {expr}")
    if key not in TARGET_OPTIMIZERS:  # a free value: the app's checks are _check_program's
        return
    name, having = cfg.optimizer.name, TARGET_OPTIMIZERS[key]
    if name not in having:
        raise LrdslError(f"config key schedule.{key}: optimizer.name={name} has no {key} to schedule; "
                         f"use one of {', '.join(having)} (e.g. optimizer=sgd_momentum), or "
                         f"schedule.{key}=null")


def free_values(cfg: Any) -> dict[str, str]:
    """The schedule's free values: {name: expression text}: every extra key holding text, and
    a free value this app reads given as a number (``++schedule.dropout=0.1``: a constant)."""
    return {str(key): str(value) for key, value in cfg.schedule.items()
            if key not in SCHEDULE_KEYS and (isinstance(value, str) or key in FREE_VALUES and _finite(value))}


def program_of(cfg: Any):
    """The schedule as one :func:`lrdsl.program`: lr (``expr``), the scheduled targets and the
    free values; a :class:`~lrdsl.programs.ProgramError` (a misspelt target: ``momentun``)
    names the config key."""
    import difflib

    from lrdsl.programs import ProgramError, program

    free = free_values(cfg)
    try:
        return program({"lr": str(cfg.schedule.expr), **targets(cfg), **free})
    except ProgramError as error:
        name = next((n for n in free if repr(n) in error.message or error.message.startswith(f"{n}:")), None)
        close = difflib.get_close_matches(name, TARGETS, n=1, cutoff=0.6) if name else []
        where = f"config key schedule.{name}: " if name else "config key schedule: "
        hint = f"; did you mean schedule.{close[0]}?" if close else ""
        raise ProgramError(f"{where}{error.message}{hint}") from None


def _check_program(cfg: Any) -> None:
    """The app's side of the program: its free values on the backends that honour them, and
    the samples clock's needs."""
    backend = cfg.backend.name
    for name in free_values(cfg):  # each one of FREE_VALUES (_check_schedule_keys)
        if backend not in FREE_VALUES[name]:
            raise LrdslError(f"config key schedule.{name}: backend={backend} does not honour a scheduled "
                             f"{name}; use backend={FREE_VALUES[name][0]} (docs/app.md), or schedule.{name}=null")
    samples = cfg.schedule.clock == "samples"
    if samples and backend != "torch":
        raise LrdslError(f"config key schedule.clock=samples: backend={backend} counts steps; use backend=torch")
    if samples and cfg.trainer.strategy != "single":
        raise LrdslError("config key schedule.clock=samples is for trainer.strategy=single (under DDP each "
                         "process draws its own batches)")
    if samples and cfg.schedule.unit != "step":
        raise LrdslError("config key schedule.clock=samples counts the samples each step draws: it needs "
                         "schedule.unit=step")
    if "batch_size" in free_values(cfg):
        if not samples:
            raise LrdslError("config key schedule.batch_size: a batch-size schedule changes the steps an epoch "
                             "takes, so it runs on the samples clock: set schedule.clock=samples")
        if cfg.trainer.logger == "tensorboard":
            raise LrdslError("config key schedule.batch_size: trainer.logger=tensorboard needs a fixed number "
                             "of steps per epoch; use trainer.logger=csv")


def targets(cfg: Any) -> dict[str, str]:
    """The scheduled targets besides the LR: {target: expression text}, in TARGETS order."""
    return {t: str(cfg.schedule[t]) for t in TARGETS if cfg.schedule[t] is not None}


def tick_units(cfg: Any, steps_per_epoch: int, samples_per_epoch: int | None = None
               ) -> tuple[bool, int, dict[str, Any]]:
    """(per step?, ticks per epoch, the scheduler's units) for ``schedule.unit`` and
    ``schedule.clock``.  On the samples clock positions count samples: ``total`` is epochs ×
    the training set's size (``%`` is a share of it), ``ep`` is one pass over the data and, with
    a fixed batch size, ``st`` is ``trainer.batch_size`` samples."""
    per_step = cfg.schedule.unit == "step"
    ticks_per_epoch = steps_per_epoch if per_step else 1
    if cfg.schedule.get("clock", "ticks") == "samples":
        assert samples_per_epoch is not None
        units: dict[str, Any] = {"total": cfg.trainer.epochs * samples_per_epoch, "clock": "samples",
                                 "samples_per_epoch": samples_per_epoch}
        if "batch_size" not in free_values(cfg):
            units["samples_per_step"] = cfg.trainer.batch_size
        return per_step, ticks_per_epoch, units
    units = {"steps_per_epoch": steps_per_epoch if per_step else None,
             "total": cfg.trainer.epochs * ticks_per_epoch}
    return per_step, ticks_per_epoch, units


def compose(overrides: Sequence[str] = ()) -> Any:
    """Compose conf/train.yaml with overrides (as the app does) and validate it."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        cfg = hydra_compose(config_name="train", overrides=list(overrides))
    validate(cfg)
    return cfg


def run_title(cfg, backend: str) -> str:
    """curves.png's title: the schedule (each scheduled target too), optimizer and backend."""
    scheduled = "".join(f"\n{name}: {expr}" for name, expr in {**targets(cfg), **free_values(cfg)}.items())
    return f"{cfg.schedule.expr}  ({cfg.optimizer.name}, {backend}){scheduled}"
