"""``lrdsl compare DIR``: the runs of a Hydra multirun side by side.

One figure (LR, validation loss and validation accuracy per epoch, a line per run) and a
table of final metrics, best validation accuracy first.  An Optuna sweep's directory (it holds
``optimization_results.yaml``) gets a table of trials instead: each searched parameter, the
objective (the final val_loss the app returns), best trial first in the study's direction.

``lrdsl compare STORAGE --study NAME`` reads an Optuna study from its storage instead
(``sqlite:///study.db``, ``postgresql://…``): the trials of every worker that shared it, each
with its parameters, value and state, best first.
"""

from __future__ import annotations

from typing import Any

import os
import sys
from pathlib import Path

from lrdsl.errors import LrdslError, did_you_mean
from lrdsl.train.csv_files import read_csv

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


def torn_line(path: Path) -> tuple[int, str] | None:
    """(its number, its text) when ``path``'s last line has no line end, else None.

    A run killed mid-write (or still writing) leaves one; :func:`read_csv` leaves it out.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data or data.endswith(b"\n"):
        return None
    text = data.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    return data.count(b"\n") + 1, text


def load_runs(directory: Path, warn=None) -> list[dict]:
    """The runs under ``directory`` with at least one epoch; a run whose metrics.csv or lr.csv
    is missing a column, torn or not numeric is skipped with one line to ``warn`` (stderr).
    A torn last line (a killed run's) is left out with a note; the run's complete rows show."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    runs: list[dict[str, Any]] = []
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
        for path in (metrics_path, run / "lr.csv"):
            torn = torn_line(path)
            if torn is not None:
                number, text = torn
                shown = text if len(text) <= 40 else text[:39] + "…"
                warn(f"lrdsl compare: note: {path} line {number} is torn ({shown!r}, no line end: "
                     f"a run killed mid-write?); showing the complete rows before it")
        runs.append({"dir": run, "overrides": _overrides(run), "metrics": metrics, "lrs": lrs})
    shared = set.intersection(*(set(r["overrides"]) for r in runs)) if runs else set()
    for entry in runs:  # name a run by what sets it apart
        own = [o for o in entry["overrides"] if o not in shared]
        entry["name"] = " ".join(own) or entry["dir"].name
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


def optuna_results(directory: Path) -> dict | None:
    """An Optuna sweep's summary: ``{"best_params": {...}, "best_value": x, "direction": ...}``;
    None where ``directory`` has no optimization_results.yaml (not an Optuna sweep)."""
    path = directory / "optimization_results.yaml"
    if not path.exists():
        return None
    import yaml

    try:
        results = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise LrdslError(f"cannot read {path} ({type(error).__name__})") from None
    if not isinstance(results, dict) or not isinstance(results.get("best_params"), dict):
        raise LrdslError(f"{path} is not an Optuna sweep's results (no best_params mapping)")
    results["direction"] = _direction(directory)
    return results


def _direction(directory: Path) -> str:
    """The study's direction, from a trial's saved Hydra config (minimize if unreadable)."""
    import yaml

    for hydra_yaml in sorted(directory.glob("*/.hydra/hydra.yaml")):
        try:
            config = yaml.safe_load(hydra_yaml.read_text())
            direction = config["hydra"]["sweeper"]["direction"]
        except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
            continue
        if direction in ("minimize", "maximize"):
            return direction
    return "minimize"


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def trials_table(runs: list[dict], results: dict) -> str:
    """The trials of an Optuna sweep: trial number, each searched parameter, the objective
    (final val_loss), final and best val_acc; the best trial first (``*`` marks Optuna's best)."""
    params = list(results["best_params"])
    rows = []
    for run in runs:
        given = dict(o.split("=", 1) for o in run["overrides"] if "=" in o)
        values = [given.get(p, "") for p in params]
        m = run["metrics"]
        best = all(_number(given.get(p, "")) == _number(str(v)) if _number(str(v)) is not None
                   else given.get(p) == str(v) for p, v in results["best_params"].items())
        rows.append((("*" if best else " ") + run["dir"].name, values, int(m["epoch"][-1]), m["val_loss"][-1],
                     m["val_acc"][-1], max(m["val_acc"])))
    sign = -1 if results.get("direction") == "maximize" else 1
    rows.sort(key=lambda r: sign * r[3])
    show = [[f"{x:.4g}" if (x := _number(v)) is not None else v for v in r[1]] for r in rows]
    widths = [max([len(p)] + [len(s[i]) for s in show]) for i, p in enumerate(params)]
    head = "  ".join(f"{p:>{w}}" for p, w in zip(params, widths))
    lines = [f"{'trial':>6}  {head}  {'epochs':>6}  {'val_loss':>8}  {'val_acc':>7}  {'best val_acc':>12}"]
    for (name, _, epochs, val_loss, val_acc, best_acc), values in zip(rows, show):
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(values, widths))
        lines.append(f"{name:>6}  {cells}  {epochs:>6}  {val_loss:>8.4f}  {val_acc:>7.4f}  {best_acc:>12.4f}")
    best_params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in results["best_params"].items())
    value = results.get("best_value")
    lines.append(f"\noptuna ({results['direction']} val_loss): best {best_params}"
                 + (f"  -> {value:.4f}" if isinstance(value, (int, float)) else ""))
    return "\n".join(lines)


