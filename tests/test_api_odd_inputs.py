"""The library's training side with odd inputs: each case once served wrong rows or raised raw.

Shared cache folders, files rewritten after fit, labels retyped, categorical or beyond
int64, regression targets that are not finite, per-row lists beside tensors, no clean
rows, frozen models, a half-failed save, misspelt options.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import pipeline
from pipeline import Preprocessor, fit, guard, make_loader, validate
from pipeline.errors import UsageError


def _table(n: int, seed: int = 0, shift: float = 0.0, **extra: object) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns = {"a": rng.normal(size=n) + shift, "b": rng.normal(size=n), "y": rng.integers(0, 2, n)}
    return pa.table({**columns, **extra})


def _rows(loader) -> torch.Tensor:
    return torch.cat([batch[2] for batch in loader])


def test_fits_sharing_a_cache_folder_keep_their_own_rows(tmp_path):
    fold1, fold2 = _table(1000), _table(500, seed=1, shift=50.0)
    first = fit(fold1, label="y", cache_dir=tmp_path)
    fit(fold2, label="y", cache_dir=tmp_path)
    assert len(_rows(first.loader(fold1, shuffle=False, cache_dir=tmp_path))) == 1000


def test_a_training_file_rewritten_after_fit_is_other_data(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(_table(1000), path)
    prep = fit(path, label="y")
    pq.write_table(_table(300, seed=2), path)
    loader = prep.loader(path, shuffle=False)
    assert len(_rows(loader)) == 300  # not the 1,000 rows cached at fit time
    assert loader.batchguard.report.rows == 300


def test_a_regression_target_that_is_not_finite_is_set_aside():
    train = _table(500).set_column(2, "y", pa.array(np.linspace(0.0, 1.0, 500)))
    prep = fit(train, label="y")
    target = np.linspace(0.0, 1.0, 500)
    target[[3, 7]] = [np.nan, np.inf]
    loader = prep.loader(train.set_column(2, "y", pa.array(target)), shuffle=False)
    assert loader.batchguard.report.set_aside == {"nonfinite_label": 2}
    assert torch.isfinite(torch.cat([batch[1] for batch in loader])).all()


@pytest.mark.parametrize(
    "label",
    [pa.array(np.arange(500, dtype=np.float64) % 2), pa.array([str(k % 2) for k in range(500)])],
)
def test_a_label_of_another_type_is_refused_in_one_line(label):
    """A float label against int classes (pandas' int column with a NaN) was served as float."""
    train = _table(500)
    prep = fit(train, label="y")
    with pytest.raises(UsageError, match="label 'y' of .* but this preprocessor was fitted on"):
        prep.loader(train.set_column(2, "y", label))


def test_a_categorical_label_is_its_values():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600),
                          "y": pd.Categorical(rng.choice(["lo", "mid", "hi"], 600))})  # fmt: skip
    loader = make_loader(frame, label="y", batch_size=100)
    assert loader.batchguard.classes == ["hi", "lo", "mid"]
    assert sorted(torch.cat([batch[1] for batch in loader]).unique().tolist()) == [0, 1, 2]
    plain = fit(frame.astype({"y": str}), label="y")
    served = plain.loader(pa.Table.from_pandas(frame, preserve_index=False), shuffle=False)
    assert len(_rows(served)) == 600


def test_a_label_beyond_int64_is_refused():
    train = _table(100).set_column(2, "y", pa.array([0, 2**63] * 50, pa.uint64()))
    with pytest.raises(UsageError, match="beyond the int64 a label tensor holds"):
        make_loader(train, label="y")


def test_guard_drops_the_same_rows_from_per_row_lists():
    features = torch.randn(16, 4)
    features[3, 1] = float("nan")

    class Images(Dataset):
        def __len__(self) -> int:
            return 16

        def __getitem__(self, i: int) -> dict:
            return {"x": features[i], "y": i % 2, "path": f"img{i}.png"}

    batch = next(iter(guard(DataLoader(Images(), batch_size=16))))
    assert batch["x"].shape[0] == len(batch["path"]) == 15
    assert "img3.png" not in batch["path"] and batch["path"][3] == "img4.png"


def test_no_clean_rows_to_train_on_is_one_line():
    dead = _table(200, dead=pa.array(np.full(200, np.nan)))
    with pytest.raises(UsageError, match="no clean rows to train on .*column 'dead'"):
        fit(dead, label="y")
    with pytest.raises(UsageError, match="no clean rows to train on"):
        make_loader(_table(10).slice(0, 0), label="y")


