"""The schedule AST: frozen, hashable dataclasses whose ``str()`` is the canonical text.

``Call`` (a primitive with every argument bound), ``Sequence`` (``a >> b``), ``Sum``
(``a + b``), ``Difference`` (``a - b``), ``Product`` (``a * b``), ``Quotient`` (``a / b``),
``Slice`` (``a[s:e]``), ``Minimum`` / ``Maximum`` (``min(a, b)``), ``Repeat``, ``Quantize`` and
``Plateau`` (``a | plateau(...)``).
Constructors check the rules about shape rather than syntax — a warm-up needs a next
segment, a cool-down a previous one, only one segment before the last may be unbounded — so
a hand-built tree is as valid as a parsed one.  ``str(node)`` is also the repr and the saved
form; ``parse(str(e)) == e``.  Python's operators build the same nodes:
``a >> b``, ``a + b``, ``a - b``, ``a * b``, ``a / b``, ``a[5:]``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator

from lrdsl.language import params
from lrdsl.language.catalogue import PRIMITIVES
from lrdsl.language.notebook import Notebook
from lrdsl.language.params import NONNEGATIVE, Primitive, convert_duration, format_value
from lrdsl.errors import ArgumentError, UnknownNameError, did_you_mean
from lrdsl.language.units import Duration, parse_duration

# binding strength, low to high, for the canonical text's parentheses
SEQUENCE, SUM, PRODUCT, POSTFIX, ATOM = 1, 2, 3, 4, 5


class Expr(Notebook):
    """A schedule expression.  Compose with ``>>``, ``+``, ``-``, ``*``, ``/`` and slices ``a[s:e]``;
    ``e(t)`` is its value at ``t``, ``e.plot()`` draws it, Jupyter displays it (:class:`Notebook`)."""

    __slots__ = ()
    precedence = ATOM

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
        stack: list[Expr] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))

    def durations(self) -> Iterator[tuple["Expr", str, Duration]]:
        """(where, argument, duration) for every duration written in the expression.

        Defaults (``every=1``) are not written, so they do not count.
        """
        for node in self.walk():
            yield from node._own_durations()

    def _own_durations(self) -> Iterator[tuple["Expr", str, Duration]]:
        return iter(())

    def units(self) -> set[str]:
        """The duration units the expression writes ('' for bare ticks, 'ep', 'st', '%')."""
        return {duration.unit for _, _, duration in self.durations()}

    def __rshift__(self, other) -> "Sequence":
        return Sequence((self, as_schedule(other)))

    def __rrshift__(self, other) -> "Sequence":
        return Sequence((as_schedule(other), self))

    def __mul__(self, other) -> "Product":
        return Product((self, as_schedule(other)))

    def __rmul__(self, other) -> "Product":
        return Product((as_schedule(other), self))

    def __truediv__(self, other) -> "Quotient":
        return Quotient(self, as_schedule(other))

    def __rtruediv__(self, other) -> "Quotient":
        return Quotient(as_schedule(other), self)

    def __add__(self, other) -> "Sum":
        return Sum((self, as_schedule(other)))

    def __radd__(self, other) -> "Sum":
        return Sum((as_schedule(other), self))

    def __sub__(self, other) -> "Difference":
        return Difference(self, as_schedule(other))

    def __rsub__(self, other) -> "Difference":
        return Difference(as_schedule(other), self)

    def __getitem__(self, window) -> "Slice":
        """``expr[5:]``, ``expr[:50]``, ``expr[Duration(1, "ep"):]``: a time slice."""
        if not isinstance(window, slice) or window.step is not None:
            raise ArgumentError(f"slice a schedule with [start:end], got [{window!r}]")
        return Slice(self, window.start, window.stop)


def _wrap(node: Expr, strength: int) -> str:
    """The node's text, in parentheses where it binds less tightly than ``strength``."""
    return f"({node})" if node.precedence < strength else str(node)


