"""The docs site: the gallery lists the catalogue and the recipes with no hand edit, every page
is in the nav, and `mkdocs build --strict` builds the whole site (slow)."""

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import lrdsl
from lrdsl.language.catalogue import PRIMITIVES

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
CONFIG = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _gallery():
    spec = importlib.util.spec_from_file_location("gen_gallery", DOCS / "gen_gallery.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


gallery = _gallery()


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _recipes_of_the_language_page() -> list[str]:
    """The expressions of docs/language.md's recipes table, read here as tests/test_docs.py does."""
    text = (DOCS / "language.md").read_text(encoding="utf-8")
    section = text[text.index("Recipes, as expressions"):]
    section = section[:section.index("\n\n", section.index("|---|"))]
    return re.findall(r"\| `([^`]+)`", section)


def test_every_primitive_has_its_section_and_figure_in_the_gallery():
    page = gallery.pages()["gallery/index.md"]
    paths = {figure.path for figure in gallery.figures()}
    for name, primitive in lrdsl.primitives().items():
        section = page[page.index(f"\n### {name}\n"):]
        section = section[:section.index("\n### ", 1)]
        assert f"![{primitive.example}]({name}.png)" in section, name
        assert f"`{primitive.signature()}`" in section, name
        assert f"Example: `{primitive.example}`" in section, name
        if primitive.value is not None:
            assert "Formula, as computed:" in section, name
        assert f"gallery/{name}.png" in paths, name


def test_every_recipe_has_its_figure_in_the_gallery():
    recipes = _recipes_of_the_language_page()
    assert len(recipes) >= 8
    drawn = [figure.expr for figure in gallery.figures()]
    page = gallery.pages()["gallery/index.md"]
    for expr in recipes:
        assert expr in drawn, expr
        figure = next(f for f in gallery.figures() if f.expr == expr)
        assert f"![{expr}]({figure.name}.png)" in page, expr
    assert len({figure.path for figure in gallery.figures()}) == len(gallery.figures())


def test_a_new_primitive_gets_its_figure_with_no_hand_edit(monkeypatch):
    cosine = PRIMITIVES["cosine"]
    monkeypatch.setitem(PRIMITIVES, "halfcos", replace(cosine, name="halfcos", example="halfcos(0.2, 40)",
                                                      doc="A new primitive, for the test.\n\n" + cosine.doc))
    figure = next(f for f in gallery.figures() if f.name == "halfcos")
    assert (figure.path, figure.expr) == ("gallery/halfcos.png", "halfcos(0.2, 40)")
    assert figure.ticks == 44  # parse --plot's: 10 % past the end of its 40 ticks
    page = gallery.pages()["gallery/index.md"]
    section = page[page.index("\n### halfcos\n"):]
    assert section.index("![halfcos(0.2, 40)](halfcos.png)") < section.index("A new primitive, for the test.")
    assert gallery.png(figure).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_gallery_is_the_one_generated_page():
    assert set(gallery.pages()) == {"gallery/index.md"}  # tests/test_docs.py lets links point to it


def test_a_plateau_is_drawn_with_a_monitor_that_stalls():
    plateau = next(f for f in gallery.figures() if f.name == "plateau")
    assert plateau.plateau and not next(f for f in gallery.figures() if f.name == "cosine").plateau


def test_every_docs_page_is_in_the_nav():
    nav = _nav_pages(CONFIG["nav"])
    generated = {path for path in gallery.pages()}
    for page in nav:
        assert page in generated or (DOCS / page).is_file(), page
    for page in DOCS.rglob("*.md"):
        assert page.relative_to(DOCS).as_posix() in nav, page
    for name in ("index.md", "language.md", "gallery/index.md", "pytorch.md", "keras.md", "optax.md",
                 "lightning.md", "hf.md", "app.md", "cli.md", "notebooks.md", "distributed.md",
                 "benchmarks.md", "api/lrdsl.torch.md"):
        assert name in nav, name
    assert CONFIG["theme"]["font"] is False  # no Google Fonts fetched


# --- the built site --------------------------------------------------------------------------------

#: a documented name each API page must show, from the module's own source
API_NAMES = {"lrdsl": "curve", "lrdsl.torch": "scheduler", "lrdsl.keras": "callback",
             "lrdsl.optax": "transform", "lrdsl.lightning": "Schedule", "lrdsl.hf": "Schedule",
             "lrdsl.plot": "save_figure", "lrdsl.programs": "program"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def _html(site: Path, page: str) -> Path:
    return site / ("index.html" if page == "index.md" else page.removesuffix(".md").removesuffix("index")
                   + ("/index.html" if not page.endswith("index.md") else "index.html"))


@pytest.mark.slow
def test_the_site_builds_with_every_nav_page(site):
    assert (site / "index.html").is_file()
    assert not list(site.rglob("*.py")), "the build's scripts are not pages"
    for page in _nav_pages(CONFIG["nav"]):
        assert _html(site, page).is_file(), page
    assert "make run" in (site / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_site_has_a_figure_per_primitive_and_recipe(site):
    html = (site / "gallery" / "index.html").read_text(encoding="utf-8")
    for name in lrdsl.primitives():
        assert (site / "gallery" / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
        assert f'src="../{name}.png"' in html or f'src="{name}.png"' in html, name
    for expr in _recipes_of_the_language_page():
        figure = next(f for f in gallery.figures() if f.expr == expr)
        assert (site / figure.path).read_bytes().startswith(b"\x89PNG"), expr


@pytest.mark.slow
def test_the_api_pages_show_the_documented_names(site):
    for module, name in API_NAMES.items():
        html = _html(site, f"api/{module}.md").read_text(encoding="utf-8")
        assert f'id="{module}.{name}"' in html or f'id="lrdsl.plot.image.{name}"' in html, (module, name)
        assert ":func:" not in html and ":class:" not in html, module  # docs/griffe_roles.py
