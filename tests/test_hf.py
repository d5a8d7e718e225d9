"""lrdsl.hf.Schedule on a real transformers.Trainer (CPU, a one-layer BERT built from a config).

Expected LRs are written here as formulas (linear warmup, cosine, the plateau's halving), the
plateau's reductions checked against torch's own ReduceLROnPlateau fed the logged eval losses,
and everything against lrdsl.curve too.
"""

import math
import os

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import transformers  # noqa: E402
from transformers import (BertConfig, BertForSequenceClassification, Trainer,  # noqa: E402
                          TrainerCallback, TrainingArguments)

import lrdsl  # noqa: E402
import lrdsl.hf  # noqa: E402

transformers.logging.set_verbosity_error()

# score by the step of the evaluation: with patience=1 the third equal report (step 15) halves
SCORES = {5: 1.0, 10: 1.0, 15: 1.0, 20: 0.5}
SANITY_SCORE = -100.0  # an eval_on_start report of it would fire the plateau one evaluation early


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(1, 50, (n, 8), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": torch.ones(8, dtype=torch.long),
                "labels": self.y[i]}


class Score(TrainerCallback):
    """Puts a scripted ``eval_score`` into each evaluation's metrics (before lrdsl's callback)."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics["eval_score"] = SCORES[state.global_step] if state.global_step in SCORES else SANITY_SCORE


def _model():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16))


def _train(expr, out, *, resume=None, accumulate=1, batch=4, epochs=4, kind="linear", **extra):
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=batch, per_device_eval_batch_size=4,
        gradient_accumulation_steps=accumulate, num_train_epochs=epochs, learning_rate=0.5,
        lr_scheduler_type=kind, warmup_steps=7,  # what the Trainer would do: overridden
        logging_steps=1, eval_strategy="epoch", save_strategy="epoch", seed=0,
        report_to=[], disable_tqdm=True, use_cpu=True, **extra)
    trainer = Trainer(model=_model(), args=args, train_dataset=Tokens(20, 1), eval_dataset=Tokens(8, 2),
                      callbacks=[Score(), lrdsl.hf.Schedule(expr)])
    trainer.train(resume_from_checkpoint=resume)
    history = trainer.state.log_history
    logged = {h["step"]: h["learning_rate"] for h in history if "learning_rate" in h}
    evals = [(h["step"], h) for h in history if "eval_loss" in h]  # by step: eval_on_start's is step 0
    return trainer, logged, evals


def _expected(n, warmup, total, halved_from=None):
    """0.1·k/W during warmup, then 0.05·(1 + cos(π(k − W)/T)), halved from tick ``halved_from``."""
    out = []
    for k in range(n):
        lr = 0.1 * k / warmup if k < warmup else 0.05 * (1 + math.cos(math.pi * (k - warmup) / total))
        out.append(lr * 0.5 if halved_from is not None and k >= halved_from else lr)
    return out


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """5 optimizer steps an epoch, 4 epochs; a plateau on `score` (found as eval_score);
    eval_on_start; resumed from the checkpoint of step 10."""
    out = str(tmp_path_factory.mktemp("scored"))
    expr = "warmup(3) >> cosine(0.1, 100%) | plateau(score, 0.5, patience=1)"
    full = _train(expr, out, eval_on_start=True)
    resumed = _train(expr, str(tmp_path_factory.mktemp("scored-resumed")), eval_on_start=True,
                     resume=os.path.join(out, "checkpoint-10"))
    return expr, full, resumed


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory):
    """batch 2, gradient_accumulation_steps=2: 10 batches -> 5 optimizer steps an epoch, 3 epochs;
    `ep` and `%`; a plateau on eval_loss, under its own name; resumed from step 5."""
    out = str(tmp_path_factory.mktemp("accumulated"))
    expr = "warmup(1ep) >> cosine(0.1, 100%) | plateau(eval_loss, 0.5, patience=0)"
    # the Trainer's own plateau scheduler, which it steps only on evaluations: overridden too
    kw = dict(accumulate=2, batch=2, epochs=3, kind="reduce_lr_on_plateau", metric_for_best_model="loss")
    full = _train(expr, out, **kw)
    resumed = _train(expr, str(tmp_path_factory.mktemp("acc-resumed")), resume=os.path.join(out, "checkpoint-5"),
                     **kw)
    return expr, full, resumed


@pytest.mark.slow
def test_logged_learning_rate_follows_the_expression_not_lr_scheduler_type(scored):
    expr, (trainer, logged, _), _ = scored
    assert sorted(logged) == list(range(1, 21))  # logged at step k+1 for optimizer step k
    lrs = [logged[k + 1] for k in range(20)]
    assert lrs == pytest.approx(_expected(20, 3, 20, halved_from=15), rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(expr, 20, steps_per_epoch=5, total=20,
                            metrics={"score": [SCORES[s] for s in sorted(SCORES)]})
    assert lrs == reference.tolist()
    assert trainer.optimizer.param_groups[1]["lr"] == trainer.optimizer.param_groups[0]["lr"]


@pytest.mark.slow
def test_resume_from_checkpoint_is_exact(scored):
    _, (_, logged, evals), (trainer, resumed, resumed_evals) = scored
    assert resumed == logged  # the resumed history holds the first 10 steps, restored, then its own
    # the same later losses: the model and the data order are restored too
    assert {s: h["eval_loss"] for s, h in resumed_evals if s > 10} == {s: h["eval_loss"] for s, h in evals if s > 10}
    assert trainer.state.global_step == 20
    saved = torch.load(os.path.join(trainer.args.output_dir, "checkpoint-20", "scheduler.pt"), weights_only=True)
    assert saved[lrdsl.hf.STATE_KEY]["last_epoch"] == 20


@pytest.mark.slow
def test_accumulation_counts_optimizer_steps_and_eval_loss_feeds_the_plateau(accumulated):
    expr, (trainer, logged, evals), _ = accumulated
    assert trainer.state.global_step == 15 and sorted(logged) == list(range(1, 16))
    lrs = [logged[k + 1] for k in range(15)]
    # the plateau's scale after each evaluation, from torch's ReduceLROnPlateau on the same losses
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    native = torch.optim.lr_scheduler.ReduceLROnPlateau(probe, factor=0.5, patience=0)
    scale_from = {}
    for step, h in evals:
        native.step(h["eval_loss"])
        scale_from[step] = probe.param_groups[0]["lr"]
    assert [s for s, _ in evals] == [5, 10, 15]
    expected = []
    for k, lr in enumerate(_expected(15, 5, 15)):
        scale = ([v for s, v in scale_from.items() if s <= k] or [1.0])[-1]
        expected.append(lr * scale)
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(expr, 15, steps_per_epoch=5, total=15,
                            metrics={"eval_loss": [h["eval_loss"] for _, h in evals]})
    assert lrs == reference.tolist()


@pytest.mark.slow
def test_resume_with_accumulation_is_exact(accumulated):
    _, (_, logged, _), (_, resumed, _) = accumulated
    assert resumed == logged


@pytest.mark.slow
def test_a_missing_monitor_names_the_evaluation_metrics(tmp_path):
    with pytest.raises(lrdsl.MetricError, match=r"'val_acc'.*eval_loss.*'eval_val_acc'"):
        _train("0.1 | plateau(val_acc, 0.5)", str(tmp_path), epochs=1)


def test_a_bad_expression_fails_when_the_callback_is_built():
    with pytest.raises(lrdsl.UnknownNameError):
        lrdsl.hf.Schedule("cosin(0.1, 10)")
    assert lrdsl.hf.Schedule("0.1 | plateau(eval_loss, 0.5)").monitors == ("eval_loss",)
