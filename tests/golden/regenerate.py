"""Write the golden outputs of ``validate`` on the shipped sample data.

``tests/test_golden.py`` runs the command the same way and compares what it
writes with the files kept here, byte for byte after :func:`normalise`. They
were first written by the release before the "one house" refactoring, so the
test shows that the refactoring left every output as it was.

Run this only when an intended change alters an output (a bug fix, a new
field, a reworded message), and say in the commit which outputs changed and
why::

    python tests/golden/regenerate.py            # rewrite tests/golden/<case>/
    git diff tests/golden                        # read every change before committing

It imports ``pipeline`` as Python finds it, so ``PYTHONPATH=<other checkout>``
writes the goldens of another checkout's code (the first ones came from a
worktree of the release before the refactoring).

For each case (each sample file with its schema, and without one, with the
label from the Makefile's ``demo`` target) the command runs once per
``--format``, each time also writing ``--quarantine``, ``--clean`` and
``--report``. Kept per case:

* ``<format>.txt``: stdout of ``--format <format>`` (text, json, markdown,
  junit, github);
* ``exit.json``: each format's exit code and stderr (the verdict line);
* ``step_summary.md``: what ``--format github`` appends to
  ``$GITHUB_STEP_SUMMARY``;
* ``report.html``: the HTML report;
* ``quarantine.json``: the quarantine file's columns, then each row's
  ``_row_id`` and ``_reasons``, in file order;
* ``clean.json``: the clean file's columns, its row count and a digest of its
  row ids.

The command runs in a scratch folder on copies of the sample files, so every
path it prints is relative; only elapsed times are normalised.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
#: the stdout formats, in the order they run (``--format`` choices)
FORMATS = ("text", "json", "markdown", "junit", "github")


@dataclass(frozen=True)
class Case:
    """One ``validate`` invocation on a sample file."""

    name: str
    data: str
    how: tuple[str, ...]

    @property
    def stem(self) -> str:
        return Path(self.data).stem


def cases() -> list[Case]:
    """Each sample file with its schema, and without one (label as in ``make demo``)."""
    found = []
    for stem, label in (("credit", "default"), ("sensors", "failure"), ("clean", "segment")):
        data = f"sample_data/{stem}.parquet"
        if not (ROOT / data).exists():
            continue
        if (ROOT / "schemas" / f"{stem}.yaml").exists():
            found.append(Case(f"{stem}-schema", data, ("--schema", f"schemas/{stem}.yaml")))
        found.append(Case(f"{stem}-label", data, ("--label", label)))
    return found


def normalise(text: str) -> str:
    """``text`` without what varies between runs: elapsed times."""
    # the HTML report's run facts: <dt>elapsed</dt><dd class="mono">1.19 s</dd>
    text = re.sub(r"(<dt>elapsed</dt><dd[^>]*>)[^<]*(</dd>)", r"\1<elapsed>\2", text)
    # JUnit's time attributes of <testsuites> and <testsuite> (test cases say time="0")
    return re.sub(r'(<testsuites? [^>]*\btime=")[^"]*(")', r"\1<elapsed>\2", text)


def _schema(table) -> list[list[str]]:
    return [[field.name, str(field.type)] for field in table.schema]


def _quarantine(path: Path) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ids = table.column("_row_id").to_pylist()
    reasons = table.column("_reasons").to_pylist()
    # One row a line, so that a changed row shows as one changed line in a diff.
    lines = [
        json.dumps([row_id, why], sort_keys=True) for row_id, why in zip(ids, reasons, strict=True)
    ]
    return (
        "{\n"
        f'"columns": {json.dumps(_schema(table))},\n'
        f'"rows": {len(ids)},\n'
        '"row_ids_and_reasons": [\n' + ",\n".join(lines) + "\n]\n}\n"
    )


def _clean(path: Path) -> str:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ids = np.ascontiguousarray(table.column("_row_id").to_numpy(), dtype="<i8")
    return (
        "{\n"
        f'"columns": {json.dumps(_schema(table))},\n'
        f'"rows": {table.num_rows},\n'
        f'"row_ids_sha256": "{hashlib.sha256(ids.tobytes()).hexdigest()}"\n'
        "}\n"
    )


def _invoke(case: Case, fmt: str) -> tuple[int, str, str, str]:
    """Run ``validate`` in this process; exit code, stdout, stderr, step summary."""
    from click.testing import CliRunner

    from pipeline.cli import validate_command

    summary = Path("step_summary.md")
    # Nothing from an earlier run may pass for this run's output.
    for old in (summary, *_written(case)):
        old.unlink(missing_ok=True)
    args = [
        case.data, *case.how, "--format", fmt,
        "--quarantine", f"{case.stem}.quarantine.parquet",
        "--clean", f"{case.stem}.clean.parquet",
        "--report", f"{case.stem}.report.html",
        "--no-progress",
    ]  # fmt: skip
    # Only the github format reads $GITHUB_STEP_SUMMARY; pointing it here also keeps
    # a CI job's own summary out of the test.
    env = {"GITHUB_STEP_SUMMARY": str(summary) if fmt == "github" else None}
    result = CliRunner().invoke(validate_command, args, prog_name="validate", env=env)
    step = _text(summary) if summary.exists() else ""
    return result.exit_code, result.stdout, result.stderr, step


def _written(case: Case) -> tuple[Path, Path, Path]:
    """The report, quarantine and clean files that a run of ``case`` writes."""
    stem = case.stem
    return (
        Path(f"{stem}.report.html"),
        Path(f"{stem}.quarantine.parquet"),
        Path(f"{stem}.clean.parquet"),
    )


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _read(path: Path, read: Callable[[Path], str]) -> str:
    # A run that failed wrote nothing: say so, and exit.json says why.
    return read(path) if path.exists() else f"{path} was not written\n"


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def outputs(case: Case, out: Path) -> dict[str, str]:
    """Every golden file of ``case`` (file name -> normalised text), written under ``out``.

    The command runs inside ``out`` on copies of the sample file and its schema, so
    that every path it prints is relative and the same on every machine.
    """
    for name in (case.data, *(a for a in case.how if a.startswith("schemas/"))):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, out / name)
    files: dict[str, str] = {}
    codes = {}
    with _inside(out):
        for fmt in FORMATS:
            code, stdout, stderr, step = _invoke(case, fmt)
            codes[fmt] = {"exit_code": code, "stderr": stderr}
            files[f"{fmt}.txt"] = stdout
            if fmt == "github":
                files["step_summary.md"] = step
        files["exit.json"] = json.dumps(codes, indent=1) + "\n"
        report, quarantine, clean = _written(case)
        files["report.html"] = _read(report, _text)
        files["quarantine.json"] = _read(quarantine, _quarantine)
        files["clean.json"] = _read(clean, _clean)
    return {name: normalise(text) for name, text in files.items()}


def stored(case: Case) -> Iterator[tuple[str, str]]:
    """The golden files of ``case`` on disk (file name, text)."""
    for path in sorted((GOLDEN / case.name).iterdir()):
        yield path.name, _text(path)


def main() -> None:
    import pipeline

    print(f"pipeline from {Path(pipeline.__file__).parent}", file=sys.stderr)
    for case in cases():
        target = GOLDEN / case.name
        with tempfile.TemporaryDirectory() as tmp:
            files = outputs(case, Path(tmp))
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for name, text in files.items():
            (target / name).write_text(text, encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT)}/ ({len(files)} files)", file=sys.stderr)


if __name__ == "__main__":
    main()
