"""Mergeable per-column statistics, computed one record batch at a time.

A :class:`Profile` is built by :meth:`Profile.update` on each batch, and two
profiles of disjoint parts of a dataset merge with :meth:`Profile.merge`; the
merge of the parts equals the profile of the whole, whatever the batch size or
order. This is what lets the local engine stream and the Ray engine fan out.

What is exact and what is estimated
-----------------------------------
- Exact: row, null, NaN, +inf and -inf counts; finite min and max; mean and
  standard deviation (Chan et al.'s pairwise merge of per-batch moments, equal
  to the whole-table result up to float rounding); value counts, the most
  frequent value's share and the distinct count while a column holds at most
  :data:`EXACT_VALUES` distinct values.
- From a uniform row sample: quantiles (q25, median, q75) and histograms. The
  sample holds the ``sample_size`` rows whose hashed ``_row_id`` is smallest (a
  bottom-k sample), so it is the same rows whatever the batching and merges
  equal the whole. Up to ``sample_size`` rows it is the whole dataset and the
  quantiles are exact; beyond it, the rank error of any quantile exceeds
  ``sqrt(ln(2/0.001) / (2 * sample_size))`` (0.62% at the default 100,000
  rows) with probability below 0.1% (Dvoretzky–Kiefer–Wolfowitz).
- Beyond :data:`EXACT_VALUES` distinct values the top value's share and the
  distinct count are taken from the sample too (``distinct_exact`` is then
  false and ``distinct`` is a lower bound).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .options import DEFAULT_SAMPLE_SIZE
from .source import ROW_ID, open_source

__all__ = [
    "EXACT_VALUES",
    "HISTOGRAM_BINS",
    "PROFILE_VERSION",
    "STAT_KINDS",
    "BatchSummary",
    "ColumnProfile",
    "ColumnStats",
    "Profile",
    "RowSample",
    "column_kind",
    "is_feature_type",
    "profile",
    "sample_bound",
    "to_numpy",
    "values_view",
]

#: columns with at most this many distinct values get exact value counts
EXACT_VALUES = 4096
HISTOGRAM_BINS = 40
PROFILE_VERSION = 1
#: column kinds whose values are numbers to the profile (finite min and max, moments,
#: quantiles, histograms); temporal values are counted in their integer units
STAT_KINDS = ("numeric", "boolean", "temporal")


def column_kind(typ: pa.DataType) -> str:
    """Classify an Arrow type: numeric, boolean, categorical, temporal or other.

    Temporal types are timestamps, dates, times of day and durations (all
    integer counts of a unit); intervals, nested, binary and null columns are
    "other": counted, not checked.
    """
    if pa.types.is_dictionary(typ):
        return column_kind(typ.value_type)
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "numeric"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
        return "categorical"
    if (
        pa.types.is_timestamp(typ)
        or pa.types.is_date(typ)
        or pa.types.is_time(typ)
        or pa.types.is_duration(typ)
    ):
        return "temporal"
    return "other"


def is_feature_type(typ: pa.DataType) -> bool:
    """Whether the training side can turn a column of this type into a float feature.

    The one rule for a "numeric column" that :func:`pipeline.make_loader` (its default
    features) and :class:`pipeline.RobustScaler` (its default columns) follow: the kinds
    ``"numeric"`` (integers, floats, decimals) and ``"boolean"`` (0 or 1) of
    :func:`column_kind`, dictionary-encoded or not.

    Parameters
    ----------
    typ : pyarrow.DataType

    Returns
    -------
    bool
    """
    return column_kind(typ) in ("numeric", "boolean")


def _storage(typ: pa.DataType) -> pa.DataType:
    """The integer type a temporal type is stored as (date32 and time32 are 32-bit)."""
    return pa.int32() if typ.bit_width == 32 else pa.int64()


def values_view(arr: pa.Array, kind: str) -> pa.Array:
    """The array in the form statistics are taken on.

    Parameters
    ----------
    arr : pyarrow.Array
        One column's values.
    kind : str
        The column's :func:`column_kind`.

    Returns
    -------
    pyarrow.Array
        Dictionaries decoded; temporal values as int64 counts of their unit
        (days for ``date32``, the type's unit otherwise); booleans as int8;
        decimals and float16 as float64; others unchanged. Nulls stay null.
    """
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if kind == "temporal":
        # Arrow casts no temporal type to int64 except 64-bit ones, so read the
        # stored integers and widen the 32-bit ones (date32, time32).
        storage = _storage(arr.type)
        view = arr.view(storage)
        return view if storage == pa.int64() else view.cast(pa.int64())
    if kind == "boolean":
        return arr.cast(pa.int8())
    if pa.types.is_decimal(arr.type) or pa.types.is_float16(arr.type):
        return arr.cast(pa.float64())
    return arr


def to_numpy(arr: pa.Array) -> np.ndarray:
    """Non-null values as numpy, zero-copy when the array has no nulls.

    Parameters
    ----------
    arr : pyarrow.Array

    Returns
    -------
    numpy.ndarray
        The values with nulls dropped.
    """
    if arr.null_count:
        arr = pc.drop_null(arr)
    return arr.to_numpy(zero_copy_only=False)


# Aliases under the former private names, kept until their importers switch.
_values_view = values_view
_to_numpy = to_numpy


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class BatchSummary:
    """What one batch showed of a numeric column: enough to know whether to re-read it."""

    bad: int
    min: float | None
    max: float | None


@dataclass
class ColumnProfile:
    """Mergeable accumulators of one column.

    Attributes
    ----------
    count : int
        Non-null values.
    null, nan, posinf, neginf : int
        Null, NaN, +inf, -inf values.
    finite : int
        Finite numeric values; ``min``, ``max``, ``mean`` and ``m2`` are over them.
    values : dict or None
        Exact counts of each non-missing value while there are at most
        :data:`EXACT_VALUES` of them; ``None`` once there are more.
    """

    name: str
    dtype: str
    kind: str
    count: int = 0
    null: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    finite: int = 0
    min: Any = None
    max: Any = None
    mean: float = 0.0
    m2: float = 0.0
    values: dict[Any, int] | None = field(default_factory=dict)

    # -- accumulate ----------------------------------------------------------------------------
    def update(self, arr: pa.Array) -> BatchSummary | None:
        """Add one batch's values of this column."""
        nulls = arr.null_count
        self.null += nulls
        self.count += len(arr) - nulls
        if self.kind == "other":
            return None
        view = values_view(arr, self.kind)
        summary = None
        if self.kind in STAT_KINDS:
            summary = self._update_numeric(to_numpy(view))
            summary.bad += nulls
        if self.values is not None:
            self._update_values(view)
        return summary

    def _update_numeric(self, x: np.ndarray) -> BatchSummary:
        bad = 0
        if x.size == 0:
            return BatchSummary(bad, None, None)
        lo, hi = x.min(), x.max()
        # NaN propagates through min and max, so finite extremes mean no NaN and no inf:
        # the non-finite values are located only when they are not.
        if x.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
            nan_mask = np.isnan(x)
            inf_mask = np.isinf(x)
            n_nan = int(nan_mask.sum())
            n_posinf = int((inf_mask & (x > 0)).sum())
            n_neginf = int(inf_mask.sum()) - n_posinf
            self.nan += n_nan
            self.posinf += n_posinf
            self.neginf += n_neginf
            bad = n_nan + n_posinf + n_neginf
            x = x[~(nan_mask | inf_mask)]
            if x.size == 0:
                return BatchSummary(bad, None, None)
            lo, hi = x.min(), x.max()
        n = x.size
        lo, hi = _py(lo), _py(hi)
        with np.errstate(over="ignore", invalid="ignore"):  # huge finite values overflow to inf
            # Two-pass moments on one float64 copy, squared in place: np.mean + np.var
            # would cast and traverse the batch four times.
            wide = x.astype(np.float64)
            mean = float(np.add.reduce(wide)) / n
            wide -= mean
            np.multiply(wide, wide, out=wide)
            m2 = float(np.add.reduce(wide))
        self._merge_moments(n, lo, hi, mean, m2)
        return BatchSummary(bad, lo, hi)

    def _merge_moments(self, n: int, lo: Any, hi: Any, mean: float, m2: float) -> None:
        if n == 0:
            return
        if self.finite == 0:
            self.finite, self.min, self.max, self.mean, self.m2 = n, lo, hi, mean, m2
            return
        total = self.finite + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.finite * n / total
        self.finite = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def _update_values(self, view: pa.Array) -> None:
        present = pc.drop_null(view)
        if pa.types.is_floating(present.type):
            present = present.filter(pc.is_finite(present))
        long_first = not self.values and len(present) > _PREFIX_ROWS
        if long_first and _distinct(present[:_PREFIX_ROWS]) > EXACT_VALUES:
            # Too many values in the first batch's prefix already: the whole batch has as
            # many, so the answer is the same without hashing the rest of it. (A column
            # that stays exact is not asked again on every batch.)
            self.values = None
            return
        counts = pc.value_counts(present)
        if len(counts) > EXACT_VALUES:
            self.values = None
            return
        self._add_counts(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        )

    def _add_counts(self, pairs: Iterable[tuple[Any, int]]) -> None:
        values = self.values
        assert values is not None
        for value, n in pairs:
            values[value] = values.get(value, 0) + n
        if len(values) > EXACT_VALUES:
            self.values = None

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """Add the accumulators of ``other`` (the same column over other rows) into this one."""
        if (other.name, other.kind) != (self.name, self.kind):
            raise ValueError(f"cannot merge profiles of columns {self.name!r} and {other.name!r}")
        for name in ("count", "null", "nan", "posinf", "neginf"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self._merge_moments(other.finite, other.min, other.max, other.mean, other.m2)
        if self.values is not None:
            if other.values is None:
                self.values = None
            else:
                self._add_counts(other.values.items())
        return self

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1) of the finite values."""
        if self.finite < 2:
            return None
        return math.sqrt(max(self.m2, 0.0) / (self.finite - 1))

    # -- serialise -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in _STATE_FIELDS}
        state["values"] = None if self.values is None else [[k, v] for k, v in self.values.items()]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ColumnProfile:
        values = state.get("values")
        kwargs = {k: state[k] for k in _STATE_FIELDS}
        return cls(**kwargs, values=None if values is None else {k: v for k, v in values})


#: rows of a batch counted first: more than EXACT_VALUES distinct values among them
#: settle the column's exact counts (there are none) without hashing the whole batch
_PREFIX_ROWS = 4 * EXACT_VALUES


def _distinct(arr: pa.Array) -> int:
    return pc.count_distinct(arr).as_py()


_STATE_FIELDS = (
    "name", "dtype", "kind", "count", "null", "nan", "posinf", "neginf",
    "finite", "min", "max", "mean", "m2",
)  # fmt: skip


def _mix(ids: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 that scatters consecutive ids uniformly."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def sample_bound(rows: int | None, size: int) -> int | None:
    """A hash value that, with near certainty, more than ``size`` of ``rows`` row ids stay below.

    The row sample is the ``size`` rows with the smallest hashed ids, and the
    hashes are uniform, so a pass that knows the dataset's size need only keep
    rows hashed below this bound (:meth:`RowSample.start_below`): it then takes
    about ``size`` rows in all instead of several times as many, and the Ray
    engine's partial samples carry about ``size`` rows together instead of
    ``size`` each. Expected rows below it: ``size + 8 sqrt(size) + 64``, so
    falling short of ``size`` is an 8-sigma event; callers check anyway and
    sample again without the bound. ``None`` (keep every row) for small or
    uncounted datasets.

    Parameters
    ----------
    rows : int or None
        The dataset's rows, if known before reading it.
    size : int
        The sample size.

    Returns
    -------
    int or None
    """
    if rows is None or rows <= size:
        return None
    expected = size + 8 * math.sqrt(size) + 64
    return min(int(expected / rows * 2.0**64), 2**64 - 1)


class RowSample:
    """The ``size`` rows with the smallest hashed row ids: a mergeable uniform sample.

    Parameters
    ----------
    size : int
        Rows kept.
    """

    _KEY = "_sample_key"

    def __init__(self, size: int):
        self.size = size
        self._pieces: list[pa.Table] = []
        self._rows = 0
        self._threshold = np.iinfo(np.uint64).max
        self._table: pa.Table | None = None  # the sorted sample, until the next change

    def start_below(self, bound: int) -> None:
        """Keep only rows whose hashed row id is at most ``bound``, from the first update on.

        The Ray engine's tasks start their bottom-k sample with an upper bound on
        the hash keys they may keep: a bound below which, with near certainty, more
        than ``size`` rows of the whole dataset fall. No merge of the partial
        samples would keep a row above it, so each task drops those at once and the
        partials carry about ``size`` rows in all instead of ``size`` each. A bound
        above the sample's own threshold changes nothing.

        Parameters
        ----------
        bound : int
            The largest hash key (a uint64 value) kept.

        Raises
        ------
        ValueError
            When ``bound`` is not a uint64 value, or the sample already holds rows
            (they were taken under another bound).
        """
        if not 0 <= bound <= np.iinfo(np.uint64).max:
            raise ValueError(f"bound should be a uint64 value, but got bound={bound!r}")
        if self._rows:
            raise ValueError("start_below must be called before the sample takes rows")
        self._threshold = min(self._threshold, int(bound))

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Offer the rows of ``batch`` to the sample."""
        keys = _mix(batch.column(ROW_ID).to_numpy(zero_copy_only=False))
        take = np.flatnonzero(keys <= self._threshold)
        if take.size == 0:
            return
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if take.size < len(keys):
            table = table.take(take)
            keys = keys[take]
        self._add(table.append_column(self._KEY, pa.array(keys)))

    def _add(self, table: pa.Table) -> None:
        self._table = None
        self._pieces.append(table)
        self._rows += table.num_rows
        if self._rows > 2 * self.size:
            self._prune()

    def _prune(self) -> None:
        if not self._pieces:
            return
        table = pa.concat_tables(self._pieces, promote_options="permissive")
        if table.num_rows > self.size:
            keys = table.column(self._KEY).to_numpy()
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            table = table.take(keep)
            self._threshold = int(keys[keep].max())
        self._pieces = [table]
        self._rows = table.num_rows

    def merge(self, other: RowSample) -> RowSample:
        """Add the rows of ``other``'s sample; the result is the sample of the union."""
        for piece in other._pieces:
            self._add(piece)
        self._threshold = min(self._threshold, other._threshold)
        return self

    def table(self) -> pa.Table:
        """The sampled rows in row-id order (without the hash column)."""
        if self._table is None:
            self._prune()
            if not self._pieces:
                return pa.table({})
            table = self._pieces[0]
            order = pc.sort_indices(table.column(ROW_ID))
            self._table = table.take(order).drop_columns([self._KEY]).combine_chunks()
        return self._table

    def to_state(self) -> str:
        self._prune()
        sink = pa.BufferOutputStream()
        if self._pieces:
            with pa.ipc.new_file(sink, self._pieces[0].schema) as writer:
                writer.write_table(self._pieces[0])
        return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")

    @classmethod
    def from_state(cls, size: int, state: str) -> RowSample:
        sample = cls(size)
        data = base64.b64decode(state)
        if data:
            sample._add(pa.ipc.open_file(pa.BufferReader(data)).read_all())
            sample._prune()
            if sample._rows >= size:
                keys = sample._pieces[0].column(cls._KEY).to_numpy()
                sample._threshold = int(keys.max())
        return sample


@dataclass
class ColumnStats:
    """Everything the report says about one column (derived from a :class:`Profile`)."""

    dtype: str
    kind: str
    count: int
    null: int
    nan: int
    posinf: int
    neginf: int
    min: Any
    max: Any
    mean: float | None
    std: float | None
    q25: float | None
    median: float | None
    q75: float | None
    top_value: Any
    top_value_fraction: float | None
    distinct: int
    distinct_exact: bool
    histogram: dict[str, list[float]] | None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Profile:
    """Mergeable statistics of every column of a dataset.

    Parameters
    ----------
    schema : pyarrow.Schema
        The data columns (a ``_row_id`` field is ignored).
    sample_size : int, default 100000
        Rows in the uniform sample behind quantiles and histograms.

    Examples
    --------
    >>> import pyarrow as pa
    >>> batch = pa.record_batch({"x": [1.0, float("nan"), 3.0], "_row_id": [0, 1, 2]})
    >>> p = Profile(batch.schema)
    >>> _ = p.update(batch)
    >>> p.columns["x"].nan, p.stats("x").median
    (1, 2.0)
    """

    def __init__(self, schema: pa.Schema, *, sample_size: int = DEFAULT_SAMPLE_SIZE):
        self.schema = pa.schema([f for f in schema if f.name != ROW_ID])
        self.sample_size = sample_size
        self.rows = 0
        self.columns = {
            f.name: ColumnProfile(f.name, str(f.type), column_kind(f.type)) for f in self.schema
        }
        self.sample = RowSample(sample_size)
        self._stats: dict[str, ColumnStats] = {}
        self._value_counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def update(self, batch: pa.RecordBatch) -> dict[str, BatchSummary]:
        """Add one record batch (with ``_row_id``); returns per numeric column what it held."""
        self._stats.clear()
        self._value_counts.clear()
        self._sorted.clear()
        self.rows += batch.num_rows
        summaries: dict[str, BatchSummary] = {}
        for name, column in self.columns.items():
            summary = column.update(batch.column(name))
            if summary is not None:
                summaries[name] = summary
        self.sample.update(batch)
        return summaries

    def merge(self, other: Profile) -> Profile:
        """Add ``other`` (a profile of other rows of the same dataset) into this one."""
        if other.schema.names != self.schema.names:
            raise ValueError("cannot merge profiles of datasets with different columns")
        self._stats.clear()
        self._value_counts.clear()
        self._sorted.clear()
        self.rows += other.rows
        for name, column in self.columns.items():
            column.merge(other.columns[name])
        self.sample.merge(other.sample)
        return self

    def sample_fell_short(self) -> bool:
        """Whether the row sample holds fewer rows than it should.

        Only a pass that kept rows hashed below :func:`sample_bound` can fall short
        (an 8-sigma event); it must then run again without the bound.
        """
        return self.sample.table().num_rows < min(self.sample_size, self.rows)

    # -- derived statistics --------------------------------------------------------------------
    def stats(self, name: str) -> ColumnStats:
        """The report's statistics of column ``name`` (computed once, then cached)."""
        if name not in self._stats:
            self._stats[name] = self._compute_stats(name)
        return self._stats[name]

    def sample_values(self, name: str) -> np.ndarray:
        """Finite numeric values of ``name`` in the row sample, sorted, as float64 (read-only)."""
        return self._sorted_sample(name)[1]

    def _sorted_sample(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The sample's finite values of ``name``, sorted once: in their own type and as float64.

        Quantiles, histograms, value counts, the top value, fences and sentinels all
        start from them.
        """
        if name not in self._sorted:
            column = self.columns[name]
            if column.kind not in STAT_KINDS or self.sample._rows == 0:
                native = np.empty(0)
            else:
                arr = self.sample.table().column(name).combine_chunks()
                native = to_numpy(values_view(arr, column.kind))
                if native.dtype.kind == "f":
                    native = native[np.isfinite(native)]
                native = np.sort(native)
            wide = native.astype(np.float64)  # a monotone cast: still sorted
            native.flags.writeable = wide.flags.writeable = False
            self._sorted[name] = (native, wide)
        return self._sorted[name]

    def value_counts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Distinct finite values of numeric column ``name`` and their counts, as float64/int64.

        Exact while the column has at most :data:`EXACT_VALUES` distinct values;
        beyond that, the counts of the row sample (scaled to the column's size).
        """
        if name not in self._value_counts:
            self._value_counts[name] = self._compute_value_counts(name)
        return self._value_counts[name]

    def _compute_value_counts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        column = self.columns[name]
        if column.values is not None:
            pairs = [(v, n) for v, n in column.values.items() if v is not None]
            values = np.array([float(v) for v, _ in pairs], dtype=np.float64)
            counts = np.array([n for _, n in pairs], dtype=np.int64)
            keep = np.isfinite(values)
            return values[keep], counts[keep]
        x = self.sample_values(name)
        values, counts = _runs(x)
        scale = column.finite / x.size if x.size else 1.0
        return values, np.rint(counts * scale).astype(np.int64)

    def _compute_stats(self, name: str) -> ColumnStats:
        c = self.columns[name]
        q25 = median = q75 = histogram = None
        if c.kind in STAT_KINDS:
            x = self.sample_values(name)
            if x.size:
                q25, median, q75 = (float(v) for v in np.quantile(x, [0.25, 0.5, 0.75]))
                histogram = _histogram(x)
        top_value, top_fraction, distinct, exact = self._top_and_distinct(c)
        numeric = c.kind in ("numeric", "boolean")
        typ = self.schema.field(name).type
        return ColumnStats(
            dtype=c.dtype, kind=c.kind, count=c.count, null=c.null, nan=c.nan,
            posinf=c.posinf, neginf=c.neginf,
            min=_render(c.min, typ), max=_render(c.max, typ),
            mean=c.mean if numeric and c.finite else None, std=c.std if numeric else None,
            q25=q25 if c.kind != "temporal" else None,
            median=median if c.kind != "temporal" else None,
            q75=q75 if c.kind != "temporal" else None,
            top_value=_render(top_value, typ), top_value_fraction=top_fraction,
            distinct=distinct, distinct_exact=exact, histogram=histogram,
        )  # fmt: skip

    def _top_and_distinct(self, c: ColumnProfile) -> tuple[Any, float | None, int, bool]:
        if c.kind == "other":
            return None, None, 0, False
        if c.values is not None:
            if not c.values:
                return None, None, 0, True
            # Ties break on the smaller value so the answer does not depend on batch order.
            top, n = min(c.values.items(), key=lambda kv: (-kv[1], _sort_key(kv[0])))
            return top, n / sum(c.values.values()), len(c.values), True
        if c.kind in STAT_KINDS:  # from the sorted sample; ties go to the smaller value too
            values, counts = _runs(self._sorted_sample(c.name)[0])
            if not values.size:
                return None, None, EXACT_VALUES + 1, False
            i = int(np.argmax(counts))
            return (
                values[i].item(),
                float(counts[i] / counts.sum()),
                max(values.size, EXACT_VALUES + 1),
                False,
            )
        view = values_view(self.sample.table().column(c.name).combine_chunks(), c.kind)
        present = pc.drop_null(view)
        if pa.types.is_floating(present.type):
            present = present.filter(pc.is_finite(present))
        counts = pc.value_counts(present)
        if len(counts) == 0:
            return None, None, EXACT_VALUES + 1, False
        n = counts.field("counts").to_numpy()
        i = int(np.argmax(n))
        top = counts.field("values")[i].as_py()
        return top, float(n[i] / n.sum()), max(len(counts), EXACT_VALUES + 1), False

    def label_counts(self, name: str) -> dict[Any, int] | None:
        """Exact class counts of a label column; ``None`` when it has too many values."""
        values = self.columns[name].values
        if values is None:
            return None
        return dict(sorted(values.items(), key=lambda kv: _sort_key(kv[0])))

    # -- serialise -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready data: report statistics plus the mergeable state."""
        return {
            "profile_version": PROFILE_VERSION,
            "rows": self.rows,
            "sample_size": self.sample_size,
            "columns": {name: self.stats(name).to_dict() for name in self.columns},
            "state": {
                "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode("ascii"),
                "columns": [c.to_state() for c in self.columns.values()],
                "sample": self.sample.to_state(),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a profile written by :meth:`to_dict`; it merges like the original."""
        if data.get("profile_version") != PROFILE_VERSION:
            raise ValueError(
                f"profile_version {data.get('profile_version')!r} is not supported "
                f"(expected {PROFILE_VERSION}); write the profile again with this version"
            )
        state = data["state"]
        schema = pa.ipc.read_schema(pa.BufferReader(base64.b64decode(state["schema"])))
        profile = cls(schema, sample_size=data["sample_size"])
        profile.rows = data["rows"]
        profile.columns = {s["name"]: ColumnProfile.from_state(s) for s in state["columns"]}
        profile.sample = RowSample.from_state(data["sample_size"], state["sample"])
        return profile


def _runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of the sorted array ``x`` and how often each occurs (``np.unique``'s)."""
    if not x.size:
        return x.copy(), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
    return x[starts], np.diff(np.append(starts, x.size))


def _histogram(x: np.ndarray) -> dict[str, list[float]]:
    """Equal-width bins over the sample's range; one bin when the range is too narrow to split."""
    lo, hi = float(x.min()), float(x.max())
    if not math.isfinite(hi - lo):  # a range wider than float64 holds (-1e308 to 1e308)
        t = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        edges = lo * (1.0 - t) + hi * t  # each term stays finite
        counts, _ = np.histogram(x, bins=edges)
        return {"edges": edges.tolist(), "counts": counts.tolist()}
    try:
        counts, edges = np.histogram(x, bins=HISTOGRAM_BINS, range=(lo, hi))
    except ValueError:  # lo == hi, or too close for float64 to hold distinct edges
        return {"edges": [lo, hi], "counts": [int(x.size)]}
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def _render(value: Any, typ: pa.DataType) -> Any:
    """Temporal values back from their int64 view to ISO text; others unchanged."""
    if value is None or column_kind(typ) != "temporal":
        return value
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    try:
        scalar = pa.scalar(value, _storage(typ)).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return value
    if getattr(typ, "unit", None) == "ns" and value % 1000:
        # Nanoseconds that datetime cannot hold (as_py would give pandas' types where
        # pandas is loaded, and fail where it is not): Arrow's own text.
        return f"{value} ns" if pa.types.is_duration(typ) else str(scalar.cast(pa.string()))
    return str(scalar.as_py())


def profile(
    source: Any, *, batch_size: int | None = None, sample_size: int = DEFAULT_SAMPLE_SIZE
) -> Profile:
    """Profile a dataset by streaming it.

    Parameters
    ----------
    source : str, os.PathLike or Source
        The dataset.
    batch_size : int, optional
        Rows per batch read; by default 65536 for a path and a
        :class:`~pipeline.source.Source`'s own batch size.
    sample_size : int, default 100000

    Returns
    -------
    Profile
    """
    src = open_source(source, batch_size=batch_size)
    result = Profile(src.schema, sample_size=sample_size)
    for batch in src.iter_batches():
        result.update(batch)
    return result
