"""The installed ``lrdsl`` console script, driven in subprocesses."""

import itertools
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


def test_parse_names_the_plateau_atol_and_running_best_only_when_set():
    out = run("parse", "0.1 | plateau(loss, 0.2, atol=0.01, best=running)").stdout.splitlines()
    assert out[-1].strip().endswith("threshold 0.0001 (rel), atol 0.01, running best")
    out = run("parse", "0.1 | plateau(loss, 0.2, atol=0, best=improvement)").stdout.splitlines()
    assert out[0] == "0.1 | plateau(loss,factor=0.2)" and out[-1].strip().endswith("threshold 0.0001 (rel)")


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


def test_parse_describes_a_quantized_schedule_and_plots_its_stairs(tmp_path):
    expr, units = "warmup(2ep) >> quantize(cosine(0.1, 8ep), 1ep)", ("--steps-per-epoch", "10")
    out = run("parse", expr, *units).stdout.splitlines()
    assert out[0] == "warmup(2ep) >> quantize(cosine(0.1,8ep),1ep)"
    assert out[2].split() == ["[20,", "100)", "quantize", "0.1", "→", "0", "cosine", "held", "per",
                              "1", "epoch"]
    assert out[3].strip() == "then 0"
    assert "held per 10 ticks" in run("parse", "quantize(exp(0.1, 0.5), 10)").stdout
    data = json.loads(run("parse", "--json", expr, *units).stdout)
    assert data["ast"]["sequence"][1] == {
        "quantize": {"call": "cosine", "args": {"lr": 0.1, "d": "8ep", "min": 0.0}}, "every": "1ep"}
    plot = run("parse", "--plot", expr, *units).stdout
    heights = [h for h in _braille_columns(plot) if h is not None]
    falling = heights[heights.index(max(heights)):]
    assert all(b <= a + 0.5 for a, b in zip(falling, falling[1:]))
    # eight epochs of cosine: eight flat steps of ~18 columns each, not a smooth curve
    runs = [len(list(run)) for _, run in itertools.groupby(falling)]
    assert sum(length >= 12 for length in runs) >= 8, runs
    smooth = run("parse", "--plot", "warmup(2ep) >> cosine(0.1, 8ep)", *units).stdout
    smooth_heights = [h for h in _braille_columns(smooth) if h is not None]
    smooth_runs = [len(list(run)) for _, run in itertools.groupby(
        smooth_heights[smooth_heights.index(max(smooth_heights)):])]
    assert sum(length >= 12 for length in smooth_runs) < 4, smooth_runs
    target = tmp_path / "q.png"
    assert f"wrote {target}" in run("parse", "--plot", str(target), expr, *units).stdout
    assert _png_size(target) == (800, 450)


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


def _pixels(plot: str) -> list[list[int]]:
    """The braille plot's dots as rows of 0/1 pixels (top first)."""
    rows = [line.split("┤", 1)[-1].split("│", 1)[-1] for line in plot.splitlines()
            if ("┤" in line or "│" in line) and "└" not in line]
    bits = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
    return [[1 if (ord(cell) - 0x2800) & bits[k][sub] else 0 for cell in row for sub in (0, 1)]
            for row in rows for k in range(4)]


def test_terminal_plot_overlays_several_expressions_with_distinct_patterns_and_a_legend():
    out = run("parse", "--plot", "0.1", "0.05").stdout
    lines = out.splitlines()
    assert lines[:5] == ["0.1", "  [0, ∞)  constant  from 0.1", "", "0.05", "  [0, ∞)  constant  from 0.05"]
    legend = lines[-2:]
    assert legend[0].split() == ["⠒⠒⠒⠒", "0.1"] and legend[1].split() == ["⠂⠂⠂⠂", "0.05"]
    pixels = _pixels(out)
    drawn = [r for r, row in enumerate(pixels) if any(row)]
    assert drawn == [0, len(pixels) - 1]  # one scale: 0.1 on the top pixel row, 0.05 on the bottom one
    assert all(pixels[0])  # the first series: solid
    assert pixels[-1] == [1 - x % 2 for x in range(len(pixels[-1]))]  # the second: every other dot
    assert "\x1b[" not in out  # no colour when not on a terminal
    # the same from a repeated --plot, and expressions after a FILE (checked in the PNG test)
    assert run("parse", "--plot", "0.1", "--plot", "0.05").stdout == out


