"""Declarative schemas: loading, strictness, inference, streaming checks, pandera interop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline  # noqa: F401 - registers the checks with pandera
from pipeline import Schema, infer_schema, load_schema, validate
from pipeline.errors import SchemaFileError, UsageError
from pipeline.schema.infer import widen
from tests.conftest import ROOT, SAMPLE_DATA, write_parquet

SCHEMAS = ROOT / "schemas"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT
    )


def dicts(report) -> list[dict]:
    return [f.to_dict() for f in report.findings]


def write_schema(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def table_with_faults() -> pa.Table:
    """3,000 rows: values below a range, an unknown category, NaN and inf, a null."""
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.uniform(0, 10, n)
    x[[10, 1500, 2999]] = -1.0  # below greater_than_or_equal_to(0)
    x[[20]] = np.nan
    x[[21]] = np.inf
    cat = rng.choice(["a", "b", "c"], n).astype(object)
    cat[[7, 2048]] = "zz"
    cat[[8]] = None
    return pa.table({"x": x, "cat": pa.array(cat, pa.string()), "n": rng.integers(0, 5, n)})


SCHEMA_WITH_ROW_CHECKS = """\
columns:
  x:
    dtype: float64
    greater_than_or_equal_to: 0
    less_than: 10
    is_finite:
  cat:
    dtype: str
    isin: [a, b, c]
  n:
    dtype: int64
    in_range: {min_value: 0, max_value: 4}
"""


# -- pandera interop ---------------------------------------------------------------------------
@pytest.mark.parametrize("first", ["pipeline", "pandera"])
def test_pandera_loads_schema_files_after_import_pipeline(first):
    """Both import orders register the checks; `import pipeline` alone imports no pandera."""
    code = f"""
import sys
import {first}
if {first!r} == "pipeline":
    assert "pandera" not in sys.modules and "pandas" not in sys.modules
