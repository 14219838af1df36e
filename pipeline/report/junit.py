"""``--format junit``: JUnit XML for GitLab, Jenkins and GitHub test reporters.

Mapping
-------
- ``<testsuites name="batchguard">`` holds one ``<testsuite>`` per dataset,
  named by the dataset's path, with the run's counts as ``<properties>``.
- One ``<testcase classname="<dataset>" name="<column>.<check>">`` per
  (column, check) pair the run checked, passed or not
  (:attr:`Report.checks_run <pipeline.report.Report.checks_run>` says which). Dataset-level checks
  (``bad_rows``) are named by the check alone; schema checks as
  ``<column>.schema:<name>``.
- A finding that fails the gate (an error, or a warning under ``--strict``)
  becomes ``<failure type="<check>" message="<message>">`` with the details as
  text, so the test case is red exactly when it makes ``validate`` exit 1.
- A warning that does not fail the gate leaves its test case passing and puts
  ``WARNING: <message>`` in the test case's ``<system-out>``. Reporters would
  count a ``<skipped>`` as a check that did not run, and a ``<failure>`` as a
  failed gate, and neither would be true.
- ``--exit-zero`` changes only the exit code: failures stay failures here.

The document validates against the JUnit schema of Jenkins' xUnit plugin
(``junit-10.xsd``) and gives GitLab's unit test reports and GitHub's JUnit
reporters (dorny/test-reporter, mikepenz/action-junit-report) what they read:
a ``name``, ``classname`` and ``time`` on every test case, unique per
(classname, name), and the message on each ``<failure>`` (see
``tests/test_junit_schema.py``).

Written with :mod:`xml.etree.ElementTree`, which escapes markup; characters
XML 1.0 cannot hold at all (most control characters) are replaced by U+FFFD.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._common import check_label, rows_affected

if TYPE_CHECKING:
    from ..findings import Finding
    from .model import Report

__all__ = ["case_name", "render", "render_reports", "testsuite"]

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: object) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def case_name(column: str | None, check: str) -> str:
    """The test case name of a (column, check) pair: ``"<column>.<check>"`` or the check.

    Examples
    --------
    >>> case_name("income", "nan"), case_name(None, "bad_rows")
    ('income.nan', 'bad_rows')
    """
    return check if column is None else f"{column}.{check}"


def _details(finding: Finding) -> str:
    lines = [
        finding.message,
        "",
        f"check: {check_label(finding)}",
        f"column: {finding.column if finding.column is not None else '(dataset)'}",
        f"severity: {finding.severity}",
    ]
    affected = rows_affected(finding)
    if affected:
        lines.append(f"rows: {affected}")
    elif finding.metric is not None:
        lines.append(f"metric: {finding.metric}")
        lines.append(f"value: {finding.value:.6g}")
        if finding.threshold is not None:
            lines.append(f"threshold: {finding.threshold:.6g}")
    else:
        lines.append(f"observed: {finding.fraction:.6g}")
    if finding.sample_rows:
        lines.append(f"example row ids: {', '.join(str(r) for r in finding.sample_rows)}")
    return "\n".join(lines)


def testsuite(report: Report) -> ET.Element:
    """The ``<testsuite>`` element of one report."""
    by_pair: dict[tuple[str | None, str], list[Finding]] = {}
    for f in report.findings:
        by_pair.setdefault((f.column, check_label(f)), []).append(f)
    suite = ET.Element("testsuite", name=_xml(report.dataset))
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("rows", report.rows),
        ("rows_clean", report.rows_clean),
        ("rows_quarantined", report.rows_quarantined),
        ("errors", len(report.errors)),
        ("warnings", len(report.warnings)),
        ("passed", str(report.passed).lower()),
        ("exit_code", report.exit_code),
        ("strict", str(report.options.strict).lower()),
        ("schema", report.schema or ""),
        *((("baseline", report.drift.baseline),) if report.drift is not None else ()),
    ):
        ET.SubElement(props, "property", name=key, value=_xml(value))
    tests = failures = 0
    for column, check in report.checks_run:
        tests += 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_xml(report.dataset),
            name=_xml(case_name(column, check)),
            time="0",
        )
        found = by_pair.get((column, check), [])
        failing = [f for f in found if report.fails(f)]
        if failing:
            failures += 1
            failure = ET.SubElement(
                case,
                "failure",
                message=_xml(failing[0].message),
                type=_xml(failing[0].check),
            )
            failure.text = _xml("\n\n".join(_details(f) for f in failing))
        notes = [f for f in found if not report.fails(f)]
        if notes:
            out = ET.SubElement(case, "system-out")
            out.text = _xml("\n\n".join(f"WARNING: {_details(f)}" for f in notes))
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", f"{report.elapsed:.3f}")
    return suite


def render_reports(reports: Sequence[Report]) -> str:
    """One JUnit XML document with a test suite per report (one per dataset)."""
    root = ET.Element("testsuites", name="batchguard")
    totals = {"tests": 0, "failures": 0}
    elapsed = 0.0
    for report in reports:
        suite = testsuite(report)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        elapsed += report.elapsed
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    # No "skipped" here: the JUnit schema of Jenkins' xUnit plugin (junit-10.xsd) allows
    # it on <testsuite> only, and rejects the document otherwise.
    root.set("time", f"{elapsed:.3f}")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def render(report: Report) -> str:
    """The report as a JUnit XML document."""
    return render_reports([report])
