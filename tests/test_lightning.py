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
