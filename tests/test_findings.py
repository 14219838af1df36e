"""``Finding``: which findings are row-level, and the dictionary the JSON report writes."""

from __future__ import annotations

import json

import pytest

from pipeline.findings import Finding

ROW_LEVEL = ["nan", "inf", "null", "schema", "outlier"]
NOT_ROW_LEVEL = [
    "missing_column", "dtype", "constant", "near_constant", "zero_iqr", "class_imbalance",
    "bad_rows", "empty", "batch_constant", "batch_single_class", "loss_spike", "out_of_range",
]  # fmt: skip


def _finding(check: str, **extra) -> Finding:
    return Finding(check, "x", "error", 3, 0.03, f"{check} in x", **extra)


@pytest.mark.parametrize("check", ROW_LEVEL)
def test_row_level_codes_quarantine_rows(check):
    assert _finding(check).row_level


@pytest.mark.parametrize("check", NOT_ROW_LEVEL)
def test_column_dataset_and_live_codes_are_not_row_level(check):
    assert not _finding(check).row_level


def test_to_dict_is_the_json_reports_finding():
    finding = Finding("nan", "income", "error", 37, 0.00185, "37 NaN values", [506, 957])
    out = finding.to_dict()
    assert out == {
        "check": "nan",
        "column": "income",
        "severity": "error",
        "count": 37,
        "fraction": 0.00185,
        "message": "37 NaN values",
        "sample_rows": [506, 957],
    }
    # the key order is the report's, and it survives a JSON round trip
    assert list(out) == ["check", "column", "severity", "count", "fraction", "message",
                         "sample_rows"]  # fmt: skip
    assert json.loads(json.dumps(out)) == out


def test_to_dict_keeps_schema_check_only_when_set():
    finding = _finding("schema", sample_rows=[4], schema_check="in_range")
    out = finding.to_dict()
    assert list(out)[-1] == "schema_check" and out["schema_check"] == "in_range"
    assert "schema_check" not in _finding("constant").to_dict()


def test_to_dict_of_a_dataset_level_finding():
    empty = Finding("empty", None, "error", 0, 0.0, "the dataset has no rows")
    assert empty.to_dict()["column"] is None and empty.to_dict()["sample_rows"] == []
    assert not empty.row_level


def test_to_dict_is_a_copy():
    finding = _finding("nan", sample_rows=[1, 2])
    finding.to_dict()["sample_rows"].append(3)
    assert finding.sample_rows == [1, 2]
