"""The error a run stops with when one of its files cannot be written."""

from __future__ import annotations

from pathlib import Path

from lrdsl.errors import LrdslError


class WriteError(LrdslError):
    """A file of the run could not be written (disk full, read-only, over quota): the run
    stops there, its last checkpoint intact, and the app says how to resume it."""


def write_error(path: Path | str, error: OSError) -> WriteError:
    """``cannot write PATH: no space left on device``; ``path`` is the file the user knows
    (not the temporary it was being written to)."""
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(f"cannot write {path}: {reason[:1].lower()}{reason[1:]}")
