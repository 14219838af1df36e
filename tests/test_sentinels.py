"""pipeline.sentinels: placeholder values that repeat apart from a column's bulk.

First :func:`find_sentinels` on value counts (what the merged profile holds):
placeholders below, above, in pairs, and a zero below a positive column are
found; a count's zero, a top code, a common zero, a skewed column's repeated
maximum and a ternary column are not. Then through :func:`pipeline.validate`:
sentinel rows are quarantined with reason ``sentinel`` and their value, the
finding names the value and the count, and those rows are not also outliers.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.quarantine import REASONS
from pipeline.sentinels import find_sentinels
from tests.conftest import write_parquet

N = 2000


def found(x: np.ndarray) -> list[tuple[float, int, str]]:
    """``(value, count, side)`` of each sentinel of the column ``x``."""
    values, counts = np.unique(np.asarray(x, dtype=np.float64), return_counts=True)
    return [(s.value, s.count, s.side) for s in find_sentinels(values, counts)]


def with_values(x: np.ndarray, value: float, count: int) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float64), np.full(count, value)])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- found ---------------------------------------------------------------------------------------
def test_repeated_minus_999_below_ages(rng):
    ages = rng.integers(0, 101, N)
    assert found(with_values(ages, -999, 25)) == [(-999.0, 25, "low")]


def test_repeated_9999_above_ages(rng):
    ages = rng.integers(0, 101, N)
    assert found(with_values(ages, 9999, 25)) == [(9999.0, 25, "high")]


def test_a_98_99_dont_know_pair_above_education_is_one_run(rng):
    years = rng.integers(0, 18, N)
    x = with_values(with_values(years, 98, 10), 99, 15)
    assert found(x) == [(99.0, 15, "high"), (98.0, 10, "high")]


def test_a_single_zero_below_lengths_counts_from_one_row(rng):
    lengths = rng.uniform(3, 11, N).round(1)
    assert found(with_values(lengths, 0, 1)) == [(0.0, 1, "low")]


def test_a_single_zero_below_integer_lengths(rng):
    lengths = rng.integers(3, 12, N)
    assert found(with_values(lengths, 0, 1)) == [(0.0, 1, "low")]


def test_minus_one_below_a_non_negative_column_with_many_values(rng):
    durations = rng.gamma(2, 10, N).round(2)
    assert found(with_values(durations, -1, 20)) == [(-1.0, 20, "low")]


@pytest.mark.parametrize("count", [1, 2])
def test_a_lone_minus_999_below_incomes_counts_from_one_row(rng, count):
    """Two -999 among 500 incomes were no sentinel, and kept the column off its log scale."""
    incomes = rng.lognormal(10, 1, 500)
    assert found(with_values(incomes, -999, count)) == [(-999.0, count, "low")]


def test_a_lone_minus_one_below_a_non_negative_column_is_no_sentinel(rng):
    durations = rng.gamma(2, 10, N).round(2)
    assert found(with_values(durations, -1, 2)) == []


def test_a_lone_minus_999_below_a_column_that_goes_negative_is_no_sentinel(rng):
    temperatures = rng.normal(10, 12, N).round(1)  # down to about -30
    assert found(with_values(temperatures, -999, 2)) == []


# -- not found -----------------------------------------------------------------------------------
def test_a_count_columns_rare_zero_next_to_its_one_is_no_sentinel(rng):
    counts = rng.integers(1, 11, N)
    counts[:3] = 0  # rare, but one spacing from the 1s
    assert found(counts) == []


def test_a_top_coded_age_next_to_89_is_no_sentinel(rng):
    ages = rng.integers(18, 90, N)
    ages[:50] = 90  # 2.5% top-coded at 90, right next to 89
    assert found(ages) == []


def test_a_common_zero_below_a_positive_column_is_no_sentinel(rng):
    amounts = rng.lognormal(2, 0.5, N)
    amounts[: N // 5] = 0  # 20% zeros: a real "none"
    assert found(amounts) == []


def test_a_skewed_columns_repeated_maximum_is_no_sentinel(rng):
    # Incomes rounded to whole units and capped at their 99th percentile: the cap repeats
    # far above the median on a linear scale, but not on the log scale the column lives on.
    incomes = np.round(rng.lognormal(10, 1, N))
    cap = np.quantile(incomes, 0.99)
    incomes[incomes > cap] = cap
    assert (incomes == cap).sum() >= 20
    assert found(incomes) == []


@pytest.mark.parametrize("p", [(0.1, 0.8, 0.1), (0.02, 0.96, 0.02)], ids=["balanced", "rare"])
def test_a_ternary_column_is_no_sentinel(rng, p):
    assert found(rng.choice([-1.0, 0.0, 1.0], N, p=p)) == []


def test_few_distinct_values_give_no_sentinels():
    assert found(np.array([1.0, 1.0, 1.0, -999.0, -999.0, -999.0])) == []


# -- through validate ----------------------------------------------------------------------------
def run(tmp_path, columns: dict[str, np.ndarray]):
    """Validate a parquet table of ``columns``; the report, quarantine and clean tables."""
    data = write_parquet(tmp_path / "t.parquet", pa.table(columns), row_group_size=500)
    q, c = tmp_path / "q.parquet", tmp_path / "c.parquet"
    report = validate(data, quarantine=q, clean=c, batch_size=300)
    return report, pq.read_table(q), pq.read_table(c)


def reasons_of(quarantined: pa.Table) -> dict[int, list[tuple[str, str, str]]]:
    """Row id -> its ``(check, column, value)`` reasons."""
    return {
        row: [(r["check"], r["column"], r["value"]) for r in reasons]
        for row, reasons in zip(
            quarantined.column("_row_id").to_pylist(),
            quarantined.column(REASONS).to_pylist(),
            strict=True,
        )
    }


def finding(report, check: str, column: str | None):
    matches = [f for f in report.findings if f.check == check and f.column == column]
    assert len(matches) == 1, [(f.check, f.column) for f in report.findings]
    return matches[0]


def test_sentinel_rows_are_quarantined_with_their_value(tmp_path, rng):
    age = rng.integers(18, 90, N)  # int64: the value shows as -999
    rows = [10, 20, 30, 40]
    age[rows] = -999
    report, quarantined, clean = run(tmp_path, {"age": age, "h": rng.normal(170, 10, N)})
    assert reasons_of(quarantined) == {r: [("sentinel", "age", "-999")] for r in rows}
    assert not set(rows) & set(clean.column("_row_id").to_pylist())
    assert clean.num_rows + quarantined.num_rows == N
    f = finding(report, "sentinel", "age")
    assert (f.count, f.severity, f.sample_rows) == (4, "error", rows)
    assert "-999" in f.message and " 4 " in f.message
    # far beyond the fences too, but counted once, as what it is
    assert not [f for f in report.findings if f.check == "outlier"]
    assert report.rows_quarantined == 4 and not report.passed
    assert [(s.value, s.count) for s in report.sentinels["age"]] == [(-999.0, 4)]


def test_a_zero_in_a_positive_measurement_is_a_sentinel(tmp_path, rng):
    length = rng.uniform(3, 11, N).round(1)
    length[123] = 0.0
    report, quarantined, _ = run(tmp_path, {"length": length})
    assert reasons_of(quarantined) == {123: [("sentinel", "length", "0")]}
    f = finding(report, "sentinel", "length")
    assert f.count == 1 and "placeholder 0" in f.message


def test_a_high_placeholder_pair_quarantines_both_values(tmp_path, rng):
    years = rng.integers(0, 18, N).astype(np.float64)
    years[[1, 2, 3]] = 98.0
    years[[4, 5, 6, 7]] = 99.0
    report, quarantined, _ = run(tmp_path, {"years": years})
    reasons = reasons_of(quarantined)
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]
    assert {v for rs in reasons.values() for _, _, v in rs} == {"98", "99"}
    f = finding(report, "sentinel", "years")
    assert f.count == 7 and "98" in f.message and "99" in f.message
    assert not [f for f in report.findings if f.check == "outlier"]


def test_a_placeholder_pairs_message_gives_each_values_count(tmp_path, rng):
    years = rng.integers(0, 18, N).astype(np.float64)
    years[[1, 2, 3]] = 98.0
    years[[4, 5, 6, 7]] = 99.0
    report, _, _ = run(tmp_path, {"years": years})
    message = finding(report, "sentinel", "years").message
    # the numbers the message gives besides the dataset's path and the example rows
    text = re.sub(r"\(rows [^)]*\)", "", message.replace(report.dataset, ""))
    assert {"98", "3", "99", "4"} <= set(re.findall(r"\b\d+\b", text))


def test_healthy_columns_have_no_sentinels(tmp_path, rng):
    columns = {
        "age": rng.integers(18, 90, N),
        "income": rng.lognormal(10, 0.5, N),
        "visits": rng.poisson(2, N),
        "signal": rng.choice([-1, 0, 1], N),
    }
    report, quarantined, _ = run(tmp_path, columns)
    assert report.sentinels == {} and quarantined.num_rows == 0
