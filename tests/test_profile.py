from __future__ import annotations

import datetime
import json
import math
import sys
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pipeline.profiling
from pipeline.profiling import (
    EXACT_VALUES,
    STAT_KINDS,
    Profile,
    RowSample,
    column_kind,
    profile,
    to_numpy,
    values_view,
)
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
        # Values hold their deviations only to an ulp of the largest value, so the moments
        # can agree no closer than that: 5.6e16 +- 2e9 pins its std to about 1e-8.
        scale = max((abs(sa[k]) for k in ("min", "max") if _is_finite(sa.get(k))), default=0.0)
        tolerance = max(1e-12, 64 * sys.float_info.epsilon * scale)
        for key in ("mean", "std"):
            if sa[key] is None:
                assert sb[key] is None
            else:
                assert math.isclose(sa[key], sb[key], rel_tol=1e-9, abs_tol=tolerance), (name, key)


def _is_finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


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
# a spread of 2e9 at 5.6e16: the merged std differs from the whole's in the ninth digit
@example(
    xs=[5.569405698709829e16, 5.569405498709814e16, 5.5694056987098136e16],
    cut1=0,
    cut2=1,
    sample_size=5,
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


# -- date, time and duration columns --------------------------------------------------------------
# Each temporal type with integers it can hold: days for date32, whole days of ms for date64,
# times within a day, durations of either sign.
DAY_MS = 86_400_000
TEMPORAL = {
    "date32": (pa.date32(), np.arange(-300, 300, 3)),
    "date64": (pa.date64(), np.arange(-300, 300, 3) * DAY_MS),
    "time32[s]": (pa.time32("s"), np.arange(200) * 431),
    "time32[ms]": (pa.time32("ms"), np.arange(200) * 431_000),
    "time64[us]": (pa.time64("us"), np.arange(200) * 431_000_000),
    "time64[ns]": (pa.time64("ns"), np.arange(200) * 431_000_000_000),
    "duration[s]": (pa.duration("s"), np.arange(-100, 100) * 7),
    "duration[ns]": (pa.duration("ns"), np.arange(-100, 100) * 7_000_000_000),
    "timestamp[ns, UTC]": (pa.timestamp("ns", tz="UTC"), np.arange(200) * 3_600_000_000_000),
}


def _temporal(typ: pa.DataType, ints: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """The column (every 9th value null, in shuffled order) and its stored integers."""
    storage = pa.int32() if typ.bit_width == 32 else pa.int64()
    order = np.random.default_rng(3).permutation(ints.size)
    mask = np.arange(ints.size) % 9 == 4
    stored = pa.array(ints[order], storage, mask=mask)
    return stored.view(typ), stored


@pytest.mark.parametrize("name", sorted(TEMPORAL))
def test_values_view_gives_the_stored_integers_as_int64(name):
    arr, stored = _temporal(*TEMPORAL[name])
    view = values_view(arr, column_kind(arr.type))
    assert view.type == pa.int64()
    assert view.equals(stored.cast(pa.int64()))
    # Sliced arrays keep their offset and nulls.
    assert values_view(arr.slice(5, 20), "temporal").equals(stored.slice(5, 20).cast(pa.int64()))


@pytest.mark.parametrize("name", sorted(TEMPORAL))
def test_temporal_columns_are_counted_and_rendered_in_their_own_type(name):
    """date32 and time32 columns used to stop the profile (no cast from them to int64)."""
    typ, ints = TEMPORAL[name]
    arr, stored = _temporal(typ, ints)
    table = pa.table({"t": arr})
    whole = _profile_of(table, table.num_rows)
    assert_same_profile(_profile_of(table, 7), whole)
    st_ = whole.stats("t")
    present = to_numpy(stored)
    assert st_.kind == "temporal" and whole.columns["t"].kind in STAT_KINDS
    assert (st_.count, st_.null) == (present.size, len(arr) - present.size)

    def shown(value):
        return str(pa.scalar(int(value), stored.type).cast(typ).as_py())

    assert (st_.min, st_.max) == (shown(present.min()), shown(present.max()))
    assert st_.top_value == shown(present.min())  # every value once: ties go to the smallest
    assert st_.distinct == present.size and st_.distinct_exact
    assert st_.mean is None and st_.median is None  # as for timestamps
    assert st_.histogram is not None and sum(st_.histogram["counts"]) == present.size
    restored = Profile.from_dict(json.loads(json.dumps(whole.to_dict(), default=str)))
    assert_same_profile(restored, whole)


def test_dictionary_of_dates_is_temporal():
    arr, _ = _temporal(*TEMPORAL["date32"])
    p = _profile_of(pa.table({"d": arr.dictionary_encode()}), 50)
    first = datetime.date(1970, 1, 1) - datetime.timedelta(days=300)
    assert p.stats("d").kind == "temporal" and p.stats("d").min == str(first)


@pytest.mark.parametrize(
    ("typ", "kind"),
    [
        (pa.float16(), "numeric"),
        (pa.decimal128(10, 2), "numeric"),
        (pa.bool_(), "boolean"),
        (pa.large_string(), "categorical"),
        (pa.dictionary(pa.int32(), pa.string()), "categorical"),
        (pa.timestamp("ns", tz="UTC"), "temporal"),
        (pa.date32(), "temporal"),
        (pa.time32("ms"), "temporal"),
        (pa.duration("us"), "temporal"),
        (pa.month_day_nano_interval(), "other"),  # three numbers, no order: counted only
        (pa.null(), "other"),
        (pa.binary(), "other"),
        (pa.list_(pa.int64()), "other"),
    ],
)
def test_column_kind(typ, kind):
    assert column_kind(typ) == kind


def test_interval_columns_are_only_counted():
    months = pa.array([pa.MonthDayNano([k, 1, 0]) for k in range(30)] + [None])
    p = _profile_of(pa.table({"i": months}), 8)
    st_ = p.stats("i")
    assert (st_.kind, st_.count, st_.null, st_.min, st_.distinct) == ("other", 30, 1, None, 0)


# -- the row sample ------------------------------------------------------------------------------
def test_row_sample_started_below_a_bound_merges_to_the_whole_sample():
    """What a Ray task does: partial samples that keep only keys under a bound."""
    batch = pa.record_batch({"x": np.arange(5000.0), ROW_ID: np.arange(5000, dtype=np.int64)})
    whole = RowSample(200)
    whole.update(batch)
    bound = int(0.1 * 2**64)  # about 500 of the 5,000 hashed ids fall below
    parts = []
    for lo in range(0, 5000, 1000):
        part = RowSample(200)
        part.start_below(bound)
        part.update(batch.slice(lo, 1000))
        parts.append(part)
    # Each part keeps only its rows under the bound: fewer than the 200 an unbounded one keeps.
    assert all(0 < part.table().num_rows < 200 for part in parts)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert merged.table().equals(whole.table())


def test_row_sample_start_below_refuses_a_late_or_impossible_bound():
    sample = RowSample(10)
    with pytest.raises(ValueError, match="uint64"):
        sample.start_below(-1)
    with pytest.raises(ValueError, match="uint64"):
        sample.start_below(2**64)
    sample.update(pa.record_batch({ROW_ID: np.arange(3, dtype=np.int64)}))
    with pytest.raises(ValueError, match="before"):
        sample.start_below(2**63)


# -- public names ---------------------------------------------------------------------------------
def test_public_names_resolve_and_old_private_names_stay():
    names = pipeline.profiling.__all__
    assert set(names) == {
        "EXACT_VALUES", "HISTOGRAM_BINS", "PROFILE_VERSION", "STAT_KINDS", "BatchSummary",
        "ColumnProfile", "ColumnStats", "Profile", "RowSample", "column_kind", "is_feature_type",
        "profile", "sample_bound",
        "to_numpy", "values_view",
    }  # fmt: skip
    for name in names:
        assert getattr(pipeline.profiling, name) is not None
    assert pipeline.profiling._to_numpy is to_numpy
    assert pipeline.profiling._values_view is values_view
    assert STAT_KINDS == ("numeric", "boolean", "temporal")


def test_a_histogram_wider_than_float64_holds_has_finite_edges():
    # -1.8e308 to 1.8e308 (DBL_MAX placeholders): max - min overflows to inf
    big = np.finfo(np.float64).max
    x = np.array([-big, -1.0, 0.0, 2.0, big])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hist = pipeline.profiling._histogram(x)
    assert all(math.isfinite(e) for e in hist["edges"])
    assert hist["edges"][0] == -big and hist["edges"][-1] == big
    assert sum(hist["counts"]) == x.size
