"""Datasets and outputs in an S3-compatible store, against a real server on a loopback port.

The server is moto's standalone server (``moto[server]``), reached through
pyarrow's ``S3FileSystem`` with ``endpoint_override`` and through ``s3://`` URLs
with ``AWS_ENDPOINT_URL``, exactly as one would point batchguard at MinIO or S3.
The store must give the same findings, row ids and profile as the local disk,
and its failures (missing key or bucket, denied credentials, a server that stops
mid-read) one line naming the URL, exit 2, and no object under a final key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline
from pipeline.errors import SourceError
from pipeline.source import Source
from tests.conftest import ROOT
from tests.test_sources_memory import _table, quarantined_ids, same, stats, summary

moto_server = pytest.importorskip("moto.server", reason="needs the s3 extra (moto[server])")
pafs = pytest.importorskip("pyarrow.fs")

BUCKET = "batchguard-test"
KEY, SECRET = "testing-key", "testing-secret-0a1b2c"


class Server:
    """A moto S3 server on 127.0.0.1 and a pyarrow S3FileSystem pointed at it."""

    def __init__(self) -> None:
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"{host}:{port}"
        self.fs = self.filesystem(KEY, SECRET)

    def filesystem(self, key: str, secret: str) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=key, secret_key=secret, endpoint_override=self.endpoint,
            scheme="http", region="us-east-1", allow_bucket_creation=True,
        )  # fmt: skip

    def env(self, **extra: str) -> dict[str, str]:
        """What a user sets to point the s3:// URLs at this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=f"http://{self.endpoint}", AWS_ACCESS_KEY_ID=KEY,
            AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
        )  # fmt: skip
        env.update(extra)
        return env

    def keys(self, prefix: str) -> list[str]:
        selector = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def require_auth(self, on: bool) -> None:
        """moto's own switch: check signatures from now on (or stop checking)."""
        count = b"0" if on else b"inf"
        url = f"http://{self.endpoint}/moto-api/reset-auth"
        # text/plain: a form body would be parsed away before moto reads it
        request = urllib.request.Request(
            url, data=count, method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request).read()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Server()
    server.fs.create_dir(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return _table()


@pytest.fixture(scope="module")
def local(table, tmp_path_factory):
    """The dataset as a hive-partitioned local folder, and what validate says of it."""
    root = tmp_path_factory.mktemp("local") / "d"
    for part, piece in (("1", table.slice(0, 1000)), ("2", table.slice(1000))):
        (root / f"p={part}").mkdir(parents=True)
        pq.write_table(piece, root / f"p={part}" / "a.parquet", row_group_size=700)
    out = root.parent / "q.parquet"
    report = pipeline.validate(root, label="y", quarantine=out)
    return root, summary(report), quarantined_ids(out), stats(pipeline.profile(root))


@pytest.fixture(scope="module")
def in_s3(s3, local):
    """The same folder uploaded under s3://BUCKET/d/."""
    root = local[0]
    for path in sorted(root.rglob("*.parquet")):
        rel = path.relative_to(root).as_posix()
        with s3.fs.open_output_stream(f"{BUCKET}/d/{rel}") as out:
            out.write(path.read_bytes())
    return f"{BUCKET}/d"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--no-progress"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip


@pytest.fixture
def s3_env(s3, monkeypatch):
    """The s3:// URLs of this process point at the test server."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def test_a_folder_in_the_store_gives_the_local_findings_row_ids_and_profile(
    s3, s3_env, local, in_s3
):
    _, expected, ids, profile = local
    src = Source(in_s3, filesystem=s3.fs, batch_size=512)
    report = pipeline.validate(src, label="y", quarantine=f"s3://{BUCKET}/out/q.parquet")
    assert report.dataset == f"s3://{in_s3}"
    assert same(summary(report), expected)
    with s3.fs.open_input_file(f"{BUCKET}/out/q.parquet") as fh:
        assert pq.read_table(fh).column("_row_id").to_pylist() == ids
    assert same(stats(pipeline.profile(Source(in_s3, filesystem=s3.fs))), profile)


def test_the_command_line_reads_and_writes_s3_urls(s3, local, in_s3, tmp_path):
    _, expected, ids, profile = local
    out = f"s3://{BUCKET}/cli"
    done = run_cli(
        f"s3://{in_s3}/", "--label", "y", "--format", "json",
        "--quarantine", f"{out}/q.parquet", "--clean", f"{out}/c.arrow",
        "--scores", f"{out}/s.parquet", "--report", f"{out}/r.html",
        "--profile-out", f"{out}/p.json", "-o", f"{out}/report.json",
        env=s3.env(),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the data fails the gate
    assert s3.keys("cli") == sorted(
        f"{BUCKET}/cli/{name}"
        for name in ("q.parquet", "c.arrow", "s.parquet", "r.html", "p.json", "report.json")
    )  # no temporary key left beside them
    with s3.fs.open_input_stream(f"{BUCKET}/cli/report.json") as fh:
        report = json.loads(fh.read())
    assert report["rows"] == expected["rows"]
    found = [(f["check"], f["column"], f["count"], f["sample_rows"]) for f in report["findings"]]
    assert found == expected["findings"]
    assert report["outputs"]["quarantine"] == f"{out}/q.parquet"
    with s3.fs.open_input_file(f"{BUCKET}/cli/q.parquet") as fh:
        assert pq.read_table(fh).column("_row_id").to_pylist() == ids
    with s3.fs.open_input_file(f"{BUCKET}/cli/c.arrow") as fh:
        clean = pa.ipc.open_file(fh).read_all()
    assert clean.num_rows == expected["rows"] - expected["rows_quarantined"]
    with s3.fs.open_input_stream(f"{BUCKET}/cli/p.json") as fh:
        assert json.loads(fh.read())["rows"] == profile["rows"]


def test_one_object_csv_and_arrow_files_read_from_the_store(s3, table, tmp_path):
    expected = summary(pipeline.validate(table, label="y"))
    import pyarrow.csv as pcsv

    pq.write_table(table, f"{BUCKET}/one/t.parquet", filesystem=s3.fs, row_group_size=500)
    with s3.fs.open_output_stream(f"{BUCKET}/one/t.arrow") as out:
        with pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table, max_chunksize=900)
    pcsv.write_csv(table, tmp_path / "t.csv")  # CSV writes NaN as an empty field: compare files
    with s3.fs.open_output_stream(f"{BUCKET}/one/t.csv") as out:
        out.write((tmp_path / "t.csv").read_bytes())
    for name in ("t.parquet", "t.arrow"):
        report = pipeline.validate(Source(f"{BUCKET}/one/{name}", filesystem=s3.fs), label="y")
        assert same(summary(report), expected), name
    report = pipeline.validate(Source(f"{BUCKET}/one/t.csv", filesystem=s3.fs), label="y")
    assert same(summary(report), summary(pipeline.validate(tmp_path / "t.csv", label="y")))
    with s3.fs.open_output_stream(f"{BUCKET}/one/t.csv.gz") as out:  # gzips as it writes
        out.write((tmp_path / "t.csv").read_bytes())
    report = pipeline.validate(Source(f"{BUCKET}/one/t.csv.gz", filesystem=s3.fs), label="y")
    assert same(summary(report), summary(pipeline.validate(tmp_path / "t.csv", label="y")))


def test_credentials_in_a_url_are_never_shown(s3, in_s3, tmp_path):
    report_file = tmp_path / "r.json"
    url = f"s3://{KEY}:{SECRET}@{in_s3}/?endpoint_override={s3.endpoint}&scheme=http"
    done = run_cli(
        url, "--label", "y", "--format", "json", "-o", str(report_file),
        "--profile-out", str(tmp_path / "p.json"), env=s3.env(AWS_SECRET_ACCESS_KEY="unused"),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    written = report_file.read_text() + (tmp_path / "p.json").read_text()
    assert SECRET not in written + done.stdout + done.stderr
    assert json.loads(report_file.read_text())["dataset"].startswith("s3://***@")


def test_a_missing_key_and_a_missing_bucket_are_one_line_exit_2(s3, tmp_path):
    for url, says in (
        (f"s3://{BUCKET}/nothing/here.parquet", "no such object or prefix"),
        ("s3://no-such-bucket-here/d/", "the bucket does not exist"),
    ):
        done = run_cli(url, "--quarantine", str(tmp_path / "q.parquet"), env=s3.env())
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and url in lines[0] and says in lines[0], done.stderr
        assert not (tmp_path / "q.parquet").exists()
    done = run_cli(
        f"s3://{BUCKET}/d/", "--quarantine", "s3://no-such-bucket-here/q.parquet", env=s3.env()
    )
    assert done.returncode == 2 and "the bucket does not exist" in done.stderr


def test_denied_credentials_are_one_line_exit_2_and_leave_no_output(s3, in_s3, tmp_path):
    s3.require_auth(True)
    try:
        done = run_cli(
            f"s3://{in_s3}/", "--quarantine", str(tmp_path / "q.parquet"),
            env=s3.env(AWS_ACCESS_KEY_ID="AKIAWRONGWRONGWRONG1"),
        )  # fmt: skip
    finally:
        s3.require_auth(False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "access denied" in lines[0] and f"s3://{in_s3}/" in lines[0]
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_stops_mid_read_is_one_line_and_no_final_output(s3, s3_env, table, tmp_path):
    """A second server on the same store: stopped after some of the data was served."""
    big = pa.concat_tables([table] * 20)
    pq.write_table(big, f"{BUCKET}/big/t.parquet", filesystem=s3.fs, row_group_size=500)
    doomed = Server()
    served, stop = [0], threading.Event()

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "GET /" in record.getMessage() and "big/t.parquet" in record.getMessage():
                served[0] += 1
                if served[0] == 30:
                    stop.set()

    log = logging.getLogger("werkzeug")
    level = log.level
    log.setLevel(logging.INFO)
    counter = Counter()
    log.addHandler(counter)
    threading.Thread(target=lambda: stop.wait(120) and doomed.stop(), daemon=True).start()
    out = tmp_path / "q.parquet"
    try:
        with pytest.raises(SourceError) as info:
            pipeline.validate(
                Source(f"{BUCKET}/big/t.parquet", filesystem=doomed.fs, batch_size=500),
                label="y", quarantine=out, clean=f"s3://{BUCKET}/big-out/c.parquet",
            )  # fmt: skip
    finally:
        log.removeHandler(counter)
        log.setLevel(level)
        stop.set()
    message = str(info.value)
    assert "\n" not in message and "did not answer" in message
    assert f"s3://{BUCKET}/big/t.parquet" in message
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert s3.keys("big-out") == []  # nothing under the final key, nor a temporary one


def test_an_fsspec_url_is_read_like_a_local_file(table, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    with memory.open("/bg-test/t.parquet", "wb") as fh:
        pq.write_table(table, fh, row_group_size=800)
    try:
        report = pipeline.validate("memory://bg-test/t.parquet", label="y")
    finally:
        memory.rm("/bg-test", recursive=True)
    assert same(summary(report), summary(pipeline.validate(table, label="y")))
    assert report.dataset == "memory://bg-test/t.parquet"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_engine_on_an_s3_folder_gives_the_local_findings(s3, local, in_s3):
    pytest.importorskip("ray")
    _, expected, _, _ = local
    report = pipeline.validate(Source(in_s3, filesystem=s3.fs), label="y", engine="ray")
    assert same(summary(report), expected)


def test_store_reads_are_range_requests_not_whole_objects(s3):
    """Every GET of a parquet object asks for a byte range (206), never the whole object."""
    wide = pa.table({f"c{i}": np.random.default_rng(i).normal(size=20000) for i in range(8)})
    pq.write_table(wide, f"{BUCKET}/wide/t.parquet", filesystem=s3.fs, row_group_size=5000)
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())  # werkzeug's colours
            if "wide/t.parquet" in line:
                seen.append(line)

    log = logging.getLogger("werkzeug")
    level, capture = log.level, Capture()
    log.setLevel(logging.INFO)
    log.addHandler(capture)
    try:
        src = Source(f"{BUCKET}/wide/t.parquet", filesystem=s3.fs)
        batches = list(src.iter_batches(columns=["c3"], chunks=[src.chunks()[1]]))
    finally:
        log.removeHandler(capture)
        log.setLevel(level)
    assert sum(b.num_rows for b in batches) == 5000
    gets = [line for line in seen if '"GET /' in line]
    assert gets and all('" 206 ' in line for line in gets), gets
    # the footer, then one column chunk: a few requests, not one per row group and column
    assert len(gets) <= 4, gets