@dataclass(frozen=True, repr=False)
class Call(Expr):
    """A primitive call; ``args`` holds a value for every parameter, in catalogue order."""

    name: str
    args: tuple

    def __post_init__(self):
        if self.name not in PRIMITIVES or PRIMITIVES[self.name].value is None and \
                self.name != "plateau":
            raise UnknownNameError(f"unknown primitive '{self.name}'" + did_you_mean(
                str(self.name), [n for n, p in PRIMITIVES.items() if p.value or n == "plateau"]))
        object.__setattr__(self, "args", PRIMITIVES[self.name].check(self.args))

    @classmethod
    def checked(cls, name: str, args: tuple) -> "Call":
        """A Call from arguments :meth:`Primitive.bind` has already checked (no second check)."""
        node = object.__new__(cls)
        object.__setattr__(node, "name", name)
        object.__setattr__(node, "args", args)
        return node

    @property
    def primitive(self) -> Primitive:
        return PRIMITIVES[self.name]

    @property
    def arguments(self) -> dict:
        """Parameter name -> value, defaults included."""
        return dict(zip((p.name for p in self.primitive.params), self.args))

    @property
    def bounded(self) -> bool:
        return self.primitive.bounded(self.arguments)

    @property
    def placement(self) -> str:
        """'before' (a warm-up), 'after' (a cool-down) or '' (stands anywhere)."""
        return self.primitive.placement

    def _own_durations(self):
        for param, value in zip(self.primitive.params, self.args):
            if value == param.default:
                continue
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, Duration):
                    yield self, param.name, item  # the call, formatted only if a message names it

    def __str__(self) -> str:
        short = self.primitive.short(self.arguments)
        if short is not None:
            return short
        parts, positional = [], True
        for param, value in zip(self.primitive.params, self.args):
            if positional and (param.required or (param.positional and value is not None)):
                parts.append(format_value(value))
                continue
            positional = False
            if value != param.default:
                parts.append(f"{param.name}={format_value(value)}")
        return f"{self.name}({','.join(parts)})"


def call(name: str, *args, **kwargs) -> Expr:
    """Build a checked node: ``call("cosine", 0.1, 100, min=0.001)``, ``call("min", a, b)``,
    ``call("plateau", "val_loss", 0.5)`` (the options of :class:`Plateau`)."""
    if not isinstance(name, str):
        raise ArgumentError(f"call: the first argument names a schedule (a string like 'cosine'), "
                            f"got {name!r}")
    if name not in PRIMITIVES:
        raise UnknownNameError(f"unknown schedule '{name}'" + did_you_mean(name, PRIMITIVES))
    primitive = PRIMITIVES[name]
    values = primitive.bind(list(args), list(kwargs.items()))
    return primitive.build(values) if primitive.build is not None else Call.checked(name, values)


def const(lr: float) -> Call:
    """The constant schedule ``lr`` (what a bare number means)."""
    return Call.checked("const", PRIMITIVES["const"].bind([lr], []))


