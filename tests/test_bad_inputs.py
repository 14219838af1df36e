"""A corpus of strange and broken inputs, each with its expected outcome.

Every case runs the real command (click's runner, in process, for speed): a
clear one-line error with exit 2 naming the file, or a correct report. No case
may print a traceback.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
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
    "duplicate string_view column names": (
        _parquet(
            pa.Table.from_arrays(
                [pa.array(["x"], pa.string_view()), pa.array(["y"], pa.string_view())],
                names=["s", "s"],
            )
        ),
        "column 's' appears more than once",
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


@pytest.mark.slow  # 5,000 column profiles and a report naming each
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


# -- every column type a new user may bring ------------------------------------------------------
N = 40
DAY = dt.date(2024, 1, 1)


def _nulls(values: list, typ: pa.DataType) -> pa.Array:
    """``values`` with every tenth one null."""
    return pa.array([None if k % 10 == 3 else v for k, v in enumerate(values)], typ)


# name -> (column, expected kind, expected min and max as the JSON report shows them)
DTYPES: dict[str, tuple[Callable[[], pa.Array], str, tuple]] = {
    "date32": (
        lambda: _nulls([DAY + dt.timedelta(days=k) for k in range(N)], pa.date32()),
        "temporal", ("2024-01-01", "2024-02-09"),
    ),
    "date64": (
        lambda: _nulls([DAY + dt.timedelta(days=k) for k in range(N)], pa.date64()),
        "temporal", ("2024-01-01", "2024-02-09"),
    ),
    "time32": (
        lambda: _nulls([dt.time(k % 24, k) for k in range(N)], pa.time32("s")),
        "temporal", ("00:00:00", "22:22:00"),  # 23:23 is a null
    ),
    "time64": (
        lambda: _nulls([dt.time(k % 24, k, 0, 5) for k in range(N)], pa.time64("us")),
        "temporal", ("00:00:00.000005", "22:22:00.000005"),
    ),
    "duration": (
        lambda: _nulls([dt.timedelta(seconds=k - 5) for k in range(N)], pa.duration("s")),
        "temporal", ("-1 day, 23:59:55", "0:00:34"),
    ),
    "timestamp_utc": (
        lambda: _nulls(list(range(0, N * 10**9, 10**9)), pa.timestamp("ns", tz="UTC")),
        "temporal", ("1970-01-01 00:00:00+00:00", "1970-01-01 00:00:39+00:00"),
    ),
    # Nanoseconds that datetime cannot hold (the report's text is Arrow's own) used to exit 3.
    "timestamp_ns_fraction": (
        lambda: _nulls([k * 10**9 + 123_456_789 for k in range(N)], pa.timestamp("ns", tz="UTC")),
        "temporal", ("1970-01-01 00:00:00.123456789Z", "1970-01-01 00:00:39.123456789Z"),
    ),
    "time64_ns": (
        lambda: _nulls([k * 10**9 + 1 for k in range(N)], pa.time64("ns")),
        "temporal", ("00:00:00.000000001", "00:00:39.000000001"),
    ),
    "duration_ns": (
        lambda: _nulls([k * 10**9 + 1 for k in range(N)], pa.duration("ns")),
        "temporal", ("1 ns", "39000000001 ns"),
    ),
    "date32_dictionary": (
        lambda: _nulls([DAY + dt.timedelta(days=k % 4) for k in range(N)], pa.date32())
        .dictionary_encode(),
        "temporal", ("2024-01-01", "2024-01-04"),
    ),
    "decimal128": (
        lambda: _nulls([decimal.Decimal(f"{k}.5") for k in range(N)], pa.decimal128(8, 1)),
        "numeric", (0.5, 39.5),
    ),
    "float16": (
        lambda: _nulls(np.arange(N, dtype=np.float16).tolist(), pa.float16()),
        "numeric", (0.0, 39.0),
    ),
    "large_string": (
        lambda: _nulls([f"s{k % 5}" for k in range(N)], pa.large_string()),
        "categorical", (None, None),
    ),
    "string_view": (
        lambda: _nulls([f"s{k % 5}" for k in range(N)], pa.string_view()),
        "categorical", (None, None),
    ),
    "dictionary_string": (
        lambda: _nulls([f"s{k % 5}" for k in range(N)], pa.string()).dictionary_encode(),
        "categorical", (None, None),
    ),
    "interval": (
        lambda: _nulls([pa.MonthDayNano([k, 1, 0]) for k in range(N)], pa.month_day_nano_interval()),  # noqa: E501
        "other", (None, None),
    ),
    "null": (lambda: pa.nulls(N), "other", (None, None)),
}  # fmt: skip

# Parquet has no interval type; its files give date64 back as date32, and time32[s] as [ms].
_NOT_IN_PARQUET = {"interval"}


def _dtype_file(folder: Path, name: str, suffix: str) -> Path:
    column = DTYPES[name][0]()
    table = pa.table({"x": np.linspace(0.0, 1.0, N), name: column})
    path = folder / f"data{suffix}"
    (pq.write_table if suffix == ".parquet" else feather.write_feather)(table, path)
    return path


_DTYPE_CASES = [
    (name, suffix)
    for name in DTYPES
    for suffix in (".arrow", ".parquet")
    if not (suffix == ".parquet" and name in _NOT_IN_PARQUET)
]


@pytest.mark.parametrize(("name", "suffix"), _DTYPE_CASES)
def test_every_column_type_gives_a_report_not_exit_3(tmp_path, name, suffix):
    """date32, time32, dictionaries of dates, intervals and string_view used to exit 3."""
    _, kind, (low, high) = DTYPES[name]
    result = invoke(str(_dtype_file(tmp_path, name, suffix)), "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    col = report["columns"][name]
    assert col["kind"] == kind
    nulls = N if name == "null" else N // 10
    assert (col["count"], col["null"]) == (N - nulls, nulls)
    assert (col["min"], col["max"]) == (low, high)
    counted_only = any(name in note for note in report["notes"])
    assert counted_only == (kind == "other")


@pytest.mark.parametrize("name", sorted(n for n, case in DTYPES.items() if case[1] == "temporal"))
def test_temporal_columns_through_the_api(tmp_path, name):
    from pipeline import validate

    report = validate(_dtype_file(tmp_path, name, ".arrow"))
    assert report.passed and report.rows == N and not report.findings
    st = report.profile.stats(name)
    assert (st.kind, st.null, st.count) == ("temporal", N // 10, N - N // 10)


def test_a_date_column_through_every_output(tmp_path):
    """Reports, outputs, an inferred schema and the loader, with date and time columns present."""
    from pipeline import make_loader
    from pipeline.errors import UsageError

    rng = np.random.default_rng(1)
    x = rng.normal(size=N)
    x[7] = np.nan
    table = pa.table(
        {
            "x": x,
            "y": np.arange(N) % 2,
            "day": DTYPES["date32"][0](),
            "at": DTYPES["time32"][0](),
            "same_day": pa.array([DAY] * N, pa.date32()),
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    out = {k: tmp_path / f"out.{k}" for k in ("html", "xml", "json", "q", "c", "yaml")}
    result = invoke(
        str(path), "--label", "y", "--format", "junit", "-o", str(out["xml"]),
        "--report", str(out["html"]), "--profile-out", str(out["json"]),
        "--quarantine", str(out["q"]) + ".parquet", "--clean", str(out["c"]) + ".parquet",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr  # the NaN row and the constant date column
    report = _report(path, "--label", "y")
    assert _checks(report) == {("nan", "x"), ("constant", "same_day")}
    assert "2024-02-09" in out["html"].read_text()
    assert 'name="same_day.constant"' in out["xml"].read_text()
    assert pq.read_table(str(out["q"]) + ".parquet").num_rows == 1
    assert pq.read_table(str(out["c"]) + ".parquet").column("day").type == pa.date32()
    assert json.loads(out["json"].read_text())["columns"]["day"]["max"] == "2024-02-09"

    inferred = invoke(str(path), "--label", "y", "--infer-schema", str(out["yaml"]))
    assert inferred.exit_code == 0, inferred.stderr
    again = invoke(str(path), "--schema", str(out["yaml"]), "--format", "json")
    assert again.exit_code == 1 and "Traceback" not in again.stderr  # the same NaN row

    clean = tmp_path / "clean.parquet"
    pq.write_table(table.drop_columns(["same_day"]).filter(pa.array(~np.isnan(x))), clean)
    loader = make_loader(clean, label="y", batch_size=8)
    assert loader.batchguard.features == ["x"]  # dates and times are not features
    assert next(iter(loader)).features.shape == (8, 1)
    with pytest.raises(UsageError, match="day"):
        make_loader(clean, label="y", features=["x", "day"])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # a transport failure whose port looks like an HTTP status
        ("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 7, Failed to "
         "connect to 127.0.0.1 port 54013", "did not answer"),
        ("AWS Error ACCESS_DENIED during HeadObject: HTTP 403 Forbidden", "access denied"),
        ("Path does not exist 'bucket/key' (HTTP 404)", "no such object"),
        ("read 4013 bytes, then a checksum mismatch", None),  # not a store failure
    ],
)  # fmt: skip
def test_store_errors_are_classified_by_what_they_say(text, says):
    from pipeline._stores import classify

    got = classify("s3://bucket/key", OSError(text))
    assert (got is None) if says is None else (says in str(got))


# -- outputs that would land on another file, and odd folders, ids and labels ----------------


def _one_nan(folder: Path, name: str = "in.parquet") -> Path:
    path = folder / name
    pq.write_table(pa.table({"x": [1.0, 2.0, float("nan")]}), path)
    return path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-o", "{input}"], "-o {input} would overwrite the input"),
        (["--clean", "{d}/c.parquet", "-o", "{d}/c.parquet"], "-o and --clean both name"),
        (["--report", "{d}/r.html", "-o", "{d}/r.html"], "-o and --report both name"),
        (["--profile-out", "{d}/p.json", "--baseline-out", "{d}/p.json"],
         "--profile-out and --baseline-out both name"),
        (["--schema", "{d}/s.yaml", "-o", "{d}/s.yaml"], "-o {d}/s.yaml would overwrite --schema"),
    ],
)  # fmt: skip
def test_an_output_never_lands_on_the_input_or_another_output(tmp_path, args, says):
    """``-o in.parquet`` used to replace the input with the text report (exit 1)."""
    path = _one_nan(tmp_path)
    before = path.read_bytes()
    (tmp_path / "s.yaml").write_text("columns:\n  x:\n    dtype: float64\n")
    fill = {"input": str(path), "d": str(tmp_path)}
    result = invoke(str(path), *[a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says.format(**fill)}")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "s.yaml"]


def test_unwritable_folders_are_refused_before_reading(tmp_path, monkeypatch):
    path = _one_nan(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    # Tests run as root, where a read-only folder is still writable: ask os.access instead.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if str(p) == str(locked) else real_access(p, m)
    )
    for option, name in [("--clean", "c.parquet"), ("--report", "r.html"), ("-o", "r.txt")]:
        result = invoke(str(path), "--quarantine", str(tmp_path / "q.parquet"),
                        option, str(locked / name))  # fmt: skip
        assert result.exit_code == 2, result.output
        assert f"folder {locked} is not writable" in result.stderr
        assert not (tmp_path / "q.parquet").exists()


def test_a_failed_write_is_one_line_exit_2(tmp_path, monkeypatch):
    """A full disk or a read-only folder at write time is the machine's, not an internal error."""
    import errno

    import pipeline.report

    path = _one_nan(tmp_path)
    for named, where in [(str(tmp_path / "r.html"), f"{tmp_path / 'r.html'}: "),
                         (None, "writing an output: ")]:  # fmt: skip
        # A write to a full disk names no file; an open of one does.
        def full(*args: object, named: str | None = named, **kw: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", named)

        monkeypatch.setattr(pipeline.report, "write_html", full)
        result = invoke(str(path), "--report", str(tmp_path / "r.html"))
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [
            f"error: {where}No space left on device; check the path and the disk"
        ]


def test_a_step_summary_that_cannot_be_written_does_not_decide_the_gate(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing" / "summary.md"))
    result = invoke(str(_one_nan(tmp_path)), "--format", "github")
    assert result.exit_code == 1  # the data's verdict (a NaN row), not exit 3
    assert "warning: cannot append to GITHUB_STEP_SUMMARY" in result.stderr


def test_a_type_parquet_cannot_hold_leaves_no_temporary_file(tmp_path):
    """An interval column with ``--clean x.parquet`` used to exit 3 and leave a .tmp file."""
    path = tmp_path / "in.arrow"
    feather.write_feather(pa.table({"x": [1.0, 2.0], "iv": DTYPES["interval"][0]()[:2]}), path)
    result = invoke(str(path), "--quarantine", str(tmp_path / "q.arrow"),
                    "--clean", str(tmp_path / "c.parquet"))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "c.parquet" in result.stderr and "write an .arrow file instead" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.arrow"]
    again = invoke(str(path), "--clean", str(tmp_path / "c.arrow"))
    assert again.exit_code == 0 and pa.ipc.open_file(tmp_path / "c.arrow").read_all().num_rows == 2


def test_hive_keys_keep_their_values_whatever_their_order(tmp_path):
    """``year=/month=/day=`` folders used to write day's values into year's column."""
    root = tmp_path / "d"
    for day in (1, 2):
        folder = root / "year=2024" / "month=1" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"x": [1.0, float("nan")]}), folder / "part.parquet")
    result = invoke(str(root), "--quarantine", str(tmp_path / "q.parquet"),
                    "--clean", str(tmp_path / "c.parquet"))  # fmt: skip
    assert result.exit_code == 1, result.output
    rows = [pq.read_table(tmp_path / f"{p}.parquet").to_pylist() for p in "qc"]
    got = sorted((r["_row_id"], r["year"], r["month"], r["day"]) for part in rows for r in part)
    assert got == [(0, 2024, 1, 1), (1, 2024, 1, 1), (2, 2024, 1, 2), (3, 2024, 1, 2)]


