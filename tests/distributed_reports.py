"""Plateau reports under torch.distributed, for tests/test_distributed_reports.py: several ways
of reporting, each a short DDP run on the same 2 processes (one torchrun), one JSON line per
rank and case with the LR each optimizer step used.

    torchrun --standalone --nproc_per_node=2 tests/distributed_reports.py OUT_DIR

Every case runs EPOCHS × STEPS optimizer steps of a DDP Linear(4, 1) on gloo; the reported
values are fixed numbers (VALUES), so the test computes the expected LRs with lrdsl.curve.
"""

import contextlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import lrdsl.torch
from lrdsl.errors import LrdslError

EXPR = "warmup(1ep) >> cosine(0.1, 100%) | plateau(val_loss, 0.5, patience=0)"
EPOCHS, STEPS = 4, 3
VALUES = [3.0, 2.0, 2.5, 2.4]  # one report per epoch: epochs 2 and 3 do not improve
#: each rank's reports when every rank reports: rank 0's alone, rank 1's alone and their mean
#: [3, 3.5, 3.5, 2] each give other scales (the test checks they differ)
EVERY = {0: [3.0, 2.0, 5.0, 2.0], 1: [3.0, 5.0, 2.0, 2.0]}


def run(report, accumulate=1, save_after=None, out=None):
    """The LRs of one run; ``report(sched, epoch, rank, where)`` is called at ``where`` =
    "epoch" (after the epoch's last step), "micro" (between two batches of an accumulated step)
    and "late" (after the backward of an epoch's first step, before its optimizer step)."""
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = lrdsl.torch.scheduler(optimizer, EXPR, steps_per_epoch=STEPS, total=EPOCHS * STEPS)
    data = torch.Generator().manual_seed(rank)
    lrs = []
    for epoch in range(EPOCHS):
        for step in range(STEPS):
            for micro in range(accumulate):
                x = torch.randn(8, 4, generator=data)
                last = micro == accumulate - 1
                with contextlib.nullcontext() if last else model.no_sync():
                    torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
                if step == 0 and micro == 0 and not last and epoch > 0:
                    report(sched, epoch - 1, rank, "micro")
            if step == 0 and epoch > 0:
                report(sched, epoch - 1, rank, "late")
            optimizer.step()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            sched.step()
        report(sched, epoch, rank, "epoch")
        if save_after == epoch:  # rank 0 saves (torch.save style); every rank resumes from it
            if rank == 0:
                torch.save(sched.state_dict(), out)
            dist.barrier()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            sched = lrdsl.torch.scheduler(optimizer, EXPR, steps_per_epoch=STEPS, total=EPOCHS * STEPS)
            sched.load_state_dict(torch.load(out, weights_only=False))
    return lrs


def cases(out: Path) -> dict:
    subgroup = dist.new_group([1])  # on every rank, as new_group requires
    return {
        "rank0": lambda: run(lambda s, e, r, w: r == 0 and w == "epoch" and s.report(val_loss=VALUES[e])),
        # every rank reports its own value: the mean is what counts
        "every": lambda: run(lambda s, e, r, w: w == "epoch" and s.report(val_loss=EVERY[r][e])),
        "step_metric": run_step_metric,
        # rank 1 alone, on a group of rank 1: rank 0 is unaffected
        "subgroup": lambda: run(lambda s, e, r, w: r == 1 and w == "epoch"
                                and s.report(val_loss=VALUES[e], process_group=subgroup)),
        # reported by rank 0 between two batches of the next step's accumulation
        "accumulate": lambda: run(lambda s, e, r, w: r == 0 and w == "micro" and s.report(val_loss=VALUES[e]),
                                  accumulate=3),
        # reported by rank 1 after its backward: rank 0 may have taken the step; all ranks agree
        "late": lambda: run(lambda s, e, r, w: r == 1 and w == "late" and s.report(val_loss=VALUES[e])),
        # rank 0 reports, then saves before any optimizer step decided the report
        "saved": lambda: run(lambda s, e, r, w: r == 0 and w == "epoch" and s.report(val_loss=VALUES[e]),
                             save_after=1, out=out / "sched.pt"),
    }


def run_step_metric():
    """step(metric) on rank 0, step() on the others: as report(metric) then step()."""
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = lrdsl.torch.scheduler(optimizer, EXPR, steps_per_epoch=STEPS, total=EPOCHS * STEPS)
    lrs = []
    for tick in range(EPOCHS * STEPS):
        x = torch.randn(8, 4)
        torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
        optimizer.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        epoch_end = (tick + 1) % STEPS == 0
        if rank == 0 and epoch_end:
            sched.step(VALUES[tick // STEPS])
        else:
            sched.step()
    return lrs


def refused() -> str:
    """A report on a group without this rank: a one-line LrdslError, before anything is posted."""
    group = dist.new_group([0])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = lrdsl.torch.scheduler(optimizer, EXPR, steps_per_epoch=STEPS, total=EPOCHS * STEPS)
    if dist.get_rank() == 0:
        return ""
    try:
        sched.report(val_loss=1.0, process_group=group)
    except LrdslError as error:
        return str(error)
    return "not refused"


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    found = {name: case() for name, case in cases(out).items()}
    found["refused"] = refused()
    (out / f"rank{rank}.json").write_text(json.dumps(found))
    dist.barrier()  # gloo: no process leaves the group while another still uses it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
