"""The command line tunes glibc's allocator for its own process, and only there."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from pipeline._malloc import tune_allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_a_users_environment_setting_stands(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert tune_allocator() is False


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_mallopt_takes_the_thresholds():
    # In a child: the setting lasts for the process, so the test runner keeps its own.
    code = "from pipeline._malloc import tune_allocator; print(tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_importing_pipeline_leaves_the_allocator_alone():
    code = "import sys, pipeline, pipeline.validation; print('pipeline._malloc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
