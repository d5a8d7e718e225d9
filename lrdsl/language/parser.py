"""Text -> AST.  The only module that touches Lark; no Lark type leaves it.

The grammar is ``grammar/lrdsl.lark`` (shipped inside the wheel as
``lrdsl/grammar/lrdsl.lark``).  The LALR parser is built once, lazily, and
runs the transformer inline, so no parse tree is built and nesting costs no
Python recursion.  Lark's exceptions become :class:`LrdslError`: syntax errors
with a caret under the column and, for common mistakes, a hint (Lark's
``match_examples`` against the bad examples in :data:`HINTS`); argument errors
with the caret under the argument at fault.
"""

from __future__ import annotations

import ast as python_ast
import difflib
import functools
import re
from pathlib import Path

from lrdsl.language.catalogue import PRIMITIVES
from lrdsl.language.params import Name
from lrdsl.errors import ArgumentError, LrdslError, LrdslSyntaxError, UnknownNameError, did_you_mean
from lrdsl.language.nodes import (Call, Difference, Expr, Plateau, Product, Quotient, Sequence, Slice, Sum,
                                  as_schedule, check_operand)
from lrdsl.language.units import UNIT_SPELLINGS, Duration, parse_duration

#: deeper nesting than this is refused (no real schedule comes close)
MAX_DEPTH = 64

#: how grammar terminals read in "expected ..." messages
_TERMINAL_WORDS = {
    "NUMBER": "a number", "DURATION": "a duration like 5ep", "NAME": "a name",
    "STRING": "a quoted string", "_LPAR": "'('", "_RPAR": "')'", "_LSQB": "'['",
    "_RSQB": "']'", "_COMMA": "','", "_EQUAL": "'='", "_THEN": "'>>'", "_TIMES": "'*'", "_SLASH": "'/'",
    "_PLUS": "'+'", "_MINUS": "'-'", "_COLON": "':'", "_PIPE": "'|'", "$END": "end of expression",
}

#: common mistakes, as examples that fail in the same parser state (Lark's match_examples)
HINTS = {
    "unit": ["cosine(0.1, 5eps)", "warmup(3epocs) >> 0.1", "cosine(0.1, 100)[5eps:]"],
    "comma": ["cosine(0.1 100)", "cosine(0.1, 100 min=0.1)"],
    "operator": ["warmup(5) cosine(0.1, 100)", "0.1 cosine(0.1, 100)", "(0.1) 0.2"],
    "unclosed": ["cosine(0.1, 100", "warmup(5) >> cosine(0.1", "repeat(cosine(0.1, 10)",
                 "cosine(0.1, 100, min=0", "multistep(0.1, [30, 60)"],
    "pipe": ["cosine(0.1, 100) | 0.5", "0.1 | (plateau(loss))", "0.1 | [1]"],
    "program": ["lr = 0.1", "ema = anneal(0.99, 1, 100)"],
}

_HINT_WORDS = {
    "comma": "a ',' is missing between two arguments",
    "operator": "two schedules side by side: join them with '>>' (one after the other) or an "
                "operator (+ - * /)",
    "unclosed": "a '(' or '[' is not closed",
    "pipe": "only plateau(...) may follow '|'",
    "program": "'name = expression' is a program, not one expression: read it with "
               "lrdsl.program(text) (the CLI and the backends take programs)",
}


def grammar_path() -> Path:
    """The grammar file: inside the installed package, else in the source tree's grammar/."""
    here = Path(__file__).resolve().parent.parent  # lrdsl/, above lrdsl/language/
    for candidate in (here / "grammar" / "lrdsl.lark", here.parent / "grammar" / "lrdsl.lark"):
        if candidate.is_file():
            return candidate
    raise LrdslError(f"lrdsl's grammar file is missing (looked in {here / 'grammar'} "
                     f"and {here.parent / 'grammar'}); reinstall lrdsl")


class _Divisor:
    """What follows a '/' in a run of factors (the grammar's ``divisor``)."""

    __slots__ = ("schedule",)

    def __init__(self, schedule):
        self.schedule = schedule


class _Keyword:
    __slots__ = ("name", "value")

    def __init__(self, name, value):
        self.name, self.value = name, value


def _finite(value: float, token) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        text = str(token) if len(token) <= 24 else f"{str(token)[:20]}…"
        raise ArgumentError(f"the number {text} is beyond float range", line=token.line,
                            column=token.column)
    return value




