"""lrdsl — learning-rate schedules as one-line expressions.

    >>> import lrdsl
    >>> e = lrdsl.parse("warmup(5) >> cosine(0.1, 100)")
    >>> lrdsl.curve(e, 3).round(3).tolist()
    [0.0, 0.02, 0.04]

The core imports neither torch, TensorFlow, JAX nor matplotlib; ``lrdsl.torch``,
``lrdsl.keras``, ``lrdsl.optax``, ``lrdsl.lightning`` and ``lrdsl.hf`` import their framework when used.
"""

from lrdsl.language.catalogue import primitives
from lrdsl.language.params import Primitive
from lrdsl.errors import (ArgumentError, LrdslError, LrdslSyntaxError, MetricError,
                          UnitError, UnknownNameError)
from lrdsl.language.nodes import (Call, Difference, Expr, Maximum, Minimum, Plateau, Product,
                                  Quantize, Quotient, Repeat, Sequence, Slice, Sum, call, const)
from lrdsl.language.parser import parse

__all__ = [
    "parse", "curve", "primitives", "Primitive",
    "Expr", "Call", "Sequence", "Product", "Quotient", "Sum", "Difference", "Slice", "Minimum",
    "Maximum", "Repeat", "Quantize", "Plateau", "call", "const",
    "LrdslError", "LrdslSyntaxError", "UnknownNameError", "ArgumentError", "UnitError",
    "MetricError",
]
__version__ = "0.2.0"

from lrdsl.language.plan import Plan, plan  # noqa: E402  (after parse: plan imports the parser)
from lrdsl.programs import Program, ProgramError, curve, program  # noqa: E402

__all__ += ["Plan", "plan", "Program", "ProgramError", "program"]


def __getattr__(name):
    """``lrdsl.torch`` / ``keras`` / ``optax`` / ``lightning`` / ``hf`` import their framework only when first used."""
    if name in ("torch", "keras", "optax", "lightning", "hf"):
        import importlib
        return importlib.import_module(f"lrdsl.{name}")
    raise AttributeError(f"module 'lrdsl' has no attribute {name!r}")