def test_a_loader_over_data_of_no_usable_rows_is_empty():
    prep = fit(_table(300), label="y")
    assert list(prep.loader(_table(5).slice(0, 0))) == []
    nothing = prep.loader(_table(10).set_column(0, "a", pa.array(np.full(10, np.nan))))
    assert list(nothing) == [] and nothing.batchguard.report.set_aside == {"nan": 10}


def test_the_label_among_the_features_is_refused():
    with pytest.raises(UsageError, match="features name the label 'y'"):
        make_loader(_table(100), label="y", features=["a", "y"])


def test_a_model_without_trainable_parameters_is_refused():
    model = torch.nn.Linear(4, 2).requires_grad_(False)
    with pytest.raises(UsageError, match="no parameter that requires grad"):
        pipeline.StabilityMonitor(model)


def test_a_failed_save_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    first, second = fit(_table(300), label="y"), fit(_table(300, seed=3, shift=5.0), label="y")
    first.save(tmp_path / "prep")
    real = Path.write_text

    def full_disk(self: Path, *args: object, **kw: object) -> int:
        if "preprocessor.json" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        second.save(tmp_path / "prep")
    monkeypatch.undo()
    loaded = Preprocessor.load(tmp_path / "prep")
    np.testing.assert_array_equal(loaded.scaler.center_, first.scaler.center_)
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == [
        "preprocessor.json", "profile.json", "scaler.json",
    ]  # fmt: skip


def test_saving_onto_a_file_is_one_line(tmp_path):
    (tmp_path / "prep").write_text("not a folder")
    prep = fit(_table(200), label="y")
    for target in (tmp_path / "prep", tmp_path / "prep" / "sub"):
        with pytest.raises(UsageError, match="it, or a folder above it, is a file"):
            prep.save(target)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"severities": {"nul": "error"}}, "there is no check 'nul'; did you mean 'null'?"),
        ({"not_null": ["amuont"]}, "not_null names 'amuont', which"),
    ],
)
def test_misspelt_options_are_refused(options, says):
    with pytest.raises(UsageError, match=says.replace("?", r"\?")):
        validate(_table(50), **options)


def test_a_loader_leaves_no_temporary_folder_to_the_collector():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = make_loader(_table(300), label="y")
        folder = Path(loader.dataset.path).parent
        for _ in loader:
            pass
        del loader
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not os.path.exists(folder)


def test_guard_checks_the_label_of_batches_with_integer_features():
    """Token ids or codes as features made guard skip every check, the label's too."""
    y = torch.tensor([0] * 16 + [1] * 32)
    codes = torch.randint(0, 5, (48, 3), generator=torch.Generator().manual_seed(0))
    guarded = guard([(codes[i : i + 16], y[i : i + 16]) for i in range(0, 48, 16)])
    assert [len(batch[0]) for batch in guarded] == [16, 16, 16]  # batch problems drop nothing
    assert dict(guarded.stats.reasons) == {"batch_single_class": 2}


def test_a_dataframe_with_a_column_twice_is_one_line():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    with pytest.raises(pipeline.errors.SourceError, match="column 'a' appears more than once"):
        validate(pd.concat([frame, frame[["a"]]], axis=1))


def test_an_http_output_is_refused_in_one_line():
    with pytest.raises(UsageError, match="an http\\(s\\) URL can be read, not written"):
        validate(_table(50), scores="http://example.com/scores.parquet")


def test_odd_baselines_are_one_line(tmp_path):
    from pipeline.drift import load_baseline, write_baseline

    empty = tmp_path / "empty.json"
    write_baseline(pipeline.profile(_table(10).slice(0, 0)), empty)
    with pytest.raises(UsageError, match="the baseline has no rows to compare with"):
        load_baseline(empty)  # a comparison with it passed whatever the data
    good = tmp_path / "good.json"
    write_baseline(pipeline.profile(_table(100)), good)
    doc = json.loads(good.read_text())
    for name, edit in [
        ("list.json", {"columns": list(doc["columns"].values())}),
        ("newer.json", {"baseline_version": 9}),
    ]:
        (tmp_path / name).write_text(json.dumps({**doc, **edit}))  # fmt: skip
    with pytest.raises(UsageError, match="damaged baseline"):  # was a raw AttributeError
        load_baseline(tmp_path / "list.json")
    with pytest.raises(UsageError, match="upgrade batchguard to read it"):
        load_baseline(tmp_path / "newer.json")


