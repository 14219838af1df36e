"""The command line answers pyarrow's pandas probe without importing pandas, and only there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline._pandas_probe import defer_pandas_probe

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "credit.parquet"


def _child(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_process_with_pandas_loaded_is_left_alone():
    import pandas  # noqa: F401  (loaded in the test runner anyway)

    finders = list(sys.meta_path)
    assert defer_pandas_probe() is False
    assert sys.meta_path == finders


def test_conversions_skip_pandas_until_it_is_imported_then_treat_its_objects_as_pandas():
    code = f"""
import sys
from pipeline._pandas_probe import defer_pandas_probe
print(defer_pandas_probe())
import pyarrow as pa, pyarrow.parquet as pq
from pipeline.source import Source
pa.array([1.5, None]); pq.read_table({str(SAMPLE)!r}).to_pylist()[:1]
print(sum(b.num_rows for b in Source({str(SAMPLE)!r}).iter_batches()), "pandas" in sys.modules)
import pandas as pd
category = pd.Series(["a"], dtype="category")
print(pa.array(pd.Series([1.0, None])).null_count, pa.array(category).type)
print(pa.Table.from_pandas(pd.DataFrame({{"x": [1.0, None]}})).column("x").null_count)
"""
    lines = _child(code).splitlines()
    assert lines[0] == "True"
    assert lines[1] == "20000 False"
    null_count, typ = lines[2].split(" ", 1)
    assert null_count == "1" and typ.startswith("dictionary<")
    assert lines[3] == "1"


def _report(prelude: str, *args: str) -> tuple[dict, bool]:
    code = f"""
import sys, atexit
{prelude}
atexit.register(lambda: print("pandas" in sys.modules, file=sys.stderr))
from pipeline.cli import main
sys.argv = ["validate", {str(SAMPLE)!r}, "--format", "json", *{list(args)!r}]
main()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr  # the sample data fails the gate
    report = json.loads(out.stdout)
    report.pop("notes", None)  # durations
    return report, out.stderr.strip().splitlines()[-1] == "True"


def test_the_command_without_a_schema_loads_no_pandas_and_reports_the_same():
    deferred, loaded = _report("")
    assert not loaded
    as_before, loaded_before = _report("import pandas")
    assert loaded_before
    assert deferred == as_before


def test_the_command_with_a_schema_loads_pandas_as_before():
    schema = str(SAMPLE.parent.parent / "schemas" / "credit.yaml")
    _, loaded = _report("", "--schema", schema)
    assert loaded
