"""``lrdsl train``: the Hydra application.  ``python -m lrdsl.train`` is the same, for torchrun."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf.errors import OmegaConfBaseException

from lrdsl.errors import LrdslError
from lrdsl.train import rundir
from lrdsl.train.write_error import WriteError
from lrdsl.train.config import conf_dir, validate


def resume_hint(out: Path, backend: str) -> str:
    """How to go on after a run stopped on a write error: from its last checkpoint, if any."""
    checkpoint = out / ("checkpoint.keras" if backend == "keras" else "checkpoint.pt")
    if not checkpoint.is_file():
        return " (no checkpoint was written: free some space and start the run again)"
    return (f" (the run can be resumed once there is room: trainer.resume={checkpoint} "
            f"hydra.run.dir={out})")


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base=None)
def _app(cfg) -> float:
    out = Path(HydraConfig.get().runtime.output_dir)  # on a torchrun rank other than 0: the cwd (it writes nothing)

    def failed_write(error: LrdslError | OSError) -> str:
        if isinstance(error, WriteError):
            return f"{error}{resume_hint(out, cfg.backend.name)}"
        # an OSError: a write the run's own files do not go through (a framework's cache)
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        return f"{where}{(getattr(error, 'strerror', None) or str(error)).lower()}"

    with one_line_errors("lrdsl train", failed_write):
        validate(cfg)
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
    if rundir.is_rank_zero():
        print(f"artifacts: {out}  (metrics.csv, lr.csv, curves.png, checkpoint)")
    return result.get("val_loss", float("nan"))


@contextlib.contextmanager
def one_line_errors(program: str, failed_write: Callable[[LrdslError | OSError], str]) -> Iterator[None]:
    """Bad input and failed writes end the job as one line on stderr and exit 2 (a bug still
    shows its traceback). ``failed_write`` words a :class:`WriteError` or an ``OSError``."""
    try:
        yield
    except WriteError as error:
        print(f"{program}: error: {failed_write(error)}", file=sys.stderr)
        sys.exit(2)
    except LrdslError as error:
        print(f"{program}: {error.pointed()}", file=sys.stderr)
        sys.exit(2)
    except OmegaConfBaseException as error:  # ${…} that fails to resolve once the job reads it
        print(f"{program}: error: {config_key(error)}{hydra_message(error)}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        print(f"{program}: error: {failed_write(error)}", file=sys.stderr)
        sys.exit(2)


def config_key(error: BaseException) -> str:
    """``config key trainer.epochs: `` for an OmegaConf error that knows its key."""
    key = getattr(error, "full_key", None)
    return f"config key {key}: " if key else ""


def hydra_message(error: BaseException) -> str:
    """A Hydra or OmegaConf error (a bad override, an unknown key or group option, a wrong
    type) on one line: its message, then its cause's, without the ``full_key:``/``object_type=``
    detail lines."""
    parts = []
    for part in (error, error.__cause__):
        if part is None:
            continue
        lines: list[str] = []
        listing = False
        for line in (line.strip() for line in str(part).splitlines()):
            if not line or line.startswith(("full_key:", "reference_type=", "object_type=", "See https://")):
                continue
            if line.startswith("Config search path"):
                break
            if listing:  # a missing group option: the options Hydra lists, one a line
                lines[-1] += (" " if lines[-1].endswith(":") else ", ") + line
                continue
            listing = line.startswith("Available options")
            lines.append(line)
        parts.append("; ".join(lines).replace(".; ", "; "))
    text = ": ".join(p for p in parts if p)
    return text if len(text) <= 500 else text[:499] + "…"


def run_hydra(app, program: str, argv: list[str] | None) -> int:
    """Run a Hydra ``app`` as ``program`` with ``argv`` as its command line (Hydra reads sys.argv).

    A config Hydra cannot compose is one line and exit 2, like the app's own checks: Hydra
    would print a partial traceback or several lines and exit 1.  ``HYDRA_FULL_ERROR`` makes
    Hydra raise instead of printing; it is ours only for the call (a user's setting is kept,
    and then Hydra's full report is what they asked for).
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv[1:] if argv is None else list(argv)
    saved = sys.argv
    sys.argv = [program, *argv]
    ours = "HYDRA_FULL_ERROR" not in os.environ
    if ours:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except (HydraException, OmegaConfBaseException) as error:
        if not ours:
            raise
        print(f"{program}: error: {hydra_message(error)}", file=sys.stderr)
        sys.exit(2)
    finally:
        if ours:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        sys.argv = saved
        rundir.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the app with Hydra overrides, e.g. ``main(["schedule=sgdr", "trainer.epochs=5"])``."""
    return run_hydra(_app, "lrdsl train", argv)
