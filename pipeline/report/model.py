"""The :class:`Report` of one validation run."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ..findings import REASONS, Finding
from ..options import ValidationOptions

if TYPE_CHECKING:
    from ..drift import DriftResult
    from ..fences import Fences
    from ..joint import JointSummary
    from ..profiling import Profile
    from ..sentinels import Sentinel

__all__ = ["REPORT_VERSION", "ExitCode", "Report"]

REPORT_VERSION = 1


class ExitCode(IntEnum):
    """The exit codes of ``validate``, the one list the command line and the report use."""

    #: the data passed the gate (or ``--exit-zero``)
    PASSED = 0
    #: the data failed the gate
    FAILED = 1
    #: bad usage, an unreadable input or a bad schema
    USAGE = 2
    #: an internal error
    INTERNAL = 3


@dataclass
class Report:
    """What a validation run found, and the gate's verdict.

    Parameters
    ----------
    dataset : str
        The dataset's path as given.
    rows : int
        Rows read.
    rows_quarantined : int
        Rows with at least one row-level finding.
    findings : list of Finding
        Column-level findings first (in column order), then row-level ones.
    profile : Profile
        The merged profile (column statistics, sample).
    options : ValidationOptions
        The thresholds the run used.
    exit_zero : bool, default False
        Report the verdict but always exit 0 (``--exit-zero``).
    outputs : dict
        Files written, by kind (``quarantine``, ``clean``, ...).
    schema : str, optional
        The schema file used, if any.
    notes : list of str
        Remarks for the reader (columns only counted, schema notes).
    elapsed : float
        Seconds the run took.
    examples : list of dict
        Up to a few quarantined rows for the HTML report, each
        ``{"row_id": int, "reasons": [dict, ...], "values": {column: value}}``,
        chosen by the engine as it wrote the quarantine output
        (:class:`pipeline.report.examples.ExampleCollector`). Not part of the
        JSON report, which never holds data values beyond statistics.
    fences : dict of str to Fences
        The outlier fences the run applied, per column (method, threshold and
        bounds; a schema's per-column ``outliers`` check included).
    checks_run : list of (str or None, str)
        Every ``(column, check name)`` the run checked, passed or not, in
        report order (:func:`pipeline.checks.checks_run`); column ``None`` for
        dataset-level checks.
    sentinels : dict of str to list of Sentinel
        The placeholder values found, per column.
    joint : JointSummary, optional
        The joint score's distribution and top rows on the row sample
        (``None`` when no joint score was fitted).
    source_version : dict, optional
        For a Delta or Iceberg table, the version or snapshot read.
    drift : DriftResult, optional
        The comparison with a baseline (``--baseline``): every measurement,
        drifted or not, and the overlays the HTML report draws.
    """

    dataset: str
    rows: int
    rows_quarantined: int
    findings: list[Finding]
    profile: Profile
    options: ValidationOptions
    exit_zero: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    schema: str | None = None
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)
    fences: dict[str, Fences] = field(default_factory=dict)
    checks_run: list[tuple[str | None, str]] = field(default_factory=list)
    sentinels: dict[str, list[Sentinel]] = field(default_factory=dict)
    joint: JointSummary | None = None
    drift: DriftResult | None = None
    source_version: dict[str, Any] | None = None

    @property
    def rows_clean(self) -> int:
        """Rows without a row-level finding (those the clean output holds)."""
        return self.rows - self.rows_quarantined

    @property
    def rows_reported(self) -> int:
        """Rows reported as joint outliers and kept in the clean output (the second tier)."""
        if self.options.quarantine_outliers == "joint":
            return 0
        return sum(f.count for f in self.findings if f.check == "joint_outlier")

    @property
    def errors(self) -> list[Finding]:
        """The error-level findings."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The warning-level findings."""
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def failing(self) -> list[Finding]:
        """The findings that fail the gate: errors, and warnings under ``strict``.

        ``exit_zero`` does not change this list, only the exit code.
        """
        return [f for f in self.findings if self.fails(f)]

    def fails(self, finding: Finding) -> bool:
        """Whether ``finding`` fails the gate under this run's options."""
        if finding.severity == "error":
            return True
        reason = REASONS.get(finding.check)
        return self.options.strict and (reason is None or reason.gates)

    @property
    def passed(self) -> bool:
        """The gate's verdict: no finding fails it (errors; warnings under ``strict``)."""
        return not any(self.fails(f) for f in self.findings)

    @property
    def exit_code(self) -> ExitCode:
        """0 when passed (or ``exit_zero``), 1 when the data failed the gate."""
        return ExitCode.PASSED if self.passed or self.exit_zero else ExitCode.FAILED

    @property
    def label(self) -> dict[str, Any] | None:
        """The label column and its class counts, or ``None`` without a label."""
        name = self.options.label
        if name is None:
            return None
        counts = self.profile.label_counts(name)
        return {"column": name, "classes": {str(k): v for k, v in (counts or {}).items()}}

    def verdict(self) -> str:
        """The one-line verdict printed on stderr."""
        state = "PASSED" if self.passed else "FAILED"
        parts = [
            f"{self.rows:,} rows",
            f"{self.rows_quarantined:,} quarantined",
            f"{len(self.errors)} error{'s' * (len(self.errors) != 1)}",
            f"{len(self.warnings)} warning{'s' * (len(self.warnings) != 1)}",
        ]
        tail = ""
        if not self.passed and self.exit_zero:
            tail = " (--exit-zero: exit 0)"
        return f"{state}: {self.dataset}: {', '.join(parts)}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON report, version 1 (DESIGN.md); its keys are a contract.

        With a baseline it also holds ``drift`` (:meth:`DriftResult.to_dict
        <pipeline.drift.DriftResult.to_dict>`); without one the key is absent. A
        Delta or Iceberg table adds ``source_version``, the version read
        (:attr:`Source.version <pipeline.source.Source.version>`).
        """
        out = {
            "report_version": REPORT_VERSION,
            "dataset": self.dataset,
            "passed": self.passed,
            "exit_code": int(self.exit_code),
            "rows": self.rows,
            "rows_clean": self.rows_clean,
            "rows_quarantined": self.rows_quarantined,
            "rows_reported": self.rows_reported,
            "findings": [f.to_dict() for f in self.findings],
            "columns": {name: self.profile.stats(name).to_dict() for name in self.profile.columns},
            "label": self.label,
            "schema": self.schema,
            "outputs": self.outputs,
            "notes": self.notes,
        }
        if self.drift is not None:
            out["drift"] = self.drift.to_dict()
        if self.source_version is not None:
            out["source_version"] = self.source_version
        return out
