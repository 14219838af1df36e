"""The HTML report: content, escaping, self-containedness, size at 500 columns."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.report import Report, render_html, write_html
from pipeline.report.examples import ExampleCollector, examples_from_quarantine
from pipeline.report.html import OPEN_PANELS
from tests.conftest import SAMPLE_DATA

EVIL = "<script>alert(1)</script>"
EVIL_TEXT = "&lt;script&gt;alert(1)&lt;/script&gt;"
# An attribute-breaking payload too: if it reached the page unescaped it would add a node.
EVIL_IMG = '"><img src=x onerror="document.title=1">'


def write_hostile(folder: Path) -> tuple[Report, Path]:
    """A report whose column name, top value and quarantined rows hold markup.

    Returns the report and the HTML file written for it.
    """
    rng = np.random.default_rng(11)
    n = 400
    x = rng.normal(10, 2, n)
    x[[5, 77]] = np.nan
    y = rng.normal(0, 1, n)
    y[[9]] = np.inf
    y[[200]] = 1e9  # an outlier far beyond the histogram's healthy range
    note = [EVIL if i % 7 else "ok" for i in range(n)]
    note[9] = EVIL_IMG
    table = pa.table(
        {
            EVIL: x,
            "y": y,
            "note": pa.array(note),
            "label": pa.array(np.where(np.arange(n) % 10 == 0, EVIL, "cat")),
        }
    )
    data = folder / "hostile.parquet"
    pq.write_table(table, data, row_group_size=100)
    report = validate(data, label="label", quarantine=folder / "q.parquet", batch_size=64)
    out = folder / "report.html"
    write_html(report, out)
    return report, out


class _Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


@pytest.fixture
def hostile(tmp_path):
    return write_hostile(tmp_path)


def test_every_data_value_is_escaped(hostile):
    report, path = hostile
    html = path.read_text()
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    # the column name (title of its panel, findings, messages) ...
    assert f'<span class="name mono">{EVIL_TEXT}</span>' in html
    # ... the top value of a categorical column and its value bars ...
    assert f'<span class="v mono">{EVIL_TEXT}</span>' in html
    # ... the label's classes, and quarantined cells
    assert html.count(EVIL_TEXT) >= 10
    assert "&#34;&gt;&lt;img src=x onerror=&#34;document.title=1&#34;&gt;" in html
    tags = _elements(html)
    assert not [t for t, a in tags if t in ("script", "img", "iframe", "object", "embed")]
    assert not [a for _, a in tags if any(k.startswith("on") for k in a)]


def test_html_is_self_contained(hostile):
    _, path = hostile
    html = path.read_text()
    for tag, attrs in _elements(html):
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    assert "script-src 'none'" in html  # CSP: no script could run even if one slipped in


def test_html_shows_verdict_findings_columns_examples_label(hostile):
    report, path = hostile
    html = path.read_text()
    assert '<span class="verdict failed">FAILED</span>' in html
    for f in report.findings:
        assert f.check in html
    assert html.count('<details class="col') == len(report.profile.columns) == 4
    assert 'id="examples"' in html and 'id="label"' in html
    # every quarantined row (4) is an example, with its reasons
    assert sorted(e["row_id"] for e in examples_from_quarantine(report.outputs["quarantine"])) == [
        5, 9, 77, 200
    ]  # fmt: skip
    for row in (5, 9, 77, 200):
        assert f'<td class="num mono">{row}</td>' in html
    assert "score" in html  # the outlier's robust score


def test_histogram_marks_missing_values_and_fences(hostile):
    _, path = hostile
    html = path.read_text()
    panels = re.split(r'<details class="col', html)[1:]
    evil_panel = next(p for p in panels if EVIL_TEXT in p.split("</summary>")[0])
    assert '<rect class="special"' in evil_panel and ">NaN</text>" in evil_panel
    # Tukey fences at k=5 lie beyond a healthy normal column's range: markers at both edges
    assert evil_panel.count('<polygon class="off"') == 2 and "fence" in evil_panel
    y_panel = next(p for p in panels if '<span class="name mono">y</span>' in p)
    assert ">+inf</text>" in y_panel
    # y's outlier stretches the range to 1e9: the high fence falls inside (a line), the low
    # fence stays below the minimum (a marker); the bars are one path
    assert y_panel.count('<line class="fence"') == 1
    assert y_panel.count('<polygon class="off"') == 1
    assert y_panel.count('<path class="bars"') == 1


def test_fence_beyond_the_histogram_is_marked_at_its_edge(tmp_path):
    x = np.linspace(0, 1, 200)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": x}), path)
    report = validate(path)
    html = render_html(report)
    # uniform data never reaches its fences: both are drawn as off-scale markers
    assert html.count('<polygon class="off"') == 2 and "(off scale)" in html


def test_examples_are_spread_over_checks(tmp_path):
    n = 3000
    x = np.arange(n, dtype=float)
    x[:200] = np.nan  # many NaN rows first ...
    y = np.random.default_rng(1).normal(size=n)
    y[2900] = 1e6  # ... one outlier late
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": x, "y": y}), path)
    report = validate(path, quarantine=tmp_path / "q.parquet")
    examples = examples_from_quarantine(tmp_path / "q.parquet", n=5)
    assert len(examples) == 5
    assert [e["row_id"] for e in examples] == [0, 1, 2, 3, 2900]
    assert examples[-1]["reasons"][0]["check"] == "outlier"
    assert examples[0]["values"]["x"] != examples[0]["values"]["x"]  # NaN kept as a value
    assert report.rows_quarantined == 201


def test_examples_from_arrow_quarantine(tmp_path, dirty_parquet):
    validate(dirty_parquet, quarantine=tmp_path / "q.arrow")
    examples = examples_from_quarantine(tmp_path / "q.arrow")
    assert sorted(e["row_id"] for e in examples) == [3, 42, 43, 500, 1234, 1999]


def test_report_examples_take_precedence(dirty_parquet, tmp_path):
    report = validate(dirty_parquet, quarantine=tmp_path / "q.parquet")
    report.examples = [
        {"row_id": 123456, "reasons": [{"check": "nan", "column": "x"}], "values": {"x": None}}
    ]
    html = render_html(report)
    assert '<td class="num mono">123456</td>' in html
    assert '<td class="num mono">3</td>' not in html  # the quarantine file was not read


def test_collector_keeps_at_most_n(tmp_path, dirty_parquet):
    validate(dirty_parquet, quarantine=tmp_path / "q.parquet")
    collector = ExampleCollector(2)
    for batch in pq.ParquetFile(tmp_path / "q.parquet").iter_batches(batch_size=1):
        collector.add(batch)
    got = collector.examples()
    assert len(got) == 2 and collector.seen == 6
    assert {r["check"] for e in got for r in e["reasons"]} == {"nan", "inf"}


def test_passing_report_without_quarantine(tmp_path):
    report = validate(SAMPLE_DATA / "clean.parquet", label="segment")
    html = render_html(report)
    assert '<span class="verdict passed">PASSED</span>' in html
    assert "No findings" in html and 'id="examples"' not in html
    assert " open>" not in html  # nothing to look at: every panel closed


def test_500_columns_render_small_with_collapsed_panels(tmp_path):
    rng = np.random.default_rng(5)
    n = 120
    cols = {}
    for i in range(450):
        v = rng.normal(size=n)
        v[i % n] = np.nan
        cols[f"feature_{i:03d}"] = v
    for i in range(50):
        cols[f"cat_{i:02d}"] = pa.array(rng.choice(["a", "b", "c", EVIL], n))
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table(cols), path)
    report = validate(path, quarantine=tmp_path / "q.parquet", sample_size=1000)
    out = tmp_path / "wide.html"
    write_html(report, out)
    size = out.stat().st_size
    html = out.read_text()
    assert size < 5_000_000, size
    assert html.count('<details class="col') == 500
    assert html.count(" open>") == OPEN_PANELS
    assert "<script" not in html
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_html_is_atomic(tmp_path, dirty_parquet, monkeypatch):
    report = validate(dirty_parquet)
    out = tmp_path / "r.html"
    out.write_text("old report")
    import pipeline.report.html as html_module

    def boom(report):
        raise RuntimeError("disk full")

    monkeypatch.setattr(html_module, "render", boom)
    with pytest.raises(RuntimeError):
        write_html(report, out)
    assert out.read_text() == "old report"
    monkeypatch.undo()
    write_html(report, out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not list(tmp_path.glob(".*.tmp"))


def test_template_is_package_data():
    tomllib = pytest.importorskip("tomllib")
    from tests.conftest import ROOT

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["pipeline.report"]
    templates = ROOT / "pipeline" / "report" / "templates"
    for template in templates.iterdir():
        assert any(template.match(p) for p in patterns), template
