"""The CI formats (markdown, JUnit XML, GitHub annotations) rendered from one Report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.report import FORMATS, render
from pipeline.report._common import check_label, number
from pipeline.report.github import (
    SUMMARY_LIMIT,
    escape_data,
    escape_property,
    step_summary,
    write_step_summary,
)
from pipeline.report.markdown import escape
from tests.conftest import ROOT, SAMPLE_DATA

EVIL = "<script>alert(1)</script>"
# A column name holding everything the formats must escape: markup, markdown,
# table pipes, workflow-command separators, a newline and an XML-illegal character.
ODD = "a,b:c%d|*e*\nf\x01" + EVIL


@pytest.fixture(scope="module")
def sensors():
    return validate(SAMPLE_DATA / "sensors.parquet", label="failure", batch_size=8192)


@pytest.fixture
def odd_report(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    x[[4, 9]] = np.nan
    table = pa.table({ODD: x, "ok": rng.normal(size=300), "note": [EVIL] * 300})
    path = tmp_path / "odd.parquet"
    pq.write_table(table, path)
    return validate(path)


def test_formats_are_registered_and_html_is_not_one():
    assert FORMATS == ("text", "json", "markdown", "junit", "github")


def test_render_module_stays_light():
    code = (
        "import sys, pipeline.report.render\n"
        "print(','.join(m for m in ('numpy', 'pyarrow', 'jinja2', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_a_failing_and_a_clean_report(fmt, sensors):
    clean = validate(SAMPLE_DATA / "clean.parquet", label="segment")
    for report in (sensors, clean):
        text = render(report, fmt)
        assert isinstance(text, str)
        assert text == "" or text.endswith("\n")


# -- JUnit -------------------------------------------------------------------------------------
def _case(f) -> str:
    """A finding's JUnit test case name: ``column.check``, or the check of a dataset-level one."""
    return check_label(f) if f.column is None else f"{f.column}.{check_label(f)}"


def _cases(xml_text: str) -> list[ET.Element]:
    root = ET.fromstring(xml_text)
    assert root.tag == "testsuites"
    return root.findall("./testsuite/testcase")


def test_junit_one_suite_one_case_per_column_check(sensors):
    root = ET.fromstring(render(sensors, "junit"))
    [suite] = root.findall("testsuite")
    assert suite.get("name") == sensors.dataset
    cases = suite.findall("testcase")
    names = [c.get("name") for c in cases]
    assert len(names) == len(set(names)) == int(suite.get("tests")) == int(root.get("tests"))
    assert {c.get("classname") for c in cases} == {sensors.dataset}
    expected = [c if col is None else f"{col}.{c}" for col, c in sensors.checks_run]
    assert names == expected
    # every finding has its test case; passing checks are there too
    for f in sensors.findings:
        assert _case(f) in names
    assert "humidity.nan" in names and "machine_id.constant" in names
    assert "machine_id.nan" not in names  # a string column has no NaN check
    # zero IQR: the default fences leave its point mass out, so it is checked, and passes
    assert "rpm_setpoint.outlier" in names
    assert ("outlier", "rpm_setpoint") not in {(f.check, f.column) for f in sensors.findings}
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["rows"] == "50000" and props["passed"] == "false"


def test_junit_fails_exactly_the_failing_checks(sensors):
    cases = _cases(render(sensors, "junit"))
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert sorted(failed) == sorted(_case(f) for f in sensors.failing)
    assert len(failed) == len(sensors.errors) == 2
    for f in sensors.failing:
        element = failed[_case(f)]
        assert element.get("message") == f.message and element.get("type") == f.check
        assert f.message in (element.text or "")
    # warnings pass, and say so in system-out
    out = {
        c.get("name"): c.findtext("system-out") for c in cases if c.find("system-out") is not None
    }
    assert sorted(out) == sorted(_case(f) for f in sensors.warnings)
    assert all(text.startswith("WARNING: ") for text in out.values())


