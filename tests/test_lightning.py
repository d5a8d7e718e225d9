"""lrdsl.lightning.Schedule on a real lightning.Trainer (CPU, a linear model, 5 batches an epoch).

Expected LRs are written here as formulas (linear warmup, cosine, the plateau's halving from the
epoch the test's own val_loss table makes it fire) and checked against lrdsl.curve too.
"""

import math
import os
import warnings

import pytest

pytest.importorskip("lightning")
torch = pytest.importorskip("torch")

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import lrdsl  # noqa: E402
import lrdsl.lightning  # noqa: E402

BATCHES = 5  # training batches per epoch
EPOCHS = 6
# val_loss at the end of epoch i; with patience=1 the third equal report (epoch 2) halves the LR
VAL_LOSS = [1.0, 1.0, 1.0, 0.5, 0.6, 0.7]
SANITY_VAL_LOSS = -100.0  # would set `best` (and so fire the plateau one epoch early) if reported
PLATEAU = "plateau(val_loss, 0.5, patience=1)"


class Memory(Logger):
    """A logger that keeps (step, metrics) in memory."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name = "memory"
    version = 0

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.lrs = []  # (optimizer step, lr) read from the optimizer just before each step

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def on_before_optimizer_step(self, optimizer):
        self.lrs.append((self.trainer.global_step, optimizer.param_groups[0]["lr"]))

    def validation_step(self, batch, batch_idx):
        value = SANITY_VAL_LOSS if self.trainer.sanity_checking else VAL_LOSS[self.current_epoch]
        self.log("val_loss", torch.tensor(value))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(4 * BATCHES, 4, generator=g),
                                    torch.randn(4 * BATCHES, 1, generator=g)), batch_size=4)


def _fit(expr, root, *, accumulate=1, ckpt_path=None, after_validation=False, max_epochs=EPOCHS,
         monitor_lr=False):
    module, logger = Tiny(), Memory()
    callbacks = [lrdsl.lightning.Schedule(expr),
                 ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1,
                                 save_on_train_epoch_end=False if after_validation else None)]
    if monitor_lr:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = L.Trainer(max_epochs=max_epochs, accumulate_grad_batches=accumulate, callbacks=callbacks,
                        logger=logger, log_every_n_steps=1, num_sanity_val_steps=1,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers, small batches etc.
        trainer.fit(module, _loader(), _loader(), ckpt_path=ckpt_path)
    return module, trainer, logger


def _checkpoint(root, epoch):
    return os.path.join(root, next(f for f in os.listdir(root) if f.startswith(f"epoch={epoch}-")))


def _expected(n, warmup, total, per_epoch, halved_from_epoch=None):
    """0.1·k/W during warmup, then 0.05·(1 + cos(π(k − W)/T)); halved from the step after the
    report that fires the plateau."""
    out = []
    for k in range(n):
        lr = 0.1 * k / warmup if k < warmup else 0.05 * (1 + math.cos(math.pi * (k - warmup) / total))
        if halved_from_epoch is not None and k >= (halved_from_epoch + 1) * per_epoch:
            lr *= 0.5
        out.append(lr)
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Per-step stepping, checkpoints at the end of each training epoch (Lightning's default)."""
    root = str(tmp_path_factory.mktemp("plain"))
    expr = f"warmup(3) >> cosine(0.1, 100%) | {PLATEAU}"
    full = _fit(expr, root, monitor_lr=True)
    resumed = _fit(expr, str(tmp_path_factory.mktemp("plain-resumed")), ckpt_path=_checkpoint(root, 2))
    return expr, full, resumed, root


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory):
    """accumulate_grad_batches=2 (5 batches -> 3 optimizer steps an epoch), `ep` and `%`,
    checkpoints after validation."""
    root = str(tmp_path_factory.mktemp("accumulated"))
    expr = f"warmup(1ep) >> cosine(0.1, 100%) | {PLATEAU}"
    full = _fit(expr, root, accumulate=2, after_validation=True)
    resumed = _fit(expr, str(tmp_path_factory.mktemp("acc-resumed")), accumulate=2, after_validation=True,
                   ckpt_path=_checkpoint(root, 2))
    return expr, root, full, resumed


