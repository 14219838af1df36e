"""Drift against a baseline (``--baseline``): metrics, guards, findings, settings, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import datasets

from pipeline import validate
from pipeline._drift_metrics import StepCDF, ks, ks_critical
from pipeline.drift import (
    DriftConfig,
    compare,
    load_baseline,
    summarize,
    write_baseline,
)
from pipeline.errors import SchemaFileError, UsageError
from pipeline.profiling import Profile
from pipeline.report import render
from pipeline.report.render import render_html
from pipeline.schema import load_schema
from pipeline.source import ROW_ID

# -- helpers -----------------------------------------------------------------------------------


def profile_of(table: pa.Table, batch: int | None = None, sample_size: int = 100_000) -> Profile:
    """The profile of ``table`` streamed in batches of ``batch`` rows (row ids 0..n-1)."""
    ids = pa.array(np.arange(table.num_rows, dtype=np.int64))
    table = table.append_column(ROW_ID, ids)
    prof = Profile(table.schema, sample_size=sample_size)
    for b in table.to_batches(max_chunksize=batch or max(table.num_rows, 1)):
        prof.update(b)
    return prof


def wine_table(n: int, seed: int) -> pa.Table:
    """A bootstrap resample of scikit-learn's wine table, with a string column and the label."""
    data = datasets.load_wine(as_frame=True).frame
    rng = np.random.default_rng(seed)
    take = data.iloc[rng.integers(0, len(data), n)].reset_index(drop=True)
    cultivar = np.array(["barolo", "grignolino", "barbera"])[take["target"].to_numpy()]
    # a feature that is a category, decoupled from the label by its own shuffle
    region = np.array(["north", "south", "east", "west"])[rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])]
    table = pa.Table.from_pandas(take.drop(columns="target"), preserve_index=False)
    return table.append_column("region", pa.array(region)).append_column(
        "cultivar", pa.array(cultivar)
    )


def errors(result) -> set[tuple[str, str | None]]:
    return {(f.check, f.column) for f in result.findings if f.severity == "error"}


def flagged(result) -> dict[tuple[str, str | None], str]:
    return {(f.check, f.column): f.severity for f in result.findings}


# -- the metrics -------------------------------------------------------------------------------


def test_ks_from_exact_counts_equals_scipy_on_all_rows():
    rng = np.random.default_rng(3)
    a = rng.poisson(20, 250_000).astype(np.float64)  # > the sample size: counts, not the sample
    b = rng.poisson(21, 180_000).astype(np.float64)
    ref, cur = profile_of(pa.table({"x": a})), profile_of(pa.table({"x": b}))
    assert ref.columns["x"].values is not None  # exact counts
    result = compare(summarize(ref), cur)
    [m] = [m for m in result.measurements if m.metric == "ks"]
    assert m.exact and m.bound == 0
    assert abs(m.value - stats.ks_2samp(a, b).statistic) <= 1e-12


def test_ks_from_a_sample_holding_every_row_is_exact():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=30_000), rng.normal(0.05, 1.1, 25_000)
    result = compare(summarize(profile_of(pa.table({"x": a}))), profile_of(pa.table({"x": b})))
    [m] = [m for m in result.measurements if m.metric == "ks"]
    assert m.exact
    assert abs(m.value - stats.ks_2samp(a, b).statistic) <= 1e-12


def test_ks_from_row_samples_stays_within_its_stated_bound():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=60_000), rng.normal(0.2, 1.0, 60_000)
    ref = profile_of(pa.table({"x": a}), sample_size=5_000)
    cur = profile_of(pa.table({"x": b}), sample_size=5_000)
    [m] = [m for m in compare(summarize(ref), cur).measurements if m.metric == "ks"]
    assert not m.exact
    assert m.bound == pytest.approx(2 * np.sqrt(np.log(2000) / (2 * 5_000)))
    assert abs(m.value - stats.ks_2samp(a, b).statistic) <= m.bound


def test_slim_quantile_grid_is_within_half_a_step_of_the_sample_ecdf():
    rng = np.random.default_rng(6)
    x = rng.lognormal(size=50_000)
    full = StepCDF.from_sample(x)
    grid = full.quantiles(np.arange(1001) / 1000)
    slim = StepCDF.from_quantiles(grid, x.size)
    z = np.union1d(full.xs, slim.xs)
    assert np.max(np.abs(full.at(z) - slim.at(z))) <= 0.0005 + 1e-12
    y = rng.lognormal(0.1, 1.0, 40_000)
    d_full, *_ = ks(full, StepCDF.from_sample(y))
    d_slim, *_ = ks(slim, StepCDF.from_sample(y))
    assert abs(d_full - d_slim) <= 0.0005 + 1e-12


