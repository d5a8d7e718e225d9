"""What a run leaves in its directory: metrics.csv and lr.csv (flushed every epoch, so an
interrupted run keeps what it had), curves.png, and the checkpoint."""

from __future__ import annotations

import csv
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
        self._metrics_file.flush()
        self._lr_file.flush()

    def close(self) -> None:
        if self.enabled:
            self._metrics_file.close()
            self._lr_file.close()


def carry_over_logs(checkpoint: Path, out: Path, epochs_done: int, ticks_per_epoch: int) -> None:
    """Start the new run directory with the interrupted run's rows up to the checkpoint."""
    source = checkpoint.parent
    if source.resolve() == out.resolve():
        return
    for name, keep in (("metrics.csv", epochs_done), ("lr.csv", epochs_done * ticks_per_epoch)):
        if (source / name).exists():
            lines = (source / name).read_text().splitlines(keepends=True)
            (out / name).write_text("".join(lines[:1 + keep]))


def read_csv(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(r[key]) for r in rows] for key in (rows[0].keys() if rows else ())}


def plot_curves(directory: Path, title: str) -> Path | None:
    """curves.png: the LR per tick, and loss / accuracy per epoch; None before any epoch row."""
    directory = Path(directory)
    if not (directory / "metrics.csv").exists():
        return None
    metrics, lrs = read_csv(directory / "metrics.csv"), read_csv(directory / "lr.csv")
    if not metrics:
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
