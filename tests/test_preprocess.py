"""pipeline.preprocess: one fitted state for training, validation, test and serving."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import pipeline
from pipeline import Preprocessor, fit, guard
from pipeline.errors import UsageError
from tests.conftest import ROOT, SAMPLE_DATA


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """The credit sample split 80/20 by row: training and validation files."""
    folder = tmp_path_factory.mktemp("split")
    table = pq.read_table(SAMPLE_DATA / "credit.parquet")
    cut = int(table.num_rows * 0.8)
    train, val = folder / "train.parquet", folder / "val.parquet"
    pq.write_table(table.slice(0, cut), train, row_group_size=4000)
    pq.write_table(table.slice(cut), val, row_group_size=4000)
    return train, val, table.slice(cut)


@pytest.fixture(scope="module")
def prep(split):
    return fit(split[0], label="default")


def _all(loader):
    xs, ys, ids = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys), torch.cat(ids)


def test_fit_decides_features_scaler_and_classes(prep):
    assert prep.label == "default" and prep.classes == [0, 1]
    assert "branch_code" in prep.dropped_features  # constant in the sample data
    assert prep.dropped_features["branch_code"] == "constant"
    assert prep.features and "default" not in prep.features
    assert prep.scaler is not None and list(prep.scaler.feature_names_in_) == prep.features
    assert set(prep.fences) >= {"loan_amount"} and prep.report is not None


def test_validation_batches_equal_transform_torch_and_a_reloaded_preprocessor(
    prep, split, tmp_path
):
    _, val_path, val_table = split
    center = prep.scaler.center_.copy()
    val = prep.loader(val_path, batch_size=1024, shuffle=False)
    x, y, ids = _all(val)
    np.testing.assert_array_equal(prep.scaler.center_, center)  # never refitted
    # every row that can be fed is served, in row order
    report = val.batchguard.report
    assert report.rows == val_table.num_rows
    assert report.rows_served == x.shape[0] == report.rows - sum(report.set_aside.values())
    assert torch.all(ids[1:] > ids[:-1])
    rows = val_table.take(pa.array(ids.numpy()))
    expected = prep.transform(rows)
    np.testing.assert_array_equal(x.numpy(), expected)
    np.testing.assert_array_equal(prep.transform(rows.to_pandas()), expected)
    matrix = np.column_stack([rows.column(f).to_numpy().astype(float) for f in prep.features])
    np.testing.assert_array_equal(prep.transform(matrix), expected)
    module = prep.to_torch()
    np.testing.assert_array_equal(module(torch.from_numpy(matrix)).numpy(), expected)
    prep.save(tmp_path / "prep")
    again = Preprocessor.load(tmp_path / "prep")
    np.testing.assert_array_equal(again.transform(rows), expected)
    np.testing.assert_array_equal(
        _all(again.loader(val_path, batch_size=1024, shuffle=False))[0].numpy(), x.numpy()
    )


def test_rows_the_model_cannot_take_are_set_aside_and_counted(prep, split, tmp_path):
    _, _, val_table = split
    income = val_table.column("income").to_numpy(zero_copy_only=False).copy()
    nan_rows = np.flatnonzero(np.isnan(income))
    income[:3] = np.nan
    labels = val_table.column("default").to_numpy().copy()
    labels[5] = 7  # a class training never saw
    table = val_table.set_column(
        val_table.schema.get_field_index("income"), "income", pa.array(income)
    ).set_column(val_table.schema.get_field_index("default"), "default", pa.array(labels))
    path = tmp_path / "odd.parquet"
    pq.write_table(table, path)
    loader = prep.loader(path, shuffle=False)
    report = loader.batchguard.report
    assert report.set_aside["nan"] == 3 + len(set(nan_rows) - {0, 1, 2})
    assert report.set_aside["unseen_label"] == 1 and report.unseen_classes == [7]
    served = _all(loader)[0].shape[0]
    assert served == report.rows_served == table.num_rows - sum(report.set_aside.values())
    # outliers are kept: the validation set is not filtered by the training judgement
    assert report.rows_served > table.num_rows - 50
    with pytest.raises(UsageError, match=r"classes training never saw: 7"):
        prep.loader(path, unseen_labels="raise")


def test_a_missing_or_retyped_feature_is_a_one_line_error(prep, split, tmp_path):
    _, _, val_table = split
    dropped = tmp_path / "dropped.parquet"
    pq.write_table(val_table.drop_columns(["income"]), dropped)
    with pytest.raises(UsageError, match=r"has no column 'income'") as info:
        prep.loader(dropped)
    assert "\n" not in str(info.value)
    retyped = tmp_path / "retyped.parquet"
    i = val_table.schema.get_field_index("income")
    pq.write_table(
        val_table.set_column(i, "income", val_table.column("income").cast(pa.string())), retyped
    )
    with pytest.raises(UsageError, match=r"column 'income' .* is string"):
        prep.loader(retyped)
    with pytest.raises(UsageError, match="has no column"):
        prep.transform(val_table.drop_columns(["income"]))


def test_make_loader_is_fit_then_loader(split):
    train, _, _ = split
    loader = pipeline.make_loader(train, label="default", batch_size=512)
    info = loader.batchguard
    assert isinstance(info.preprocessor, Preprocessor)
    assert info.report is info.preprocessor.report  # the training run's validation report
    assert len(loader.dataset) == info.report.rows_clean


def test_guard_takes_its_bounds_from_the_preprocessor(prep, split):
    _, val_path, _ = split
    val = prep.loader(val_path, shuffle=False)
    served = guard(val, on_bad="warn")
    lo, hi = served.checker._bounds
    center, scale = prep._center_scale()
    j = prep.features.index("loan_amount")
    assert hi[j] == pytest.approx(
        (prep.fences["loan_amount"].high - center[j]) / scale[j], rel=1e-3
    )
    plain = guard(iter([]), preprocessor=prep)
    np.testing.assert_array_equal(plain.checker._bounds[1], hi)


def test_saved_folder_is_json_only_and_loads_in_a_fresh_process(prep, split, tmp_path):
    folder = tmp_path / "prep"
    prep.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "preprocessor.json", "profile.json", "scaler.json",
    ]  # fmt: skip
    for p in folder.iterdir():
        json.loads(p.read_text())  # plain JSON, no pickle
    _, _, val_table = split
    rows = val_table.slice(0, 50)
    data = tmp_path / "rows.parquet"
    pq.write_table(rows, data)
    code = (
        "import sys, numpy as np, pyarrow.parquet as pq\n"
        "from pipeline import Preprocessor\n"
        "p = Preprocessor.load(sys.argv[1])\n"
        "np.save(sys.argv[3], p.transform(pq.read_table(sys.argv[2])))\n"
    )
    out = tmp_path / "x.npy"
    subprocess.run(
        [sys.executable, "-c", code, str(folder), str(data), str(out)], check=True, cwd=ROOT
    )
    np.testing.assert_array_equal(np.load(out), prep.transform(rows))


def test_newer_or_damaged_folders_are_clear_errors(prep, tmp_path):
    folder = tmp_path / "prep"
    prep.save(folder)
    state = json.loads((folder / "preprocessor.json").read_text())
    state["format_version"] = 99
    (folder / "preprocessor.json").write_text(json.dumps(state))
    with pytest.raises(UsageError, match="format 99.*upgrade batchguard"):
        Preprocessor.load(folder)
    (folder / "preprocessor.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read a saved preprocessor"):
        Preprocessor.load(folder)
    with pytest.raises(UsageError, match="cannot read"):
        Preprocessor.load(tmp_path / "nowhere")


def test_serving_module_scripts_and_handles_non_finite_inputs(prep):
    module = torch.jit.script(prep.to_torch())
    x = torch.tensor([[prep._median(f) for f in prep.features]], dtype=torch.float64)
    np.testing.assert_array_equal(module(x).numpy(), prep.transform(x.numpy()))
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(Exception, match="NaN or inf"):
        module(bad)
    imputing = torch.jit.script(prep.to_torch(non_finite="impute"))
    scaled, imputed = imputing(bad)
    assert imputed.tolist() == [[True] + [False] * (len(prep.features) - 1)]
    np.testing.assert_array_equal(scaled.numpy(), prep.transform(x.numpy()))
    with pytest.raises(UsageError, match="non_finite"):
        prep.to_torch(non_finite="zero")


@pytest.mark.slow
def test_the_train_validate_test_example_runs():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from train_validate_test import main
    finally:
        sys.path.pop(0)
    result = main(epochs=1)  # asserts that served predictions equal the test loader's
    assert result["test"] < 0.7  # better than a coin on the 4% positive class
