"""Findings: what a check found, with a stable reason code.

Reason codes are a contract (JSON reports, quarantine files, JUnit test
names); never rename one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]

#: reason code -> what it means (DESIGN.md); row-level codes send rows to quarantine
REASONS: dict[str, str] = {
    "nan": "NaN in a numeric column",
    "inf": "+inf or -inf in a numeric column",
    "null": "null in a column the schema marks non-nullable",
    "schema": "a check from the schema failed",
    "missing_column": "a column the schema names is not in the data",
    "dtype": "a column's type differs from the schema's",
    "constant": "at most one distinct non-null value",
    "near_constant": "one value covers at least the threshold share of non-missing values",
    "zero_iqr": "q75 == q25: robust scaling is undefined",
    "outlier": "robust score beyond the threshold",
    "class_imbalance": "minority class share below the threshold",
    "bad_rows": "more rows quarantined than the gate allows",
    "empty": "the dataset has no rows",
    "batch_constant": "a feature is constant within a live batch but varies in the dataset",
    "batch_single_class": "a live batch holds a single class",
    "loss_spike": "a batch's loss is non-finite or spikes",
    "out_of_range": "a live value lies beyond the dataset profile's robust range",
}
ROW_LEVEL = frozenset({"nan", "inf", "null", "schema", "outlier"})


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
    """

    check: str
    column: str | None
    severity: Severity
    count: int
    fraction: float
    message: str
    sample_rows: list[int] = field(default_factory=list)
    schema_check: str | None = None

    @property
    def row_level(self) -> bool:
        """Whether this finding quarantines rows."""
        return self.check in ROW_LEVEL

    def to_dict(self) -> dict[str, Any]:
        """The finding as the JSON report writes it."""
        out = asdict(self)
        if self.schema_check is None:
            del out["schema_check"]
        return out
