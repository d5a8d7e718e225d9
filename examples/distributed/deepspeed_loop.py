"""An lrdsl schedule driven by DeepSpeed's engine: ``torchrun --nproc_per_node=2 deepspeed_loop.py``.

DeepSpeed takes the scheduler as a callable of the optimizer it builds (its own wrapper under
ZeRO), and steps it at each real optimizer step — once per ``gradient_accumulation_steps`` micro
batches — so ``total`` counts optimizer steps of the global batch.  Every rank prints one JSON line:
its rank and the LR read before each optimizer step.
"""

import argparse
import json

import deepspeed
import torch

import lrdsl.torch

parser = argparse.ArgumentParser()
parser.add_argument("--expr", default="warmup(25%) >> cosine(0.1, 75%)")
parser.add_argument("--steps", type=int, default=8, help="optimizer steps")
parser.add_argument("--accumulation", type=int, default=2)
parser.add_argument("--zero", type=int, default=0, help="ZeRO stage (0, 1, 2)")
args = parser.parse_args()

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": args.accumulation,
          "zero_optimization": {"stage": args.zero}, "zero_allow_untested_optimizer": True}
engine, optimizer, _, scheduler = deepspeed.initialize(
    model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), config=config,
    lr_scheduler=lambda opt: lrdsl.torch.scheduler(opt, args.expr, total=args.steps))

lrs = []
for micro in range(args.steps * args.accumulation):
    loss = engine(torch.randn(2, 4)).pow(2).mean()
    engine.backward(loss)
    if engine.is_gradient_accumulation_boundary():
        lrs.append(optimizer.param_groups[0]["lr"])
    engine.step()  # the optimizer and the scheduler step at the boundary only
print(json.dumps({"rank": engine.global_rank, "lrs": lrs}), flush=True)
