"""µs per optimizer step that plateau reports under torch.distributed cost, on 2 gloo processes.

    .venv/bin/python bench/torch_reports.py          # starts itself under torchrun

A schedule with a plateau under more than one process posts reports to the c10d store and
decides them at every optimizer step (docs/distributed.md, "Plateau reports"): one store round
trip per step on each rank, two on rank 0.  Printed: a one-parameter SGD step with a constant
lrdsl schedule (no plateau: no hook, no store), with a plateau and no report, and with a report
from rank 0 every 10 steps; each step all-reduces its one gradient first, as DDP does (the
lock-step the reports rely on).  Target (issue #22): the plateau's cost is one store round trip, tens
of µs, paid only by schedules with a plateau.
"""

import os
import subprocess
import sys
import time

STEPS = 5000


def measure() -> None:
    import torch
    import torch.distributed as dist

    import lrdsl.torch

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    rows = []
    for name, expr, every in (("no plateau", "0.1", 0), ("plateau, no report", "0.1 | plateau(val_loss, 0.5)", 0),
                              ("plateau, rank 0 reports every 10 steps", "0.1 | plateau(val_loss, 0.5)", 10)):
        best = float("inf")
        for _ in range(3):
            weight = torch.nn.Parameter(torch.zeros(1))
            weight.grad = torch.ones(1)
            optimizer = torch.optim.SGD([weight], lr=0.1)
            sched = lrdsl.torch.scheduler(optimizer, expr)
            dist.barrier()
            began = time.perf_counter()
            for step in range(STEPS):
                dist.all_reduce(weight.grad)  # DDP's gradient sync
                optimizer.step()
                sched.step()
                if every and rank == 0 and step % every == 0:
                    sched.report(val_loss=1.0)
            best = min(best, (time.perf_counter() - began) / STEPS)
            dist.barrier()
        rows.append((name, best * 1e6))
    if rank == 0:
        print(f"{'2 processes, gloo: all_reduce + optimizer.step() + sched.step()':<52} µs/step")
        for name, micros in rows:
            print(f"{name:<52} {micros:7.1f}")
        print(f"{'the plateau adds':<52} {rows[1][1] - rows[0][1]:7.1f}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if "RANK" in os.environ:
        measure()
    else:
        torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
        sys.exit(subprocess.call([torchrun, "--standalone", "--nproc_per_node=2", __file__],
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}))
