"""The CLI on programs and clocks: ``lrdsl parse``/``eval``/``check`` (LANGUAGE.md §8, §9)."""

import math

import pytest

from lrdsl.cli import main


def run(capsys, *args):
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_parse_prints_each_channel_with_its_segments(capsys):
    status, out, _ = run(capsys, "parse", "lr = warmup(5) >> cosine(0.1, 50); kl = linear(0, 1, 20)")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "lr = warmup(5) >> cosine(0.1,50)"
    assert lines[1].split()[:3] == ["[0,", "5)", "warmup"]
    assert "kl = linear(0,1,20)" in lines
    assert lines[lines.index("kl = linear(0,1,20)") + 1].split()[:3] == ["[0,", "20)", "linear"]


def test_parse_plots_a_panel_per_channel(capsys, tmp_path):
    status, out, _ = run(capsys, "parse", "lr = cosine(0.1, 50); kl = linear(0, 1, 20)", "--plot")
    assert status == 0
    assert "\nlr\n" in out and "\nkl\n" in out
    path = tmp_path / "p.png"
    status, out, _ = run(capsys, "parse", "lr = cosine(0.1, 2ep); ema = anneal(0.99, 1, 2ep)",
                         "--clock", "tokens", "--tokens-per-epoch", "1000", "--plot", str(path))
    assert status == 0 and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_prints_a_column_per_channel_on_a_tokens_clock(capsys):
    status, out, _ = run(capsys, "eval", "lr = cosine(0.1, 1k tok); batch_size = piecewise([500tok], [4, 8])",
                         "--at", "0,400,500,1000", "--clock", "tokens")
    assert status == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0] == ["tick", "lr", "batch_size"]
    for (t, lr, batch), position in zip(rows[1:], [0, 400, 500, 1000]):
        assert float(t) == position
        assert float(lr) == pytest.approx(0.05 * (1 + math.cos(math.pi * position / 1000)), rel=1e-9, abs=1e-12)
        assert float(batch) == (4 if position < 500 else 8)


@pytest.mark.parametrize("args, words", [
    (("parse", "cosine(0.1, 2ep)", "--clock", "tokens"), "--tokens-per-epoch"),
    (("parse", "cosine(0.1, 100)", "--clock", "samples"), "bare number on a samples clock"),
    (("parse", "lr = 0.1; momentun = 0.9"), "'momentum' misspelt"),
    (("eval", "lr = 0.1; ema = 1.5", "--at", "0"), "ema must stay at most 1"),
    (("parse", "cosine(0.1, 10)", "--samples-per-step", "0"), "--samples-per-step must be a positive number"),
    (("parse", "lr = 0.1", "lr = 0.2"), "one program at a time"),
])
def test_program_and_clock_errors_are_one_line(capsys, args, words):
    status, _, err = run(capsys, *args)
    assert status == 2
    assert words in err and "Traceback" not in err


def test_check_reads_programs_in_yaml(capsys, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("schedule:\n  expr: cosine(0.1, 100)\n  ema: anneal(0.99, 1, 100)\n  kl: linear(0, 1, 10)\n"
                    "  unit: step\n  _target_: nothing\nprogram: |\n  schedule: x\n"
                    "other:\n  schedule: \"lr = 0.1\\nbatch_size = piecewise([50], [32, 64])\"\n")
    status, out, _ = run(capsys, "check", str(good))
    assert status == 0, out
    assert "4 expression(s) checked, 0 bad" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule:\n  expr: cosine(0.1, 100)\n  ema: anneal(0.99, 1.2, 100)\n"
                   "  dropout: cosin(0.5, 10)\nbatch_size: linear(0, 8, 10)\n"
                   "x:\n  schedule: \"lr = 0.1; momentun = 0.9\"\n")
    status, out, err = run(capsys, "check", str(bad))
    assert status == 1
    assert f"{bad}:3:" in err and "ema must stay at most 1" in err
    assert f"{bad}:4:" in err and "did you mean 'cosine'" in err
    assert f"{bad}:5:" in err and "batch_size is an integer" in err
    assert f"{bad}:7:" in err and "misspelt" in err


def test_constant_flags_take_scale_suffixes(capsys):
    status, out, _ = run(capsys, "eval", "cosine(1, 2ep)", "--at", "1000", "--clock", "tokens",
                         "--tokens-per-epoch", "1k")
    assert status == 0
    assert float(out.split()[1]) == pytest.approx(0.5, rel=1e-9)  # 1000 of 2000 tokens: halfway


@pytest.mark.parametrize("args, flag, python", [
    (("parse", "warmup(10%) >> cosine(0.1, 90%)"), "pass --total", "total="),
    (("parse", "cosine(0.1, 5ep) >> cosine(0.1, 10st)"), "pass --steps-per-epoch", "steps_per_epoch"),
    (("parse", "cosine(0.1, 5ep) >> cosine(0.1, 10)"), "--steps-per-epoch 1 if you step once per epoch",
     "steps_per_epoch"),
    (("eval", "cosine(1, 2ep)", "--at", "0", "--clock", "tokens"), "--tokens-per-epoch", "tokens_per_epoch"),
])
def test_cli_messages_name_flags_not_python_keywords(capsys, args, flag, python):
    status, _, err = run(capsys, *args)
    assert status == 2 and flag in err and python not in err, err


def test_check_messages_name_flags(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("expr: cosine(0.1, 5ep) >> cosine(0.1, 10st)\n")
    status, _, err = run(capsys, "check", str(path))
    assert status == 1 and "--steps-per-epoch" in err and "steps_per_epoch" not in err, err


def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path):
    # a notebook's inline backend must survive lrdsl.plot.save_figure (it called matplotlib.use("Agg"))
    import subprocess
    import sys
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import lrdsl.plot.image as image\n"
        f"image.save_figure('warmup(5) >> cosine(0.1, 100)', {str(tmp_path / 'a.png')!r}, ticks=120)\n"
        f"image.save_figure('lr = cosine(0.1, 100); kl = linear(0, 1, 10)', {str(tmp_path / 'b.png')!r}, ticks=120)\n"
        "print(matplotlib.get_backend())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "svg"
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "b.png").stat().st_size > 10_000