def test_hive_values_are_decoded_as_writers_encode_them(tmp_path):
    from pipeline.source import Source

    root = tmp_path / "d"
    for year, key in (("2020", "a%20b"), ("__HIVE_DEFAULT_PARTITION__", "c%2Fd")):
        folder = root / f"year={year}" / f"k={key}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"x": [1.0]}), folder / "part.parquet")
    table = pa.Table.from_batches(list(Source(root).iter_batches()))
    assert table.schema.field("year").type == pa.int64()
    assert table.column("year").to_pylist() == [2020, None]
    assert table.column("k").to_pylist() == ["a b", "c/d"]


def test_files_at_different_partition_depths_are_refused(tmp_path):
    root = tmp_path / "d"
    (root / "a=1").mkdir(parents=True)
    (root / "a=2" / "b=3").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1.0]}), root / "a=1" / "p.parquet")
    pq.write_table(pa.table({"x": [2.0]}), root / "a=2" / "b=3" / "p.parquet")
    result = invoke(str(root))
    assert result.exit_code == 2
    assert "files sit in different partition folders" in result.stderr


def test_files_differing_only_in_nullability_are_one_dataset(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    strict = pa.schema([pa.field("x", pa.float64(), nullable=False)])
    pq.write_table(pa.table({"x": [1.0, 2.0]}, schema=strict), root / "a.parquet")
    pq.write_table(pa.table({"x": [None, 3.0]}), root / "b.parquet")
    result = invoke(str(root), "--clean", str(tmp_path / "c.parquet"))
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "c.parquet").column("x").to_pylist() == [1.0, 2.0, None, 3.0]


