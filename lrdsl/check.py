"""``lrdsl check``: find schedule expressions in YAML files and report the bad ones.

An expression is the scalar value of a key named ``expr`` or ``schedule`` (Hydra configs
included); Hydra ``defaults`` lists, Hydra's own ``hydra:`` settings (sweep lists) and
``${...}`` interpolations are not expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lrdsl.errors import LrdslError
from lrdsl.parser import parse

KEYS = ("expr", "schedule")


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str
    pointer: str  # the expression line and a caret, or ""

    def __str__(self) -> str:
        head = f"{self.path}:{self.line}: {self.message}"
        return f"{head}\n{self.pointer}" if self.pointer else head


def yaml_files(paths) -> Iterator[Path]:
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            yield path


def _expressions(node) -> Iterator:
    """Scalar nodes under expression keys, without recursion."""
    import yaml

    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name in ("defaults", "hydra"):
                    continue
                if name in KEYS and isinstance(value, yaml.ScalarNode):
                    yield value
                else:
                    stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def check_file(path: Path) -> tuple[int, list[Problem]]:
    """(number of expressions found, problems)."""
    import yaml

    try:
        documents = list(yaml.compose_all(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader))
    except OSError as error:
        return 0, [Problem(path, 0, f"cannot read: {error.strerror}", "")]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        return 0, [Problem(path, mark.line + 1 if mark else 0, f"not YAML: {error}", "")]
    found, problems = 0, []
    for document in documents:
        for node in _expressions(document) if document is not None else ():
            if node.tag != "tag:yaml.org,2002:str" or "${" in node.value:
                continue
            found += 1
            try:
                parse(node.value)
            except LrdslError as error:
                first = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)
                line = first + (error.line or 1) - 1
                pointer = error.pointed()[len(error.message) + 1:] if error.column else \
                    f"  {node.value.strip()}"
                problems.append(Problem(path, line, error.message, pointer))
    return found, problems
