"""lrdsl.lightning.Schedule under Lightning's DDP: two CPU processes with the same global batch.

    python examples/distributed/lightning_ddp.py --devices 2 --out runs/lightning/lrs.json

A tokens clock: sequence i holds LENGTHS[i] real tokens (padded per batch); the count function
counts this process's real tokens (``attention_mask.sum()``) and lrdsl sums them over the
processes, so the schedule moves by the global batch's tokens on every process. Lightning
starts the second process itself (``strategy="ddp"``); ``--devices 1`` is the same run on one
process with batches of 8. Each process prints one JSON line (its rank, and the LR and ``kl``
read before each optimizer step); rank 0 alone writes them to ``--out``.
"""

import argparse
import json
import os
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader

import lrdsl.lightning

GLOBAL_BATCH = 8
LENGTHS = [3 + (7 * i) % 11 for i in range(48)]  # 6 global batches of 8 sequences
PROGRAM = "lr = warmup(100 tok) >> cosine(0.1, 600 tok)\nkl = linear(0, 1, 300 tok)"


def collate(items):
    width = max(len(x) for x in items)
    ids = torch.zeros(len(items), width, dtype=torch.long)
    mask = torch.zeros(len(items), width, dtype=torch.long)
    for row, x in enumerate(items):
        ids[row, :len(x)], mask[row, :len(x)] = x, 1
    return {"input_ids": ids, "attention_mask": mask}


def real_tokens(batch):
    return batch["attention_mask"].sum()


class Sequences(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.EmbeddingBag(50, 4)
        self.head = torch.nn.Linear(4, 1)
        self.read = []

    def training_step(self, batch, batch_idx):
        return self.head(self.embed(batch["input_ids"])).square().mean()

    def on_before_optimizer_step(self, optimizer):
        schedule = self.trainer.callbacks[0]
        self.read.append([optimizer.param_groups[0]["lr"], schedule.value("kl")])

    def train_dataloader(self):
        # process r takes sequences r, r + P, r + 2P…: global batch j is sequences 8j … 8j+7
        g = torch.Generator().manual_seed(0)
        data = [torch.randint(1, 50, (n,), generator=g) for n in LENGTHS]
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return DataLoader(data[rank::world], batch_size=GLOBAL_BATCH // world, collate_fn=collate)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)  # the schedule sets the LR


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--out", help="a JSON list of [lr, kl] per optimizer step that rank 0 writes")
    args = parser.parse_args()

    module = Sequences()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=args.devices,
                        strategy="ddp" if args.devices > 1 else "auto", logger=False,
                        use_distributed_sampler=False,  # the loader above shards by rank itself
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[lrdsl.lightning.Schedule(PROGRAM, clock="tokens", count=real_tokens)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module)
    print(json.dumps({"rank": trainer.global_rank, "read": module.read}), flush=True)
    if trainer.global_rank == 0 and args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(module.read, f)


if __name__ == "__main__":
    main()