@pytest.fixture(scope="module")
def no_plateau(tmp_path_factory):
    """A time schedule alone, resumed from a checkpoint saved after validation."""
    root = str(tmp_path_factory.mktemp("no-plateau"))
    expr = "warmup(2) >> cosine(0.1, 100%)"
    full = _fit(expr, root, after_validation=True)
    resumed = _fit(expr, str(tmp_path_factory.mktemp("np-resumed")), after_validation=True,
                   ckpt_path=_checkpoint(root, 3))
    return expr, full, resumed


@pytest.mark.slow
def test_per_step_lrs_follow_the_expression_and_the_plateau(plain):
    expr, (module, trainer, _), _, _ = plain
    steps = [step for step, _ in module.lrs]
    lrs = [lr for _, lr in module.lrs]
    assert steps == list(range(BATCHES * EPOCHS))
    expected = _expected(len(lrs), 3, BATCHES * EPOCHS, BATCHES, halved_from_epoch=2)
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(expr, len(lrs), steps_per_epoch=BATCHES, total=BATCHES * EPOCHS,
                            metrics={"val_loss": VAL_LOSS})
    assert lrs == pytest.approx(reference.tolist(), rel=1e-12, abs=1e-15)
    # the plateau fired on val_loss with no user code, and the sanity check was not a report
    assert lrs[3 * BATCHES] == pytest.approx(0.5 * _expected(3 * BATCHES + 1, 3, 30, BATCHES)[-1])
    assert trainer.lr_scheduler_configs[0].scheduler is trainer.callbacks[0].scheduler


@pytest.mark.slow
def test_learning_rate_monitor_logs_our_lrs(plain):
    _, (module, _, logger), _, _ = plain
    logged = {step: row["lr-SGD"] for step, row in logger.rows if "lr-SGD" in row}
    assert sorted(logged) == list(range(BATCHES * EPOCHS))  # logged at each batch start
    assert [logged[step] for step, _ in module.lrs] == [lr for _, lr in module.lrs]


@pytest.mark.slow
def test_resume_from_an_end_of_epoch_checkpoint_equals_the_uninterrupted_run(plain):
    expr, (module, _, _), (resumed, trainer, _), root = plain
    saved = torch.load(_checkpoint(root, 2), weights_only=False)["callbacks"]["Schedule"]["scheduler"]
    assert saved["last_epoch"] == 3 * BATCHES and saved["expr"] == str(lrdsl.parse(expr))
    assert next(iter(saved["plateau"].values()))["scale"] == 0.5  # epoch 2's report is in it
    assert [s for s, _ in resumed.lrs] == list(range(3 * BATCHES, EPOCHS * BATCHES))
    assert resumed.lrs == module.lrs[3 * BATCHES:]  # exactly, the plateau's halving included
    assert trainer.callbacks[0].scheduler.last_epoch == EPOCHS * BATCHES


@pytest.mark.slow
def test_accumulation_resolves_ep_and_percent_in_optimizer_steps(accumulated):
    expr, _, (module, trainer, _), _ = accumulated
    per_epoch = math.ceil(BATCHES / 2)  # Lightning steps on an epoch's last batch too
    assert trainer.global_step == per_epoch * EPOCHS == len(module.lrs)
    lrs = [lr for _, lr in module.lrs]
    expected = _expected(len(lrs), per_epoch, per_epoch * EPOCHS, per_epoch, halved_from_epoch=2)
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(expr, len(lrs), steps_per_epoch=per_epoch, total=per_epoch * EPOCHS,
                            metrics={"val_loss": VAL_LOSS})
    assert lrs == pytest.approx(reference.tolist(), rel=1e-12, abs=1e-15)


@pytest.mark.slow
def test_resume_from_a_checkpoint_saved_after_validation_equals_the_uninterrupted_run(accumulated):
    _, _, (module, _, _), (resumed, _, _) = accumulated
    assert resumed.lrs == module.lrs[3 * 3:]


