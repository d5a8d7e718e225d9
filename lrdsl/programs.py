"""Programs: named channels, each an expression, on one clock (docs/language.md "Programs").

A program is ``name = expression`` lines (or ``;``-separated), ``#`` comments free: ``lr`` and
the optimizer targets of :mod:`lrdsl.channels` are written into the optimizer, every other
name is a free value the user's code reads.  A text without ``=`` is the program
``lr = text``, so every expression is a program.

    >>> import lrdsl
    >>> p = lrdsl.program("lr = warmup(5) >> 0.1; ema = anneal(0.99, 1, 100)")
    >>> print(p)
    lr = warmup(5) >> 0.1
    ema = anneal(0.99,1,100)
    >>> lrdsl.program(str(p)) == p
    True

Where a statement starts: at nesting depth 0 (outside parentheses, brackets, strings and
comments) a name followed by ``=`` can only begin a channel — inside an expression ``=`` is
only ever a keyword argument, which sits inside a call's parentheses — so expressions may
span lines freely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Union

from lrdsl import channels
from lrdsl.errors import LrdslError, misspelling_of
from lrdsl.language.curve import curve as language_curve, tick_array
from lrdsl.language.nodes import Expr, Plateau
from lrdsl.language.notebook import Notebook
from lrdsl.language.parser import parse
from lrdsl.language.plan import Plan, plan

#: a channel name: an identifier, dots allowed (``loss.kl``)
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)[ \t\r\n]*=(?!=)")
_NAME_START = re.compile(r"[A-Za-z_]")


class ProgramError(LrdslError):
    """A program's text or channels are wrong: a missing ``name =``, a name twice, a plateau
    outside ``lr``, a free value named like a misspelt target."""


def _statements(text: str) -> list[tuple[str | None, int, str]]:
    """(name or None, offset of the expression, expression text) per statement."""
    starts: list[tuple[int, int, str]] = []  # (assignment's offset, expression's offset, name)
    cuts: list[int] = []  # offsets of ';' at depth 0
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            end = i + 1
            while end < n and text[end] != c:
                end += 2 if text[end] == "\\" else 1
            i = end + 1
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth = max(depth - 1, 0)
        elif c == ";" and depth == 0:
            cuts.append(i)
        elif depth == 0 and _NAME_START.match(c) and (i == 0 or not (text[i - 1].isalnum() or
                                                                     text[i - 1] in "_.")):
            match = _ASSIGN.match(text, i)
            if match:
                starts.append((i, match.end(), match.group(1)))
                i = match.end()
                continue
            end = i
            while end < n and (text[end].isalnum() or text[end] in "_."):
                end += 1
            i = end
            continue
        i += 1
    if not starts:
        return [(None, 0, text)]
    bounds: list[tuple[int, str, Any]] = sorted(
        [(offset, "name", (expr_at, name)) for offset, expr_at, name in starts]
        + [(cut, "cut", None) for cut in cuts], key=lambda item: item[0])
    out: list[tuple[str | None, int, str]] = []
    head = _blank(text[:bounds[0][0]])
    if not head:
        raise ProgramError(f"a program is 'name = expression' lines; {text[:bounds[0][0]].strip()!r} "
                           f"comes before the first '=' (separate channels with a new line or ';')",
                           expr=text, column=1, line=1)
    for k, (offset, kind, payload) in enumerate(bounds):
        if kind != "name":
            continue
        expr_at, name = payload
        end = bounds[k + 1][0] if k + 1 < len(bounds) else n
        out.append((name, expr_at, text[expr_at:end]))
    for k, (offset, kind, _) in enumerate(bounds):  # text between a ';' and the next name
        if kind == "cut":
            end = bounds[k + 1][0] if k + 1 < len(bounds) else n
            if not _blank(text[offset + 1:end]) and (k + 1 == len(bounds) or bounds[k + 1][1] == "cut"):
                raise ProgramError(f"after ';' a program needs 'name = expression', got "
                                   f"{text[offset + 1:end].strip()!r}", expr=text,
                                   **_place(text, offset + 1))
    return out


def _blank(text: str) -> bool:
    """Whether ``text`` holds nothing but spaces, ';' and comments."""
    return not re.sub(r"#[^\n]*|[\s;]", "", text)


def _place(text: str, offset: int) -> dict:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return {"line": line, "column": column}


@contextmanager
def naming(name: str):
    """Prefix an :class:`LrdslError` raised inside with the channel it concerns (once)."""
    try:
        yield
    except LrdslError as error:
        if not error.message.startswith(f"{name}: "):
            error.message = f"{name}: {error.message}"
            error.args = (error.message,)
        raise


def _parsed(name: str, text: str, expr_at: int, source: str) -> Expr:
    """The channel's expression; an error is placed in the whole program's text."""
    with naming(name):
        try:
            return parse(text)
        except LrdslError as error:
            if error.column is not None and error.expr is not None:
                where = _place(source, expr_at)
                line = error.line or 1
                error.column = error.column + (where["column"] - 1 if line == 1 else 0)
                error.line = line + where["line"] - 1
                error.expr = source
            raise


Channels = Mapping[str, Union[str, Expr]]


def _order(name: str) -> tuple:
    """lr, then the optimizer targets in the channel table's order, then the rest sorted."""
    return (0, channels.TARGETS.index(name), "") if name in channels.CHANNELS else (1, 0, name)


