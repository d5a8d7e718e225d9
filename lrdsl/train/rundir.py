"""Every run owns its directory.

Two mechanisms, both set up in ``conf/train.yaml``:

* ``${lrdsl.claim:PATH}`` (the default ``hydra.run.dir`` and ``hydra.sweep.dir``) creates
  ``PATH`` with an exclusive ``mkdir``; when it exists already (another run started in the
  same second) it takes ``PATH-2``, ``PATH-3``, …  So runs started together in one working
  directory never share a directory, whatever the launcher.
* :class:`OwnRunDir`, a Hydra callback, takes an exclusive ``flock`` on ``DIR/.lrdsl.lock``
  before Hydra writes anything there; a directory given explicitly (``hydra.run.dir=…``)
  that a live run holds is refused with one line, exit 2.  The lock dies with its process,
  so resuming in place after a crash or ``kill -9`` is never blocked.

Under torchrun all ranks of one job must agree on the directory: rank 0 alone locks it, and
the claim is replaced by a suffix that every rank computes alike (the rendezvous id).  Rank 0
alone writes there: :class:`OwnRunDir` keeps Hydra on every other rank (on every node of a
multi-node job) from making the directory, saving ``.hydra/`` and opening the job's log file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lrdsl.errors import LrdslError

LOCK_NAME = ".lrdsl.lock"

_claimed: dict[str, str] = {}  # PATH -> the directory this process claimed for it
_locks: dict[str, int] = {}  # resolved directory -> open file descriptor holding the flock


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def claim(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``, … : the first that this process creates itself.

    The same ``path`` asked twice in one process gives the same answer (Hydra resolves the
    run directory more than once).
    """
    path = str(path)
    if path in _claimed:
        return _claimed[path]
    if _under_torchrun():
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        # every local rank computes the same name; only rank 0 writes artifacts there
        chosen = f"{path}-{run_id[:8] if run_id not in ('', 'none') else f'ddp{os.getppid()}'}"
        _claimed[path] = chosen
        return chosen
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = path if n == 1 else f"{path}-{n}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        _claimed[path] = candidate
        return candidate
    raise LrdslError(f"could not create a fresh run directory next to {path}")


def lock(directory: str | Path) -> None:
    """Hold ``directory/.lrdsl.lock`` exclusively until the process ends (or :func:`release`).

    Raises an :class:`LrdslError` when another live process holds it or the directory cannot
    be written.
    """
    import fcntl

    directory = Path(directory).absolute()
    key = str(directory)
    if key in _locks:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise LrdslError(f"output directory {directory} is not writable "
                         f"({error.strerror or type(error).__name__})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise LrdslError(f"output directory {directory} is in use by another lrdsl run; "
                         f"give this one its own hydra.run.dir (or wait for that run to end)") from None
    probe = directory / f".lrdsl-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        os.close(fd)
        raise LrdslError(f"output directory {directory} is not writable "
                         f"({error.strerror or type(error).__name__})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _locks[key] = fd


def release() -> None:
    """Drop every lock and claim this process holds (between in-process :func:`main` calls)."""
    while _locks:
        _, fd = _locks.popitem()
        os.close(fd)
    _claimed.clear()


def _refuse(error: LrdslError) -> None:
    # lrdsl find shares the callback: run_hydra names the program in sys.argv[0]
    program = sys.argv[0] if sys.argv[:1] in (["lrdsl train"], ["lrdsl find"]) else "lrdsl train"
    print(f"{program}: {error}", file=sys.stderr)
    sys.exit(2)


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object  # type: ignore[misc, assignment]


class OwnRunDir(_HydraCallback):
    """Locks the run (or sweep) directory before Hydra writes ``.hydra/`` into it."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        if not is_rank_zero():
            leave_writing_to_rank_zero(config)
            return
        try:
            lock(str(config.hydra.run.dir))
        except LrdslError as error:
            _refuse(error)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        try:
            lock(str(config.hydra.sweep.dir))
        except LrdslError as error:
            _refuse(error)


def leave_writing_to_rank_zero(config: Any) -> None:
    """Make Hydra write nothing in this process (a torchrun rank other than 0).

    Hydra's ``run_job`` makes ``hydra.run.dir``, saves ``.hydra/`` there and opens the job's log
    file on every process it runs in; the config handed to ``on_run_start`` is the one it then
    reads.  So: the run directory becomes the working directory (which exists: making it
    changes nothing), no ``.hydra/``, and logging without its file handlers.  The job on this
    rank writes nothing itself (rank 0 writes the logs, plots and checkpoints).
    """
    from omegaconf import open_dict, read_write

    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.run.dir = os.getcwd()
        config.hydra.output_subdir = None
        logging = config.hydra.get("job_logging")
        handlers = logging.get("handlers") if logging else None
        if not handlers:
            return
        files = [name for name, handler in handlers.items() if "filename" in handler]
        for name in files:
            del handlers[name]
        for user in [logging.get("root"), *(logging.get("loggers") or {}).values()]:
            if user and user.get("handlers"):
                user.handlers = [h for h in user.handlers if h not in files]


def register_resolver() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("lrdsl.claim"):
        OmegaConf.register_new_resolver("lrdsl.claim", claim, use_cache=True)
