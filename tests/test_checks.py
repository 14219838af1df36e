"""``pipeline.checks``: column findings from a profile, outlier fences, and the row rules.

Only the module's public names are used, on small tables whose answers can be
worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import profile
from pipeline.checks import (
    Fences,
    column_findings,
    non_finite_rule,
    null_rule,
    outlier_fences,
    outlier_rule,
)
from pipeline.options import ValidationOptions

N = 100
#: rows a hypothesis batch holds at most
_TOTAL = 60


def _profile(tmp_path, columns: dict):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=30)
    return profile(path)


def _found(profile, **options) -> list[tuple[str, str | None, str]]:
    findings = column_findings(profile, ValidationOptions(**options))
    return [(f.check, f.column, f.severity) for f in findings]


# -- column findings ---------------------------------------------------------------------------
@pytest.fixture
def columns() -> dict:
    """One column per column check, and healthy ones that raise none."""
    return {
        "x": np.arange(N, dtype=np.float64),
        "k": np.full(N, 3, dtype=np.int64),
        "near": [0.0] * 99 + [1.0],  # 0.0 in exactly 99% of the values
        "iqr0": [0.0] * 80 + [float(v) for v in range(1, 21)],  # q25 == q75 == 0
        "s": ["a"] * N,
        "cat": [c for c in "abcd"] * (N // 4),
        "empty": pa.nulls(N, pa.float64()),
        "y": [0] * 97 + [1] * 3,
    }


def test_column_findings_in_column_order(tmp_path, columns):
    prof = _profile(tmp_path, columns)
    assert _found(prof, label="y") == [
        ("constant", "k", "error"),
        ("near_constant", "near", "warning"),  # at the threshold counts
        ("zero_iqr", "iqr0", "warning"),
        ("constant", "s", "error"),
        ("constant", "empty", "error"),
        ("class_imbalance", "y", "warning"),
    ]


def test_column_findings_say_what_they_saw(tmp_path, columns):
    prof = _profile(tmp_path, columns)
    found = {f.column: f for f in column_findings(prof, ValidationOptions(label="y"))}
    assert all(f.count == 1 and not f.row_level and not f.sample_rows for f in found.values())
    assert found["k"].fraction == 1.0
    assert "holds only the value 3 in 100 rows" in found["k"].message
    assert "holds only the value 'a'" in found["s"].message  # strings are quoted
    assert "holds no values (all null or NaN)" in found["empty"].message
    assert found["near"].fraction == pytest.approx(0.99)
    assert "is 0.0 in 99.00% of its values" in found["near"].message
    assert found["iqr0"].fraction == 0.0 and "q25 == q75 == 0" in found["iqr0"].message
    assert found["y"].fraction == pytest.approx(0.03)
    assert "class 1 holds 3 of 100 rows (3.00%)" in found["y"].message


def test_thresholds_and_the_label_decide(tmp_path, columns):
    prof = _profile(tmp_path, columns)
    checks = {(c, col) for c, col, _ in _found(prof, near_constant_threshold=0.995)}
    # below the threshold, the near-constant column is judged on its spread instead
    assert ("near_constant", "near") not in checks and ("zero_iqr", "near") in checks
    assert ("class_imbalance", "y") not in {(c, col) for c, col, _ in _found(prof)}
    assert ("class_imbalance", "y") not in {
        (c, col) for c, col, _ in _found(prof, label="y", min_class_share=0.03)
    }
    # the label is never a zero_iqr feature
    prof = _profile(tmp_path, {"f": np.arange(N, dtype=float), "y": [0] * 80 + [1] * 20})
    assert _found(prof) == [("zero_iqr", "y", "warning")] and _found(prof, label="y") == []


def test_severities_override_and_switch_off(tmp_path, columns):
    prof = _profile(tmp_path, columns)
    found = _found(prof, label="y", severities={"near_constant": "error", "constant": "off"})
    assert ("near_constant", "near", "error") in found
    assert all(check != "constant" for check, _, _ in found)


def test_an_empty_dataset_is_one_finding(tmp_path):
    prof = _profile(tmp_path, {"x": pa.array([], pa.float64())})
    [empty] = column_findings(prof, ValidationOptions())
    assert (empty.check, empty.column, empty.severity, empty.count) == ("empty", None, "error", 0)
    assert "no rows" in empty.message
    assert column_findings(prof, ValidationOptions(severities={"empty": "off"})) == []


# -- outlier fences ----------------------------------------------------------------------------
def test_iqr_fences_stand_k_iqrs_beyond_the_quartiles(tmp_path, columns):
    prof = _profile(tmp_path, columns)
    fences = outlier_fences(prof, ValidationOptions(label="y", outlier_method="iqr"))
    # numeric columns with spread only: not the constant, zero-IQR, all-null, string or label ones
    assert sorted(fences) == ["x"]
    # the shape-aware default leaves out the point mass, so a zero-IQR column keeps fences
    auto = outlier_fences(prof, ValidationOptions(label="y"))
    assert sorted(auto) == ["iqr0", "x"] and auto["iqr0"].method == "auto"
    assert auto["iqr0"].low <= 0 and auto["iqr0"].high >= 20  # no value of it is flagged
    q25, q75 = np.quantile(columns["x"], [0.25, 0.75])
    iqr = q75 - q25
    fx = fences["x"]
    assert (fx.lower_anchor, fx.upper_anchor, fx.unit) == (q25, q75, iqr)
    assert (fx.low, fx.high) == (q25 - 5 * iqr, q75 + 5 * iqr)
    assert fx.describe() == f"[{q25 - 5 * iqr:.6g}, {q75 + 5 * iqr:.6g}]"
    wider = outlier_fences(prof, ValidationOptions(outlier_method="iqr", outlier_threshold=8.0))[
        "x"
    ]
    assert (wider.low, wider.high) == (q25 - 8 * iqr, q75 + 8 * iqr)


def test_mad_fences_and_per_column_overrides(tmp_path):
    rng = np.random.default_rng(0)
    x, z = rng.normal(10, 2, 500), rng.normal(0, 1, 500)
    prof = _profile(tmp_path, {"x": x, "z": z})
    mad = np.median(np.abs(x - np.median(x))) * 1.4826
    fx = outlier_fences(prof, ValidationOptions(outlier_method="mad", outlier_threshold=10))["x"]
    assert fx.lower_anchor == fx.upper_anchor == pytest.approx(np.median(x))
    assert fx.unit == pytest.approx(mad)
    assert (fx.low, fx.high) == pytest.approx((np.median(x) - 10 * mad, np.median(x) + 10 * mad))
    # a schema's outliers(...) check replaces the run's method on its column only
    both = outlier_fences(prof, ValidationOptions(), {"x": ("mad", 10.0)})
    assert both["x"] == fx
    assert both["z"] == outlier_fences(prof, ValidationOptions())["z"]
    assert "x" not in outlier_fences(prof, ValidationOptions(), {"x": ("none", 5.0)})


def test_no_fences_when_outliers_are_off(tmp_path, columns):
    prof = _profile(tmp_path, columns)
    assert outlier_fences(prof, ValidationOptions(outlier_method="none")) == {}
    assert outlier_fences(prof, ValidationOptions(severities={"outlier": "off"})) == {}


def test_fences_score_in_units_beyond_the_anchors():
    fence = Fences(low=-9.0, high=13.0, lower_anchor=1.0, upper_anchor=3.0, unit=2.0)
    assert fence.score(np.array([13.0, -9.0, 2.0, 23.0])).tolist() == [5.0, 5.0, -0.5, 10.0]
    assert fence.describe() == "[-9, 13]"


# -- row rules ---------------------------------------------------------------------------------
def _batch(**columns) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(columns)


def _masks(failures) -> dict[tuple[str, str | None], list[bool]]:
    return {(f.check, f.column): f.mask.tolist() for f in failures}


def test_non_finite_rule_finds_nan_and_inf_in_floating_columns():
    nan, inf = float("nan"), float("inf")
    batch = _batch(
        x=pa.array([1.0, nan, inf, None, -inf]),
        i=pa.array([1, 2, 3, 4, 5]),
        ok=pa.array([1.0, 2.0, 3.0, 4.0, 5.0]),
    )
    failures = non_finite_rule(["x", "i", "ok", "absent"])(batch)
    assert _masks(failures) == {
        ("nan", "x"): [False, True, False, False, False],  # a null is not NaN
        ("inf", "x"): [False, False, True, False, True],
    }
    by_check = {f.check: f for f in failures}
    assert by_check["inf"].observed.to_pylist() == [inf, -inf]
    assert {f.threshold for f in failures} == {"finite"}


def test_null_rule_marks_nulls_of_the_named_columns_only():
    batch = _batch(a=pa.array([1, None, 3]), b=pa.array(["x", None, None]))
    failures = null_rule(["a"])(batch)
    assert _masks(failures) == {("null", "a"): [False, True, False]}
    assert failures[0].threshold == "non-null"
    assert null_rule(["a", "b"])(_batch(a=pa.array([1, 2]), b=pa.array(["x", "y"]))) == []


def test_outlier_rule_flags_finite_values_beyond_the_fences():
    fence = Fences(low=-9.0, high=13.0, lower_anchor=1.0, upper_anchor=3.0, unit=2.0)
    batch = _batch(
        x=pa.array([0.0, 13.0, 13.5, -100.0, float("nan"), float("inf"), None]),
        n=pa.array([20, 1, 2, -10, 0, 0, 0]),
    )
    rule = outlier_rule({"x": fence, "n": fence, "absent": fence}, {"x": "numeric", "n": "numeric"})
    failures = {f.column: f for f in rule(batch)}
    # the fences themselves are inside; NaN, inf and nulls are other checks' business
    assert failures["x"].mask.tolist() == [False, False, True, True, False, False, False]
    assert failures["x"].observed.to_pylist() == [13.5, -100.0]
    assert failures["x"].score.tolist() == [5.25, 50.5]
    assert failures["x"].threshold == "[-9, 13]"
    assert failures["n"].mask.tolist() == [True, False, False, True, False, False, False]
    assert {f.check for f in failures.values()} == {"outlier"}


# Values that exercise every rule: ordinary, beyond the fences, NaN, +/-inf and null.
_VALUES = st.one_of(
    st.floats(-20, 20),
    st.sampled_from([1e6, -1e6, float("nan"), float("inf"), float("-inf")]),
    st.none(),
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_VALUES, min_size=1, max_size=_TOTAL), cuts=st.lists(st.integers(0, _TOTAL)))
def test_row_rule_masks_do_not_depend_on_the_batch_split(values, cuts):
    fence = Fences(low=-15.0, high=15.0, lower_anchor=-1.0, upper_anchor=1.0, unit=2.0)
    rules = [
        non_finite_rule(["x"]),
        null_rule(["x"]),
        outlier_rule({"x": fence}, {"x": "numeric"}),
    ]
    whole = pa.RecordBatch.from_pydict({"x": pa.array(values, pa.float64())})
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    for rule in rules:
        want: dict[tuple, np.ndarray] = {}
        _mark(rule(whole), 0, whole.num_rows, want)
        got: dict[tuple, np.ndarray] = {}
        for start, stop in zip(bounds, bounds[1:], strict=False):
            _mark(rule(whole.slice(start, stop - start)), start, stop - start, got)
        assert {k: m.tolist() for k, m in got.items()} == {k: m.tolist() for k, m in want.items()}


def _mark(failures, start: int, rows: int, into: dict) -> None:
    """Set each failure's rows, found in a batch starting at row ``start``, in ``into``."""
    for f in failures:
        assert len(f.mask) == rows and f.mask.any()
        full = into.setdefault((f.check, f.column), np.zeros(_TOTAL, dtype=bool))
        full[start : start + rows] |= f.mask
