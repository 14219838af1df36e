"""The CI integration files: the pre-commit hooks run, the example workflow gates training."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SAMPLE_DATA

HOOKS = ROOT / ".pre-commit-hooks.yaml"
WORKFLOW = ROOT / "examples" / "github-workflow.yml"


@pytest.fixture(scope="module")
def hooks() -> dict[str, dict]:
    return {hook["id"]: hook for hook in yaml.safe_load(HOOKS.read_text())}


def _env() -> dict[str, str]:
    # pre-commit runs the entry with the hook's environment first on PATH;
    # here that is the interpreter running the tests, where `validate` is installed.
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def _run_hook(hook: dict, files: list[str]) -> subprocess.CompletedProcess:
    """Run a hook the way pre-commit does: entry, then args, then the file names."""
    cmd = shlex.split(hook["entry"]) + list(hook.get("args", []))
    if hook.get("pass_filenames", True):
        cmd += files
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env())


def test_hooks_are_well_formed(hooks):
    assert set(hooks) == {"batchguard-validate", "batchguard-validate-dataset"}
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["entry"] and hook["name"]
        pattern = re.compile(hook["files"])
        assert pattern.search("data/train.parquet") and pattern.search("x.pq")
        assert not pattern.search("train.csv") and not pattern.search("a.parquet.bak")
    assert hooks["batchguard-validate"]["pass_filenames"] is True
    assert hooks["batchguard-validate-dataset"]["pass_filenames"] is False


@pytest.mark.slow  # six command-line runs in subprocesses
@pytest.mark.skipif(sys.platform == "win32", reason="the per-file hook runs through bash")
def test_per_file_hook_validates_each_file_and_keeps_the_worst_status(hooks):
    hook = hooks["batchguard-validate"]
    clean = str(SAMPLE_DATA / "clean.parquet")
    credit = str(SAMPLE_DATA / "credit.parquet")
    ok = _run_hook(hook, [clean])
    assert ok.returncode == 0, ok.stderr
    both = _run_hook(hook, [credit, clean])
    assert both.returncode == 1
    assert both.stderr.count("FAILED: ") == 1 and both.stderr.count("PASSED: ") == 1
    broken = _run_hook(hook, [credit, str(SAMPLE_DATA / "missing.parquet"), clean])
    assert broken.returncode == 2  # usage/input errors outrank a failed gate


def test_dataset_hook_takes_the_dataset_from_args(hooks):
    hook = {**hooks["batchguard-validate-dataset"]}
    hook["args"] = [str(SAMPLE_DATA / "clean.parquet"), "--label", "segment"]
    out = _run_hook(hook, ["ignored.parquet"])
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("PASSED: ")


def test_example_workflow_gates_training_on_validate():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert jobs["train"]["needs"] == "validate-data"
    steps = jobs["validate-data"]["steps"]
    run = next(s["run"] for s in steps if "validate " in s.get("run", ""))
    assert "--format github" in run and "--report" in run and "--schema" in run
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"  # the report is kept when the gate fails
