"""``lrdsl check``: plans every expression found in YAML, warns about its length, and survives
whatever files it is handed (one line each, never a hang or a traceback)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import lrdsl.cli.check
from lrdsl.cli.check import MAX_BYTES, MAX_DEPTH, check_file

LRDSL = Path(sys.executable).parent / "lrdsl"


def check(capsys, *args) -> tuple[int, str, str]:
    from lrdsl.cli import main

    status = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def reported_lines(err: str, path: Path) -> list[int]:
    """Line numbers of the problems reported for ``path`` (0 for whole-file problems)."""
    lines = []
    for line in err.splitlines():
        if line.startswith(f"{path}:"):
            rest = line[len(f"{path}:"):]
            lines.append(int(rest.split(":")[0]) if rest.split(":")[0].isdigit() else 0)
    return lines


SEMANTIC = """\
a:
  expr: warmup(5) >> cosine(-1, 10)
b:
  schedule: exp(0.1, 0.9) >> 0.1 >> cosine(0.1, 10)
c: {expr: "cosine(0.1, 2ep) >> step(0.1, 10st)"}
d:
  expr: |
    warmup(5)
    >> cosin(0.1, 100)
e: {expr: "piecewise([50%, 20%], [0.1, 0.01, 0.001])"}
f: {expr: "warmup(10%) >> cosine(0.1, 90%)"}
g: {expr: "cosine(0.1, 100)"}
"""


def test_semantic_errors_are_reported_per_expression_with_file_and_line(tmp_path, capsys):
    config = tmp_path / "semantic.yaml"
    config.write_text(SEMANTIC)
    status, out, err = check(capsys, config)
    assert status == 1 and out == ""
    # 2: a range error, 4: two unbounded segments before the last (one may stretch), 5: ep and st mixed without
    # steps_per_epoch, 9: the second line of a block scalar, 10: out of order, found even without
    # --total (planned against the placeholder total); f and g are fine
    assert reported_lines(err, config) == [2, 4, 5, 9, 10]
    assert "7 expression(s) checked, 5 bad" in err
    first = err.splitlines()[:3]  # the message, the expression, a caret under the bad argument
    assert "cosine(-1," in first[1] and first[1][first[2].index("^"):].startswith("-1")  # under the argument
    status, _, err = check(capsys, config, "--steps-per-epoch", "10")
    assert reported_lines(err, config) == [2, 4, 9, 10]


def test_percent_without_total_is_no_error_and_with_total_is_planned(tmp_path, capsys):
    config = tmp_path / "percent.yaml"
    config.write_text("s: {expr: 'warmup(10%) >> cosine(0.1, 90%)'}\n"
                      "t: {expr: 'piecewise([50%, 75%], [0.1, 0.01, 0.001])'}\n")
    assert check(capsys, config) == (0, f"2 expression(s) checked, 0 bad — in {config} (expr ×2)\n", "")
    status, out, err = check(capsys, config, "--total", "1000")
    assert (status, err) == (0, "") and out.endswith(f"2 expression(s) checked, 0 bad — in {config} (expr ×2)\n")


def test_total_warns_when_a_schedule_ends_well_before_or_after_the_run(tmp_path, capsys):
    total, per_epoch = 10_000, 100
    config = tmp_path / "lengths.yaml"
    config.write_text("early: {expr: 'warmup(10%) >> cosine(0.1, 40%)'}\n"  # ends at 0.5 total
                      "late: {expr: 'cosine(0.1, 20000)'}\n"
                      "fits: {expr: 'warmup(5%) >> cosine(0.1, 95%)'}\n"
                      "near: {expr: 'cosine(0.1, 9500)'}\n"  # 95 %: close enough
                      "forever: {expr: 'exp(0.1, 0.9)'}\n"  # unbounded: nothing to compare
                      "epochs: {expr: 'cosine(0.1, 50ep)'}\n")
    status, out, err = check(capsys, config, "--total", total, "--steps-per-epoch", per_epoch)
    assert (status, err) == (0, "")  # warnings go to stdout and do not fail the check
    lines = out.splitlines()
    assert lines[0].startswith(f"{config}:1: warning: ")
    assert f"ends at tick {int(0.1 * total + 0.4 * total)} of {total}" in lines[0]
    assert lines[1].startswith(f"{config}:2: warning: ") and f"ends at tick 20000 of {total}" in lines[1]
    assert lines[2].startswith(f"{config}:6: warning: ") and f"ends at tick {50 * per_epoch} of {total}" in lines[2]
    assert lines[3:] == [f"6 expression(s) checked, 0 bad, 3 warning(s) — in {config} (expr ×6)"]
    _, out, _ = check(capsys, config, "--steps-per-epoch", per_epoch)
    assert "warning" not in out  # no --total: no length to compare with


def test_alias_bombs_are_not_expanded(tmp_path, capsys):
    """9 levels of 9 aliases would be 9**9 expressions if expanded; the text has one."""
    laughs = tmp_path / "laughs.yaml"
    names = "abcdefghij"
    text = "a: &a [{expr: 'cosine(0.1, 10)'}, x, x, x, x, x, x, x, x]\n"
    text += "".join(f"{names[i + 1]}: &{names[i + 1]} [{', '.join([f'*{names[i]}'] * 9)}]\n" for i in range(9))
    laughs.write_text(text + "expr: *j\n")
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("a: &a [*a, *a, {expr: 'cosin(0.1, 10)'}]\nb: &b {self: *b, expr: *a}\n")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("shared: &s 'cosin(0.1, 10)'\nrun: {expr: *s}\n")
    start = time.perf_counter()
    assert check_file(laughs)[:2] == (1, [])
    found, problems, _ = check_file(recursive)
    assert found == 1 and [p.line for p in problems] == [1]
    found, problems, _ = check_file(scalar)  # an alias used as an expression is checked
    assert found == 1 and [p.line for p in problems] == [1]
    assert time.perf_counter() - start < 1.0


def test_deep_nesting_stops_early(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text("[" * 1_000_000)
    block = tmp_path / "block.yaml"
    block.write_text("".join("  " * i + "- \n" for i in range(1_000)))
    shallow = tmp_path / "shallow.yaml"
    shallow.write_text("[" * (MAX_DEPTH - 1) + "{expr: 'cosine(0.1, 10)'}" + "]" * (MAX_DEPTH - 1))
    start = time.perf_counter()
    for path in (flow, block):
        found, problems, _ = check_file(path)
        assert found == 0 and len(problems) == 1 and f"deeper than {MAX_DEPTH}" in problems[0].message
    assert check_file(shallow)[:2] == (1, [])
    assert time.perf_counter() - start < 1.0


def test_expressions_before_a_yaml_error_are_still_checked(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("a: {expr: 'cosin(0.1, 10)'}\nb: [1, 2\nc: }\n")
    found, problems, _ = check_file(config)
    assert found == 1 and [p.line for p in problems][0] == 1
    assert len(problems) == 2 and problems[1].message.startswith("not YAML: ") and "\n" not in str(problems[1])
    assert problems[1].line == 3  # where the parser found the unclosed [ of line 2 ends


def test_files_that_are_not_yaml_text_get_one_line_each(tmp_path, capsys, monkeypatch):
    files = {
        "binary.yaml": b"expr: \x00\x01\x02", "latin1.yaml": b"expr: caf\xe9", "control.yaml": b"expr: a\x07b",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: costs no disk
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it to read would block forever
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("expr: cosine(0.1, 10)\n")
    opened = []
    real_open = open
    monkeypatch.setattr(lrdsl.cli.check, "open", lambda path, *a: opened.append(Path(path)) or real_open(path, *a),
                        raising=False)
    paths = [*(tmp_path / name for name in files), huge, fifo, empty, tmp_path / "missing.yaml"]
    status, out, err = check(capsys, *paths)
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == len(paths) + 1 and lines[-1] == f"0 expression(s) checked, {len(paths)} bad — in 0 files"
    for path, line in zip(sorted(paths), sorted(lines[:-1])):
        assert line.startswith(f"{path}: ")
    said = {Path(line.split(": ", 1)[0]): line.split(": ", 1)[1] for line in lines[:-1]}
    assert said[tmp_path / "binary.yaml"].startswith("binary file")
    assert said[tmp_path / "latin1.yaml"] == "not UTF-8 text (byte 0xe9 at offset 9)"
    assert said[tmp_path / "control.yaml"].startswith("not YAML: ")
    assert said[huge].startswith("too large") and said[fifo] == "not a regular file"
    assert said[empty].startswith("no .yaml or .yml files")
    assert huge not in opened and fifo not in opened  # refused unread


def test_unreadable_files_and_directories(tmp_path, capsys, monkeypatch):
    (tmp_path / "a.yaml").write_text("expr: cosine(0.1, 10)\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.yaml").write_text("expr: cosine(0.1, 10)\n")

    def denied(path, *args):  # what a file without read permission gives (tests may run as root)
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(lrdsl.cli.check, "open", denied, raising=False)
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": denied(path) if Path(path) == locked else real_scandir(path))
    status, _, err = check(capsys, tmp_path)
    assert status == 1
    assert err.splitlines() == [f"{tmp_path / 'a.yaml'}: cannot read: Permission denied",
                                f"{locked}: cannot list: Permission denied",
                                "0 expression(s) checked, 2 bad — in 0 files"]
    status, _, err = check(capsys, locked)  # one line, not also "no .yaml files"
    assert status == 1 and err.splitlines() == [f"{locked}: cannot list: Permission denied",
                                                "0 expression(s) checked, 1 bad — in 0 files"]


def test_a_real_process_over_hostile_files_does_not_hang(tmp_path):
    (tmp_path / "deep.yaml").write_text("{" * 200_000)
    (tmp_path / "laughs.yaml").write_text("a: &a [x, x]\n" + "".join(
        f"l{i}: &l{i} [*{'a' if i == 0 else f'l{i - 1}'}, *{'a' if i == 0 else f'l{i - 1}'}]\n" for i in range(60)))
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe\x00expr")
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "ok.yaml").write_text("expr: warmup(5) >> cosine(0.1, 100)\n")
    result = subprocess.run([str(LRDSL), "check", str(tmp_path), str(tmp_path / "pipe.yaml"), "/dev/zero"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert lines[-1] == "1 expression(s) checked, 5 bad — in 3 files (expr ×1)", result.stderr
    assert len(lines) == 6 and all(line.startswith(("/tmp", "/dev")) for line in lines[:-1])


def test_target_expressions_are_checked_like_the_lr(tmp_path, capsys):
    config = tmp_path / "targets.yaml"
    config.write_text("expr: onecycle(0.1, 100)\n"
                      "momentum: onecycle(0.85, 100, start=0.95, end=0.95)\n"
                      "weight_decay: anneal(0.04, 0.4, 100)\n"
                      "beta2: anneal(0.99, 0.999, 100)\n"
                      "optimizer: {momentum: 0.9, weight_decay: 0}\n"  # numbers: not expressions
                      "beta1: cosin(0.1, 10)\n")                # not a target key: not read
    assert check(capsys, config) == (0, f"4 expression(s) checked, 0 bad — in {config} "
                                     f"(beta2 ×1, expr ×1, momentum ×1, weight_decay ×1)\n", "")
    config.write_text("momentum: onecycle(0.85, 100, start=0.95, end=2ep)\n"
                      "beta2: anneal(0.99, 2, 100)\n")
    status, _, err = check(capsys, config)
    assert status == 1 and reported_lines(err, config) == [1, 2]
    assert "beta2: anneal(0.99,2,100) reaches 2; a beta2 must stay below 1" in err


def test_a_key_that_looks_like_an_expression_key_is_reported(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("run:\n  exrp: warmup(5) >> cosine(0.1, 100)\n"  # an expression under a misspelt key
                      "  momentun: cosine(0.9, 100)\n"
                      "optimizer: {beta1: 0.9, scheduler: cosine}\n"  # near a key, but no expression: left alone
                      "beta1: cosin(0.1, 10)\n"                      # does not parse: not an expression
                      "ok: {expr: 'cosine(0.1, 100)'}\n")
    status, out, err = check(capsys, config)
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == (f"{config}:2: exrp: not a key lrdsl reads, so this expression is not checked; "
                        f"did you mean 'expr'?")
    assert lines[1].strip() == "warmup(5) >> cosine(0.1, 100)"
    assert lines[2].startswith(f"{config}:3: momentun: ") and lines[2].endswith("did you mean 'momentum'?")
    assert lines[-1] == f"1 expression(s) checked, 2 bad — in {config} (expr ×1)"
    assert reported_lines(err, config) == [2, 3]


def test_unit_keys_beside_an_expression_plan_it(tmp_path, capsys):
    config = tmp_path / "units.yaml"
    config.write_text("a:\n  expr: warmup(1ep) >> cosine(0.1, 9ep) >> cosine(0.01, 10st)\n  steps_per_epoch: 8\n"
                      "b:\n  expr: warmup(1ep) >> cosine(0.1, 9ep) >> cosine(0.01, 10st)\n"  # no units here
                      "c: {total: 1000, expr: 'warmup(10%) >> cosine(0.1, 40%)'}\n"  # ends at 500 of 1000
                      "d: {expr: 'cosine(1, 2ep)', clock: tokens, tokens_per_epoch: 1000}\n")
    status, out, err = check(capsys, config)
    assert status == 1 and reported_lines(err, config) == [5]  # only b: ep and st without steps_per_epoch
    assert "--steps-per-epoch" in err
    assert out.splitlines()[0] == (f"{config}:6: warning: the schedule ends at tick {int(0.5 * 1000)} of 1000 "
                                   f"(before 90% of --total)")
    # the key beside the expression is more specific than the flag, which still serves the others
    status, out, err = check(capsys, config, "--steps-per-epoch", "3", "--total", "2000")
    assert status == 0 and err == ""
    assert f"ends at tick {int(0.5 * 1000)} of 1000" in out  # c: its own total, not the flag's
    assert f"ends at tick {10 * 3 + 10} of 2000" in out       # b: the flag's


def test_a_file_with_nothing_to_check_is_no_silent_success(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("model: {layers: 2}\nexr: 0.1\n")
    status, _, err = check(capsys, empty)  # named: it was meant to hold expressions
    assert status == 1
    assert err.splitlines()[0].startswith(f"{empty}: no schedule expression in this file (lrdsl check reads "
                                          f"the keys expr, schedule, momentum")
    assert err.splitlines()[1] == f"0 expression(s) checked, 1 bad — in {empty}"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "model.yaml").write_text("layers: 2\n")
    status, _, err = check(capsys, folder)  # walked: no file of its own to blame, but nothing checked
    assert status == 1 and err == ("0 expression(s) checked, 0 bad — in " f"{folder / 'model.yaml'}: nothing to "
                                   "check (lrdsl check reads the keys expr, schedule, momentum, beta2, "
                                   "weight_decay, ema, dropout, batch_size, seq_len)\n")
    (folder / "run.yaml").write_text("expr: cosine(0.1, 100)\n")
    status, out, err = check(capsys, folder)  # a walked file without expressions is fine
    assert (status, err) == (0, "") and out == "1 expression(s) checked, 0 bad — in 2 files (expr ×1)\n"
