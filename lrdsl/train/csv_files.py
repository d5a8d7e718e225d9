"""The run's CSV files: metrics.csv's and lr.csv's columns, and a reader for them."""

from __future__ import annotations

import csv
from pathlib import Path

from lrdsl.errors import LrdslError

METRICS = ("epoch", "lr", "loss", "val_loss", "val_acc", "seconds")


def metric_columns(ema: bool = False) -> tuple[str, ...]:
    """metrics.csv's header: :data:`METRICS`, with ``val_acc_ema`` (the EMA of the weights'
    validation accuracy) before ``seconds`` when the schedule has an ``ema``."""
    return (*METRICS[:-1], "val_acc_ema", METRICS[-1]) if ema else METRICS


def lr_columns(targets=(), samples: bool = False) -> tuple[str, ...]:
    """lr.csv's header: tick, lr, then the scheduled targets and free values (``columns``), and
    on the samples clock ``samples``, the position (samples drawn before the tick's batch)."""
    return ("tick", "lr", *targets, *(("samples",) if samples else ()))


def read_csv(path: Path, need: tuple[str, ...] = ()) -> dict[str, list[float]]:
    """Columns of a numeric CSV file; an :class:`LrdslError` naming the file if it is malformed.

    A last line without its line end (a run killed mid-write, or still writing) is left out.
    """
    try:
        with open(path, newline="") as f:
            lines = f.readlines()
            if lines and not lines[-1].endswith("\n"):
                lines.pop()
            reader = csv.reader(lines)
            header = next(reader, None)
            if header is None:
                raise LrdslError(f"{path} is empty")
            missing = [k for k in need if k not in header]
            if missing:
                raise LrdslError(f"{path} lacks column(s) {', '.join(missing)}")
            columns: dict[str, list[float]] = {key: [] for key in header}
            for number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise LrdslError(f"{path} line {number} has {len(row)} fields, the header {len(header)}")
                for key, value in zip(header, row):
                    columns[key].append(float(value))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LrdslError(f"cannot read {path} ({type(error).__name__})") from None
    except ValueError as error:
        if isinstance(error, LrdslError):
            raise
        raise LrdslError(f"{path} line {number} is not numeric ({error})") from None
    return columns
