"""The gallery: a figure per primitive of the catalogue and per recipe of docs/language.md.

Run by mkdocs-gen-files at build time (mkdocs.yml, ``plugins: gen-files``), so the site's gallery
is drawn from what the code holds that day: a primitive added to the catalogue
(``lrdsl.primitives()``) gets its section and figure with no hand edit, and so does a row added to
docs/language.md's "Recipes, as expressions" table (the recipes' one home; the app's presets in
conf/schedule/ are configs, drawn by ``lrdsl train`` itself).

Each primitive's section is its entry of the language reference (``lrdsl list --reference``,
:func:`lrdsl.language.markdown.markdown_reference`: signature, meaning, formula, parameters,
native counterpart, example) under a figure of its example expression.

``pages()`` gives the Markdown and ``figures()`` the figures to draw, with no mkdocs: the tests
(tests/test_site.py) list the catalogue against them.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import lrdsl
from lrdsl.errors import UnitError
from lrdsl.language.explain import default_ticks
from lrdsl.language.markdown import markdown_reference
from lrdsl.language.plan import Plan, TimedRepeat, TimedSequence

LANGUAGE = Path(__file__).with_name("language.md")
#: where the gallery sits in the site (docs_dir-relative)
FOLDER = "gallery"
#: ``total`` for an expression that needs one (a % or a segment that stretches): a primitive's
#: example is drawn over 1000 ticks, a recipe over a run of 100,000 (as tests/test_docs.py plans it)
TOTAL, RECIPE_TOTAL = 1000, 100_000
#: a plateau's figure: the monitor never improves, reported every this many ticks
REPORT_EVERY = 10
#: small figures keep the build fast (about 0.1 s each) and the page light
SIZE, DPI = (5.0, 2.6), 80


@dataclass(frozen=True)
class Figure:
    """One figure of the gallery: what it draws and how."""

    name: str       # the file's stem, unique in the gallery
    expr: str
    ticks: int
    total: int | None
    plateau: bool   # drawn with a monitor that never improves

    @property
    def path(self) -> str:
        return f"{FOLDER}/{self.name}.png"


def recipes() -> list[tuple[str, str]]:
    """(recipe, expression) for each row of docs/language.md's "Recipes, as expressions" table."""
    text = LANGUAGE.read_text(encoding="utf-8")
    section = text[text.index("Recipes, as expressions"):]
    section = section[:section.index("\n\n", section.index("|---|"))]
    return re.findall(r"^\| (.+?) \| `([^`]+)`", section, re.M)


def _figure(name: str, expr: str, total_if_needed: int = TOTAL) -> Figure:
    """The figure of ``expr``: planned as written, or with ``total`` when it needs one; as many
    ticks as ``lrdsl parse --plot`` draws."""
    total: int | None = None
    try:
        compiled = lrdsl.plan(expr)
    except UnitError:
        total = total_if_needed
        compiled = lrdsl.plan(expr, total=total)
    return Figure(name, expr, _ticks(compiled), total, compiled.plateau is not None)


def _ticks(compiled: Plan) -> int:
    """As many ticks as ``lrdsl parse --plot`` draws; for a ``repeat`` that runs forever, its
    first three periods (``parse`` draws a little past the bounded part)."""
    ticks = default_ticks(compiled)
    schedule = compiled.schedule
    tail = schedule.parts[-1] if isinstance(schedule, TimedSequence) else schedule
    if isinstance(tail, TimedRepeat) and not math.isfinite(compiled.duration):
        start = compiled.boundaries()[-1] if compiled.boundaries() else 0.0
        ticks = max(ticks, math.ceil(start + tail.period * (1 + tail.mult + tail.mult ** 2)))
    return ticks


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


def primitive_figures() -> dict[str, Figure]:
    """A figure per primitive of the catalogue, of its example, by the primitive's name."""
    return {name: _figure(name, primitive.example) for name, primitive in lrdsl.primitives().items()}


def recipe_figures() -> list[tuple[str, Figure]]:
    """(recipe, its figure) for each recipe."""
    return [(recipe, _figure(f"recipe-{index:02d}-{_slug(recipe)}", expr, RECIPE_TOTAL))
            for index, (recipe, expr) in enumerate(recipes(), 1)]


def figures() -> list[Figure]:
    """Every figure of the gallery: one per primitive, then one per recipe."""
    return list(primitive_figures().values()) + [figure for _, figure in recipe_figures()]


def _reference_sections() -> dict[str, str]:
    """The language reference's section of each primitive, by name (its heading left out)."""
    sections: dict[str, str] = {}
    for chunk in ("\n" + markdown_reference()).split("\n### ")[1:]:
        name, _, body = chunk.partition("\n")
        sections[name] = body.strip()
    return sections


def _caption(figure: Figure) -> str:
    words = [f"{figure.ticks} ticks"]
    if figure.total:
        words.append(f"`total={figure.total}`")
    if figure.plateau:
        words.append(f"a monitor that never improves, reported every {REPORT_EVERY} ticks")
    return "*" + ", ".join(words) + "*"


def pages() -> dict[str, str]:
    """The gallery's Markdown pages, by path in the site's docs."""
    sections = _reference_sections()
    out = ["# Gallery", "",
           "Every primitive of the language, drawn from its example, and every recipe of "
           "[the language reference](../language.md#the-language-in-one-table). This page is "
           "generated when the site is built (`docs/gen_gallery.py`), from the catalogue "
           "(`lrdsl.primitives()`) and from the recipes table: a new primitive or recipe appears "
           "here with no hand edit. The same figures come from "
           "`lrdsl parse --plot FILE.png EXPR` and `lrdsl.plot.image.save_figure`.", "",
           "## Primitives", ""]
    for name, figure in primitive_figures().items():
        out += [f"### {name}", "", f"![{figure.expr}]({figure.name}.png)", "", _caption(figure), "",
                sections[name], ""]
    out += ["## Recipes", "",
            "The rows of [the language's recipes table](../language.md#the-language-in-one-table).", ""]
    for recipe, figure in recipe_figures():
        out += [f"### {recipe}", "", f"`{figure.expr}`", "", f"![{figure.expr}]({figure.name}.png)", "",
                _caption(figure), ""]
    return {f"{FOLDER}/index.md": "\n".join(out).rstrip("\n") + "\n"}


def png(figure: Figure) -> bytes:
    """The figure drawn as PNG bytes (matplotlib's Agg canvas; pyplot is never imported)."""
    from lrdsl.plot.image import figure as draw

    metrics = {"val_loss": [1.0] * (figure.ticks // REPORT_EVERY + 1)} if figure.plateau else None
    fig = draw(figure.expr, ticks=figure.ticks, total=figure.total, metrics=metrics,
               report_every=REPORT_EVERY if figure.plateau else None)
    fig.set_size_inches(*SIZE)
    for ax in fig.axes:
        ax.title.set_fontsize(7)
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(7)
        ax.yaxis.label.set_fontsize(7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write() -> None:
    """Write the pages and figures into the build (mkdocs-gen-files' virtual docs folder)."""
    import mkdocs_gen_files

    for path, text in pages().items():
        with mkdocs_gen_files.open(path, "w") as out:
            out.write(text)
        mkdocs_gen_files.set_edit_path(path, "gen_gallery.py")
    for figure in figures():
        with mkdocs_gen_files.open(figure.path, "wb") as out:
            out.write(png(figure))


if __name__ == "<run_path>":  # mkdocs-gen-files runs the script with runpy.run_path
    write()
