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


def _split(x, y, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)


def load(cfg) -> Dataset:
    """The dataset a ``data`` config names, with its fixed train/validation split."""
    if cfg.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8), pixels in [0, 1]
        y = digits.target.astype(np.int64)
        x_train, x_val, y_train, y_val = _split(x, y, cfg.val_fraction, cfg.split_seed)
    elif cfg.name == "npz":
        path = Path(str(cfg.path)).expanduser()
        if not path.is_file():
            raise LrdslError(f"config key data.path: no such file {path}")
        with np.load(path) as arrays:
            names = set(arrays.files)
            if {"x_train", "y_train", "x_val", "y_val"} <= names:
                x_train, y_train = arrays["x_train"], arrays["y_train"]
                x_val, y_val = arrays["x_val"], arrays["y_val"]
            elif {"x", "y"} <= names:
                x_train, x_val, y_train, y_val = _split(arrays["x"], arrays["y"], cfg.val_fraction,
                                                        cfg.split_seed)
            else:
                raise LrdslError(f"{path} needs arrays x and y (or x_train, y_train, x_val, y_val); "
                                 f"it has {', '.join(sorted(names))}")
        x_train, x_val = x_train.astype(np.float32), x_val.astype(np.float32)
        y_train, y_val = y_train.astype(np.int64), y_val.astype(np.int64)
    else:
        raise LrdslError(f"unknown dataset {cfg.name!r}")
    classes = int(max(y_train.max(), y_val.max())) + 1
    return Dataset(x_train, y_train, x_val, y_val, classes)
