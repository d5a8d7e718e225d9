"""µs per scheduler step(): lrdsl vs the native PyTorch equivalent, measured in one run.

    .venv/bin/python bench/torch_step.py

Targets (issues #3, #12, #21): time schedules ≤ 0.5× native, lr+momentum+weight decay ≤ 0.5× OneCycleLR
with cycle_momentum (which updates both), a program of those and two free values on a tokens clock
(stepped with tokens=…; the free values are computed when read, and the row below it reads both
every step) ≤ 0.5× the same OneCycleLR, and step(metric) on a plateau ≤ 1.0× ReduceLROnPlateau
(a single copy of the plateau rule is worth more than the last 0.1 µs).  Also prints traced memory
after 10⁴ and 10⁶ steps (flat: values are evaluated in chunks of 4096 ticks, nothing accumulates).
"""

import itertools
import timeit
import tracemalloc
import warnings

import torch
from torch.optim import lr_scheduler as native

import lrdsl.torch

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9, weight_decay=1e-4)


ONECYCLE = "onecycle(0.1, 10000000)"
MOMENTUM = "onecycle(0.85, 10000000, start=0.95, end=0.95)"

PROGRAM = """lr = onecycle(0.1, 40B tok)
momentum = onecycle(0.85, 40B tok, start=0.95, end=0.95)
weight_decay = anneal(1e-4, 1e-3, 40B tok)
ema = anneal(0.996, 1, 40B tok)
kl = min(linear(0, 1, 4B tok), 1)"""

# (name, expression, native, metric, target ratio)
CASES = [
    ("warmup+cosine", "warmup(5) >> cosine(0.1, 10000000)",
     lambda o: native.SequentialLR(o, [native.LinearLR(o, 1e-8, 1.0, total_iters=5),
                                       native.CosineAnnealingLR(o, T_max=10**7)], milestones=[5]), None, 0.5),
    ("onecycle", ONECYCLE,
     lambda o: native.OneCycleLR(o, max_lr=0.1, total_steps=10**7, cycle_momentum=False), None, 0.5),
    ("sgdr", "sgdr(0.1, 1000, mult=2)",
     lambda o: native.CosineAnnealingWarmRestarts(o, T_0=1000, T_mult=2), None, 0.5),
    ("cyclic", "cyclic(0.01, 0.1, 2000)",
     lambda o: native.CyclicLR(o, 0.01, 0.1, step_size_up=2000, cycle_momentum=False), None, 0.5),
    # lr, momentum and weight decay in one step; OneCycleLR updates lr and momentum
    ("lr+momentum+wd", {"expr": ONECYCLE, "momentum": MOMENTUM, "weight_decay": "anneal(1e-4, 1e-3, 10000000)"},
     lambda o: native.OneCycleLR(o, max_lr=0.1, total_steps=10**7, cycle_momentum=True), None, 0.5),
    # a program: lr, momentum, weight decay and two free values read each step, on a tokens clock
    ("program, tokens", {"expr": PROGRAM, "clock": "tokens"},
     lambda o: native.OneCycleLR(o, max_lr=0.1, total_steps=10**7, cycle_momentum=True), "tokens", 0.5),
    ("  + read 2 free", {"expr": PROGRAM, "clock": "tokens"},
     lambda o: native.OneCycleLR(o, max_lr=0.1, total_steps=10**7, cycle_momentum=True), "tokens+read", None),
    ("const | plateau", "0.1 | plateau(val_loss, 0.5)",
     lambda o: native.ReduceLROnPlateau(o, factor=0.5), 0.5, 1.0),
    # the same with a metric that improves, stalls and reduces (the row above never improves)
    ("  varying metric", "0.1 | plateau(val_loss, 0.5, patience=2, cooldown=1)",
     lambda o: native.ReduceLROnPlateau(o, factor=0.5, patience=2, cooldown=1),
     [1.0, 0.9, 0.95, 0.8, 0.8, 0.81, 0.82, 0.7, 0.75, 0.72, 0.74, 0.73], 1.0),
    # what a user must stack by hand for a schedule with a plateau (no native composition exists)
    ("warmup+cos|plateau", "warmup(5) >> cosine(0.1, 10000000) | plateau(val_loss, 0.5)",
     lambda o: _Stacked(o), 0.5, 1.0),
]


class _Stacked:
    """SequentialLR(LinearLR, CosineAnnealingLR) and ReduceLROnPlateau, stepped together."""

    def __init__(self, o):
        self.schedule = native.SequentialLR(o, [native.LinearLR(o, 1e-8, 1.0, total_iters=5),
                                                native.CosineAnnealingLR(o, T_max=10**7)],
                                            milestones=[5])
        self.plateau = native.ReduceLROnPlateau(o, factor=0.5)

    def step(self, metric):
        self.schedule.step()
        self.plateau.step(metric)


def per_step_us(sched, metric, number=100_000):
    if metric == "tokens":  # a program on a tokens clock: step by what was consumed
        def step():
            sched.step(tokens=4096)
    elif metric == "tokens+read":  # … and read both free values each step (computed when read)
        value = sched.value

        def step():
            sched.step(tokens=4096)
            value("ema")
            value("kl")
    elif metric is None:
        step = sched.step  # noqa: F811
    elif isinstance(metric, list):  # both sides pay the same next()
        values = itertools.cycle(metric)
        step = lambda: sched.step(next(values))  # noqa: E731
    else:
        step = lambda: sched.step(metric)  # noqa: E731
    return min(timeit.repeat(step, number=number, repeat=5)) / number * 1e6


def memory_growth():
    """Traced memory after 10⁴ and after 10⁶ steps (one chunk of values is live either way)."""
    sched = lrdsl.torch.scheduler(optimizer(), "warmup(5) >> cosine(0.1, 10000000)")
    tracemalloc.start()
    for _ in range(10**4):
        sched.step()
    early, _ = tracemalloc.get_traced_memory()
    for _ in range(10**6 - 10**4):
        sched.step()
    late, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return early / 1024, late / 1024, peak / 1024


def main():
    print(f"torch {torch.__version__}, one param group, best of 5 × 100000 steps")
    print(f"{'schedule':<18} {'lrdsl µs':>9} {'native µs':>10} {'ratio':>7} {'target':>7}")
    for name, spec, make, metric, target in CASES:
        spec = spec if isinstance(spec, dict) else {"expr": spec}
        ours = per_step_us(lrdsl.torch.scheduler(optimizer(), **spec), metric)
        theirs = per_step_us(make(optimizer()), None if str(metric).startswith("tokens") else metric)
        ratio = ours / theirs
        if target is None:  # a figure to read beside the row above, no target of its own
            print(f"{name:<18} {ours:>9.2f} {theirs:>10.2f} {ratio:>7.2f} {'—':>7}")
            continue
        print(f"{name:<18} {ours:>9.2f} {theirs:>10.2f} {ratio:>7.2f} {'≤' + format(target, 'g'):>7} "
              f"{'ok' if ratio <= target else 'MISS'}")
    early, late, peak = memory_growth()
    print(f"traced memory after 10⁴ steps: {early:.0f} KiB; after 10⁶ steps: {late:.0f} KiB; "
          f"peak {peak:.0f} KiB ({'flat' if late <= early + 16 else 'GROWS'})")


if __name__ == "__main__":
    main()
