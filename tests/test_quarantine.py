"""Quarantine and clean outputs: nothing lost, nothing doubled, reasons right, writes atomic."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import validate
from pipeline.errors import UsageError
from pipeline.quarantine import (
    GUARD_SCHEMA,
    REASONS,
    OutputSplitter,
    QuarantineParts,
    reason_records,
)
from pipeline.source import ROW_ID
from tests.conftest import ROOT, SAMPLE_DATA


def read(path: str | os.PathLike[str]) -> pa.Table:
    path = Path(path)
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return feather.read_table(path)


def reasons_by_row(quarantine: pa.Table) -> dict[int, set[tuple[str, str]]]:
    ids = quarantine.column("_row_id").to_pylist()
    reasons = quarantine.column(REASONS).to_pylist()
    return {i: {(r["check"], r["column"]) for r in rs} for i, rs in zip(ids, reasons, strict=True)}


# -- the invariant on generated tables ---------------------------------------------------------
@st.composite
def dirty_tables(draw: st.DrawFn) -> pa.Table:
    """Tables of 1-300 rows with NaN, +/-inf, outliers and nulls injected at random rows."""
    n = draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    columns: dict[str, pa.Array] = {}
    for j in range(draw(st.integers(1, 3))):
        dtype = draw(st.sampled_from([np.float64, np.float32]))
        x = rng.normal(50, 10, n).astype(dtype)
        for value in (np.nan, np.inf, -np.inf, 1e7, -1e7):
            k = draw(st.integers(0, max(1, n // 10)))
            x[rng.choice(n, min(k, n), replace=False)] = value
        nulls = rng.random(n) < draw(st.sampled_from([0.0, 0.05]))
        columns[f"f{j}"] = pa.array(x, mask=nulls)
    ints = rng.integers(0, 100, n)
    ints[rng.choice(n, min(n, draw(st.integers(0, 2))), replace=False)] = 10**9
    columns["i"] = pa.array(ints)
    columns["s"] = pa.array(rng.choice(["a", "b", "<c>"], n))
    return pa.table(columns)


def expected_reasons(table: pa.Table, report) -> dict[int, set[tuple[str, str]]]:
    """Every row's (check, column) pairs, computed here from the data, the fences and sentinels.

    The fences and sentinels are those the run decided (``report.fences``,
    ``report.sentinels``); a sentinel value is a ``sentinel``, not also an ``outlier``.
    """
    fences = report.fences
    out: dict[int, set[tuple[str, str]]] = {}
    for name in table.column_names:
        arr = table.column(name).combine_chunks()
        if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
            continue
        valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        x = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        masks = {}
        if pa.types.is_floating(arr.type):
            masks["nan"] = np.isnan(x) & valid
            masks["inf"] = np.isinf(x) & valid
        codes = [s.value for s in report.sentinels.get(name, [])]
        masks["sentinel"] = valid & np.isin(x, codes)
        if name in fences:
            f = fences[name]
            with np.errstate(invalid="ignore"):
                beyond = (x < f.low) | (x > f.high)
            masks["outlier"] = valid & np.isfinite(x) & beyond & ~masks["sentinel"]
        for check, mask in masks.items():
            for row in np.flatnonzero(mask):
                out.setdefault(int(row), set()).add((check, name))
    return out


@pytest.mark.slow  # 60 examples, each writing both outputs
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    table=dirty_tables(),
    batch_size=st.integers(1, 64),
    row_group_size=st.integers(1, 128),
    clean_suffix=st.sampled_from([".parquet", ".arrow", ".feather"]),
)
def test_rows_are_conserved_and_reasons_are_right(table, batch_size, row_group_size, clean_suffix):
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.parquet"
        pq.write_table(table, data, row_group_size=row_group_size)
        q, c = Path(tmp) / "q.parquet", Path(tmp) / f"c{clean_suffix}"
        report = validate(data, quarantine=q, clean=c, batch_size=batch_size)
        quarantined, clean = read(q), read(c)
        leftovers = [p.name for p in Path(tmp).iterdir() if p.name.startswith(".")]

    n = table.num_rows
    assert leftovers == []
    # rows_in == rows_clean + rows_quarantined, in the files and in the report
    assert quarantined.num_rows + clean.num_rows == n == report.rows
    assert quarantined.num_rows == report.rows_quarantined
    assert clean.num_rows == report.rows_clean
    q_ids = quarantined.column("_row_id").to_pylist()
    c_ids = clean.column("_row_id").to_pylist()
    assert not set(q_ids) & set(c_ids)
    assert sorted(q_ids + c_ids) == list(range(n))
    assert c_ids == sorted(c_ids) and q_ids == sorted(q_ids)  # input order
    # the clean rows hold no NaN or inf in any checked (floating) column
    for name in table.column_names:
        if pa.types.is_floating(table.schema.field(name).type):
            x = clean.column(name).fill_null(0).to_numpy()
            assert np.isfinite(x).all(), name
    # each row keeps its values and original columns
    assert clean.select(table.column_names).equals(table.take(np.array(c_ids, np.int64)))
    assert quarantined.column_names == [*table.column_names, "_row_id", REASONS]
    for name in table.column_names:
        got = quarantined.column(name).to_pandas().to_numpy()
        want = table.column(name).take(np.array(q_ids, np.int64)).to_pandas().to_numpy()
        np.testing.assert_array_equal(got, want)
    # every quarantined row names exactly the checks it fails; clean rows fail none
    expected = expected_reasons(table, report)
    got_reasons = reasons_by_row(quarantined)
    assert all(got_reasons.values())
    assert got_reasons == expected


# -- the shipped sample files ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["credit", "sensors", "clean"])
def test_sample_data_quarantine_holds_the_documented_faults(name, faults, tmp_path):
    truth = faults[f"{name}.parquet"]
    q, c = tmp_path / "q.parquet", tmp_path / "c.arrow"
    report = validate(
        SAMPLE_DATA / f"{name}.parquet", label=truth["label"], quarantine=q, clean=c,
        batch_size=4096,
    )  # fmt: skip
    quarantined, clean = read(q), read(c)
    assert quarantined.num_rows + clean.num_rows == truth["rows"] == report.rows
    reasons = reasons_by_row(quarantined)
    documented_rows: set[int] = set()
    for fault in truth["faults"]:
        if "rows" not in fault:
            continue
        documented_rows |= set(fault["rows"])
        key = (fault["check"], fault["column"])
        assert {row for row, rs in reasons.items() if key in rs} == set(fault["rows"]), key
    # the quarantine holds the documented rows and nothing else
    assert set(reasons) == documented_rows
    assert set(clean.column("_row_id").to_pylist()).isdisjoint(documented_rows)
    # values in _reasons: what was seen and the bound it broke
    for row in quarantined.slice(0, 50).to_pylist():
        for r in row[REASONS]:
            assert r["value"] is not None and r["threshold"]
            if r["check"] == "outlier":
                fence = report.fences[r["column"]]
                assert r["score"] > fence.threshold and r["threshold"] == fence.describe()


# -- safety of the writes ----------------------------------------------------------------------
def test_input_is_never_overwritten(tmp_path, dirty_parquet):
    before = hashlib.sha256(dirty_parquet.read_bytes()).hexdigest()
    for kind in ("clean", "quarantine"):
        with pytest.raises(UsageError, match="would overwrite the input"):
            validate(dirty_parquet, **{kind: dirty_parquet})
    assert hashlib.sha256(dirty_parquet.read_bytes()).hexdigest() == before


def test_failed_run_leaves_no_output(tmp_path, dirty_parquet, monkeypatch):
    q, c = tmp_path / "q.parquet", tmp_path / "c.parquet"
    calls = {"n": 0}
    write = OutputSplitter.write

    def failing_write(self, batch, failures, scores=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return write(self, batch, failures, scores)

    monkeypatch.setattr(OutputSplitter, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        validate(dirty_parquet, quarantine=q, clean=c, batch_size=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirty.parquet"]


def test_an_existing_output_is_replaced_only_when_complete(tmp_path, dirty_parquet, monkeypatch):
    c = tmp_path / "c.parquet"
    c.write_bytes(b"previous")
    monkeypatch.setattr(OutputSplitter, "close", lambda self: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        validate(dirty_parquet, clean=c)
    assert c.read_bytes() == b"previous"
    monkeypatch.undo()
    validate(dirty_parquet, clean=c)
    assert pq.read_table(c).num_rows == 2000 - 6


@pytest.fixture(scope="module")
def big_parquet(tmp_path_factory) -> tuple[Path, int]:
    """A file that takes about a second to split: 500k rows, a NaN in one row of 250."""
    rng = np.random.default_rng(0)
    n = 500_000
    cols = {f"x{i}": rng.normal(size=n) for i in range(6)}
    cols["x0"][::250] = np.nan
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=50_000)
    return path, n


def _start(data: Path, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", str(data), "--quarantine", str(folder / "q.parquet"),
         "--clean", str(folder / "c.parquet"), "--no-progress", "--quiet", "--batch-size", "20000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_for_tmp(proc: subprocess.Popen, folder: Path, timeout: float = 30.0) -> float:
    """Wait until the outputs' temporary files exist (the row pass began); the time then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.endswith(".tmp") for p in folder.iterdir()):
            return time.monotonic()
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    raise AssertionError("validate never started writing its outputs")


