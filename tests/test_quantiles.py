"""exact_quantiles: bit-for-bit numpy results, its passes and fallbacks, bounded memory."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline._quantiles as quantiles_module
from pipeline._quantiles import exact_quantiles


# -- equal to numpy on any data -------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_infinity=False, allow_nan=True),
            st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, np.nan]),  # duplicates and NaN
            st.floats(-1e3, 1e3),
        ),
        max_size=120,
    ),
    cuts=st.lists(st.integers(0, 120), max_size=4),
    percentiles=st.lists(st.floats(0, 100), min_size=1, max_size=4),
    budget=st.sampled_from([0, 3, 40, 1 << 22]),
    guess_after=st.sampled_from([1, 2, 7, 1 << 16]),  # small: brackets narrowed, and missed
    float32=st.booleans(),
)
def test_exact_quantiles_property(
    values: list[float],
    cuts: list[int],
    percentiles: list[float],
    budget: int,
    guess_after: int,
    float32: bool,
) -> None:
    x: np.ndarray = np.array(values, dtype=np.float64)
    if float32:
        with np.errstate(over="ignore"):
            x = x.astype(np.float32)
        x[np.isinf(x)] = np.nan  # beyond float32's range
    chunks = np.split(x, sorted(c for c in cuts if c <= len(x)))
    med, pct, counts = exact_quantiles(
        lambda: ([c] for c in chunks),
        ["x"],
        percentiles,
        budget=budget,
        guess_after=guess_after,
    )
    x = x.astype(np.float64)  # the results are those of the data as float64
    assert counts[0] == np.sum(~np.isnan(x)) and med is not None
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        assert np.isnan(med[0]) and np.isnan(pct).all()
        return
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow alike in both
        np.testing.assert_array_equal(pct[:, 0], np.nanpercentile(x, percentiles))
        np.testing.assert_array_equal(med[0], np.nanmedian(x))


# -- the bracket passes and their fallbacks --------------------------------------------------------
_PERCENTILES = [0.0, 5.0, 25.0, 50.0, 75.0, 99.0, 100.0]


def _reader(columns: list[np.ndarray], rows: int) -> Any:
    n = len(columns[0])
    return lambda: ([c[i : i + rows] for c in columns] for i in range(0, n, rows))


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records each pass: ("adaptive" | "fixed" | "histogram", number of columns read)."""
    seen: list[tuple[str, int]] = []
    run, first_pass = quantiles_module._BracketPass.run, quantiles_module._first_pass

    def spy_run(self: Any, read: Any) -> None:
        seen.append(("adaptive" if self.adaptive else "fixed", len(self.columns)))
        run(self, read)

    def spy_first_pass(read: Any, names: Any, where: str) -> np.ndarray:
        seen.append(("histogram", len(names)))
        return first_pass(read, names, where)

    monkeypatch.setattr(quantiles_module._BracketPass, "run", spy_run)
    monkeypatch.setattr(quantiles_module, "_first_pass", spy_first_pass)
    return seen


def _assert_exact(columns: list[np.ndarray], **kwargs: Any) -> None:
    """exact_quantiles over chunks of the columns equals numpy on the data as float64."""
    rows = kwargs.pop("rows", 1000)
    names = [f"c{j}" for j in range(len(columns))]
    med, pct, counts = exact_quantiles(_reader(columns, rows), names, _PERCENTILES, **kwargs)
    X = np.column_stack([c.astype(np.float64) for c in columns])
    np.testing.assert_array_equal(med, np.nanmedian(X, axis=0))
    np.testing.assert_array_equal(pct, np.nanpercentile(X, _PERCENTILES, axis=0))
    np.testing.assert_array_equal(counts, np.sum(~np.isnan(X), axis=0))


def test_data_in_random_order_takes_one_pass(passes: list[tuple[str, int]]) -> None:
    rng = np.random.default_rng(10)
    n = 30_000
    ties = rng.integers(0, 20, n).astype(np.float64)
    ties[rng.random(n) < 0.2] = np.nan
    columns = [rng.normal(5.0, 0.01, n), rng.standard_t(2, n).astype(np.float32), ties]
    _assert_exact(columns, guess_after=300)
    assert passes == [("adaptive", 3)]


def test_sorted_data_misleads_the_first_guess_then_the_strided_sample_resolves(
    passes: list[tuple[str, int]],
) -> None:
    rng = np.random.default_rng(11)
    n = 30_000
    columns = [
        rng.normal(size=n),  # random order: resolved in the first pass
        np.sort(rng.normal(size=n)).astype(np.float32),  # the first chunk holds the smallest
        np.sort(rng.exponential(size=n))[::-1].copy(),  # ... the largest
        np.arange(n) / n + rng.normal(0, 0.01, n),  # a drift
    ]
    _assert_exact(columns, guess_after=300)
    assert passes == [("adaptive", 4), ("fixed", 3)]  # the second pass reads 3 columns


