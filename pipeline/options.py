"""Settings of one validation run, with their defaults in one place."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import UsageError
from .findings import REASONS, SEVERITY_CHOICES, Severities, Severity

__all__ = [
    "DATASET_SETTINGS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SAMPLE_SIZE",
    "DEFAULT_THRESHOLDS",
    "ENGINES",
    "JOINT_SCORES",
    "OUTLIER_METHODS",
    "QUARANTINE_OUTLIERS",
    "ValidationOptions",
]

#: outlier rules ``outlier_method`` (``--outlier-method``) accepts
OUTLIER_METHODS = ("auto", "iqr", "mad", "none")
#: the ``outlier_threshold`` each method uses unless told otherwise
DEFAULT_THRESHOLDS = {"auto": 3.0, "iqr": 5.0, "mad": 5.0, "none": 5.0}
#: which outliers go to quarantine: gross univariate ones only, or joint outliers too
QUARANTINE_OUTLIERS = ("gross", "joint")
#: the joint row scores ``joint_score`` (``--joint-score``) accepts
JOINT_SCORES = ("combined", "distance")
#: engine names ``validate(engine=...)`` and ``--engine`` accept
ENGINES = ("local", "ray")
#: rows per record batch unless told otherwise (bounds memory)
DEFAULT_BATCH_SIZE = 65_536
#: rows in the profile's uniform row sample (quantiles exact up to this many rows)
DEFAULT_SAMPLE_SIZE = 100_000
#: the options a schema's dataset block (``metadata: batchguard:``) may set, in the
#: order schemas write them, each with the kind of value it takes (checked by
#: :func:`pipeline.schema.spec.check_settings`)
DATASET_SETTINGS = {
    "label": "column",
    "max_bad_rows": "fraction_or_null",
    "min_class_share": "fraction",
    "near_constant_threshold": "fraction",
    "outlier_method": "method",
    "outlier_threshold": "positive_or_null",
    "quarantine_outliers": "quarantine_outliers",
    "joint_score": "joint_score",
    "strict": "bool",
    "severities": "severities",
}


@dataclass
class ValidationOptions:
    """Thresholds and switches of a validation run.

    Parameters
    ----------
    label : str, optional
        The label column: class counts, ``class_imbalance``, never an outlier source;
        its nulls are row-level ``null`` findings unless a schema marks it nullable.
    batch_size : int, default 65536
        Rows per record batch; bounds memory.
    near_constant_threshold : float, default 0.99
        ``near_constant`` when one value covers at least this share of the
        non-missing values.
    outlier_method : {"auto", "iqr", "mad", "none"}, default "auto"
        ``auto``: each column is judged on the scale where its bulk is roughly
        symmetric (a log scale for a skewed non-negative column), with each
        side's spread measured from the median to the 1st or 99th percentile, a
        point mass left out of it and frequent values never flagged; a value is
        an outlier beyond ``outlier_threshold`` such spreads past that
        percentile (:func:`pipeline.fences.shape_aware_fences`). Only gross
        errors fall outside; milder tails are left to the joint score.
        ``iqr``: more than ``outlier_threshold`` interquartile ranges beyond
        the nearer quartile (the first release's rule); the score is that
        distance in IQRs. ``mad``: ``|x - median| / (1.4826 * MAD)`` above
        ``outlier_threshold`` (a robust z-score; use a threshold near 10).
    outlier_threshold : float, optional
        Default per method: 3 for ``auto``, 5 for ``iqr`` and ``mad``
        (:data:`DEFAULT_THRESHOLDS`).
    quarantine_outliers : {"gross", "joint"}, default "gross"
        ``gross``: rows with a value beyond the fences go to quarantine, joint
        outliers (``joint_outlier``) are reported and kept. ``joint``: joint
        outliers go to quarantine too.
    joint_score : {"combined", "distance"}, default "combined"
        The joint row score (:func:`pipeline.joint.fit_joint`). ``combined``: two
        Cauchy models of the bulk, one of the columns together (in their robust
        scatter) and one of each column on its own, their negative
        log-likelihoods added. ``distance``: the robust Mahalanobis distance
        alone, which misses a small group of rows inside a bulk of several
        clusters (classes); ``benchmarks/RESULTS.md`` compares the two.
    min_class_share : float, default 0.05
        ``class_imbalance`` when the rarest class holds less than this share.
    max_bad_rows : float, optional
        Share of rows that may be quarantined without failing the gate. Unset:
        every error-level row finding fails the gate. Set: row findings are
        tolerated (reported as warnings) while the quarantined share stays at
        or below it, and a ``bad_rows`` error is raised above it.
    strict : bool, default False
        Warnings fail the gate too.
    sample_size : int, default 100000
        Rows in the uniform sample behind quantiles and histograms. Quantiles
        are exact for datasets up to this size; beyond it their rank error is
        below 0.62% with probability 99.9% (Dvoretzky–Kiefer–Wolfowitz).
    severities : dict, optional
        Per-check severity override, e.g. ``{"near_constant": "error"}``.
    not_null : sequence of str, optional
        Columns whose nulls are row-level ``null`` findings even without a
        schema (``make_loader`` passes its features and label).
    """

    label: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    near_constant_threshold: float = 0.99
    outlier_method: str = "auto"
    outlier_threshold: float | None = None
    quarantine_outliers: str = "gross"
    joint_score: str = "combined"
    min_class_share: float = 0.05
    max_bad_rows: float | None = None
    strict: bool = False
    sample_size: int = DEFAULT_SAMPLE_SIZE
    severities: dict[str, str] = field(default_factory=dict)
    not_null: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.not_null, str):  # one column, not its letters
            self.not_null = (self.not_null,)
        for name, choices in (
            ("outlier_method", OUTLIER_METHODS),
            ("quarantine_outliers", QUARANTINE_OUTLIERS),
            ("joint_score", JOINT_SCORES),
        ):
            if getattr(self, name) not in choices:
                raise UsageError(
                    f"{name} should be one of {', '.join(choices)}, "
                    f"but got {name}={getattr(self, name)!r}"
                )
        for name in ("near_constant_threshold", "min_class_share", "max_bad_rows",
                     "outlier_threshold"):  # fmt: skip
            value = getattr(self, name)
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if value is not None and not number:  # numpy's numbers are numbers.Real too
                raise UsageError(f"{name} should be a number, but got {name}={value!r}")
        if not isinstance(self.severities, Mapping):
            raise UsageError(
                "severities should map check names to error, warning or off, e.g. "
                f"{{'near_constant': 'error'}}, but got {self.severities!r}"
            )
        for name in ("near_constant_threshold", "min_class_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} should be between 0 and 1, but got {name}={value!r}")
        if self.max_bad_rows is not None and not 0.0 <= self.max_bad_rows <= 1.0:
            raise UsageError(
                f"max_bad_rows should be a fraction between 0 and 1, "
                f"but got max_bad_rows={self.max_bad_rows!r}"
            )
        if self.outlier_threshold is not None and not self.outlier_threshold > 0:
            raise UsageError(
                f"outlier_threshold should be positive, but got {self.outlier_threshold!r}"
            )
        for name in ("batch_size", "sample_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UsageError(
                    f"{name} should be a positive integer value, but got {name}={value!r}"
                )
            if value >= 2**63:
                raise UsageError(f"{name} should be below 2**63, but got {name}={value!r}")
        for check, level in self.severities.items():
            if check not in REASONS:  # a typo would leave the check as it was, silently
                close = difflib.get_close_matches(str(check), REASONS, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise UsageError(
                    f"severities: there is no check '{check}'; {hint}checks are "
                    f"{', '.join(REASONS)}"
                )
            if level not in SEVERITY_CHOICES:
                raise UsageError(
                    f"severity of '{check}' should be error, warning or off, but got {level!r}"
                )

    @property
    def outlier_k(self) -> float:
        """The outlier threshold in force: ``outlier_threshold``, or the method's default."""
        if self.outlier_threshold is not None:
            return self.outlier_threshold
        return DEFAULT_THRESHOLDS[self.outlier_method]

    def severity(
        self, check: str, column: str | None = None, schema_check: str | None = None
    ) -> Severity | None:
        """The severity a finding of ``check`` gets in this run; ``None`` when it is off.

        The reason table's default unless ``severities`` overrides it
        (:class:`~pipeline.findings.Severities` decides).
        """
        return Severities(self.severities).of(check, column, schema_check)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ValidationOptions:
        """Build options, naming any unknown keyword instead of ignoring it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UsageError(
                f"unknown option {unknown[0]!r}; known options are {', '.join(sorted(known))}"
            )
        return cls(**kwargs)