def as_schedule(value) -> Expr:
    """A number becomes a constant; an ``Expr`` stays; anything else is an error."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return const(value)
    raise ArgumentError(f"expected a schedule or a number, got {value!r}")


def check_operand(node: Expr, where: str) -> Expr:
    """A time schedule that stands on its own here: no plateau, no bare warm-up or cool-down.

    Warm-ups and cool-downs take their level from a neighbour in ``>>``, so they may stand
    only directly in a sequence — not alone, nor inside a product, sum, slice, repeat, min or max.
    """
    if isinstance(node, Plateau) or (isinstance(node, Call) and node.name == "plateau"):
        raise ArgumentError(f"plateau(...) modifies a whole schedule and may only follow '|' at "
                            f"the top level, not stand {where}")
    if isinstance(node, Call) and node.placement == "before":
        raise ArgumentError(f"{node} {where}: {node.name} must be followed by '>>' and a schedule, "
                            f"whose start value it ramps to")
    if isinstance(node, Call) and node.placement == "after":
        raise ArgumentError(f"{node} {where}: {node.name} must follow a bounded segment and '>>', "
                            f"whose final value it starts from")
    return node


def _flatten(kind, items, field: str) -> tuple[Expr, ...]:
    flat: list[Expr] = []
    for item in items:
        flat.extend(getattr(item, field) if isinstance(item, kind) else (as_schedule(item),))
    return tuple(flat)


@dataclass(frozen=True, repr=False)
class Sequence(Expr):
    """``a >> b >> …``: each part runs for its duration, then the next starts its clock at 0.

    Every part but the last is bounded, except at most one: that one stretches so that the
    whole sequence lasts ``total`` ticks (then the last part must be bounded).
    """

    parts: tuple[Expr, ...]
    precedence = SEQUENCE

    def __post_init__(self):
        flat = _flatten(Sequence, self.parts, "parts")
        object.__setattr__(self, "parts", flat)
        if len(flat) < 2:
            raise ArgumentError("a sequence needs at least two segments")
        for i, part in enumerate(flat):
            self._check_neighbours(i)
        stretching = self.stretching
        if len(stretching) > 1:
            a, b = (flat[i] for i in stretching[:2])
            raise ArgumentError(f"segments {stretching[0] + 1} and {stretching[1] + 1} of the "
                                f"sequence, {a} and {b}, are both unbounded: only one segment "
                                f"before the last may stretch to fill total= (give the other d=…)")
        if stretching and not flat[-1].bounded:
            raise ArgumentError(f"segment {stretching[0] + 1} of the sequence, {flat[stretching[0]]}, "
                                f"is unbounded and so is the last, {flat[-1]}: a segment stretches "
                                f"to fill total= only before a bounded end (give one of them d=…)")

    def _check_neighbours(self, i: int) -> None:
        parts = self.parts
        part = parts[i]
        if not isinstance(part, Call) or not part.placement:
            check_operand(part, "in a sequence")
            return
        placement = part.placement
        if placement == "before":
            if i == len(parts) - 1:
                check_operand(part, "at the end of a sequence")
            following = parts[i + 1]
            if isinstance(following, Call) and following.placement:
                article = "another" if following.name == part.name else "a"
                raise ArgumentError(f"{part} >> {following}: a {part.name} cannot be followed by "
                                    f"{article} {following.name}")
        elif placement == "after":
            if i == 0:
                check_operand(part, "at the start of a sequence")
            previous = parts[i - 1]
            if isinstance(previous, Call) and previous.placement == "after":
                raise ArgumentError(f"{previous} >> {part}: a {part.name} cannot follow "
                                    f"another {previous.name}")

    @property
    def stretching(self) -> list[int]:
        """Indices of the unbounded parts before the last (at most one in a valid sequence)."""
        return [i for i, part in enumerate(self.parts[:-1]) if not part.bounded]

    def children(self):
        return self.parts

    @property
    def bounded(self) -> bool:
        return self.parts[-1].bounded

    def __str__(self) -> str:
        return " >> ".join(_wrap(p, SUM) for p in self.parts)


@dataclass(frozen=True, repr=False)
class Product(Expr):
    """``a * b``: the pointwise product; as long as its longest bounded factor."""

    factors: tuple[Expr, ...]
    precedence = PRODUCT

    def __post_init__(self):
        flat = _flatten(Product, self.factors, "factors")
        object.__setattr__(self, "factors", flat)
        if len(flat) < 2:
            raise ArgumentError("a product needs at least two factors")
        for factor in flat:
            check_operand(factor, "as a factor of '*'")

    def children(self):
        return self.factors

    @property
    def bounded(self) -> bool:
        return any(f.bounded for f in self.factors)

    def __str__(self) -> str:
        # a quotient after the first factor keeps its parentheses: c * a / b is (c * a) / b
        return " * ".join(_wrap(f, POSTFIX if i and isinstance(f, Quotient) else PRODUCT)
                          for i, f in enumerate(self.factors))


@dataclass(frozen=True, repr=False)
class Sum(Expr):
    """``a + b + …``: the pointwise sum; as long as its longest bounded term."""

    terms: tuple[Expr, ...]
    precedence = SUM

    def __post_init__(self):
        flat = _flatten(Sum, self.terms, "terms")
        object.__setattr__(self, "terms", flat)
        if len(flat) < 2:
            raise ArgumentError("a sum needs at least two terms")
        for term in flat:
            check_operand(term, "as a term of '+'")

    def children(self):
        return self.terms

    @property
    def bounded(self) -> bool:
        return any(t.bounded for t in self.terms)

    def __str__(self) -> str:
        first, *rest = self.terms
        return " + ".join([_wrap(first, SUM)] + [_wrap(t, PRODUCT) for t in rest])


@dataclass(frozen=True, repr=False)
class Difference(Expr):
    """``a - b``: the pointwise difference; the plan proves it never goes negative."""

    minuend: Expr
    subtrahend: Expr
    precedence = SUM

    def __post_init__(self):
        for name, where in (("minuend", "before '-'"), ("subtrahend", "after '-'")):
            object.__setattr__(self, name, check_operand(as_schedule(getattr(self, name)), where))

    def children(self):
        return (self.minuend, self.subtrahend)

    @property
    def bounded(self) -> bool:
        return self.minuend.bounded or self.subtrahend.bounded

    def __str__(self) -> str:
        return f"{_wrap(self.minuend, SUM)} - {_wrap(self.subtrahend, PRODUCT)}"


@dataclass(frozen=True, repr=False)
class Quotient(Expr):
    """``a / b``: the pointwise quotient; the plan proves the divisor stays in (0, ∞).

    Left-associative at the level of ``*``: ``a * b / c`` is ``(a * b) / c``, ``a / b / c`` is
    ``(a / b) / c``; as long as its longer bounded operand.  REX is
    ``0.1 * anneal(1, 0, 100%, shape=linear) / anneal(1, 0.5, 100%, shape=linear)``.
    """

    dividend: Expr
    divisor: Expr
    precedence = PRODUCT

    def __post_init__(self):
        for name, where in (("dividend", "before '/'"), ("divisor", "after '/'")):
            object.__setattr__(self, name, check_operand(as_schedule(getattr(self, name)), where))

    def children(self):
        return (self.dividend, self.divisor)

    @property
    def bounded(self) -> bool:
        return self.dividend.bounded or self.divisor.bounded

    def __str__(self) -> str:
        return f"{_wrap(self.dividend, PRODUCT)} / {_wrap(self.divisor, POSTFIX)}"


def _slice_bound(value, name: str, check) -> Duration | None:
    if value is None:
        return None
    if isinstance(value, str) and not isinstance(value, Duration):
        value = parse_duration(value)
    return convert_duration("slice", name, value, check)


@dataclass(frozen=True, repr=False)
class Slice(Expr):
    """``a[s:e]``: the value at t is a(s + min(t, e − s)).

    With an end it is a bounded segment of e − s ticks that holds a(e) past its end; without
    one it lasts a's duration − s (unbounded if a is).  ``cosine(0.1, 100)[5:]`` skips the
    first 5 ticks (timm's warmup_prefix=False); ``sgdr(0.1, 10)[:95]`` bounds a periodic one.
    """

    schedule: Expr
    start: Duration | None = None
    end: Duration | None = None
    precedence = POSTFIX

    def __post_init__(self):
        object.__setattr__(self, "schedule", check_operand(as_schedule(self.schedule), "sliced"))
        start = _slice_bound(self.start, "start", NONNEGATIVE)
        end = _slice_bound(self.end, "end", NONNEGATIVE)
        if start is not None and start.value == 0:
            start = None  # [0:e] is [:e]: one spelling for one meaning
        if start is None and end is None:
            raise ArgumentError(f"{self.schedule}[:]: a slice needs a start or an end")
        if start is not None and end is not None and start.unit == end.unit and \
                not start.value < end.value:
            raise ArgumentError(f"slice [{start}:{end}]: the start must come before the end")
        if end is not None and end.value == 0:
            raise ArgumentError(f"slice [:{end}]: the end must be > 0")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def children(self):
        return (self.schedule,)

    def _own_durations(self):
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                yield self, name, getattr(self, name)

    @property
    def bounded(self) -> bool:
        return self.end is not None or self.schedule.bounded

    def __str__(self) -> str:
        start = "" if self.start is None else str(self.start)
        end = "" if self.end is None else str(self.end)
        return f"{_wrap(self.schedule, POSTFIX)}[{start}:{end}]"


@dataclass(frozen=True, repr=False)
class _Pointwise(Expr):
    """``min(a, b, …)`` / ``max(a, b, …)``: as long as the longest bounded operand."""

    operands: tuple[Expr, ...]
    keyword = ""

    def __post_init__(self):
        operands = tuple(check_operand(as_schedule(o), f"inside {self.keyword}(...)")
                         for o in self.operands)
        if len(operands) < 2:
            raise ArgumentError(f"{self.keyword}: needs at least two schedules or numbers")
        object.__setattr__(self, "operands", operands)

    def children(self):
        return self.operands

    @property
    def bounded(self) -> bool:
        return any(o.bounded for o in self.operands)

    def __str__(self) -> str:
        return f"{self.keyword}({','.join(map(str, self.operands))})"


@dataclass(frozen=True, repr=False)
class Minimum(_Pointwise):
    """``min(a, b, …)``: the pointwise minimum (a ceiling)."""

    keyword = "min"


@dataclass(frozen=True, repr=False)
class Maximum(_Pointwise):
    """``max(a, b, …)``: the pointwise maximum (a floor)."""

    keyword = "max"


@dataclass(frozen=True, repr=False)
class Repeat(Expr):
    """``repeat(a, n=∞, mult=1, decay=1, round=false)``: the bounded schedule ``a`` run ``n``
    times, each with a fresh clock; repetition k stretched ×multᵏ in time, ×decayᵏ in value."""

    schedule: Expr
    n: float | None = None
    mult: float = 1.0
    decay: float = 1.0
    round: bool = False

    def __post_init__(self):
        object.__setattr__(self, "schedule", check_operand(as_schedule(self.schedule), "inside repeat"))
        if not self.schedule.bounded:
            raise ArgumentError(f"repeat: argument 'schedule' must be bounded, got {self.schedule}",
                                argument="schedule")
        values = PRIMITIVES["repeat"].check((self.schedule, self.n, self.mult, self.decay,
                                             self.round))  # n, mult, decay's checks
        for name, value in zip(("n", "mult", "decay", "round"), values[1:]):
            object.__setattr__(self, name, value)

    def children(self):
        return (self.schedule,)

    @property
    def bounded(self) -> bool:
        return self.n is not None

    def __str__(self) -> str:
        extra = "".join(f",{name}={format_value(value)}" for name, value, default in (
            ("n", self.n, None), ("mult", self.mult, 1.0), ("decay", self.decay, 1.0),
            ("round", self.round, False)) if value != default)
        return f"repeat({self.schedule}{extra})"


@dataclass(frozen=True, repr=False)
class Quantize(Expr):
    """``quantize(a, every)``: ``a`` held for ``every`` ticks at its value at the start of each
    period, a(every·⌊min(t, d)/every⌋) (the formula and references: the catalogue entry)."""

    schedule: Expr
    every: Duration

    def __post_init__(self):
        try:
            schedule = check_operand(as_schedule(self.schedule), "inside quantize")
        except ArgumentError as error:
            error.argument = "schedule"  # the caret goes under it
            raise
        object.__setattr__(self, "schedule", schedule)
        every = self.every
        if isinstance(every, str) and not isinstance(every, Duration):
            every = parse_duration(every)  # Quantize(a, "1ep"), as a slice takes "1ep"
        every = PRIMITIVES["quantize"].bind([schedule, every], [])[1]  # every's checks
        object.__setattr__(self, "every", every)

    def children(self):
        return (self.schedule,)

    def _own_durations(self):
        yield self, "every", self.every

    @property
    def bounded(self) -> bool:
        return self.schedule.bounded

    def __str__(self) -> str:
        return f"quantize({self.schedule},{self.every})"


@dataclass(frozen=True, repr=False)
class Plateau(Expr):
    """``schedule | plateau(monitor, …)``: reduce-on-plateau scaling of a whole time schedule."""

    schedule: Expr
    options: Call
    precedence = 0

    def __post_init__(self):
        object.__setattr__(self, "schedule", as_schedule(self.schedule))
        if not (isinstance(self.options, Call) and self.options.name == "plateau"):
            raise ArgumentError(f"only plateau(...) may follow '|', got {self.options}")
        check_operand(self.schedule, "before '|'")

    def children(self):
        return (self.schedule,)

    @property
    def bounded(self) -> bool:
        return self.schedule.bounded

    def __str__(self) -> str:
        return f"{self.schedule} | {self.options}"


# argument binding builds const nodes, and the catalogue repeat, min and max nodes: they reach
# them through this binding (they sit below the AST, which reads them; an import back would be a cycle)
params.nodes = sys.modules[__name__]
