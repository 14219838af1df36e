"""Shared fixtures: small tables written to tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"


@pytest.fixture(scope="session")
def faults() -> dict:
    """Ground truth of the shipped sample files (written by sample_data/generate.py)."""
    return json.loads((SAMPLE_DATA / "faults.json").read_text())


def write_parquet(path: Path, table: pa.Table, row_group_size: int = 1000) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture
def dirty_table() -> pa.Table:
    """2,000 rows with NaN, inf, an outlier, a constant and a near-constant column."""
    rng = np.random.default_rng(7)
    n = 2000
    x = rng.normal(10, 2, n)
    x[[3, 500, 1999]] = np.nan
    x[[42]] = np.inf
    x[[43]] = -np.inf
    y = rng.uniform(0, 1, n)
    y[1234] = 1e6
    near = np.zeros(n)
    near[:5] = 1.0
    return pa.table(
        {
            "x": x,
            "y": y,
            "k": np.full(n, 3, dtype=np.int64),
            "near": near,
            "cat": pa.array(rng.choice(["a", "b", "c"], n)),
            "label": rng.choice([0, 1], n, p=[0.97, 0.03]),
        }
    )


@pytest.fixture
def dirty_parquet(tmp_path: Path, dirty_table: pa.Table) -> Path:
    return write_parquet(tmp_path / "dirty.parquet", dirty_table, row_group_size=300)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray for the whole session: 2 CPUs, 200 MB object store, no dashboard."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield ray
    ray.shutdown()
