"""The schedule AST: frozen, hashable dataclasses whose ``str()`` is the canonical text.

``Call`` (a primitive with every argument bound), ``Sequence`` (``a >> b``),
``Product`` (``a * b``), ``Repeat`` and ``Plateau`` (``a | plateau(...)``).
Constructors check the rules that are about shape rather than syntax — a
warm-up needs a next segment, only the last segment of a sequence may be
unbounded — so a hand-built tree is as valid as a parsed one.  ``str(node)``
is also the repr and the saved form; ``parse(str(e)) == e``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from lrdsl.catalogue import PRIMITIVES, format_value
from lrdsl.errors import ArgumentError, UnknownNameError, did_you_mean
from lrdsl.units import Duration


class Expr:
    """A schedule expression.  Compose with ``a >> b`` and ``a * b`` (or ``k * a``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)

    @property
    def bounded(self) -> bool:
        """Whether the schedule has a finite duration (so it may stand before ``>>``)."""
        raise NotImplementedError

    def children(self) -> tuple["Expr", ...]:
        return ()

    def walk(self) -> Iterator["Expr"]:
        """Every node below and including this one, without recursion."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))

    def units(self) -> set[str]:
        """The duration units the expression writes ('' for bare ticks, 'ep', 'st', '%')."""
        found = set()
        for node in self.walk():
            if isinstance(node, Call):
                for value in node.args:
                    for item in value if isinstance(value, tuple) else (value,):
                        if isinstance(item, Duration):
                            found.add(item.unit)
        return found

    def __rshift__(self, other) -> "Sequence":
        return Sequence((self, as_schedule(other)))

    def __rrshift__(self, other) -> "Sequence":
        return Sequence((as_schedule(other), self))

    def __mul__(self, other) -> "Product":
        return Product((self, as_schedule(other)))

    def __rmul__(self, other) -> "Product":
        return Product((as_schedule(other), self))


@dataclass(frozen=True, repr=False)
class Call(Expr):
    """A primitive call; ``args`` holds a value for every parameter, in catalogue order."""

    name: str
    args: tuple

    @property
    def primitive(self):
        return PRIMITIVES[self.name]

    @property
    def arguments(self) -> dict:
        """Parameter name -> value, defaults included."""
        return dict(zip((p.name for p in self.primitive.params), self.args))

    def __getitem__(self, name: str):
        return self.arguments[name]

    @property
    def bounded(self) -> bool:
        if self.name == "poly" and self["cycle"]:
            return False
        return self.arguments.get("d") is not None

    @property
    def is_warmup(self) -> bool:
        return self.name == "warmup"

    def __str__(self) -> str:
        if self.name == "const" and self.args[1] is None:
            return format_value(self.args[0])
        parts, positional = [], True
        for param, value in zip(self.primitive.params, self.args):
            if positional and (param.required or (param.positional and value is not None)):
                parts.append(format_value(value))
                continue
            positional = False
            if value != param.default:
                parts.append(f"{param.name}={format_value(value)}")
        return f"{self.name}({','.join(parts)})"


def call(name: str, *args, **kwargs) -> Call:
    """Build a checked :class:`Call`: ``call("cosine", 0.1, 100, min=0.001)``."""
    if name not in PRIMITIVES or name == "repeat":
        raise UnknownNameError(f"unknown schedule '{name}'"
                               + did_you_mean(name, [n for n in PRIMITIVES if n != "repeat"]))
    return Call(name, PRIMITIVES[name].bind(list(args), list(kwargs.items())))


def const(lr: float) -> Call:
    """The constant schedule ``lr`` (what a bare number means)."""
    return call("const", lr)


def as_schedule(value) -> Expr:
    """A number becomes a constant; an ``Expr`` stays; anything else is an error."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return const(value)
    raise ArgumentError(f"expected a schedule or a number, got {value!r}")


