"""The installed ``lrdsl`` console script, driven in subprocesses."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import lrdsl

LRDSL = Path(sys.executable).parent / "lrdsl"


def run(*args, check_exit=0, **env):
    result = subprocess.run([str(LRDSL), *args], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "100", "LINES": "30", **env})
    assert result.returncode == check_exit, result.stdout + result.stderr
    return result


def test_parse_prints_canonical_form_and_segments():
    out = run("parse", "warmup(5) >> cosine(0.1, 100) | plateau(val_loss, 0.5)").stdout.splitlines()
    assert out[0] == "warmup(5) >> cosine(0.1,100) | plateau(val_loss,factor=0.5)"
    assert out[1].split() == ["[0,", "5)", "warmup", "0", "→", "0.1", "linear"]
    assert out[2].split() == ["[5,", "105)", "cosine", "0.1", "→", "0"]
    assert out[3].strip() == "then 0"
    assert out[4].strip().startswith("plateau on val_loss (min): ×0.5 once more than 10 reports")


def test_parse_units_and_unbounded_tail():
    out = run("parse", "warmup(2ep) >> step(0.1, 1ep)", "--steps-per-epoch", "10").stdout.splitlines()
    assert out[1].split()[:2] == ["[0,", "20)"] and out[2].split()[:2] == ["[20,", "∞)"]
    assert "from 0.1" in out[2]


def test_parse_json():
    data = json.loads(run("parse", "--json", "warmup(5) >> cosine(0.1, 100)").stdout)
    assert data["canonical"] == "warmup(5) >> cosine(0.1,100)"
    assert data["duration"] == 105
    assert [s["name"] for s in data["segments"]] == ["warmup", "cosine"]
    assert data["ast"]["sequence"][1] == {"call": "cosine", "args": {"lr": 0.1, "d": "100", "min": 0.0}}
    assert data["plateau"] is None


def _braille_columns(plot: str) -> list[float]:
    """Mean dot height per plot column, read back from the braille characters."""
    rows = [line.split("┤", 1)[-1].split("│", 1)[-1] for line in plot.splitlines()
            if ("┤" in line or "│" in line) and "└" not in line]
    height = len(rows) * 4
    bits = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
    columns = []
    for c in range(min(len(r) for r in rows)):
        for sub in (0, 1):
            ys = [height - 1 - (r * 4 + k) for r, row in enumerate(rows)
                  for k in range(4) if (ord(row[c]) - 0x2800) & bits[k][sub]]
            columns.append(sum(ys) / len(ys) if ys else None)
    return columns


def test_terminal_plot_rises_then_falls():
    out = run("parse", "--plot", "warmup(20) >> cosine(0.1, 80)").stdout
    assert "└" in out and "tick" in out
    heights = [h for h in _braille_columns(out) if h is not None]
    peak = heights.index(max(heights))
    assert 0.1 * len(heights) < peak < 0.3 * len(heights)  # the warm-up takes ~20/110 of the width
    assert heights[0] < heights[peak] and heights[-1] < heights[peak]
    rising, falling = heights[:peak + 1], heights[peak:]
    assert all(b >= a - 0.5 for a, b in zip(rising, rising[1:]))
    assert all(b <= a + 0.5 for a, b in zip(falling, falling[1:]))
    assert "0.1 ┤" in out and " 0 ┤" in out  # y labels at the top and bottom


def test_terminal_plot_marks_boundaries_and_epochs():
    out = run("parse", "warmup(2ep) >> cosine(0.1, 8ep)", "--plot", "--steps-per-epoch", "5").stdout
    axis = next(line for line in out.splitlines() if "└" in line)
    assert axis.count("┴") == 1
    assert out.rstrip().endswith("epoch")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_to_png_is_real_and_not_blank(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "lr.png"
    out = run("parse", "--plot", str(target), "warmup(5) >> cosine(0.1, 100)", "--log").stdout
    assert f"wrote {target}" in out
    assert _png_size(target) == (800, 450)
    import matplotlib.image

    pixels = matplotlib.image.imread(target)
    assert pixels.std() > 0.05  # drawn on, not a blank canvas
    for suffix in ("svg", "pdf"):
        run("parse", "cosine(0.1, 10)", "--plot", str(tmp_path / f"lr.{suffix}"))
        assert (tmp_path / f"lr.{suffix}").stat().st_size > 1000
    bad = run("parse", "cosine(0.1, 10)", "--plot", str(tmp_path / "lr.jpg"), check_exit=2)
    assert "must end in" in bad.stderr


def test_eval_prints_values():
    out = run("eval", "warmup(5) >> cosine(0.1, 100)", "--at", "0,1,5,105").stdout.splitlines()
    ticks = [0, 1, 5, 105]
    assert [line.split("\t")[0] for line in out] == ["0", "1", "5", "105"]
    got = [float(line.split("\t")[1]) for line in out]
    want = lrdsl.curve("warmup(5) >> cosine(0.1, 100)", ticks)
    assert got == pytest.approx(list(want), rel=1e-9, abs=1e-15)


def test_eval_with_simulated_plateau_reports():
    out = run("eval", "0.1 | plateau(val_loss, 0.5, patience=0)", "--at", "0,1,2,3",
              "--metric", "val_loss=1,2,3").stdout.splitlines()
    assert [float(line.split("\t")[1]) for line in out] == [0.1, 0.1, 0.05, 0.025]


def test_list():
    out = run("list").stdout
    for name in lrdsl.primitives():
        assert f"\n{name}(" in "\n" + out
    one = run("list", "cosine").stdout
    assert one.startswith("cosine(lr, d, min=0)")
    assert "CosineAnnealingLR" in one and "example:" in one
    bad = run("list", "cosin", check_exit=2)
    assert "did you mean 'cosine'" in bad.stderr


@pytest.mark.parametrize("args, column", [
    (["parse", "cosine(0.1,, 100)"], 12),
    (["parse", "--plot", "warmup(5) >>"], 13),
    (["eval", "cosine(0.1 100)", "--at", "1"], 12),
])
def test_syntax_errors_exit_2_with_a_caret_and_no_traceback(args, column):
    result = run(*args, check_exit=2)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1].index("^") - 2 == column - 1
    assert f"column {column}" in lines[0]


def test_semantic_and_usage_errors_exit_2():
    assert "did you mean 'cosine'" in run("parse", "cosin(0.1, 10)", check_exit=2).stderr
    assert "pass total=" in run("parse", "cosine(0.1, 50%)", check_exit=2).stderr
    assert "Traceback" not in run("eval", "0.1", "--at", "x", check_exit=2).stderr
    run("frobnicate", check_exit=2)
    run("parse", "--ticks", "nope", "0.1", check_exit=2)


def test_check_reports_bad_expressions_with_file_and_line(tmp_path):
    config = tmp_path / "conf.yaml"
    config.write_text("defaults:\n  - schedule: cosine\n"
                      "good:\n  expr: warmup(5) >> cosine(0.1, 100)\n"
                      "bad:\n  schedule: warmup(5) >> cosin(0.1, 100)\n"
                      "interpolated: {expr: '${oc.env:SCHEDULE}'}\n")
    result = run("check", str(config), check_exit=1)
    lines = result.stderr.splitlines()
    assert lines[0] == f"{config}:6: unknown schedule 'cosin'; did you mean 'cosine'?"
    assert lines[1].strip() == "warmup(5) >> cosin(0.1, 100)"
    assert lines[2].index("^") == lines[1].index("cosin")
    assert "2 expression(s) checked, 1 bad" in result.stderr
    config.write_text("a:\n  expr: |\n    warmup(5)  # ramp\n    >> cosine(0.1, 100)\n")
    assert "1 expression(s) checked, 0 bad" in run("check", str(tmp_path)).stdout


def test_python_dash_m_lrdsl():
    result = subprocess.run([sys.executable, "-m", "lrdsl", "eval", "0.1", "--at", "3"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "3\t0.1\n"


def test_parse_and_terminal_plot_import_no_heavy_module():
    code = ("import sys; from lrdsl.cli import main; "
            "main(['parse', '--plot', 'warmup(5) >> cosine(0.1, 100)']); "
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'matplotlib', 'numpy') if m in sys.modules]; "
            "sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
