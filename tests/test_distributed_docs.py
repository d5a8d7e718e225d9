"""docs/distributed.md: every block marked for the tests is one some test runs."""

import re
from pathlib import Path

from distributed_docs import PAGE, commands

TESTS = Path(__file__).parent


def test_every_command_on_the_distributed_page_is_run_by_a_test():
    used = set()
    for path in TESTS.glob("test_*.py"):
        used |= set(re.findall(r"""\b(?:run|command)\(\s*["']([\w-]+)["']""", path.read_text(encoding="utf-8")))
    missing = sorted(set(commands()) - used)
    assert not missing, f"blocks of {PAGE.name} no test runs: {missing}"



def test_the_page_leaves_no_section_empty():
    text = PAGE.read_text(encoding="utf-8")
    assert "<!-- section:" not in text, "a section of docs/distributed.md is still a placeholder"
    for heading in ("DDP", "FSDP", "Accelerate", "Lightning", "Multi-node", "SLURM", "Optuna", "DeepSpeed"):
        assert f"\n## " in text and heading in "".join(line for line in text.splitlines() if line.startswith("## ")), heading
