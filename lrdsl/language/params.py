"""The parameter schema of the language's calls, and how written arguments bind to it.

A :class:`Primitive` holds its parameters (:class:`Param`: kind, default, :class:`Check`), a
docstring with the formula and a reference, and hooks that the rest of lrdsl asks instead of
branching on names: ``value`` (the formula), ``resolve`` (constants derived in float64 once
units are known, and checks that need ticks), ``range`` (the interval its values lie in, from
its arguments), ``end`` (the tick from which it holds), ``bounded``, ``placement`` (warm-up
before / cool-down after a neighbour in ``>>``), ``describe`` (words for ``lrdsl parse``),
``span`` (a period worth plotting), ``short`` (a shorter canonical spelling) and ``build`` (an
AST node other than :class:`lrdsl.Call`).  The entries themselves are in
:mod:`lrdsl.language.catalogue`.

:meth:`Primitive.bind` matches written arguments to parameters and :func:`convert` turns each
into its kind, or raises a one-line error naming the argument.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from lrdsl.errors import ArgumentError, UnknownNameError, did_you_mean
from lrdsl.language.units import Duration, format_number

#: the AST module, lrdsl.language.nodes, bound here by nodes itself when it is imported: nodes
#: reads the catalogue, so Expr and const are reached through this name, not an import back
nodes: Any = None

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Check:
    """A condition on one numeric value and the words that say it."""

    holds: Callable[[float], bool]
    words: str


LR = Check(lambda x: x >= 0, "must be ≥ 0 (a learning rate)")
PEAK = Check(lambda x: x > 0, "must be > 0 (a peak learning rate)")
POSITIVE = Check(lambda x: x > 0, "must be > 0")
NONNEGATIVE = Check(lambda x: x >= 0, "must be ≥ 0")
UNIT_CLOSED = Check(lambda x: 0 <= x <= 1, "must lie in [0, 1]")
UNIT_OPEN = Check(lambda x: 0 < x < 1, "must lie in (0, 1)")
AT_LEAST_ONE = Check(lambda x: x >= 1, "must be ≥ 1")
INTEGER = Check(lambda x: x == int(x) and x >= 0, "must be a whole number ≥ 0")
COUNT = Check(lambda x: x == int(x) and x >= 1, "must be a whole number ≥ 1")


@dataclass(frozen=True)
class Param:
    """One parameter.

    ``kind`` is one of number, duration, bool, choice, string, numbers, durations,
    schedule, schedules (every positional argument from here on).  ``default`` is
    :data:`REQUIRED`, a value, or None for "absent" (unbounded ``d``, ``exp``'s
    rate-or-k, ``cyclic``'s down=up, ``onecycle``'s start=lr/div).
    """

    name: str
    kind: str
    default: Any = REQUIRED
    check: Check | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""
    #: how the default reads in a signature, where it is not a plain value
    shown: str = ""
    #: the default is the value of this other parameter (stored as None when equal)
    same_as: str = ""
    #: optional, yet written positionally when given (exp's rate, whose alternative is k=)
    positional: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def signature(self) -> str:
        if self.kind == "schedules":
            return f"{self.name}…"
        if self.required:
            return self.name
        return f"{self.name}={self.shown or format_value(self.default)}"

    def words(self) -> str:
        """Kind, default, condition and choices in a few words (``lrdsl list NAME``, the docs)."""
        default = "required" if self.required else f"default {self.shown or format_value(self.default)}"
        check = f", {self.check.words}" if self.check else ""
        choices = f" — one of {', '.join(self.choices)}" if self.choices else ""
        return f"{self.kind}, {default}{check}{choices}"


def format_value(value) -> str:
    """A written value in canonical form: numbers shortest, names bare, strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        if _IDENTIFIER.fullmatch(value) and value not in ("true", "false"):
            return value
        return json.dumps(value, ensure_ascii=False)
    return str(value)  # Duration, Expr


def _no_range(p) -> tuple[float, float]:
    return (0.0, 0.0)


