"""Text fit for a terminal whatever the input: control characters escaped, long lines cut.

Used by the command (``lrdsl.cli``) and by ``lrdsl check`` (``lrdsl.cli.check``), which the
command imports: kept apart so the two need not import each other.
"""

from __future__ import annotations

import re

from lrdsl.errors import LrdslError


def escaped(text: str) -> str:
    """``text`` with control characters written as escapes (``\\x00``, ``\\t``)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def pointed(error: LrdslError, width: int = 100) -> str:
    """:meth:`LrdslError.pointed` fit for a terminal whatever the input: control characters
    escaped in the message and blanked in the expression line, and that line cut to ``width``
    characters around the caret (a 1 MB expression gives a 100-character excerpt)."""
    message = "\n".join(one_line(escaped(line), 500) for line in error.message.splitlines())
    if error.expr is None or error.column is None:
        return message
    lines = error.expr.splitlines() or [""]
    line = lines[min(max((error.line or 1) - 1, 0), len(lines) - 1)]
    line = "".join(c if c.isprintable() else " " if c == "\t" else "\ufffd" for c in line)
    column = min(max(error.column - 1, 0), len(line))
    start = max(0, min(column - width // 2, len(line) - width))
    shown = line[start:start + width]
    if start:
        shown, column = "…" + shown[1:], column - start
    if start + width < len(line):
        shown = shown[:-1] + "…"
    return f"{message}\n  {shown}\n  {' ' * column}^"


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, shortened to ``limit`` characters (messages may quote huge inputs)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


#: the options the library's messages name, as Python keywords; the CLI names them as flags
_OPTIONS = re.compile(r"\b(steps_per_epoch|samples_per_step|tokens_per_sample|samples_per_epoch|"
                      r"tokens_per_epoch|tokens_per_step)\b(=([0-9][0-9.e+]*)?)?"
                      r"|\btotal=([0-9][0-9.e+]*)?")


def as_flags(message: str) -> str:
    """A library message as a CLI user reads it: ``pass total=`` → ``pass --total``,
    ``steps_per_epoch=1`` → ``--steps-per-epoch 1``, ``tokens_per_epoch`` → ``--tokens-per-epoch``
    (a plain "total" in prose stays a word)."""
    def flag(match: re.Match) -> str:
        name = match.group(1) or "total"
        value = match.group(3) if match.group(1) else match.group(4)
        return "--" + name.replace("_", "-") + (f" {value}" if value else "")
    return _OPTIONS.sub(flag, message)
