"""What a run leaves in its directory: metrics.csv and lr.csv (flushed every epoch, so an
interrupted run keeps what it had), with ``trainer.logger=tensorboard`` a TensorBoard event
file holding the same numbers, curves.png, and the checkpoint."""

from __future__ import annotations

import csv
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from lrdsl.errors import LrdslError

METRICS = ("epoch", "lr", "loss", "val_loss", "val_acc", "seconds")


class WriteError(LrdslError):
    """A file of the run could not be written (disk full, read-only, over quota): the run
    stops there, its last checkpoint intact, and the app says how to resume it."""


def write_error(path: Path | str, error: OSError) -> WriteError:
    """``cannot write PATH: no space left on device``; ``path`` is the file the user knows
    (not the temporary it was being written to)."""
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(f"cannot write {path}: {reason[:1].lower()}{reason[1:]}")


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
    """Appends per-epoch metrics and per-tick values; rank 0 alone writes (``enabled``).

    lr.csv's columns are ``tick, lr`` and then each scheduled target (``columns``), e.g.
    ``tick, lr, momentum, weight_decay``.  With ``logger="tensorboard"`` the same records go
    to an :class:`EventLog` as well (both backends' loops feed this one class, so both write
    the same scalars).
    """

    def __init__(self, directory: Path, enabled: bool = True, append: bool = False,
                 targets: tuple[str, ...] = (), logger: str = "csv", ticks_per_epoch: int = 1):
        self.directory = Path(directory)
        self.enabled = enabled
        self.columns = lr_columns(targets)
        self._pending: list[tuple] = []
        self._events: EventLog | None = None
        if not enabled:
            return
        if logger == "tensorboard":
            # a resumed run's CSVs are already cut at its checkpoint: the event file is
            # rewritten from them, so TensorBoard shows exactly what the CSVs hold
            self._events = EventLog(self.directory, self.columns[2:])
            if append:
                self._events.replay(self.directory, ticks_per_epoch)
        mode = "a" if append else "w"
        metrics_path, lr_path = self.directory / "metrics.csv", self.directory / "lr.csv"
        new_metrics = not (append and metrics_path.exists())
        new_lrs = not (append and lr_path.exists())
        try:
            self._metrics_file = open(metrics_path, mode, newline="")
            self._lr_file = open(lr_path, mode, newline="")
            self._metrics = csv.writer(self._metrics_file)
            self._lrs = csv.writer(self._lr_file)
            if new_metrics:
                self._metrics.writerow(METRICS)
            if new_lrs:
                self._lrs.writerow(self.columns)
        except OSError as error:
            raise write_error(error.filename or self.directory, error) from None

    def tick(self, tick: int, lr: float, *targets: float) -> None:
        """One lr.csv row: the tick's LR, then each target's value in ``targets`` order."""
        if self.enabled:
            self._pending.append((tick, lr, *targets))

    def epoch(self, **row) -> None:
        if not self.enabled:
            return
        try:
            self._lrs.writerows((t, *map(repr, values)) for t, *values in self._pending)
            self._lr_file.flush()  # lr.csv first: a metrics row never precedes its ticks
            self._metrics.writerow([row[k] if k != "lr" else repr(row[k]) for k in METRICS])
            self._metrics_file.flush()
            if self._events is not None:
                self._events.epoch(row, self._pending)
        except OSError as error:
            # a row cut short is a torn last line: restore_logs drops it on resume
            raise write_error(f"metrics.csv and lr.csv in {self.directory}", error) from None
        self._pending.clear()

    def close(self) -> None:
        """Close the files; a failed final flush is a :class:`WriteError` (after all are closed)."""
        if not self.enabled:
            return
        failed = None
        closers = [self._metrics_file.close, self._lr_file.close]
        if self._events is not None:
            closers.append(self._events.close)
        for close in closers:
            try:
                close()
            except OSError as error:
                failed = failed or error
        if failed is not None:
            raise write_error(f"metrics.csv and lr.csv in {self.directory}", failed)


@contextmanager
def closing_run(log: RunLog, directory: Path, title: str, plot: bool = True):
    """Close ``log`` and draw curves.png however the epochs end.

    When they raise, that error is the one to report: a close or a plot failing after it (the
    disk that filled up is still full) is dropped, not chained onto it.
    """
    try:
        yield
    except BaseException:
        try:
            log.close()
            if plot:
                plot_curves(directory, title)
        except LrdslError:
            pass
        raise
    log.close()
    if plot:
        plot_curves(directory, title)


def tensorboard_writer():
    """tensorboard's record writer and protos: ``(RecordWriter, event_pb2, summary_pb2)``.

    These need the ``tensorboard`` package alone — not torch (``torch.utils.tensorboard``) nor
    tensorflow (``tf.summary``; tensorboard's ``EventFileWriter`` imports it when present) — so
    either backend writes events without loading the other's framework.
    """
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError as error:
        raise LrdslError(f"trainer.logger=tensorboard needs the tensorboard package "
                         f"(pip install 'lrdsl[tensorboard]'): {error}") from None
    return RecordWriter, event_pb2, summary_pb2


