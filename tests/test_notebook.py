"""Expressions and programs in a notebook: ``e(t)`` is lrdsl.curve, ``e.plot()`` draws the same
values on matplotlib without touching its backend, the rich display draws an SVG without
matplotlib; and examples/quickstart.ipynb runs top to bottom in a real kernel."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lrdsl

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


# --- e(t) ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, units", [
    ("warmup(5) >> cosine(0.1, 100) >> 0.001", {}),
    ("warmup(10%) >> cosine(0.1, 90%)", {"total": 1000}),
    ("warmup(1ep) >> cosine(0.1, 4ep) >> cosine(0.01, 10st)", {"steps_per_epoch": 8}),
    ("cosine(1, 2ep)", {"clock": "tokens", "tokens_per_epoch": 1000}),
])
def test_calling_an_expression_is_curve_at_those_positions(expr, units):
    e = lrdsl.parse(expr)
    at = np.array([0, 1, 2.5, 7, 49.5, 104, 999, 1e6])
    np.testing.assert_array_equal(e(at, **units), lrdsl.curve(e, at, **units))
    for t in (0, 3, 7.25, np.int64(50), np.float32(2.5)):
        value = e(t, **units)
        assert type(value) is float and value == lrdsl.curve(e, [float(t)], **units)[0]
    assert e(list(at), **units).tolist() == lrdsl.curve(e, at, **units).tolist()


def test_a_position_is_never_a_count_of_ticks():
    e = lrdsl.parse("linear(0, 1, 10)")
    assert e(5) == 0.5  # curve(e, 5) would be the five values at ticks 0..4
    assert e([5]).tolist() == [0.5]


def test_calling_without_a_needed_unit_raises_curves_error():
    e = lrdsl.parse("warmup(10%) >> cosine(0.1, 90%)")
    with pytest.raises(lrdsl.UnitError) as curve_error:
        lrdsl.curve(e, [3])
    with pytest.raises(lrdsl.UnitError) as call_error:
        e(3)
    assert str(call_error.value) == str(curve_error.value) and "total=" in str(call_error.value)
    for bad in ("3", True, -1, float("nan"), None):
        with pytest.raises(lrdsl.LrdslError, match="ticks"):
            e(bad, total=10)


def test_plateau_reports_go_through_as_metrics():
    e = lrdsl.parse("0.1 | plateau(loss, 0.5, patience=0)")
    metrics = {"loss": [1.0, 1.0, 1.0]}
    at = np.arange(4)
    np.testing.assert_array_equal(e(at, metrics=metrics), lrdsl.curve(e, at, metrics=metrics))
    assert e(3, metrics=metrics) == 0.1 * 0.5 ** 2  # two reports without improvement


def test_calling_a_program_gives_each_channel():
    p = lrdsl.program("lr = warmup(5) >> cosine(0.1, 95)\nema = anneal(0.99, 0.999, 100)\n"
                      "batch_size = piecewise([50], [32, 64])")
    at = np.array([0, 3, 50, 99, 120])
    want = lrdsl.curve(p, at)
    got = p(at)
    assert set(got) == {"lr", "ema", "batch_size"}
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    one = p(50)
    assert one == {name: want[name][2].item() for name in want}
    assert one["batch_size"] == 64 and one["lr"] == pytest.approx(0.1 * (1 + np.cos(np.pi * 45 / 95)) / 2, rel=1e-14)


def test_repr_stays_the_canonical_text():
    e = lrdsl.parse("warmup(5)>>cosine(0.1,100)")
    assert repr(e) == str(e) == "warmup(5) >> cosine(0.1,100)"
    assert lrdsl.parse(repr(e)) == e
    p = lrdsl.program("lr = 0.1; ema = 0.99")
    assert repr(p) == "lrdsl.program('lr = 0.1\\nema = 0.99')"


# --- the rich display ---------------------------------------------------------------------------

def _polyline(html: str) -> list[tuple[float, float]]:
    start = html.index('<polyline points="') + len('<polyline points="')
    return [tuple(map(float, point.split(","))) for point in html[start:html.index('"', start)].split()]


def test_the_display_shows_the_text_the_segments_and_the_curve():
    e = lrdsl.parse("warmup(5) >> cosine(0.1, 100) >> 0.001")
    html = e._repr_html_()
    assert "warmup(5) &gt;&gt; cosine(0.1,100) &gt;&gt; 0.001" in html  # escaped canonical text
    assert "[5, 105)  cosine    0.1 → 0" in html  # the segments, as lrdsl parse prints them
    assert html.count("<svg") == 1 and html.count("stroke-dasharray") == 2  # both boundaries dashed
    points = _polyline(html)
    assert 150 <= len(points) <= 210  # sampled, not every tick
    ys = np.array([y for _, y in points])
    # the highest value (0.1, at tick 5) is drawn at the top of the panel, 0 at its bottom
    from lrdsl.plot import svg
    assert ys.min() == pytest.approx(svg.TOP, abs=0.06)
    assert ys.max() == pytest.approx(svg.HEIGHT - svg.BOTTOM, abs=0.06)
    assert "total=" not in html
    long = _polyline(lrdsl.parse("warmup(1000) >> cosine(0.1, 1e7)")._repr_html_())
    assert len(long) <= 200 + 2  # a few kilobytes whatever the length: 200 samples, 2 at the boundary


def test_a_percent_expression_is_displayed_against_a_default_total_and_says_so():
    html = lrdsl.parse("warmup(10%) >> cosine(0.1, 90%)")._repr_html_()
    assert "[0, 10)" in html and "[10, 100)" in html  # planned with total=100
    assert "% drawn against total=100" in html and "<svg" in html


def test_an_expression_that_cannot_be_drawn_shows_its_text_and_why():
    html = lrdsl.parse("cosine(0.1, 2ep) >> cosine(0.1, 10st)")._repr_html_()
    assert "cosine(0.1,2ep) &gt;&gt; cosine(0.1,10st)" in html
    assert "not drawn:" in html and "steps_per_epoch" in html and "<svg" not in html


def test_a_program_is_displayed_a_panel_per_channel():
    p = lrdsl.program("lr = warmup(5) >> cosine(0.1, 95)\nmomentum = 0.9\nema = anneal(0.99, 0.999, 100)")
    html = p._repr_html_()
    assert html.count("<polyline") == 3
    assert "lr:\n  [0, 5)" in html and "momentum = 0.9" in html and "ema:\n" in html


# --- e.plot() -----------------------------------------------------------------------------------

def test_plot_draws_curves_values_on_the_axes_given_and_returns_them():
    import matplotlib.figure

    e = lrdsl.parse("warmup(1ep) >> cosine(0.1, 4ep)")
    ax = matplotlib.figure.Figure().subplots()
    assert e.plot(ax, ticks=50, steps_per_epoch=10) is ax
    line = next(line for line in ax.get_lines() if not line.get_label().startswith("_"))
    t = np.asarray(line.get_xdata(), dtype=float)
    assert t.tolist() == list(range(50))
    np.testing.assert_array_equal(line.get_ydata(), lrdsl.curve(e, t, steps_per_epoch=10))
    assert ax.get_title() == str(e)
    with pytest.raises(lrdsl.UnitError, match="total="):
        lrdsl.parse("cosine(0.1, 100%)").plot(ax)


def test_plot_of_a_program_gives_an_axes_per_channel():
    import matplotlib.figure

    p = lrdsl.program("lr = cosine(0.1, 20)\nkl = linear(0, 1, 10)")
    axes = matplotlib.figure.Figure().subplots(2, 1)
    assert p.plot(axes, ticks=30) is axes
    for ax, name in zip(axes, ["lr", "kl"]):
        line = ax.get_lines()[0]
        np.testing.assert_array_equal(line.get_ydata(), lrdsl.curve(p, 30)[name])
    one = matplotlib.figure.Figure().subplots()
    p.plot(one, ticks=30)
    assert [line.get_label() for line in one.get_lines() if not line.get_label().startswith("_")] == \
        ["lr = cosine(0.1,20)", "kl = linear(0,1,10)"]
    with pytest.raises(lrdsl.LrdslError, match="2 channels"):
        p.plot(list(matplotlib.figure.Figure().subplots(3, 1)), ticks=30)


BACKEND = textwrap.dedent("""
    import sys
    import lrdsl
    e = lrdsl.parse("warmup(5) >> cosine(0.1, 100)")
    p = lrdsl.program("lr = cosine(0.1, 100)\\nema = anneal(0.99, 1, 100)")
    e(3), p(3), e._repr_html_(), p._repr_html_()
    print("matplotlib imported:", "matplotlib" in sys.modules)
    import matplotlib
    matplotlib.use("svg")  # the caller's choice (a notebook's would be its inline backend)
    ax = e.plot()
    axes = p.plot()
    import matplotlib.pyplot as plt
    print("backend:", matplotlib.get_backend(), "figures:", len(plt.get_fignums()),
          type(ax).__name__, len(axes))
