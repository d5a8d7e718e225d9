"""Loads tests/cases.yaml for the language tests and the backends' tests."""

from pathlib import Path

import pytest
import yaml

_DATA = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text(encoding="utf-8"))

VALUE_CASES = _DATA["values"]
ERROR_CASES = _DATA["errors"]


def value_params():
    return [pytest.param(case, id=case["expr"].replace("\n", " ")) for case in VALUE_CASES]


def error_params():
    return [pytest.param(case, id=case["expr"].replace("\n", " ") or "<empty>")
            for case in ERROR_CASES]