@dataclass(frozen=True)
class Primitive:
    """A named call of the language: its parameters, formula, range and meaning."""

    name: str
    params: tuple[Param, ...]
    doc: str
    native: str = ""
    example: str = ""
    #: the formula value(xp, t, p); None for combinators (repeat, min, max, plateau)
    value: Callable | None = None
    #: cross-argument condition on the bound written arguments: returns a complaint or None
    validate: Callable[[dict], str | None] | None = None
    #: in ticks: derives constants into p (float64) and returns a complaint or None
    resolve: Callable[[SimpleNamespace], str | None] | None = None
    #: (lowest, highest) value from the resolved arguments; inf where it grows without bound
    range: Callable[[SimpleNamespace], tuple[float, float]] = _no_range
    #: the tick from which a bounded call holds its final value
    end: Callable[[SimpleNamespace], float] = lambda p: p.d
    #: whether the written arguments make a finite duration (so it may stand before >>)
    bounded: Callable[[dict], bool] = lambda a: a.get("d") is not None
    #: "before": a warm-up ramping to the next segment; "after": a cool-down from the previous
    placement: str = ""
    #: a few words on how the values move, for ``lrdsl parse``
    describe: Callable[[dict], str] = lambda a: ""
    #: the word ``lrdsl parse`` names a segment of this call by (default: its name)
    title: str = ""
    #: ticks worth plotting for an unbounded call (a period or the last event)
    span: Callable[[SimpleNamespace], float] = lambda p: 0.0
    #: a shorter canonical spelling for these arguments, or None (const(x) is x)
    short: Callable[[dict], str | None] = lambda a: None
    #: builds the AST node for bound values; None: a plain Call
    build: Callable[[tuple], Any] | None = None

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.signature() for p in self.params)})"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name and p.kind != "schedules":
                return p
        raise UnknownNameError(f"{self.name}: unknown keyword '{name}'"
                               + did_you_mean(name, [p.name for p in self.params]), argument=name)

    def bind(self, positional: list, keywords: list[tuple[str, Any]]) -> tuple:
        """Match written arguments to parameters; return every value in catalogue order."""
        params = self.params
        if params and params[-1].kind == "schedules":  # min(a, b, …): the rest are one tuple
            fixed = len(params) - 1
            positional = positional[:fixed] + [tuple(positional[fixed:])]
        if len(positional) > len(params):
            raise ArgumentError(f"{self.name}: takes at most {len(params)} arguments, "
                                f"got {len(positional)} — {self.signature()}",
                                argument=len(params))
        given: dict[str, Any] = {p.name: v for p, v in zip(params, positional)}
        for name, value in keywords:
            param = self.param(name)
            if param.name in given:
                raise ArgumentError(f"{self.name}: argument '{name}' given twice", argument=name)
            given[param.name] = value
        values = []
        for param in params:
            if param.name in given and not (given[param.name] is None and param.default is None):
                values.append(self._convert(param, given[param.name]))
            elif param.required and param.name not in given:
                raise ArgumentError(f"{self.name}: missing argument '{param.name}' — {self.signature()}")
            else:
                values.append(param.default)
        return self._finish(values)

    def check(self, values: tuple) -> tuple:
        """The arguments of a hand-built ``Call`` (every value, in catalogue order), checked
        exactly as :meth:`bind` checks written ones."""
        if not isinstance(values, tuple) or len(values) != len(self.params):
            raise ArgumentError(f"{self.name}: needs a tuple of {len(self.params)} argument values "
                                f"in catalogue order — {self.signature()}")
        return self._finish([value if value is None and param.default is None
                             else self._convert(param, value)
                             for param, value in zip(self.params, values)])

    def _convert(self, param: Param, value):
        try:
            return convert(self.name, param, value)
        except ArgumentError as error:
            error.argument = param.name if error.argument is None else error.argument
            raise

    def _finish(self, values: list) -> tuple:
        params = self.params
        bound = dict(zip((p.name for p in params), values))
        for i, param in enumerate(params):
            if param.same_as and values[i] == bound[param.same_as]:
                values[i] = None  # one spelling for one meaning: cyclic(…, 10, down=10) is cyclic(…, 10)
        if self.validate is not None:
            complaint = self.validate(bound)
            if complaint:
                raise ArgumentError(f"{self.name}: {complaint}",
                                    argument=_first_named(complaint, params))
        return tuple(values)


