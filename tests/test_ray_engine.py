"""The Ray engine gives the local engine's findings, statistics and row ids.

The tests marked ``ray`` share one local Ray (2 CPUs, a small object store, no
dashboard) started once per session; they skip when the ``ray`` extra is not
installed. The missing-extra tests simulate its absence and run everywhere.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.engines import RAY_MISSING
from pipeline.errors import SchemaFileError, UsageError
from pipeline.quarantine import REASONS
from pipeline.report import render
from tests.conftest import ROOT, SAMPLE_DATA

# Ray Data's own DataContext copies trip its deprecation warnings; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray\\.data\\.context")

SAMPLES = {"credit": "default", "sensors": "failure", "clean": "segment"}
#: relative tolerance for means and standard deviations, merged in another order
FLOAT_RTOL = 1e-12


def report_json(report: Any) -> dict[str, Any]:
    """What ``--format json`` prints, minus the output paths (files here, folders there)."""
    data = json.loads(render(report, "json"))
    del data["outputs"]
    return data


def assert_same_report(ray_json: dict[str, Any], local_json: dict[str, Any]) -> None:
    """Equal, except means and standard deviations may differ by float rounding."""
    assert ray_json["findings"] == local_json["findings"]
    assert ray_json.keys() == local_json.keys()
    for key in ray_json:
        if key != "columns":
            assert ray_json[key] == local_json[key], key
    assert ray_json["columns"].keys() == local_json["columns"].keys()
    for name, stats in ray_json["columns"].items():
        expected = local_json["columns"][name]
        # a mean near zero has a large relative error; measure it against the spread
        scale = abs(expected["std"] or 0.0)
        for stat, value in stats.items():
            if stat in ("mean", "std") and value is not None:
                assert math.isclose(
                    value, expected[stat], rel_tol=FLOAT_RTOL, abs_tol=FLOAT_RTOL * scale
                ), (name, stat)
            else:
                assert value == expected[stat], (name, stat)


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    """Same schema and values; NaN equals NaN (``Table.equals`` says it does not)."""
    assert got.schema == expected.schema
    for name in got.column_names:
        x, y = got.column(name), expected.column(name)
        if pa.types.is_floating(x.type):
            assert pc.is_null(x).to_pylist() == pc.is_null(y).to_pylist(), name
            np.testing.assert_array_equal(x.to_numpy(), y.to_numpy(), err_msg=name)
        else:
            assert x.to_pylist() == y.to_pylist(), name


def read_dir(path: Path) -> pa.Table:
    """An output directory's parts, in name order (which is row order)."""
    parts = sorted(path.glob("part-*.parquet"))
    assert parts, f"no parts in {path}"
    return pa.concat_tables(pq.read_table(p) for p in parts)


def run_both(tmp_path: Path, data: Path, **kw: Any) -> tuple[Any, Any, Path]:
    """Validate ``data`` with both engines, each writing quarantine and clean outputs."""
    local = validate(
        data, quarantine=tmp_path / "q.parquet", clean=tmp_path / "c.parquet", **kw
    )  # fmt: skip
    out = tmp_path / "ray"
    out.mkdir()
    ray_report = validate(data, quarantine=out / "q", clean=out / "c", engine="ray", **kw)
    return ray_report, local, out


# -- equality with the local engine ------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.parametrize("with_schema", [False, True], ids=["no-schema", "schema"])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_data_ray_equals_local(ray_session, tmp_path, name, with_schema):
    data = SAMPLE_DATA / f"{name}.parquet"
    kw: dict[str, Any] = (
        {"schema": ROOT / "schemas" / f"{name}.yaml"} if with_schema else {"label": SAMPLES[name]}
    )
    ray_report, local, out = run_both(tmp_path, data, **kw)
    assert_same_report(report_json(ray_report), report_json(local))
    assert ray_report.exit_code == local.exit_code

    # the same quarantined rows, with the same reasons, and the same clean rows
    q_local = pq.read_table(tmp_path / "q.parquet")
    q_ray = read_dir(out / "q")
    assert q_ray.column("_row_id").to_pylist() == q_local.column("_row_id").to_pylist()
    assert q_ray.column(REASONS).to_pylist() == q_local.column(REASONS).to_pylist()
    assert_same_rows(q_ray, q_local)
    assert_same_rows(read_dir(out / "c"), pq.read_table(tmp_path / "c.parquet"))