def test_ks_critical_distance():
    # Kolmogorov's c(0.001) = 1.9495
    assert ks_critical(100, 100) == pytest.approx(1.9495 * np.sqrt(2 / 100), rel=1e-4)


# -- identity ----------------------------------------------------------------------------------


def _nulls(m) -> float:
    return 1.0 if m.metric == "class_ratio" else 0.0


def test_a_dataset_against_its_own_profile_is_exactly_zero(tmp_path: Path):
    table = wine_table(150_000, seed=1)  # beyond the sample: every kind of summary is used
    path = tmp_path / "wine.parquet"
    pq.write_table(table, path, row_group_size=20_000)
    first = validate(path, label="cultivar")
    baseline = tmp_path / "wine.json"
    baseline.write_text(json.dumps(first.profile.to_dict(), default=str))
    for batch_size in (7_777, 65_536):
        report = validate(path, label="cultivar", baseline=baseline, batch_size=batch_size)
        drift = report.drift
        assert drift is not None and len(drift.compared) == table.num_columns
        assert all(m.value == _nulls(m) for m in drift.measurements), [
            (m.column, m.metric, m.value) for m in drift.measurements if m.value != _nulls(m)
        ]
        assert not drift.findings and not drift.flagged


@settings(max_examples=25, deadline=None)
@given(
    x=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False) | st.just(float("nan")), min_size=1, max_size=300
    ),
    batch=st.integers(1, 64),
)
def test_identity_does_not_depend_on_batching(x: list[float], batch: int):
    cats = [["a", "b", None][i % 3] for i in range(len(x))]
    table = pa.table({"x": x, "c": cats, "k": [i % 5 for i in range(len(x))]})
    whole, parts = profile_of(table), profile_of(table, batch=batch)
    result = compare(summarize(whole), parts)
    assert all(m.value == _nulls(m) for m in result.measurements)
    assert not result.findings


def test_slim_baseline_of_the_same_data_is_quiet(tmp_path: Path):
    table = wine_table(150_000, seed=2)
    prof = profile_of(table)
    path = tmp_path / "slim.json"
    write_baseline(prof, path)
    slim = load_baseline(path)
    assert slim.slim
    result = compare(slim, prof, label="cultivar")
    assert not result.findings
    ks_values = [m.value for m in result.measurements if m.metric == "ks"]
    assert max(ks_values) <= 0.0005 + 1e-12  # the grid's bound; exact counts give 0
    assert path.stat().st_size < 20_000 * table.num_columns


# -- random resamples: quiet -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_random_halves_and_bootstraps_of_real_tables_raise_no_error(n: int):
    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
    }
    runs = warnings = 0
    for name, load in loaders.items():
        frame = load(as_frame=True).frame
        for seed in range(3):
            rng = np.random.default_rng(seed)
            whole = frame.iloc[rng.integers(0, len(frame), 2 * n)].reset_index(drop=True)
            half = rng.permutation(2 * n)
            pairs = {
                "halves": (whole.iloc[half[:n]], whole.iloc[half[n:]]),
                "bootstrap": (whole.iloc[:n], frame.iloc[rng.integers(0, len(frame), n)]),
            }
            for a, b in pairs.values():
                ta = pa.Table.from_pandas(a.reset_index(drop=True), preserve_index=False)
                tb = pa.Table.from_pandas(b.reset_index(drop=True), preserve_index=False)
                result = compare(summarize(profile_of(ta)), profile_of(tb), label="target")
                assert not errors(result), (name, seed, n, result.findings)
                runs += len(result.compared)
                warnings += len(result.findings)
    assert warnings <= 0.01 * runs, f"{warnings} warnings in {runs} column comparisons"


# -- injected shifts: found, on the right column, at the right level ---------------------------


@pytest.fixture(scope="module")
def reference() -> tuple[pa.Table, Profile]:
    table = wine_table(20_000, seed=11)
    return table, profile_of(table)


