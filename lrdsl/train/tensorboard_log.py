"""With ``trainer.logger=tensorboard``: an event file holding the CSVs' numbers."""

from __future__ import annotations

import os
from pathlib import Path

from lrdsl.errors import LrdslError
from lrdsl.train.csv_files import METRICS, read_csv


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
                                    **{k: row[k] for k in ("loss", "val_loss", "val_acc", "val_acc_ema") if k in row}})
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
