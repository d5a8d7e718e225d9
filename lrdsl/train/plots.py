"""curves.png: a run's schedule and metrics, drawn from its CSVs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lrdsl.errors import LrdslError
from lrdsl.train.csv_files import read_csv
from lrdsl.train.write_error import write_error


def plot_curves(directory: Path, title: str) -> Path | None:
    """curves.png: the LR per tick, loss / accuracy per epoch (the EMA's too, with one), and a
    panel per scheduled target and free value (lr.csv's columns after ``lr``), drawn against
    the samples drawn on the samples clock; None before any epoch row."""
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

    # one more panel per scheduled target (momentum, beta2, weight_decay): their ranges differ
    # from the LR's and from each other's, so each gets its own axis
    extra = [column for column in lrs if column not in ("tick", "lr", "samples")]
    x_name = "samples" if "samples" in lrs else "tick"
    fig, axes = plt.subplots(1, 3 + len(extra), figsize=(14 + 4 * len(extra), 4))
    ax_lr, *ax_targets, ax_loss, ax_acc = axes  # the schedule's panels side by side
    ax_lr.plot(lrs.get(x_name, []), lrs.get("lr", []))
    ax_lr.set(xlabel=x_name, ylabel="learning rate", title="learning rate")
    for ax, column in zip(ax_targets, extra):
        ax.plot(lrs[x_name], lrs[column], color="tab:purple")
        ax.set(xlabel=x_name, ylabel=column.replace("_", " "), title=column.replace("_", " "))
    ax_loss.plot(metrics.get("epoch", []), metrics.get("loss", []), label="train")
    ax_loss.plot(metrics.get("epoch", []), metrics.get("val_loss", []), label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(metrics.get("epoch", []), metrics.get("val_acc", []), label="weights")
    if "val_acc_ema" in metrics:
        ax_acc.plot(metrics["epoch"], metrics["val_acc_ema"], label="EMA of the weights")
        ax_acc.legend()
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9, family="monospace")
    fig.tight_layout()
    path = directory / "curves.png"
    # drawn beside and renamed: a full disk leaves the previous curves.png or none, never a
    # truncated one
    temp = directory / f".curves.png.tmp-{os.getpid()}"
    try:
        fig.savefig(temp, dpi=90, format="png")
        os.replace(temp, path)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        plt.close(fig)
        temp.unlink(missing_ok=True)
    return path
