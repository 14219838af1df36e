"""Delta Lake and Iceberg tables, written by their own libraries: one version's files, its id.

The same rows as a local parquet folder give the same findings, row ids and
profile; the report records the version (Delta) or snapshot (Iceberg) read; a
folder of a table is read as the table, not as every parquet file in it (files
an overwrite removed stay on disk until vacuumed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline
from pipeline.errors import SourceError
from tests.conftest import ROOT
from tests.test_sources_memory import _table, quarantined_ids, same, stats, summary


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return _table()


@pytest.fixture(scope="module")
def expected(table, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    pq.write_table(table, folder / "t.parquet")
    out = folder.parent / "plain-q.parquet"
    report = pipeline.validate(folder, label="y", quarantine=out)
    return summary(report), quarantined_ids(out), stats(pipeline.profile(folder))


def _check(source, expected, tmp_path) -> pipeline.Report:
    report_expected, ids, profile = expected
    out = tmp_path / "q.parquet"
    report = pipeline.validate(source, label="y", quarantine=out, batch_size=1000)
    assert same(summary(report), report_expected)
    assert quarantined_ids(out) == ids
    assert same(stats(pipeline.profile(source)), profile)
    return report


# -- Delta Lake ---------------------------------------------------------------------------------
@pytest.fixture
def delta(table, tmp_path):
    deltalake = pytest.importorskip("deltalake", reason="needs the delta extra")
    root = tmp_path / "delta"
    deltalake.write_deltalake(root, table.slice(0, 100))  # version 0, overwritten below
    deltalake.write_deltalake(root, table, mode="overwrite")  # version 1
    return root


def test_a_delta_folder_is_read_at_its_current_version(delta, expected, tmp_path):
    report = _check(delta, expected, tmp_path)
    assert report.to_dict()["source_version"] == {"format": "delta", "version": 1}
    # version 0's file is still on disk: reading the folder as parquet would count it too
    assert len(list(delta.glob("*.parquet"))) == 2


def test_a_delta_table_object_is_read_at_the_version_it_was_opened(delta, table):
    import deltalake

    old = deltalake.DeltaTable(delta, version=0)
    report = pipeline.validate(old)
    assert report.rows == 100 and report.source_version == {"format": "delta", "version": 0}
    assert report.dataset.startswith("<deltalake.DeltaTable file://")


def test_a_partitioned_delta_table_matches_its_rows(table, tmp_path):
    deltalake = pytest.importorskip("deltalake", reason="needs the delta extra")
    with_part = table.append_column("part", pa.array(["a"] * 1500 + ["b"] * 1500))
    deltalake.write_deltalake(tmp_path / "d", with_part, partition_by=["part"])
    report = pipeline.validate(tmp_path / "d", label="y")
    assert report.rows == table.num_rows
    assert report.profile.stats("part").to_dict()["distinct"] == 2
    assert sorted(f.check for f in report.findings) == sorted(
        f.check for f in pipeline.validate(table, label="y").findings
    )


def test_the_json_report_records_the_delta_version(delta, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", str(delta), "--label", "y", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["source_version"] == {"format": "delta", "version": 1}


# -- Iceberg -----------------------------------------------------------------------------------
@pytest.fixture
def iceberg(table, tmp_path):
    pytest.importorskip("pyiceberg", reason="needs the iceberg extra")
    pytest.importorskip("sqlalchemy", reason="the SQLite catalog needs pyiceberg[sql-sqlite]")
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "test", uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=f"file://{tmp_path / 'wh'}"
    )
    catalog.create_namespace("ns")
    created = catalog.create_table("ns.t", schema=table.schema)
    created.append(table.slice(0, 100))
    created.overwrite(table)
    return catalog.load_table("ns.t"), tmp_path / "wh" / "ns" / "t"


def test_an_iceberg_table_is_read_at_its_current_snapshot(iceberg, expected, tmp_path):
    loaded, _ = iceberg
    report = _check(loaded, expected, tmp_path)
    version = report.to_dict()["source_version"]
    assert version["format"] == "iceberg"
    assert version["snapshot_id"] == loaded.current_snapshot().snapshot_id
    assert version["metadata"] == loaded.metadata_location


def test_an_iceberg_folder_is_read_from_its_newest_metadata(iceberg, expected, tmp_path):
    loaded, folder = iceberg
    report = _check(folder, expected, tmp_path)
    assert report.source_version["snapshot_id"] == loaded.current_snapshot().snapshot_id


def test_rows_an_iceberg_delete_removed_are_not_read(iceberg):
    loaded, _ = iceberg
    from pyiceberg.expressions import EqualTo

    loaded.delete(EqualTo("k", 3))  # copy-on-write by default: rewritten files, no delete files
    report = pipeline.validate(loaded)
    assert report.rows == loaded.scan().to_arrow().num_rows < 3000


def test_without_the_extra_a_table_folder_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "_delta_log").mkdir()
    monkeypatch.setitem(sys.modules, "deltalake", None)  # as if not installed
    with pytest.raises(SourceError, match=r"pip install 'batchguard\[delta\]'"):
        pipeline.validate(tmp_path)