import pipeline
from pandera.api.pandas.container import DataFrameSchema
schema = DataFrameSchema.from_yaml({str(SCHEMAS / "sensors.yaml")!r})
print(sorted({{c.name for col in schema.columns.values() for c in col.checks}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    names = json.loads(out.stdout.replace("'", '"'))
    assert {"is_finite", "max_nan_fraction", "outliers", "in_range", "isin"} <= set(names)


def test_registered_checks_run_in_pandera_and_see_nan():
    import pandera.pandas as pa_

    df = pd.DataFrame({"x": [1.0, np.nan, np.inf, 2.0, 2.0, 2.0, 3.0, 2.0, 250.0]})
    schema = pa_.DataFrameSchema(
        {
            "x": pa_.Column(
                float,
                [
                    pa_.Check.is_finite(),
                    pa_.Check.max_nan_fraction(0.05),
                    pa_.Check.max_top_value_fraction(0.4),
                    pa_.Check.outliers(method="iqr", threshold=5.0),
                    pa_.Check.not_constant(),
                ],
                nullable=True,
            )
        }
    )
    with pytest.raises(pa_.errors.SchemaErrors) as info:
        schema.validate(df, lazy=True)
    failed = set(info.value.failure_cases["check"].astype(str))
    # pandera would hide NaN from these checks unless ignore_na=False, their default
    assert {"is_finite", "max_nan_fraction(max_fraction=0.05)"} <= failed
    assert any(c.startswith("outliers") for c in failed)
    assert any(c.startswith("max_top_value_fraction") for c in failed)
    assert not any(c.startswith("not_constant") for c in failed)


def test_round_trip_infer_yaml_pandera_validate(tmp_path, dirty_parquet):
    schema = infer_schema(dirty_parquet, label="label")
    path = tmp_path / "dirty.yaml"
    schema.to_yaml(path)
    from pandera.io.pandas_io import from_yaml

    by_pandera = from_yaml(path)  # pandera's own loader, after `import pipeline`
    assert by_pandera.metadata["batchguard"]["label"] == "label"
    in_memory = validate(dirty_parquet, schema, batch_size=128)
    assert dicts(validate(dirty_parquet, by_pandera, batch_size=128)) == dicts(in_memory)
    assert dicts(validate(dirty_parquet, path, batch_size=128)) == dicts(in_memory)
    assert load_schema(path).to_yaml() == schema.to_yaml()


def test_validate_accepts_a_schema_built_in_code(tmp_path, table_with_faults):
    import pandera.pandas as pa_

    data = write_parquet(tmp_path / "t.parquet", table_with_faults)
    schema = pa_.DataFrameSchema(
        {"x": pa_.Column(float, pa_.Check.ge(0), nullable=True)},
        metadata={"batchguard": {"label": "n", "min_class_share": 0.5}},
    )
    report = validate(data, schema)
    found = {(f.check, f.column, f.schema_check): f for f in report.findings}
    assert found[("schema", "x", "greater_than_or_equal_to")].sample_rows == [10, 1500, 2999]
    assert ("class_imbalance", "n", None) in found  # the label came from metadata
    with pytest.raises(UsageError, match="schema should be"):
        validate(data, schema=42)


# -- row-level checks --------------------------------------------------------------------------
@pytest.mark.slow  # two command-line runs in subprocesses
def test_row_failures_in_json_identical_across_batch_sizes(tmp_path, table_with_faults):
    data = write_parquet(tmp_path / "t.parquet", table_with_faults, row_group_size=700)
    schema = write_schema(tmp_path, SCHEMA_WITH_ROW_CHECKS)
    reports = []
    for batch_size in ("1000", "1000000"):
        out = run(
            str(data), "--schema", str(schema), "--format", "json", "--batch-size", batch_size
        )
        assert out.returncode == 1, out.stderr
        reports.append(json.loads(out.stdout))
    assert reports[0]["findings"] == reports[1]["findings"]
    schema_findings = {
        (f["column"], f["schema_check"]): f
        for f in reports[0]["findings"]
        if f["check"] == "schema"
    }
    assert set(schema_findings) == {("x", "greater_than_or_equal_to"), ("cat", "isin")}
    assert schema_findings[("x", "greater_than_or_equal_to")]["sample_rows"] == [10, 1500, 2999]
    assert schema_findings[("cat", "isin")]["sample_rows"] == [7, 2048]
    # NaN and inf are reported once, as nan/inf, not again by the range checks
    checks = {(f["check"], f["column"]): f["count"] for f in reports[0]["findings"]}
    assert checks[("nan", "x")] == 1 and checks[("inf", "x")] == 1
    assert checks[("null", "cat")] == 1  # nullable defaults to false
    assert reports[0]["schema"] == str(schema)


def test_quarantine_records_carry_the_schema_check(tmp_path, table_with_faults):
    data = write_parquet(tmp_path / "t.parquet", table_with_faults)
    q = tmp_path / "q.parquet"
    validate(data, write_schema(tmp_path, SCHEMA_WITH_ROW_CHECKS), quarantine=q)
    rows = pq.read_table(q).to_pylist()
    row = next(r for r in rows if r["_row_id"] == 7)
    assert row["_reasons"] == [
        {
            "check": "schema",
            "column": "cat",
            "value": "zz",
            "threshold": "isin(['a', 'b', 'c'])",
            "schema_check": "isin",
            "score": None,
        }
    ]


def test_ignore_na_false_reports_nan_to_the_check(tmp_path, table_with_faults):
    data = write_parquet(tmp_path / "t.parquet", table_with_faults)
    schema = write_schema(
        tmp_path, "columns:\n  x:\n    dtype: float64\n    ge: {min_value: 0, ignore_na: false}\n"
    )
    found = {(f.check, f.schema_check): f for f in validate(data, schema).findings}
    assert found[("schema", "greater_than_or_equal_to")].count == 4  # 3 negatives + the NaN


def test_raise_warning_makes_a_schema_check_a_warning(tmp_path, table_with_faults):
    data = write_parquet(tmp_path / "t.parquet", table_with_faults)
    schema = write_schema(
        tmp_path,
        "columns:\n  cat:\n    dtype: str\n    nullable: true\n"
        "    isin: {allowed_values: [a, b, c], raise_warning: true}\n",
    )
    # x's three -1.0 are also a placeholder (sentinel): not what this test is about
    report = validate(data, schema, severities={"nan": "off", "inf": "off", "sentinel": "off"})
    [finding] = [f for f in report.findings if f.check != "joint_outlier"]
    assert (finding.check, finding.schema_check, finding.severity) == ("schema", "isin", "warning")
    assert report.passed and report.rows_quarantined == 2


def test_user_registered_and_dataframe_checks(tmp_path):
    import pandera.pandas as pa_
    from pandera.api.checks import Check
    from pandera.extensions import register_check_method

    def below_bg_test(series, *, limit):
        return series < limit

    def mean_below_bg_test(series, *, limit):
        return series.mean() < limit

    for fn in (below_bg_test, mean_below_bg_test):
        if fn.__name__ not in Check.REGISTERED_CUSTOM_CHECKS:
            register_check_method(fn, statistics=["limit"], supported_types=pd.Series)
    data = write_parquet(
        tmp_path / "t.parquet", pa.table({"a": [1.0, 2, 3, 4, 5], "b": [2.0, 1, 4, 5, 1]}), 2
    )
    typo = write_schema(
        tmp_path, "columns:\n  a:\n    dtype: float64\n    below_bg_test: {limt: 4}\n"
    )
    with pytest.raises(SchemaFileError, match="has no argument 'limt'; it takes limit"):
        load_schema(typo)
    good = write_schema(tmp_path, "columns:\n  a:\n    dtype: float64\n    below_bg_test: 4\n")
    [finding] = validate(data, good, batch_size=2).findings
    assert (finding.schema_check, finding.sample_rows) == ("below_bg_test", [3, 4])
    aggregate = write_schema(tmp_path, "columns:\n  a: {dtype: float64, mean_below_bg_test: 4}\n")
    with pytest.raises(SchemaFileError, match="one boolean for the whole column"):
        validate(data, aggregate)
    frame = pa_.DataFrameSchema(checks=[pa_.Check(lambda df: df["a"] < df["b"], name="a_below_b")])
    [finding] = validate(data, frame, batch_size=2).findings
    assert (finding.column, finding.schema_check, finding.sample_rows) == (
        None,
        "a_below_b",
        [1, 4],
    )


# -- structure ---------------------------------------------------------------------------------
def test_missing_column_and_dtype_mismatch_fail_the_gate(tmp_path, table_with_faults):
    data = write_parquet(tmp_path / "t.parquet", table_with_faults)
    schema = write_schema(
        tmp_path,
        "columns:\n  x:\n    dtype: int64\n    gt: 0\n  age:\n    dtype: int64\n"
        "  maybe:\n    required: false\n",
    )
    out = run(str(data), "--schema", str(schema), "--format", "json")
    assert out.returncode == 1, out.stderr
    findings = {(f["check"], f["column"]): f for f in json.loads(out.stdout)["findings"]}
    assert "not in" in findings[("missing_column", "age")]["message"]
    assert "expects int64" in findings[("dtype", "x")]["message"]
    assert ("schema", "x") not in findings  # checks of a mistyped column are not run
    assert ("missing_column", "maybe") not in findings


def test_strict_and_ordered(tmp_path, table_with_faults):
    data = write_parquet(tmp_path / "t.parquet", table_with_faults)
    schema = write_schema(
        tmp_path,
        "strict: true\nordered: true\ncolumns:\n  cat: {dtype: str, nullable: true}\n"
        "  x: {dtype: float64}\n",
    )
    found = {(f.check, f.column, f.schema_check) for f in validate(data, schema).findings}
    assert ("schema", "n", "strict") in found and ("schema", None, "ordered") in found


# -- column checks on the merged profile -------------------------------------------------------
def test_column_checks_replace_builtins_and_are_not_softened(tmp_path):
    n = 1000
    near = np.zeros(n)
    near[:5] = 1.0
    x = np.linspace(0, 1, n)
    x[:30] = np.nan
    table = pa.table({"k": np.full(n, 3), "near": near, "x": x})
    data = write_parquet(tmp_path / "t.parquet", table)
    schema = write_schema(
        tmp_path,
        "columns:\n  k:\n    dtype: int64\n    not_constant:\n"
        "  near:\n    dtype: float64\n    max_top_value_fraction: 0.999\n"
        "  x:\n    dtype: float64\n    max_nan_fraction: 0.01\n",
    )
    report = validate(data, schema, max_bad_rows=0.5)
    found = {(f.check, f.column, f.schema_check): f for f in report.findings}
    # not_constant takes the place of the built-in constant check for its column
    assert ("constant", "k", None) not in found
    assert found[("schema", "k", "not_constant")].severity == "error"
    # max_top_value_fraction 0.999 allows the 99.5% zeros the built-in near_constant flags
    assert ("near_constant", "near", None) not in found
    assert ("schema", "near", "max_top_value_fraction") not in found
    # a column-level schema finding quarantines nothing, so max_bad_rows does not soften it
    nan_share = found[("schema", "x", "max_nan_fraction")]
    assert nan_share.severity == "error" and nan_share.fraction == pytest.approx(0.03)
    assert not nan_share.row_level and found[("nan", "x", None)].severity == "warning"


def test_outliers_check_sets_the_columns_fences(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 2000)
    y[[5, 6]] = [9.0, 40.0]
    data = write_parquet(tmp_path / "t.parquet", pa.table({"y": y, "z": y.copy()}))
    schema = write_schema(
        tmp_path,
        "columns:\n  y:\n    dtype: float64\n    outliers: {method: mad, threshold: 30}\n"
        "  z:\n    dtype: float64\n    outliers: {method: none, threshold: 1}\n",
    )
    found = {(f.check, f.column): f for f in validate(data, schema).findings}
    assert found[("outlier", "y")].sample_rows == [6]  # 9.0 is inside 30 robust sds
    assert ("outlier", "z") not in found
    default = {(f.check, f.column): f for f in validate(data, outlier_method="iqr").findings}
    assert default[("outlier", "z")].sample_rows == [5, 6]


def test_dataset_block_sets_options_and_explicit_options_win(tmp_path, dirty_parquet):
    schema = write_schema(
        tmp_path,
        "columns:\n  x: {dtype: float64}\nmetadata:\n  batchguard:\n"
        "    label: label\n    min_class_share: 0.01\n    severities: {constant: warning}\n",
    )
    checks = {f.check: f for f in validate(dirty_parquet, schema).findings}
    assert "class_imbalance" not in checks and checks["constant"].severity == "warning"
    combined = write_schema(
        tmp_path,
        "columns:\n  x: {dtype: float64}\nmetadata:\n  batchguard:\n    joint_score: combined\n",
        "combined.yaml",
    )
    assert validate(dirty_parquet, combined).options.joint_score == "combined"
    stricter = validate(dirty_parquet, schema, min_class_share=0.5)
    assert "class_imbalance" in {f.check for f in stricter.findings}
    out = run(
        str(dirty_parquet), "--schema", str(schema), "--min-class-share", "0.5", "--format", "json"
    )
    report = json.loads(out.stdout)
    assert report["label"]["column"] == "label"
    assert "class_imbalance" in {f["check"] for f in report["findings"]}


# -- strict loading ----------------------------------------------------------------------------
def test_typo_in_check_name_exits_2_naming_typo_and_file(tmp_path):
    schema = write_schema(tmp_path, "columns:\n  x:\n    dtype: float64\n    greter_than: 0\n")
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--schema", str(schema))
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert str(schema) in line and "'greter_than'" in line and "did you mean 'greater_than'" in line
    assert "line 4" in line and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a: &a [1]\nb: &b [*a, *a]\ncolumns: *b\n", "aliases"),
        ("columns: !!python/object/apply:os.system ['echo hi']\n", "no Python tags"),
        ("columns:\n  x: {dtype: float64}\n  x: {dtype: int64}\n", "appears twice"),
        ("columns:\n  x: {dtype: float64}\nstrickt: true\n", "did you mean 'strict'"),
        ("columns:\n  x: {dtype: float64, nulable: true}\n", "did you mean 'nullable'"),
        ("columns:\n  x: {dtype: flaot64}\n", "did you mean 'float64'"),
        ("columns:\n  x: {dtype: float64, gt: '0'}\n", "should be a number"),
        (
            "columns:\n  x: {dtype: float64, in_range: {min_value: 0, max_valu: 1}}\n",
            "did you mean 'max_value'",
        ),
        ("columns:\n  x: {dtype: float64, in_range: {min_value: 2, max_value: 1}}\n", "above"),
        ("columns:\n  x: {dtype: float64, is_finite: true}\n", "takes no arguments"),
        ("columns:\n  x: {dtype: float64, max_nan_fraction: 1.5}\n", "between 0 and 1"),
        ("columns:\n  x: {dtype: float64, outliers: {method: z, threshold: 3}}\n", "iqr, mad"),
        ("columns:\n  x: {dtype: str, isin: [1, 2]}\n", "should be a string"),
        ("columns:\n  x: {dtype: float64, gt: {min_value: 0, groupby: y}}\n", "grouped"),
        ("columns:\n  x: {dtype: float64}\nbatchguard: {label: y}\n", "metadata: batchguard"),
        (
            "columns:\n  x: {dtype: float64}\nmetadata: {batchguard: {lable: y}}\n",
            "did you mean 'label'",
        ),
        ("columns:\n  x: {dtype: float64}\nmetadata: {batchgaurd: {}}\n", "'batchguard'"),
        (
            "columns:\n  x: {dtype: float64}\nmetadata: {batchguard: {max_bad_rows: lots}}\n",
            "fraction",
        ),
        (
            "columns:\n  x: {dtype: float64}\nmetadata: {batchguard: {joint_score: iforest}}\n",
            "one of combined, distance",
        ),
        ("columns:\n  x: {dtype: float64}\nindex: [{dtype: int64}]\n", "index is not supported"),
        ("", "the file is empty"),
        ("columns: [\n", "not valid YAML"),
    ],
)
def test_bad_schema_files_are_refused_clearly(tmp_path, text, expected):
    path = write_schema(tmp_path, text)
    with pytest.raises(SchemaFileError) as info:
        load_schema(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message


def test_alias_bomb_and_python_tag_exit_2(tmp_path):
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    tag = "columns: !!python/object/new:os.system [echo]\n"
    for name, text in (("bomb.yaml", lol + "columns: *i\n"), ("tag.yaml", tag)):
        out = run(
            str(SAMPLE_DATA / "clean.parquet"), "--schema", str(write_schema(tmp_path, text, name))
        )
        assert out.returncode == 2 and name in out.stderr, out.stderr


def test_list_form_and_legacy_mapping_form_are_read(tmp_path):
    path = write_schema(
        tmp_path,
        "columns:\n  x:\n    dtype: float64\n    checks:\n"
        "    - {min_value: 0, options: {check_name: greater_than}}\n"
        "  y:\n    dtype: float64\n    checks: {less_than: 5}\n",
    )
    schema = load_schema(path)
    assert [c.name for c in schema.pandera.columns["x"].checks] == ["greater_than"]
    assert [c.name for c in schema.pandera.columns["y"].checks] == ["less_than"]


# -- inference ---------------------------------------------------------------------------------
def test_widen_margins():
    assert widen(12000.0, 180000.0) == (0.0, 200000.0)  # does not cross zero
    assert widen(21, 75, integer=True) == (15, 81)
    assert widen(-3.0, -1.0) == (-3.2, -0.8)  # never positive stays non-positive
    assert widen(417, 417, integer=True) == (370, 460)  # zero range: 10% of the value
    assert widen(0.0, 0.0) == (0.0, 0.0)
    # at float64's limits (DBL_MAX placeholders) a bound stays where the data ends
    big = np.finfo(np.float64).max
    assert widen(2.0, big) == (0.0, big)
    assert widen(-big, big) == (-big, big)
    assert widen(-big, 3.0) == (-big, 2e307)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.float32])
