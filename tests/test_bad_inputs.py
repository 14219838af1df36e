"""A corpus of strange and broken inputs, each with its expected outcome.

Every case runs the real command (click's runner, in process, for speed): a
clear one-line error with exit 2 naming the file, or a correct report. No case
may print a traceback.
"""

from __future__ import annotations

import decimal
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import validate_command


def invoke(*args: str):
    result = CliRunner().invoke(validate_command, [*args, "--no-progress"], catch_exceptions=False)
    assert "Traceback" not in result.stderr
    return result


def _parquet(table: pa.Table) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "data.parquet"
        pq.write_table(table, path)
        return path

    return make


def _truncated(folder: Path) -> Path:
    full = folder / "full.parquet"
    pq.write_table(pa.table({"x": np.arange(10_000, dtype=np.float64)}), full)
    path = folder / "data.parquet"
    path.write_bytes(full.read_bytes()[:-3000])
    return path


def _truncated_middle(folder: Path) -> Path:
    # Footer intact, data pages cut: the error shows up only while reading.
    full = folder / "full.parquet"
    pq.write_table(
        pa.table({"x": np.arange(100_000, dtype=np.float64)}),
        full,
        compression="none",
        row_group_size=20_000,
    )
    data = bytearray(full.read_bytes())
    data[4:400_000] = b"\x00" * (400_000 - 4)
    path = folder / "data.parquet"
    path.write_bytes(bytes(data))
    return path


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def _dir_mixed_schemas(folder: Path) -> Path:
    (folder / "d").mkdir()
    pq.write_table(pa.table({"x": [1.0]}), folder / "d" / "a.parquet")
    pq.write_table(pa.table({"y": [1.0]}), folder / "d" / "b.parquet")
    return folder / "d"


def _dir_empty(folder: Path) -> Path:
    (folder / "d").mkdir()
    (folder / "d" / "README.txt").write_text("no data here")
    return folder / "d"


ERRORS = {
    "missing path": (lambda d: d / "nope.parquet", "no such file or directory"),
    "zero-byte file": (_file("z.parquet", b""), "empty file (0 bytes)"),
    "truncated parquet": (_truncated, "cannot read as parquet"),
    "corrupt data pages": (_truncated_middle, "cannot read as parquet"),
    "text named .parquet": (_file("t.parquet", b"a,b\n1,2\n"), "cannot read as parquet"),
    "unknown suffix": (_file("t.xyz", b"hello"), "unrecognised file type"),
    "directory with different schemas": (_dir_mixed_schemas, "files disagree on columns"),
    "directory without data files": (_dir_empty, "directory holds no data files"),
    "duplicate column names": (
        _parquet(pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["a", "a"])),
        "column 'a' appears more than once",
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_unusable_input_is_one_line_exit_2(tmp_path, case):
    make, expected = ERRORS[case]
    path = make(tmp_path)
    result = invoke(str(path))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert str(path) in lines[0]
    assert result.stdout == ""


def test_unreadable_file(tmp_path, monkeypatch):
    path = _parquet(pa.table({"x": [1.0]}))(tmp_path)
    # Tests run as root in CI, where chmod 000 does not stop reads: ask os.access instead.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if str(p) == str(path) else real_access(p, m)
    )
    result = invoke(str(path))
    assert result.exit_code == 2 and "permission denied" in result.stderr


def _report(path: Path, *extra: str) -> dict:
    result = invoke(str(path), "--format", "json", *extra)
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)


def _checks(report: dict) -> set[tuple[str, str | None]]:
    return {(f["check"], f["column"]) for f in report["findings"]}


def test_zero_rows_fail_the_gate(tmp_path):
    path = _parquet(pa.table({"x": pa.array([], pa.float64())}))(tmp_path)
    report = _report(path)
    assert report["rows"] == 0 and not report["passed"]
    assert _checks(report) == {("empty", None)}


def test_one_row(tmp_path):
    report = _report(_parquet(pa.table({"x": [1.5], "s": ["a"]}))(tmp_path))
    assert report["rows"] == 1
    assert _checks(report) == {("constant", "x"), ("constant", "s")}


def test_all_null_and_all_nan_columns(tmp_path):
    table = pa.table(
        {"n": pa.nulls(50, pa.float64()), "nan": np.full(50, np.nan), "ok": np.arange(50.0)}
    )
    report = _report(_parquet(table)(tmp_path))
    checks = _checks(report)
    assert ("constant", "n") in checks and ("constant", "nan") in checks
    nan = next(f for f in report["findings"] if f["check"] == "nan")
    assert nan["column"] == "nan" and nan["count"] == 50
    assert report["columns"]["n"]["null"] == 50
    assert report["rows_quarantined"] == 50


def test_int_with_nulls_decimal_timestamps_dictionary(tmp_path):
    n = 100
    table = pa.table(
        {
            "i": pa.array([None if k % 10 == 0 else k for k in range(n)], pa.int64()),
            "d": pa.array([decimal.Decimal(f"{k}.25") for k in range(n)], pa.decimal128(10, 2)),
            "t": pa.array(np.arange(n) * 1_000_000, pa.timestamp("us", tz="Europe/Berlin")),
            "c": pa.array(["a", "b"] * (n // 2)).dictionary_encode(),
        }
    )
    report = _report(_parquet(table)(tmp_path))
    cols = report["columns"]
    assert cols["i"]["null"] == 10 and cols["i"]["nan"] == 0
    assert cols["d"]["min"] == 0.25 and cols["d"]["max"] == 99.25
    assert "+01:00" in cols["t"]["min"]
    assert cols["c"]["distinct"] == 2
    assert report["passed"]


def test_long_strings_binary_and_nested_columns(tmp_path):
    n = 20
    table = pa.table(
        {
            "long": ["x" * 1_000_000 + str(k) for k in range(n)],
            "bin": pa.array([b"\xff\xfe\x00" + bytes([k]) for k in range(n)], pa.binary()),
            "lst": pa.array([[k, k + 1] for k in range(n)]),
            "st": pa.array([{"a": k} for k in range(n)]),
            "x": np.arange(n, dtype=np.float64),
        }
    )
    report = _report(_parquet(table)(tmp_path))
    assert report["passed"]
    assert report["columns"]["long"]["distinct"] == n
    assert any("bin, lst, st" in note for note in report["notes"])


def test_five_thousand_columns(tmp_path):
    rng = np.random.default_rng(0)
    table = pa.table({f"c{k}": rng.normal(size=50) for k in range(5000)})
    report = _report(_parquet(table)(tmp_path))
    assert len(report["columns"]) == 5000 and report["passed"]


def test_extra_columns_and_csv_with_mixed_types(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,x\n2,y\n3,\n")
    report = _report(csv)
    assert (
        report["rows"] == 3
        and report["columns"]["b"]["null"] + report["columns"]["b"]["count"] == 3
    )
