"""The examples in the core's docstrings are tests too."""

import doctest

import pytest

import lrdsl
import lrdsl.language.parser
import lrdsl.language.curve
import lrdsl.language.notebook


@pytest.mark.parametrize("module", [lrdsl, lrdsl.language.parser, lrdsl.language.curve,
                                    lrdsl.language.notebook], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