@pytest.mark.ray
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_report_only_rereads_fewer_chunks_and_still_equals_local(ray_session, name):
    """Without a clean output, pass 2 reads only the chunks that can hold a failing row."""
    data = SAMPLE_DATA / f"{name}.parquet"
    ray_report = validate(data, label=SAMPLES[name], engine="ray")
    assert_same_report(report_json(ray_report), report_json(validate(data, label=SAMPLES[name])))


@pytest.mark.ray
def test_report_only_reads_once_and_equals_the_two_pass_run(ray_session, monkeypatch):
    """Each pass-1 task keeps its block's values that can fail: pass 2 reads nothing.

    (On credit the kept values cover the final rules; on sensors one column's fence
    lies inside its candidate band, so pass 2 reads again, as the local engine does.)
    """
    import pipeline.engines._candidates as candidates
    import pipeline.engines._ray as ray_engine

    data = SAMPLE_DATA / "credit.parquet"
    reads: list[int] = []
    read = ray_engine._read
    monkeypatch.setattr(ray_engine, "_read", lambda *a: reads.append(1) or read(*a))
    once = validate(data, label="default", engine="ray")
    assert len(reads) == 1
    with monkeypatch.context() as m:
        m.setattr(candidates, "CANDIDATE_LIMIT", -1)  # the driver finds them too many
        twice = validate(data, label="default", engine="ray")
    assert len(reads) == 3  # rows fail there, so two passes read twice
    assert report_json(once) == report_json(twice)
    assert_same_report(report_json(once), report_json(validate(data, label="default")))


@pytest.mark.ray
def test_ray_outputs_conserve_rows(ray_session, tmp_path, dirty_parquet, monkeypatch):
    """Many small read tasks: every row lands in exactly one output, ids 0..n-1."""
    import pipeline.engines._ray as engine

    monkeypatch.setattr(engine, "TASK_ROWS", 300)  # one task per 300-row group
    report = validate(
        dirty_parquet, label="label", quarantine=tmp_path / "q", clean=tmp_path / "c",
        engine="ray",
    )  # fmt: skip
    clean, quarantined = read_dir(tmp_path / "c"), read_dir(tmp_path / "q")
    assert clean.num_rows + quarantined.num_rows == report.rows == 2000
    assert quarantined.num_rows == report.rows_quarantined == 6
    ids = clean.column("_row_id").to_pylist() + quarantined.column("_row_id").to_pylist()
    assert sorted(ids) == list(range(2000))
    assert clean.column("_row_id").to_pylist() == sorted(clean.column("_row_id").to_pylist())
    local = validate(dirty_parquet, label="label", batch_size=128)
    assert_same_report(report_json(report), report_json(local))


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["partitioned-parquet", "csv-files"])
def test_directories_without_independent_chunks(ray_session, tmp_path, dirty_table, kind):
    """Hive partitions become columns; CSV files after the first are read by one task."""
    root = tmp_path / "data"
    halves = [dirty_table.slice(0, 1000), dirty_table.slice(1000)]
    for i, half in enumerate(halves):
        if kind == "csv-files":
            root.mkdir(exist_ok=True)
            pcsv.write_csv(half, root / f"part{i}.csv")
        else:
            (root / f"split={i}").mkdir(parents=True)
            pq.write_table(half, root / f"split={i}" / "x.parquet", row_group_size=250)
    ray_report, local, out = run_both(tmp_path, root, label="label")
    assert_same_report(report_json(ray_report), report_json(local))
    assert_same_rows(read_dir(out / "q"), pq.read_table(tmp_path / "q.parquet"))