def _check_time_schedule(node: Expr, where: str) -> None:
    """A time schedule here: no bare warm-up (it needs a next segment), no plateau."""
    if isinstance(node, Plateau) or (isinstance(node, Call) and node.name == "plateau"):
        raise ArgumentError(f"plateau(...) modifies a whole schedule and may only follow '|' at "
                            f"the top level, not stand {where}")
    if isinstance(node, Call) and node.is_warmup:
        raise ArgumentError(f"{node} {where}: warmup must be followed by '>>' and a schedule, "
                            f"whose start value it ramps to")


@dataclass(frozen=True, repr=False)
class Sequence(Expr):
    """``a >> b >> …``: each part runs for its duration, then the next starts its clock at 0."""

    parts: tuple[Expr, ...]

    def __post_init__(self):
        flat = []
        for part in self.parts:
            flat.extend(part.parts if isinstance(part, Sequence) else (as_schedule(part),))
        object.__setattr__(self, "parts", tuple(flat))
        if len(flat) < 2:
            raise ArgumentError("a sequence needs at least two segments")
        for i, part in enumerate(flat):
            last = i == len(flat) - 1
            if isinstance(part, Call) and part.is_warmup and not last:
                if isinstance(flat[i + 1], Call) and flat[i + 1].is_warmup:
                    raise ArgumentError(f"{part} >> {flat[i + 1]}: a warmup cannot be followed "
                                        f"by another warmup")
                continue
            _check_time_schedule(part, "at the end of a sequence" if last else "inside a sequence")
            if not last and not part.bounded:
                raise ArgumentError(f"segment {i + 1} of the sequence, {part}, is unbounded: only "
                                    f"the last segment may run forever (give it d=…)")

    def children(self):
        return self.parts

    @property
    def bounded(self) -> bool:
        return self.parts[-1].bounded

    def __str__(self) -> str:
        return " >> ".join(map(str, self.parts))


@dataclass(frozen=True, repr=False)
class Product(Expr):
    """``a * b``: the pointwise product; as long as its longest bounded factor."""

    factors: tuple[Expr, ...]

    def __post_init__(self):
        flat = []
        for factor in self.factors:
            flat.extend(factor.factors if isinstance(factor, Product) else (as_schedule(factor),))
        object.__setattr__(self, "factors", tuple(flat))
        if len(flat) < 2:
            raise ArgumentError("a product needs at least two factors")
        for factor in flat:
            _check_time_schedule(factor, "as a factor of '*'")

    def children(self):
        return self.factors

    @property
    def bounded(self) -> bool:
        return any(f.bounded for f in self.factors)

    def __str__(self) -> str:
        return " * ".join(f"({f})" if isinstance(f, Sequence) else str(f) for f in self.factors)


@dataclass(frozen=True, repr=False)
class Repeat(Expr):
    """``repeat(a, n=∞)``: the bounded schedule ``a`` run ``n`` times, each with a fresh clock."""

    schedule: Expr
    n: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "schedule", as_schedule(self.schedule))
        _check_time_schedule(self.schedule, "inside repeat")
        if not self.schedule.bounded:
            raise ArgumentError(f"repeat: argument 'schedule' must be bounded, got {self.schedule}")
        if self.n is not None:
            PRIMITIVES["repeat"].bind([self.schedule, self.n], [])  # the count's checks

    def children(self):
        return (self.schedule,)

    @property
    def bounded(self) -> bool:
        return self.n is not None

    def __str__(self) -> str:
        return f"repeat({self.schedule})" if self.n is None else \
            f"repeat({self.schedule},n={format_value(self.n)})"


@dataclass(frozen=True, repr=False)
class Plateau(Expr):
    """``schedule | plateau(monitor, …)``: reduce-on-plateau scaling of a whole time schedule."""

    schedule: Expr
    options: Call

    def __post_init__(self):
        object.__setattr__(self, "schedule", as_schedule(self.schedule))
        if not (isinstance(self.options, Call) and self.options.name == "plateau"):
            raise ArgumentError(f"only plateau(...) may follow '|', got {self.options}")
        _check_time_schedule(self.schedule, "before '|'")

    def children(self):
        return (self.schedule,)

    @property
    def bounded(self) -> bool:
        return self.schedule.bounded

    def __str__(self) -> str:
        return f"{self.schedule} | {self.options}"
