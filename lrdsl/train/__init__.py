"""The Hydra training app (``lrdsl train``); see :mod:`lrdsl.train.app`."""

from lrdsl.train.app import main

__all__ = ["main"]