@pytest.mark.slow
def test_resume_without_a_plateau(no_plateau):
    expr, (module, _, _), (resumed, _, _) = no_plateau
    lrs = [lr for _, lr in module.lrs]
    assert lrs == pytest.approx(_expected(len(lrs), 2, BATCHES * EPOCHS, BATCHES), rel=1e-12, abs=1e-15)
    assert resumed.lrs == module.lrs[4 * BATCHES:]


@pytest.mark.slow
def test_a_checkpoint_of_another_run_length_is_refused_by_name(accumulated, tmp_path):
    expr, root, _, _ = accumulated
    with pytest.raises(lrdsl.LrdslError, match=r"total 18 -> 21.*max_epochs"):
        _fit(expr, str(tmp_path), accumulate=2, max_epochs=EPOCHS + 1, ckpt_path=_checkpoint(root, 2))


@pytest.mark.slow
def test_a_missing_monitor_names_the_logged_metrics(tmp_path):
    with pytest.raises(lrdsl.MetricError, match=r"'val_acc'.*only: val_loss"):
        _fit("0.1 | plateau(val_acc, 0.5)", str(tmp_path), max_epochs=1)


def test_a_bad_expression_fails_when_the_callback_is_built():
    with pytest.raises(lrdsl.LrdslSyntaxError):
        lrdsl.lightning.Schedule("warmup(5) >>")
    assert lrdsl.lightning.Schedule("0.1 | plateau(val_loss, 0.5)").monitors == ("val_loss",)
    assert lrdsl.lightning.Schedule("cosine(0.1, 10ep)").monitors == ()


# --- programs, free values and the tokens clock (v3) ---------------------------------------------

KL_TICKS = 20  # kl = linear(0, 1, 20): 0 … 1 over the first 20 optimizer steps, then 1
PROGRAM = f"lr = warmup(3) >> cosine(0.1, 100%)\nkl = linear(0, 1, {KL_TICKS})"


class Reading(Tiny):
    """Reads the callback's free value in each training step, as a VAE's loss would."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.read = []  # (optimizer step, kl) read in training_step

    def training_step(self, batch, batch_idx):
        self.read.append((self.trainer.global_step, self.schedule.value("kl")))
        return super().training_step(batch, batch_idx)


@pytest.fixture(scope="module")
def program_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("program"))
    schedule = lrdsl.lightning.Schedule(lrdsl.program(PROGRAM))
    module, logger = Reading(schedule), Memory()
    trainer = L.Trainer(max_epochs=EPOCHS, callbacks=[schedule, LearningRateMonitor("step")],
                        logger=logger, log_every_n_steps=1, num_sanity_val_steps=0,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, _loader())
    return schedule, module, logger


@pytest.mark.slow
def test_a_program_drives_the_lr_and_logs_its_free_value_beside_it(program_run):
    schedule, module, logger = program_run
    n = BATCHES * EPOCHS
    lrs = [lr for _, lr in module.lrs]
    assert lrs == pytest.approx(_expected(n, 3, n, BATCHES), rel=1e-12, abs=1e-15)
    kl = [min(k, KL_TICKS) / KL_TICKS for k in range(n)]  # linear(0, 1, 20), held at 1 after
    logged = {step: row["kl"] for step, row in logger.rows if "kl" in row}
    lr_logged = {step: row["lr-SGD"] for step, row in logger.rows if "lr-SGD" in row}
    assert sorted(logged) == sorted(lr_logged) == list(range(n))  # beside the LR, every step
    assert [logged[k] for k in range(n)] == pytest.approx(kl, rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(PROGRAM, n, total=n)
    assert [logged[k] for k in range(n)] == reference["kl"].tolist()
    assert [lr_logged[k] for k in range(n)] == pytest.approx(reference["lr"].tolist(), rel=1e-12)
    # what the training step read is the value in force for its optimizer step
    assert module.read == [(k, kl[k]) for k in range(n)]
    assert schedule.values()["kl"] == 1.0 and schedule.free == ("kl",)


# variable-length token batches: batch i holds 4 sequences of LENGTHS[i] tokens
LENGTHS = [4 + (5 * i) % 9 for i in range(10)]  # 4, 9, 5, 10, 6, 11, 7, 12, 8, 4
TOKENS_PROGRAM = "lr = warmup(200 tok) >> cosine(0.1, 1k tok)\nkl = linear(0, 1, 500 tok)"


class Sequences(L.LightningModule):
    """A bag-of-embeddings regressor on variable-length batches of token ids."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.EmbeddingBag(50, 4)
        self.head = torch.nn.Linear(4, 1)
        self.lrs = []
        self.kl = []

    def training_step(self, batch, batch_idx):
        return self.head(self.embed(batch["input_ids"])).square().mean()

    def on_before_optimizer_step(self, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])
        self.kl.append(self.trainer.callbacks[0].value("kl"))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _token_batches():
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(0, 50, (4, n), generator=g)} for n in LENGTHS]


