"""Where a run starts and stops, and a resumed run's logs restored to its checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from lrdsl.errors import LrdslError
from lrdsl.train.csv_files import METRICS, lr_columns
from lrdsl.train.write_error import write_error


def resume_checkpoint(trainer) -> Path | None:
    """The checkpoint ``trainer.resume`` names (None for a fresh run); it must exist."""
    if not trainer.resume:
        return None
    checkpoint = Path(str(trainer.resume)).expanduser()
    if not checkpoint.is_file():
        raise LrdslError(f"config key trainer.resume: no checkpoint at {checkpoint}")
    return checkpoint


def end_epoch(trainer, start: int) -> int:
    """Where this run stops: trainer.epochs, or sooner with trainer.stop_after."""
    if trainer.stop_after is None:
        return trainer.epochs
    return min(trainer.epochs, start + trainer.stop_after)


def restore_logs(source: Path, out: Path, epochs_done: int, ticks_done: int,
                 columns: tuple[str, ...] = lr_columns(), fill: dict | None = None,
                 metrics: tuple[str, ...] = METRICS) -> None:
    """Start ``out``'s metrics.csv and lr.csv as the checkpointed run's, cut at the checkpoint.

    Keeps the header and the complete rows with ``epoch ≤ epochs_done`` (metrics.csv) and
    ``tick < ticks_done`` (lr.csv), byte for byte; rows a killed run wrote after its last
    checkpoint, and a torn last line, are dropped.  In place (``source == out``) too, so a
    resumed run appends to exactly what the uninterrupted run had at that point.

    A run rebased onto other targets writes lr.csv with other ``columns``: the kept rows are
    rewritten to them, a column the old run did not schedule taking its constant from ``fill``
    (the optimizer's value, which nothing changed); a column this run drops is left out.  So
    with ``metrics`` (metrics.csv's columns: ``val_acc_ema`` with an ``ema``).
    """
    for name, header, keep in (("metrics.csv", metrics, lambda n: n <= epochs_done),
                               ("lr.csv", tuple(columns), lambda n: n < ticks_done)):
        lines = _read_lines(Path(source) / name)
        kept = [",".join(header) + "\r\n"]
        old = lines[0].rstrip("\r\n").split(",") if lines else list(header)
        for line in lines[1:]:
            try:
                number = int(line.split(",", 1)[0])
            except ValueError:
                break
            if not line.endswith("\n") or not keep(number):
                break
            if old != list(header):
                line = _remap(line, old, header, fill or {}, name)
            kept.append(line)
        _replace(Path(out) / name, "".join(kept))


def _remap(line: str, old: list[str], header: tuple[str, ...], fill: dict, name: str) -> str:
    values = dict(zip(old, line.rstrip("\r\n").split(",")))
    missing = [c for c in header if c not in values and c not in fill]
    if missing:
        raise LrdslError(f"trainer.resume: the checkpointed run's {name} has no column "
                         f"{', '.join(missing)} (it has {', '.join(old)})")
    return ",".join(values[c] if c in values else repr(float(fill[c])) for c in header) + "\r\n"


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, newline="") as f:
            return f.readlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise LrdslError(f"trainer.resume: cannot read {path} ({type(error).__name__})") from None


def _replace(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "w", newline="") as f:
            f.write(text)
        os.replace(temp, path)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        temp.unlink(missing_ok=True)