def _current(seed: int = 12) -> pa.Table:
    return wine_table(20_000, seed=seed)


def _replace(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def _compare(reference, table: pa.Table, **kw):
    return compare(summarize(reference[1]), profile_of(table), label="cultivar", **kw)


def test_an_independent_resample_is_quiet(reference):
    assert not _compare(reference, _current()).findings


@pytest.mark.parametrize(("shift", "level"), [(0.3, "warning"), (0.5, "warning"), (1.0, "error")])
def test_a_mean_shift_is_found_on_its_column(reference, shift: float, level: str):
    cur = _current()
    x = cur.column("alcohol").to_numpy()
    result = _compare(reference, _replace(cur, "alcohol", x + shift * x.std()))
    found = flagged(result)
    assert set(found) == {("drift", "alcohol")}
    # 0.5 sd sits on the error line (KS ~ 0.2, PSI ~ 0.24): warning or error
    assert found[("drift", "alcohol")] == level or (
        shift == 0.5 and found[("drift", "alcohol")] == "error"
    )


def test_a_scale_change_is_found_by_psi(reference):
    cur = _current()
    x = cur.column("magnesium").to_numpy()
    result = _compare(reference, _replace(cur, "magnesium", x.mean() + 2.0 * (x - x.mean())))
    assert flagged(result) == {("drift", "magnesium"): "error"}
    [f] = result.findings
    assert f.metric in ("psi", "ks") and f.value >= f.threshold


@pytest.mark.parametrize(("moved", "level"), [(0.03, None), (0.07, "warning"), (0.15, "error")])
def test_moved_category_shares(reference, moved: float, level: str | None):
    cur = _current()
    region = cur.column("region").to_numpy(zero_copy_only=False).copy()
    north = np.flatnonzero(region == "north")
    rng = np.random.default_rng(0)
    region[rng.choice(north, int(moved * len(region)), replace=False)] = "west"
    result = _compare(reference, _replace(cur, "region", region))
    assert flagged(result) == ({} if level is None else {("drift", "region"): level})


def test_a_new_category_is_reported(reference):
    cur = _current()
    region = cur.column("region").to_numpy(zero_copy_only=False).copy()
    region[:200] = "central"  # 1% of rows
    result = _compare(reference, _replace(cur, "region", region))
    [f] = result.findings
    assert (f.check, f.column, f.severity, f.metric) == (
        "drift",
        "region",
        "warning",
        "new_categories",
    )
    assert "'central'" in f.message


def test_a_class_share_halved_is_a_label_error(reference):
    cur = _current()
    label = cur.column("cultivar").to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(label == "barbera")
    share, others = len(rows) / len(label), len(label) - len(rows)
    kept = round(share / 2 * others / (1 - share / 2))  # what leaves the class half its share
    keep = np.setdiff1d(np.arange(len(label)), rows[kept:])
    result = _compare(reference, cur.take(keep))
    assert errors(result) == {("label_drift", "cultivar")}
    ratio = [m for m in result.measurements if m.metric == "class_ratio"][0]
    assert ratio.value == pytest.approx(2.0, rel=0.05) and "'barbera'" in ratio.detail


def test_a_removed_class_is_a_label_error(reference):
    cur = _current()
    label = cur.column("cultivar").to_numpy(zero_copy_only=False)
    result = _compare(reference, cur.filter(pa.array(label != "grignolino")))
    metrics = {
        f.metric for f in result.findings if f.check == "label_drift" and f.severity == "error"
    }
    assert "vanished_classes" in metrics
    assert "'grignolino'" in next(
        f.message for f in result.findings if f.metric == "vanished_classes"
    )


def test_three_percent_more_missing_values_warn(reference):
    cur = _current()
    x = cur.column("hue").to_numpy().copy()
    x[np.random.default_rng(1).choice(len(x), int(0.03 * len(x)), replace=False)] = np.nan
    result = _compare(reference, _replace(cur, "hue", x))
    [f] = result.findings
    assert (f.check, f.column, f.severity, f.metric) == ("drift", "hue", "warning", "missing_tvd")
    assert "NaN 0.00% -> 3.00%" in f.message


def test_schema_drift(reference):
    cur = _current().drop_columns(["proline"])
    cur = _replace(cur, "magnesium", cur.column("magnesium").cast(pa.float32()))  # narrowing
    cur = cur.append_column("batch_no", pa.array(np.zeros(cur.num_rows, dtype=np.int32)))
    result = _compare(reference, cur)
    assert flagged(result) == {
        ("missing_column", "proline"): "error",
        ("dtype", "magnesium"): "error",
        ("new_column", "batch_no"): "warning",
    }


def test_a_lossless_widening_is_a_warning():
    a = pa.table({"k": pa.array(np.arange(5_000) % 7, pa.int32())})
    b = pa.table({"k": pa.array(np.arange(5_000) % 7, pa.int64())})
    result = compare(summarize(profile_of(a)), profile_of(b))
    assert flagged(result) == {("dtype", "k"): "warning"}
    assert all(m.value == 0 for m in result.measurements)  # still compared, and unchanged


def test_small_samples_are_guarded():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=40), rng.normal(size=40)  # KS noise at n = 40 passes 0.1 often
    result = compare(summarize(profile_of(pa.table({"x": a}))), profile_of(pa.table({"x": b})))
    [m] = [m for m in result.measurements if m.metric == "ks"]
    assert m.value < ks_critical(40, 40)
    assert m.status in ("ok", "small_sample") and not result.findings