def _fit_tokens(root, *, ckpt_path=None, max_epochs=3):
    module = Sequences()
    schedule = lrdsl.lightning.Schedule(TOKENS_PROGRAM, clock="tokens",
                                        count=lambda batch: batch["input_ids"].numel())
    trainer = L.Trainer(max_epochs=max_epochs, accumulate_grad_batches=2, logger=False,
                        callbacks=[schedule, ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1)],
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, DataLoader(_token_batches(), batch_size=None), ckpt_path=ckpt_path)
    return module, schedule


def _at_tokens(position):
    """warmup(200 tok) >> cosine(0.1, 1k tok), and linear(0, 1, 500 tok), at a token count."""
    if position < 200:
        lr = 0.1 * position / 200
    else:
        lr = 0.05 * (1 + math.cos(math.pi * min(position - 200, 1000) / 1000))
    return lr, min(position, 500) / 500


@pytest.fixture(scope="module")
def tokens_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tokens"))
    full = _fit_tokens(root)
    resumed = _fit_tokens(str(tmp_path_factory.mktemp("tokens-resumed")), ckpt_path=_checkpoint(root, 0))
    return root, full, resumed


@pytest.mark.slow
def test_a_tokens_clock_moves_by_what_each_optimizer_steps_batches_held(tokens_run):
    _, (module, schedule), _ = tokens_run
    # accumulate_grad_batches=2: optimizer step j takes batches 2j and 2j+1 of each epoch
    per_step = [4 * (LENGTHS[2 * j] + LENGTHS[2 * j + 1]) for j in range(5)] * 3
    positions = [sum(per_step[:k]) for k in range(len(per_step))]
    assert len(module.lrs) == 15
    expected = [_at_tokens(p) for p in positions]
    assert module.lrs == pytest.approx([lr for lr, _ in expected], rel=1e-12, abs=1e-15)
    assert module.kl == pytest.approx([kl for _, kl in expected], rel=1e-12, abs=1e-15)
    reference = lrdsl.curve(TOKENS_PROGRAM, positions, clock="tokens")
    assert module.lrs == pytest.approx(reference["lr"].tolist(), rel=1e-12, abs=1e-15)
    assert schedule.scheduler.runtime.counters["tokens"] == 3 * 4 * sum(LENGTHS)


@pytest.mark.slow
def test_a_tokens_clock_resumes_from_its_counted_tokens(tokens_run):
    root, (module, _), (resumed, schedule) = tokens_run
    saved = torch.load(_checkpoint(root, 0), weights_only=False)["callbacks"]["Schedule"]["scheduler"]
    assert saved["counters"]["tokens"] == 4 * sum(LENGTHS) and saved["clock"] == "tokens"
    assert resumed.lrs == module.lrs[5:] and resumed.kl == module.kl[5:]
    assert schedule.scheduler.runtime.counters["tokens"] == 3 * 4 * sum(LENGTHS)


class _Strategy:
    root_device = torch.device("cpu")

    def reduce(self, tensor, reduce_op):
        assert reduce_op == "sum"
        return tensor + torch.tensor([3, 300])  # the other process's samples and tokens


class _Trainer:
    world_size = 2
    strategy = _Strategy()


