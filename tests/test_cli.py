"""The command line, run in a subprocess: exit codes and the stdout/stderr split."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, SAMPLE_DATA


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from pipeline.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'pandas', 'pandera', 'sklearn', 'numpy', 'pyarrow', 'ray')"
        " if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0
    assert "Usage: validate" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"  # no heavy module was imported


def test_json_report_on_faulty_sample(faults, tmp_path):
    quarantine, clean = tmp_path / "q.parquet", tmp_path / "c.parquet"
    out = run(
        str(SAMPLE_DATA / "credit.parquet"), "--label", "default", "--format", "json",
        "--quarantine", str(quarantine), "--clean", str(clean),
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["report_version"] == 1 and report["exit_code"] == 1 and not report["passed"]
    # joint outliers are the reported tier: counted, kept in the clean output
    got = sorted(
        (f["check"], f["column"], f["count"])
        for f in report["findings"]
        if f["check"] != "joint_outlier"
    )
    truth = faults["credit.parquet"]
    assert got == sorted((f["check"], f["column"], f["count"]) for f in truth["faults"])
    # the counts are the rows in the written files, and every row is in one of them
    quarantined = pq.read_table(quarantine).column("_row_id").to_pylist()
    kept = pq.read_table(clean).column("_row_id").to_pylist()
    assert report["rows_quarantined"] == len(quarantined)
    assert sorted(quarantined) == sorted({r for f in truth["faults"] for r in f.get("rows", [])})
    assert report["rows_clean"] == len(kept)
    assert sorted(quarantined + kept) == list(range(report["rows"])) == list(range(20_000))
    assert report["label"] == {"column": "default", "classes": {"0": 19_200, "1": 800}}
    for key in (
        "dtype",
        "count",
        "null",
        "nan",
        "posinf",
        "neginf",
        "min",
        "max",
        "mean",
        "std",
        "q25",
        "median",
        "q75",
        "top_value_fraction",
        "distinct",
    ):
        assert key in report["columns"]["income"]
    assert report["columns"]["income"]["nan"] == 37
    # stdout is the report alone; the verdict goes to stderr
    assert out.stderr.startswith("FAILED: ")


def test_clean_sample_passes():
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--label", "segment")
    assert out.returncode == 0, out.stderr
    assert "No findings." in out.stdout
    assert out.stderr.startswith("PASSED: ")


def test_exit_zero_and_quiet():
    out = run(str(SAMPLE_DATA / "credit.parquet"), "--exit-zero", "--quiet", "--format", "json")
    assert out.returncode == 0 and out.stderr == ""
    assert json.loads(out.stdout)["passed"] is False


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.parquet", "no such file or directory"),
        (
            lambda d: (d / "text.parquet").write_text("not parquet") and d / "text.parquet",
            "cannot read as parquet",
        ),
        (lambda d: (d / "empty.parquet").write_bytes(b"") or d / "empty.parquet", "empty file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, expected):
    path = make(tmp_path)
    out = run(str(path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert expected in lines[0] and str(path) in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_bad_option_value_is_a_usage_error():
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--max-bad-rows", "7")
    assert out.returncode == 2 and "between 0 and 1" in out.stderr


def test_environment_sets_defaults():
    out = run(
        str(SAMPLE_DATA / "clean.parquet"), "--format", "json", env={"BATCHGUARD_LABEL": "segment"}
    )
    assert json.loads(out.stdout)["label"]["column"] == "segment"


def test_outputs_and_profile(tmp_path):
    q, c, p, o = (tmp_path / n for n in ("q.parquet", "c.arrow", "p.json", "r.json"))
    out = run(
        str(SAMPLE_DATA / "sensors.parquet"),
        "--quarantine",
        str(q),
        "--clean",
        str(c),
        "--profile-out",
        str(p),
        "--format",
        "json",
        "-o",
        str(o),
    )
    assert out.returncode == 1 and out.stdout == ""
    report = json.loads(o.read_text())
    assert report["outputs"] == {"quarantine": str(q), "clean": str(c), "profile": str(p)}
    assert json.loads(p.read_text())["rows"] == 50_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_may_not_overwrite_input(tmp_path):
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--clean", str(SAMPLE_DATA / "clean.parquet"))
    assert out.returncode == 2 and "would overwrite the input" in out.stderr


def test_schema_file_sets_label_and_is_named_in_the_report():
    data = str(SAMPLE_DATA / "clean.parquet")
    out = run(data, "--schema", "schemas/clean.yaml", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["schema"] == "schemas/clean.yaml" and report["label"]["column"] == "segment"
    assert "--infer-schema" in run("--help").stdout


def test_output_to_dev_null_keeps_the_device():
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--format", "json", "-o", os.devnull)
    assert out.returncode == 0
    assert not os.path.isfile(os.devnull)


def invoke(*args: str):
    """The command run in this process (click's runner): quicker where exit codes suffice."""
    from click.testing import CliRunner

    from pipeline.cli import validate_command

    result = CliRunner().invoke(validate_command, [*args, "--no-progress"], catch_exceptions=False)
    assert "Traceback" not in result.stderr
    return result


def _judged(tmp_path):
    """x and y with correlation 0.99 and three rows breaking it; age with three -999s."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    xy = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.99], [0.99, 1.0]], 2000)
    xy[[100, 700, 1300]] = [[2.5, -2.5], [-2.5, 2.5], [2.4, -2.3]]
    age = rng.integers(18, 90, 2000)
    age[[5, 55, 555]] = -999
    path = tmp_path / "judged.parquet"
    pq.write_table(pa.table({"x": xy[:, 0], "y": xy[:, 1], "age": age}), path)
    return path


def test_scores_and_quarantine_outliers_joint(tmp_path):
    data, q, s = _judged(tmp_path), tmp_path / "q.parquet", tmp_path / "s.parquet"
    args = [str(data), "--quarantine", str(q), "--scores", str(s), "--format", "json"]
    out = invoke(*args, "--quarantine-outliers", "joint")
    assert out.exit_code == 1, out.stderr  # the placeholders are errors
    report = json.loads(out.stdout)
    assert report["outputs"] == {"quarantine": str(q), "scores": str(s)}
    assert {f["check"] for f in report["findings"]} == {"sentinel", "joint_outlier"}
    quarantined = pq.read_table(q).column("_row_id").to_pylist()
    assert quarantined == [5, 55, 100, 555, 700, 1300]
    assert report["rows_quarantined"] == 6 and report["rows_clean"] == 1994
    scores = pq.read_table(s)
    assert scores.column_names == ["_row_id", "score", "column"]
    assert scores.column("_row_id").to_pylist() == list(range(2000))
    # by default the joint outliers are reported and kept
    out = invoke(*args)
    assert out.exit_code == 1, out.stderr
    assert pq.read_table(q).column("_row_id").to_pylist() == [5, 55, 555]
    assert json.loads(out.stdout)["rows_quarantined"] == 3


def test_joint_score(tmp_path):
    data, s = _judged(tmp_path), tmp_path / "s.parquet"
    args = [str(data), "--scores", str(s), "--format", "json"]
    default = invoke(*args)
    scores = pq.read_table(s).column("score").to_pylist()
    combined = invoke(*args, "--joint-score", "combined")
    assert pq.read_table(s).column("score").to_pylist() == scores  # the default
    distance = invoke(*args, "--joint-score", "distance")
    assert pq.read_table(s).column("score").to_pylist() != scores
    assert (default.exit_code, combined.exit_code, distance.exit_code) == (1, 1, 1)  # placeholders
    bad = invoke(*args, "--joint-score", "iforest")
    assert bad.exit_code == 2 and "'iforest' is not one of 'combined', 'distance'" in bad.stderr


def test_outlier_method_auto_is_the_default(tmp_path):
    import numpy as np
    import pyarrow as pa

    # A healthy heavy right tail: iqr's fences cut it, auto's (on a log scale) do not.
    data = tmp_path / "incomes.parquet"
    pq.write_table(pa.table({"income": np.random.default_rng(1).lognormal(10, 1.2, 2000)}), data)

    def findings(*args: str) -> list:
        out = invoke(str(data), "--format", "json", *args)
        assert out.exit_code == 0, out.stderr
        return [(f["check"], f["column"]) for f in json.loads(out.stdout)["findings"]]

    assert findings("--outlier-method", "auto") == findings() == []
    assert findings("--outlier-method", "iqr") == [("outlier", "income")]


@pytest.mark.parametrize("name", ["scores.csv", "scores.json", "scores"])
def test_scores_to_an_unsupported_file_name_is_one_line_and_exit_2(tmp_path, name):
    out = run(str(SAMPLE_DATA / "clean.parquet"), "--scores", str(tmp_path / name))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "--scores" in lines[0] and ".parquet" in lines[0] and name in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not (tmp_path / name).exists()
