"""An lrdsl schedule in an ordinary Hugging Face Accelerate loop (docs/distributed.md).

    torchrun --standalone --nproc_per_node=2 examples/distributed/accelerate_loop.py \\
        --expr "warmup(25%) >> cosine(0.1, 75%)" --epochs 2

A tiny linear model on synthetic data (64 samples; 4 per process and batch, or 8 split across
the processes with --split-batches).  Each rank prints one JSON line per expression:
{"rank", "expr", "lrs"}, the LR read at each optimizer step (the one that step uses).
--before builds the scheduler before ``accelerator.prepare`` (one call for everything),
otherwise it is built from the prepared loader.  --val-loss gives the validation loss each
rank reports after each epoch ("1:1,0.7:1.1": epochs by commas, ranks by colons).
--save-at K saves the state after optimizer step K under --state (the run goes on); --resume
loads it and continues (the LRs printed are those from step K on).
"""

import argparse
import json
import math
import os

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from torch.utils.data import DataLoader, TensorDataset

import lrdsl.torch

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--expr", action="append", required=True, help="an lrdsl expression (repeatable)")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--accumulation", type=int, default=1, help="gradient accumulation steps")
parser.add_argument("--split-batches", action="store_true")
parser.add_argument("--before", action="store_true", help="build the scheduler before prepare")
parser.add_argument("--steps-per-epoch", type=int, help="override (to show the check's warning)")
parser.add_argument("--val-loss", help="per epoch, per rank: '1:1,0.7:1.1'")
parser.add_argument("--save-at", type=int, help="save_state after this optimizer step")
parser.add_argument("--state", default="runs/accelerate/state", help="save_state/load_state folder")
parser.add_argument("--resume", action="store_true", help="load_state from --state and continue")
args = parser.parse_args()

accelerator = Accelerator(cpu=True, gradient_accumulation_steps=args.accumulation,
                          dataloader_config=DataLoaderConfiguration(split_batches=args.split_batches))
assert accelerator.num_processes == int(os.environ.get("WORLD_SIZE", 1)), accelerator.state
losses = [[float(v) for v in epoch.split(":")] for epoch in args.val_loss.split(",")] \
    if args.val_loss else None

for index, expr in enumerate(args.expr):
    state = os.path.join(args.state, str(index))  # one folder per schedule
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    per_batch = 8 if args.split_batches else 4  # the global batch is 8 either way
    loader = DataLoader(data, batch_size=per_batch)

    if args.before:  # one prepare call: count what the prepared loader will give
        batches = len(loader) if args.split_batches else math.ceil(len(loader) / accelerator.num_processes)
        steps = math.ceil(batches / args.accumulation)
        sched = lrdsl.torch.scheduler(opt, expr, steps_per_epoch=args.steps_per_epoch or steps,
                                      total=args.epochs * steps)
        model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)
    else:  # the schedule counts the optimizer steps of the prepared loader
        model, opt, loader = accelerator.prepare(model, opt, loader)
        steps = math.ceil(len(loader) / accelerator.gradient_accumulation_steps)
        sched = accelerator.prepare(lrdsl.torch.scheduler(
            opt, expr, steps_per_epoch=args.steps_per_epoch or steps, total=args.epochs * steps))

    start = 0
    if args.resume:
        accelerator.load_state(state)
        start = sched.last_epoch  # the optimizer steps already taken
    lrs = []
    for epoch in range(start // steps, args.epochs):
        skip = (start - epoch * steps) * args.accumulation if epoch == start // steps else 0
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for x, y in batches:
            with accelerator.accumulate(model):
                loss = torch.nn.functional.mse_loss(model(x), y)
                accelerator.backward(loss)
                opt.step()
                if accelerator.sync_gradients:  # the LR this optimizer step used
                    lrs.append(opt.param_groups[0]["lr"])
                sched.step()
                opt.zero_grad()
            if accelerator.sync_gradients and sched.last_epoch == args.save_at:
                accelerator.save_state(state)
        if losses:
            sched.report(val_loss=losses[epoch][accelerator.process_index])  # averaged over ranks
    line = json.dumps({"rank": accelerator.process_index, "expr": expr, "lrs": lrs})
    print(line + "\n", end="", flush=True)  # in one write: the ranks share stdout

accelerator.wait_for_everyone()  # gloo: no process leaves the group while another still uses it
accelerator.end_training()
