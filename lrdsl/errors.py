"""The one error family of lrdsl.

Every problem with an expression or its use — syntax, an unknown name, a bad
argument, a missing unit option, a missing metric, a checkpoint of another
expression — is an :class:`LrdslError`, a :class:`ValueError`.  Inner code
raises short facts; the public entry points add the expression as context.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class LrdslError(ValueError):
    """Base class of every error lrdsl raises on bad input.

    ``column`` (1-based) and ``expr`` are set when the error can be placed in
    the expression text; :meth:`pointed` then renders it with a caret.  ``str()`` is
    the one-line message.
    """

    def __init__(self, message: str, *, expr: str | None = None, column: int | None = None,
                 line: int | None = None, argument: str | int | None = None):
        super().__init__(message)
        self.message = message
        self.expr = expr
        self.column = column
        self.line = line
        #: the call's argument at fault (a parameter name, or a positional index): the
        #: parser puts the caret under it
        self.argument = argument

    def pointed(self) -> str:
        """The message followed by the expression line and a caret under the column."""
        if self.expr is None or self.column is None:
            return self.message
        lines = self.expr.splitlines() or [""]
        line = lines[min((self.line or 1) - 1, len(lines) - 1)]
        return f"{self.message}\n  {line}\n  {' ' * (self.column - 1)}^"


class LrdslSyntaxError(LrdslError):
    """The text is not an expression. ``str()`` shows it with a caret under the column.

    Attributes: ``line``, ``column`` (1-based) and ``expected``, a sorted list
    of what the grammar would have accepted there.
    """

    def __init__(self, message: str, *, expr: str, line: int, column: int,
                 expected: Iterable[str] = ()):
        super().__init__(message, expr=expr, line=line, column=column)
        self.expected = sorted(set(expected))

    def __str__(self) -> str:
        return self.pointed()


class UnknownNameError(LrdslError):
    """An unknown primitive, keyword or option value; the message suggests the closest."""


class ArgumentError(LrdslError):
    """A call got a wrong number, type or value of arguments, or a misplaced schedule."""


class UnitError(LrdslError):
    """A duration unit cannot be converted without ``steps_per_epoch`` or ``total``."""


class MetricError(LrdslError):
    """A plateau report lacks its monitored metric, or a state does not fit."""


#: how close (difflib's ratio) a name must be to a known one to be taken for its misspelling
#: rather than a name of its own: ``exrp`` is 0.75 from ``expr``, ``momentun`` 0.875 from ``momentum``
MISSPELT = 0.75


def misspelling_of(word: str, names: Iterable[str]) -> str | None:
    """The known name ``word`` looks like a misspelling of (ratio ≥ :data:`MISSPELT`), or None."""
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=MISSPELT)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` for the closest choice, or a list of the valid ones."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; expected one of {', '.join(choices)}"
