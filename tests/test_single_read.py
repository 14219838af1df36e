"""A run without outputs reads the file once: pass 1 keeps the values that could fail.

The local engine keeps, in pass 1, every value that could fail a row rule
(:mod:`pipeline.engines._candidates`) and, when those cover the final fences and
sentinels, runs the row rules on them alone instead of reading the file again.
Whichever way it goes, the report must be exactly that of the two-pass run.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
import pipeline.engines._candidates as candidates
import pipeline.engines._local as local
from pipeline import validate
from pipeline.source import Source
from tests.conftest import SAMPLE_DATA
from tests.test_quarantine import dirty_tables


def _findings(report) -> list[tuple]:
    return [
        (f.check, f.column, f.severity, f.count, tuple(f.sample_rows), f.message)
        for f in report.findings
    ]


def _reads(monkeypatch) -> list[int]:
    """Count the passes over the data: each call of ``Source.iter_batches``."""
    calls: list[int] = []
    original = Source.iter_batches

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Source, "iter_batches", counting)
    return calls


def _two_pass(path: Path, monkeypatch, **kw):
    """The same run with nothing kept in pass 1 (the kept values overflow at once)."""
    with monkeypatch.context() as m:
        m.setattr(candidates, "CANDIDATE_LIMIT", -1)
        return validate(path, **kw)


@pytest.mark.parametrize(
    ("name", "label"), [("credit", "default"), ("sensors", "failure"), ("clean", "segment")]
)
def test_sample_data_reports_equal_the_two_pass_run(name, label, monkeypatch):
    path = SAMPLE_DATA / f"{name}.parquet"
    reads = _reads(monkeypatch)
    once = validate(path, label=label)
    passes = len(reads)
    twice = _two_pass(path, monkeypatch, label=label)
    assert _findings(once) == _findings(twice)
    assert once.rows_quarantined == twice.rows_quarantined
    if name != "sensors":  # a fence of sensors' humidity_2 lies inside the first batch's band
        assert passes == 1


def test_placeholders_at_the_float64_limits_read_once_without_warnings(tmp_path, monkeypatch):
    # DBL_MAX in 5% of the rows: the kept values' band reaches past float64's limits
    big = np.finfo(np.float64).max
    rng = np.random.default_rng(5)
    x = rng.normal(10.0, 2.0, 4000)
    x[rng.random(4000) < 0.05] = big
    path = tmp_path / "limits.parquet"
    pq.write_table(pa.table({"x": x, "y": rng.normal(0.0, 1.0, 4000)}), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        once = validate(path)
    twice = _two_pass(path, monkeypatch)
    assert _findings(once) == _findings(twice)
    assert ("sentinel", "x") in {(f.check, f.column) for f in once.findings}


def test_rows_failing_in_several_columns_are_quarantined_once(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (5000, 3))
    x[[10, 20, 30], 0] = np.nan
    x[[10, 20, 40], 1] = 1e9  # rows 10 and 20 fail in two columns
    x[[10, 50], 2] = -np.inf
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({f"c{j}": x[:, j] for j in range(3)}), path, row_group_size=1000)
    reads = _reads(monkeypatch)
    report = validate(path, batch_size=700)
    assert len(reads) == 1
    assert report.rows_quarantined == 5  # rows 10, 20, 30, 40, 50
    quarantine = tmp_path / "q.parquet"
    with_output = validate(path, batch_size=700, quarantine=quarantine)
    assert _findings(with_output) == _findings(report)
    assert pq.read_table(quarantine).column("_row_id").to_pylist() == [10, 20, 30, 40, 50]


def test_an_unrepresentative_first_batch_falls_back_to_a_second_read(tmp_path, monkeypatch):
    # Sorted data: the first batch's band holds only the smallest values, so every later
    # value is kept; past the limit pass 1 gives up and pass 2 reads the file again.
    x = np.sort(np.random.default_rng(1).lognormal(0, 1, 20_000))
    x[-3:] = 1e9
    path = tmp_path / "sorted.parquet"
    pq.write_table(pa.table({"x": x, "y": x[::-1].copy()}), path)
    monkeypatch.setattr(candidates, "CANDIDATE_LIMIT", 1000)
    reads = _reads(monkeypatch)
    report = validate(path, batch_size=1000)
    assert len(reads) == 2
    assert _findings(report) == _findings(_two_pass(path, monkeypatch, batch_size=1000))


@pytest.mark.slow  # 40 examples, each validated twice
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=dirty_tables(), batch_size=st.integers(1, 64), row_group_size=st.integers(1, 128))
def test_one_read_equals_two_at_any_batching(table, batch_size, row_group_size):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        once = validate(path, batch_size=batch_size)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(candidates, "CANDIDATE_LIMIT", -1)
            twice = validate(path, batch_size=batch_size)
    assert _findings(once) == _findings(twice)
    assert once.rows_quarantined == twice.rows_quarantined


def _travelling(m: pytest.MonkeyPatch) -> None:
    """Send pass 1's kept values through Arrow IPC, as the Ray engine's tasks do."""
    original = local.LocalEngine.profile_pass

    def travelling(self, run, **kw):
        out = original(self, run, **kw)
        if self._candidates is not None and not self._candidates.overflowed:
            self._candidates = candidates.CandidateRows.from_bytes(self._candidates.to_bytes())
        return out

    m.setattr(local.LocalEngine, "profile_pass", travelling)


def test_kept_values_sent_as_arrow_still_spare_the_second_read(monkeypatch):
    data = SAMPLE_DATA / "credit.parquet"
    twice = _two_pass(data, monkeypatch, label="default")
    _travelling(monkeypatch)
    reads = _reads(monkeypatch)
    once = validate(data, label="default")
    assert len(reads) == 1
    assert _findings(once) == _findings(twice)
    assert once.rows_quarantined == twice.rows_quarantined


@pytest.mark.slow  # 30 examples, each validated twice
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=dirty_tables(), batch_size=st.integers(1, 64))
def test_kept_values_sent_as_arrow_give_the_same_report(table, batch_size):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as m:
        path = Path(tmp) / "data.parquet"
        pq.write_table(table, path, row_group_size=32)
        twice = _two_pass(path, m, batch_size=batch_size)
        _travelling(m)
        once = validate(path, batch_size=batch_size)
    assert _findings(once) == _findings(twice)
    assert once.rows_quarantined == twice.rows_quarantined


def _sample_ids(prof) -> list[int]:
    return prof.sample.table().column("_row_id").to_pylist()


def test_the_bounded_sample_is_the_whole_pass_sample(tmp_path, monkeypatch):
    # Knowing the row count, pass 1 keeps only rows hashed below a bound: the same
    # sample as keeping every row, and the same when the bound falls short.
    path = tmp_path / "t.parquet"
    x = np.random.default_rng(2).normal(0, 1, 20_000)
    pq.write_table(pa.table({"x": x, "y": x * 2}), path, row_group_size=3000)
    unbounded = pipeline.profile(path, batch_size=999, sample_size=500)
    bounded = validate(path, batch_size=999, sample_size=500).profile
    assert _sample_ids(bounded) == _sample_ids(unbounded)
    monkeypatch.setattr(local, "sample_bound", lambda rows, size: 2**40)  # far too low
    reads = _reads(monkeypatch)
    short = validate(path, batch_size=999, sample_size=500).profile
    assert _sample_ids(short) == _sample_ids(unbounded)
    assert len(reads) == 2  # pass 1 ran again without the bound


def test_empty_row_groups_and_an_empty_file(tmp_path):
    path = tmp_path / "gaps.parquet"
    schema = pa.schema([("x", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        writer.write_table(pa.table({"x": pa.array([], pa.float64())}))
        writer.write_table(pa.table({"x": [1.0, 2.0, float("nan"), 3.0]}))
        writer.write_table(pa.table({"x": pa.array([], pa.float64())}))
    report = validate(path, batch_size=2)
    assert report.rows == 4 and report.rows_quarantined == 1
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), empty)
    assert validate(empty).rows == 0


def test_columns_asked_non_null_are_judged_alike(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 3000)
    nulls = np.zeros(3000, dtype=bool)
    nulls[[7, 1500, 2999]] = True
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"x": pa.array(x, mask=nulls), "y": x * 3}), path)
    reads = _reads(monkeypatch)
    once = validate(path, batch_size=500, not_null=["x"])
    assert len(reads) == 1
    twice = _two_pass(path, monkeypatch, batch_size=500, not_null=["x"])
    assert _findings(once) == _findings(twice)
    assert once.rows_quarantined == twice.rows_quarantined == 3


@pytest.mark.parametrize(("nulls", "passes"), [(0, 1), (10, 2)])
def test_a_string_label_is_read_again_only_when_it_holds_nulls(
    tmp_path, monkeypatch, nulls, passes
):
    """Rows without a label are quarantined; pass 1 notes nulls of numeric columns only."""
    labels = [None if k < nulls else f"c{k % 2}" for k in range(4000)]
    x = np.random.default_rng(0).normal(size=4000)
    x[100] = np.nan
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": x, "y": labels}), path, row_group_size=1000)
    reads = _reads(monkeypatch)
    report = validate(path, label="y")
    assert len(reads) == passes
    assert report.rows_quarantined == 1 + nulls
