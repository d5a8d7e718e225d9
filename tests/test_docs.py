"""The language page's table and its section per primitive are generated from the catalogue; its recipes are expressions that plan;
the README links only to pages that exist."""

import re
from pathlib import Path

import lrdsl
from lrdsl.language.markdown import markdown_glance, markdown_reference, markdown_table

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
LANGUAGE = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


def test_the_language_table_is_the_catalogue():
    start = LANGUAGE.index("<!-- language table")
    block = LANGUAGE[LANGUAGE.index("\n", start) + 1:LANGUAGE.index("<!-- end of language table -->")]
    assert block.strip() == markdown_table(), "regenerate it with: lrdsl list --markdown"


def test_the_readme_glance_is_the_catalogue():
    start = README.index("<!-- language at a glance")
    block = README[README.index("\n", start) + 1:README.index("<!-- end of language at a glance -->")]
    assert block.strip() == markdown_glance(), "regenerate it with: lrdsl list --glance"
    for name in lrdsl.primitives():
        assert f"`{name}" in block or f" {name}(" in block, name


def test_the_primitive_reference_is_the_catalogue():
    start = LANGUAGE.index("<!-- primitive reference")
    block = LANGUAGE[LANGUAGE.index("\n", start) + 1:LANGUAGE.index("<!-- end of primitive reference -->")]
    assert block.strip() == markdown_reference(), "regenerate it with: lrdsl list --reference"


def test_the_reference_has_a_section_per_primitive_with_its_formula():
    reference = markdown_reference()
    for name, primitive in lrdsl.primitives().items():
        section = reference[reference.index(f"### {name}\n"):]
        assert section.index(f"`{primitive.signature()}`") < section.index("Example:"), name
        if primitive.value is not None:
            assert "Formula, as computed:" in section[:section.index("Example:")], name


def test_every_primitive_is_in_the_table_with_its_signature():
    for name, primitive in lrdsl.primitives().items():
        assert f"`{primitive.signature()}`" in LANGUAGE, name


def test_every_recipe_in_the_language_page_plans():
    section = LANGUAGE[LANGUAGE.index("Recipes, as expressions"):]
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
    assert main(["list", "--reference"]) == 0
    assert capsys.readouterr().out.strip() == markdown_reference()


def test_the_sections_the_code_cites_exist():
    """The code cites the project's reference by section name (docs/language.md "Tolerances"),
    not the contract's numbers (LANGUAGE.md §5)."""
    headings = set(re.findall(r"^#+ (.+)$", LANGUAGE, re.M))
    cited = 0
    for path in (ROOT / "lrdsl").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "LANGUAGE.md §" not in text, path.relative_to(ROOT)
        for names in re.findall(r'docs/language\.md ((?:"[^"]+"(?:, | and )?)+)', text):
            for name in re.findall(r'"([^"]+)"', names):
                cited += 1
                assert name in headings, f"{path.relative_to(ROOT)}: {name}"
    assert cited >= 5


def test_the_readme_is_a_newcomers_page_whose_links_resolve():
    assert README.index("make run") < README.index("make test") < README.index("## A taste")
    assert len(README.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/language.md" in links
    for target in links:
        if not target.startswith("http"):
            assert (ROOT / target).is_file(), target


def test_links_between_the_docs_pages_resolve():
    """To a file, or to a page the site draws when it is built (the gallery: docs/gen_gallery.py)."""
    generated = {"gallery/index.md"}
    for page in (ROOT / "docs").rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text(encoding="utf-8")):
            resolved = (page.parent / target).resolve()
            assert resolved.is_file() or resolved in {(ROOT / "docs" / g).resolve() for g in generated}, \
                f"{page.name}: {target}"