""")


@pytest.mark.slow
def test_display_imports_no_matplotlib_and_plot_keeps_the_callers_backend():
    result = subprocess.run([sys.executable, "-c", BACKEND], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MPLBACKEND": "agg"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["matplotlib imported: False", "backend: svg figures: 2 Axes 2"]


# --- examples/quickstart.ipynb ------------------------------------------------------------------

@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run by nbclient in a kernel of this venv's python with this checkout's lrdsl
    (a kernelspec written for it), from a scratch directory; plus a last cell reporting where
    the kernel's lrdsl came from and matplotlib's backend after everything ran."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    home = tmp_path_factory.mktemp("jupyter")
    spec = home / "kernels" / "lrdsl-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lrdsl tests", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "OMP_NUM_THREADS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}}))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, matplotlib\nprint(json.dumps({'python': sys.executable, 'lrdsl': lrdsl.__file__, "
        "'backend': matplotlib.get_backend()}))"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(home))
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")
        client = nbclient.NotebookClient(nb, kernel_name="lrdsl-tests", timeout=120,
                                         resources={"metadata": {"path": str(home)}})
        client.execute()
    return nb


def _outputs(nb):
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def _printed(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.mark.slow
def test_the_quickstart_runs_in_this_checkouts_kernel_without_errors(executed):
    assert not [o for o in _outputs(executed) if o.output_type == "error"]
    where = json.loads(_printed(executed.cells[-1]))
    assert Path(where["python"]).resolve() == Path(sys.executable).resolve()
    assert Path(where["lrdsl"]).resolve() == (ROOT / "lrdsl" / "__init__.py").resolve()
    assert "inline" in where["backend"]  # the plots and the display left the kernel's backend alone


@pytest.mark.slow
def test_the_quickstart_shows_images(executed):
    data = [o.get("data", {}) for o in _outputs(executed) if o.output_type in ("display_data", "execute_result")]
    assert sum("image/png" in d for d in data) >= 3  # e.plot(), p.plot(), the range test's figure
    html = [d["text/html"] for d in data if "text/html" in d]
    assert len(html) >= 4 and all("<svg" in h for h in html)  # e, run, p and the valley's schedule
    assert any("% drawn against total=100" in h for h in html)


@pytest.mark.slow
def test_the_quickstarts_printed_values_are_curves(executed):
    checked = 0
    for cell in executed.cells:
        if "values" not in cell.metadata.get("tags", []):
            continue
        shown = json.loads(_printed(cell))
        want = lrdsl.curve(shown["expr"], shown["at"], **shown["units"])
        if isinstance(want, dict):
            assert set(shown["values"]) == set(want)
            for name, values in shown["values"].items():
                np.testing.assert_allclose(values, want[name], rtol=1e-12, atol=0)
        else:
            np.testing.assert_allclose(shown["values"], want, rtol=1e-12, atol=0)
        checked += 1
    assert checked == 4  # the schedule, the % run, the program, the PyTorch loop's LRs
