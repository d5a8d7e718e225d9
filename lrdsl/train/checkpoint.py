"""Checkpoints: one file, written atomically, validated before a resumed run trains.

A checkpoint holds the model, the optimizer, the schedule's state *and* a manifest (the
run's progress and what it was trained with) in one file:

* torch: ``checkpoint.pt`` = ``{"model", "optimizer", "scheduler", "lrdsl": manifest}``; the
  manifest carries a SHA-256 over everything else (``torch.load`` checks no CRC, so a
  flipped byte would otherwise load as silently different weights).  Read back with
  ``torch.load(weights_only=True)``.
* keras: ``checkpoint.keras`` = Keras's own zip (``model.save``; the schedule's plateau state
  rides in the optimizer config) plus a member ``lrdsl.json``; zip CRCs cover every byte.

Both are written to a temporary name in the same directory, flushed to disk and renamed over
the old file, so a kill at any instant leaves the old checkpoint or the new one, each
loadable; a temporary left by a kill is removed when the next run takes the directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable

from lrdsl import channels
from lrdsl.errors import LrdslError
from lrdsl.language.parser import parse
from lrdsl.train.fault import fault
from lrdsl.train.write_error import write_error

FORMAT = "lrdsl.train checkpoint 1"
MANIFEST_MEMBER = "lrdsl.json"  # inside checkpoint.keras
TEMP_GLOBS = (".checkpoint.tmp-*", ".metrics.csv.tmp-*", ".lr.csv.tmp-*", ".curves.png.tmp-*")


def temp_name(path: Path) -> Path:
    """Where ``path`` is written before the rename (the suffix stays: Keras insists on it)."""
    return path.with_name(f".checkpoint.tmp-{os.getpid()}{path.suffix}")


def remove_stray_temporaries(directory: Path) -> None:
    """Temporaries a killed run left behind (the directory is locked: none is in use)."""
    for pattern in TEMP_GLOBS:
        for stray in Path(directory).glob(pattern):
            stray.unlink(missing_ok=True)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None], epoch: int) -> None:
    """``write(temp)``, then rename ``temp`` over ``path``: ``path`` is never half-written.

    A write that fails (a full disk) is a :class:`~lrdsl.train.write_error.WriteError`; ``path``
    is then still the previous checkpoint.
    """
    path = Path(path)
    temp = temp_name(path)
    try:
        write(temp)
        _fsync(temp)
        fault("checkpoint", epoch)  # fault injection: a kill between the write and the rename
        os.replace(temp, path)
        _fsync(path.parent, directory=True)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        temp.unlink(missing_ok=True)


# -- the manifest -------------------------------------------------------------------------

def manifest(cfg, data, *, backend: str, epochs_done: int, ticks_done: int, units: dict) -> dict:
    """What a resumed run must match, and how far this one got (JSON-able)."""
    return {
        "format": FORMAT,
        "backend": backend,
        "epochs_done": int(epochs_done),
        "ticks_done": int(ticks_done),
        "config": {
            "optimizer.name": cfg.optimizer.name,
            "optimizer.momentum": float(cfg.optimizer.momentum),
            "optimizer.nesterov": bool(cfg.optimizer.nesterov),
            "optimizer.weight_decay": float(cfg.optimizer.weight_decay),
            "model.name": cfg.model.name,
            "model.hidden": [int(w) for w in cfg.model.hidden],
            "model.channels": [int(c) for c in cfg.model.channels] if cfg.model.name == "cnn" else None,
            "model.dropout": float(cfg.model.dropout),
            "trainer.batch_size": int(cfg.trainer.batch_size),
            "trainer.epochs": int(cfg.trainer.epochs),
            "trainer.seed": int(cfg.trainer.seed),
            **schedule_keys(cfg),
            "schedule.unit": cfg.schedule.unit,
            "data": data_fingerprint(data),
        },
        "units": {"steps_per_epoch": units.get("steps_per_epoch"), "total": units["total"]},
    }


#: the config keys of the LR's and the targets' expressions
TARGET_KEYS = tuple(f"schedule.{key}" for key in channels.CONFIG_KEYS)
#: what ``trainer.rebase=true`` lets differ: the schedule's program (its expressions, free
#: values included) and its clock, nothing else
SCHEDULE_KEYS = (*TARGET_KEYS, "schedule.free", "schedule.clock")
#: how a manifest from before a key reads without it
MISSING = {"schedule.free": None, "schedule.clock": "ticks"}


def schedule_keys(cfg) -> dict:
    """The canonical expression of the LR and of each target (None: not scheduled), the free
    values' ({name: canonical expression}, None when there are none) and the clock."""
    from lrdsl.train.config import free_values

    keys: dict[str, Any] = {key: None if cfg.schedule[key.split(".")[1]] is None
                            else str(parse(str(cfg.schedule[key.split(".")[1]]))) for key in TARGET_KEYS}
    free = {name: str(parse(text)) for name, text in sorted(free_values(cfg).items())}
    keys["schedule.free"] = free or None
    keys["schedule.clock"] = cfg.schedule.get("clock", "ticks")
    return keys