def test_a_quarantine_output_validated_again_with_quarantine(tmp_path):
    first = invoke(str(_one_nan(tmp_path)), "--quarantine", str(tmp_path / "q.parquet"))
    assert first.exit_code == 1
    again = invoke(str(tmp_path / "q.parquet"), "--quarantine", str(tmp_path / "q2.parquet"))
    assert again.exit_code == 2
    assert "already has a column '_reasons' (a quarantine output?)" in again.stderr
    assert invoke(str(tmp_path / "q.parquet")).exit_code == 1  # without --quarantine it runs


@pytest.mark.parametrize(
    ("ids", "says"),
    [
        (pa.array([0, 1, None, 3], pa.int64()), "column '_row_id' is null in row 2"),
        (pa.array([0, 1, 2**63, 3], pa.uint64()), "column '_row_id' holds ids beyond int64"),
    ],
)
def test_own_row_ids_that_cannot_name_a_row_are_refused(tmp_path, ids, says):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0, 4.0], "_row_id": ids}), path)
    result = invoke(str(path), "--clean", str(tmp_path / "c.parquet"))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}: {says}")
    assert "RuntimeWarning" not in result.stderr


def test_rows_without_a_label_are_quarantined(tmp_path):
    path = tmp_path / "in.parquet"
    labels = [None if k % 10 == 0 else k % 3 for k in range(100)]
    pq.write_table(pa.table({"x": np.linspace(0, 1, 100), "y": labels}), path)
    report = _report(path, "--label", "y", "--quarantine", str(tmp_path / "q.parquet"))
    assert ("null", "y") in _checks(report) and report["rows_quarantined"] == 10
    assert sum(report["label"]["classes"].values()) == 90
    quarantined = pq.read_table(tmp_path / "q.parquet").column("_row_id").to_pylist()
    assert quarantined == list(range(0, 100, 10))