def test_terminal_overlay_keeps_each_curve_and_colours_on_request():
    from lrdsl.language.plan import plan
    from lrdsl.plot.text import COLORS, render, render_many

    first = plan("warmup(20) >> cosine(0.1, 80)")
    flat = render_many([("a", first.value_at), ("b", lambda t: 0.02)], 110, width=60, height=10)
    alone = render(first.value_at, 110, width=60, height=10)
    # the solid series' pixels are those of its own plot (the dotted one adds only even columns)
    for with_b, own in zip(_pixels(flat), _pixels(alone)):
        assert all(w == o for x, (w, o) in enumerate(zip(with_b, own)) if x % 2 == 1)
    colored = render_many([("a", first.value_at), ("b", lambda t: 0.02)], 110, width=60, height=10, color=True)
    assert f"\x1b[{COLORS[0]}m" in colored and f"\x1b[{COLORS[1]}m" in colored
    assert colored.splitlines()[-1].endswith("  b") and "\x1b[0m" in colored.splitlines()[-1]


def test_plot_to_png_overlays_several_expressions_with_a_legend(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "two.png"
    out = run("parse", "--plot", str(target), "warmup(20) >> cosine(0.1, 80)", "cosine(0.05, 100)").stdout
    assert out.splitlines()[-1] == f"wrote {target}" and _png_size(target) == (800, 450)
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(target)[..., :3]
    for color in ("#1f77b4", "#ff7f0e"):  # tab:blue and tab:orange: one line each
        rgb = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).max(axis=-1) < 0.05).sum() > 300, color
    from lrdsl.plot.image import figure

    fig = figure(["warmup(20) >> cosine(0.1, 80)", "cosine(0.05, 100)"], ticks=110)
    ax = fig.axes[0]
    series = [line for line in ax.get_lines() if not line.get_label().startswith("_")]  # not the boundaries
    assert [line.get_label() for line in series] == ["warmup(20) >> cosine(0.1,80)", "cosine(0.05,100)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["warmup(20) >> cosine(0.1,80)", "cosine(0.05,100)"]
    t = np.minimum(np.arange(110), 100)
    np.testing.assert_allclose(series[1].get_ydata(), 0.05 * (1 + np.cos(np.pi * t / 100)) / 2, atol=1e-15)
    bad = run("parse", "--plot", str(tmp_path / "a.png"), "--plot", str(tmp_path / "b.png"), "0.1", check_exit=2)
    assert "--plot takes one FILE" in bad.stderr
    (tmp_path / "file").write_text("")
    bad = run("parse", "0.1", "--plot", str(tmp_path / "file" / "lr.png"), "--ticks", str(10 ** 9), check_exit=2)
    assert bad.stderr == f"lrdsl parse: cannot write {tmp_path / 'file' / 'lr.png'} (FileExistsError: File exists)\n"


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
    assert "pass --total" in run("parse", "cosine(0.1, 50%)", check_exit=2).stderr
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
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'matplotlib', 'numpy', 'yaml') if m in sys.modules]; "
            "sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- hostile input: never a traceback -------------------------------------------------------

STRANGE = [
    "", " ", "\n" * 50, "\x00", "0.1\x00", "\x1b[31m", "\u202e0.1", "\ud800", "𝟙", "٣", "١e٣",
    "1e400", "-1e400", "nan", "-nan", "inf", "-inf", "-5", "-1", "0", "1e308", "-1e308", "5e-324", "0x10",
    "1_000", "%", "50%", "'", '"""', "\\", "${oc.env:X}", "{", "[", "&a *a", "x" * 20_000, "1" * 5_000,
    "(" * 3_000 + "0.1" + ")" * 3_000, "[" * 3_000, "0.1 >> " * 500 + "0.1", "cosine(0.1, 10) * " * 300 + "0.1",
    "cosine(0.1, ٣)", "cosine(0.1, 1e400)", "cosine(1e308, 1e308)", "step(0.1, 1e-300)", "exp(0.1, 1e-300)",
    "warmup(1e308) >> cosine(0.1, 1e308)", "repeat(cosine(0.1, 10), 1e308)", "cosine(0.1, 50%)",
    "0.1 | plateau(val_loss, 1e400)", "cosine(0.1, 100) | plateau(nan, 0.5)", "piecewise([5, 1], [1, 2, 3])",
]


def _call(argv, capsys) -> tuple[int, str, str]:
    """cli.main in this process: (exit status, stdout, stderr)."""
    from lrdsl.cli import main

    try:
        status = main(argv)
    except SystemExit as exit:  # argparse's usage errors, --help, --version
        status = exit.code if isinstance(exit.code, int) else 2
    out, err = capsys.readouterr()
    return status, out, err


