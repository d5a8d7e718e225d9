"""The README's language table is generated from the catalogue; its recipes are expressions that plan."""

import re
from pathlib import Path

import lrdsl
from lrdsl.catalogue import markdown_table

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_readme_language_table_is_the_catalogue():
    start = README.index("<!-- language table")
    block = README[README.index("\n", start) + 1:README.index("<!-- end of language table -->")]
    assert block.strip() == markdown_table(), "regenerate it with: lrdsl list --markdown"


def test_every_primitive_is_in_the_table_with_its_signature():
    for name, primitive in lrdsl.primitives().items():
        assert f"`{primitive.signature()}`" in README, name


def test_every_recipe_in_the_readme_plans():
    section = README[README.index("Recipes, as expressions"):]
    section = section[:section.index("\n\n", section.index("|---|"))]
    recipes = re.findall(r"\| `([^`]+)`", section)
    assert len(recipes) >= 8
    for expr in recipes:
        compiled = lrdsl.plan(expr, total=100_000)
        values = lrdsl.curve(compiled.expr, [0, 1, 5000, 99_999], total=100_000)
        assert all(v >= 0 for v in values), expr


def test_lrdsl_list_markdown_prints_the_table(capsys):
    from lrdsl.cli import main

    assert main(["list", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == markdown_table()
