"""The HTML report in a real headless Chromium: loads without errors, data shows as text.

Chromium comes from Debian's ``chromium`` package. ``make test`` runs
``scripts/ensure-chromium.sh`` first, which installs it when missing (as root,
with apt-get); when it is still missing these tests skip and say why.
Screenshots go to ``test-artifacts/`` at the repository root (gitignored), for
CI to keep as artifacts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.report import write_html
from tests.conftest import ROOT, SAMPLE_DATA
from tests.test_report_html import EVIL, EVIL_IMG, write_hostile

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
ENSURE = ROOT / "scripts" / "ensure-chromium.sh"


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _find_chromium()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", str(ENSURE)], check=False, timeout=900)
        found = _find_chromium()
    if found is None:
        pytest.skip(
            "no headless Chromium on PATH; run `bash scripts/ensure-chromium.sh` as root on "
            "Debian/Ubuntu (or install the chromium package) to run the browser tests"
        )
    return found


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    """Messages the page logged: script errors, CSP violations, failed loads."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        self._in_title = tag == "title" and not self.title

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.title += data


def _dom(chromium: str, tmp_path: Path, page: Path) -> tuple[_Page, subprocess.CompletedProcess]:
    out = _run(chromium, tmp_path / "profile", "--dump-dom", page.resolve().as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    parsed = _Page()
    parsed.feed(out.stdout)
    return parsed, out


def _screenshot(chromium: str, tmp_path: Path, page: Path, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    out = _run(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={target}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
        page.resolve().as_uri(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 10_000  # a rendered page, not a blank one
    return target


def test_script_in_data_shows_as_text(chromium, tmp_path):
    report, page = write_hostile(tmp_path)
    dom, out = _dom(chromium, tmp_path, page)
    # The markup from the data is text in the loaded page ...
    text = "".join(dom.text)
    assert EVIL in text and EVIL_IMG in text
    # ... and never became an element: the page has no script or img at all,
    # and the title is still ours (an executed payload would change or add them).
    assert "script" not in dom.tags and "img" not in dom.tags
    assert dom.title.startswith("batchguard: FAILED: ")
    assert not [a for a in dom.attributes if a.startswith("on")]
    assert _console(out.stderr) == [], _console(out.stderr)
    _screenshot(chromium, tmp_path, page, "html-report-hostile.png")


def test_sample_report_loads_without_errors(chromium, tmp_path):
    report = validate(
        SAMPLE_DATA / "sensors.parquet", label="failure", quarantine=tmp_path / "q.parquet"
    )
    page = tmp_path / "sensors.html"
    write_html(report, page)
    dom, out = _dom(chromium, tmp_path, page)
    assert _console(out.stderr) == [], _console(out.stderr)
    assert dom.tags.count("details") >= len(report.profile.columns)
    assert dom.tags.count("svg") >= 5  # the numeric columns' histograms
    _screenshot(chromium, tmp_path, page, "html-report-sensors.png")


def test_500_column_report_opens(chromium, tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    cols = {f"f{i:03d}": rng.normal(size=n) for i in range(500)}
    for i in range(0, 500, 3):
        cols[f"f{i:03d}"][i % n] = np.nan
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table(cols), path)
    report = validate(path, quarantine=tmp_path / "q.parquet", sample_size=1000)
    page = tmp_path / "wide.html"
    write_html(report, page)
    started = time.perf_counter()
    dom, out = _dom(chromium, tmp_path, page)
    elapsed = time.perf_counter() - started
    assert dom.tags.count("details") >= 500
    assert _console(out.stderr) == []
    print(f"500-column report: {page.stat().st_size:,} bytes, loaded in {elapsed:.2f} s")
