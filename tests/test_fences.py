"""pipeline.fences: the outlier fences a run decides, and everyone who reads them.

The bug these tests pin: a schema's per-column ``outliers: {method, threshold}``
was applied by the row rule but ignored by the HTML report, the JUnit cases
and the guard's ``out_of_range`` bounds, which recomputed default k=5 fences.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline import guard, make_loader, validate
from pipeline.fences import MAD_TO_SD, fences_from, outlier_fences
from pipeline.options import ValidationOptions
from pipeline.report import render, render_html
from pipeline.report._common import number
from tests.conftest import write_parquet

SCHEMA = (
    "columns:\n"
    "  y:\n    dtype: float64\n    outliers: {method: mad, threshold: 30}\n"
    "  z:\n    dtype: float64\n    outliers: {method: none, threshold: 1}\n"
    "  w:\n    dtype: float64\n"
    "  label:\n    dtype: int64\n"
)


@pytest.fixture
def data_and_schema(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 2000)
    y[[5, 6]] = [9.0, 40.0]
    w = rng.normal(0, 1, 2000)
    table = pa.table({"y": y, "z": y.copy(), "w": w, "label": np.arange(2000) % 2})
    schema = tmp_path / "s.yaml"
    schema.write_text(SCHEMA)
    return write_parquet(tmp_path / "t.parquet", table), schema


def test_fences_from_iqr_and_mad():
    iqr = fences_from("iqr", 2.0, q25=1.0, q75=3.0, median=2.0, mad=0.5)
    assert (iqr.low, iqr.high, iqr.unit, iqr.method, iqr.threshold) == (-3.0, 7.0, 2.0, "iqr", 2.0)
    mad = fences_from("mad", 3.0, q25=1.0, q75=3.0, median=2.0, mad=0.5)
    assert mad.low == pytest.approx(2.0 - 3.0 * 0.5 * MAD_TO_SD)
    assert mad.score(np.array([2.0 + 0.5 * MAD_TO_SD])) == pytest.approx([1.0])
    assert fences_from("iqr", 5.0, q25=1.0, q75=1.0, median=1.0, mad=0.0) is None
    assert fences_from("none", 5.0, q25=1.0, q75=3.0, median=2.0, mad=1.0) is None


def test_no_fences_when_the_outlier_check_is_off(data_and_schema):
    data, _ = data_and_schema
    report = validate(data)
    assert outlier_fences(report.profile, ValidationOptions(severities={"outlier": "off"})) == {}


def test_report_carries_the_schemas_fences(data_and_schema):
    data, schema = data_and_schema
    report = validate(data, schema, label="label")
    y, w = report.fences["y"], report.fences["w"]
    assert (y.method, y.threshold) == ("mad", 30.0)
    assert (w.method, w.threshold) == ("auto", 3.0)
    assert "z" not in report.fences and "label" not in report.fences
    assert ("y", "outlier") in report.checks_run and ("z", "outlier") not in report.checks_run


def test_html_shows_the_fences_that_were_applied(data_and_schema):
    data, schema = data_and_schema
    report = validate(data, schema, label="label")
    page = render_html(report)

    def legend(fence):
        return f"outlier fences [{number(fence.low)}, {number(fence.high)}]"

    assert legend(report.fences["y"]) in page
    default = validate(data, label="label").fences["y"]
    assert default.high < report.fences["y"].high
    assert legend(default) not in page


def test_junit_has_no_outlier_case_where_the_schema_switched_outliers_off(data_and_schema):
    data, schema = data_and_schema
    xml = render(validate(data, schema, label="label"), "junit")
    assert 'name="y.outlier"' in xml and 'name="w.outlier"' in xml
    assert 'name="z.outlier"' not in xml


def test_guard_checks_against_the_schemas_fences(data_and_schema):
    data, schema = data_and_schema
    # y = 9.0 (row 5) is inside the schema's 30 robust sds but beyond default k=5 IQR fences
    # (about 7.4), so the clean rows keep it and the guard must not call it out of range.
    loader = make_loader(
        data,
        features=["y", "z", "w"],
        label="label",
        schema=schema,
        scaler=None,
        batch_size=64,
        shuffle=False,
    )
    assert "y" in loader.batchguard.report.fences
    served = guard(loader, on_bad="warn")
    ids = np.concatenate([row_id.numpy() for _, _, row_id in served])
    assert 5 in ids and 6 not in ids
    assert served.stats.reasons["out_of_range"] == 0