def _first_named(complaint: str, params) -> str | None:
    """The parameter a cross-argument complaint names first (where its caret goes)."""
    for word in re.findall(r"[A-Za-z_]+", complaint):
        if any(p.name == word for p in params):
            return word
    return None


class Name(str):
    """A bare identifier written as an argument value (``val_loss``, ``triangular``, ``true``)."""


def _describe(value) -> str:
    Expr = nodes.Expr
    if isinstance(value, Expr):
        return f"the schedule {value}"
    if isinstance(value, Duration):
        return f"the duration {value}"
    if isinstance(value, Name):
        return f"the name {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _number(call: str, param: Param, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"{call}: argument '{param.name}' must be a number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:  # a Python int beyond float range
        value = math.inf
    if not math.isfinite(value):
        raise ArgumentError(f"{call}: argument '{param.name}' must be finite, got {value}")
    if param.check is not None and not param.check.holds(value):
        raise ArgumentError(f"{call}: argument '{param.name}' {param.check.words}, got "
                            f"{format_number(value)}")
    return value


def convert_duration(call: str, name: str, value, check: Check = POSITIVE) -> Duration:
    """A written duration (a number counts ticks) checked finite and by ``check``."""
    if isinstance(value, Duration):
        number = value.value
    else:
        number = _number(call, Param(name, "number"), value)
    if not math.isfinite(number):
        raise ArgumentError(f"{call}: duration '{name}' must be finite, got {value}")
    if not check.holds(number):
        raise ArgumentError(f"{call}: duration '{name}' {check.words}, got {value}")
    return value if isinstance(value, Duration) else Duration(number)


def convert(call: str, param: Param, value):
    """Turn one written value into the parameter's kind, or raise a one-line error."""
    Expr, const = nodes.Expr, nodes.const
    kind = param.kind
    if kind == "number":
        return _number(call, param, value)
    if kind == "duration":
        return convert_duration(call, param.name, value, param.check or POSITIVE)
    if kind in ("numbers", "durations"):
        if not isinstance(value, (list, tuple)):
            raise ArgumentError(f"{call}: argument '{param.name}' must be a list like [1, 2], "
                                f"got {_describe(value)}")
        item = Param(param.name, kind[:-1], check=param.check)
        return tuple(convert(call, item, v) for v in value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, Name) and value in ("true", "false"):
            return value == "true"
        raise ArgumentError(f"{call}: argument '{param.name}' must be true or false, got {_describe(value)}")
    if kind == "choice":
        if isinstance(value, str) and value in param.choices:
            return str(value)
        if isinstance(value, str):
            raise UnknownNameError(f"{call}: {param.name}={value} is not known"
                                   + did_you_mean(value, param.choices), argument=param.name)
        raise ArgumentError(f"{call}: argument '{param.name}' must be one of "
                            f"{', '.join(param.choices)}, got {_describe(value)}")
    if kind == "string":
        if isinstance(value, str) and value:
            try:  # a lone surrogate (from Python) has no UTF-8, so no canonical text to round-trip
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ArgumentError(f"{call}: argument '{param.name}' is not valid Unicode text "
                                    f"(a lone surrogate), got {value!r}") from None
            return str(value)
        raise ArgumentError(f"{call}: argument '{param.name}' must be a name or a quoted string, "
                            f"got {_describe(value)}")
    if kind == "schedule":
        if isinstance(value, Expr):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return const(_number(call, Param(param.name, "number", check=LR), value))
        raise ArgumentError(f"{call}: argument '{param.name}' must be a schedule, got {_describe(value)}")
    if kind == "schedules":
        if len(value) < 2:
            raise ArgumentError(f"{call}: needs at least two schedules or numbers, got {len(value)}")
        return tuple(convert(call, Param(param.name, "schedule"), v) for v in value)
    raise AssertionError(kind)