def _hostile_argvs(s: str, tmp_path: Path) -> list[list[str]]:
    config = tmp_path / "strange.yaml"
    config.write_text("expr: " + json.dumps(s) + "\n", encoding="utf-8")  # JSON strings are YAML
    raw = tmp_path / "raw.yaml"
    raw.write_bytes(b"schedule: " + s.encode("utf-8", "surrogatepass"))
    return [
        ["parse", s], ["parse", "--", s], ["parse", "--plot", "-", "--", s], ["parse", "--json", "--", s],
        ["parse", "--plot", s], ["parse", "--log", "--plot", "-", "--", s],
        ["eval", "--at", "0,1,1e9", "--", s], ["eval", "cosine(0.1, 100)", "--at", s],
        ["eval", "0.1 | plateau(val_loss, 0.5)", "--at", "0,5", "--metric", s],
        ["parse", "--plot", "-", "--ticks", s, "cosine(0.1, 100)"], ["parse", "--total", s, "cosine(0.1, 50%)"],
        ["parse", "--steps-per-epoch", s, "cosine(0.1, 2ep)"], ["list", "--", s],
        ["check", str(config)], ["check", str(raw)], ["check", "--total", s, str(config)],
        ["check", "--", s], [s], ["compare", "--", s],
    ]


def test_hostile_input_never_gives_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("LRDSL_DEBUG", raising=False)
    bogus = tmp_path / "no-such-sweep"
    cases = [argv for s in STRANGE for argv in _hostile_argvs(s, tmp_path)]
    cases += [["compare", str(bogus)], ["compare", str(tmp_path)], ["check", str(bogus)], ["--version"], []]
    for argv in cases:
        status, out, err = _call(argv, capsys)
        shown = f"{[a[:40] for a in argv]} -> {status}\n{out[-500:]}\n{err[-500:]}"
        assert status in (0, 1, 2), shown
        assert "Traceback" not in out + err, shown
        if status == 2 and argv and argv[0] in ("parse", "eval", "list", "check"):
            assert err.splitlines()[-1].strip() and not err.startswith("  File "), shown
        if argv and argv[0] in ("list", "check", "compare"):  # odd names and files are usage errors
            assert "internal error" not in err, shown
    assert len(cases) > 900


def test_internal_errors_are_one_line_and_ctrl_c_is_quiet(capsys, monkeypatch):
    import lrdsl.cli

    monkeypatch.delenv("LRDSL_DEBUG", raising=False)
    for error in (OverflowError("math range error"), RecursionError("maximum recursion depth exceeded"),
                  MemoryError(), ValueError("array must not contain infs or NaNs"),
                  UnicodeEncodeError("ascii", "→", 0, 1, "ordinal not in range(128)"), KeyError("x\ny")):
        def boom(args, error=error):
            raise error
        monkeypatch.setattr(lrdsl.cli, "cmd_eval", boom)
        status, out, err = _call(["eval", "0.1", "--at", "1"], capsys)
        assert status == 2 and out == ""
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"lrdsl eval: internal error: {type(error).__name__}: ") and "please report" in err

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(lrdsl.cli, "cmd_parse", interrupted)
    assert _call(["parse", "0.1"], capsys) == (130, "", "")

    monkeypatch.setenv("LRDSL_DEBUG", "1")  # the way to the traceback stays open
    with pytest.raises(KeyError):
        lrdsl.cli.main(["eval", "0.1", "--at", "1"])


@pytest.mark.parametrize("args, words", [
    (["eval", "0.1", "--at", "nan"], "--at takes finite ticks ≥ 0"),
    (["eval", "0.1", "--at", "1e400"], "--at takes finite ticks ≥ 0"),
    (["eval", "0.1", "--at", "inf"], "--at takes finite ticks ≥ 0"),
    (["eval", "0.1", "--at", "0,-1"], "--at takes finite ticks ≥ 0"),
    (["eval", "0.1", "--at", ","], "--at takes finite ticks ≥ 0"),
    (["parse", "0.1", "--plot", "-", "--ticks", "-5"], "--ticks takes a whole number"),
    (["parse", "0.1", "--plot", "-", "--ticks", "0"], "--ticks takes a whole number"),
    (["parse", "0.1", "--plot", "-", "--ticks", "1e12"], "--ticks takes a whole number"),
    (["parse", "0.1", "--plot", "-", "--ticks", str(2 ** 53 + 1)], "--ticks takes a whole number"),
    (["parse", "0.1", "--total", "nan"], "total must be a positive number"),
    (["check", ".", "--total", "0"], "--total must be a positive number"),
    (["check", ".", "--steps-per-epoch", "inf"], "--steps-per-epoch must be a positive number"),
])
def test_bad_numbers_give_one_line_errors(args, words, capsys):
    status, out, err = _call(args, capsys)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(f"lrdsl {args[0]}: ") and words in err, err