def test_inferred_bounds_stay_within_the_column_type(tmp_path, dtype):
    # a placeholder at the type's limit (INT64_MAX, UINT64_MAX, FLT_MAX): widened by 10%
    # the bound left the type, and comparing the column with it overflowed in pandas
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    x = np.random.default_rng(6).integers(0, 100, 500).astype(dtype)
    x[[3, 30]] = info.max
    data = tmp_path / "limits.parquet"
    pq.write_table(pa.table({"x": x}), data)
    schema = infer_schema(data)
    [in_range] = [c for c in schema.pandera.columns["x"].checks if c.name == "in_range"]
    assert in_range.statistics["max_value"] == info.max
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = validate(data, schema)
    assert not [f for f in report.findings if f.check.startswith("schema:")]


def test_a_schema_inferred_at_the_float64_limits_passes_its_data(tmp_path):
    big = np.finfo(np.float64).max
    x = np.random.default_rng(4).normal(10.0, 2.0, 500)
    x[[7, 70]] = [big, -big]
    data = tmp_path / "limits.parquet"
    pq.write_table(pa.table({"x": x}), data)
    schema_path = tmp_path / "limits.yaml"
    out = run(str(data), "--infer-schema", str(schema_path))
    assert out.returncode == 0, out.stderr
    report = validate(data, str(schema_path))
    assert not [f for f in report.findings if f.check.startswith("schema:")]


