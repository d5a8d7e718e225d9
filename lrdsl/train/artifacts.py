"""What a run leaves in its directory: metrics.csv and lr.csv (flushed every epoch, so an
interrupted run keeps what it had), curves.png, and the checkpoint."""

from __future__ import annotations

import csv
import os
import signal
import sys
from pathlib import Path

from lrdsl.errors import LrdslError

METRICS = ("epoch", "lr", "loss", "val_loss", "val_acc", "seconds")


def epoch_line(row: dict, epochs: int) -> str:
    """The one summary line a run prints per epoch."""
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  loss {row['loss']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}")


def end_epoch(trainer, start: int) -> int:
    """Where this run stops: trainer.epochs, or sooner with trainer.stop_after."""
    if trainer.stop_after is None:
        return trainer.epochs
    return min(trainer.epochs, start + trainer.stop_after)


def resume_checkpoint(trainer) -> Path | None:
    """The checkpoint ``trainer.resume`` names (None for a fresh run); it must exist."""
    if not trainer.resume:
        return None
    checkpoint = Path(str(trainer.resume)).expanduser()
    if not checkpoint.is_file():
        raise LrdslError(f"config key trainer.resume: no checkpoint at {checkpoint}")
    return checkpoint


class RunLog:
    """Appends per-epoch metrics and per-tick LRs; rank 0 alone writes (``enabled``)."""

    def __init__(self, directory: Path, enabled: bool = True, append: bool = False):
        self.directory = Path(directory)
        self.enabled = enabled
        self._pending_lrs: list[tuple[int, float]] = []
        if not enabled:
            return
        mode = "a" if append else "w"
        metrics_path, lr_path = self.directory / "metrics.csv", self.directory / "lr.csv"
        new_metrics = not (append and metrics_path.exists())
        new_lrs = not (append and lr_path.exists())
        self._metrics_file = open(metrics_path, mode, newline="")
        self._lr_file = open(lr_path, mode, newline="")
        self._metrics = csv.writer(self._metrics_file)
        self._lrs = csv.writer(self._lr_file)
        if new_metrics:
            self._metrics.writerow(METRICS)
        if new_lrs:
            self._lrs.writerow(("tick", "lr"))

    def lr(self, tick: int, lr: float) -> None:
        if self.enabled:
            self._pending_lrs.append((tick, lr))

    def epoch(self, **row) -> None:
        if not self.enabled:
            return
        self._lrs.writerows((t, repr(v)) for t, v in self._pending_lrs)
        self._pending_lrs.clear()
        self._metrics.writerow([row[k] if k != "lr" else repr(row[k]) for k in METRICS])
        self._lr_file.flush()  # lr.csv first: a metrics row never precedes its ticks
        self._metrics_file.flush()

    def close(self) -> None:
        if self.enabled:
            self._metrics_file.close()
            self._lr_file.close()


def restore_logs(source: Path, out: Path, epochs_done: int, ticks_done: int) -> None:
    """Start ``out``'s metrics.csv and lr.csv as the checkpointed run's, cut at the checkpoint.

    Keeps the header and the complete rows with ``epoch ≤ epochs_done`` (metrics.csv) and
    ``tick < ticks_done`` (lr.csv), byte for byte; rows a killed run wrote after its last
    checkpoint, and a torn last line, are dropped.  In place (``source == out``) too, so a
    resumed run appends to exactly what the uninterrupted run had at that point.
    """
    for name, header, keep in (("metrics.csv", METRICS, lambda n: n <= epochs_done),
                               ("lr.csv", ("tick", "lr"), lambda n: n < ticks_done)):
        lines = _read_lines(Path(source) / name)
        kept = [",".join(header) + "\r\n"]
        for line in lines[1:]:
            try:
                number = int(line.split(",", 1)[0])
            except ValueError:
                break
            if not line.endswith("\n") or not keep(number):
                break
            kept.append(line)
        _replace(Path(out) / name, "".join(kept))


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
    with open(temp, "w", newline="") as f:
        f.write(text)
    os.replace(temp, path)


def fault(point: str, epoch: int) -> None:
    """Fault injection for the crash tests: ``LRDSL_FAULT=point@epoch`` SIGKILLs this process.

    Point ``checkpoint``: epoch ``epoch``'s checkpoint is written to its temporary file, not yet
    renamed (the epoch's CSV rows are flushed: the logs are an epoch ahead of the checkpoint).
    """
    if os.environ.get("LRDSL_FAULT") == f"{point}@{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


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


def plot_curves(directory: Path, title: str) -> Path | None:
    """curves.png: the LR per tick, and loss / accuracy per epoch; None before any epoch row."""
    directory = Path(directory)
    if not (directory / "metrics.csv").exists():
        return None
    try:
        metrics = read_csv(directory / "metrics.csv")
        lrs = read_csv(directory / "lr.csv") if (directory / "lr.csv").exists() else {}
    except LrdslError as error:  # the run's own files: say so, but keep its exit status
        print(f"lrdsl train: no curves.png: {error}", file=sys.stderr)
        return None
    if not metrics.get("epoch"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(14, 4))
    ax_lr.plot(lrs.get("tick", []), lrs.get("lr", []))
    ax_lr.set(xlabel="tick", ylabel="learning rate", title="learning rate")
    ax_loss.plot(metrics.get("epoch", []), metrics.get("loss", []), label="train")
    ax_loss.plot(metrics.get("epoch", []), metrics.get("val_loss", []), label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(metrics.get("epoch", []), metrics.get("val_acc", []))
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    for ax in (ax_lr, ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9, family="monospace")
    fig.tight_layout()
    path = directory / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