def test_temporal_columns_are_measured_not_gated():
    days = np.arange(10_000).astype("datetime64[D]")
    a, b = pa.table({"t": pa.array(days[:5000])}), pa.table({"t": pa.array(days[5000:])})
    result = compare(summarize(profile_of(a)), profile_of(b))
    [m] = [m for m in result.measurements if m.metric == "ks"]
    assert m.value == 1.0 and m.status == "reported" and not result.findings


# -- settings ----------------------------------------------------------------------------------


def test_per_column_thresholds_and_ignore(reference):
    cur = _current()
    x = cur.column("alcohol").to_numpy()
    shifted = _replace(cur, "alcohol", x + 0.3 * x.std())
    strict = DriftConfig.from_mapping({"columns": {"alcohol": {"ks": [0.05, 0.1]}}})
    assert flagged(_compare(reference, shifted, config=strict)) == {("drift", "alcohol"): "error"}
    off = DriftConfig.from_mapping({"columns": {"alcohol": "ignore"}})
    result = _compare(reference, shifted, config=off)
    assert not result.findings and "alcohol" in result.ignored


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"numerc": {}}, "unknown drift setting 'numerc'; did you mean 'numeric'?"),
        ({"numeric": {"kss": [0.1, 0.2]}}, "unknown drift metric 'kss'; did you mean 'ks'?"),
        ({"numeric": {"ks": [0.3, 0.2]}}, "warning threshold 0.3 is above the error threshold 0.2"),
        ({"numeric": {"ks": 0.2}}, "should be [warn, error]"),
        ({"ignore": "id"}, "should be a list of column names"),
    ],
)
def test_bad_drift_settings_are_refused(block, problem: str):
    with pytest.raises(UsageError, match=None) as info:
        DriftConfig.from_mapping(block)
    assert problem in str(info.value)


def test_schema_drift_block(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text(
        "columns:\n  x:\n    dtype: float64\nmetadata:\n  batchguard:\n    label: y\n"
        "    drift:\n      numeric: {ks: [0.05, 0.1]}\n      ignore: [id]\n"
    )
    schema = load_schema(good)
    assert schema.settings == {"label": "y"}
    assert schema.drift is not None and schema.drift.thresholds("numeric", "ks", "x") == (0.05, 0.1)
    assert "drift" in schema.to_yaml()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "columns:\n  x:\n    dtype: float64\nmetadata:\n  batchguard:\n"
        "    drift:\n      numeric: {psii: [0.1, 0.2]}\n"
    )
    with pytest.raises(
        SchemaFileError, match=r"drift.numeric.psii \(line 7\): unknown drift metric 'psii'"
    ):
        load_schema(bad)


def test_a_settings_column_in_neither_dataset_is_a_typo(tmp_path: Path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"age": [1.0, 2.0, 3.0]}), path)
    prof = validate(path).profile
    with pytest.raises(UsageError, match="column 'agee'.*did you mean 'age'"):
        validate(path, baseline=prof, drift={"columns": {"agee": {"ks": [0.1, 0.2]}}})


