from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.profiling import EXACT_VALUES, Profile, profile
from pipeline.source import ROW_ID, Source

EXACT_KEYS = (
    "count",
    "null",
    "nan",
    "posinf",
    "neginf",
    "min",
    "max",
    "q25",
    "median",
    "q75",
    "top_value",
    "top_value_fraction",
    "distinct",
    "distinct_exact",
    "histogram",
)


def _with_ids(table: pa.Table) -> pa.Table:
    return table.append_column(ROW_ID, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _profile_of(table: pa.Table, batch_size: int, sample_size: int = 100_000) -> Profile:
    p = Profile(table.schema, sample_size=sample_size)
    for batch in _with_ids(table).to_batches(max_chunksize=batch_size):
        p.update(batch)
    return p


def assert_same_profile(a: Profile, b: Profile) -> None:
    assert a.rows == b.rows
    for name in a.columns:
        sa, sb = a.stats(name).to_dict(), b.stats(name).to_dict()
        for key in EXACT_KEYS:
            assert sa[key] == sb[key], (name, key)
        for key in ("mean", "std"):
            if sa[key] is None:
                assert sb[key] is None
            else:
                assert math.isclose(sa[key], sb[key], rel_tol=1e-9, abs_tol=1e-12), (name, key)


@pytest.mark.parametrize("batch_size", [1, 13, 256, 1999, 1_000_000])
def test_streaming_equals_whole_table(dirty_table, batch_size):
    whole = _profile_of(dirty_table, dirty_table.num_rows)
    assert_same_profile(_profile_of(dirty_table, batch_size), whole)


@pytest.mark.parametrize("batch_size", [17, 500])
def test_streaming_equals_whole_table_beyond_the_sample(dirty_table, batch_size):
    # A sample smaller than the data: quantiles come from the same sampled rows anyway.
    whole = _profile_of(dirty_table, dirty_table.num_rows, sample_size=300)
    assert_same_profile(_profile_of(dirty_table, batch_size, sample_size=300), whole)


def test_exact_counts_and_moments(dirty_table):
    p = _profile_of(dirty_table, 300)
    x = dirty_table.column("x").to_numpy()
    finite = x[np.isfinite(x)]
    c = p.stats("x")
    assert (c.nan, c.posinf, c.neginf, c.count) == (3, 1, 1, 2000)
    assert c.min == finite.min() and c.max == finite.max()
    assert math.isclose(c.mean, finite.mean(), rel_tol=1e-12)
    assert math.isclose(c.std, finite.std(ddof=1), rel_tol=1e-12)
    assert c.median == np.quantile(finite, 0.5)
    assert p.stats("k").distinct == 1 and p.stats("k").top_value == 3
    assert p.stats("near").top_value_fraction == 1995 / 2000
    assert p.label_counts("label") == {
        0: int((dirty_table["label"].to_numpy() == 0).sum()),
        1: int((dirty_table["label"].to_numpy() == 1).sum()),
    }


def test_value_counts_overflow_to_sample_estimate():
    n = EXACT_VALUES * 3
    table = pa.table({"u": np.arange(n, dtype=np.float64)})
    p = _profile_of(table, 1000)
    st_ = p.stats("u")
    assert not st_.distinct_exact and st_.distinct > EXACT_VALUES
    assert p.columns["u"].values is None


def test_json_round_trip_keeps_statistics_and_mergeability(dirty_table):
    a = _profile_of(dirty_table.slice(0, 1200), 100)
    b_table = dirty_table.slice(1200)
    b = Profile(b_table.schema)
    ids = np.arange(1200, 2000, dtype=np.int64)
    b.update(b_table.append_column(ROW_ID, pa.array(ids)).combine_chunks().to_batches()[0])
    restored = Profile.from_dict(json.loads(json.dumps(a.to_dict())))
    assert_same_profile(restored, a)
    assert_same_profile(restored.merge(b), _profile_of(dirty_table, 2000))


def test_profile_function_streams_a_file(dirty_parquet, dirty_table):
    assert_same_profile(
        profile(Source(dirty_parquet, batch_size=64)), _profile_of(dirty_table, 2000)
    )


# Magnitudes up to 1e150: beyond ~1e154 squares overflow float64, and a merged
# variance can stay finite where the whole table's overflows to inf.
values = st.one_of(
    st.floats(min_value=-1e150, max_value=1e150),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, float("nan"), float("inf"), float("-inf")]),
)


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(values, min_size=0, max_size=80),
    cut1=st.integers(0, 80),
    cut2=st.integers(0, 80),
    sample_size=st.sampled_from([5, 1000]),
)
def test_merge_is_associative_and_equals_the_whole(xs, cut1, cut2, sample_size):
    """merge(profile(a), profile(b)) == profile(a ++ b), in any grouping."""
    i, j = sorted((min(cut1, len(xs)), min(cut2, len(xs))))
    table = _with_ids(
        pa.table(
            {"x": pa.array(xs, pa.float64()), "s": pa.array([str(v)[:3] for v in xs], pa.string())}
        )
    )
    schema = table.schema

    def part(lo, hi):
        p = Profile(schema, sample_size=sample_size)
        for b in table.slice(lo, hi - lo).to_batches(max_chunksize=7):
            p.update(b)
        return p

    whole = part(0, len(xs))
    left = part(0, i).merge(part(i, j)).merge(part(j, len(xs)))
    right = part(0, i).merge(part(i, j).merge(part(j, len(xs))))
    assert_same_profile(left, whole)
    assert_same_profile(right, whole)