def data_fingerprint(data) -> str:
    """Sizes, sample shape, classes and a CRC-32 of the arrays: the same data, or not."""
    crc = 0
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        crc = zlib.crc32(memoryview(array).cast("B"), crc)
    shape = "×".join(map(str, data.x_train.shape[1:]))
    return (f"{len(data.x_train)}+{len(data.x_val)} samples of {shape}, {data.classes} classes, "
            f"crc32 {crc:08x}")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def check_manifest(saved: Any, expected: dict, path: Path, rebase: bool = False) -> None:
    """One :class:`LrdslError` line naming the first thing that differs.

    With ``rebase`` the schedule's expressions (:data:`SCHEDULE_KEYS`) may differ; without it,
    a different one is refused with a pointer to ``trainer.rebase=true``.  A manifest from
    before targets lacks their keys: read as not scheduled.
    """
    where = f"trainer.resume: {path}"
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise LrdslError(f"{where} is not a checkpoint written by lrdsl train (no lrdsl manifest in it: another "
                         f"program's file, or one from an lrdsl before manifests)")
    if saved.get("backend") != expected["backend"]:
        raise LrdslError(f"{where} was written by backend={saved.get('backend')}; this run has "
                         f"backend={expected['backend']}")
    old, new = saved.get("config", {}), expected["config"]
    for key, value in new.items():
        if old.get(key, MISSING.get(key)) != value:
            if key in SCHEDULE_KEYS:
                if rebase:
                    continue
                raise LrdslError(f"{where} was saved with {key}={_show(old.get(key))}; this run has "
                                 f"{key}={_show(value)} (pass trainer.rebase=true to continue it under the "
                                 f"new schedule from its tick {saved.get('ticks_done')})")
            if key == "data":
                raise LrdslError(f"{where} was trained on other data ({old.get(key)}); this run has {value}")
            raise LrdslError(f"{where} was saved with {key}={_show(old.get(key))}; this run has "
                             f"{key}={_show(value)}")
    epochs = int(saved.get("epochs_done", -1))
    if not 1 <= epochs <= int(new["trainer.epochs"]):
        raise LrdslError(f"{where}: its manifest says {epochs} epochs done, outside 1…{new['trainer.epochs']}")


# -- torch ----------------------------------------------------------------------------------

