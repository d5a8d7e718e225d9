"""A tokens-clock run of lrdsl.lightning.Schedule on 1 or 2 CPU processes with the same global
batch, for tests/test_lightning.py: ``python tests/lightning_ddp.py DEVICES OUT.json``.

Sequence i holds LENGTHS[i] real tokens (padded per batch); the count function counts this
process's real tokens (``attention_mask.sum()``), lrdsl sums them over the processes.  Rank 0
writes the LR read before each optimizer step.
"""

import json
import sys
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
        self.lrs = []

    def training_step(self, batch, batch_idx):
        return self.head(self.embed(batch["input_ids"])).square().mean()

    def on_before_optimizer_step(self, optimizer):
        self.lrs.append([optimizer.param_groups[0]["lr"], self.trainer.callbacks[0].value("kl")])

    def train_dataloader(self):
        # process r takes sequences r, r + P, r + 2P…: global batch j is sequences 8j … 8j+7
        g = torch.Generator().manual_seed(0)
        data = [torch.randint(1, 50, (n,), generator=g) for n in LENGTHS]
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return DataLoader(data[rank::world], batch_size=GLOBAL_BATCH // world, collate_fn=collate)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(devices, out):
    module = Sequences()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False,
                        use_distributed_sampler=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[lrdsl.lightning.Schedule(PROGRAM, clock="tokens", count=real_tokens)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module)
    if trainer.global_rank == 0:
        with open(out, "w") as f:
            json.dump(module.lrs, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
