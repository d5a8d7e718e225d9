"""The commands of docs/distributed.md, as the tests run them.

A command block on that page is a fenced block preceded by ``<!-- test: NAME -->``; ``command(NAME)``
gives its text, ``run(NAME, ...)`` runs it with bash in the repository root (the venv's ``bin``
first on ``PATH``, so ``torchrun``, ``accelerate`` and ``lrdsl`` are the tested ones). The text is
run as written: what a test varies (an output folder, a free port) the page spells as an
environment variable with a default, ``${OUT:-runs/ddp}``, and the test sets it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "distributed.md"
BIN = Path(sys.executable).parent
_BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\s*\n```[a-z]*\n(.*?)\n```", re.S)


def commands() -> dict[str, str]:
    """Every tested block of the page, by name."""
    found: dict[str, str] = {}
    for name, text in _BLOCK.findall(PAGE.read_text(encoding="utf-8")):
        assert name not in found, f"two blocks named {name!r} in {PAGE.name}"
        found[name] = text
    return found


def command(name: str) -> str:
    return commands()[name]


def run(name: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run block ``name`` of the page with ``env`` added; its output comes back as text."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                   **env}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command(name)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(stdout: str) -> list[dict]:
    """Every ``{"rank": …}`` JSON object the processes printed, in order. The ranks share one
    stdout, so two lines may arrive run together (each write is whole, the newline a write of its
    own): the objects are decoded where they start, not line by line."""
    import json

    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := stdout.find('{"rank"', at)) >= 0:
        record, end = decoder.raw_decode(stdout, at)
        found.append(record)
        at = end
    return found
