"""Text fit for a terminal whatever the input: control characters escaped, long lines cut.

Used by the command (``lrdsl.cli``) and by ``lrdsl check`` (``lrdsl.cli.check``), which the
command imports: kept apart so the two need not import each other.
"""

from __future__ import annotations

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
