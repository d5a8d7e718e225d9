"""``lrdsl train``: the Hydra application.  ``python -m lrdsl.train`` is the same, for torchrun."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from lrdsl.errors import LrdslError
from lrdsl.train import rundir
from lrdsl.train.config import conf_dir, validate


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base=None)
def _app(cfg) -> float:
    try:
        validate(cfg)
        out = Path(HydraConfig.get().runtime.output_dir)
        if rundir.is_rank_zero():
            rundir.lock(out)  # a multirun job's own directory; in a run, already held
        from lrdsl.train.data import load

        data = load(cfg.data)
        if cfg.model.name == "cnn" and data.image_shape is None:
            raise LrdslError("model=cnn needs image data (x of shape N×H×W); use model=mlp")
        if cfg.backend.name == "torch":
            from lrdsl.train.torch_loop import train
        else:
            from lrdsl.train.keras_loop import train
        result = train(cfg, data, out)
    except LrdslError as error:
        print(f"lrdsl train: {error.pointed()}", file=sys.stderr)
        sys.exit(2)
    if rundir.is_rank_zero():
        print(f"artifacts: {out}  (metrics.csv, lr.csv, curves.png, checkpoint)")
    return result.get("val_loss", float("nan"))


def run_hydra(app, program: str, argv: list[str] | None) -> int:
    """Run a Hydra ``app`` as ``program`` with ``argv`` as its command line (Hydra reads sys.argv)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    saved = sys.argv
    sys.argv = [program, *argv]
    try:
        app()
    finally:
        sys.argv = saved
        rundir.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the app with Hydra overrides, e.g. ``main(["schedule=sgdr", "trainer.epochs=5"])``."""
    return run_hydra(_app, "lrdsl train", argv)
