"""Validation on rank 0 alone, its plateau report seen by every rank (DDP over gloo, CPU).

    torchrun --standalone --nproc_per_node=2 examples/distributed/rank0_report.py --epochs 4

Rank 0 validates and calls ``sched.report(val_loss=...)``; the other ranks do not.  No rank
waits for it: the report is posted, and every rank decides it at its next optimizer step
(docs/distributed.md "Plateau reports under torch.distributed").  Each rank prints one JSON
line: its rank, the LR each optimizer step used, and (rank 0) the validation losses reported.
"""

import argparse
import contextlib
import json

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import lrdsl.torch

EXPR = "warmup(1ep) >> cosine(0.1, 100%) | plateau(val_loss, 0.5, patience=0, threshold=0.5)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=3)
    parser.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = args.epochs * args.steps_per_epoch
    sched = lrdsl.torch.scheduler(optimizer, EXPR, steps_per_epoch=args.steps_per_epoch, total=steps)
    data = torch.Generator().manual_seed(rank)
    held_out = torch.Generator().manual_seed(1234)
    val_x = torch.randn(64, 4, generator=held_out)
    val_y = val_x.sum(1, keepdim=True) + torch.randn(64, 1, generator=held_out)  # noise: a floor
    lrs, val_losses = [], []
    for epoch in range(args.epochs):
        for _ in range(args.steps_per_epoch):
            for micro in range(args.accumulate):  # DDP syncs the gradients on the last batch only
                x = torch.randn(8, 4, generator=data)
                sync = micro == args.accumulate - 1
                with contextlib.nullcontext() if sync else model.no_sync():
                    torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True)).backward()
            optimizer.step()
            lrs.append(optimizer.param_groups[0]["lr"])  # the LR this step used
            optimizer.zero_grad()
            sched.step()
        if rank == 0:  # validation on rank 0 alone, and its report
            with torch.no_grad():
                val_loss = torch.nn.functional.mse_loss(model.module(val_x), val_y).item()
            val_losses.append(val_loss)
            sched.report(val_loss=val_loss)
    print(json.dumps({"rank": rank, "lrs": lrs, "val_losses": val_losses}), flush=True)
    dist.barrier()  # gloo: no process leaves the group while another still uses it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
