"""Datasets as numpy arrays: scikit-learn's bundled digits (no download) or an .npz file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrdsl.errors import LrdslError


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # float32, (N, H, W) images or (N, F) features
    y_train: np.ndarray  # int64 labels
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        return self.x_train.shape[1:] if self.x_train.ndim == 3 else None

    @property
    def features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def _split(x, y, fraction: float, seed: int, source: str):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as error:  # too few samples, or a class with a single sample
        raise LrdslError(f"{source}: cannot split off data.val_fraction={fraction} for validation "
                         f"({' '.join(str(error).split())})") from None


def _labels(y: np.ndarray, name: str, source: str) -> np.ndarray:
    """``y`` as int64 labels 0…K−1: integers (or whole floats), one per sample, none negative."""
    if y.ndim != 1:
        raise LrdslError(f"{source}: {name} must be 1-D (one integer label per sample), got shape {y.shape}")
    if y.dtype.kind in "iub":
        labels = y.astype(np.int64)
    elif y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        labels = y.astype(np.int64)
    else:
        raise LrdslError(f"{source}: {name} must hold integer class labels 0, 1, 2, …, got dtype "
                         f"{y.dtype}" + (" with non-integer values" if y.dtype.kind == "f" else ""))
    if labels.size and labels.min() < 0:
        raise LrdslError(f"{source}: {name} holds a negative label ({labels.min()}); labels are 0, 1, 2, …")
    return labels


def _features(x: np.ndarray, name: str, source: str) -> np.ndarray:
    if x.ndim < 2:
        raise LrdslError(f"{source}: {name} must be N×features or N×H×W, got shape {x.shape}")
    if x.dtype.kind not in "iubf":
        raise LrdslError(f"{source}: {name} must be numeric, got dtype {x.dtype}")
    if x.shape[0] and not np.all(np.isfinite(x)):
        raise LrdslError(f"{source}: {name} holds NaN or infinite values")
    if not all(x.shape[1:]):
        raise LrdslError(f"{source}: {name} has no features (shape {x.shape})")
    return x.astype(np.float32)


def _checked(x, y, xname: str, yname: str, source: str):
    x, y = _features(x, xname, source), _labels(y, yname, source)
    if len(x) != len(y):
        raise LrdslError(f"{source}: {xname} has {len(x)} samples but {yname} has {len(y)}")
    if len(x) == 0:
        raise LrdslError(f"{source}: {xname} and {yname} are empty")
    return x, y


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    import zipfile

    try:
        arrays = np.load(path, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise LrdslError(f"config key data.path: {path} is a .npy array, not an .npz archive "
                             f"(save with numpy.savez(path, x=…, y=…))")
        with arrays:
            return {name: arrays[name] for name in arrays.files}
    except LrdslError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise LrdslError(f"config key data.path: {path} is not a readable .npz file "
                         f"({type(error).__name__}: {' '.join(str(error).split())[:120]})") from None


def load(cfg) -> Dataset:
    """The dataset a ``data`` config names, with its fixed train/validation split.

    An .npz file is validated before anything trains: arrays ``x`` and ``y`` (or
    ``x_train``, ``y_train``, ``x_val``, ``y_val``); x numeric and finite, N×F or N×H×W; y
    1-D non-negative integer labels, as many as x has samples; nothing empty.
    """
    if cfg.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8), pixels in [0, 1]
        y = digits.target.astype(np.int64)
        x_train, x_val, y_train, y_val = _split(x, y, cfg.val_fraction, cfg.split_seed, "digits")
    elif cfg.name == "npz":
        path = Path(str(cfg.path)).expanduser()
        if not path.is_file():
            raise LrdslError(f"config key data.path: no such file {path}")
        arrays = _read_npz(path)
        names = set(arrays)
        if {"x_train", "y_train", "x_val", "y_val"} <= names:
            x_train, y_train = _checked(arrays["x_train"], arrays["y_train"], "x_train", "y_train", str(path))
            x_val, y_val = _checked(arrays["x_val"], arrays["y_val"], "x_val", "y_val", str(path))
            if x_train.shape[1:] != x_val.shape[1:]:
                raise LrdslError(f"{path}: x_train samples have shape {x_train.shape[1:]} but x_val "
                                 f"samples {x_val.shape[1:]}")
        elif {"x", "y"} <= names:
            x, y = _checked(arrays["x"], arrays["y"], "x", "y", str(path))
            x_train, x_val, y_train, y_val = _split(x, y, cfg.val_fraction, cfg.split_seed, str(path))
        else:
            raise LrdslError(f"{path} needs arrays x and y (or x_train, y_train, x_val, y_val); "
                             f"it has {', '.join(sorted(names)) or 'none'}")
    else:
        raise LrdslError(f"unknown dataset {cfg.name!r}")
    classes = int(max(y_train.max(), y_val.max())) + 1
    if classes < 2:
        raise LrdslError("data: every label is 0; a classifier needs at least two classes")
    return Dataset(x_train, y_train, x_val, y_val, classes)