def test_under_ddp_the_counts_of_every_process_are_summed():
    schedule = lrdsl.lightning.Schedule("cosine(0.1, 1k tok)", clock="tokens",
                                        count=lambda batch: {"samples": len(batch), "tokens": sum(batch)})
    schedule.scheduler = object()  # counting happens only once a fit runs
    for batch in ([10, 20], [30]):  # two accumulated batches of this process
        schedule.on_train_batch_start(_Trainer(), None, batch, 0)
    assert schedule._take_counts(_Trainer()) == (3 + 3, 60 + 300)
    assert schedule._take_counts(_Trainer()) == (None, None)  # taken once


def test_a_counting_clock_needs_a_count_or_fixed_sizes():
    with pytest.raises(lrdsl.ArgumentError, match=r"tokens clock needs what each batch consumed.*count="):
        lrdsl.lightning.Schedule("cosine(0.1, 1k tok)", clock="tokens")
    lrdsl.lightning.Schedule("cosine(0.1, 1k tok)", clock="tokens", tokens_per_step=64)
    with pytest.raises(lrdsl.ArgumentError, match=r"no option 'tokens_per_stp'.*'tokens_per_step'"):
        lrdsl.lightning.Schedule("cosine(0.1, 1k tok)", clock="tokens", tokens_per_stp=64)
    with pytest.raises(lrdsl.LrdslError, match=r"has no values before training starts"):
        lrdsl.lightning.Schedule(PROGRAM).value("kl")
    assert lrdsl.lightning.Schedule(PROGRAM).free == ("kl",)


@pytest.mark.slow
def test_under_ddp_two_processes_move_the_schedule_as_one_with_the_same_global_batch(tmp_path):
    """docs/distributed.md's examples/distributed/lightning_ddp.py on 1 CPU process (batches of 8)
    and on 2 (4 each, DDP over gloo)."""
    import json

    from distributed_docs import records, run

    runs, printed = {}, {}
    for devices in (1, 2):
        out = tmp_path / str(devices)
        result = run("lightning-ddp", DEVICES=str(devices), OUT=str(out))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        runs[devices] = json.loads((out / "lrs.json").read_text())  # rank 0's
        lines = records(result.stdout)
        printed[devices] = {line["rank"]: line["read"] for line in lines}
    assert sorted(printed[1]) == [0] and sorted(printed[2]) == [0, 1]
    assert printed[2][0] == printed[2][1] == runs[2]  # every process reads the same values
    lengths = [3 + (7 * i) % 11 for i in range(48)]  # as in the script: real tokens of sequence i
    positions = [sum(lengths[:8 * k]) for k in range(6)]  # global batch k is sequences 8k … 8k+7

    def at(p):  # warmup(100 tok) >> cosine(0.1, 600 tok); linear(0, 1, 300 tok)
        lr = 0.1 * p / 100 if p < 100 else 0.05 * (1 + math.cos(math.pi * min(p - 100, 600) / 600))
        return [lr, min(p, 300) / 300]

    expected = [at(p) for p in positions]
    for devices in (1, 2):
        assert [lr for lr, _ in runs[devices]] == pytest.approx([lr for lr, _ in expected], rel=1e-12, abs=1e-15)
        assert [kl for _, kl in runs[devices]] == pytest.approx([kl for _, kl in expected], rel=1e-12, abs=1e-15)
    assert runs[1] == runs[2]


def test_a_checkpoint_of_another_clock_is_refused_by_name():
    from lrdsl._trainers import resume

    def sched(**options):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        return lrdsl.torch.scheduler(opt, "cosine(0.1, 1k tok)", **options)

    saved = sched(clock="tokens")
    saved.step(tokens=64)
    with pytest.raises(lrdsl.LrdslError, match=r"differs: clock 'tokens' -> 'ticks'; constants \{\} -> "
                                                r"\{'tokens_per_step': 64\}.*accumulate"):
        resume(sched(tokens_per_step=64), saved.state_dict(), "lrdsl.lightning.Schedule",
               "max_epochs, accumulate_grad_batches")
    again = sched(clock="tokens")
    resume(again, saved.state_dict(), "lrdsl.lightning.Schedule", "")
    assert again.runtime.counters["tokens"] == 64
    assert again.get_last_lr() == [pytest.approx(0.05 * (1 + math.cos(math.pi * 64 / 1000)), rel=1e-12)]
