from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.errors import UsageError
from tests.conftest import SAMPLE_DATA


def _summary(report):
    """The findings a fault list documents: joint outliers are the reported tier, kept."""
    return sorted(
        (f.check, f.column, f.count if f.row_level else 1)
        for f in report.findings
        if f.check != "joint_outlier"
    )


def test_dirty_table_findings(dirty_parquet):
    report = validate(dirty_parquet, label="label", batch_size=128)
    found = {(f.check, f.column): f for f in report.findings}
    assert found[("nan", "x")].count == 3
    assert found[("nan", "x")].sample_rows == [3, 500, 1999]
    assert found[("inf", "x")].count == 2
    assert found[("outlier", "y")].sample_rows == [1234]
    assert found[("constant", "k")].severity == "error"
    assert found[("near_constant", "near")].severity == "warning"
    assert found[("class_imbalance", "label")].severity == "warning"
    assert report.rows_quarantined == 6
    assert not report.passed and report.exit_code == 1


@pytest.mark.parametrize("batch_size", [1_000, 1_000_000])
def test_findings_do_not_depend_on_batch_size(dirty_parquet, batch_size):
    reference = validate(dirty_parquet, label="label", batch_size=97)
    report = validate(dirty_parquet, label="label", batch_size=batch_size)
    assert [f.to_dict() for f in report.findings] == [f.to_dict() for f in reference.findings]


@pytest.mark.parametrize("name", ["credit", "sensors", "clean"])
def test_sample_data_has_exactly_the_documented_faults(name, faults):
    truth = faults[f"{name}.parquet"]
    report = validate(SAMPLE_DATA / f"{name}.parquet", label=truth["label"], batch_size=4096)
    assert report.rows == truth["rows"]
    expected = sorted((f["check"], f["column"], f["count"]) for f in truth["faults"])
    assert _summary(report) == expected
    for fault in truth["faults"]:
        if "rows" in fault:
            [finding] = [
                f
                for f in report.findings
                if (f.check, f.column) == (fault["check"], fault["column"])
            ]
            assert finding.sample_rows == fault["rows"][: len(finding.sample_rows)]
    errors = {(f.check, f.column) for f in report.errors}
    documented_errors = {
        (f["check"], f["column"])
        for f in truth["faults"]
        if f["check"] in ("nan", "inf", "constant")
    }
    assert errors == documented_errors
    assert report.passed == (name == "clean")


def test_max_bad_rows_tolerates_then_fails(dirty_parquet):
    lenient = validate(dirty_parquet, max_bad_rows=0.01, severities={"constant": "warning"})
    assert lenient.passed and lenient.rows_quarantined == 6
    strict = validate(dirty_parquet, max_bad_rows=0.001, severities={"constant": "warning"})
    assert {f.check for f in strict.errors} == {"bad_rows", "nan", "inf"}
    assert strict.errors[-1].count == 6


def test_strict_fails_on_warnings(tmp_path):
    # 200 zeros and one 1.0: 0.0 holds 99.5% of the values, a near-constant warning only
    path = tmp_path / "w.parquet"
    pq.write_table(pa.table({"x": [0.0] * 200 + [1.0]}), path)
    report = validate(path)
    assert report.passed and [(f.check, f.severity) for f in report.findings] == [
        ("near_constant", "warning")
    ]
    assert not validate(path, strict=True).passed


def test_unknown_option_is_named():
    with pytest.raises(UsageError, match="unknown option 'treshold'"):
        validate(SAMPLE_DATA / "clean.parquet", treshold=3)


def test_missing_label_column_is_a_usage_error():
    with pytest.raises(UsageError, match="--label 'nope'"):
        validate(SAMPLE_DATA / "clean.parquet", label="nope")