@pytest.mark.parametrize(
    ("file", "edit", "says"),
    [
        ("scaler.json", {"version": 99}, "upgrade batchguard to load it"),
        ("scaler.json", {"center_": [0.0]}, "center_ holds 1 values for 2 features"),
        ("scaler.json", {"scale_": [0.0, 1.0]}, "scale_ holds values that are not positive"),
        ("preprocessor.json", {"features": ["a", "b", "c"]}, "scaler.json scales 2 features"),
        ("preprocessor.json", {"fences": []}, "a damaged saved preprocessor"),
    ],
)
def test_a_damaged_saved_preprocessor_is_refused_at_load(tmp_path, file, edit, says):
    """These loaded silently and served inf, or failed at first use with raw errors."""
    fit(_table(300), label="y").save(tmp_path / "prep")
    path = tmp_path / "prep" / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(UsageError, match=says):
        Preprocessor.load(tmp_path / "prep")


def test_misspelt_or_mistyped_arguments_are_one_line():
    model = torch.nn.Linear(4, 2)
    with pytest.raises(UsageError, match="skip_on: no cause or kind 'nonfinite'"):
        pipeline.StabilityMonitor(model, skip_on=("data", "nonfinite"))
    monitor = pipeline.StabilityMonitor(model)
    for loss in (torch.tensor([]), torch.tensor([1, 2])):
        with pytest.raises(UsageError, match="the loss should be a float tensor"):
            monitor.check(loss)
    with pytest.raises(UsageError, match="max_bad_rows should be a number"):
        validate(_table(20), max_bad_rows="0.1")
    with pytest.raises(UsageError, match="severities should map check names"):
        validate(_table(20), severities=["nan"])
    nan = torch.tensor([[float("nan"), 1.0], [0.0, 1.0]])
    guarded = guard([(nan, torch.tensor([0, 1]))], checks="nonfinite")  # was "unknown check 'e'"
    assert [len(batch[0]) for batch in guarded] == [1]


def test_the_review_cases_keep_working(tmp_path):
    """What the fixes above must not break: transform ignores the label's type, numpy
    numbers and a single column name are options, a schema may let the label be null."""
    train = _table(300)
    prep = fit(train, label="y")
    unlabelled = train.set_column(2, "y", pa.array(np.full(300, np.nan)))
    assert prep.transform(unlabelled).shape == (300, 2)  # the label is not read there
    report = validate(train, max_bad_rows=np.float32(0.5), not_null="a")
    assert report.options.not_null == ("a",)
    schema = tmp_path / "s.yaml"
    schema.write_text("columns:\n  y:\n    dtype: int64\n    nullable: true\n")
    with_nulls = train.set_column(2, "y", pa.array([None] * 10 + [1] * 290, pa.int64()))
    assert validate(with_nulls, schema, label="y").rows_quarantined == 0
    assert validate(with_nulls, label="y").rows_quarantined == 10


def test_caches_in_a_folder_of_the_callers_are_removed_with_their_loaders(tmp_path):
    for _ in range(3):
        loader = make_loader(_table(300), label="y", cache_dir=tmp_path)
        assert sum(len(batch[0]) for batch in loader) == 300
        del loader
        gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_an_output_collision_message_shows_no_credentials():
    secret = "s3://AKIAEXAMPLE:hunter2@bucket/out.parquet"
    with pytest.raises(UsageError, match="both name") as caught:
        validate(_table(20), clean=secret, quarantine=secret)
    assert "hunter2" not in str(caught.value)


def test_transform_and_the_serving_module_take_what_they_should():
    pl = pytest.importorskip("polars")  # an extra: make install EXTRAS=test leaves it out
    train = _table(300)
    prep = fit(train, label="y")
    np.testing.assert_array_equal(prep.transform(pl.from_arrow(train)), prep.transform(train))
    with pytest.raises(UsageError, match="the array holds values that are not numbers"):
        prep.transform(np.array([["1.0", "x"]]))
    for module in (prep.to_torch(), torch.jit.script(prep.to_torch(non_finite="impute"))):
        with pytest.raises((ValueError, torch.jit.Error), match="this module takes 2"):
            module(torch.ones(2, 5))
    guarded = guard([])
    for loss in (torch.ones(4), None):
        with pytest.raises(UsageError, match="observe_loss takes the batch's loss"):
            guarded.observe_loss(loss)


def test_a_monitor_state_that_is_not_one_is_refused():
    monitor = pipeline.StabilityMonitor(torch.nn.Linear(4, 2))
    with pytest.raises(UsageError, match=r"not a StabilityMonitor.state_dict\(\)"):
        monitor.load_state_dict({})
