"""The ``lrdsl`` command: parse, eval, list and check schedules (train and compare: Hydra app).

``lrdsl parse`` and the terminal plot import neither torch, TensorFlow, matplotlib nor numpy.
Errors go to stderr with a caret and no traceback; exit 2 for usage and expression errors.
Anything else that escapes a command is a bug: it is reported on one line (exit 2), with the
traceback only when ``LRDSL_DEBUG`` is set; Ctrl-C exits 130 quietly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import lrdsl
from lrdsl.cli.terminal import as_flags, escaped, one_line, pointed
from lrdsl.errors import LrdslError
from lrdsl.language.units import SUFFIXES
from lrdsl.programs import channel_plans, is_program, program

#: --ticks above this are not distinct float64 ticks (2**53), so a plot of them means nothing
MAX_TICKS = 2 ** 53


#: a number as the flags take it: ASCII digits only (Python's int() and float() also read
#: "９" and "١٢", which no one means to type as a tick count), optional sign and exponent
_NUMBER = re.compile(r"[+-]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9][0-9_]*)([eE][+-]?[0-9]+)?", re.ASCII)


def _number(text: str) -> float | None:
    """``text`` as a finite float, or None: ASCII digits only, no nan/inf, nothing that overflows."""
    text = text.strip()
    if not _NUMBER.fullmatch(text) or "__" in text:
        return None
    value = float(text.replace("_", ""))
    return value if math.isfinite(value) else None


def _positive(text: str | None, flag: str) -> float | None:
    """``--steps-per-epoch`` / ``--total`` / a constant: a positive finite number (None when not
    given), a scale suffix k, M, B or T allowed as in durations (``--tokens-per-epoch 1M``)."""
    if text is None:
        return None
    scale = SUFFIXES.get(text.strip()[-1:], 1.0)
    value = _number(text.strip()[:-1] if scale != 1.0 else text)
    if value is not None:
        value *= scale
    if value is None or value <= 0:
        raise LrdslError(f"{flag} must be a positive number, got {text!r}")
    return value


def _metrics(items: list[str] | None) -> dict[str, list[float]] | None:
    if not items:
        return None
    metrics = {}
    for item in items:
        name, _, values = item.partition("=")
        numbers = [_number(v) for v in values.split(",") if v.strip()]
        if None in numbers:
            raise LrdslError(f"--metric takes NAME=V1,V2,… (finite numbers), got {item!r}")
        metrics[name.strip()] = [n for n in numbers if n is not None]
        if not name.strip() or not metrics[name.strip()]:
            raise LrdslError(f"--metric takes NAME=V1,V2,…, got {item!r}")
    return metrics


def _tick_count(text: str | None) -> int | None:
    """``--ticks``: a whole number in [2, 2**53], checked here so the error is one line."""
    if text is None:
        return None
    digits = text.strip().replace("_", "")
    ticks = int(digits) if digits.isascii() and digits.isdigit() else None
    if ticks is None or not 2 <= ticks <= MAX_TICKS:
        raise LrdslError(f"--ticks takes a whole number of ticks from 2 to 2**53, got {text!r}")
    return ticks


def _ticks_at(text: str) -> list[float]:
    """``--at``: comma-separated finite ticks ≥ 0."""
    numbers = [_number(t) for t in text.split(",") if t.strip()]
    ticks = [t for t in numbers if t is not None and t >= 0]
    if not ticks or len(ticks) != len(numbers):
        raise LrdslError(f"--at takes finite ticks ≥ 0 like 0,10,100, got {text!r}")
    return ticks


#: the fixed conversion constants of a clock (docs/language.md "Clocks"), as flags
CONSTANT_FLAGS = ("samples_per_step", "tokens_per_sample", "samples_per_epoch", "tokens_per_epoch",
                  "tokens_per_step")


def _units(args) -> dict:
    """``--steps-per-epoch``, ``--total``, ``--clock`` and the constants, checked (argparse keeps
    them as text: float() would take "９", "nan" and "1e400")."""
    args.steps_per_epoch = _positive(args.steps_per_epoch, "--steps-per-epoch")
    args.total = _positive(args.total, "--total")
    units = {"steps_per_epoch": args.steps_per_epoch, "total": args.total}
    clock = getattr(args, "clock", None) or "ticks"
    if clock != "ticks":
        units["clock"] = clock
    for name in CONSTANT_FLAGS:
        value = _positive(getattr(args, name, None), "--" + name.replace("_", "-"))
        if value is not None:
            units[name] = value
    return units


def _add_units(parser: argparse.ArgumentParser, metric: bool = True) -> None:
    parser.add_argument("--steps-per-epoch", metavar="N",
                        help="ticks per epoch: converts ep durations (a tick is then a batch)")
    parser.add_argument("--total", metavar="N",
                        help="the run's length in ticks (in the clock's unit), for %% durations")
    parser.add_argument("--clock", choices=("ticks", "samples", "tokens"),
                        help="what a position counts (default ticks); positions are then samples or tokens")
    for name in CONSTANT_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), metavar="N",
                            help=f"fixed {name.replace('_', ' ')}: converts sp/tok/st/ep durations")
    if metric:
        parser.add_argument("--metric", action="append", metavar="NAME=V1,V2,…",
                            help="simulated plateau reports, one per epoch")


#: a --plot value that names a file: a path ending in a suffix like .png (an expression never
#: does); a wrong suffix (.jpg) is a file too, refused by lrdsl.plot with the suffixes it takes
_FILE = re.compile(r"[^()\s]*\.[A-Za-z][A-Za-z0-9]{0,4}")


def _plot_request(args) -> tuple[list[str], str | None]:
    """(the expressions, where to plot: None, "-" for the terminal, or a file).

    ``--plot`` may be given bare (terminal), with a FILE, or with an expression (then the plot
    is in the terminal): ``lrdsl parse --plot "a" "b"``, ``--plot out.png "a" "b"`` and
    ``--plot "a" --plot "b"`` all overlay a and b; expressions after --plot come first.
    """
    exprs = [item for item in (args.plot or []) if item != "-" and not _FILE.fullmatch(item)]
    files = [item for item in (args.plot or []) if item != "-" and _FILE.fullmatch(item)]
    if len(files) > 1:
        raise LrdslError(f"--plot takes one FILE, got {', '.join(map(repr, files))}")
    plot = files[0] if files else ("-" if args.plot else None)
    return exprs + list(args.expr), plot


def cmd_parse(args) -> int:
    from lrdsl.language.curve import lr_function
    from lrdsl.language.explain import default_ticks, describe, summary
    from lrdsl.language.plan import plan

    texts, plot = _plot_request(args)
    if not texts:
        raise LrdslError("lrdsl parse needs an expression, e.g. lrdsl parse \"warmup(5) >> cosine(0.1, 100)\"")
    units = _units(args)
    if any(is_program(text) for text in texts):
        if len(texts) > 1:
            raise LrdslError("lrdsl parse takes one program at a time (its channels are plotted in "
                             "panels); several expressions are overlaid")
        return _parse_program(texts[0], plot, units, args)
    compiled = [plan(text, **units) for text in texts]
    metrics = _metrics(args.metric)
    every = args.steps_per_epoch or 1
    ticks = _tick_count(args.ticks) or max(default_ticks(c) for c in compiled)
    several = len(compiled) > 1
    if args.json:
        summaries = [summary(c) for c in compiled]
        print(json.dumps(summaries if several else summaries[0], indent=2, ensure_ascii=False))
    else:
        for index, c in enumerate(compiled):
            if index:
                print()
            print(c.expr)
            for line in describe(c):
                print("  " + line)
    if plot == "-":
        from lrdsl.plot.text import render, render_many

        size = shutil.get_terminal_size((100, 24))
        shape = dict(width=size.columns, height=max(8, min(20, size.lines - 8 - len(compiled) * several)),
                     log=args.log, steps_per_epoch=args.steps_per_epoch)
        print()
        if not several:
            print(render(lr_function(compiled[0], metrics, every), ticks,
                         boundaries=compiled[0].boundaries(), **shape))
        else:
            boundaries = sorted({b for c in compiled for b in c.boundaries()})
            print(render_many([(str(c.expr), lr_function(c, metrics, every)) for c in compiled], ticks,
                              boundaries=boundaries, color=_color(), **shape))
    elif plot is not None:
        from lrdsl.plot.image import save_figure

        path = save_figure([c.expr for c in compiled] if several else compiled[0].expr, plot, ticks=ticks,
                           metrics=metrics, report_every=every if metrics else None, log=args.log,
                           **units)
        print(f"wrote {path}")
    return 0


def _parse_program(text: str, plot: str | None, units: dict, args) -> int:
    """``lrdsl parse`` of a program: its canonical text, each channel's segments, a panel each."""
    from lrdsl.language.curve import lr_function
    from lrdsl.language.explain import default_ticks, describe, summary

    compiled_program = program(text)
    plans = {name: found for name, (_, found) in channel_plans(compiled_program, **units).items()}
    ticks = _tick_count(args.ticks) or max(default_ticks(c) for c in plans.values())
    metrics = _metrics(args.metric)
    every = args.steps_per_epoch or 1
    if args.json:
        print(json.dumps({name: summary(c) for name, c in plans.items()}, indent=2, ensure_ascii=False))
    else:
        for index, (name, c) in enumerate(plans.items()):
            if index:
                print()
            print(f"{name} = {c.expr}")
            for line in describe(c):
                print("  " + line)
    if plot == "-":
        from lrdsl.plot.text import render

        size = shutil.get_terminal_size((100, 24))
        height = max(6, min(12, (size.lines - 4) // max(len(plans), 1) - 2))
        for name, c in plans.items():
            print(f"\n{name}")
            print(render(lr_function(c, metrics if name == "lr" else None, every), ticks,
                         boundaries=c.boundaries(), width=size.columns, height=height, log=args.log,
                         steps_per_epoch=args.steps_per_epoch))
    elif plot is not None:
        from lrdsl.plot.image import save_figure

        path = save_figure(compiled_program, plot, ticks=ticks, metrics=metrics,
                           report_every=every if metrics else None, log=args.log, **units)
        print(f"wrote {path}")
    return 0


def _color() -> bool:
    """ANSI colours for overlaid series: on a terminal, unless NO_COLOR is set or TERM=dumb."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def cmd_eval(args) -> int:
    from lrdsl.language.curve import lr_function
    from lrdsl.language.plan import plan

    units = _units(args)
    ticks = _ticks_at(args.at)
    metrics = _metrics(args.metric)
    if is_program(args.expr):  # a column per channel, under a header
        reads = {name: (lr_function(compiled, metrics if name == "lr" else None,
                                    args.steps_per_epoch or 1), channel.read)
                 for name, (channel, compiled) in channel_plans(args.expr, **units).items()}
        print("\t".join(["tick", *reads]))
        for t in ticks:
            print("\t".join([f"{t:g}", *(f"{read(f(t)):.10g}" for f, read in reads.values())]))
        return 0
    compiled = plan(args.expr, **units)
    lr = lr_function(compiled, metrics, args.steps_per_epoch or 1)
    for t in ticks:
        print(f"{t:g}\t{lr(t):.10g}")
    return 0


def cmd_list(args) -> int:
    from lrdsl.language.catalogue import PRIMITIVES
    from lrdsl.language.markdown import markdown_glance, markdown_reference, markdown_table
    from lrdsl.errors import UnknownNameError, did_you_mean

    if args.markdown:  # docs/language.md's table
        print(markdown_table())
        return 0
    if args.reference:  # docs/language.md's section per primitive
        print(markdown_reference())
        return 0
    if args.glance:  # the README's language at a glance
        print(markdown_glance())
        return 0
    if args.name is None:
        for primitive in PRIMITIVES.values():
            print(primitive.signature())
            print(f"    {' '.join(primitive.doc.split())}")
        print("\nlrdsl list NAME shows one in full.")
        return 0
    if args.name not in PRIMITIVES:
        raise UnknownNameError(f"unknown primitive '{args.name}'" + did_you_mean(args.name, PRIMITIVES))
    primitive = PRIMITIVES[args.name]
    print(primitive.signature())
    print()
    print("  " + " ".join(primitive.doc.split()))
    print()
    for param in primitive.params:
        print(f"  {param.name:<14} {param.words()}")
    if primitive.native:
        print(f"\n  native counterpart: {primitive.native}")
    print(f"\n  example: lrdsl parse --plot \"{primitive.example}\"")
    return 0


def cmd_check(args) -> int:
    from collections import Counter

    from lrdsl.cli.check import KEYS, Checked, Problem, check_file, yaml_files

    _units(args)
    named = set(map(Path, args.files))
    bad = warned = 0
    read: list[Path] = []
    keys: Counter = Counter()
    for path in yaml_files(args.files):
        checked = Checked(0, [path], Counter()) if isinstance(path, Problem) else \
            check_file(path, steps_per_epoch=args.steps_per_epoch, total=args.total)
        problems = checked.problems
        if isinstance(path, Path):
            read += [path] if not any(p.line == 0 for p in problems) else []
            if path in named and not checked.found and not problems:
                # named on the command line and nothing in it: not a silent success
                problems = [Problem(path, 0, f"no schedule expression in this file (lrdsl check reads "
                                             f"the keys {', '.join(KEYS)})")]
        keys += checked.keys
        for problem in problems:
            warned += problem.warning
            bad += not problem.warning
            print(problem, file=sys.stdout if problem.warning else sys.stderr)
    found = sum(keys.values())
    warnings = f", {warned} warning(s)" if warned else ""
    where = escaped(str(read[0])) if len(read) == 1 else f"{len(read)} files"
    counts = ", ".join(f"{key} ×{n}" for key, n in sorted(keys.items()))
    summary = f"{found} expression(s) checked, {bad} bad{warnings} — in {where}" + (f" ({counts})" if counts else "")
    if not found and not bad:
        print(f"{summary}: nothing to check (lrdsl check reads the keys {', '.join(KEYS)})",
              file=sys.stderr)
        return 1
    print(summary, file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0


def cmd_compare(args) -> int:
    from lrdsl.train.compare import compare, compare_study, is_storage

    if is_storage(args.directory):
        if args.out:
            raise LrdslError("--out names the runs' figure: give a multirun directory, not a study's storage")
        return compare_study(args.directory, args.study)
    if args.study:
        raise LrdslError(f"--study reads an Optuna storage (lrdsl compare sqlite:///study.db --study "
                         f"{args.study}); {args.directory} is not a storage URL")
    if not os.path.isdir(args.directory):  # before Path.is_dir, which raises for odd names
        raise LrdslError(f"no such directory: {args.directory}")
    return compare(args.directory, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrdsl", description="Learning-rate schedules as one-line expressions.")
    parser.add_argument("--version", action="version", version=f"lrdsl {lrdsl.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parse", help="canonical form, explanation, plot")
    p.add_argument("expr", nargs="*", help="the expression (several: overlaid in --plot)")
    p.add_argument("--plot", nargs="?", const="-", action="append", metavar="FILE",
                   help="draw the curve: in the terminal, or into FILE (.png, .svg, .pdf); several "
                        "expressions are overlaid with a legend: --plot \"A\" \"B\"")
    p.add_argument("--log", action="store_true", help="log-scale y axis")
    p.add_argument("--ticks", metavar="N", help="ticks to plot, 2 to 2**53; both plots sample "
                                                 "what they draw (default: a little past the bounded part)")
    p.add_argument("--json", action="store_true", help="print the AST and segments as JSON")
    _add_units(p)
    p.set_defaults(run=cmd_parse)

    p = sub.add_parser("eval", help="LR values at given ticks")
    p.add_argument("expr")
    p.add_argument("--at", required=True, metavar="T1,T2,…")
    _add_units(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("list", help="the primitives, or one in full")
    p.add_argument("--markdown", action="store_true", help="the language as a Markdown table (docs/language.md's)")
    p.add_argument("--reference", action="store_true",
                   help="every primitive in full, in Markdown (docs/language.md's reference)")
    p.add_argument("--glance", action="store_true",
                   help="every primitive and operator by name, in Markdown (the README's table)")
    p.add_argument("name", nargs="?")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("check", help="check expressions in YAML files (exit 1 if any is bad)",
                       description="Parse and plan every expr:/schedule: value in the YAML files and "
                                   "directories given; report bad ones as FILE:LINE: message.")
    p.add_argument("files", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--steps-per-epoch", metavar="N",
                   help="ticks per epoch, as the run will use (needed to plan expressions mixing ep and st)")
    p.add_argument("--total", metavar="N",
                   help="the run's length in ticks: %% durations are planned against it, and a schedule "
                        "ending before 90%% of it or after it gets a warning; without it, %% durations are "
                        "planned against a placeholder total of 100 ticks to find other errors, and "
                        "there are no warnings")
    p.set_defaults(run=cmd_check)

    sub.add_parser("train", help="train a model with Hydra overrides (lrdsl train --help)", add_help=False)
    sub.add_parser("find", help="LR range test on the train config, suggests a peak LR (lrdsl find --help)",
                   add_help=False)
    p = sub.add_parser("compare", help="compare the runs of a multirun directory, or an Optuna study's trials")
    p.add_argument("directory", metavar="DIR|STORAGE",
                   help="a multirun directory, or an Optuna storage URL (sqlite:///study.db) with --study")
    p.add_argument("--out", metavar="FILE", help="figure path (default DIR/compare.png)")
    p.add_argument("--study", metavar="NAME", help="the study to read from STORAGE (default: its only one)")
    p.set_defaults(run=cmd_compare)
    return parser


def _run(argv: list[str]) -> int:
    if argv[:1] == ["train"]:  # Hydra parses its own overrides
        from lrdsl.train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["find"]:  # the LR range test: the same Hydra config, plus find.*
        from lrdsl.train.find_app import main as find_main

        return find_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 ok, 1 ``check`` found bad expressions, 2 errors, 130 Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    prefix = f"lrdsl {escaped(one_line(command, 40))}".rstrip()
    for stream in (sys.stdout, sys.stderr):  # an ASCII terminal or a stray surrogate must not crash a print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return _run(argv)
    except LrdslError as error:
        error.message = as_flags(error.message)  # the CLI's options are flags
        print(f"{prefix}: {pointed(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lrdsl eval … | head`: the reader left; nothing to say
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug (RecursionError and MemoryError included): one line, not a traceback
        if os.environ.get("LRDSL_DEBUG"):
            raise
        print(f"{prefix}: internal error: {type(error).__name__}: {one_line(str(error))} "
              "(please report it; LRDSL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
