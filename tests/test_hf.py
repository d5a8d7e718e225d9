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


# --- programs, free values and clocks (v3) --------------------------------------------------------

KL_TICKS = 12  # kl = linear(0, 1, 12): 0 … 1 over the first 12 optimizer steps, then 1
PROGRAM = f"lr = warmup(3) >> cosine(0.1, 100%)\nkl = linear(0, 1, {KL_TICKS})"
# variable-length batches: the 4 samples of batch b (in order: sequential sampling) hold LENGTHS[b] tokens
LENGTHS = [4, 9, 5, 12, 7]
TOKENS_PROGRAM = "lr = warmup(100 tok) >> cosine(0.1, 400 tok)\nkl = linear(0, 1, 200 tok)"


class Lengths(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.x = [torch.randint(1, 50, (LENGTHS[i // 4],), generator=g) for i in range(4 * len(LENGTHS))]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": torch.ones_like(self.x[i]), "labels": i % 2}


class Reading(Trainer):
    """Reads the callback's free value as a loss term would, in each training step."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        schedule = next(c for c in self.callback_handler.callbacks if isinstance(c, lrdsl.hf.Schedule))
        if "kl" in schedule.free:
            self.read.append((self.state.global_step, schedule.value("kl")))
        return super().compute_loss(model, inputs, *args, **kwargs)


def _run(program, out, dataset, *, resume=None, epochs=3, **options):
    extra = {k: options.pop(k) for k in list(options) if k in ("include_num_input_tokens_seen",)}
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=4, num_train_epochs=epochs, learning_rate=0.5,
        logging_steps=1, save_strategy="epoch", seed=0, train_sampling_strategy="sequential",
        report_to=[], disable_tqdm=True, use_cpu=True, **extra)
    schedule = lrdsl.hf.Schedule(program, **options)
    trainer = Reading(model=_model(), args=args, train_dataset=dataset, callbacks=[schedule])
    trainer.read = []
    trainer.train(resume_from_checkpoint=resume)
    steps = [h for h in trainer.state.log_history if "learning_rate" in h]
    return trainer, schedule, steps


@pytest.fixture(scope="module")
def program_run(tmp_path_factory):
    return _run(PROGRAM, str(tmp_path_factory.mktemp("program")), Tokens(20, 1), epochs=4)


@pytest.mark.slow
def test_a_program_drives_the_lr_and_logs_its_free_value_beside_it(program_run):
    trainer, schedule, steps = program_run
    assert [h["step"] for h in steps] == list(range(1, 21))  # step k+1 logs optimizer step k
    lrs = [h["learning_rate"] for h in steps]
    kl = [h["kl"] for h in steps]
    assert lrs == pytest.approx(_expected(20, 3, 20), rel=1e-12, abs=1e-15)
    want = [min(k, KL_TICKS) / KL_TICKS for k in range(20)]  # linear(0, 1, 12), held at 1 after
    assert kl == pytest.approx(want, rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(PROGRAM, 20, total=20, steps_per_epoch=5)
    assert kl == reference["kl"].tolist() and lrs == reference["lr"].tolist()
    # the loss read the value in force for its optimizer step
    assert trainer.read == [(k, want[k]) for k in range(20)]
    assert schedule.values()["kl"] == 1.0 and schedule.free == ("kl",)


def _at_tokens(position):
    """warmup(100 tok) >> cosine(0.1, 400 tok), and linear(0, 1, 200 tok), at a token count."""
    lr = 0.1 * position / 100 if position < 100 else \
        0.05 * (1 + math.cos(math.pi * min(position - 100, 400) / 400))
    return lr, min(position, 200) / 200


@pytest.fixture(scope="module")
def tokens_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tokens"))
    options = dict(clock="tokens", include_num_input_tokens_seen=True)
    full = _run(TOKENS_PROGRAM, out, Lengths(), **options)
    resumed = _run(TOKENS_PROGRAM, str(tmp_path_factory.mktemp("tokens-resumed")), Lengths(),
                   resume=os.path.join(out, "checkpoint-5"), **options)
    return out, full, resumed


@pytest.mark.slow
def test_a_tokens_clock_steps_by_the_trainers_num_input_tokens_seen(tokens_run):
    _, (trainer, schedule, steps), _ = tokens_run
    per_step = [4 * n for n in LENGTHS] * 3
    positions = [sum(per_step[:k]) for k in range(15)]  # tokens before optimizer step k
    assert [h["num_input_tokens_seen"] for h in steps] == [sum(per_step[:k + 1]) for k in range(15)]
    expected = [_at_tokens(p) for p in positions]
    assert [h["learning_rate"] for h in steps] == pytest.approx([lr for lr, _ in expected], rel=1e-12, abs=1e-15)
    assert [h["kl"] for h in steps] == pytest.approx([kl for _, kl in expected], rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(TOKENS_PROGRAM, positions, clock="tokens")
    assert [h["learning_rate"] for h in steps] == reference["lr"].tolist()
    assert schedule.scheduler.runtime.counters["tokens"] == 3 * 4 * sum(LENGTHS)


@pytest.mark.slow
def test_a_tokens_clock_resumes_from_its_counted_tokens(tokens_run):
    out, (_, _, steps), (trainer, schedule, resumed) = tokens_run
    saved = torch.load(os.path.join(out, "checkpoint-5", "scheduler.pt"), weights_only=True)[lrdsl.hf.STATE_KEY]
    assert saved["counters"]["tokens"] == 4 * sum(LENGTHS) and saved["clock"] == "tokens"
    keys = ("step", "learning_rate", "kl", "num_input_tokens_seen")
    # the first 5 restored, then its own: the same values and counts
    assert [[h[k] for k in keys] for h in resumed] == [[h[k] for k in keys] for h in steps]
    assert schedule.scheduler.runtime.counters["tokens"] == 3 * 4 * sum(LENGTHS)


@pytest.mark.slow
def test_a_samples_clock_counts_the_global_batch_of_each_step(tmp_path):
    # per_device_train_batch_size 4 × gradient_accumulation_steps 1 × 1 process: 4 samples a step
    _, schedule, steps = _run("cosine(0.1, 100%)", str(tmp_path), Tokens(20, 1), epochs=2, clock="samples")
    lrs = [h["learning_rate"] for h in steps]
    assert lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * 4 * k / 40)) for k in range(10)], rel=1e-12)
    assert schedule.scheduler.runtime.counters["samples"] == 40


@pytest.mark.slow
def test_a_tokens_clock_without_the_trainers_token_count_is_refused(tmp_path):
    with pytest.raises(lrdsl.LrdslError, match=r"include_num_input_tokens_seen=True"):
        _run(TOKENS_PROGRAM, str(tmp_path), Lengths(), epochs=1, clock="tokens")


def test_values_exist_once_training_starts_and_options_are_checked():
    with pytest.raises(lrdsl.LrdslError, match=r"has no values before training starts"):
        lrdsl.hf.Schedule(PROGRAM).value("kl")
    with pytest.raises(lrdsl.ArgumentError, match=r"no option 'tokens_per_smaple'.*'tokens_per_sample'"):
        lrdsl.hf.Schedule(PROGRAM, tokens_per_smaple=8)
    with pytest.raises(lrdsl.LrdslError, match=r"clock must be one of"):
        lrdsl.hf.Schedule(PROGRAM, clock="epochs")
    assert lrdsl.hf.Schedule(PROGRAM).free == ("kl",)


@pytest.mark.slow
def test_under_torchrun_every_process_logs_the_curve_of_the_global_batch_steps(tmp_path):
    """docs/distributed.md's examples/distributed/hf_trainer.py: 40 samples, 2 processes × batches
    of 4, so 5 optimizer steps an epoch, 3 epochs; a plateau on eval_loss (gathered by the Trainer)."""
    from distributed_docs import records, run

    result = run("hf-trainer", OUT=str(tmp_path / "hf"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = records(result.stdout)
    by_rank = {line["rank"]: line for line in lines}
    assert sorted(by_rank) == [0, 1]
    assert by_rank[0] == {**by_rank[1], "rank": 0}  # the same LRs and eval losses on both
    steps = math.ceil(40 / (2 * 4))
    losses = by_rank[0]["eval_loss"]
    assert len(losses) == 3 and len(by_rank[0]["lrs"]) == 3 * steps
    expected = lrdsl.curve("warmup(1ep) >> cosine(0.1, 100%) | plateau(eval_loss, 0.5, patience=0)", 3 * steps,
                           steps_per_epoch=steps, total=3 * steps, metrics={"eval_loss": losses})
    assert by_rank[0]["lrs"] == pytest.approx(expected.tolist(), rel=1e-12, abs=1e-15)
    assert (tmp_path / "hf" / "model.safetensors").is_file()
