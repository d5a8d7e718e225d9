"""``lrdsl compare DIR``: the runs of a Hydra multirun side by side.

One figure (LR, validation loss and validation accuracy per epoch, a line per run) and a
table of final metrics, best validation accuracy first.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lrdsl.errors import LrdslError

NEEDED = ("epoch", "lr", "loss", "val_loss", "val_acc")  # the columns the table and figure read


def _overrides(run: Path) -> list[str]:
    path = run / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    import yaml

    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    return [str(item) for item in items] if isinstance(items, list) else []


def load_runs(directory: Path, warn=None) -> list[dict]:
    """The runs under ``directory`` with at least one epoch; a run whose metrics.csv or lr.csv
    is missing a column, torn or not numeric is skipped with one line to ``warn`` (stderr)."""
    from lrdsl.train.artifacts import read_csv

    warn = warn or (lambda line: print(line, file=sys.stderr))
    runs = []
    for metrics_path in sorted(directory.glob("*/metrics.csv"), key=lambda p: (len(p.parent.name), p.parent.name)):
        run = metrics_path.parent
        try:
            metrics = read_csv(metrics_path, need=NEEDED)
            lrs = read_csv(run / "lr.csv", need=("tick", "lr")) if (run / "lr.csv").exists() else {}
        except LrdslError as error:
            warn(f"lrdsl compare: skipping {run}: {error}")
            continue
        if not metrics["epoch"]:
            warn(f"lrdsl compare: skipping {run}: {metrics_path.name} has no epoch rows yet")
            continue
        runs.append({"dir": run, "overrides": _overrides(run), "metrics": metrics, "lrs": lrs})
    shared = set.intersection(*(set(r["overrides"]) for r in runs)) if runs else set()
    for run in runs:  # name a run by what sets it apart
        own = [o for o in run["overrides"] if o not in shared]
        run["name"] = " ".join(own) or run["dir"].name
    return runs


def table(runs: list[dict]) -> str:
    rows = []
    for run in runs:
        m = run["metrics"]
        rows.append((run["name"], int(m["epoch"][-1]), m["lr"][-1], m["loss"][-1], m["val_loss"][-1],
                     m["val_acc"][-1], max(m["val_acc"])))
    rows.sort(key=lambda r: -r[6])
    width = max([len("run")] + [len(r[0]) for r in rows])
    lines = [f"{'run':<{width}}  {'epochs':>6}  {'final lr':>10}  {'loss':>8}  {'val_loss':>8}  "
             f"{'val_acc':>7}  {'best val_acc':>12}"]
    for name, epochs, lr, loss, val_loss, val_acc, best in rows:
        lines.append(f"{name:<{width}}  {epochs:>6}  {lr:>10.4g}  {loss:>8.4f}  {val_loss:>8.4f}  "
                     f"{val_acc:>7.4f}  {best:>12.4f}")
    return "\n".join(lines)


def figure(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.get_cmap("tab20").colors
    for i, run in enumerate(runs):
        m, lrs = run["metrics"], run["lrs"]
        epochs = m["epoch"]
        style = {"label": run["name"], "color": colors[(2 * i) % 20 + (i // 10) % 2],
                 "linestyle": ("-", "--", ":")[(i // 10) % 3]}  # distinct beyond ten runs
        if lrs.get("tick"):
            per_epoch = len(lrs["tick"]) / len(epochs)
            ax_lr.plot([t / per_epoch for t in range(len(lrs["lr"]))], lrs["lr"], **style)
        ax_loss.plot(epochs, m["val_loss"], **style)
        ax_acc.plot(epochs, m["val_acc"], **style)
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    ax_loss.set(xlabel="epoch", ylabel="validation loss", title="validation loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    for ax in (ax_lr, ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def compare(directory: str, out: str | None = None) -> int:
    """Print the table and write the figure; an :class:`LrdslError` if there are no runs."""
    root = Path(directory)
    if not root.is_dir():
        raise LrdslError(f"no such directory: {root}")
    runs = load_runs(root)
    if not runs:
        raise LrdslError(f"no runs with a metrics.csv under {root} (expected a Hydra multirun "
                         f"directory: {root}/0/metrics.csv, …)")
    path = figure(runs, Path(out) if out else root / "compare.png")
    print(table(runs))
    print(f"\nfigure: {path}")
    return 0
