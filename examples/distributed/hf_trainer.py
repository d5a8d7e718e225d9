"""lrdsl.hf.Schedule on the Hugging Face Trainer under torchrun (CPU, gloo).

    torchrun --standalone --nproc_per_node=2 examples/distributed/hf_trainer.py --out runs/hf

A one-layer BERT built from a config (nothing is downloaded) on random tokens. The Trainer
counts optimizer steps of the global batch (``state.global_step``) on every process and lrdsl
ticks on them, so every process holds the same LR; ``eval_loss``, which the Trainer gathers
over the processes, feeds the plateau alike everywhere. Each process prints one JSON line: its
rank, the ``learning_rate`` the Trainer logged at each step and each evaluation's
``eval_loss``. The Trainer saves (``--out``) from rank 0 alone.
"""

import argparse
import json

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import lrdsl.hf


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(1, 50, (n, 8), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.y[i]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expr", default="warmup(1ep) >> cosine(0.1, 100%) | plateau(eval_loss, 0.5, patience=0)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/hf", help="the Trainer's output_dir")
    args = parser.parse_args()

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16))
    training = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        num_train_epochs=args.epochs, learning_rate=0.1,  # lr_scheduler_type is overridden by lrdsl
        logging_steps=1, eval_strategy="epoch", save_strategy="no", seed=0,
        report_to=[], disable_tqdm=True, use_cpu=True, ddp_backend="gloo", ddp_find_unused_parameters=False)
    trainer = Trainer(model=model, args=training, train_dataset=Tokens(40, 1), eval_dataset=Tokens(16, 2),
                      callbacks=[lrdsl.hf.Schedule(args.expr)])
    trainer.train()
    trainer.save_model()  # the Trainer writes on rank 0 alone

    history = trainer.state.log_history
    print(json.dumps({"rank": trainer.args.process_index,
                      "lrs": [h["learning_rate"] for h in history if "learning_rate" in h],
                      "eval_loss": [h["eval_loss"] for h in history if "eval_loss" in h]}), flush=True)


if __name__ == "__main__":
    main()
