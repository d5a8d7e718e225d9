"""``lrdsl find``: the LR range test as a Hydra application on the train config.

The config is ``lrdsl train``'s (model, data, optimizer, backend, trainer.batch_size,
trainer.device, trainer.seed) plus the ``find`` group (conf/find/default.yaml).  The model,
data and optimizer come from the train app's own builders; the sweep is
:func:`lrdsl.torch.find_lr` / :func:`lrdsl.keras.find_lr`.  Writes ``find.csv`` and
``find.png`` in the run directory, draws the curve in the terminal and prints the suggestions
with a ready ``lrdsl train`` command.  One process (not DDP-aware).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig

from lrdsl.errors import LrdslError
from lrdsl.find.sweep import FindResult, check_sweep
from lrdsl.train.app import one_line_errors, run_hydra
from lrdsl.train.write_error import WriteError
from lrdsl.train.config import TrainConfig, conf_dir, validate


@dataclass
class FindConfig:
    start: float = 1e-7
    end: float = 10.0
    steps: int = 100
    smooth: float = 0.98
    diverge: float = 4.0


@dataclass
class FindAppConfig(TrainConfig):
    find: FindConfig = field(default_factory=FindConfig)


ConfigStore.instance().store(name="find_schema", node=FindAppConfig)


def validate_find(cfg) -> None:
    """The train config's checks, then the sweep's, each a one-line LrdslError."""
    validate(cfg)
    f = cfg.find
    check_sweep(f.start, f.end, f.steps, f.smooth, f.diverge, prefix="config key find.")
    if cfg.trainer.strategy != "single":
        raise LrdslError("lrdsl find runs in one process (the LR range test is not DDP-aware): "
                         "drop trainer.strategy=ddp")


def _torch(cfg, data) -> FindResult:
    import torch

    from lrdsl.find.torch import find_lr
    from lrdsl.train.torch_loop import _device, _wants_cuda, build_model, build_optimizer

    trainer = cfg.trainer
    device = _device(_wants_cuda(trainer.device), 0)
    torch.manual_seed(trainer.seed)
    model = build_model(cfg.model, data).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    loader = torch.utils.data.DataLoader(dataset, batch_size=trainer.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(trainer.seed))
    f = cfg.find
    return find_lr(model, optimizer, loader, torch.nn.functional.cross_entropy, start=f.start,
                   end=f.end, steps=f.steps, smooth=f.smooth, diverge=f.diverge, device=device)


def _keras(cfg, data) -> FindResult:
    from lrdsl.train.keras_loop import _select_device, build_model, build_optimizer

    trainer = cfg.trainer
    keras = _select_device(trainer.device)
    from lrdsl.find.keras import find_lr

    keras.utils.set_random_seed(trainer.seed)
    model = build_model(keras, cfg.model, data)
    model.compile(optimizer=build_optimizer(keras, cfg.optimizer),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    f = cfg.find
    return find_lr(model, data.x_train, data.y_train, batch_size=trainer.batch_size, start=f.start,
                   end=f.end, steps=f.steps, smooth=f.smooth, diverge=f.diverge, seed=trainer.seed)


def train_args(overrides: list[str]) -> list[str]:
    """The command-line overrides a follow-up ``lrdsl train`` needs: all but find's and the expr."""
    def kept(override: str) -> bool:
        key = override.lstrip("+~").split("=", 1)[0]
        return not (key == "find" or key.startswith("find.") or key == "schedule.expr")

    return [o for o in overrides if kept(o)]


def report(result: FindResult, out: Path, overrides: list[str], title: str) -> None:
    """find.csv, find.png, the terminal plot and the suggestions."""
    result.write_csv(out / "find.csv")
    result.plot(out / "find.png", title=title)
    size = shutil.get_terminal_size((100, 24))
    print(result.text_plot(width=min(size.columns, 120), height=max(8, min(16, size.lines - 12))))
    print()
    for line in result.summary(train_args(overrides)):
        print(line)
    print(f"artifacts: {out}  (find.csv, find.png)")


@hydra.main(config_path=str(conf_dir()), config_name="find", version_base=None)
def _app(cfg) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)

    def failed_write(error: LrdslError | OSError) -> str:  # find.csv or find.png: a full disk…
        if isinstance(error, WriteError):
            return str(error)
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        reason = getattr(error, "strerror", None) or str(error)
        return f"cannot write the results in {out}: {where}{reason[:1].lower()}{reason[1:]}"

    with one_line_errors("lrdsl find", failed_write):
        validate_find(cfg)
        from lrdsl.train.data import load

        data = load(cfg.data)
        if cfg.model.name == "cnn" and data.image_shape is None:
            raise LrdslError("model=cnn needs image data (x of shape N×H×W); use model=mlp")
        result = (_torch if cfg.backend.name == "torch" else _keras)(cfg, data)
        title = f"{result.expr}  ({cfg.model.name}, {cfg.optimizer.name}, {cfg.backend.name})"
        report(result, out, list(HydraConfig.get().overrides.task), title)


def main(argv: list[str] | None = None) -> int:
    """Run the LR range test with Hydra overrides, e.g. ``main(["optimizer=adam", "find.end=1"])``."""
    return run_hydra(_app, "lrdsl find", argv)


if __name__ == "__main__":
    main()
