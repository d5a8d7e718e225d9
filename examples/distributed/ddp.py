"""An lrdsl schedule in a plain PyTorch DDP loop; run it under torchrun.

    torchrun --standalone --nproc_per_node=2 examples/distributed/ddp.py --out runs/ddp/lr.csv

Every process builds the same scheduler and steps it once per optimizer step, so every process
holds the same learning rate: it is computed from the tick, nothing is sent. Each process prints
one JSON line (its rank, the LR read at each optimizer step, the validation losses it reported);
rank 0 alone writes ``--out``.
"""

import argparse
import csv
import json
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import lrdsl.torch


def data(n=256, features=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    y = x @ torch.randn(features, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expr", default="warmup(1ep) >> cosine(0.05, 100%) | plateau(val_loss, 0.5, patience=0)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="per process; the global batch is this × processes")
    parser.add_argument("--out", help="a CSV of tick, lr that rank 0 writes")
    args = parser.parse_args()

    dist.init_process_group("gloo")  # "nccl" on GPUs
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)  # the schedule sets the LR

    train, val = data()
    sampler = DistributedSampler(train, shuffle=True, seed=0)  # each process: 1/world of the samples
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    val_loader = DataLoader(val, batch_size=64, sampler=DistributedSampler(val, shuffle=False))

    # len(loader) is this process's batches per epoch; with a DistributedSampler that is also
    # the optimizer steps of the global batch per epoch: 1 tick = 1 step of every process
    scheduler = lrdsl.torch.scheduler(optimizer, args.expr, steps_per_epoch=len(loader),
                                      total=args.epochs * len(loader))
    lrs, reported = [], []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for x, y in loader:
            lrs.append(optimizer.param_groups[0]["lr"])
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            val_loss = sum(F.mse_loss(model(x), y, reduction="sum").item() for x, y in val_loader) / (
                len(val_loader.sampler))
        scheduler.report(val_loss=val_loss)  # every rank reports; see the page's plateau section
        reported.append(val_loss)

    print(json.dumps({"rank": rank, "lrs": lrs, "val_loss": reported}), flush=True)
    if rank == 0 and args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["tick", "lr"])
            writer.writerows(enumerate(lrs))
    dist.barrier()  # gloo: no process leaves the group while another still uses it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
