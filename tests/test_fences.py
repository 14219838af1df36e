"""pipeline.fences: the outlier fences a run decides, and everyone who reads them.

The bug these tests pin: a schema's per-column ``outliers: {method, threshold}``
was applied by the row rule but ignored by the HTML report, the JUnit cases
and the guard's ``out_of_range`` bounds, which recomputed default k=5 fences.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import guard, make_loader, validate
from pipeline.fences import (
    MAD_TO_SD,
    auto_fences,
    fences_from,
    outlier_fences,
    shape_aware_fences,
)
from pipeline.options import ValidationOptions
from pipeline.report import render, render_html
from pipeline.report._common import number
from pipeline.schema import registered
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


# -- the auto method: shape-aware fences -------------------------------------------------------
def _report_of(tmp_path, columns, **kw):
    data = write_parquet(tmp_path / "auto.parquet", pa.table(columns), row_group_size=500)
    return validate(data, quarantine=tmp_path / "auto-q.parquet", **kw)


#: the checks that quarantine rows for statistical reasons
STATISTICAL = ("outlier", "sentinel")


def _statistical(report):
    """(check, column, count) of the findings that quarantine for statistical reasons."""
    return [(f.check, f.column, f.count) for f in report.findings if f.check in STATISTICAL]


def test_auto_judges_a_lognormal_column_on_a_log_scale_and_a_normal_one_linearly(tmp_path):
    rng = np.random.default_rng(2)
    report = _report_of(
        tmp_path, {"income": rng.lognormal(10, 1, 3000), "height": rng.normal(170, 10, 3000)}
    )
    income, height = report.fences["income"], report.fences["height"]
    assert (income.method, income.scale) == ("auto", "log")
    assert (height.method, height.scale) == ("auto", "linear")
    # below a skewed positive column only negative values are outliers
    assert income.low == 0.0 and height.low > 0.0


def test_a_zero_iqr_column_flags_none_of_its_values(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    counts = np.zeros(n)
    some = rng.random(n) < 0.2
    counts[some] = rng.integers(1, 21, some.sum())  # 80% zeros: q25 == q75 == 0
    level = np.full(n, 5.0)
    some = rng.random(n) < 0.2
    level[some] = rng.normal(5, 2, some.sum())  # 80% one value, the rest spread around it
    report = _report_of(tmp_path, {"counts": counts, "level": level})
    assert {(f.check, f.column) for f in report.findings} >= {
        ("zero_iqr", "counts"), ("zero_iqr", "level"),
    }  # fmt: skip
    for name, x in (("counts", counts), ("level", level)):
        fence = report.fences[name]
        assert fence.low <= x.min() and x.max() <= fence.high, name
    assert _statistical(report) == [] and report.rows_quarantined == 0


def test_frequent_values_are_never_outside_the_fences():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 10_000), np.full(60, 40.0)])  # 0.6% at 40
    values, counts = np.unique(x, return_counts=True)
    assert shape_aware_fences(x, 3.0).high < 40.0  # without its frequency 40 would be out
    fence = auto_fences(x, values, counts, 3.0)
    assert fence.low <= x.min() and fence.high >= 40.0


def test_a_common_far_value_is_neither_outlier_nor_sentinel(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 3000)
    x[:180] = 20.0  # 6%: too common for a placeholder, a value the column takes
    report = _report_of(tmp_path, {"x": x, "w": rng.normal(0, 1, 3000)})
    assert report.fences["x"].high >= 20.0
    assert _statistical(report) == [] and report.rows_quarantined == 0


@pytest.mark.parametrize("zeros", [0.05, 0.4, 0.6])
def test_a_zero_inflated_positive_column_keeps_its_zeros(tmp_path, zeros):
    rng = np.random.default_rng(6)
    x = rng.lognormal(2, 1, 3000)
    x[rng.random(3000) < zeros] = 0.0
    report = _report_of(tmp_path, {"x": x, "w": rng.normal(0, 1, 3000)})
    fence = report.fences["x"]
    assert fence.scale == "log" and fence.low <= 0.0 <= fence.high
    assert _statistical(report) == [] and report.rows_quarantined == 0


def test_a_schema_override_of_the_auto_threshold(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(5, 1, 3000)
    x[9] = 25.0  # beyond the default fences (about 14), inside threshold 10 (about 30)
    data = write_parquet(tmp_path / "o.parquet", pa.table({"x": x, "w": rng.normal(0, 1, 3000)}))
    schema = tmp_path / "o.yaml"
    schema.write_text(
        "columns:\n"
        "  x:\n    dtype: float64\n    outliers: {method: auto, threshold: 10}\n"
        "  w:\n    dtype: float64\n"
    )
    default, overridden = validate(data), validate(data, schema)
    assert ("outlier", "x", 1) in _statistical(default)
    fence = overridden.fences["x"]
    assert (fence.method, fence.threshold, fence.scale) == ("auto", 10.0, "linear")
    assert fence.high > 25.0 > default.fences["x"].high
    assert overridden.fences["w"] == default.fences["w"]
    assert _statistical(overridden) == []


def test_the_pandera_check_sets_the_fences_validate_applies(tmp_path):
    rng = np.random.default_rng(8)
    columns = {
        "normal": rng.normal(5, 1, 1500),
        "lognormal": rng.lognormal(0, 1, 1500),
        "counts": rng.poisson(3, 1500).astype(np.float64),
    }
    report = _report_of(tmp_path, columns)
    for name, x in columns.items():
        fence = report.fences[name]
        assert registered.fences(x, "auto", 3.0) == (fence.low, fence.high), name


# -- gross errors are quarantined; healthy tables lose nothing ---------------------------------
def _base(seed: int, n: int = 5000) -> dict[str, np.ndarray]:
    """Heights in metres, a lognormal measurement (sigma 0.5) and integer counts."""
    rng = np.random.default_rng(seed)
    return {
        "height": rng.normal(1.7, 0.1, n),
        "amount": rng.lognormal(3, 0.5, n),
        "visits": rng.poisson(5, n).astype(np.int64),
    }


def _inject(x: np.ndarray, error: str, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """``x`` with one kind of gross error, and the rows it changed."""
    x = x.copy()
    if error == "zero":
        rows = [17]
        x[rows] = 0
    elif error == "minus_999":
        rows = [5, 500, 900, 1500, 4999]
        x[rows] = -999
    elif error == "1e4_median":
        rows = [17]
        x[rows] = np.median(x) * 1e4
    else:  # a unit mix-up on 0.5% of rows (millimetres among metres)
        rows = np.sort(rng.choice(x.size, x.size // 200, replace=False))
        rows = rows[x[rows] != 0]  # a zero is the same in either unit
        x[rows] = x[rows] * 1000
    return x, [int(r) for r in rows]


GROSS_ERRORS = [
    (column, error)
    for column in ("height", "amount", "visits")
    for error in ("zero", "minus_999", "1e4_median", "unit_x1000")
    if (column, error) != ("visits", "zero")  # a zero is an ordinary count
]


@pytest.mark.parametrize("column, error", GROSS_ERRORS)
def test_gross_errors_are_quarantined(tmp_path, column, error):
    base = _base(11)
    x, rows = _inject(base[column], error, np.random.default_rng(12))
    report = _report_of(tmp_path, {**base, column: x})
    quarantined = pq.read_table(tmp_path / "auto-q.parquet")
    assert quarantined.column("_row_id").to_pylist() == rows
    checks = {
        (r["check"], r["column"]) for rs in quarantined.column("_reasons").to_pylist() for r in rs
    }
    expected = "sentinel" if error in ("zero", "minus_999") else "outlier"
    assert checks == {(expected, column)}
    assert report.rows_quarantined == len(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_tables_quarantine_nothing_for_statistical_reasons(tmp_path, seed):
    report = _report_of(tmp_path, _base(seed, 20_000))
    assert _statistical(report) == []
    assert report.rows_quarantined <= 0.001 * report.rows
