"""``lrdsl check``: find schedule expressions in YAML files, plan them, report the bad ones.

An expression is the scalar value of a key named ``expr``, ``schedule``, ``momentum``, ``beta2`` or
``weight_decay`` (Hydra configs
included); Hydra ``defaults`` lists, Hydra's own ``hydra:`` settings (sweep lists) and
``${...}`` interpolations are not expressions.

Each expression is parsed *and planned* (``lrdsl.plan(expr, steps_per_epoch=, total=)``), so
unit, range and composition errors are found as well as syntax errors; the unit keys of its own
mapping (:data:`UNIT_KEYS`: ``steps_per_epoch: 8`` beside ``expr:``) come before the flags.  A
key within a letter or two of an expression key, whose value parses as an expression, is
reported as misspelt (``exrp`` — did you mean ``expr``?): nothing would check or use it.
Without ``total`` an expression with ``%`` durations cannot be planned for real; it is planned
against :data:`PLACEHOLDER_TOTAL` so that its other errors still show.  With ``total``, a bounded
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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

from lrdsl import channels
from lrdsl.cli.terminal import as_flags, escaped, pointed
from lrdsl.errors import LrdslError, UnitError, misspelling_of
from lrdsl.language.plan import plan
from lrdsl.language.units import CONSTANTS, format_number
from lrdsl.programs import is_program, program

#: keys whose scalar values are expressions: the LR, the targets and the free values lrdsl knows
#: (docs/language.md "Targets and channels", "Programs") (ema, dropout, batch_size, seq_len); under a
#: ``schedule:`` mapping every string-valued key but ``unit`` and ``_…`` is a channel (a program)
KEYS = ("expr", "schedule", *channels.CONFIG_KEYS[1:], *(c.config_key for c in channels.FREE.values()))
#: keys whose values are the units of the expressions in the same mapping (as the flags are for
#: the whole file): ``steps_per_epoch: 8`` beside ``expr:`` plans that expr with 8 steps an epoch
UNIT_KEYS = ("steps_per_epoch", "total", "clock", *CONSTANTS)
#: keys of a schedule mapping that are settings, not channels
NOT_CHANNELS = ("unit", *UNIT_KEYS)
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


class Found(NamedTuple):
    """A string under an expression key (or a list or mapping where one belongs), or a key that
    looks like an expression key misspelt (``close``: the key it looks like)."""

    value: str | None
    line: int  # 0-based, of the scalar's first character
    style: str | None  # YAML's (|, >, quotes or None), or "list" / "mapping"
    key: str
    units: dict  # the unit keys beside it in its mapping (UNIT_KEYS)
    close: str | None = None


@dataclass
class _Frame:
    """An open collection of the walk."""

    mapping: bool
    skipped: bool  # inside defaults: or hydra:
    channels: bool  # a schedule: mapping, whose keys are channels
    at_key: bool = True  # the next node is a key
    key: object = None  # the last key read
    units: dict = field(default_factory=dict)
    pending: list = field(default_factory=list)  # Found, given their units at the mapping's end

    def found(self) -> Iterator[Found]:
        for item in self.pending:
            yield item._replace(units=dict(self.units))
        self.pending.clear()


def _unit_value(key: str, scalar, tag: str):
    """A unit key's value: a number for a count, the clock's name for ``clock``; None for an
    interpolation or anything else (not a unit the check can use)."""
    if key == "clock":
        return scalar.value if tag == "tag:yaml.org,2002:str" and "${" not in scalar.value else None
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        try:
            return float(scalar.value.replace("_", ""))
        except ValueError:  # .inf, 0x1f: left for plan to refuse as given
            return None
    return None


def _misspelt(key: object, value: str) -> str | None:
    """The expression key ``key`` is probably a misspelling of, when its value parses as an
    expression (so ``beta1: 0.9`` or ``scheduler: cosine`` are left alone)."""
    if not isinstance(key, str) or key in KEYS:
        return None
    close = misspelling_of(key, KEYS)  # as near as lrdsl.errors.MISSPELT, and it parses
    if close is None:
        return None
    try:
        program(value)
    except (LrdslError, RecursionError):
        return None
    return close


def expressions(text: str) -> Iterator[Found]:
    """Each string scalar under an expression key, with the unit keys of its mapping, and each
    key that looks like an expression key misspelt; a mapping's items come at its end (its unit
    keys may follow the expression), so not quite in file order.

    A list or mapping under a :data:`SCALAR_KEYS` key (``momentum: [0.9, 0.8]``) is found with
    ``value`` None and ``style`` ``"list"`` or ``"mapping"``.  An alias used as an expression
    stands for its anchored scalar; an alias elsewhere is not followed (what it names was
    walked where it was defined).  Raises ``yaml.YAMLError`` for text that is not YAML and
    ``_TooDeep`` past MAX_DEPTH, after the items of the collections still open.
    """
    import yaml
    from yaml import events

    loader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    resolver = yaml.resolver.Resolver()
    anchored: dict[str, events.ScalarEvent] = {}
    stack: list[_Frame] = []
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, events.DocumentStartEvent):
                anchored.clear()  # anchors are per document
                continue
            if isinstance(event, events.CollectionEndEvent):
                yield from stack.pop().found()
                continue
            if not isinstance(event, events.NodeEvent):
                continue
            if isinstance(event, events.ScalarEvent) and event.anchor:
                anchored[event.anchor] = event
            parent = stack[-1] if stack else None
            if parent is not None and parent.mapping and parent.at_key:
                parent.at_key = False
                parent.key = event.value if isinstance(event, events.ScalarEvent) else None
                skipped = True  # a complex key holds no expression
            else:
                if parent is not None and parent.mapping:
                    parent.at_key = True
                key = parent.key if parent is not None else None
                under_key = parent is not None and parent.mapping and (key in KEYS or parent.channels and (
                    isinstance(key, str) and key not in NOT_CHANNELS and not key.startswith("_")))
                skipped = parent is not None and (parent.skipped or parent.mapping and key in SKIPPED_KEYS)
                scalar = anchored.get(event.anchor) if isinstance(event, events.AliasEvent) else event
                if parent is not None and parent.mapping and not skipped and isinstance(scalar, events.ScalarEvent):
                    tag = scalar.tag if scalar.tag not in (None, "!") else \
                        resolver.resolve(yaml.ScalarNode, scalar.value, scalar.implicit)
                    line = scalar.start_mark.line
                    if key in UNIT_KEYS:
                        value = _unit_value(str(key), scalar, tag)
                        if value is not None:
                            parent.units[key] = value
                    elif tag == "tag:yaml.org,2002:str" and "${" not in scalar.value:
                        if under_key:
                            parent.pending.append(Found(scalar.value, line, scalar.style, str(key), {}))
                        else:
                            close = _misspelt(key, scalar.value)
                            if close is not None:
                                parent.pending.append(Found(scalar.value, line, scalar.style, str(key), {}, close))
                if parent is not None and under_key and not skipped and key in SCALAR_KEYS \
                        and isinstance(event, events.CollectionStartEvent):
                    kind = "list" if isinstance(event, events.SequenceStartEvent) else "mapping"
                    parent.pending.append(Found(None, event.start_mark.line, kind, str(key), {}))
            if isinstance(event, events.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise _TooDeep(event.start_mark.line)
                mapping = isinstance(event, events.MappingStartEvent)
                stack.append(_Frame(mapping, skipped, mapping and parent is not None and parent.mapping
                                    and parent.key == "schedule"))
    except (yaml.YAMLError, _TooDeep):
        for frame in reversed(stack):  # what was found before the error is still checked
            yield from frame.found()
        raise


def _excerpt(text: str, width: int = 100) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = "".join(c if c.isprintable() else " " for c in line)
    return "  " + (line if len(line) <= width else line[:width - 1] + "…")


def check_expression(text: str, *, steps_per_epoch: float | None = None, total: float | None = None,
                     target: str | None = None, **units) -> tuple[LrdslError | None, str | None]:
    """(the error planning ``text`` raises, or None; a warning about its length, or None).

    ``target`` is the key the expression stands under: momentum and beta2 must stay below 1.
    ``units``: ``clock`` and the conversion constants, as :func:`lrdsl.plan` takes them.
    """
    try:
        try:
            if is_program(text):  # every channel of a program, each in its own range
                for name, expr in program(text).items():
                    _planned(expr, name, steps_per_epoch, total, units)
                return None, None
            compiled = _planned(text, _channel_of(target), steps_per_epoch, total, units)
        except UnitError:
            if total is not None:
                raise
            # % cannot be planned without the run's length: a placeholder still finds the rest
            if is_program(text):
                for name, expr in program(text).items():
                    _planned(expr, name, steps_per_epoch, PLACEHOLDER_TOTAL, units)
            else:
                plan(text, steps_per_epoch=steps_per_epoch, total=PLACEHOLDER_TOTAL, **units)
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


def _planned(text, name: str | None, steps_per_epoch, total, units: dict):
    """The plan of one channel's expression, proven in the channel's range."""
    compiled = plan(text, steps_per_epoch=steps_per_epoch, total=total, **units)
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


class Checked(NamedTuple):
    """What :func:`check_file` found: the expressions checked, the problems and warnings, and
    how many expressions each key held."""

    found: int
    problems: list[Problem]
    keys: Counter


def check_file(path: Path, *, steps_per_epoch: float | None = None,
               total: float | None = None) -> Checked:
    """The expressions found and checked, problems and warnings (sorted by line), the whole file
    at most one line when it cannot be read or walked; expressions before a YAML error are still
    checked.  Unit keys beside an expression (:data:`UNIT_KEYS`) override the arguments for it."""
    import yaml

    text = read_text(path)
    if isinstance(text, Problem):
        return Checked(0, [text], Counter())
    keys: Counter = Counter()
    problems: list[Problem] = []
    after: list[Problem] = []  # why the walk stopped: after the expressions it found
    try:
        for found in expressions(text):
            problem = _checked(path, found, steps_per_epoch, total)
            if found.close is None:
                keys[found.key] += 1
            if problem is not None:
                problems.append(problem)
    except _TooDeep as error:
        after.append(Problem(path, error.line + 1, f"not checked: nested deeper than {MAX_DEPTH} levels"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        if "maximum nesting depth" in str(error.problem):
            # libyaml (PyYAML >= 6.0.2's wheels) has a nesting limit of its own, and its scanner
            # reads ahead of the events this walk counts: the same finding as _TooDeep
            after.append(Problem(path, mark.line + 1 if mark else 0,
                                 f"not checked: nested deeper than {MAX_DEPTH} levels"))
        else:
            context = f" ({error.context})" if error.context else ""
            after.append(Problem(path, mark.line + 1 if mark else 0,
                                 f"not YAML: {' '.join(str(error.problem).split())}{context}"))
    except yaml.YAMLError as error:
        after.append(Problem(path, 0, f"not YAML: {' '.join(str(error).split())}"))
    return Checked(sum(keys.values()), sorted(problems, key=lambda p: p.line) + after, keys)


def _checked(path: Path, found: Found, steps_per_epoch, total) -> Problem | None:
    """The problem or warning of one thing :func:`expressions` found, or None."""
    key, line = found.key, found.line
    if found.close is not None:
        return Problem(path, line + 1, f"{key}: not a key lrdsl reads, so this expression is not "
                                       f"checked; did you mean '{found.close}'?",
                       _excerpt(found.value or ""))
    if found.value is None:
        return Problem(path, line + 1, f"{key}: a {found.style}, not an expression (give one "
                                       f"expression per key, e.g. {key}: \"cosine(0.9, 100%)\")")
    units = dict(found.units)
    steps_per_epoch = units.pop("steps_per_epoch", steps_per_epoch)
    total = units.pop("total", total)
    first = line + 1 + (1 if found.style in ("|", ">") else 0)
    error, warning = check_expression(found.value, steps_per_epoch=steps_per_epoch, total=total,
                                      target=key, **units)
    if error is not None:
        error.message = as_flags(error.message)  # check's options are flags too
        message, _, pointer = pointed(error).partition("\n")
        # error.line counts lines of the text as written (a plan error's is 1: it
        # points into the one-line canonical form)
        return Problem(path, first + (error.line or 1) - 1, message, pointer or _excerpt(found.value))
    if warning is not None:
        return Problem(path, first, warning, warning=True)
    return None