@pytest.mark.slow
def test_sigkill_while_writing_leaves_no_complete_looking_file(big_parquet, tmp_path):
    data, n = big_parquet
    # A full run first: how long the writing takes, and what complete outputs hold.
    ref = tmp_path / "ref"
    ref.mkdir()
    proc = _start(data, ref)
    began = _wait_for_tmp(proc, ref)
    assert proc.wait(timeout=60) == 1
    writing = time.monotonic() - began
    rows = {"q.parquet": n // 250, "c.parquet": n - n // 250}
    assert {p.name: pq.read_metadata(p).num_rows for p in ref.iterdir()} == rows

    rng = random.Random(1234)
    fractions = [0.05, 0.5, 0.95, rng.uniform(0.2, 0.8)]
    interrupted = 0
    for i, fraction in enumerate(fractions):
        folder = tmp_path / f"kill{i}"
        folder.mkdir()
        proc = _start(data, folder)
        began = _wait_for_tmp(proc, folder)
        time.sleep(max(0.0, began + fraction * writing - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for name, want in rows.items():
            final = folder / name
            if final.exists():
                # Only a complete file may carry the final name.
                assert pq.read_metadata(final).num_rows == want, (fraction, name)
        names = {p.name for p in folder.iterdir()}
        interrupted += any(name.endswith(".tmp") for name in names)
        # Leftovers are hidden temporary names, never the final ones half-written.
        assert all(name in rows or name.startswith(".") for name in names)
    assert interrupted >= 1  # at least one kill landed mid-write


# -- the guard's quarantine parts -------------------------------------------------------------
def test_guard_parts_hold_each_bad_row_with_its_reasons(tmp_path):
    features = np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float32)
    checks = [
        ("nan", np.array([True, False]), "finite"),
        ("inf", np.array([False, True]), "finite"),
    ]
    records = reason_records(3, [4, 9], features, [1.0, None], [104, None], checks, loss=7.5)
    folder = tmp_path / "q"
    parts = QuarantineParts(folder, flush_rows=2)
    parts.add(records[:1])
    assert list(folder.iterdir()) == []  # buffered
    parts.add(records[1:])  # flush_rows reached: one part, complete, under its final name
    parts.flush()  # nothing buffered: no empty part
    [part] = list(folder.iterdir())
    assert part.name.startswith(f"part-{os.getpid()}-") and part.suffix == ".parquet"
    table = pq.read_table(part)
    assert table.schema == GUARD_SCHEMA
    rows = table.to_pylist()
    assert [(r[ROW_ID], r["batch"], r["position"], r["label"]) for r in rows] == [
        (104, 3, 4, 1.0),
        (None, 3, 9, None),
    ]
    assert [[x["check"] for x in r[REASONS]] for r in rows] == [
        ["nan", "loss_spike"],
        ["inf", "loss_spike"],
    ]
    assert rows[0][REASONS][0]["threshold"] == "finite" and rows[0][REASONS][1]["value"] == "7.5"
    assert rows[1]["features"][0] == np.inf


def test_a_failed_part_write_leaves_nothing_and_keeps_the_rows(tmp_path, monkeypatch):
    parts = QuarantineParts(tmp_path, flush_rows=10)
    parts.add(reason_records(0, [0], np.zeros((1, 1), np.float32), [None], [None], []))

    def half_written(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_written)
    with pytest.raises(OSError, match="disk full"):
        parts.flush()
    assert list(tmp_path.iterdir()) == []  # no part, no temporary file
    monkeypatch.undo()
    parts.flush()  # the rows were kept for the next try
    assert pq.read_table(next(tmp_path.iterdir())).num_rows == 1