def test_a_label_with_too_many_values_to_count_says_so(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": np.linspace(0, 1, 6000), "y": np.arange(6000)}), path)
    report = _report(path, "--label", "y")
    assert any("label 'y' holds more than 4,096 distinct values" in n for n in report["notes"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--batch-size", "99999999999999999999"], "batch_size should be below 2**63"),
        (["--schema", "{d}/bad.yaml"], "column '[a-' has regex: true but is not a regular"),
        (["--schema", os.devnull], f"{os.devnull}: is not a regular file"),  # was "no such file"
    ],
)
def test_more_bad_options_are_one_line_exit_2(tmp_path, args, says):
    (tmp_path / "bad.yaml").write_text('columns:\n  "[a-":\n    dtype: float64\n    regex: true\n')
    result = invoke(str(_one_nan(tmp_path)), *[a.format(d=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr


def test_options_named_apart_from_their_parameter_read_the_environment(tmp_path, monkeypatch):
    """BATCHGUARD_FORMAT and BATCHGUARD_REPORT, as the README promises for every option."""
    monkeypatch.setenv("BATCHGUARD_FORMAT", "json")
    monkeypatch.setenv("BATCHGUARD_REPORT", str(tmp_path / "r.html"))
    result = invoke(str(_one_nan(tmp_path)))
    assert json.loads(result.stdout)["rows"] == 3
    assert (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "args", [["--max-bad-rows", "1.5"], ["--bogus"], ["--format", "xml"], ["--batch-size", "0"]]
)
def test_option_errors_are_one_line(tmp_path, args):
    """click's own errors were four lines (usage, a hint, the error)."""
    result = invoke(str(_one_nan(tmp_path)), *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "validate --help" in lines[0]


def test_special_files_and_a_rolling_baseline_stay_allowed(tmp_path):
    path = _one_nan(tmp_path)
    assert invoke(str(path), "-o", os.devnull).exit_code == 1
    baseline = tmp_path / "last.json"
    assert invoke(str(path), "--profile-out", str(baseline)).exit_code == 1
    # compare with the last run's profile, then keep this run's in its place
    again = invoke(str(path), "--baseline", str(baseline), "--profile-out", str(baseline))
    assert again.exit_code == 1, again.stderr