# -- the command line and the outputs ----------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def shifted_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("drift")
    ref, cur = wine_table(5_000, seed=21), wine_table(5_000, seed=22)
    x = cur.column("alcohol").to_numpy()
    cur = _replace(cur, "alcohol", x + 1.0 * x.std())
    pq.write_table(ref, folder / "ref.parquet")
    pq.write_table(cur, folder / "cur.parquet")
    return folder, folder / "ref.parquet", folder / "cur.parquet"


def test_cli_baseline_gate_and_json(shifted_files):
    folder, ref, cur = shifted_files
    profile = folder / "ref.json"
    slim = folder / "ref.slim.json"
    first = _run(
        str(ref), "--label", "cultivar", "--profile-out", str(profile), "--baseline-out", str(slim)
    )
    assert first.returncode in (0, 1), first.stderr
    for baseline in (profile, slim):
        same = _run(
            str(ref), "--label", "cultivar", "--baseline", str(baseline), "--format", "json"
        )
        assert not [f for f in json.loads(same.stdout)["findings"] if f["check"] == "drift"]
        out = _run(str(cur), "--label", "cultivar", "--baseline", str(baseline), "--format", "json")
        assert out.returncode == 1, out.stderr
        doc = json.loads(out.stdout)
        [f] = [f for f in doc["findings"] if f["check"] == "drift"]
        assert f["column"] == "alcohol" and f["severity"] == "error"
        assert f["metric"] in ("ks", "psi") and f["value"] >= f["threshold"] > 0
        assert doc["drift"]["baseline"] == str(baseline)
        assert {m["column"] for m in doc["drift"]["measurements"]} >= {"alcohol", "region"}


def test_cli_bad_baseline_exits_2(shifted_files, tmp_path: Path):
    _, ref, _ = shifted_files
    for content, message in (
        ("{not json", "cannot read it as JSON"),
        ('{"report_version": 1}', "a validate report"),
        ('{"profile_version": 99}', "profile_version 99"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        out = _run(str(ref), "--baseline", str(bad))
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    out = _run(str(ref), "--baseline", str(tmp_path / "none.json"))
    assert out.returncode == 2 and "no such file" in out.stderr
    out = _run(str(ref), "--baseline", str(tmp_path))
    assert out.returncode == 2 and "no profile.json" in out.stderr


def test_a_saved_preprocessor_folder_is_a_baseline(shifted_files, tmp_path: Path):
    import pipeline

    _, ref, cur = shifted_files
    features = ["alcohol", "magnesium", "hue"]
    prep = pipeline.fit(ref, label="cultivar", features=features)
    prep.save(tmp_path / "prep")
    report = validate(cur, label="cultivar", baseline=tmp_path / "prep")
    assert ("drift", "alcohol") in errors(report)


def test_every_format_shows_the_drift(shifted_files):
    _, ref, cur = shifted_files
    base = validate(ref, label="cultivar").profile
    report = validate(cur, label="cultivar", baseline=base)
    text = render(report, "text")
    assert "drift against" in text and "alcohol" in text
    markdown = render(report, "markdown")
    assert "**Drift**" in markdown and "| alcohol |" in markdown
    junit = render(report, "junit")
    assert 'name="alcohol.drift"' in junit and "metric: " in junit and "threshold: " in junit
    assert 'name="region.drift"' in junit  # compared and passed
    github = render(report, "github")
    assert "title=drift (" in github and "in alcohol::" in github
    html = render_html(report)
    assert 'id="drift"' in html and "baseline (grey bars) and current (blue outline)" in html


def test_html_overlays_every_drifted_column(reference):
    cur = _current()
    label = cur.column("cultivar").to_numpy(zero_copy_only=False)
    cur = cur.filter(pa.array(label != "grignolino"))
    x = cur.column("alcohol").to_numpy()
    cur = _replace(cur, "alcohol", x + x.std())
    result = _compare(reference, cur)
    # removing a cultivar moves the features that tell cultivars apart, too
    drifted = {f.column for f in result.findings if f.check in ("drift", "label_drift")}
    assert drifted >= {"alcohol", "cultivar"} and set(result.overlays) == drifted
    assert result.overlays["alcohol"]["kind"] == "numeric"
    assert result.overlays["cultivar"]["kind"] == "categories"
    for overlay in result.overlays.values():
        assert sum(overlay["reference"]) == pytest.approx(1.0)
        assert sum(overlay["current"]) == pytest.approx(1.0)