def figure(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]  # a ListedColormap
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
    # drawn beside and renamed (the suffix kept: it picks the format): a full disk leaves no
    # truncated figure
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        fig.savefig(temp, dpi=90)
        os.replace(temp, path)
    except (OSError, ValueError) as error:  # ValueError: a suffix matplotlib cannot write
        reason = getattr(error, "strerror", None) or " ".join(str(error).split())
        raise LrdslError(f"cannot write the figure {path}: {reason}") from None
    finally:
        plt.close(fig)
        temp.unlink(missing_ok=True)
    return path


def is_storage(text: str) -> bool:
    """Whether ``text`` names an Optuna storage (an RDB URL such as ``sqlite:///study.db``)."""
    return "://" in text


def load_study(storage: str, study_name: str | None):
    """The Optuna study ``study_name`` in ``storage``; with no name, the storage's only study."""
    try:
        import optuna
    except ImportError:
        raise LrdslError("reading an Optuna study needs optuna: pip install 'lrdsl[optuna]'") from None
    if storage.startswith("sqlite:///"):
        path = Path(storage[len("sqlite:///"):])
        if not path.is_file():  # optuna would create an empty database there
            raise LrdslError(f"no such SQLite file: {path} (from the storage {storage})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    except Exception as error:  # SQLAlchemy's and optuna's own errors: a URL it cannot open
        reason = " ".join(str(error).split())
        reason = reason if len(reason) <= 200 else reason[:199] + "…"
        raise LrdslError(f"cannot open the Optuna storage {storage}: {type(error).__name__}: {reason}") from None
    if not names:
        raise LrdslError(f"{storage} holds no Optuna study (create one with optuna create-study, or "
                         f"point the workers' hydra.sweeper.storage at it)")
    if study_name is None:
        if len(names) != 1:
            listed = ", ".join(sorted(names)) or "none"
            raise LrdslError(f"{storage} holds {len(names)} studies ({listed}); name one with --study NAME")
        study_name = names[0]
    elif study_name not in names:
        raise LrdslError(f"no study {study_name!r} in {storage}{did_you_mean(study_name, names)}")
    return optuna.load_study(study_name=study_name, storage=storage)


def study_table(study) -> str:
    """Every trial of ``study``: number, each parameter, value, state; the finished trials best
    first in the study's direction (``*`` marks the best), then the running, pruned and failed
    ones in trial order."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise LrdslError(f"study {study.study_name!r} has no trials yet")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    rest = [t for t in trials if t not in done]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    params = sorted({name for t in trials for name in t.params})
    best = done[0].number if done else None
    cells = [[("*" if t.number == best else " ") + str(t.number),
              *(f"{t.params[p]:.4g}" if isinstance(t.params.get(p), float) else str(t.params.get(p, ""))
                for p in params),
              f"{t.value:.4f}" if t.value is not None else "-", t.state.name]
             for t in done + rest]
    head = ["trial", *params, "value", "state"]
    widths = [max(len(row[i]) for row in [head, *cells]) for i in range(len(head))]
    lines = ["  ".join(f"{c:>{w}}" for c, w in zip(row, widths)) for row in [head, *cells]]
    direction = "maximize" if maximize else "minimize"
    counts = ", ".join(f"{sum(t.state.name == s for t in trials)} {s.lower()}"
                       for s in dict.fromkeys(t.state.name for t in trials))
    lines.append(f"\noptuna study {study.study_name} ({direction}): {len(trials)} trials ({counts})")
    if done:
        top = done[0]
        chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in top.params.items())
        lines.append(f"best trial {top.number}: {chosen}  -> {top.value:.4f}")
    return "\n".join(lines)


def compare_study(storage: str, study_name: str | None) -> int:
    """Print an Optuna study's trials (:func:`study_table`); an :class:`LrdslError` for a storage
    that cannot be read or a study that is not there."""
    print(study_table(load_study(storage, study_name)))
    return 0


def compare(directory: str, out: str | None = None) -> int:
    """Print the table and write the figure; an :class:`LrdslError` if there are no runs."""
    root = Path(directory)
    if not root.is_dir():
        raise LrdslError(f"no such directory: {root}")
    runs = load_runs(root)
    if not runs:
        raise LrdslError(f"no runs with a metrics.csv under {root} (expected a Hydra multirun "
                         f"directory: {root}/0/metrics.csv, …)")
    results = optuna_results(root)
    path = figure(runs, Path(out) if out else root / "compare.png")
    print(trials_table(runs, results) if results is not None else table(runs))
    print(f"\nfigure: {path}")
    return 0