def test_clean_data_passes_its_inferred_schema(tmp_path):
    schema = infer_schema(SAMPLE_DATA / "clean.parquet", label="segment")
    assert schema.settings["label"] == "segment" and schema.notes == []
    columns = schema.pandera.columns
    assert [c.name for c in columns["channel"].checks] == ["isin", "not_constant"]
    assert columns["channel"].checks[0].statistics["allowed_values"] == [
        "mobile",
        "phone",
        "store",
        "web",
    ]
    assert [c.name for c in columns["segment"].checks] == ["isin", "not_constant"]
    report = validate(SAMPLE_DATA / "clean.parquet", schema)
    assert report.passed and report.findings == []


def test_inference_does_not_bless_nan_or_inf(tmp_path):
    out_path = tmp_path / "credit.yaml"
    out = run(
        str(SAMPLE_DATA / "credit.parquet"),
        "--infer-schema",
        str(out_path),
        "--label",
        "default",
        "--max-bad-rows",
        "0.01",
    )
    assert out.returncode == 0 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"wrote {out_path}") and "income, debt_to_income" in line
    schema = load_schema(out_path)
    assert schema.settings["label"] == "default" and schema.settings["max_bad_rows"] == 0.01
    assert "is_finite" in {c.name for c in schema.pandera.columns["income"].checks}
    report = validate(SAMPLE_DATA / "credit.parquet", out_path, max_bad_rows=None)
    assert {(f.check, f.column) for f in report.errors} >= {
        ("nan", "income"),
        ("inf", "debt_to_income"),
    }
    assert not [f for f in report.findings if f.check == "schema"]