def test_huge_ticks_plot_samples_only_the_drawn_columns(capsys):
    from lrdsl.plot.text import render

    calls = []

    def lr(t):
        calls.append(t)
        return 0.1 * (1 - t / 2 ** 53)
    plot = render(lr, 2 ** 53, width=60, height=8)
    columns = 60 - 9 - 2
    assert len(calls) == 2 * columns  # one sample per braille dot column, whatever the tick count
    assert max(calls) <= 2 ** 53 - 1 and calls == sorted(calls)
    assert "9007199254740992" in plot  # the x axis ends at the tick count
    status, out, _ = _call(["parse", "--plot", "-", "--ticks", str(2 ** 53), "cosine(0.1, 1e15)"], capsys)
    assert status == 0 and "└" in out


@pytest.mark.parametrize("lr, log", [
    (lambda t: 1e308, False), (lambda t: 1.7976931348623157e308, False), (lambda t: 1e308, True),
    (lambda t: -1e308 if t < 50 else 1e308, False), (lambda t: 5e-324, False), (lambda t: 5e-324, True),
])
def test_terminal_plot_of_values_at_float64_extremes(lr, log):
    from lrdsl.plot.text import render

    lines = render(lr, 100, width=40, height=8, log=log).splitlines()
    labels = [float(line.split("┤")[0]) for line in lines if "┤" in line]
    assert len(labels) == 3 and labels == sorted(labels, reverse=True) and labels[0] > labels[-1]
    assert any(c != chr(0x2800) for line in lines[:8] for c in line.split("┤")[-1].split("│")[-1])
    values = [lr(t) for t in range(100)]
    assert labels[-1] <= min(values) and max(values) <= labels[0]


def test_version(capsys):
    assert _call(["--version"], capsys) == (0, f"lrdsl {lrdsl.__version__}\n", "")


def test_long_and_control_character_errors_are_cut_around_the_caret(capsys):
    status, _, err = _call(["parse", "cosine(0.1, 0." + "1" * 4998 + ",, 10)" + " " * 5000], capsys)
    lines = err.splitlines()
    assert status == 2 and len(lines) == 3 and max(map(len, lines)) < 200, err
    assert "column 5014" in lines[0]  # len("cosine(0.1, ") + 5000 + 2
    assert lines[1][lines[2].index("^")] == "," and lines[1][lines[2].index("^") - 1] == ","
    status, _, err = _call(["parse", "0.1 >> \x1b[2J\x00"], capsys)
    assert status == 2 and "\x1b" not in err and "\x00" not in err and "\\x1b" in err


def test_real_processes_survive_hostile_input(tmp_path):
    deep = "(" * 50_000 + "0.1" + ")" * 50_000
    for args in (["parse", "--plot", "-", deep], ["eval", "0.1", "--at", "nan"], ["parse", "٣", "--json"]):
        result = subprocess.run([str(LRDSL), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode in (0, 2) and "Traceback" not in result.stdout + result.stderr
    # argv that is not UTF-8, and a terminal that only takes ASCII
    result = subprocess.run([str(LRDSL), "parse", b"cosine(0.1, \xff)", "--plot"], capture_output=True,
                            env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=60)
    assert result.returncode == 2 and b"Traceback" not in result.stderr and b"\\udcff" in result.stderr
    result = subprocess.run([str(LRDSL), "parse", "warmup(5) >> cosine(0.1, 100)", "--plot"],
                            capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=60)
    assert result.returncode == 0 and b"\\u2192" in result.stdout  # → written as an escape


def test_parse_eval_and_plot_a_quotient():
    rex = "0.1 * anneal(1, 0, 100, shape=linear) / anneal(1, 0.5, 100, shape=linear)"
    data = json.loads(run("parse", "--json", rex).stdout)
    assert data["canonical"] == "0.1 * anneal(1,0,100,shape=linear) / anneal(1,0.5,100,shape=linear)"
    assert data["duration"] == 100 and [s["name"] for s in data["segments"]] == ["quotient"]
    dividend, divisor = data["ast"]["quotient"]
    assert dividend["product"][0]["call"] == "const" and divisor["args"]["end"] == 0.5
    lines = run("eval", rex, "--at", "0,50,100").stdout.split("\n")
    # REX: 0.1·(1 − x)/(1 − x/2), x = t/100
    assert [float(line.split()[1]) for line in lines if line] == pytest.approx(
        [0.1, 0.1 * 0.5 / 0.75, 0.0], rel=1e-9)
    plot = run("parse", "--plot", "-", "--", rex).stdout
    assert "quotient" in plot and "┤" in plot
    error = run("parse", "1 / cosine(0.1, 100)", check_exit=2).stderr
    assert "the divisor of '/', cosine(0.1,100), may reach 0" in error and "^" in error
