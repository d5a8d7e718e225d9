"""The ``lrdsl`` command: parse, eval, list and check schedules (train and compare: Hydra app).

``lrdsl parse`` and the terminal plot import neither torch, TensorFlow, matplotlib nor numpy.
Errors go to stderr with a caret and no traceback; exit 2 for usage and expression errors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from lrdsl.errors import LrdslError


def _metrics(items: list[str] | None) -> dict[str, list[float]] | None:
    if not items:
        return None
    metrics = {}
    for item in items:
        name, _, values = item.partition("=")
        try:
            metrics[name.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise LrdslError(f"--metric takes NAME=V1,V2,…, got {item!r}") from None
        if not name.strip() or not metrics[name.strip()]:
            raise LrdslError(f"--metric takes NAME=V1,V2,…, got {item!r}")
    return metrics


def _units(args) -> dict:
    return {"steps_per_epoch": args.steps_per_epoch, "total": args.total}


def _add_units(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps-per-epoch", type=float, metavar="N",
                        help="ticks per epoch: converts ep durations (a tick is then a batch)")
    parser.add_argument("--total", type=float, metavar="N", help="the run's length in ticks, for %% durations")
    parser.add_argument("--metric", action="append", metavar="NAME=V1,V2,…",
                        help="simulated plateau reports, one per epoch")


def cmd_parse(args) -> int:
    from lrdsl.explain import default_ticks, describe, lr_function, summary
    from lrdsl.plan import plan

    expr_text, plot = args.expr, args.plot
    if expr_text is None and plot not in (None, "-") and not plot.lower().endswith((".png", ".svg", ".pdf")):
        expr_text, plot = plot, "-"  # `lrdsl parse --plot "expr"`
    if expr_text is None:
        raise LrdslError("lrdsl parse needs an expression, e.g. lrdsl parse \"warmup(5) >> cosine(0.1, 100)\"")
    compiled = plan(expr_text, **_units(args))
    metrics = _metrics(args.metric)
    every = args.steps_per_epoch or 1
    ticks = args.ticks or default_ticks(compiled)
    if args.json:
        print(json.dumps(summary(compiled), indent=2, ensure_ascii=False))
    else:
        print(compiled.expr)
        for line in describe(compiled):
            print("  " + line)
    if plot == "-":
        from lrdsl.textplot import render

        size = shutil.get_terminal_size((100, 24))
        print()
        print(render(lr_function(compiled, metrics, every), ticks, width=size.columns,
                     height=max(8, min(20, size.lines - 8)), boundaries=compiled.boundaries(),
                     log=args.log, steps_per_epoch=args.steps_per_epoch))
    elif plot is not None:
        from lrdsl.plot import save_figure

        path = save_figure(compiled.expr, plot, ticks=ticks, metrics=metrics,
                           report_every=every if metrics else None, log=args.log, **_units(args))
        print(f"wrote {path}")
    return 0


def cmd_eval(args) -> int:
    from lrdsl.explain import lr_function
    from lrdsl.plan import plan

    compiled = plan(args.expr, **_units(args))
    try:
        ticks = [float(t) for t in args.at.split(",") if t.strip()]
    except ValueError:
        raise LrdslError(f"--at takes ticks like 0,10,100, got {args.at!r}") from None
    if any(t < 0 for t in ticks):
        raise LrdslError("--at ticks must be ≥ 0")
    lr = lr_function(compiled, _metrics(args.metric), args.steps_per_epoch or 1)
    for t in ticks:
        print(f"{t:g}\t{lr(t):.10g}")
    return 0


def cmd_list(args) -> int:
    from lrdsl.catalogue import PRIMITIVES
    from lrdsl.errors import UnknownNameError, did_you_mean

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
        default = "required" if param.required else f"default {param.shown or param.signature().split('=', 1)[1]}"
        choices = f" — one of {', '.join(param.choices)}" if param.choices else ""
        check = f", {param.check.words}" if param.check else ""
        print(f"  {param.name:<14} {param.kind}, {default}{check}{choices}")
    if primitive.native:
        print(f"\n  native counterpart: {primitive.native}")
    print(f"\n  example: lrdsl parse --plot \"{primitive.example}\"")
    return 0


def cmd_check(args) -> int:
    from lrdsl.check import check_file, yaml_files

    found = bad = 0
    for path in yaml_files(args.files):
        count, problems = check_file(path)
        found += count
        for problem in problems:
            bad += 1
            print(problem, file=sys.stderr)
    print(f"{found} expression(s) checked, {bad} bad", file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0


def cmd_compare(args) -> int:
    from lrdsl.compare import compare

    return compare(args.directory, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrdsl", description="Learning-rate schedules as one-line expressions.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parse", help="canonical form, explanation, plot")
    p.add_argument("expr", nargs="?", help="the expression")
    p.add_argument("--plot", nargs="?", const="-", metavar="FILE",
                   help="draw the curve: in the terminal, or into FILE (.png, .svg, .pdf)")
    p.add_argument("--log", action="store_true", help="log-scale y axis")
    p.add_argument("--ticks", type=int, metavar="N", help="ticks to plot (default: a little past the bounded part)")
    p.add_argument("--json", action="store_true", help="print the AST and segments as JSON")
    _add_units(p)
    p.set_defaults(run=cmd_parse)

    p = sub.add_parser("eval", help="LR values at given ticks")
    p.add_argument("expr")
    p.add_argument("--at", required=True, metavar="T1,T2,…")
    _add_units(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("list", help="the primitives, or one in full")
    p.add_argument("name", nargs="?")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("check", help="check expressions in YAML files (exit 1 if any is bad)")
    p.add_argument("files", nargs="+", metavar="FILE_OR_DIR")
    p.set_defaults(run=cmd_check)

    sub.add_parser("train", help="train a model with Hydra overrides (lrdsl train --help)", add_help=False)
    sub.add_parser("find", help="LR range test on the train config, suggests a peak LR (lrdsl find --help)",
                   add_help=False)
    p = sub.add_parser("compare", help="compare the runs of a multirun directory")
    p.add_argument("directory")
    p.add_argument("--out", metavar="FILE", help="figure path (default DIR/compare.png)")
    p.set_defaults(run=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # Hydra parses its own overrides
        from lrdsl.train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["find"]:  # the LR range test: the same Hydra config, plus find.*
        from lrdsl.train.find_app import main as find_main

        return find_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LrdslError as error:
        print(f"lrdsl {args.command}: {error.pointed()}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