class EventLog:
    """A TensorBoard event file in the run directory (``events.out.tfevents.*.lrdsl``).

    Per epoch ``e`` (step ``e``, 1-based as in metrics.csv): ``learning_rate`` (metrics.csv's
    lr), each scheduled target (its value at the epoch's last tick), ``loss``, ``val_loss``,
    ``val_acc``.  Per tick ``t`` (step ``t``, as in lr.csv): ``tick/learning_rate`` and
    ``tick/<target>``.  Written synchronously and flushed every epoch, like the CSVs.
    """

    SUFFIX = ".lrdsl"

    def __init__(self, directory: Path, targets: tuple[str, ...] = ()):
        import socket
        import time

        RecordWriter, self._event_pb2, self._summary_pb2 = tensorboard_writer()
        self.targets = tuple(targets)
        directory = Path(directory)
        for old in directory.glob(f"events.out.tfevents.*{self.SUFFIX}"):
            old.unlink()  # ours, from before a resume: replay() rewrites what is kept
        self.path = directory / (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                                 f"{os.getpid()}{self.SUFFIX}")
        self._writer = RecordWriter(open(self.path, "wb"))
        self._write(self._event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._writer.flush()

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def scalars(self, step: int, values: dict) -> None:
        """One event at ``step`` holding a scalar per ``{tag: value}``."""
        import time

        summary = self._summary_pb2.Summary(value=[
            self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()])
        self._write(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def epoch(self, row: dict, ticks: list[tuple]) -> None:
        """An epoch's row and the ticks (``(tick, lr, *targets)``) it ran."""
        for tick, lr, *values in ticks:
            self.scalars(tick, {"tick/learning_rate": lr,
                                **{f"tick/{t}": v for t, v in zip(self.targets, values)}})
        last = dict(zip(self.targets, ticks[-1][2:])) if ticks else {}
        self.scalars(row["epoch"], {"learning_rate": row["lr"], **last,
                                    **{k: row[k] for k in ("loss", "val_loss", "val_acc")}})
        self._writer.flush()

    def replay(self, directory: Path, ticks_per_epoch: int) -> None:
        """Write the rows already in ``directory``'s metrics.csv and lr.csv (a resumed run's)."""
        metrics = read_csv(directory / "metrics.csv") if (directory / "metrics.csv").exists() else {}
        lrs = read_csv(directory / "lr.csv") if (directory / "lr.csv").exists() else {}
        ticks = list(zip(*(lrs.get(c, []) for c in ("tick", "lr", *self.targets))))
        done = 0
        for index, epoch in enumerate(metrics.get("epoch", [])):
            row = {key: metrics[key][index] for key in METRICS}
            row["epoch"] = int(epoch)
            ran = [t for t in ticks[done:] if t[0] < int(epoch) * ticks_per_epoch]
            done += len(ran)
            self.epoch(row, [(int(t[0]), *t[1:]) for t in ran])

    def close(self) -> None:
        self._writer.close()


def lr_columns(targets=()) -> tuple[str, ...]:
    """lr.csv's header: tick, lr, then the scheduled targets."""
    return ("tick", "lr", *targets)


def restore_logs(source: Path, out: Path, epochs_done: int, ticks_done: int,
                 columns: tuple[str, ...] = lr_columns(), fill: dict | None = None) -> None:
    """Start ``out``'s metrics.csv and lr.csv as the checkpointed run's, cut at the checkpoint.

    Keeps the header and the complete rows with ``epoch ≤ epochs_done`` (metrics.csv) and
    ``tick < ticks_done`` (lr.csv), byte for byte; rows a killed run wrote after its last
    checkpoint, and a torn last line, are dropped.  In place (``source == out``) too, so a
    resumed run appends to exactly what the uninterrupted run had at that point.

    A run rebased onto other targets writes lr.csv with other ``columns``: the kept rows are
    rewritten to them, a column the old run did not schedule taking its constant from ``fill``
    (the optimizer's value, which nothing changed); a column this run drops is left out.
    """
    for name, header, keep in (("metrics.csv", METRICS, lambda n: n <= epochs_done),
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
    """curves.png: the LR per tick, loss / accuracy per epoch, and a panel per scheduled target
    (lr.csv's columns after ``lr``); None before any epoch row."""
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
    extra = [column for column in lrs if column not in ("tick", "lr")]
    fig, axes = plt.subplots(1, 3 + len(extra), figsize=(14 + 4 * len(extra), 4))
    ax_lr, *ax_targets, ax_loss, ax_acc = axes  # the schedule's panels side by side
    ax_lr.plot(lrs.get("tick", []), lrs.get("lr", []))
    ax_lr.set(xlabel="tick", ylabel="learning rate", title="learning rate")
    for ax, column in zip(ax_targets, extra):
        ax.plot(lrs["tick"], lrs[column], color="tab:purple")
        ax.set(xlabel="tick", ylabel=column.replace("_", " "), title=column.replace("_", " "))
    ax_loss.plot(metrics.get("epoch", []), metrics.get("loss", []), label="train")
    ax_loss.plot(metrics.get("epoch", []), metrics.get("val_loss", []), label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(metrics.get("epoch", []), metrics.get("val_acc", []))
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