@pytest.mark.ray
def test_own_row_ids_survive_a_second_pass(ray_session, tmp_path, dirty_parquet):
    """Validating Ray's clean output keeps the original ids (its own _row_id column)."""
    validate(dirty_parquet, clean=tmp_path / "c", quarantine=tmp_path / "q", engine="ray")
    again = validate(tmp_path / "c", engine="ray", quarantine=tmp_path / "q2")
    local = validate(tmp_path / "c")
    assert_same_report(report_json(again), report_json(local))
    kept = read_dir(tmp_path / "c").column("_row_id").to_pylist()
    dropped = read_dir(tmp_path / "q").column("_row_id").to_pylist()
    assert kept == sorted(set(range(2000)) - set(dropped))  # the original ids, gaps and all
    assert set(read_dir(tmp_path / "q2").column("_row_id").to_pylist()) <= set(kept)


@pytest.mark.ray
def test_sample_bound_keeps_the_exact_sample(ray_session, tmp_path):
    """More rows than the sample: partial samples are cut at a bound, quantiles stay exact."""
    rng = np.random.default_rng(3)
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"x": rng.standard_t(3, 30_000)}), path, row_group_size=4_000)
    ray_report = validate(path, sample_size=5_000, engine="ray")
    local = validate(path, sample_size=5_000)
    assert_same_report(report_json(ray_report), report_json(local))


# -- outputs -----------------------------------------------------------------------------------
@pytest.mark.ray
def test_rerun_replaces_an_earlier_output_and_leaves_no_staging(ray_session, tmp_path):
    data = SAMPLE_DATA / "credit.parquet"
    for _ in range(2):
        report = validate(data, label="default", quarantine=tmp_path / "q", engine="ray")
    assert read_dir(tmp_path / "q").num_rows == report.rows_quarantined
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]


@pytest.mark.ray
def test_html_report_shows_the_same_example_rows(ray_session, tmp_path):
    from pipeline.report import write_html
    from pipeline.report.examples import examples_from_quarantine

    ray_report, local, out = run_both(tmp_path, SAMPLE_DATA / "sensors.parquet", label="failure")
    expected = examples_from_quarantine(tmp_path / "q.parquet")
    assert ray_report.examples
    # dumped, since the rows hold NaN, which != NaN; both engines choose the same rows
    assert json.dumps(ray_report.examples, default=str) == json.dumps(expected, default=str)
    assert json.dumps(local.examples, default=str) == json.dumps(expected, default=str)
    write_html(ray_report, tmp_path / "r.html")
    assert str(ray_report.examples[0]["row_id"]) in (tmp_path / "r.html").read_text()


@pytest.mark.ray
def test_empty_outputs_are_readable_datasets(ray_session, tmp_path):
    report = validate(
        SAMPLE_DATA / "clean.parquet", label="segment", quarantine=tmp_path / "q", engine="ray"
    )
    assert report.rows_quarantined == 0
    empty = read_dir(tmp_path / "q")
    assert empty.num_rows == 0 and REASONS in empty.column_names


@pytest.mark.ray
@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: (d / "notes.txt").write_text("x") and d, "is not an output directory"),
        (lambda d: d / "q.arrow", "writes a directory of parquet parts"),
        (lambda d: SAMPLE_DATA / "credit.parquet", "would overwrite the input"),
    ],
)
def test_output_directory_is_refused(ray_session, tmp_path, make, expected):
    with pytest.raises(UsageError, match=expected):
        validate(SAMPLE_DATA / "credit.parquet", quarantine=make(tmp_path), engine="ray")


@pytest.mark.ray
def test_error_in_a_task_is_the_schema_error(ray_session, tmp_path):
    schema = tmp_path / "bad.yaml"
    schema.write_text(
        "schema_type: dataframe\ncolumns:\n  age:\n    dtype: int64\n    str_matches: '^x$'\n"
    )
    with pytest.raises(SchemaFileError, match="check 'str_matches' on column 'age'") as info:
        validate(SAMPLE_DATA / "credit.parquet", schema, engine="ray")
    assert "\n" not in str(info.value)


@pytest.mark.ray
def test_cli_engine_ray_joins_a_running_cluster(ray_session, tmp_path):
    """--ray-address: the report on stdout, the verdict on stderr, the usual exit code."""
    address = ray_session.get_runtime_context().gcs_address
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", str(SAMPLE_DATA / "sensors.parquet"),
         "--engine", "ray", "--ray-address", address, "--format", "json",
         "--quarantine", str(tmp_path / "q")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["outputs"] == {"quarantine": str(tmp_path / "q")}
    assert read_dir(tmp_path / "q").num_rows == report["rows_quarantined"]
    assert out.stderr.strip().splitlines()[-1].startswith("FAILED: ")


