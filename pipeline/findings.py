"""Findings, and the one table of reason codes that every part of batchguard reads.

Reason codes are a contract (JSON reports, quarantine files, JUnit test
names); never rename one. :data:`REASONS` holds, per code, its level, default
severity, meaning and advice; its order is the order reports list findings
in. The checks, the gate, every renderer and the guard read it, so adding a
code means adding a row here and the code that detects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "REASONS",
    "ROW_LEVEL",
    "SEVERITY_CHOICES",
    "Finding",
    "Level",
    "Reason",
    "Severities",
    "Severity",
    "order_of",
]

Severity = Literal["error", "warning"]
Level = Literal["row", "column", "dataset", "live"]


@dataclass(frozen=True)
class Reason:
    """What one reason code means and how it is treated by default.

    Parameters
    ----------
    level : {"row", "column", "dataset", "live"}
        ``row``: sends rows to quarantine. ``column``/``dataset``: fails or warns
        the gate. ``live``: found by the training-time guard in a served batch.
    severity : {"error", "warning"}
        Default severity; ``ValidationOptions.severities`` overrides it.
    meaning : str
        One line for documentation and reports.
    advice : str
        What to do about it, in a few words (ends row-level messages).
    noun : str
        For row-level codes: what the rows hold, as messages count them
        (``{detail}`` is the rule's threshold or schema check).
    gates : bool
        Whether a warning of this code fails the gate under ``--strict``. Codes
        that only report (``joint_outlier``) fail it only when made errors.
    """

    level: Level
    severity: Severity
    meaning: str
    advice: str = ""
    noun: str = ""
    gates: bool = True


#: reason code -> :class:`Reason`, in the order reports list findings within a column
REASONS: dict[str, Reason] = {
    "nan": Reason(
        "row", "error", "NaN in a numeric column",
        "impute or drop them, or let the quarantine hold them", "NaN values",
    ),
    "inf": Reason(
        "row", "error", "+inf or -inf in a numeric column",
        "clip or drop them; check for a division by zero upstream", "infinite values",
    ),
    "null": Reason(
        "row", "error", "null in the label or in a column the schema marks non-nullable",
        "fill them or drop those rows (the schema can mark a column nullable)", "null values",
    ),
    "schema": Reason(
        "row", "error", "a check from the schema failed",
        "fix the rows or relax the schema check", "rows failing schema check {detail}",
    ),
    "missing_column": Reason(
        "column", "error", "a column the schema or the baseline names is not in the data",
        "add it upstream, or mark it 'required: false' in the schema",
    ),
    "dtype": Reason(
        "column", "error", "a column's type differs from the schema's or the baseline's",
        "cast it upstream or change the schema's dtype",
    ),
    "new_column": Reason(
        "column", "warning", "a column that the baseline does not have",
        "check it is meant to be there, then write a new baseline",
    ),
    "drift": Reason(
        "column", "error",
        "a column's distribution, categories or missing share moved from the baseline",
        "find the upstream change, or write a new baseline if it is meant",
    ),
    "label_drift": Reason(
        "column", "error", "the label's class shares moved from the baseline, or a class "
        "appeared or vanished", "retrain or reweight for the new balance, or fix the labels",
    ),
    "constant": Reason(
        "column", "error", "at most one distinct non-null value",
        "drop it or fix the upstream join/export",
    ),
    "near_constant": Reason(
        "column", "warning",
        "one value covers at least the threshold share of non-missing values",
        "check for a stuck sensor or a default fill value, or drop the column",
    ),
    "zero_iqr": Reason(
        "column", "warning", "q75 == q25: robust scaling is undefined",
        "consider dropping or binarising it",
    ),
    "sentinel": Reason(
        "row", "error", "a repeated placeholder value isolated from the column's bulk",
        "treat them as missing upstream (e.g. -999, 9999, or 0 in a positive measure)",
        "rows holding placeholders ({detail})",
    ),
    "outlier": Reason(
        "row", "warning", "a value far beyond the column's bulk on its own scale",
        "check for unit or sentinel errors (e.g. -999, cents vs dollars)",
        "outliers outside {detail}",
    ),
    "joint_outlier": Reason(
        "row", "warning", "a row unusual as a combination of its numeric columns",
        "look at the top rows in the report or --scores; kept in the clean output unless "
        "--quarantine-outliers joint", "rows unusual as a combination of columns ({detail})",
        gates=False,
    ),
    "class_imbalance": Reason(
        "column", "warning", "minority class share below the threshold",
        "use a stratified sampler (make_loader does) or class weights",
    ),
    "bad_rows": Reason(
        "dataset", "error", "more rows quarantined than the gate allows",
        "fix the data upstream or raise the allowance",
    ),
    "empty": Reason(
        "dataset", "error", "the dataset has no rows", "check the export or the path",
    ),
    "batch_constant": Reason(
        "live", "warning", "a feature is constant within a live batch but varies in the dataset",
        "shuffle the data or use a stratified sampler",
    ),
    "batch_single_class": Reason(
        "live", "warning", "a live batch holds a single class",
        "shuffle the data or use a stratified sampler",
    ),
    "loss_spike": Reason(
        "live", "warning", "a batch's loss is non-finite or spikes",
        "inspect the quarantined rows; skip the step",
    ),
    "out_of_range": Reason(
        "live", "error", "a live value lies beyond the dataset profile's robust range",
        "check the serving data against the training data",
    ),
}  # fmt: skip
#: codes whose findings send rows to quarantine
ROW_LEVEL = frozenset(code for code, reason in REASONS.items() if reason.level == "row")
#: the severities a check can be given; "off" switches it off
SEVERITY_CHOICES = ("error", "warning", "off")


def order_of(code: str) -> int:
    """The place of ``code`` in :data:`REASONS` (unknown codes sort last)."""
    return _ORDER.get(code, len(_ORDER))


_ORDER = {code: i for i, code in enumerate(REASONS)}


@dataclass(frozen=True)
class Severities:
    """Decides the severity of every finding of a run, in one place.

    The reason table's default, then the run's per-code ``overrides``
    (``"off"`` drops the finding), then two softenings: schema checks marked
    ``raise_warning`` (``warn_only``, as ``(column, schema check)``) and, when
    ``rows_tolerated``, row-level errors within the ``max_bad_rows`` allowance.

    Examples
    --------
    >>> Severities({"outlier": "off"}).of("outlier") is None
    True
    >>> Severities(rows_tolerated=True).of("nan")
    'warning'
    """

    overrides: Mapping[str, str] = field(default_factory=dict)
    warn_only: frozenset[tuple[str | None, str]] = frozenset()
    rows_tolerated: bool = False

    def of(
        self, code: str, column: str | None = None, schema_check: str | None = None
    ) -> Severity | None:
        """The severity of a finding of ``code``, or ``None`` when it is switched off."""
        level = self.overrides.get(code, REASONS[code].severity if code in REASONS else "error")
        if level == "off":
            return None
        if (
            code == "schema"
            and schema_check is not None
            and (column, schema_check) in self.warn_only
        ):
            return "warning"
        if self.rows_tolerated and code in ROW_LEVEL:
            return "warning"
        return "error" if level == "error" else "warning"

    def enabled(self, code: str) -> bool:
        """Whether findings of ``code`` are reported at all."""
        return self.overrides.get(code) != "off"


@dataclass
class Finding:
    """One problem found in a dataset.

    Parameters
    ----------
    check : str
        Reason code, a key of :data:`REASONS`.
    column : str or None
        The column concerned; ``None`` for dataset-level findings.
    severity : {"error", "warning"}
        Errors fail the gate; warnings fail it only under ``--strict``.
    count : int
        Rows affected (row-level checks) or 1 (column-level checks).
    fraction : float
        ``count`` over the rows checked (for column-level checks: the observed
        statistic the threshold applies to).
    message : str
        One sentence: what was found, observed vs expected, what to do.
    sample_rows : list of int
        Up to a few row ids showing the problem, in row order.
    schema_check : str or None
        For ``check == "schema"``: the schema's own check name (e.g. ``"greater_than"``).
    metric, value, threshold : str, float, float or None
        For drift findings (``drift``, ``label_drift``): the metric (``ks``, ``psi``,
        ``tvd``, ...), its value, and the threshold it reached.
    """

    check: str
    column: str | None
    severity: Severity
    count: int
    fraction: float
    message: str
    sample_rows: list[int] = field(default_factory=list)
    schema_check: str | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None

    @property
    def check_name(self) -> str:
        """The check as reports name it: the reason code, or ``schema:<check>``.

        Examples
        --------
        >>> Finding("schema", "age", "error", 3, 0.1, "...", [], "greater_than").check_name
        'schema:greater_than'
        """
        if self.check == "schema" and self.schema_check:
            return f"schema:{self.schema_check}"
        return self.check

    @property
    def row_level(self) -> bool:
        """Whether this finding quarantines rows."""
        return self.check in ROW_LEVEL

    def to_dict(self) -> dict[str, Any]:
        """The finding as the JSON report writes it."""
        out = asdict(self)
        for key in ("schema_check", "metric", "value", "threshold"):
            if out[key] is None:
                del out[key]
        return out