def test_infer_schema_usage_errors(tmp_path):
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--infer-schema", str(tmp_path / "x.txt"))
    assert out.returncode == 2 and ".yaml" in out.stderr
    out = run(
        str(SAMPLE_DATA / "clean.parquet"),
        "--infer-schema",
        str(tmp_path / "x.yaml"),
        "--schema",
        str(SCHEMAS / "clean.yaml"),
    )
    assert out.returncode == 2 and "does not validate" in out.stderr


# -- the shipped schemas -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["credit", "sensors", "clean"])
def test_sample_schemas_find_the_documented_faults(name, faults):
    truth = faults[f"{name}.parquet"]
    report = validate(SAMPLE_DATA / f"{name}.parquet", SCHEMAS / f"{name}.yaml", batch_size=4096)
    assert report.options.label == truth["label"]  # from the schema's dataset block
    found = {(f.check, f.column): f for f in report.findings}
    fault_rows = set()
    for fault in truth["faults"]:
        finding = found.pop((fault["check"], fault["column"]))
        if finding.row_level:
            assert finding.count == fault["count"]
            assert finding.sample_rows == fault["rows"][: len(finding.sample_rows)]
            fault_rows.update(fault["rows"])
    # The schemas' ranges also catch the injected unit errors and spikes, on those rows only;
    # joint outliers are reported and kept.
    for (check, _column), finding in found.items():
        if check == "joint_outlier":
            assert finding.severity == "warning" and not report.fails(finding)
            continue
        assert check == "schema" and set(finding.sample_rows) <= fault_rows, finding
    assert report.passed == (name == "clean")