def _chained(node: Expr) -> Expr:
    """The node, or an error where a run of left-associative operators nests it deeper than
    MAX_DEPTH (``a - b + c - d …``, ``a / b / c …``: each operator holds the one before), as
    parentheses would: the AST's text, equality and plan recurse down that spine."""
    depth, inner = 0, node
    while isinstance(inner, (Sum, Difference, Product, Quotient)):
        depth += 1
        if depth > MAX_DEPTH:
            raise LrdslError(f"the expression nests deeper than {MAX_DEPTH} levels (a run of "
                             f"'-' or '/' without parentheses)")
        inner = inner.children()[0]
    return node


def _build_transformer():
    from lark import Transformer, v_args

    @v_args(inline=True)
    class ToAst(Transformer):
        """Lark callbacks, run inline by the LALR parser, bottom-up."""

        def number(self, token):
            return _finite(float(token), token)

        def duration(self, token):
            duration = parse_duration(str(token))
            _finite(duration.value, token)
            return duration

        def name(self, token):
            return Name(token)

        def string(self, token):
            try:
                return python_ast.literal_eval(str(token))
            except (ValueError, SyntaxError):
                raise ArgumentError(f"bad escape in the string {token}", column=token.column,
                                    line=token.line) from None

        def list(self, *items):
            return [item for item in items if item is not None]

        def keyword(self, name, value):
            return _Keyword(str(name), value)

        def call(self, name, *args):
            try:
                return _call(str(name), [a for a in args if a is not None])
            except LrdslError as error:
                if error.column is None:
                    error.line, error.column = name.line, name.column
                    error.site = (name.start_pos, str(name))  # for the argument's caret
                raise

        def seq(self, *parts):
            return Sequence(parts)

        def divisor(self, schedule):
            return _Divisor(schedule)

        def prod(self, first, *rest):
            """``a * b / c * d``: left to right, ((a * b) / c) * d; a run of '*' is one Product."""
            factors = [first]
            for item in rest:
                if isinstance(item, _Divisor):
                    dividend = factors[0] if len(factors) == 1 else Product(tuple(factors))
                    factors = [_chained(Quotient(dividend, item.schedule))]
                else:
                    factors.append(item)
            return factors[0] if len(factors) == 1 else Product(tuple(factors))

        def add(self, a, b):
            return _chained(Sum((a, b)))

        def subtract(self, a, b):
            return _chained(Difference(a, b))

        def slice(self, schedule, start, end):
            return Slice(schedule, start, end)

        def plateau(self, schedule, options):
            return Plateau(schedule, options)

    return ToAst()


def _call(name: str, args: list) -> Expr:
    positional: list = []
    keywords: list[tuple[str, object]] = []
    for arg in args:
        if isinstance(arg, _Keyword):
            keywords.append((arg.name, arg.value))
        elif keywords:
            raise ArgumentError(f"{name}: a positional argument follows a keyword argument",
                                argument=len(positional))
        else:
            positional.append(arg)
    if name not in PRIMITIVES:
        raise UnknownNameError(f"unknown schedule '{name}'" + did_you_mean(name, PRIMITIVES))
    primitive = PRIMITIVES[name]
    values = primitive.bind(positional, keywords)
    return primitive.build(values) if primitive.build is not None else Call.checked(name, values)


@functools.cache
def _lark():
    from lark import Lark
    # cache=True keeps the compiled LALR tables in the temp dir, keyed by the grammar's hash:
    # a CLI call then builds the parser in ~3 ms instead of ~40 ms
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr",
                transformer=_build_transformer(), maybe_placeholders=True, cache=True)


def _nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    return deepest


def _position(text: str, offset: int) -> tuple[int, int]:
    """(line, column), 1-based, of a character offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _arguments(text: str, open_paren: int) -> list[tuple[int, str | None]]:
    """(offset, keyword or None) of each top-level argument of the call opened at ``open_paren``."""
    found, depth, i = [], 0, open_paren + 1
    start = None
    while i < len(text):
        char = text[i]
        if start is None and not char.isspace():
            start = i
            keyword = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", text[i:])
            found.append((i, keyword.group(1) if keyword else None))
        if char in "\"'":
            close = text.find(char, i + 1)
            i = len(text) if close < 0 else close
        elif char == "#":
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                break
        elif char == "," and depth == 0:
            start = None
        i += 1
    return found


def _point_at_argument(text: str, error: LrdslError) -> None:
    """Move the caret from the call's name to the argument the error is about."""
    site = getattr(error, "site", None)
    if site is None or error.argument is None:
        return
    offset, name = site
    open_paren = text.find("(", offset)
    if open_paren < 0:
        return
    arguments = _arguments(text, open_paren)
    target = error.argument
    if isinstance(target, str):
        keyword = [at for at, key in arguments if key == target]
        if keyword:
            error.line, error.column = _position(text, keyword[0])
            return
        params = [p.name for p in PRIMITIVES[name].params] if name in PRIMITIVES else []
        if target not in params:
            return
        target = params.index(target)
    positional = [at for at, key in arguments if key is None]
    if 0 <= target < len(positional):
        error.line, error.column = _position(text, positional[target])