def test_heavy_duplicates_at_bracket_edges(passes: list[tuple[str, int]]) -> None:
    rng = np.random.default_rng(12)
    n = 40_000
    # Values 0..9 first, then mostly 5s: every bracket edge is a value held thousands of times.
    edges = np.concatenate([rng.integers(0, 10, 2_000), np.full(n - 2_000, 5)]).astype(float)
    edges[rng.permutation(n)[: n // 5]] = rng.integers(0, 10, n // 5)
    # Two values, half and half: the median is the mean of the last 1 and the first 2.
    halves = np.repeat([1.0, 2.0], n // 2)
    rng.shuffle(halves)
    # A constant, but for one value above (a single-valued bracket, and one beside it).
    nearly = np.full(n, 7.0, dtype=np.float32)
    nearly[n - 1] = 8.0
    _assert_exact([edges, halves, nearly], guess_after=500)
    _assert_exact([edges, halves, nearly], guess_after=500, budget=2_000)
    assert passes[0] == ("adaptive", 3)


def test_a_misleading_sample_falls_back_to_histograms(
    monkeypatch: pytest.MonkeyPatch, passes: list[tuple[str, int]]
) -> None:
    # Sorted, so the first guess misses; and every 16th value is huge, which is all the
    # strided sample (positions 0, k, 2k, ... with k >= 16) sees.
    monkeypatch.setattr(quantiles_module, "_STRIDED_SAMPLE", 256)
    n = 1 << 16
    x = np.sort(np.random.default_rng(13).normal(size=n))
    x[::16] = 1e6
    _assert_exact([x], guess_after=256, rows=4_096)
    assert [kind for kind, _ in passes][:3] == ["adaptive", "fixed", "histogram"]


def test_budget_bounds_what_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[int] = []
    feed = quantiles_module._BracketPass._feed

    def spy(self: Any, j: int, x: np.ndarray) -> None:
        feed(self, j, x)
        held.append(self.held)

    monkeypatch.setattr(quantiles_module._BracketPass, "_feed", spy)
    rng = np.random.default_rng(14)
    columns = [rng.normal(size=20_000), np.sort(rng.normal(size=20_000))]
    for budget in (0, 700, 5_000):
        held.clear()
        _assert_exact(columns, guess_after=256, budget=budget, rows=500)
        assert max(held) <= budget  # over budget, a column lets its values go at once


def test_a_column_of_float32_and_float64_chunks_is_exact() -> None:
    # Edges guessed from float32 chunks, then float64 values between two float32 values.
    rng = np.random.default_rng(16)
    a = rng.normal(size=6_000).astype(np.float32)
    b = rng.normal(size=6_000) + 1e-9
    chunks = [[a[:3_000]], [b[:3_000]], [a[3_000:]], [b[3_000:]]]
    med, pct, _ = exact_quantiles(lambda: iter(chunks), ["x"], _PERCENTILES, guess_after=100)
    x = np.concatenate([a.astype(np.float64), b])
    np.testing.assert_array_equal(med, [np.median(x)])
    np.testing.assert_array_equal(pct[:, 0], np.percentile(x, _PERCENTILES))


def test_inf_after_the_first_guess_names_the_column() -> None:
    rng = np.random.default_rng(17)
    x, y = rng.normal(size=5_000), rng.normal(size=5_000)
    y[4_321] = -np.inf
    for nan_too in (False, True):
        y[4_322] = np.nan if nan_too else 0.0
        with pytest.raises(ValueError, match=r"^data: column 'y' contains \+inf or -inf"):
            exact_quantiles(
                _reader([x, y], 500), ["x", "y"], [25.0], where="data: ", guess_after=64
            )


def test_strided_sample_of_tiny_chunks_and_all_nan_positions(
    monkeypatch: pytest.MonkeyPatch, passes: list[tuple[str, int]]
) -> None:
    # Chunks shorter than the stride, and a sample that sees only NaN (every even position):
    # the second pass then brackets everything, and still gives the exact values.
    monkeypatch.setattr(quantiles_module, "_STRIDED_SAMPLE", 2)
    n = 2_000
    x = np.sort(np.random.default_rng(18).normal(size=n))
    x[::2] = np.nan
    ints = np.arange(n)[::-1].copy()  # not float: read as float64
    _assert_exact([x, ints], guess_after=8, rows=3)
    assert [kind for kind, _ in passes] == ["adaptive", "fixed"]