# -- batch independence ------------------------------------------------------------------------
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    batch_size=st.integers(1, 64),
)
def test_schema_findings_do_not_depend_on_batch_size(tmp_path_factory, n, seed, batch_size):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, n)
    x[rng.random(n) < 0.05] = np.nan
    cat = rng.choice(["a", "b", "c", "d"], n)
    table = pa.table({"x": x, "cat": cat, "k": rng.integers(-2, 3, n)})
    folder = tmp_path_factory.mktemp("prop")
    data = write_parquet(folder / "t.parquet", table, row_group_size=max(1, n // 3))
    schema = write_schema(
        folder,
        "columns:\n  x:\n    dtype: float64\n    in_range: {min_value: -4, max_value: 4}\n"
        "    max_nan_fraction: 0.02\n  cat:\n    dtype: str\n    isin: [a, b, c]\n"
        "    max_top_value_fraction: 0.3\n  k:\n    dtype: int64\n    ge: 0\n    not_constant:\n",
    )
    whole = validate(data, schema, batch_size=1_000_000)
    assert dicts(validate(data, schema, batch_size=batch_size)) == dicts(whole)


def test_schema_object_to_yaml_is_tidy(tmp_path):
    schema = load_schema(SCHEMAS / "sensors.yaml")
    text = schema.to_yaml()
    assert "ignore_na" not in text and "include_min" not in text and ": null" not in text
    assert "  batchguard:\n    label: failure" in text
    assert isinstance(load_schema(write_schema(tmp_path, text)), Schema)
    assert os.fspath(SCHEMAS / "sensors.yaml") == schema.path


def test_an_exponent_number_that_yaml_reads_as_text_is_explained(tmp_path):
    """YAML 1.1 (PyYAML, and so pandera) reads 1e6 as a string: the message says how to write it."""
    from pipeline.errors import SchemaFileError
    from pipeline.schema import load_schema

    path = tmp_path / "s.yaml"
    path.write_text(
        "columns:\n  x:\n    dtype: float64\n    checks:\n"
        "      in_range: {min_value: -1e6, max_value: 1.0e+6}\n"
    )
    with pytest.raises(SchemaFileError, match=r"the string '-1e6' \(YAML reads it as text"):
        load_schema(path)
