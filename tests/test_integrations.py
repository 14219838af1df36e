"""StabilityCallback in the real trainers: lightning.pytorch.Trainer.fit and transformers.Trainer.

A small MLP on scikit-learn's breast cancer table (569 x 30). Each framework's tests
skip when its extra is not installed (``batchguard[lightning]``, ``batchguard[transformers]``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pyarrow as pa
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import pipeline
from pipeline.integrations._common import StepLosses
from tests.conftest import ROOT, write_parquet

#: the step of each run at which a fault is injected (after the monitor's warm-up)
AT = 30


@pytest.fixture(scope="module")
def cancer() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))


def finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_neither_framework_is_imported_until_the_callback_is_used():
    code = (
        "import sys, pipeline, pipeline.integrations.lightning as L, "
        "pipeline.integrations.transformers as T\n"
        "assert not {'lightning', 'pytorch_lightning', 'transformers'} & set(sys.modules)\n"
        "sys.modules['lightning'] = sys.modules['pytorch_lightning'] = None\n"
        "sys.modules['transformers'] = None\n"
        "for module, extra in ((L, 'lightning'), (T, 'transformers')):\n"
        "    try:\n"
        "        module.StabilityCallback\n"
        "    except ImportError as exc:\n"
        '        assert f"batchguard[{extra}]" in str(exc), exc\n'
        "    else:\n"
        "        raise AssertionError('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_micro_batches_of_one_step_are_joined():
    steps = StepLosses()
    steps.add(torch.tensor([1.0, 2.0]), torch.tensor([10, 11]))
    steps.add(torch.tensor([3.0]), torch.tensor([12]))
    loss, rows = steps.take()
    assert loss.tolist() == [1.0, 2.0, 3.0] and rows.tolist() == [10, 11, 12]
    assert steps.take() == (None, None)
    steps.add(torch.tensor(1.0), None)
    steps.add(torch.tensor(3.0), [4])
    loss, rows = steps.take()
    assert loss.item() == 2.0 and rows is None  # scalars averaged; rows unknown for one


# -- Lightning -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lightning():
    return pytest.importorskip("lightning.pytorch")


@pytest.fixture(scope="module")
def cancer_loader(tmp_path_factory):
    """A make_loader loader: Batch(features, label, row_id) with the table's row ids."""
    tmp = tmp_path_factory.mktemp("cancer")
    frame = load_breast_cancer(as_frame=True).frame
    path = write_parquet(tmp / "cancer.parquet", pa.Table.from_pandas(frame))
    return pipeline.make_loader(path, label="target", batch_size=32, cache_dir=tmp)


def lightning_module(lightning, fault: str | None = None):
    class Net(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()
            self.bad_rows: list[int] = []

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y, rows = batch
            if self.global_step == AT and fault == "rows":
                # two rows blown up and mislabelled: they dominate the batch loss
                x, y = x.clone(), y.clone()
                x[:2] *= 50
                y[:2] = 1 - y[:2]
                self.bad_rows = rows[:2].tolist()
            elif self.global_step == AT and fault == "nan":
                x = x.clone()
                x[0, 0] = math.nan
                self.bad_rows = rows[:1].tolist()
            per_row = nn.functional.cross_entropy(self(x), y, reduction="none")
            self.per_row_loss = per_row  # the callback's row-level loss
            return per_row.mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return Net()


def fit(lightning, module, loader, callback, max_steps=AT + 10, ckpt_path=None):
    trainer = lightning.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        callbacks=[callback],
    )
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


def lightning_callback(**options):
    from pipeline.integrations.lightning import StabilityCallback

    return StabilityCallback(**options)


def test_lightning_clean_run_has_no_verdict(lightning, cancer_loader):
    callback = lightning_callback()
    module = lightning_module(lightning)
    trainer = fit(lightning, module, cancer_loader, callback)
    assert callback.monitor.step == AT + 10 and callback.verdicts == []
    assert "stability/verdicts" not in trainer.callback_metrics


@pytest.mark.parametrize(
    ("fault", "kind"), [("rows", "spike"), ("nan", "non_finite")]
)  # fmt: skip
def test_lightning_bad_batch_gets_a_data_verdict_and_its_step_is_skipped(
    lightning, cancer_loader, fault, kind
):
    callback = lightning_callback()
    module = lightning_module(lightning, fault)
    trainer = fit(lightning, module, cancer_loader, callback)
    [verdict] = callback.verdicts
    assert (verdict.step, verdict.cause, verdict.kind, verdict.skip) == (AT, "data", kind, True)
    # dataset row ids from Batch.row_id: the injected rows (those enough to explain the spike)
    assert verdict.rows and set(verdict.rows) <= set(module.bad_rows)
    assert callback.skipped == 1 and finite(module)  # the NaN step never reached the weights
    assert trainer.callback_metrics["stability/verdicts"].item() == 1.0
    assert trainer.callback_metrics["stability/skipped"].item() == 1.0


