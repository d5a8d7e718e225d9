"""The hostile fuzz driver: random expressions of the whole language through every backend.

    python tests/fuzz.py --n 2000 --seed 1            # prints a table; exit 1 on any bug

Each expression goes through parse and the canonical round trip (``parse(str(e)) == e``),
``plan``, the reference (``lrdsl.curve``), the float path (``Plan.value_at`` /
``curve.lr_function``) and a PyTorch scheduler stepping a real SGD; a share of them also
through optax jitted in float32 and in float64 and through the Keras schedule.  A bug is a
non-LrdslError exception, a value that is NaN, inf or negative, a value off the reference
by more than LANGUAGE.md §5 allows, or a round trip that changes the expression.

The generator draws every choice through one ``pick(options)`` callable, so the same code
serves the driver (``random.Random.choice``) and Hypothesis (``data.draw(sampled_from)``,
which shrinks a failure to a small expression): options are listed simplest first.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

if __name__ == "__main__":  # run as a script: the checkout's lrdsl, not an installed one
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# the driver reads ticks past total on purpose: lrdsl's past-the-end warning is no finding here
warnings.filterwarnings("ignore", message="lrdsl: the schedule is at")

import numpy as np  # noqa: E402

import lrdsl  # noqa: E402
from lrdsl.language.curve import lr_function  # noqa: E402

Pick = Callable[[Sequence[Any]], Any]

# ---------------------------------------------------------------------------------------------
# the generator

#: numbers at the edges of float64 and float32, and the ones that break naive formulas
EXTREME = ["0", "5e-324", "2.2250738585072014e-308", "1e-300", "1e-46", "1e-38", "1e38", "1e39",
           "1e300", "1e308", "1.7976931348623157e308", "1e400", "-1"]
LRS = ["0.1", "1", "0.001", "3e-4", "0.5", "2", "1e-7", "10", "0.1", "0"]
SHARES = ["0.1", "0", "0.5", "1", "1e-7", "0.01"]
FACTORS = ["0.5", "0.1", "0.9", "0.99", "0.999", "0.99999", "1", "1.2", "2", "1e-6"]
MULTS = ["1", "2", "1.5", "1.2", "1.3", "3", "1.0000001", "0.99999999", "1e6", "1e308"]
POWERS = ["1", "2", "0.5", "0.51", "3", "0.25", "10", "1e-6"]
COUNTS = ["1", "2", "3", "5", "2.5", "1000", "1e6", "1e308", "0"]
PCTS = ["0.3", "0.25", "0.1", "0.5", "0.9", "0", "1", "0.999"]
DIVS = ["25", "10", "1", "10000", "2", "1e-300", "1e308"]
DURATIONS = ["10", "5", "3", "1", "2", "7", "17", "100", "50", "1000", "9.999999999",
             "10.000000001", "0.5", "1.5", "1e5", "1e6", "1e9"]
UNITS = ["", "", "", "ep", "%", "st", " epochs", "steps",
         "sp", "tok", "k", "k tok", " samples", "Mtok"]  # v3: samples, tokens, scale suffixes
CHOICES = {"shape": ["linear", "cos", "exp"], "mode": None, "anneal": ["cos", "linear"],
           "threshold_mode": ["rel", "abs"]}
MONITORS = ["val_loss", "loss", "val_acc", '"val/loss"', "auc"]

NUMBER_POOLS = {
    "lr": LRS, "start": LRS, "end": LRS, "low": LRS, "high": LRS, "min": LRS,
    "factor": FACTORS, "rate": FACTORS, "gamma": FACTORS, "decay": FACTORS, "k": FACTORS,
    "mult": MULTS, "power": POWERS, "n": COUNTS, "patience": ["0", "1", "2", "10"],
    "cooldown": ["0", "1", "3"], "threshold": ["0.0001", "0", "0.01", "0.1"], "pct": PCTS,
    "div": DIVS, "final_div": DIVS,
    "atol": ["0", "0.01", "0.1", "1e-4", "1"],  # plateau(atol=) (v3)
}


def number(pick: Pick, name: str = "lr", primitive: str = "") -> str:
    """A number for argument ``name``: usually ordinary for it, one time in ten extreme."""
    pool = SHARES if (primitive, name) in (("warmup", "start"), ("cooldown", "end")) else \
        NUMBER_POOLS.get(name, LRS)
    return pick(pick([pool] * 9 + [EXTREME]))


def duration(pick: Pick) -> str:
    """A duration with a unit (ticks, epochs, steps or a share of total) or an extreme one."""
    value = pick(pick([DURATIONS] * 9 + [EXTREME]))
    unit = pick(UNITS)
    if unit == "%" and value not in EXTREME:
        value = pick(["10", "50", "1", "20", "99", "0.1", "100", "150"])
    return value + unit


def _durations(pick: Pick) -> str:
    items = [duration(pick) for _ in range(pick([1, 2, 3]))]
    if pick([True, True, True, False]):  # mostly in order; sometimes not, to be refused
        items.sort(key=lambda text: float(text.rstrip("%abcdefghijklmnopqrstuvwxyzMBT ")))
    return "[" + ", ".join(items) + "]"


def _choice(pick: Pick, param) -> str:
    return pick(list(param.choices))


#: precedence levels (LANGUAGE.md §1): an operand below its operator's level is parenthesized
SEQ, SUM, PRODUCT, SLICE, ATOM = 2, 3, 4, 5, 6


def _wrap(part: tuple[str, int], level: int) -> str:
    text, own = part
    return text if own >= level else f"({text})"


def call(pick: Pick, name: str, depth: int) -> str:
    """A call of primitive ``name``: required arguments positional, some optional ones by keyword."""
    primitive = lrdsl.primitives()[name] if isinstance(lrdsl.primitives(), dict) else \
        next(p for p in lrdsl.primitives() if p.name == name)
    args, keywords = [], []
    counts = {"boundaries": 0}
    for param in primitive.params:
        required = param.default is _REQUIRED
        if not required and not pick([False, False, True]):
            continue
        if param.kind == "number":
            text = number(pick, param.name, name)
        elif param.kind == "duration":
            text = duration(pick)
        elif param.kind == "durations":
            text = _durations(pick)
            counts["boundaries"] = text.count(",") + 1
        elif param.kind == "numbers":
            size = counts["boundaries"] + pick([1, 1, 1, 0, 2])
            text = "[" + ", ".join(number(pick) for _ in range(size)) + "]"
        elif param.kind == "choice":
            text = _choice(pick, param)
        elif param.kind == "bool":
            text = pick(["true", "false"])
        elif param.kind == "string":
            text = pick(MONITORS)
        elif param.kind == "schedule":
            text = schedule(pick, depth - 1)[0]
        elif param.kind == "schedules":
            text = ", ".join(schedule(pick, depth - 1)[0] if pick([True, False]) else number(pick)
                             for _ in range(pick([2, 3, 2, 1])))
        else:
            raise AssertionError(f"a parameter kind the fuzzer does not know: {param.kind}")
        if required and not keywords:
            args.append(text)
        else:
            keywords.append(f"{param.name}={text}")
    if name == "exp" and not any(k.startswith(("rate=", "k=")) for k in keywords):
        keywords.append(f"rate={number(pick, 'rate')}" if pick([True, False]) else f"k={number(pick, 'k')}")
    return f"{name}({', '.join(args + keywords)})"


_REQUIRED = next(p for p in (lrdsl.primitives().values() if isinstance(lrdsl.primitives(), dict)
                             else lrdsl.primitives()) if p.name == "cosine").params[0].default
#: the time-schedule primitives, simplest first (warm-up, cool-down, plateau are placed apart)
TIMED = ["const", "cosine", "linear", "step", "exp", "poly", "anneal", "multistep", "piecewise",
         "invtime", "rsqrt", "cyclic", "sgdr", "onecycle"]


def atom(pick: Pick, depth: int) -> tuple[str, int]:
    kind = pick(["number", "call", "call", "call", "group"] if depth > 0 else ["number", "call", "call"])
    if kind == "number":
        return number(pick), ATOM
    if kind == "call":
        return call(pick, pick(TIMED), depth), ATOM
    return f"({schedule(pick, depth - 1)[0]})", ATOM


def schedule(pick: Pick, depth: int = 3) -> tuple[str, int]:
    """(text, precedence level) of a random time schedule nested at most ``depth`` deep."""
    if depth <= 0:
        return atom(pick, 0)
    form = pick(["atom", "sequence", "sum", "difference", "product", "slice", "minmax", "repeat",
                 "warmup", "cooldown", "wsd", "atom", "atom", "atom", "quantize", "quotient"])
    sub = lambda: schedule(pick, depth - 1)  # noqa: E731
    if form == "atom":
        return atom(pick, depth)
    if form == "sequence":
        parts = [_wrap(sub(), SUM) for _ in range(pick([2, 3]))]
        return " >> ".join(parts), SEQ
    if form in ("sum", "difference"):
        op = "+" if form == "sum" else "-"
        return f"{_wrap(sub(), SUM)} {op} {_wrap(sub(), PRODUCT)}", SUM
    if form == "product":
        left = pick(["schedule", "number"])
        a = (number(pick, "factor"), ATOM) if left == "number" else sub()
        return f"{_wrap(a, PRODUCT)} * {_wrap(sub(), SLICE)}", PRODUCT
    if form == "quotient":
        return quotient(pick, sub), PRODUCT
    if form == "slice":
        start = pick(["", duration(pick)])
        end = pick([duration(pick), "", duration(pick)])
        return f"{_wrap(sub(), ATOM)}[{start}:{end}]", SLICE
    if form == "minmax":
        return call(pick, pick(["min", "max"]), depth), ATOM
    if form == "repeat":
        return call(pick, "repeat", depth), ATOM
    if form == "quantize":  # sometimes an every float32 cannot hold, or one finer than a tick
        text = call(pick, "quantize", depth)
        if pick([False, True]):
            text = text[:text.rindex(",") + 1] + \
                f" {pick(['7.5', '0.5', '1.2', '7.7', '1e-3', '2.25ep', '3.25', '10%', '1e308'])})"
        return text, ATOM
    if form == "warmup":
        return f"{call(pick, 'warmup', depth)} >> {_wrap(sub(), SUM)}", SEQ
    if form == "cooldown":
        return f"{_wrap(sub(), SUM)} >> {call(pick, 'cooldown', depth)}", SEQ
    # warm-up, a stretched middle, a cool-down: the WSD shape that needs total
    return (f"{call(pick, 'warmup', depth)} >> {_wrap(sub(), SUM)} >> "
            f"{call(pick, 'cooldown', depth)}", SEQ)


def quotient(pick: Pick, sub) -> str:
    """``a / b``: the divisor sometimes provably positive (a number, ``k + b``, ``max(b, k)``,
    a floored cosine), sometimes not (any schedule, which may reach 0: to be refused)."""
    a = (number(pick), ATOM) if pick([True, False]) else sub()
    kind = pick(["schedule", "number", "shifted", "floored", "cosine", "anneal"])
    if kind == "number":
        b = (number(pick, "factor"), ATOM)
    elif kind == "shifted":
        b = (f"{number(pick)} + {_wrap(sub(), PRODUCT)}", SUM)
    elif kind == "floored":
        b = (f"max({sub()[0]}, {number(pick)})", ATOM)
    elif kind == "cosine":
        b = (f"cosine({number(pick)}, {duration(pick)}, min={number(pick)})", ATOM)
    elif kind == "anneal":
        b = (f"anneal(1, {number(pick, 'factor')}, {duration(pick)}, shape={pick(['linear', 'cos'])})",
             ATOM)
    else:
        b = sub()
    return f"{_wrap(a, PRODUCT)} / {_wrap(b, SLICE)}"


def expression(pick: Pick, depth: int = 3) -> str:
    """A random expression: a time schedule, one time in six under ``| plateau(...)``."""
    text = schedule(pick, depth)[0]
    if pick([False, False, False, False, False, True]):
        text = f"{text} | {call(pick, 'plateau', 0)}"
    return text


#: compile options an expression meets: steps_per_epoch an integer, so reports land on ticks
OPTIONS = [{"steps_per_epoch": 10, "total": 1000}, {"steps_per_epoch": 3, "total": 250},
           {"steps_per_epoch": 1, "total": 10**6}, {"steps_per_epoch": 100, "total": 77},
           # v3: sp and tok through the per-step sizes (LANGUAGE.md §9 on the ticks clock)
           {"steps_per_epoch": 10, "total": 1000, "samples_per_step": 32, "tokens_per_sample": 128},
           {"steps_per_epoch": 7, "total": 500, "samples_per_step": 3, "tokens_per_step": 1000}]


def metrics(pick: Pick) -> list[float]:
    """A metric series: improving, flat, noisy, with NaN, so a plateau cuts and waits."""
    shape = pick(["down", "flat", "noisy"])
    n = 40
    if shape == "down":
        return [1.0 / (1 + i) for i in range(n)]
    if shape == "flat":
        return [1.0] * n
    return [float("nan") if i % 7 == 3 else 1.0 + 0.1 * math.sin(i * i) for i in range(n)]


def case(pick: Pick) -> "Case":
    """One expression with its compile options and metric series."""
    return Case(expression(pick), dict(pick(OPTIONS)), metrics(pick))


@dataclass
class Case:
    text: str
    options: dict
    metrics: list[float]
    index: int = -1  # in its seed's sequence: --first index --n 1 reruns it


# ---------------------------------------------------------------------------------------------
# the checks

BACKENDS = ["parse", "plan", "curve", "floats", "torch", "optax32", "optax64", "keras"]
BUGS = ["exception", "unsafe", "disagree", "roundtrip"]
#: LANGUAGE.md §5: (relative, share of the schedule's largest value, flush floor), whichever is
#: larger.  The float64 share is the one tests/test_optax.py uses: 1e-14 of the peak covers
#: libm's last bit on values that cancel towards 0.  The flush floor is docs/language.md's
#: reading for a backend that flushes subnormal results to 0 ("What LANGUAGE.md leaves open"):
#: the smallest normal number of its dtype (XLA on CPU flushes in float64 too; float32 backends
#: below 1.18e-38), once per piece a formula may drop, times the schedule's largest value where
#: that is above 1 (see flushed_terms and _mismatch);
#: 0 for a backend that keeps subnormals (torch, the float path).
F64 = (1e-12, 1e-14, 0.0)
XLA64 = (1e-12, 1e-14, sys.float_info.min)  # JAX float64: 2.2250738585072014e-308
F32 = (4e-6, 1e-12, 1.1754943508222875e-38)  # float32's smallest normal number
LARGE = [127, 128, 255, 256, 999, 1000, 1023, 1024, 4095, 4096, 10**4, 65535, 65536, 10**5,
         262143, 262144, 999_999, 10**6]
DENSE = 64
STEPPED = 300  # ticks the torch scheduler steps through a real optimizer


def ticks_for(compiled) -> np.ndarray:
    """0..DENSE, each top-level boundary and the duration ±1, and large ticks up to 10⁶."""
    marks = list(compiled.boundaries())
    if math.isfinite(compiled.duration):
        marks.append(compiled.duration)
    near = []
    for mark in marks:
        if math.isfinite(mark) and mark < 2e6:
            base = math.floor(mark)
            near += [base - 1, base, base + 1, base + 2]
    ticks = np.unique(np.array(list(range(DENSE + 1)) + near + LARGE, dtype=np.float64))
    return ticks[(ticks >= 0) & (ticks <= 10**6)]


@dataclass
class Bug:
    kind: str
    backend: str
    text: str
    options: dict
    detail: str
    index: int = -1


@dataclass
class Tally:
    counts: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))

    def __getstate__(self):  # to come back from a worker process: no lambda in it
        return {"counts": dict(self.counts), "bugs": self.bugs}

    def __setstate__(self, state):
        self.counts = collections.defaultdict(collections.Counter, state["counts"])
        self.bugs = state["bugs"]

    bugs: list = field(default_factory=list)

    def add(self, backend: str, outcome: str, bug: Bug | None = None):
        self.counts[backend]["tried"] += 1
        self.counts[backend][outcome] += 1
        if bug is not None:
            self.bugs.append(bug)

    def bug_count(self) -> int:
        return sum(c[b] for c in self.counts.values() for b in BUGS)


def cancelled(node) -> float:
    """The magnitude a difference cancels in ``node`` (a plan's timed tree), scaled by the factors
    around it; 0 without a difference.

    docs/language.md ("What LANGUAGE.md leaves open"): float rounding is relative to a
    difference's operands, not to its result, so where a − b cancels (``cosine(0.001, 1000,
    min=0.001) − 0.001 + 1e-9``) the backend's own relative precision (4e-6 in float32, 1e-12
    in float64) applies to the operands' magnitude.  Walked here from the plan's proven ranges:
    a difference contributes its larger operand bound, a product scales a factor's contribution
    by the other factors' bounds, every other node passes on the largest of its children's.
    """
    p = sys.modules["lrdsl.language.plan"]  # the module (lrdsl.plan the attribute is the function)

    if isinstance(node, p.TimedDifference):
        return max(node.a.range[1], node.b.range[1], cancelled(node.a), cancelled(node.b))
    if isinstance(node, p.TimedPointwise) and node.combine is p.TimedPointwise.COMBINE["product"][0]:
        highs = [o.range[1] for o in node.operands]
        return max(cancelled(o) * math.prod(h for j, h in enumerate(highs) if j != i)
                   for i, o in enumerate(node.operands))
    if isinstance(node, p.TimedQuotient):  # a/b: the dividend's error over b's low end; an error
        low = node.b.range[0]             # e in b moves a/b by up to a·e/b² (b ≥ its low end)
        return max(cancelled(node.a) / low, node.a.range[1] / low * (cancelled(node.b) / low))
    children = [getattr(node, name) for name in ("inner", "body") if hasattr(node, name)]
    children += list(getattr(node, "parts", ()) or getattr(node, "operands", ()))
    return max((cancelled(c) for c in children), default=0.0)


def flushed_terms(node) -> int:
    """How many pieces below the smallest normal number a flushing backend may drop in ``node``
    (a plan's timed tree): docs/language.md ("A backend that flushes subnormal numbers").  A call
    adds at most two weighted terms, each weight a share or a sum of two shares in [0, 1]: 4;
    a sum, product or difference adds its operands' pieces; a repeat whose decay > 1 scales its
    body's by decayⁿ⁻¹; every other node passes on the largest of its children's."""
    p = sys.modules["lrdsl.language.plan"]  # the module (lrdsl.plan the attribute is the function)

    if isinstance(node, p.TimedCall):
        return 4
    if isinstance(node, (p.TimedDifference, p.TimedQuotient)):
        return flushed_terms(node.a) + flushed_terms(node.b)
    if isinstance(node, p.TimedPointwise) and node.combine in (
            p.TimedPointwise.COMBINE["product"][0], p.TimedPointwise.COMBINE["sum"][0]):
        return sum(flushed_terms(o) for o in node.operands)
    if isinstance(node, p.TimedRepeat) and node.decay > 1:  # a dropped piece times decayⁿ⁻¹
        return math.ceil(flushed_terms(node.body) * node.decay ** (node.n - 1))
    children = [getattr(node, name) for name in ("inner", "body") if hasattr(node, name)]
    children += list(getattr(node, "parts", ()) or getattr(node, "operands", ()))
    return max((flushed_terms(c) for c in children), default=1)


def amplified(node) -> float:
    """How much a piece a flushing backend drops (below its smallest normal number) can move a
    schedule with a quotient (a plan's timed tree): a call scales a flushed share by at most its
    largest value, a product by the other factors' bounds, a quotient a / b by 1 / b_lo (an error
    in a) or a_hi / b_lo² (an error in b); every other node passes on the largest of its
    children's.  docs/language.md ("Language v3: division"); 0 without a quotient."""
    p = sys.modules["lrdsl.language.plan"]

    def gain(node) -> float:
        if isinstance(node, p.TimedCall):
            return node.range[1]
        if isinstance(node, p.TimedQuotient):
            low = node.b.range[0]
            return max(gain(node.a) / low, node.a.range[1] / low * (gain(node.b) / low))
        if isinstance(node, p.TimedPointwise) and node.combine is p.TimedPointwise.COMBINE["product"][0]:
            highs = [o.range[1] for o in node.operands]  # a piece of a factor, or of the running
            return max(max(gain(o) * math.prod(h for j, h in enumerate(highs) if j != i),  # product
                           math.prod(highs[i + 1:])) for i, o in enumerate(node.operands))
        return max((gain(c) for c in _children(node)), default=1.0)

    def has_quotient(node) -> bool:
        return isinstance(node, p.TimedQuotient) or any(has_quotient(c) for c in _children(node))

    return gain(node) if has_quotient(node) else 0.0


def flush_scale(compiled) -> float:
    """What a flushed piece is scaled by at most: the schedule's proven largest value, or what a
    quotient amplifies it to (:func:`amplified`)."""
    return max(compiled.schedule.range[1], amplified(compiled.schedule))


def _children(node) -> list:
    children = [getattr(node, name) for name in ("inner", "body", "a", "b") if hasattr(node, name)]
    return children + list(getattr(node, "parts", ()) or getattr(node, "operands", ()))


def _mismatch(got, want, tolerance, cancel: float = 0.0, largest: float = 0.0,
              terms: int = 1) -> str | None:
    """Where ``got`` first leaves ``want``'s tolerance, or None; ``cancel`` is :func:`cancelled`'s
    magnitude, to which the relative tolerance also applies.  A flushing backend's floor (the
    tolerance's third number) counts once per piece it may drop (``terms``, from
    :func:`flushed_terms`), each scaled by at most the schedule's proven ``largest`` value (a
    flushed share or factor in [0, 1] times a value) or a difference's operands (``cancel``)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    rel, of_peak, flushed = tolerance
    bound = np.maximum(rel * np.abs(want), of_peak * np.max(np.abs(want), initial=0.0))
    floor = flushed * terms * max(1.0, largest, cancel) if flushed else 0.0  # not 0·inf = NaN
    bound = np.maximum(bound, np.maximum(rel * cancel, floor))
    bad = ~(np.abs(got - want) <= bound)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"{bad.sum()} of {bad.size} off, first at index {i}: got {got[i]!r}, want {want[i]!r}"


def _unsafe(values) -> str | None:
    values = np.asarray(values, np.float64)
    bad = ~(np.isfinite(values) & (values >= 0))
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"{bad.sum()} of {bad.size} unsafe, first at index {i}: {values[i]!r}"


class Run:
    """Runs one backend's check and files its outcome: ok, rejected, or a bug."""

    def __init__(self, tally: Tally, case: Case):
        self.tally, self.case = tally, case

    def __call__(self, backend: str, compute: Callable[[], Any], want=None, ticks=None,
                 tolerance=F64, values: bool = True, cancel: float = 0.0,
                 largest: float = 0.0, terms: int = 1) -> Any:
        """``compute()``'s result; with ``values`` it must be safe, and within ``tolerance`` of
        ``want`` where one is given."""
        try:
            got = compute()
        except lrdsl.LrdslError:
            self.tally.add(backend, "rejected")
            return None
        except Exception as error:  # noqa: BLE001 — any other exception is what we look for
            where = traceback.extract_tb(error.__traceback__)[-1]
            detail = (f"{type(error).__name__}: {str(error)[:200]} "
                      f"({Path(where.filename).name}:{where.lineno})")
            self.bug(backend, "exception", detail)
            return None
        if not values:
            self.tally.add(backend, "accepted")
            return got
        problem = _unsafe(got)
        kind = "unsafe"
        if problem is None and want is not None:
            problem, kind = _mismatch(got, want, tolerance, cancel, largest, terms), "disagree"
        if problem is not None:
            if ticks is not None:
                i = int(problem.split("index ")[1].split(":")[0])
                problem += f" (tick {ticks[i]:g})"
            self.bug(backend, kind, problem)
            return None
        self.tally.add(backend, "accepted")
        return got

    def bug(self, backend: str, kind: str, detail: str) -> None:
        self.tally.add(backend, kind, Bug(kind, backend, self.case.text, self.case.options, detail,
                                              self.case.index))


def check_core(case: Case, tally: Tally, torch: bool = True) -> tuple[Any, Any, Any]:
    """parse, round trip, plan, curve, the float path and torch; returns (plan, ticks, reference)
    for the other backends, or Nones when the expression is refused."""
    run = Run(tally, case)
    parsed = run("parse", lambda: lrdsl.parse(case.text), values=False)
    if parsed is None:
        return None, None, None
    try:
        again = lrdsl.parse(str(parsed))
        same = again == parsed and str(again) == str(parsed)
        detail = f"{case.text!r} -> {str(parsed)!r} -> {str(again)!r}"
    except Exception as error:  # noqa: BLE001
        same, detail = False, f"{str(parsed)!r} does not parse: {type(error).__name__}: {error}"
    if not same:
        run.bug("parse", "roundtrip", detail)
    compiled = run("plan", lambda: lrdsl.plan(parsed, **case.options), values=False)
    if compiled is None:
        # every backend refuses what plan refuses, with an LrdslError and nothing else
        if torch:
            run("torch", lambda: _torch_values(case, [0.0]), values=False)
        return None, None, None
    ticks = ticks_for(compiled)
    plateau = compiled.plateau is not None
    every = case.options["steps_per_epoch"]
    reports = {compiled.plateau.monitor: case.metrics} if plateau else None
    want = run("curve", lambda: lrdsl.curve(parsed, ticks, metrics=reports,
                                            report_every=every if plateau else None,
                                            **case.options), ticks=ticks)
    if want is None:
        return None, None, None
    cancel = cancelled(compiled.schedule)
    run("floats", lambda: [lr_function(compiled, reports, every)(t) for t in ticks], want, ticks,
        cancel=cancel)
    if torch:
        # with a plateau, only the stepped ticks: lr_at past them knows only the reports so far
        stepped = ticks[ticks <= STEPPED] if plateau else ticks
        run("torch", lambda: _torch_values(case, stepped), want[:len(stepped)], stepped,
            cancel=cancel)
    return compiled, ticks, want


def _torch_values(case: Case, ticks) -> list[float]:
    """An SGD with two parameter groups (ratio 1/4) stepped STEPPED ticks with epoch-end reports,
    then ``lr_at`` past that; the second group must be the first's quarter."""
    import torch
    import lrdsl.torch

    weights = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    optimizer = torch.optim.SGD([{"params": [weights[0]], "lr": 1.0},
                                 {"params": [weights[1]], "lr": 0.25}], lr=1.0)
    sched = lrdsl.torch.scheduler(optimizer, case.text, **case.options)
    every = case.options["steps_per_epoch"]
    monitor = sched._lr_slots[0].plateau.rule.monitor if sched._lr_slots[0].plateau else None
    stepped = {0: [g["lr"] for g in optimizer.param_groups]}
    last = int(min(max(ticks), STEPPED))
    for tick in range(1, last + 1):
        optimizer.step()
        sched.step()
        if monitor is not None and tick % every == 0 and tick // every - 1 < len(case.metrics):
            sched.report({monitor: case.metrics[tick // every - 1]})
        stepped[tick] = [g["lr"] for g in optimizer.param_groups]
    out = []
    for t in ticks:
        if t in stepped:
            first, second = stepped[int(t)]
            if not (second == first * 0.25 or abs(second - first * 0.25) <= 1e-12 * abs(first)):
                raise AssertionError(f"tick {t:g}: group 1 has {second!r}, a quarter of {first!r} "
                                     f"expected")
            out.append(first)
        else:
            out.append(sched.lr_at(int(t)))
    return out


# ---------------------------------------------------------------------------------------------
# the JAX and Keras backends (imported only when asked for: each costs seconds to load)


def optax_values(text: str, options: dict, ticks) -> Any:
    """The optax schedule, jitted and vmapped, at ``ticks`` as optax's int32 counts."""
    return _raised(optax_batch([(text, options, ticks)])[0])


def optax_batch(items) -> list:
    """Each (text, options, ticks) through its optax schedule, all in one jitted program (one
    compilation instead of one per expression: it is most of the cost).  An item's value is
    its array or the exception tracing it raised, so one refusal stays that item's."""
    import jax
    import jax.numpy as jnp
    import lrdsl.optax

    results: list = [None] * len(items)
    fns, counts, where = [], [], []
    for i, (text, options, ticks) in enumerate(items):
        try:
            fn = jax.vmap(lrdsl.optax.schedule(text, **options))
            count = jnp.asarray(ticks, jnp.int32)
            jax.eval_shape(fn, count)
        except Exception as error:  # noqa: BLE001 — re-raised as this item's outcome
            results[i] = error
            continue
        fns.append(fn)
        counts.append(count)
        where.append(i)
    if fns:
        values = jax.jit(lambda cs: [f(c) for f, c in zip(fns, cs)])(counts)
        for i, v in zip(where, values):
            results[i] = np.asarray(v, np.float64)
    return results


def keras_values(text: str, options: dict, ticks) -> Any:
    """The Keras schedule evaluated with keras.ops on a vector of ticks (float32)."""
    import keras
    import lrdsl.keras

    return keras.ops.convert_to_numpy(lrdsl.keras.schedule(text, **options)(np.asarray(ticks)))


def time_schedule(compiled) -> str:
    """The expression without its ``| plateau``: what a schedule-only backend can run."""
    expr = compiled.expr
    return str(expr.schedule if isinstance(expr, lrdsl.Plateau) else expr)


class JaxQueue:
    """Cases waiting for the optax backends, checked BATCH at a time (see :func:`optax_batch`)."""

    BATCH = 16

    def __init__(self, tally: Tally, backends):
        self.tally, self.pending = tally, []
        self.dtypes = [b for b in ("optax32", "optax64") if b in backends]

    def add(self, case: Case, compiled, ticks) -> None:
        if self.dtypes:
            self.pending.append((case, time_schedule(compiled), ticks, compiled.values(ticks),
                                 cancelled(compiled.schedule), flush_scale(compiled),
                                 flushed_terms(compiled.schedule)))
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        import jax

        pending, self.pending = self.pending, []
        for backend in self.dtypes:
            with jax.enable_x64(backend == "optax64"):
                try:
                    results = optax_batch([(text, c.options, ticks) for c, text, ticks, *_ in pending])
                except Exception:  # noqa: BLE001 — one of them fails at run time: find which
                    results = [_outcome(lambda: optax_values(text, c.options, ticks))
                               for c, text, ticks, *_ in pending]
            tolerance = XLA64 if backend == "optax64" else F32
            for (case, _, ticks, f, cancel, largest, terms), result in zip(pending, results):
                Run(self.tally, case)(backend, lambda: _raised(result), f, ticks, tolerance,
                                      cancel=cancel, largest=largest, terms=terms)


def _outcome(compute):
    try:
        return compute()
    except Exception as error:  # noqa: BLE001
        return error


def _raised(result):
    if isinstance(result, BaseException):
        raise result
    return result


def check_keras(case: Case, tally: Tally, compiled, ticks) -> None:
    Run(tally, case)("keras", lambda: keras_values(time_schedule(compiled), case.options, ticks),
                     compiled.values(ticks), ticks, F32, cancel=cancelled(compiled.schedule),
                     largest=flush_scale(compiled), terms=flushed_terms(compiled.schedule))


# ---------------------------------------------------------------------------------------------
# the driver


def fuzz(n: int, seed: int, backends: Sequence[str] = tuple(BACKENDS), share: float = 1.0,
         depth: int = 3, log=None, jobs: int = 1, first: int = 0) -> Tally:
    """Check cases ``first`` … ``first + n − 1`` of ``seed``; the optax and Keras backends see a
    ``share`` of the accepted ones.  Case i depends only on (seed, i), so ``jobs`` processes
    split the range and one case reruns alone (``--first i --n 1``)."""
    if jobs > 1:
        return _in_processes(n, seed, backends, share, depth, log, jobs, first)
    tally = Tally()
    jax_queue = JaxQueue(tally, backends)
    started = time.monotonic()
    for i in range(first, first + n):
        rng = random.Random(f"{seed}:{i}")
        case_ = Case(expression(rng.choice, depth), dict(rng.choice(OPTIONS)), metrics(rng.choice),
                     i)
        compiled, ticks, _ = check_core(case_, tally, "torch" in backends)
        if compiled is not None and rng.random() < share:
            jax_queue.add(case_, compiled, ticks)
            if "keras" in backends:
                check_keras(case_, tally, compiled, ticks)
        if log and (i + 1 - first) % 500 == 0:
            log(f"{i + 1 - first} expressions, {time.monotonic() - started:.0f} s, "
                f"{tally.bug_count()} bugs")
    jax_queue.flush()
    return tally


def _in_processes(n, seed, backends, share, depth, log, jobs, first) -> Tally:
    """Split the range over ``jobs`` processes (forked before any framework is imported: the
    parent imports none) and add up their tallies."""
    import multiprocessing

    bounds = [first + n * k // jobs for k in range(jobs + 1)]
    work = [(b - a, seed, tuple(backends), share, depth, None, 1, a) for a, b in zip(bounds, bounds[1:])]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        parts = pool.starmap(fuzz, work)
    tally = Tally()
    for part in parts:
        for backend, counts in part.counts.items():
            tally.counts[backend].update(counts)
        tally.bugs += part.bugs
    return tally


def report(tally: Tally, examples: int = 3) -> str:
    """The counts per backend, then the shortest few reproductions of each bug class."""
    columns = ["tried", "accepted", "rejected"] + BUGS
    lines = [f"{'backend':<9}" + "".join(f"{c:>11}" for c in columns)]
    for backend in BACKENDS:
        counts = tally.counts.get(backend, collections.Counter())
        lines.append(f"{backend:<9}" + "".join(f"{counts[c]:>11}" for c in columns))
    classes = collections.defaultdict(list)
    for bug in tally.bugs:
        classes[(bug.backend, bug.kind)].append(bug)
    for (backend, kind), bugs in sorted(classes.items()):
        lines.append(f"\n{kind} in {backend}: {len(bugs)}")
        seen = set()
        for bug in sorted(bugs, key=lambda b: len(b.text)):
            signature = bug.detail.split(":")[0] if kind == "exception" else None
            if signature in seen and signature is not None:
                continue
            seen.add(signature)
            lines.append(f"  {bug.text}   {bug.options} [case {bug.index}]\n      {bug.detail}")
            if len([x for x in lines if x.startswith("  ")]) and len(seen) >= examples:
                break
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="expressions to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--share", type=float, default=1.0,
                        help="share of accepted expressions also run on optax and Keras")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--depth", type=int, default=3, help="nesting depth of expressions")
    parser.add_argument("--first", type=int, default=0, help="index of the first case (to rerun one)")
    parser.add_argument("--jobs", type=int, default=1, help="processes to split the cases over")
    parser.add_argument("--examples", type=int, default=3, help="reproductions per bug class")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    started = time.monotonic()
    tally = fuzz(args.n, args.seed, backends, args.share, args.depth,
                 log=lambda line: print(line, file=sys.stderr, flush=True), jobs=args.jobs,
                 first=args.first)
    print(report(tally, args.examples))
    print(f"\n{args.n} expressions (seed {args.seed}) in {time.monotonic() - started:.0f} s: "
          f"{tally.bug_count()} bugs")
    return 1 if tally.bug_count() else 0


if __name__ == "__main__":
    sys.exit(main())
