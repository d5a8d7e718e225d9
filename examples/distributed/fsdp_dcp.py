"""FSDP2 (``fully_shard``) with torch.distributed.checkpoint: the lrdsl scheduler is saved and
loaded with the model and optimizer, and a resumed run continues the LR sequence exactly, also on
another number of processes.

    torchrun --standalone --nproc_per_node=2 examples/distributed/fsdp_dcp.py --stop 5 --save ckpt
    torchrun --standalone --nproc_per_node=1 examples/distributed/fsdp_dcp.py --resume ckpt --batch 8

The global batch is ``--batch`` × processes.  On the ticks clock (default) a tick is an optimizer
step, so a resumed run keeps the global batch (``--batch 8`` on 1 process for 4 on 2).  On the
samples clock (``--clock samples``) the schedule counts samples (``sched.step(samples=global
batch)``), so a resumed run may take another batch.  Each rank prints one JSON line: its rank,
the scheduler's position before each step (the tick, or the samples so far) and the LR the step
used; rank 0 also the losses it reported to the plateau (alone: the other ranks do not wait).
"""

import argparse
import json

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.stateful import Stateful
from torch.distributed.fsdp import fully_shard

import lrdsl.torch

STEPS = 12  # the whole run, in optimizer steps of the global batch of 8
PLATEAU = " | plateau(loss, 0.5, patience=0, threshold=0.9)"  # cuts unless the loss drops 10×
#: per clock: the expression, the run's length and how often rank 0 reports its loss, in its unit
SCHEDULES = {
    "ticks": dict(expr="warmup(2) >> cosine(0.1, 100%)" + PLATEAU, total=STEPS, report_every=3),
    "samples": dict(expr="warmup(16 sp) >> cosine(0.1, 100%)" + PLATEAU, total=STEPS * 8, report_every=24),
}


class Training(Stateful):
    """The model and optimizer as DCP saves them (sharded), plus the lrdsl scheduler as it is."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self):
        model, optimizer = get_state_dict(self.model, self.optimizer)
        return {"model": model, "optim": optimizer}

    def load_state_dict(self, state):
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", type=int, default=None, help="save after this step (default: run to the end)")
    parser.add_argument("--save", help="checkpoint directory to save to at --stop")
    parser.add_argument("--resume", help="checkpoint directory to resume from")
    parser.add_argument("--batch", type=int, default=4, help="samples per process and step")
    parser.add_argument("--clock", choices=sorted(SCHEDULES), default="ticks")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    for layer in model[::2]:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    schedule = SCHEDULES[args.clock]
    sched = lrdsl.torch.scheduler(optimizer, schedule["expr"], total=schedule["total"], clock=args.clock)
    state = {"training": Training(model, optimizer), "scheduler": sched}  # the scheduler is a Stateful
    if args.resume:
        dcp.load(state, checkpoint_id=args.resume)
    global_batch = args.batch * world
    data = torch.Generator().manual_seed(1000 * sched.last_epoch + rank)
    positions, lrs, reported = [], [], []
    samples = sched.runtime.position if args.clock == "samples" else None
    while (samples if samples is not None else sched.last_epoch) < schedule["total"] and \
            (args.stop is None or sched.last_epoch < args.stop):
        positions.append(sched.runtime.position)
        x = torch.randn(args.batch, 4, generator=data)
        loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        loss.backward()
        optimizer.step()
        lrs.append(optimizer.param_groups[0]["lr"])  # the LR this step used
        optimizer.zero_grad()
        if samples is not None:
            sched.step(samples=global_batch)
            samples = sched.runtime.position
        else:
            sched.step()
        if rank == 0 and sched.runtime.position % schedule["report_every"] == 0:
            reported.append(loss.item())
            sched.report(loss=loss.item())
    if args.save:  # also right after a report: the checkpoint holds it
        dist.barrier()  # a report just made on some rank is posted before any rank reads the state
        dcp.save(state, checkpoint_id=args.save)
    print(json.dumps({"rank": rank, "positions": positions, "lrs": lrs, "reported": reported}), flush=True)
    dist.barrier()  # gloo: no process leaves the group while another still uses it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
