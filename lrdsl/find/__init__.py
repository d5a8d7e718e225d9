"""The LR range test: ``sweep`` (the sweep, the recorder, the result and its suggestions),
``torch`` and ``keras`` (the test run on each framework's own model and optimizer; also
``lrdsl.torch.find_lr`` and ``lrdsl.keras.find_lr``)."""

from lrdsl.find.sweep import FindResult

__all__ = ["FindResult"]
