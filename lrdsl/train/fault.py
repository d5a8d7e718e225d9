"""Fault injection for the crash tests (``LRDSL_FAULT``)."""

from __future__ import annotations

import os
import signal


def fault(point: str, epoch: int) -> None:
    """Fault injection for the crash tests: ``LRDSL_FAULT=point@epoch`` SIGKILLs this process.

    Point ``checkpoint``: epoch ``epoch``'s checkpoint is written to its temporary file, not yet
    renamed (the epoch's CSV rows are flushed: the logs are an epoch ahead of the checkpoint).
    """
    if os.environ.get("LRDSL_FAULT") == f"{point}@{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)