# -- without the extra -------------------------------------------------------------------------
def test_engine_ray_without_the_extra_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UsageError) as info:
        validate(SAMPLE_DATA / "clean.parquet", engine="ray")
    assert str(info.value) == RAY_MISSING


def test_cli_engine_ray_without_the_extra_exits_2_with_the_install_line():
    code = "import sys; sys.modules['ray'] = None\nfrom pipeline.cli import main\nmain()\n"
    out = subprocess.run(
        [sys.executable, "-c", code, str(SAMPLE_DATA / "clean.parquet"), "--engine", "ray"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"error: {RAY_MISSING}"]


def test_ray_address_needs_engine_ray():
    with pytest.raises(UsageError, match="--ray-address ADDRESS needs --engine ray"):
        validate(SAMPLE_DATA / "clean.parquet", ray_address="auto")


# -- outlier judgement: sentinels, fences and the joint score ----------------------------------
def _judged_table() -> pa.Table:
    """2,000 rows with placeholders, gross outliers, a NaN and rows breaking a correlation."""
    rng = np.random.default_rng(21)
    n = 2000
    xy = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.99], [0.99, 1.0]], n)
    xy[[100, 700, 1300]] = [[2.5, -2.5], [-2.5, 2.5], [2.4, -2.3]]  # joint outliers
    age = rng.integers(18, 90, n)
    age[[3, 33, 333, 1333]] = -999  # sentinels
    income = rng.lognormal(10, 0.5, n)
    income[[50, 1950]] = np.median(income) * 1e4  # gross outliers
    height = rng.normal(1.7, 0.1, n)
    height[[7, 1007]] = 0.0  # a zero in a positive measurement
    height[11] = np.nan
    return pa.table({"x": xy[:, 0], "y": xy[:, 1], "age": age, "income": income, "h": height})


@pytest.mark.ray
@pytest.mark.parametrize(
    "quarantine_outliers, joint_score",
    [("gross", "combined"), ("joint", "combined"), ("gross", "distance")],
)
def test_ray_judges_outliers_as_local_does(
    ray_session, tmp_path, monkeypatch, quarantine_outliers, joint_score
):
    import pipeline.engines._ray as engine

    monkeypatch.setattr(engine, "TASK_ROWS", 300)  # one task per 300-row group
    data = tmp_path / "judged.parquet"
    pq.write_table(_judged_table(), data, row_group_size=300)
    kw: dict[str, Any] = {"quarantine_outliers": quarantine_outliers, "joint_score": joint_score}
    local = validate(
        data, quarantine=tmp_path / "q.parquet", scores=tmp_path / "s.parquet", **kw
    )  # fmt: skip
    out = tmp_path / "ray"
    out.mkdir()
    ray_report = validate(data, quarantine=out / "q", scores=out / "s", engine="ray", **kw)

    checks = {f.check for f in local.findings}
    assert {"sentinel", "outlier", "joint_outlier", "nan"} <= checks
    assert_same_report(report_json(ray_report), report_json(local))
    assert ray_report.fences == local.fences and ray_report.sentinels == local.sentinels
    assert ray_report.joint == local.joint
    q_local, q_ray = pq.read_table(tmp_path / "q.parquet"), read_dir(out / "q")
    assert q_ray.column("_row_id").to_pylist() == q_local.column("_row_id").to_pylist()
    assert q_ray.column(REASONS).to_pylist() == q_local.column(REASONS).to_pylist()
    joint_ids = {100, 700, 1300}
    assert (joint_ids <= set(q_local.column("_row_id").to_pylist())) == (
        quarantine_outliers == "joint"
    )
    # the scores: every row once, the same values bit for bit
    s_ray = read_dir(out / "s")
    s_ray = s_ray.take(pc.sort_indices(s_ray.column("_row_id")))
    s_local = pq.read_table(tmp_path / "s.parquet")
    assert s_ray.schema == s_local.schema
    assert s_ray.column("_row_id").to_pylist() == list(range(2000))
    assert_same_rows(s_ray, s_local)
