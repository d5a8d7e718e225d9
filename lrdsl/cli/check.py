"""``lrdsl check``: find schedule expressions in YAML files, plan them, report the bad ones.

An expression is the scalar value of a key named ``expr``, ``schedule``, ``momentum``, ``beta2`` or
``weight_decay`` (Hydra configs
included); Hydra ``defaults`` lists, Hydra's own ``hydra:`` settings (sweep lists) and
``${...}`` interpolations are not expressions.

Each expression is parsed *and planned* (``lrdsl.plan(expr, steps_per_epoch=, total=)``), so
unit, range and composition errors are found as well as syntax errors.  Without ``total`` an
expression with ``%`` durations cannot be planned for real; it is planned against
:data:`PLACEHOLDER_TOTAL` so that its other errors still show.  With ``total``, a bounded
schedule that ends before 90 % of the run, or after it, gets a warning (not a failure).

Files are read defensively, since ``lrdsl check`` runs over whatever a pre-commit hook or a
directory walk hands it: more than :data:`MAX_BYTES`, binary, non-UTF-8, unreadable or special
files are refused with one line each.  The YAML is never composed into a node graph: its event
stream is walked with a stack, so aliases are not expanded (a "billion laughs" document or a
recursive anchor costs what its text costs) and nesting deeper than :data:`MAX_DEPTH` stops the
walk early (PyYAML's and libyaml's parsers slow down quadratically with flow nesting, and the
C composer overflows the C stack on it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lrdsl import channels
from lrdsl.cli.terminal import as_flags, escaped, pointed
from lrdsl.errors import LrdslError, UnitError
from lrdsl.language.plan import plan
from lrdsl.language.units import format_number
from lrdsl.programs import is_program, program

#: keys whose scalar values are expressions: the LR, the targets and the free values lrdsl knows
#: (docs/language.md "Targets and channels", "Programs") (ema, dropout, batch_size, seq_len); under a
#: ``schedule:`` mapping every string-valued key but ``unit`` and ``_…`` is a channel (a program)
KEYS = ("expr", "schedule", *channels.CONFIG_KEYS[1:], *(c.config_key for c in channels.FREE.values()))
#: keys of a schedule mapping that are settings, not channels
NOT_CHANNELS = ("unit", "clock")
SKIPPED_KEYS = ("defaults", "hydra")
#: keys that hold one expression, never a list or mapping (``schedule:`` may be a mapping: a
#: Hydra schedule config holding expr, momentum, …)
SCALAR_KEYS = channels.CONFIG_KEYS
SUFFIXES = (".yaml", ".yml")
#: bigger files are refused unread: configs are kilobytes, and the YAML parser is pure Python
#: where libyaml is missing (~10 s per MB)
MAX_BYTES = 5 * 2 ** 20
#: collections nested deeper than this are refused (Hydra configs nest a handful of levels)
MAX_DEPTH = 100
#: the run length, in ticks, against which ``%`` durations are planned when no total is given
PLACEHOLDER_TOTAL = 100.0
#: a schedule ending before this share of ``total`` gets a warning
EARLY_END = 0.9


@dataclass(frozen=True)
class Problem:
    """One finding: ``line`` 0 when it concerns the whole file; a warning does not fail the check."""

    path: Path
    line: int
    message: str
    pointer: str = ""  # the expression line and a caret, or ""
    warning: bool = False

    def __str__(self) -> str:
        where = escaped(str(self.path)) + (f":{self.line}" if self.line else "")
        head = f"{where}: {'warning: ' if self.warning else ''}{self.message}"
        return f"{head}\n{self.pointer}" if self.pointer else head


def yaml_files(paths) -> Iterator[Path | Problem]:
    """The files named, and the ``.yaml``/``.yml`` files under the directories named (sorted,
    symlinked directories not followed); a :class:`Problem` for a directory that cannot be
    listed, or one without any such file."""
    for path in map(Path, paths):
        if not os.path.isdir(path):  # unlike Path.is_dir, False for a name too long or with a NUL
            yield path
            continue
        found, unlisted = False, []  # type: bool, list[OSError]
        for root, dirs, files in os.walk(path, onerror=unlisted.append):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(SUFFIXES):
                    found = True
                    yield Path(root, name)
        for error in unlisted:  # os.walk reports them through onerror, not as exceptions
            yield Problem(Path(error.filename or path), 0, f"cannot list: {error.strerror or error}")
        if not found and not unlisted:
            yield Problem(path, 0, f"no {' or '.join(SUFFIXES)} files in this directory")


def read_text(path: Path) -> str | Problem:
    """The file's text, or why it is not checked: never reads more than MAX_BYTES + 1 bytes
    and never opens what is not a regular file (a FIFO would block, /dev/zero never ends)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return Problem(path, 0, "not a regular file")
        if info.st_size > MAX_BYTES:
            return Problem(path, 0, f"too large to check ({info.st_size / 2 ** 20:.1f} MiB > "
                                    f"{MAX_BYTES / 2 ** 20:g} MiB)")
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except (OSError, ValueError) as error:  # ValueError: a NUL or a lone surrogate in the name
        return Problem(path, 0, f"cannot read: {getattr(error, 'strerror', None) or error}")
    if len(data) > MAX_BYTES:  # grew since stat, or a file that reports size 0
        return Problem(path, 0, f"too large to check (> {MAX_BYTES / 2 ** 20:g} MiB)")
    if b"\0" in data:
        return Problem(path, 0, f"binary file (NUL byte at offset {data.index(0)}), not YAML")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return Problem(path, 0, f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})")