def _digest(obj: Any, h) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _digest(obj[key], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _digest(item, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def digest(state: dict) -> str:
    """SHA-256 over the tensors and values of ``state``, the manifest included (its own
    ``sha256`` entry aside)."""
    h = hashlib.sha256()
    meta = state.get("lrdsl")
    if isinstance(meta, dict):
        state = {**state, "lrdsl": {k: v for k, v in meta.items() if k != "sha256"}}
    _digest(state, h)
    return h.hexdigest()


def save_torch(path: Path, state: dict, meta: dict) -> None:
    import torch

    import io

    state = {**state, "lrdsl": dict(meta)}
    state["lrdsl"]["sha256"] = digest(state)
    # serialized in memory, written by Python: torch.save's own writer reports a full disk as
    # a RuntimeError ("unexpected pos"), this an OSError naming ENOSPC
    buffer = io.BytesIO()
    torch.save(state, buffer)

    def write(temp: Path) -> None:
        temp.write_bytes(buffer.getbuffer())

    write_atomically(path, write, meta["epochs_done"])


def load_torch(path: Path, expected: dict, device, rebase: bool = False) -> dict:
    """The checkpoint's state, checked whole and against this run, or one LrdslError line."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a damaged file fails in many ways (UnpicklingError, EOFError, …)
        raise LrdslError(f"trainer.resume: {path} cannot be read as a PyTorch checkpoint: truncated, "
                         f"corrupt or not one ({type(error).__name__})") from None
    meta = state.get("lrdsl") if isinstance(state, dict) else None
    check_manifest(meta, expected, path, rebase)
    assert isinstance(meta, dict)  # check_manifest refuses anything else
    if not isinstance(meta.get("sha256"), str) or meta["sha256"] != digest(state):
        raise LrdslError(f"trainer.resume: {path} is corrupt (its contents do not match the checksum "
                         f"written with them)")
    return state


# -- keras ----------------------------------------------------------------------------------

def save_keras(path: Path, model, meta: dict) -> None:
    import zipfile

    def write(temp: Path) -> None:
        model.save(temp)
        with zipfile.ZipFile(temp, "a") as archive:
            archive.writestr(MANIFEST_MEMBER, json.dumps(meta, indent=1))

    write_atomically(path, write, meta["epochs_done"])


def read_keras_manifest(path: Path) -> dict | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            if MANIFEST_MEMBER not in archive.namelist():
                return None
            return json.loads(archive.read(MANIFEST_MEMBER))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, UnicodeDecodeError) as error:
        raise LrdslError(f"trainer.resume: {path} cannot be read as a Keras checkpoint: truncated, "
                         f"corrupt or not one ({type(error).__name__})") from None


def load_keras(path: Path, expected: dict, keras, rebase: bool = False) -> tuple[Any, dict]:
    """(model, manifest), after checking the whole file and the manifest against this run."""
    import zipfile

    meta = read_keras_manifest(path)
    check_manifest(meta, expected, path, rebase)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # every member's CRC: a flipped byte shows here
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
        bad = f"{type(error).__name__}"
    if bad is not None:
        raise LrdslError(f"trainer.resume: {path} is corrupt (member {bad} fails its CRC check)")
    import lrdsl.keras  # noqa: F401  (registers the schedule class load_model needs)

    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many kinds here; any means: not this checkpoint
        raise LrdslError(f"trainer.resume: Keras cannot load {path} "
                         f"({type(error).__name__}: {' '.join(str(error).split())[:160]})") from None
    assert isinstance(meta, dict)  # check_manifest refuses anything else
    return model, meta


def rebase_lines(saved: dict, expected: dict, before: dict, scheduler) -> list[str]:
    """``rebase at tick T: lr 0.1 -> 0.05 (old -> new expression)``, one line per target the
    old or the new schedule drives; none when the schedule is unchanged.

    ``saved``/``expected``: the checkpoint's manifest and this run's; ``before``: the values
    the checkpointed run had in force at tick T; ``scheduler``: has ``get_last(target)``, the
    new values at T (a target the new schedule leaves alone keeps its value).
    """
    old, new = saved.get("config", {}), expected["config"]
    if all(old.get(key, MISSING.get(key)) == new[key] for key in SCHEDULE_KEYS):
        return []
    tick = saved.get("ticks_done")
    lines = []
    for key in ("schedule.clock", "schedule.free"):
        before_, after_ = old.get(key, MISSING[key]) or {}, new[key] or {}
        if key == "schedule.clock" and before_ != after_:
            lines.append(f"rebase at tick {tick}: clock {before_} -> {after_}")
        for name in sorted(set(before_) | set(after_)) if key == "schedule.free" else ():
            if before_.get(name) != after_.get(name):
                now = f" (now {scheduler.value(name):.6g})" if name in after_ else ""
                lines.append(f"rebase at tick {tick}: {name} {before_.get(name) or 'unscheduled'} -> "
                             f"{after_.get(name) or 'unscheduled'}{now}")
    for key in TARGET_KEYS:
        target = "lr" if key == "schedule.expr" else key.split(".")[1]
        if old.get(key) is None and new[key] is None:
            continue
        after = scheduler.get_last(target)[0] if new[key] is not None else before[target]
        lines.append(f"rebase at tick {tick}: {target} {before[target]:.6g} -> {after:.6g} "
                     f"({old.get(key) or 'unscheduled'} -> {new[key] or 'unscheduled, kept'})")
    return lines
