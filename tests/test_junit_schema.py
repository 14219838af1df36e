"""``--format junit`` against the readers it is written for.

Each reader's expectations, from its schema, documentation or parser source:

Jenkins xUnit plugin (``tests/data/junit-10.xsd``, its JUnit schema)
    ``<testsuites>`` may carry only ``name``, ``time``, ``tests``, ``failures``
    and ``errors`` (no ``skipped``); ``<testsuite>`` needs ``name``, ``tests``,
    ``failures`` and ``errors``, and its ``time`` is seconds with at most three
    decimals; ``<testcase>`` needs ``name``; a case holds ``failure``,
    ``error``, ``skipped``, ``system-out`` and ``system-err`` elements only.

GitLab unit test reports (docs.gitlab.com, "Unit test reports")
    Reads ``testsuites@time``, ``testsuite@name`` and ``@time``, and per test
    case ``classname`` (shown as the suite), ``name``, ``file`` and ``time`` in
    seconds; the text of ``failure``, ``error`` and ``skipped``; and
    ``system-out``/``system-err`` only inside a ``<testcase>``. Of cases with
    the same name only the first is kept, so (classname, name) must be unique.

dorny/test-reporter (``reporter: java-junit``, ``src/parsers/java-junit``)
    A ``<testsuites>`` or ``<testsuite>`` root; ``testsuite@name`` is required
    (it is trimmed unguarded) and ``@time`` parsed as a float; each test case's
    ``name`` (required), ``classname`` (a case whose classname equals its
    suite's name goes into the suite's default group) and ``time``; a case with
    ``failure`` or ``error`` is failed, with ``skipped`` skipped, and its
    message is ``"<type>: <message>"`` from the first failure's attributes with
    the element's text as details.

mikepenz/action-junit-report (``src/testParser.ts``)
    A ``<testsuites>`` or ``<testsuite>`` root, nested suites allowed; per test
    case ``name`` (required), ``classname`` and ``file`` (optional), ``time``
    as a float (0 when absent); cases with the same (name, classname, file)
    are folded into one as retries of a flaky test, so they must be unique; a
    ``failure``/``error`` child fails the case and its ``message`` attribute is
    the annotation's message (the case name when absent); ``skipped`` skips it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import validate
from pipeline.report import render
from pipeline.report.junit import render_reports
from tests.conftest import ROOT, SAMPLE_DATA

etree = pytest.importorskip("lxml.etree")

XSD = Path(__file__).parent / "data" / "junit-10.xsd"
# The Makefile's demo labels; each sample file is run with its schema and without one.
SAMPLES = {"credit": "default", "sensors": "failure", "clean": "segment"}
CASES = [(name, with_schema) for name in SAMPLES for with_schema in (True, False)]
TIME = re.compile(r"\d+(\.\d{1,3})?")


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


def _run(name: str, with_schema: bool, **options):
    data = SAMPLE_DATA / f"{name}.parquet"
    if with_schema:
        return validate(data, ROOT / "schemas" / f"{name}.yaml", **options)
    return validate(data, label=SAMPLES[name], **options)


@pytest.fixture(scope="module")
def reports():
    return {case: _run(*case) for case in CASES}


def _document(xml: str):
    # lxml refuses str input that declares an encoding; the bytes are what a reader gets.
    return etree.fromstring(xml.encode("utf-8"))


def assert_valid(schema, xml: str) -> None:
    doc = _document(xml)
    assert schema.validate(doc), schema.error_log.filter_from_errors()
    assert_what_ci_readers_need(doc)


def assert_what_ci_readers_need(root) -> None:
    """The module docstring's expectations of GitLab, dorny and mikepenz, one by one."""
    assert root.tag == "testsuites"
    assert TIME.fullmatch(root.get("time"))
    totals = Counter()
    seen = Counter()
    for suite in root.iter("testsuite"):
        assert suite.get("name").strip()
        assert TIME.fullmatch(suite.get("time"))
        cases = suite.findall("testcase")
        failed = [c for c in cases if c.find("failure") is not None]
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == len(failed)
        assert suite.get("errors") == "0" and suite.get("skipped") == "0"
        totals.update(tests=len(cases), failures=len(failed))
        for case in cases:
            assert case.get("name").strip() and case.get("classname") == suite.get("name")
            assert float(case.get("time")) >= 0
            seen[(case.get("classname"), case.get("name"))] += 1
            assert case.find("error") is None and case.find("skipped") is None
            for failure in case.findall("failure"):
                assert failure.get("message").strip() and failure.get("type")
                assert failure.text and failure.get("message") in failure.text
    assert [key for key, n in seen.items() if n > 1] == []
    assert int(root.get("tests")) == totals["tests"]
    assert int(root.get("failures")) == totals["failures"]
    assert root.get("errors") == "0"
    # system-out is read only inside a test case.
    assert all(out.getparent().tag == "testcase" for out in root.iter("system-out"))


@pytest.mark.parametrize(("name", "with_schema"), CASES)
def test_sample_files_give_junit_that_the_readers_accept(schema, reports, name, with_schema):
    """The root used to carry skipped="0", which junit-10.xsd does not allow there."""
    report = reports[(name, with_schema)]
    xml = render(report, "junit")
    assert_valid(schema, xml)
    root = _document(xml)
    failing = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
    assert bool(failing) == (not report.passed)


@pytest.mark.parametrize("with_schema", [True, False])
def test_all_sample_files_in_one_document(schema, reports, with_schema):
    xml = render_reports([reports[(name, with_schema)] for name in SAMPLES])
    assert_valid(schema, xml)
    assert len(_document(xml).findall("testsuite")) == len(SAMPLES)


def test_warnings_failing_under_strict_and_passing_otherwise(schema):
    strict = _run("sensors", False, strict=True)
    loose = _run("sensors", False)
    assert_valid(schema, render(strict, "junit"))
    assert_valid(schema, render(loose, "junit"))
    outs = list(_document(render(loose, "junit")).iter("system-out"))
    assert outs and all(o.text.startswith("WARNING: ") for o in outs)


def test_markup_and_xml_illegal_characters_in_names(schema, tmp_path):
    odd = 'a<b>&"c\x01\nd'
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    x[[4, 9]] = np.nan
    path = tmp_path / "odd & <name>.parquet"
    pq.write_table(pa.table({odd: x, "k": np.ones(200)}), path)
    report = validate(path)
    assert not report.passed
    assert_valid(schema, render(report, "junit"))


def test_the_schema_file_is_the_plugins(schema):
    """A guard on the copy itself: it does reject a skipped count on the root."""
    doc = _document('<testsuites tests="0" skipped="0"/>')
    assert not schema.validate(doc)
    assert "skipped" in str(schema.error_log)
