"""Text -> AST.  The only module that touches Lark; no Lark type leaves it.

The grammar is ``grammar/lrdsl.lark`` (shipped inside the wheel as
``lrdsl/grammar/lrdsl.lark``).  The LALR parser is built once, lazily, and
runs the transformer inline, so no parse tree is built and nesting costs no
Python recursion.  Lark's exceptions become :class:`LrdslError`.
"""

from __future__ import annotations

import ast as python_ast
import functools
from pathlib import Path

from lrdsl.catalogue import PRIMITIVES, Name
from lrdsl.errors import ArgumentError, LrdslError, LrdslSyntaxError, UnknownNameError, did_you_mean
from lrdsl.nodes import Call, Expr, Plateau, Product, Repeat, Sequence, _check_time_schedule, const
from lrdsl.units import UNIT_SPELLINGS, Duration

#: deeper nesting than this is refused (no real schedule comes close)
MAX_DEPTH = 64

#: how grammar terminals read in "expected ..." messages
_TERMINAL_WORDS = {
    "NUMBER": "a number", "DURATION": "a duration like 5ep", "NAME": "a name",
    "STRING": "a quoted string", "_LPAR": "'('", "_RPAR": "')'", "_LSQB": "'['",
    "_RSQB": "']'", "_COMMA": "','", "_EQUAL": "'='", "_THEN": "'>>'", "_TIMES": "'*'",
    "_PIPE": "'|'", "$END": "end of expression",
}


def grammar_path() -> Path:
    """The grammar file: inside the installed package, else in the source tree's grammar/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / "lrdsl.lark", here.parent / "grammar" / "lrdsl.lark"):
        if candidate.is_file():
            return candidate
    raise LrdslError(f"lrdsl's grammar file is missing (looked in {here / 'grammar'} "
                     f"and {here.parent / 'grammar'}); reinstall lrdsl")


class _Keyword:
    __slots__ = ("name", "value")

    def __init__(self, name, value):
        self.name, self.value = name, value


def _schedule(value, where: str) -> Expr:
    """A value in schedule position: a number is a constant; warm-ups and plateaus are checked."""
    node = const(value) if isinstance(value, float) else value
    _check_time_schedule(node, where)
    return node


def _build_transformer():
    from lark import Transformer, v_args

    @v_args(inline=True)
    class ToAst(Transformer):
        """Lark callbacks, run inline by the LALR parser, bottom-up."""

        def number(self, token):
            return float(token)

        def duration(self, token):
            text = str(token)
            cut = len(text.rstrip("%abcdefghijklmnopqrstuvwxyz"))
            return Duration(float(text[:cut]), UNIT_SPELLINGS[text[cut:]])

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
                raise

        def seq(self, *parts):
            return Sequence(tuple(parts))

        def prod(self, *factors):
            return Product(tuple(factors))

        def plateau(self, schedule, options):
            return Plateau(schedule, options)

    return ToAst()


def _call(name: str, args: list) -> Expr:
    positional, keywords = [], []
    for arg in args:
        if isinstance(arg, _Keyword):
            keywords.append((arg.name, arg.value))
        elif keywords:
            raise ArgumentError(f"{name}: a positional argument follows a keyword argument")
        else:
            positional.append(arg)
    if name not in PRIMITIVES:
        raise UnknownNameError(f"unknown schedule '{name}'" + did_you_mean(name, PRIMITIVES))
    values = PRIMITIVES[name].bind(positional, keywords)
    if name == "repeat":
        return Repeat(*values)
    return Call(name, values)


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


def _syntax_error(text: str, error) -> LrdslSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(error, UnexpectedCharacters):
        expected = error.allowed or set()
        line, column = error.line, error.column
        found = f"'{text[error.pos_in_stream]}'"
    else:
        expected = error.expected if isinstance(error, (UnexpectedToken, UnexpectedEOF)) else set()
        token = getattr(error, "token", None)
        at_end = isinstance(error, UnexpectedEOF) or token is None or token.type == "$END"
        if at_end:
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            found = "end of expression"
        else:
            line, column = token.line, token.column
            found = f"'{token}'"
    words = sorted({_TERMINAL_WORDS.get(t, t) for t in expected})
    hint = f"; expected {' or '.join(words)}" if words else ""
    return LrdslSyntaxError(f"syntax error at line {line}, column {column}: unexpected {found}{hint}",
                            expr=text, line=line, column=column, expected=words)


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
            raise inner from None
        raise LrdslError(f"cannot read the expression: {inner}", expr=text) from None
    except LrdslError as error:
        error.expr = text
        raise error.with_traceback(None) from None
    return result if isinstance(result, Plateau) else _schedule(result, "alone")


def parse(text: str | Expr) -> Expr:
    """Parse an expression into its AST (cached on the text).  An ``Expr`` is returned as is.

    >>> str(parse("warmup(5) >> cosine(0.1, 100, min=0) | plateau(val_loss, 0.5)"))
    'warmup(5) >> cosine(0.1,100) | plateau(val_loss,factor=0.5)'
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