@dataclass(frozen=True)
class Program(Mapping, Notebook):
    """Named channels (name → :class:`~lrdsl.Expr`), in canonical order; immutable, hashable.
    ``p(t)`` is ``{channel: value at t}``, ``p.plot()`` draws a panel per channel, Jupyter
    displays it (:class:`~lrdsl.language.notebook.Notebook`).

    ``str(p)`` is the canonical text (the expression's own when only ``lr`` is given), and
    ``lrdsl.program(str(p)) == p``.
    """

    channels: tuple[tuple[str, Expr], ...]

    def __post_init__(self):
        seen: set[str] = set()
        for name, expr in self.channels:
            channels.channel(name)  # a bad name fails here, naming it
            if name in seen:
                raise ProgramError(f"channel {name!r} is given twice")
            seen.add(name)
            if name != "lr" and isinstance(expr, Plateau):
                raise ProgramError(f"{name}: only lr may carry '| plateau', got {expr}")
            if name not in channels.CHANNELS:
                close = misspelling_of(name, channels.TARGETS)
                if close is not None:
                    raise ProgramError(
                        f"{name!r} looks like the optimizer target {close!r} misspelt; a free "
                        f"value must not be within a letter or two of a target's name (rename it, "
                        f"e.g. {name}_value, if it really is a free value)")
        object.__setattr__(self, "channels", tuple(sorted(self.channels, key=lambda c: _order(c[0]))))

    # --- a read-only mapping --------------------------------------------------------------------
    def __getitem__(self, name: str) -> Expr:
        for key, expr in self.channels:
            if key == name:
                return expr
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.channels)

    def __len__(self) -> int:
        return len(self.channels)

    @property
    def free(self) -> tuple[str, ...]:
        """The free values' names (every channel that is no optimizer target)."""
        return tuple(name for name in self if name not in channels.CHANNELS)

    def __str__(self) -> str:
        if tuple(self) == ("lr",):
            return str(self["lr"])
        return "\n".join(f"{name} = {expr}" for name, expr in self.channels)

    def __repr__(self) -> str:
        return f"lrdsl.program({str(self)!r})"


def program(source: Union[str, Expr, "Program", Channels]) -> Program:
    """A :class:`Program` from its text, an expression (the program ``lr = expr``), or a mapping
    ``{name: expression}``.

    >>> import lrdsl
    >>> lrdsl.program("cosine(0.1, 100)")["lr"]
    lrdsl.parse('cosine(0.1,100)')
    >>> lrdsl.program({"kl": "linear(0, 1, 10)"}).free
    ('kl',)
    """
    if isinstance(source, Program):
        return source
    if isinstance(source, Expr):
        return Program((("lr", source),))
    if isinstance(source, Mapping):
        items = []
        for name, expr in source.items():
            if not isinstance(name, str):
                raise ProgramError(f"a program's channel names are strings, got {name!r}")
            with naming(name):
                items.append((name, parse(expr)))
        return Program(tuple(items))
    if not isinstance(source, str):
        raise ProgramError(f"a program is text, an expression or a mapping of names to expressions, "
                           f"got a {type(source).__name__}")
    statements = _statements(source)
    if statements[0][0] is None:
        return Program((("lr", parse(source)),))
    return Program(tuple((str(name), _parsed(str(name), text, at, source))
                         for name, at, text in statements))


def is_program(source) -> bool:
    """Whether ``source`` is a program rather than one expression: a :class:`Program`, a
    mapping of channels, or text with a ``name =`` statement."""
    if isinstance(source, (Program, Mapping)):
        return True
    return isinstance(source, str) and _statements(source)[0][0] is not None


def curve(source, ticks, **options):
    """The values at each tick: one numpy array for an expression, ``{name: array}`` for a
    program (docs/language.md "Programs"); ``options`` as for
    :func:`lrdsl.language.curve.curve` (``metrics`` drive the plateau of ``lr``).

    >>> import lrdsl
    >>> {k: v.tolist() for k, v in lrdsl.curve("lr = 0.1; kl = linear(0, 1, 2)", 3).items()}
    {'lr': [0.1, 0.1, 0.1], 'kl': [0.0, 0.5, 1.0]}
    """
    if not is_program(source):
        return language_curve(source, ticks, **options)
    units = {k: v for k, v in options.items() if k not in ("metrics", "report_every")}
    positions = tick_array(ticks)  # checked once for every channel
    out = {}
    for name, (channel, planned) in channel_plans(source, **units).items():
        with naming(name):
            if planned.plateau is not None and options.get("metrics"):
                values = language_curve(planned.expr, positions, **options)
            else:
                values = planned.values(positions)
        out[name] = channel.read(values) if channel.integer else values
    return out


def channel_plans(source, **units) -> dict[str, tuple[channels.Channel, Plan]]:
    """Each channel of a program (anything :func:`program` reads) with its plan for ``units``,
    proven in the channel's range (docs/language.md "Programs"); an error names the channel."""
    out = {}
    for name, expr in program(source).items():
        with naming(name):
            channel = channels.channel(name)
            planned = plan(expr, **units)
            channel.check_range(*planned.range, f"{name}: {expr}")
        out[name] = (channel, planned)
    return out
