"""What a run prints while it trains."""

from __future__ import annotations


def epoch_line(row: dict, epochs: int) -> str:
    """The one summary line a run prints per epoch."""
    return (f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  loss {row['loss']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}"
            + (f"  val_acc_ema {row['val_acc_ema']:.4f}" if "val_acc_ema" in row else ""))
