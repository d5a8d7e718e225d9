"""A run's logs as it trains: metrics.csv and lr.csv (flushed every epoch, so an interrupted
run keeps what it had), with ``trainer.logger=tensorboard`` a TensorBoard event file holding
the same numbers, and curves.png drawn however the epochs end."""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path

from lrdsl.errors import LrdslError
from lrdsl.train.csv_files import lr_columns, metric_columns
from lrdsl.train.plots import plot_curves
from lrdsl.train.tensorboard_log import EventLog
from lrdsl.train.write_error import write_error


class RunLog:
    """Appends per-epoch metrics and per-tick values; rank 0 alone writes (``enabled``).

    lr.csv's columns are ``tick, lr`` and then each scheduled target and free value
    (``targets``), e.g. ``tick, lr, momentum, weight_decay, ema``, and ``samples`` on the
    samples clock; metrics.csv has ``val_acc_ema`` with ``ema``.  With ``logger="tensorboard"`` the same records go
    to an :class:`EventLog` as well (both backends' loops feed this one class, so both write
    the same scalars).
    """

    def __init__(self, directory: Path, enabled: bool = True, append: bool = False,
                 targets: tuple[str, ...] = (), logger: str = "csv", ticks_per_epoch: int = 1,
                 ema: bool = False, samples: bool = False):
        self.directory = Path(directory)
        self.enabled = enabled
        self.columns = lr_columns(targets, samples)
        self.metric_columns = metric_columns(ema)
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
                self._metrics.writerow(self.metric_columns)
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
            self._metrics.writerow([row[k] if k != "lr" else repr(row[k]) for k in self.metric_columns])
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