def test_lightning_skipped_step_leaves_weights_and_optimizer_state(lightning, cancer_loader):
    """Through the real loop: the weights after the bad step are those before it."""
    callback = lightning_callback()
    module = lightning_module(lightning, "nan")
    seen = {}

    class Snap(lightning.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == AT:
                seen["before"] = [p.detach().clone() for p in pl_module.parameters()]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if "after" not in seen and "before" in seen:
                seen["after"] = [p.detach().clone() for p in pl_module.parameters()]

    trainer = lightning.Trainer(
        max_steps=AT + 2, accelerator="cpu", enable_progress_bar=False,
        enable_model_summary=False, logger=False, enable_checkpointing=False,
        callbacks=[callback, Snap()],
    )  # fmt: skip
    trainer.fit(module, cancer_loader)
    assert all(torch.equal(a, b) for a, b in zip(seen["before"], seen["after"], strict=True))


def test_lightning_checkpoint_carries_the_monitor_state(lightning, cancer_loader, tmp_path):
    first = lightning_callback()
    trainer = fit(lightning, lightning_module(lightning, "rows"), cancer_loader, first)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    state = first.state_dict()
    assert state["monitor"]["step"] == AT + 10 and state["skipped"] == 1
    resumed = lightning_callback()
    fit(
        lightning,
        lightning_module(lightning),
        cancer_loader,
        resumed,
        max_steps=AT + 15,
        ckpt_path=tmp_path / "run.ckpt",
    )
    # the restored monitor counts on from the checkpoint and keeps its verdict
    assert resumed.monitor.step == AT + 15 and resumed.skipped == 1
    assert [v.step for v in resumed.verdicts] == [AT]


# -- transformers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("accelerate")
    return pytest.importorskip("transformers")


class Rows(torch.utils.data.Dataset):
    """The table's rows as the dicts transformers' default collator batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i], "row_id": i}


class PerRowNet(nn.Module):
    """A plain module in transformers' calling convention: labels in, {"loss": ...} out."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x, labels=None, row_id=None):
        logits = self.net(x)
        per_row = nn.functional.cross_entropy(logits, labels, reduction="none")
        return {"loss": per_row.mean(), "per_row_loss": per_row, "logits": logits}


BATCH = 16


def hf_train(
    transformers, tmp_path, data, callback, max_steps=AT + 4, resume=None, model=None, **kwargs
):
    options = {
        "output_dir": str(tmp_path),
        "max_steps": max_steps,
        "per_device_train_batch_size": BATCH,
        "learning_rate": 0.05,
        "lr_scheduler_type": "constant",
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 10,
        "disable_tqdm": True,
        "train_sampling_strategy": "sequential",  # the bad rows land at step AT
        **kwargs,
    }
    args = transformers.TrainingArguments(**options)
    trainer = transformers.Trainer(
        model=model or PerRowNet(), args=args, train_dataset=data, callbacks=[callback]
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def hf_callback(**options):
    from pipeline.integrations.transformers import StabilityCallback

    return StabilityCallback(**options)


def with_fault(cancer, fault: str | None, per_step: int = BATCH) -> tuple[Rows, list[int]]:
    x, y = cancer[0].clone(), cancer[1].clone()
    bad = [AT * per_step + 3, AT * per_step + 11]
    if fault == "rows":
        x[bad] *= 50
        y[bad] = 1 - y[bad]
    elif fault == "nan":
        bad = bad[:1]
        x[bad, 0] = math.nan
    return Rows(x, y), bad


def test_transformers_clean_run_has_no_verdict(transformers, cancer, tmp_path):
    callback = hf_callback()
    trainer = hf_train(transformers, tmp_path, with_fault(cancer, None)[0], callback)
    assert callback.monitor.step == AT + 4 and callback.verdicts == []
    assert not any("stability/cause" in entry for entry in trainer.state.log_history)


@pytest.mark.parametrize(
    ("fault", "kind"), [("rows", "spike"), ("nan", "non_finite")]
)  # fmt: skip
def test_transformers_bad_batch_gets_a_data_verdict_in_the_log_history(
    transformers, cancer, tmp_path, fault, kind
):
    data, bad = with_fault(cancer, fault)
    callback = hf_callback()
    trainer = hf_train(transformers, tmp_path, data, callback)
    [verdict] = callback.verdicts
    assert (verdict.step, verdict.cause, verdict.kind, verdict.skip) == (AT, "data", kind, True)
    assert verdict.rows and set(verdict.rows) <= set(bad)  # from the model's row_id argument
    assert callback.skipped == 1 and finite(trainer.model)
    [entry] = [e for e in trainer.state.log_history if "stability/cause" in e]
    assert entry["stability/cause"] == "data" and entry["stability/rows"] == verdict.rows
    assert entry["step"] == AT + 1  # the trainer's count of the step it logs with
    json.dumps(trainer.state.log_history)  # trainer_state.json must take it


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_transformers_callback_sees_the_gradients_before_clipping(
    transformers, cancer, tmp_path, max_grad_norm
):
    """A NaN in the first layer's gradient: clipping would turn every gradient NaN
    (with 0 the trainer still measures the norm, in place); the check comes before it."""
    model = PerRowNet()
    first = model.net[0].weight
    calls = []

    def spoil(parameter: torch.Tensor) -> None:  # after the gradient is accumulated
        calls.append(1)
        if len(calls) == AT + 1:
            parameter.grad[0, 0] = math.nan

    first.register_post_accumulate_grad_hook(spoil)
    callback = hf_callback()
    trainer = hf_train(
        transformers, tmp_path, with_fault(cancer, None)[0], callback, model=model,
        max_grad_norm=max_grad_norm,
    )  # fmt: skip
    [verdict] = callback.verdicts
    assert (verdict.step, verdict.cause, verdict.kind) == (AT, "gradients", "non_finite")
    assert verdict.layer == "net.0" and verdict.skip and callback.skipped == 1
    assert finite(trainer.model)


def accumulated(transformers, tmp_path, data, callback):
    """Steps of two micro-batches of 8 rows: a step's rows 3 and 11 fall in different halves."""
    return hf_train(
        transformers, tmp_path, data, callback, per_device_train_batch_size=BATCH // 2,
        gradient_accumulation_steps=2,
    )  # fmt: skip


def test_transformers_accumulated_micro_batches_are_checked_as_one_step(
    transformers, cancer, tmp_path
):
    data, bad = with_fault(cancer, "rows")
    callback = hf_callback()
    accumulated(transformers, tmp_path, data, callback)
    [verdict] = callback.verdicts
    assert verdict.step == AT and verdict.cause == "data" and verdict.kind == "spike"
    assert verdict.rows and set(verdict.rows) <= set(bad)


def test_transformers_accumulated_nan_row_in_the_second_micro_batch_is_named(
    transformers, cancer, tmp_path
):
    x = cancer[0].clone()
    bad = AT * BATCH + 11  # the second micro-batch's row 3
    x[bad, 0] = math.nan
    callback = hf_callback()
    accumulated(transformers, tmp_path, Rows(x, cancer[1]), callback)
    [verdict] = callback.verdicts
    assert (verdict.step, verdict.cause, verdict.rows) == (AT, "data", [bad])


def test_transformers_without_a_loss_in_the_output_warns_once(transformers, cancer, tmp_path):
    callback = hf_callback(loss_key="no_such_key", per_row_key="nor_this")
    hf_train(transformers, tmp_path, with_fault(cancer, None)[0], callback, max_steps=3)
    assert callback.monitor.step == 0 and callback._warned


@pytest.mark.slow
def test_transformers_resume_restores_the_monitor(transformers, cancer, tmp_path):
    data, bad = with_fault(cancer, "rows")
    callback = hf_callback()
    hf_train(
        transformers, tmp_path, data, callback, save_strategy="steps", save_steps=AT + 4
    )  # fmt: skip
    state = json.loads((tmp_path / f"checkpoint-{AT + 4}" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["StabilityCallback"]["attributes"]["skipped"] == 1
    trainer = hf_train(
        transformers, tmp_path, data, hf_callback(), max_steps=AT + 8,
        resume=str(tmp_path / f"checkpoint-{AT + 4}"),
        restore_callback_states_from_checkpoint=True,
    )  # fmt: skip
    [restored] = [
        cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "StabilityCallback"
    ]
    assert restored.monitor.step == AT + 8 and restored.skipped == 1
    assert [v.step for v in restored.verdicts] == [AT]