class _TooDeep(Exception):
    def __init__(self, line: int):
        self.line = line


def expressions(text: str) -> Iterator[tuple[str | None, int, str | None, str]]:
    """``(value, line, style, key)`` of each string scalar under an expression key, in file order.

    ``line`` is 0-based, of the scalar's first character; ``style`` is YAML's (``|``, ``>``,
    quotes or None).  A list or mapping under a :data:`SCALAR_KEYS` key (``momentum: [0.9,
    0.8]``) is yielded with ``value`` None and ``style`` ``"list"`` or ``"mapping"``.  An alias used as an expression stands for its anchored scalar; an alias
    elsewhere is not followed (what it names was walked where it was defined).  Raises
    ``yaml.YAMLError`` for text that is not YAML and ``_TooDeep`` past MAX_DEPTH.
    """
    import yaml
    from yaml import events

    loader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    resolver = yaml.resolver.Resolver()
    anchored: dict[str, events.ScalarEvent] = {}
    # one frame per open collection: [is a mapping, next node is a key, last key, skipped,
    # a schedule mapping (its keys are channels)]
    stack: list[list] = []
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, events.DocumentStartEvent):
            anchored.clear()  # anchors are per document
            continue
        if isinstance(event, events.CollectionEndEvent):
            stack.pop()
            continue
        if not isinstance(event, events.NodeEvent):
            continue
        if isinstance(event, events.ScalarEvent) and event.anchor:
            anchored[event.anchor] = event
        parent = stack[-1] if stack else None
        if parent is not None and parent[0] and parent[1]:  # a mapping key
            parent[1] = False
            parent[2] = event.value if isinstance(event, events.ScalarEvent) else None
            skipped = True  # a complex key holds no expression
        else:
            if parent is not None and parent[0]:
                parent[1] = True
            under_key = parent is not None and parent[0] and (parent[2] in KEYS or parent[4] and (
                isinstance(parent[2], str) and parent[2] not in NOT_CHANNELS and not parent[2].startswith("_")))
            skipped = parent is not None and (parent[3] or parent[0] and parent[2] in SKIPPED_KEYS)
            scalar = anchored.get(event.anchor) if isinstance(event, events.AliasEvent) else event
            if parent is not None and under_key and not skipped and isinstance(scalar, events.ScalarEvent):
                tag = scalar.tag if scalar.tag not in (None, "!") else \
                    resolver.resolve(yaml.ScalarNode, scalar.value, scalar.implicit)
                if tag == "tag:yaml.org,2002:str" and "${" not in scalar.value:
                    yield scalar.value, scalar.start_mark.line, scalar.style, parent[2]
            if parent is not None and under_key and not skipped and parent[2] in SCALAR_KEYS \
                    and isinstance(event, events.CollectionStartEvent):
                kind = "list" if isinstance(event, events.SequenceStartEvent) else "mapping"
                yield None, event.start_mark.line, kind, parent[2]
        if isinstance(event, events.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise _TooDeep(event.start_mark.line)
            channels_here = parent is not None and parent[0] and parent[2] == "schedule" \
                and isinstance(event, events.MappingStartEvent)
            stack.append([isinstance(event, events.MappingStartEvent), True, None, skipped, channels_here])


def _excerpt(text: str, width: int = 100) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = "".join(c if c.isprintable() else " " for c in line)
    return "  " + (line if len(line) <= width else line[:width - 1] + "…")


def check_expression(text: str, *, steps_per_epoch: float | None = None, total: float | None = None,
                     target: str | None = None) -> tuple[LrdslError | None, str | None]:
    """(the error planning ``text`` raises, or None; a warning about its length, or None).

    ``target`` is the key the expression stands under: momentum and beta2 must stay below 1.
    """
    try:
        try:
            if is_program(text):  # every channel of a program, each in its own range
                for name, expr in program(text).items():
                    _planned(expr, name, steps_per_epoch, total)
                return None, None
            compiled = _planned(text, _channel_of(target), steps_per_epoch, total)
        except UnitError:
            if total is not None:
                raise
            # % cannot be planned without the run's length: a placeholder still finds the rest
            if is_program(text):
                for name, expr in program(text).items():
                    _planned(expr, name, steps_per_epoch, PLACEHOLDER_TOTAL)
            else:
                plan(text, steps_per_epoch=steps_per_epoch, total=PLACEHOLDER_TOTAL)
            return None, None
    except LrdslError as error:
        return error, None
    except RecursionError:
        return LrdslError("too deeply nested to check"), None
    except Exception as error:  # a bug in lrdsl, reported here so the other files still get checked
        return LrdslError(f"internal error: {type(error).__name__}: {' '.join(str(error).split())[:300]} "
                          "(please report it)"), None
    end = compiled.duration
    if total is None or end == float("inf"):
        return None, None
    if end < EARLY_END * total:
        return None, f"the schedule ends at tick {format_number(end)} of {format_number(total)} " \
                     f"(before {EARLY_END:.0%} of --total)"
    if end > total:
        return None, f"the schedule ends at tick {format_number(end)} of {format_number(total)} " \
                     f"(after --total)"
    return None, None


def _channel_of(key: str | None) -> str | None:
    """The channel a config key's expression drives (``expr``/``schedule``: the LR)."""
    if key is None or key in ("expr", "schedule"):
        return None
    found = channels.of_config_key(key)
    return found.name if found is not None else key


def _planned(text, name: str | None, steps_per_epoch, total):
    """The plan of one channel's expression, proven in the channel's range."""
    compiled = plan(text, steps_per_epoch=steps_per_epoch, total=total)
    if name is not None:
        try:
            channel = channels.channel(name)
        except LrdslError:
            return compiled  # a key that is no channel name: its expression is checked alone
        low, high = compiled.range
        if channel.below is not None and high >= channel.below:
            raise LrdslError(f"{name}: {compiled.expr} reaches {format_number(high)}; "
                             f"a {name} must stay below {format_number(channel.below)}")
        channel.check_range(low, high, f"{name}: {compiled.expr}")
    return compiled


def check_file(path: Path, *, steps_per_epoch: float | None = None,
               total: float | None = None) -> tuple[int, list[Problem]]:
    """(number of expressions found, problems and warnings), the whole file at most one line
    when it cannot be read or walked; expressions before a YAML error are still checked."""
    import yaml

    text = read_text(path)
    if isinstance(text, Problem):
        return 0, [text]
    found, problems = 0, []
    try:
        for value, line, style, key in expressions(text):
            found += 1
            if value is None:
                problems.append(Problem(path, line + 1, f"{key}: a {style}, not an expression (give one "
                                                        f"expression per key, e.g. {key}: \"cosine(0.9, 100%)\")"))
                continue
            first = line + 1 + (1 if style in ("|", ">") else 0)
            error, warning = check_expression(value, steps_per_epoch=steps_per_epoch, total=total,
                                              target=key)
            if error is not None:
                error.message = as_flags(error.message)  # check's options are flags too
                message, _, pointer = pointed(error).partition("\n")
                # error.line counts lines of the text as written (a plan error's is 1: it
                # points into the one-line canonical form)
                problems.append(Problem(path, first + (error.line or 1) - 1, message,
                                        pointer or _excerpt(value)))
            elif warning is not None:
                problems.append(Problem(path, first, warning, warning=True))
    except _TooDeep as error:
        problems.append(Problem(path, error.line + 1, f"not checked: nested deeper than {MAX_DEPTH} levels"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        if "maximum nesting depth" in str(error.problem):
            # libyaml (PyYAML >= 6.0.2's wheels) has a nesting limit of its own, and its scanner
            # reads ahead of the events this walk counts: the same finding as _TooDeep
            problems.append(Problem(path, mark.line + 1 if mark else 0,
                                    f"not checked: nested deeper than {MAX_DEPTH} levels"))
            return found, problems
        context = f" ({error.context})" if error.context else ""
        problems.append(Problem(path, mark.line + 1 if mark else 0,
                                f"not YAML: {' '.join(str(error.problem).split())}{context}"))
    except yaml.YAMLError as error:
        problems.append(Problem(path, 0, f"not YAML: {' '.join(str(error).split())}"))
    return found, problems