def test_junit_warnings_fail_under_strict():
    strict = validate(SAMPLE_DATA / "sensors.parquet", label="failure", strict=True)
    cases = _cases(render(strict, "junit"))
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == len(strict.findings) - 1 == 6
    # the joint outliers are a warning that --strict does not turn into a failure
    warned = [c.get("name") for c in cases if c.find("system-out") is not None]
    assert warned == ["joint_outlier"]


def test_junit_exit_zero_keeps_failures(tmp_path, dirty_parquet):
    report = validate(dirty_parquet, exit_zero=True)
    assert report.exit_code == 0
    failed = [c for c in _cases(render(report, "junit")) if c.find("failure") is not None]
    assert len(failed) == len(report.failing) > 0


def test_junit_bad_rows_is_a_dataset_level_case(dirty_parquet):
    report = validate(dirty_parquet, max_bad_rows=0.001, severities={"constant": "warning"})
    cases = {c.get("name"): c for c in _cases(render(report, "junit"))}
    assert cases["bad_rows"].find("failure").get("type") == "bad_rows"
    passing = validate(dirty_parquet, max_bad_rows=0.5, severities={"constant": "warning"})
    cases = {c.get("name"): c for c in _cases(render(passing, "junit"))}
    assert cases["bad_rows"].find("failure") is None


def test_junit_escapes_names_and_drops_xml_illegal_characters(odd_report):
    text = render(odd_report, "junit")
    cases = _cases(text)  # parses, although the column name holds \x01 and markup
    [failed] = [c for c in cases if c.find("failure") is not None and ".nan" in c.get("name")]
    assert failed.get("name").startswith("a,b:c%d|*e*\nf\ufffd<script>")
    assert "<script>" not in text


# -- GitHub ------------------------------------------------------------------------------------
def test_github_one_annotation_per_finding(sensors):
    lines = render(sensors, "github").splitlines()
    assert len(lines) == len(sensors.findings)
    errors = [ln for ln in lines if ln.startswith("::error ")]
    warnings = [ln for ln in lines if ln.startswith("::warning ")]
    assert len(errors) == len(sensors.failing) == 2 and len(warnings) == 5
    assert errors[0].startswith(
        f"::error file={escape_property(sensors.dataset)},title=inf in temperature::"
        "column 'temperature'"
    )
    # never one per row: 20 NaN rows make one annotation
    assert sum("title=nan in pressure" in ln for ln in lines) == 1


def test_github_strict_warnings_are_errors():
    strict = validate(SAMPLE_DATA / "sensors.parquet", label="failure", strict=True)
    lines = render(strict, "github").splitlines()
    # all but the joint outliers, a warning that --strict does not turn into an error
    [warning] = [ln for ln in lines if not ln.startswith("::error ")]
    assert warning.startswith("::warning ") and "title=joint_outlier" in warning
    assert len(lines) == 7


def test_github_passing_report_has_no_annotations():
    clean = validate(SAMPLE_DATA / "clean.parquet", label="segment")
    assert render(clean, "github") == ""


def test_github_escaping_rules():
    assert escape_data("100%\r\nx") == "100%25%0D%0Ax"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_github_values_cannot_break_the_command(odd_report):
    lines = render(odd_report, "github").splitlines()
    assert len(lines) == len(odd_report.findings)  # the newline in the name stayed escaped
    nan = next(ln for ln in lines if "title=nan in" in ln)
    head, _, message = nan.partition("::")[2].partition("::")
    props = dict(p.split("=", 1) for p in head.split(" ", 1)[1].split(","))
    assert props["title"] == "nan in " + escape_property(ODD)
    assert "%0A" in message and "\n" not in message


def test_step_summary_appends_and_is_capped(tmp_path, monkeypatch, sensors):
    target = tmp_path / "summary.md"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert write_step_summary(sensors) is None
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    target.write_text("previous step\n")
    assert write_step_summary(sensors) == str(target)
    text = target.read_text()
    assert text.startswith("previous step\n") and "batchguard: FAILED" in text
    assert text.endswith(render(sensors, "markdown") + "\n")
    small = step_summary(sensors, limit=600)
    assert len(small.encode()) <= 600 and "Summary cut at" in small
    assert SUMMARY_LIMIT < 1024 * 1024


