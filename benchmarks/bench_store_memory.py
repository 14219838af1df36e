"""Peak memory of ``validate`` on an object in an S3-compatible store vs the same file on disk.

Writes one parquet file of random float32 columns (with a few NaN and an
outlier), uploads it to a moto S3 server started as its own process on a
loopback port, and runs ``validate`` as a child process on the local file and on
the ``s3://`` URL (``AWS_ENDPOINT_URL`` pointing at the server). Each child's peak
resident memory is its own ``VmHWM``, read as it exits (:func:`_harness.run_python`;
``wait4``'s ``ru_maxrss`` would carry this process's high-water mark into it). The
target: the store run within 1.2x the local one.

Run: ``.venv/bin/python benchmarks/bench_store_memory.py [--rows N] [--cols K]``
(needs the s3 and test-s3 extras).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_file(path: Path, rows: int, cols: int, row_group: int) -> None:
    """Random float32 columns, a few faults, written one row group at a time."""
    rng = np.random.default_rng(0)
    schema = pa.schema([(f"f{j}", pa.float32()) for j in range(cols)])
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for start in range(0, rows, row_group):
            n = min(row_group, rows - start)
            block = rng.normal(size=(n, cols)).astype(np.float32)
            block[rng.integers(0, n, 3), 0] = np.nan
            block[rng.integers(0, n, 1), 1] = 1e6
            writer.write_table(pa.Table.from_arrays(list(block.T), schema=schema))


def peak_rss(args: list[str]) -> tuple[float, float, int]:
    """Run ``validate`` in a child; its own peak RSS in MB, wall seconds and exit code."""
    child = h.run_python(
        ["-m", "pipeline", *args, "--no-progress", "--format", "json", "-o", os.devnull],
        ok=(0, 1),  # 1: the data failed the gate, as it should (NaN, an outlier)
    )
    assert child.peak_rss_mb is not None
    return child.peak_rss_mb, child.wall_s, child.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(host: str, port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the moto server did not start on {host}:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--row-group", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=1)
    opts = parser.parse_args()

    from pyarrow.fs import S3FileSystem

    host, port = "127.0.0.1", _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(host, port)
    key, secret = "bench-key", "bench-secret"
    s3 = S3FileSystem(
        access_key=key, secret_key=secret, endpoint_override=f"{host}:{port}",
        scheme="http", region="us-east-1", allow_bucket_creation=True,
    )  # fmt: skip
    s3.create_dir("bench")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.parquet"
        write_file(path, opts.rows, opts.cols, opts.row_group)
        size = path.stat().st_size
        with path.open("rb") as src, s3.open_output_stream("bench/big.parquet") as dst:
            while block := src.read(16 << 20):
                dst.write(block)
        # The children inherit this process's environment: the server's endpoint and keys.
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
        )  # fmt: skip
        runs: dict[str, list[tuple[float, float, int]]] = {"local": [], "s3": []}
        for _ in range(opts.repeat):  # interleaved, so drift in the machine hits both
            runs["local"].append(peak_rss([str(path)]))
            runs["s3"].append(peak_rss(["s3://bench/big.parquet"]))
    server.terminate()
    server.wait()
    print(f"{opts.rows:,} rows x {opts.cols} float32, {size / 1e6:.0f} MB parquet")
    print("| read from | peak RSS (MB) | wall (s) | exit |")
    print("|---|---:|---:|---:|")
    best = {}
    for name, found in runs.items():
        rss = min(r[0] for r in found)
        wall = min(r[1] for r in found)
        best[name] = rss
        print(f"| {name} | {rss:.0f} | {wall:.1f} | {found[0][2]} |")
    print(f"store / local peak RSS: {best['s3'] / best['local']:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