def _hint(text: str, error) -> str:
    """A few words for a common mistake, or ''."""
    from lark.exceptions import UnexpectedInput

    try:
        # use_accepts=False: with it, Lark 1.2's debug log of a near miss raises TypeError
        label = error.match_examples(_lark().parse, HINTS, token_type_match_fallback=True,
                                     use_accepts=False)
    except (UnexpectedInput, LrdslError, RecursionError):
        return ""
    token = getattr(error, "token", None)
    if label == "unit":  # a name right after a number: a misspelt unit, or a missing ','
        if token is None or token.type != "NAME":
            return ""
        word = str(token)
        close = difflib.get_close_matches(word, [u for u in UNIT_SPELLINGS if u], n=1, cutoff=0.5)
        if not close:
            return _HINT_WORDS["comma"]
        return (f"'{word}' is not a unit — did you mean '{close[0]}'? Durations are written "
                f"5ep, 5 epochs, 500st, 10%")
    return _HINT_WORDS.get(label, "")


def _syntax_error(text: str, error) -> LrdslSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    expected: set[str]
    if isinstance(error, UnexpectedCharacters):
        expected = set(error.allowed or ())
        line, column = error.line, error.column
        found = f"'{text[error.pos_in_stream or 0]}'"
    else:
        expected = set(error.expected) if isinstance(error, (UnexpectedToken, UnexpectedEOF)) else set()
        token = getattr(error, "token", None)
        at_end = isinstance(error, UnexpectedEOF) or token is None or token.type == "$END"
        if at_end or token is None:
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            found = "end of expression"
        else:
            line, column = token.line, token.column
            found = f"'{token}'"
    words = sorted({_TERMINAL_WORDS.get(t, t) for t in expected})
    message = f"syntax error at line {line}, column {column}: unexpected {found}"
    hint = _hint(text, error) if not isinstance(error, UnexpectedCharacters) else ""
    if hint:
        message += f" — {hint}"
    elif words:
        message += f"; expected {' or '.join(words)}"
    return LrdslSyntaxError(message, expr=text, line=line, column=column, expected=words)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Expr:
    from lark.exceptions import UnexpectedInput, VisitError

    if (text.count("(") + text.count("[") > MAX_DEPTH) and _nesting(text) > MAX_DEPTH:
        raise LrdslError(f"the expression nests deeper than {MAX_DEPTH} levels", expr=text)
    try:
        result = _lark().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    except VisitError as error:  # a callback's error, wrapped by Lark
        inner = error.orig_exc
        if isinstance(inner, LrdslError):
            inner.expr = text
            _point_at_argument(text, inner)
            raise inner.with_traceback(None) from None
        raise LrdslError(f"cannot read the expression: {inner}", expr=text) from None
    except LrdslError as error:
        error.expr = text
        _point_at_argument(text, error)
        raise error.with_traceback(None) from None
    result = as_schedule(result)  # the node constructors make constants of numbers; a bare one here
    return result if isinstance(result, Plateau) else check_operand(result, "alone")


def parse(text: str | Expr) -> Expr:
    """Parse an expression into its AST (cached on the text).  An ``Expr`` is returned as is.

    >>> str(parse("warmup(5) >> cosine(0.1, 100, min=0) | plateau(val_loss, 0.5)"))
    'warmup(5) >> cosine(0.1,100) | plateau(val_loss,factor=0.5)'
    >>> str(parse("warmup(1%) >> 3e-4 >> cooldown(20%, power=0.5)"))
    'warmup(1%) >> 0.0003 >> cooldown(20%,power=0.5)'
    """
    if isinstance(text, Expr):
        return text
    if not isinstance(text, str):
        raise LrdslError(f"expected an expression as text, got {type(text).__name__}")
    try:
        return _parse_text(text)
    except LrdslError as error:
        error.expr = text
        raise