# -- markdown ----------------------------------------------------------------------------------
def test_markdown_summary(sensors):
    text = render(sensors, "markdown")
    assert text.startswith(f"### ❌ batchguard: FAILED: {escape(sensors.dataset)}\n")
    assert "sample\\_data/sensors.parquet" in text
    assert "50,000 rows" in text and "35 quarantined" in text
    rows = [ln for ln in text.splitlines() if ln.startswith(("| ❌", "| ⚠️"))]
    assert len(rows) == len(sensors.findings)
    assert rows[0].startswith("| ❌ error | inf | temperature | 3 (0.006%)")
    assert "**Label** failure: 0: 45,000 (90.0%)" in text


def test_markdown_escapes_data(odd_report):
    text = render(odd_report, "markdown")
    assert "<script>" not in text and "\\<script\\>" in text
    for line in text.splitlines():
        if line.startswith(("| ❌", "| ⚠️")):
            # five cells: unescaped pipes are only the cell borders
            assert line.replace("\\|", "").count("|") == 6, line
    assert escape("a\nb|c") == "a b\\|c"


def test_markdown_caps_the_findings_table(tmp_path):
    n = 200
    table = pa.table({f"c{i}": np.r_[np.nan, np.arange(n - 1.0)] for i in range(120)})
    path = tmp_path / "many.parquet"
    pq.write_table(table, path)
    text = render(validate(path), "markdown")
    assert text.count("\n| ❌ error | nan |") == 100
    assert "… and 20 more findings" in text


def test_number_formatting():
    assert number(1234) == "1,234" and number(2.0) == "2" and number(0.1234567) == "0.123457"
    assert number(float("nan")) == "NaN" and number(True) == "true"


# -- through the command line ------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["junit", "github", "markdown"])
def test_cli_formats(fmt, tmp_path):
    out_file = tmp_path / f"report.{fmt}"
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", str(SAMPLE_DATA / "credit.parquet"),
         "--label", "default", "--format", fmt, "-o", str(out_file)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    text = out_file.read_text()
    if fmt == "junit":
        failed = [c for c in _cases(text) if c.find("failure") is not None]
        assert sorted(c.get("name") for c in failed) == [
            "branch_code.constant", "debt_to_income.inf", "income.nan"
        ]  # fmt: skip
    elif fmt == "github":
        assert sum(ln.startswith("::error ") for ln in text.splitlines()) == 3
    else:
        assert "batchguard: FAILED" in text


def test_json_report_keeps_examples_out(tmp_path, dirty_parquet):
    report = validate(dirty_parquet)
    report.examples = [{"row_id": 3, "reasons": [], "values": {"x": EVIL}}]
    assert "examples" not in json.loads(render(report, "json"))
    assert EVIL not in render(report, "json")


def test_checks_run_skips_checks_turned_off(dirty_parquet):
    report = validate(dirty_parquet, severities={"outlier": "off", "near_constant": "off"})
    checks = {c for _, c in report.checks_run}
    assert "outlier" not in checks and "near_constant" not in checks and "nan" in checks


def test_reports_render_from_a_path_object(dirty_parquet):
    # the dataset may be given as a Path; every format names it by its string form
    report = validate(Path(dirty_parquet))
    name = str(dirty_parquet)
    texts = {fmt: render(report, fmt) for fmt in FORMATS}
    assert texts["text"].startswith(f"{name}  2,000 rows")
    assert json.loads(texts["json"])["dataset"] == name
    assert f"FAILED: {escape(name)}" in texts["markdown"]
    assert ET.fromstring(texts["junit"]).find("testsuite").get("name") == name
    annotations = texts["github"].splitlines()
    assert annotations and all(
        line.startswith(("::error file=", "::warning file="))
        and f"file={escape_property(name)}," in line
        for line in annotations
    )
    for text in texts.values():
        assert "Path(" not in text
