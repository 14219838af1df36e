"""Drift against a baseline: what changed since the data the last model was trained on.

``validate new.parquet --baseline last.json`` (or ``validate(..., baseline=...)``)
compares the new dataset's merged profile with a stored one. The reference data
is never read again: the baseline is a ``--profile-out`` JSON, the
``profile.json`` of a saved :class:`~pipeline.Preprocessor` folder, or a slim
baseline written by :func:`write_baseline` (``--baseline-out``).

Metrics, per column (effect sizes, gated by thresholds; see :data:`DEFAULTS`)
---------------------------------------------------------------------------
- **numeric**: the Kolmogorov-Smirnov distance ``ks`` and the population
  stability index ``psi`` on the reference's 10 decile bins (open outer bins,
  ties merged; shares floored at 1e-4). KS is exact when each side has exact
  value counts (at most 4,096 distinct values) or a row sample that holds
  every row; otherwise it comes from the profiles' uniform row samples and is
  within ``sqrt(ln(2000) / (2 n))`` per sampled side (0.0062 at n = 100,000)
  of the KS over all rows with probability 99.9% (Dvoretzky-Kiefer-Wolfowitz),
  plus 0.0005 for a slim baseline's quantile grid.
- **categorical** and boolean: the total variation distance ``tvd`` over the
  reference's categories of at least 1% share plus one bin for every other
  value (new ones included), and, with exact counts on both sides,
  ``new_categories`` and ``vanished_categories`` (their share of rows).
- **label** (``--label``): ``tvd`` over the classes, ``class_ratio`` (the
  largest factor by which a class of at least 1% share grew or shrank), and
  ``new_classes`` / ``vanished_classes``, errors.
- **missingness**, every column: ``tvd`` over the shares of null, NaN, +inf,
  -inf and valid values.

Each metric is gated by a small-sample guard: a finding needs the effect at or
above its threshold *and* a test saying it is no chance at these sizes
(p < 0.001: KS's critical distance, chi-square on the binned table, a
two-proportion z-test, or all of a category's rows landing on one side).
At large n the effect alone decides.

Schema drift: a baseline column now missing is ``missing_column`` (error), a
new column ``new_column`` (warning), a changed Arrow type ``dtype`` (error; a
lossless widening such as int32 -> int64 or string -> large_string is a
warning). Temporal columns, and integer columns whose sampled values are all
distinct (identifiers), are measured but not gated unless the drift settings
name them under ``columns``.

Settings (the schema's ``metadata: batchguard: drift:`` block, or ``drift=``)::

    drift:
      numeric: {ks: [0.1, 0.2], psi: [0.1, 0.25]}     # [warn, error]; null: off
      categorical: {tvd: [0.05, 0.1]}
      label: {tvd: [0.05, 0.1], class_ratio: [1.5, 2.0]}
      missing: {tvd: [0.01, 0.05]}
      ignore: [user_id]
      columns:
        age: {ks: [0.05, 0.1]}
        ts: ignore
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from ._drift_metrics import (
    ALPHA,
    QUANTILE_GRID,
    StepCDF,
    chi2_significant,
    ks,
    ks_critical,
    one_sided_significant,
    proportions_significant,
    psi,
    psi_edges,
    shares_in_bins,
    tvd,
)
from .errors import UsageError
from .findings import Finding, Severity

if TYPE_CHECKING:
    from .findings import Severities
    from .profiling import Profile

__all__ = [
    "BASELINE_VERSION",
    "DEFAULTS",
    "MAX_CLASSES",
    "MIN_CATEGORY_SHARE",
    "SECTIONS",
    "Baseline",
    "ColumnSummary",
    "DriftConfig",
    "DriftResult",
    "Measurement",
    "compare",
    "load_baseline",
    "summarize",
    "write_baseline",
]

#: format version of a slim baseline file
BASELINE_VERSION = 1
#: reference categories below this share are grouped with every other value
MIN_CATEGORY_SHARE = 0.01
#: a numeric label with more distinct values than this is a target, not classes
MAX_CLASSES = 100
#: the missing states compared, in order
_STATES = ("null", "NaN", "+inf", "-inf", "valid")

#: section -> metric -> default (warn, error) thresholds; a finding when the value
#: is at or above one (and above zero); ``None`` switches that level off
DEFAULTS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "numeric": {"ks": (0.1, 0.2), "psi": (0.1, 0.25)},
    "categorical": {
        "tvd": (0.05, 0.1),
        "new_categories": (0.0, None),
        "vanished_categories": (0.0, None),
    },
    "label": {
        "tvd": (0.05, 0.1),
        "class_ratio": (1.5, 2.0),
        "new_classes": (None, 0.0),
        "vanished_classes": (None, 0.0),
    },
    "missing": {"tvd": (0.01, 0.05)},
}
#: the sections of the drift settings
SECTIONS = tuple(DEFAULTS)
# per-column keys: every metric name, with the missingness TVD under "missing"
_COLUMN_METRICS = sorted(
    {m for s, ms in DEFAULTS.items() if s != "missing" for m in ms} | {"missing"}
)

Thresholds = tuple[float | None, float | None]
Fail = Callable[[tuple[Any, ...], str], NoReturn]


# -- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftConfig:
    """Drift thresholds: per section, per column, and the columns left out.

    Parameters
    ----------
    sections : dict
        Section (``numeric``, ``categorical``, ``label``, ``missing``) -> metric ->
        ``(warn, error)``; unset metrics take :data:`DEFAULTS`.
    columns : dict
        Column -> metric -> ``(warn, error)`` (``missing`` for the missingness TVD).
    ignore : frozenset of str
        Columns not compared at all.

    Examples
    --------
    >>> cfg = DriftConfig.from_mapping({"numeric": {"ks": [0.05, 0.1]}, "ignore": ["id"]})
    >>> cfg.thresholds("numeric", "ks", "age"), cfg.thresholds("numeric", "psi", "age")
    ((0.05, 0.1), (0.1, 0.25))
    """

    sections: Mapping[str, Mapping[str, Thresholds]] = field(default_factory=dict)
    columns: Mapping[str, Mapping[str, Thresholds]] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()

    def thresholds(self, section: str, metric: str, column: str) -> Thresholds:
        """The ``(warn, error)`` thresholds of ``metric`` on ``column``."""
        key = "missing" if section == "missing" else metric
        own = self.columns.get(column, {})
        if key in own:
            return own[key]
        return self.sections.get(section, {}).get(metric, DEFAULTS[section][metric])

    def named(self, column: str) -> bool:
        """Whether the settings give ``column`` its own thresholds (it is then gated)."""
        return column in self.columns

    def check_columns(self, known: Iterable[str], where: str) -> None:
        """Refuse a column in ``ignore`` or ``columns`` that neither dataset has (a typo)."""
        names = set(known)
        for name in sorted({*self.ignore, *self.columns}):
            if name not in names:
                raise UsageError(
                    f"{where}: drift settings name column '{name}', which neither the baseline "
                    f"nor the data has{_did_you_mean(name, sorted(names))}"
                )

    @classmethod
    def from_mapping(cls, data: Any, fail: Fail | None = None) -> DriftConfig:
        """Read the drift settings block, refusing unknown keys and bad thresholds.

        Parameters
        ----------
        data : mapping or None
            The block (see the module docstring).
        fail : callable, optional
            Called with the key path and the problem; must raise. By default a
            :class:`~pipeline.errors.UsageError` naming ``drift``.

        Returns
        -------
        DriftConfig
        """
        fail = fail or _usage_fail
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            fail(
                (),
                "should be a mapping with numeric, categorical, label, missing, ignore or columns",
            )
        sections: dict[str, dict[str, Thresholds]] = {}
        columns: dict[str, dict[str, Thresholds]] = {}
        ignore: set[str] = set()
        for key, value in data.items():
            if key in DEFAULTS:
                sections[key] = _metrics(value, DEFAULTS[key], (key,), fail)
            elif key == "ignore":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    fail((key,), "should be a list of column names")
                ignore |= set(value)
            elif key == "columns":
                if not isinstance(value, Mapping):
                    fail((key,), "should be a mapping of column name to thresholds or 'ignore'")
                for name, spec in value.items():
                    if spec == "ignore":
                        ignore.add(str(name))
                        continue
                    known = {m: (None, None) for m in _COLUMN_METRICS}
                    columns[str(name)] = _metrics(spec, known, (key, name), fail)
            else:
                options = [*DEFAULTS, "ignore", "columns"]
                fail((key,), f"unknown drift setting '{key}'{_did_you_mean(str(key), options)}")
        return cls(sections, columns, frozenset(ignore))


def _metrics(
    value: Any, known: Mapping[str, Any], where: tuple[Any, ...], fail: Fail
) -> dict[str, Thresholds]:
    if not isinstance(value, Mapping):
        fail(
            where,
            "should be a mapping of metric to [warn, error], "
            f"e.g. {{{next(iter(known))}: [0.1, 0.2]}}",
        )
    out: dict[str, Thresholds] = {}
    for metric, pair in value.items():
        if metric not in known:
            fail(
                (*where, metric),
                f"unknown drift metric '{metric}'{_did_you_mean(str(metric), list(known))}; "
                f"metrics here are {', '.join(known)}",
            )
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(p is None or (_is_number(p) and 0 <= p < math.inf) for p in pair)
        ):
            fail(
                (*where, metric),
                "should be [warn, error]: two non-negative numbers (or null to switch a level off)",
            )
        warn, error = (None if p is None else float(p) for p in pair)
        if warn is not None and error is not None and warn > error:
            fail(
                (*where, metric),
                f"the warning threshold {warn:g} is above the error threshold {error:g}",
            )
        out[str(metric)] = (warn, error)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _did_you_mean(word: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _usage_fail(where: tuple[Any, ...], problem: str) -> NoReturn:
    place = ".".join(str(w) for w in ("drift", *where))
    raise UsageError(f"{place}: {problem}")


# -- summaries ---------------------------------------------------------------------------------
@dataclass
class ColumnSummary:
    """What drift needs of one column of one dataset.

    ``values`` holds exact counts of the valid values (at most 4,096 of them);
    otherwise ``sample`` (finite numeric values, or valid categorical values, of
    the profile's uniform row sample) or, in a slim baseline, ``quantiles``
    (1,001 inverted-CDF quantiles) or ``top`` (the sample counts of the values
    of at least 1% share) stand in, over ``n`` values.
    """

    name: str
    dtype: str
    kind: str
    rows: int
    null: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    mean: float | None = None
    std: float | None = None
    values: dict[Any, int] | None = None
    sample: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    top: dict[Any, int] | None = None
    n: int = 0
    sample_exact: bool = False
    bins: tuple[list[float], list[float]] | None = None
    _cdf: Any = field(default=None, repr=False, compare=False)

    @property
    def valid(self) -> int:
        """Values that are neither null, NaN nor infinite."""
        return self.rows - self.null - self.nan - self.posinf - self.neginf

    def missing_shares(self) -> np.ndarray:
        """Shares of rows that are null, NaN, +inf, -inf and valid."""
        counts = np.array([self.null, self.nan, self.posinf, self.neginf, self.valid], float)
        return counts / self.rows if self.rows else counts

    def cdf(self) -> StepCDF | None:
        """The numeric CDF of the valid values, or ``None`` when there are none."""
        if self._cdf is None:
            if self.values is not None:
                if self.values:
                    keys = np.array([float(k) for k in self.values], dtype=np.float64)
                    counts = np.fromiter(self.values.values(), dtype=np.int64)
                    self._cdf = StepCDF.from_counts(keys, counts, exact=True)
            elif self.quantiles is not None and len(self.quantiles):
                self._cdf = StepCDF.from_quantiles(self.quantiles, self.n)
            elif self.sample is not None and self.sample.size:
                cdf = StepCDF.from_sample(self.sample)
                self._cdf = StepCDF(cdf.xs, cdf.cdf, cdf.n, self.sample_exact)
        return self._cdf

    def counts(self) -> tuple[dict[Any, float], float, bool]:
        """Category counts, the values behind them, and whether they are exact.

        A slim baseline's ``top`` holds only the values of at least 1% share;
        what they leave is the other values' count.
        """
        if self.values is not None:
            return dict(self.values), float(sum(self.values.values())), True
        if self.top is not None:
            return dict(self.top), float(self.n), False
        if self.sample is None or not self.sample.size:
            return {}, 0.0, False
        keys, counts = np.unique(self.sample, return_counts=True)
        return (
            dict(zip(keys.tolist(), counts.tolist(), strict=True)),
            float(self.sample.size),
            self.sample_exact,
        )

    def psi_bins(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The reference's decile edges and its share in each bin."""
        if self.bins is not None:
            return np.asarray(self.bins[0], float), np.asarray(self.bins[1], float)
        cdf = self.cdf()
        if cdf is None:
            return None
        edges = psi_edges(cdf)
        return edges, shares_in_bins(cdf, edges)

    def to_slim(self) -> dict[str, Any]:
        """The slim baseline's entry: counts, exact values, or a 1,001-point quantile grid."""
        out: dict[str, Any] = {
            "dtype": self.dtype, "kind": self.kind, "rows": self.rows, "null": self.null,
            "nan": self.nan, "posinf": self.posinf, "neginf": self.neginf,
            "mean": self.mean, "std": self.std, "n": self.n,
        }  # fmt: skip
        if self.values is not None:
            out["values"] = [[k, v] for k, v in self.values.items()]
            return out
        if self.kind in _NUMERIC_KINDS:
            cdf = self.cdf()
            if cdf is not None:
                out["quantiles"] = cdf.quantiles(
                    np.arange(QUANTILE_GRID + 1) / QUANTILE_GRID
                ).tolist()
                edges, shares = self.psi_bins() or (np.empty(0), np.empty(0))
                out["bins"] = [edges.tolist(), shares.tolist()]
                out["sample_exact"] = self.sample_exact
        elif self.kind in _CATEGORY_KINDS:
            counts, total, _ = self.counts()
            keep = {k: v for k, v in counts.items() if total and v / total >= MIN_CATEGORY_SHARE}
            out["top"] = [[k, v] for k, v in keep.items()]
        return out

    @classmethod
    def from_slim(cls, name: str, data: Mapping[str, Any]) -> ColumnSummary:
        """Read an entry written by :meth:`to_slim`."""
        pairs = data.get("values")
        top = data.get("top")
        q = data.get("quantiles")
        bins = data.get("bins")
        return cls(
            name, str(data["dtype"]), str(data["kind"]), int(data["rows"]),
            int(data["null"]), int(data["nan"]), int(data["posinf"]), int(data["neginf"]),
            data.get("mean"), data.get("std"),
            values=None if pairs is None else {k: int(v) for k, v in pairs},
            quantiles=None if q is None else np.asarray(q, dtype=np.float64),
            top=None if top is None else {k: int(v) for k, v in top},
            n=int(data.get("n", 0)), sample_exact=bool(data.get("sample_exact", False)),
            bins=None if bins is None else (list(bins[0]), list(bins[1])),
        )  # fmt: skip


_NUMERIC_KINDS = ("numeric", "temporal")
_CATEGORY_KINDS = ("categorical", "boolean")


@dataclass
class Baseline:
    """The summaries drift compares: one dataset's columns, as :func:`summarize` gives them.

    Attributes
    ----------
    source : str
        Where the baseline came from (a file, a folder, or ``"profile"``).
    rows : int
    columns : dict of str to ColumnSummary
    slim : bool
        Read from a slim baseline (numeric columns as quantile grids).
    """

    source: str
    rows: int
    columns: dict[str, ColumnSummary]
    slim: bool = False

    def to_slim_dict(self) -> dict[str, Any]:
        """The slim baseline document (see :func:`write_baseline`)."""
        return {
            "baseline_version": BASELINE_VERSION,
            "rows": self.rows,
            "quantile_grid": QUANTILE_GRID,
            "columns": {name: c.to_slim() for name, c in self.columns.items()},
        }


def summarize(profile: Profile, source: str = "profile") -> Baseline:
    """The drift summaries of a profile (exact counts, or its row sample).

    Parameters
    ----------
    profile : Profile
    source : str
        How the baseline is named in messages.

    Returns
    -------
    Baseline
    """
    return Baseline(source, profile.rows, {n: _summary(profile, n) for n in profile.columns})


def _summary(profile: Profile, name: str) -> ColumnSummary:
    import pyarrow.compute as pc

    from .profiling import to_numpy, values_view

    c = profile.columns[name]
    out = ColumnSummary(
        name, c.dtype, c.kind, c.count + c.null, c.null, c.nan, c.posinf, c.neginf,
        c.mean if c.finite else None, c.std,
    )  # fmt: skip
    if c.kind == "other":
        return out
    if c.values is not None:
        out.values = {k: v for k, v in c.values.items() if k is not None}
        out.n = sum(out.values.values())
        return out
    if c.kind in _NUMERIC_KINDS:
        out.sample = profile.sample_values(name)
        out.n = int(out.sample.size)
        out.sample_exact = out.n == c.finite
    else:
        column = profile.sample.table().column(name).combine_chunks()
        present = pc.drop_null(values_view(column, c.kind))
        out.sample = to_numpy(present)
        out.n = int(out.sample.size)
        out.sample_exact = out.n == c.count
    return out


# -- reading and writing baselines -------------------------------------------------------------
def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read a baseline: a ``--profile-out`` JSON, a saved Preprocessor folder, or a slim baseline.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Baseline

    Raises
    ------
    UsageError
        The file is missing, is not JSON, or is neither a profile nor a baseline.
    """
    from .profiling import Profile

    name = os.fspath(path)
    target = Path(name)
    if target.is_dir():
        target = target / "profile.json"
        if not target.is_file():
            raise UsageError(
                f"--baseline {name}: the folder has no profile.json; pass a --profile-out "
                "JSON, a --baseline-out JSON or a saved preprocessor folder"
            )
    elif not target.is_file():
        raise UsageError(
            f"--baseline {name}: no such file; write one with --profile-out or --baseline-out"
        )
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--baseline {name}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--baseline {name}: not a batchguard profile or baseline")
    try:
        if "baseline_version" in data:
            version = data["baseline_version"]
            if version != BASELINE_VERSION:
                newer = isinstance(version, int) and version > BASELINE_VERSION
                fix = "upgrade batchguard to read it" if newer else "write it again"
                raise UsageError(
                    f"--baseline {name}: baseline_version {version!r} is not supported "
                    f"(this batchguard reads {BASELINE_VERSION}); {fix}"
                )
            columns = {n: ColumnSummary.from_slim(n, c) for n, c in data["columns"].items()}
            baseline = Baseline(name, int(data["rows"]), columns, slim=True)
        elif "profile_version" in data:
            baseline = summarize(Profile.from_dict(data), name)
        else:
            baseline = None
    except UsageError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"--baseline {name}: damaged baseline ({type(exc).__name__}: {exc})"
        ) from None
    if baseline is not None:
        if not baseline.rows:  # every comparison with it would pass, whatever the data
            raise UsageError(
                f"--baseline {name}: the baseline has no rows to compare with; write it from "
                "the data of a run that had some"
            )
        return baseline
    what = "a validate report (--format json)" if "report_version" in data else "not a profile"
    raise UsageError(
        f"--baseline {name}: {what}; write the baseline with --profile-out or --baseline-out"
    )


def write_baseline(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write a slim baseline of ``profile`` to ``path`` (JSON, atomically).

    Exact value counts stay exact; a numeric column with more distinct values
    keeps 1,001 quantiles of its row sample (KS within 0.0005 of the KS
    against the sample itself) and its decile bins; a categorical one the
    values of at least 1% share. About 19 kB per numeric column (0.6 MB at 32
    columns, 19 MB at 1,000), against about 0.54 MB per float32 column for the
    full profile, which embeds its 100,000-row sample.
    """
    from ._atomic import write_text

    doc = summarize(profile).to_slim_dict()
    write_text(path, json.dumps(doc, default=str, separators=(",", ":")) + "\n")


# -- comparison --------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One metric on one column, drifted or not (every one is reported).

    Attributes
    ----------
    column : str
    section : str
        ``numeric``, ``categorical``, ``label`` or ``missing``.
    metric : str
    value : float
    warn, error : float or None
        The thresholds in force (``None``: that level is off, or not gated).
    status : str
        ``ok``, ``warning``, ``error``, ``small_sample`` (over a threshold but
        within what chance gives at these sizes) or ``reported`` (not gated).
    exact : bool
        Computed from every row (not a sample).
    bound : float
        The largest error of ``value`` against the value over all rows (KS only; 0 when exact).
    detail : str
        Where it was reached or what moved, for people.
    """

    column: str
    section: str
    metric: str
    value: float
    warn: float | None
    error: float | None
    status: str = "ok"
    exact: bool = True
    bound: float = 0.0
    detail: str = ""

    @property
    def threshold(self) -> float | None:
        """The threshold crossed (the error one for errors), else the warning one."""
        return self.error if self.status == "error" else self.warn

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column, "section": self.section, "metric": self.metric,
            "value": self.value, "warn": self.warn, "error": self.error,
            "status": self.status, "exact": self.exact, "bound": self.bound,
            "detail": self.detail,
        }  # fmt: skip


@dataclass
class DriftResult:
    """What the comparison with a baseline found.

    Attributes
    ----------
    baseline : str
        The baseline's file or folder.
    baseline_rows, rows : int
        Rows of the baseline and of the data compared.
    slim : bool
    measurements : list of Measurement
        Every metric computed, drifted or not, in column order.
    findings : list of Finding
    compared : list of str
        Columns compared (present on both sides, not ignored).
    ignored : list of str
    overlays : dict
        Column -> the reference and current shares on common bins, for the
        HTML report: ``{"kind": "numeric", "edges": [...], "reference": [...],
        "current": [...]}`` or ``{"kind": "categories", "labels": [...], ...}``.
        Only for columns with a drift finding.
    checks : list of (str, str)
        The ``(column, check)`` pairs the comparison ran.
    """

    baseline: str
    baseline_rows: int
    rows: int
    slim: bool
    measurements: list[Measurement] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    overlays: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def flagged(self) -> list[Measurement]:
        """Measurements at warning or error level."""
        return [m for m in self.measurements if m.status in ("warning", "error")]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's ``drift`` block."""
        return {
            "baseline": self.baseline,
            "baseline_rows": self.baseline_rows,
            "rows": self.rows,
            "slim": self.slim,
            "compared": self.compared,
            "ignored": self.ignored,
            "measurements": [m.to_dict() for m in self.measurements],
        }


def compare(
    baseline: Baseline,
    current: Profile | Baseline,
    config: DriftConfig | None = None,
    *,
    label: str | None = None,
    dataset: str = "the data",
    severities: Severities | None = None,
) -> DriftResult:
    """Compare a dataset's profile with a baseline; never reads data.

    Parameters
    ----------
    baseline : Baseline
        From :func:`load_baseline` or :func:`summarize`.
    current : Profile or Baseline
        The merged profile of the data now (a Ray run's merged profile too).
    config : DriftConfig, optional
        Thresholds; :data:`DEFAULTS` without it.
    label : str, optional
        The label column (class rules instead of the categorical ones).
    dataset : str
        The data's name in messages.
    severities : Severities, optional
        The run's per-code overrides (``severities: {drift: warning}`` or ``off``).

    Returns
    -------
    DriftResult

    Examples
    --------
    >>> import pyarrow as pa
    >>> from pipeline.profiling import Profile
    >>> batch = pa.record_batch({"x": [1.0, 2.0, 3.0], "_row_id": [0, 1, 2]})
    >>> p = Profile(batch.schema); _ = p.update(batch)
    >>> result = compare(summarize(p), p)
    >>> [(m.metric, m.value) for m in result.measurements if m.section == "numeric"]
    [('ks', 0.0), ('psi', 0.0)]
    """
    cur = current if isinstance(current, Baseline) else summarize(current, dataset)
    cfg = config or DriftConfig()
    job = _Comparison(baseline, cur, cfg, label, dataset, severities)
    return job.run()


class _Comparison:
    def __init__(
        self, ref: Baseline, cur: Baseline, cfg: DriftConfig, label: str | None,
        dataset: str, severities: Severities | None,
    ):  # fmt: skip
        self.ref, self.cur, self.cfg, self.label = ref, cur, cfg, label
        self.dataset, self.severities = dataset, severities
        self.result = DriftResult(ref.source, ref.rows, cur.rows, ref.slim)
        self.where = f"the baseline {ref.source}"

    def run(self) -> DriftResult:
        res = self.result
        for name in self.ref.columns:
            if name in self.cfg.ignore:
                res.ignored.append(name)
            elif name not in self.cur.columns:
                self._finding(
                    "missing_column",
                    name,
                    "error",
                    None,
                    f"column '{name}' is in {self.where} but not in {self.dataset}; add it "
                    "upstream, or list it under drift ignore if it was dropped on purpose",
                )
        for name, c in self.cur.columns.items():
            if name in self.cfg.ignore:
                if name not in self.ref.columns:
                    res.ignored.append(name)
                continue
            r = self.ref.columns.get(name)
            if r is None:
                self._finding(
                    "new_column",
                    name,
                    "warning",
                    None,
                    f"column '{name}' ({c.dtype}) of {self.dataset} is not in {self.where}; check "
                    "that it is meant to be there, and write a new baseline once it is",
                )
                continue
            res.compared.append(name)
            if self._dtype(r, c):
                self._column(r, c)
        return res

    # -- findings ------------------------------------------------------------------------------
    def _finding(
        self, code: str, column: str, level: Severity, m: Measurement | None, message: str
    ) -> None:
        self.result.checks.append((column, code))
        if self.severities is not None:
            override = self.severities.overrides.get(code)
            if override == "off":
                return
            if override in ("error", "warning"):
                level = override  # type: ignore[assignment]
        value = None if m is None else m.value
        self.result.findings.append(
            Finding(
                code, column, level, 1, 0.0 if value is None else value, message,
                metric=None if m is None else m.metric, value=value,
                threshold=None if m is None else m.threshold,
            )
        )  # fmt: skip

    def _dtype(self, r: ColumnSummary, c: ColumnSummary) -> bool:
        """A ``dtype`` finding when the type changed; whether the distributions compare."""
        if r.dtype == c.dtype:
            return True
        widening = _widens(r.dtype, c.dtype)
        level: Severity = "warning" if widening else "error"
        how = "a lossless widening" if widening else "not a lossless widening"
        self._finding(
            "dtype",
            c.name,
            level,
            None,
            f"column '{c.name}' is {r.dtype} in {self.where} but {c.dtype} in {self.dataset} "
            f"({how}); cast it upstream, or write a new baseline if the change is meant",
        )
        return r.kind == c.kind or {r.kind, c.kind} <= {"numeric", "boolean"}

    # -- per column ----------------------------------------------------------------------------
    def _column(self, r: ColumnSummary, c: ColumnSummary) -> None:
        name = c.name
        self.result.checks.append((name, "label_drift" if name == self.label else "drift"))
        self._missing(r, c)
        if c.kind == "other":
            return
        if name == self.label:
            if _classes(r) and _classes(c):
                self._classes(r, c)
                return
            code = "label_drift"
        else:
            code = "drift"
        gated = self.cfg.named(name) or not _reported_only(r, c)
        if (
            c.kind in _NUMERIC_KINDS
            and r.kind in _NUMERIC_KINDS
            or {r.kind, c.kind} == {"numeric", "boolean"}
        ):
            self._numeric(r, c, code, gated)
        else:
            self._categories(r, c, code, gated)

    def _measure(
        self,
        column: str,
        section: str,
        metric: str,
        value: float,
        significant: bool,
        *,
        gated: bool = True,
        exact: bool = True,
        bound: float = 0.0,
        detail: str = "",
    ) -> Measurement:
        warn, error = self.cfg.thresholds(section, metric, column)
        status = "ok"
        if not gated:
            status = "reported"
        elif value > 0:
            hit = "error" if error is not None and value >= error else (
                "warning" if warn is not None and value >= warn else "ok")  # fmt: skip
            status = hit if hit == "ok" or significant else "small_sample"
        # the findings' metric names say what was measured: "tvd" alone would not
        shown = "missing_tvd" if section == "missing" else metric
        m = Measurement(column, section, shown, value, warn, error, status, exact, bound, detail)
        self.result.measurements.append(m)
        return m

    def _report(
        self, code: str, column: str, found: list[Measurement], what: str, advice: str
    ) -> None:
        flagged = [m for m in found if m.status in ("warning", "error")]
        if not flagged:
            return
        worst = max(
            flagged,
            key=lambda m: (
                m.status == "error",
                m.value / (m.threshold or 1e-12) if m.threshold else math.inf,
            ),
        )
        parts = "; ".join(_describe(m) for m in flagged)
        message = f"column '{column}' of {self.dataset} {what} {self.where}: {parts}; {advice}"
        self._finding(code, column, worst.status, worst, message)  # type: ignore[arg-type]

    def _missing(self, r: ColumnSummary, c: ColumnSummary) -> None:
        p, q = r.missing_shares(), c.missing_shares()
        value = tvd(p, q)
        moved = int(np.argmax(np.abs(p - q)[:-1]))  # name the missing state, not "valid"
        detail = f"{_STATES[moved]} {p[moved]:.2%} -> {q[moved]:.2%} of rows"
        m = self._measure(
            c.name, "missing", "tvd", value, chi2_significant(p, q, r.rows, c.rows), detail=detail
        )
        self._report(
            "drift",
            c.name,
            [m],
            "has missing values in other shares than in",
            "find what blanks or breaks the values upstream, or impute them",
        )

    def _numeric(self, r: ColumnSummary, c: ColumnSummary, code: str, gated: bool) -> None:
        name = c.name
        f, g = r.cdf(), c.cdf()
        if f is None or g is None:
            return  # no valid value on a side: the missingness TVD says so
        d, x, fx, gx = ks(f, g)
        exact = f.exact and g.exact
        bound = _dkw(f) + _dkw(g) + f.bound + g.bound
        detail = (
            f"at {_num(x)}: {fx:.1%} of baseline values and {gx:.1%} of current ones "
            "are at or below it"
        )
        if not exact:
            detail += (
                f" (from row samples of {f.n:,} and {g.n:,} values: within {bound:.4f} "
                "of the KS over all rows)"
            )
        m_ks = self._measure(
            name,
            "numeric",
            "ks",
            d,
            d > ks_critical(f.n, g.n),
            gated=gated,
            exact=exact,
            bound=bound,
            detail=detail,
        )
        edges, p = r.psi_bins() or (np.empty(0), np.empty(0))
        q = shares_in_bins(g, edges)
        moved = int(np.argmax(np.abs(p - q)))
        where = _bin_name(edges, moved)
        m_psi = self._measure(
            name,
            "numeric",
            "psi",
            psi(p, q),
            chi2_significant(p, q, f.n, g.n),
            gated=gated,
            exact=exact,
            detail=f"decile bin {where}: {p[moved]:.1%} of baseline values, "
            f"{q[moved]:.1%} of current ones",
        )
        found = [m_ks, m_psi]
        if any(m.status in ("warning", "error") for m in found):
            self.result.overlays[name] = _numeric_overlay(f, g)
        self._report(code, name, found, "drifted from", _ADVICE)

    def _categories(self, r: ColumnSummary, c: ColumnSummary, code: str, gated: bool) -> None:
        name = c.name
        section = "label" if code == "label_drift" else "categorical"
        ref, n_ref, ref_exact = r.counts()
        cur, n_cur, cur_exact = c.counts()
        if not n_ref or not n_cur:
            return
        keys = [k for k, v in ref.items() if v / n_ref >= MIN_CATEGORY_SHARE]
        p = np.array([ref[k] for k in keys] + [0.0]) / n_ref
        q = np.array([cur.get(k, 0) for k in keys] + [0.0]) / n_cur
        p[-1], q[-1] = max(0.0, 1.0 - p[:-1].sum()), max(0.0, 1.0 - q[:-1].sum())
        moved = int(np.argmax(np.abs(p - q)))
        what = "other values" if moved == len(keys) else repr(keys[moved])
        found = [
            self._measure(
                name,
                section,
                "tvd",
                tvd(p, q),
                chi2_significant(p, q, n_ref, n_cur),
                gated=gated,
                exact=ref_exact and cur_exact,
                detail=f"{what}: {p[moved]:.1%} -> {q[moved]:.1%}",
            )
        ]
        if ref_exact and cur_exact and section == "categorical":
            found += self._one_sided(name, ref, cur, n_ref, n_cur, "categories", gated)
        if any(m.status in ("warning", "error") for m in found):
            self.result.overlays[name] = _category_overlay(ref, cur, n_ref, n_cur)
        self._report(code, name, found, "drifted from", _ADVICE)

    def _one_sided(
        self,
        name: str,
        ref: dict[Any, float],
        cur: dict[Any, float],
        n_ref: float,
        n_cur: float,
        noun: str,
        gated: bool = True,
    ) -> list[Measurement]:
        section = "label" if noun == "classes" else "categorical"
        out = []
        for metric, here, there, n_here, n_there in (
            (f"new_{noun}", cur, ref, n_cur, n_ref),
            (f"vanished_{noun}", ref, cur, n_ref, n_cur),
        ):
            only = sorted((k for k in here if k not in there), key=lambda k: -here[k])
            k = sum(here[v] for v in only)
            shown = ", ".join(repr(v) for v in only[:5]) + (
                f" and {len(only) - 5:,} more" if len(only) > 5 else ""
            )
            side = "current" if metric.startswith("new") else "baseline"
            detail = f"{len(only):,} ({shown}), {k / n_here:.2%} of {side} values" if only else ""
            out.append(
                self._measure(
                    name,
                    section,
                    metric,
                    k / n_here if n_here else 0.0,
                    # each value on its own: many rare values each seen on one side
                    # only is what small samples of a long tail look like
                    any(one_sided_significant(here[v], n_here, n_there) for v in only),
                    gated=gated,
                    detail=detail,
                )
            )
        return out

    def _classes(self, r: ColumnSummary, c: ColumnSummary) -> None:
        name = c.name
        ref, n_ref, _ = r.counts()
        cur, n_cur, _ = c.counts()
        if not n_ref or not n_cur:
            return
        keys = list(dict.fromkeys([*ref, *cur]))
        p = np.array([ref.get(k, 0) for k in keys], float) / n_ref
        q = np.array([cur.get(k, 0) for k in keys], float) / n_cur
        moved = int(np.argmax(np.abs(p - q)))
        found = [
            self._measure(
                name,
                "label",
                "tvd",
                tvd(p, q),
                chi2_significant(p, q, n_ref, n_cur),
                detail=f"class {keys[moved]!r}: {p[moved]:.1%} -> {q[moved]:.1%}",
            )
        ]
        both = (p > 0) & (q > 0) & (np.maximum(p, q) >= MIN_CATEGORY_SHARE)
        if both.any():
            ratio = np.where(
                both, np.maximum(q / np.where(p > 0, p, 1), p / np.where(q > 0, q, 1)), 0.0
            )
            i = int(np.argmax(ratio))
            found.append(self._measure(
                name, "label", "class_ratio", float(ratio[i]),
                proportions_significant(p[i], n_ref, q[i], n_cur),
                detail=f"class {keys[i]!r}: {p[i]:.2%} -> {q[i]:.2%} of rows",
            ))  # fmt: skip
        found += self._one_sided(name, ref, cur, n_ref, n_cur, "classes")
        if any(m.status in ("warning", "error") for m in found):
            self.result.overlays[name] = _category_overlay(ref, cur, n_ref, n_cur)
        self._report(
            "label_drift",
            name,
            found,
            "has other class shares than in",
            "retrain or reweight for the new class balance, or fix the labelling upstream",
        )


_ADVICE = (
    "find the upstream change; if it is meant, write a new baseline or raise this column's "
    "drift thresholds (drift: columns:) in the schema"
)


def _classes(c: ColumnSummary) -> bool:
    """Whether a label column holds classes (else a regression target, compared as numbers)."""
    if c.values is None:
        return False
    return c.kind in _CATEGORY_KINDS or len(c.values) <= MAX_CLASSES


def _reported_only(r: ColumnSummary, c: ColumnSummary) -> bool:
    """Temporal columns and integer identifiers move by design: measured, not gated."""
    if c.kind == "temporal":
        return True
    if not c.dtype.startswith(("int", "uint")) or r.values is not None or c.values is not None:
        return False
    sample = r.sample if r.sample is not None else None
    return sample is not None and sample.size > 1 and np.unique(sample).size == sample.size


def _dkw(cdf: StepCDF) -> float:
    """DKW's bound on a sample's ECDF error (probability 0.1%); 0 when it holds every value."""
    if cdf.exact or cdf.n == 0:
        return 0.0
    return math.sqrt(math.log(2 / ALPHA) / (2 * cdf.n))


def _describe(m: Measurement) -> str:
    pairs = (("warning", m.warn), ("error", m.error))
    levels = ", ".join(f"{what} from {t:g}" for what, t in pairs if t is not None)
    text = f"{m.metric} {m.value:.3g} ({levels})"
    return f"{text}, {m.detail}" if m.detail else text


def _num(x: float) -> str:
    return f"{x:.6g}"


def _bin_name(edges: np.ndarray, i: int) -> str:
    lo = "-inf" if i == 0 else _num(edges[i - 1])
    hi = "inf" if i == len(edges) else _num(edges[i])
    return f"({lo}, {hi}]"


def _widens(old: str, new: str) -> bool:
    """Whether Arrow type ``old`` -> ``new`` loses nothing (wider numbers, string forms)."""
    strings = {"string", "large_string", "string_view"}
    base = {t: _dictionary_value(t) for t in (old, new)}
    if base[old] in strings and base[new] in strings:
        return True
    ints = {f"int{b}": b for b in (8, 16, 32, 64)}
    uints = {f"uint{b}": b for b in (8, 16, 32, 64)}
    floats = {"halffloat": 11, "float": 24, "double": 53}  # significand bits
    if old in ints and new in ints:
        return ints[new] > ints[old]
    if old in uints and (new in uints or new in ints):
        return (uints | ints)[new] > uints[old] if new in uints else ints[new] > uints[old]
    if old in floats and new in floats:
        return floats[new] > floats[old]
    if (old in ints or old in uints) and new in floats:
        return (ints | uints)[old] < floats[new]
    return False


def _dictionary_value(typ: str) -> str:
    if typ.startswith("dictionary<values="):
        return typ[len("dictionary<values=") :].split(",", 1)[0]
    return typ


def _numeric_overlay(f: StepCDF, g: StepCDF, bins: int = 30) -> dict[str, Any]:
    """Both distributions on one set of equal-width bins over their middle 99%."""
    ends = np.concatenate(
        [f.quantiles(np.array([0.005, 0.995])), g.quantiles(np.array([0.005, 0.995]))]
    )
    lo, hi = float(ends.min()), float(ends.max())
    if not hi > lo:
        lo, hi = float(min(f.xs[0], g.xs[0])), float(max(f.xs[-1], g.xs[-1]))
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        # the outer bins take what lies beyond them, so every value is drawn
        "reference": shares_in_bins(f, edges[1:-1]).tolist(),
        "current": shares_in_bins(g, edges[1:-1]).tolist(),
    }


def _category_overlay(ref: dict[Any, float], cur: dict[Any, float], n_ref: float, n_cur: float,
                      top: int = 12) -> dict[str, Any]:  # fmt: skip
    """The shares of the categories that weigh most on either side, and the rest as one."""
    keys = list(dict.fromkeys([*ref, *cur]))
    weight = {k: max(ref.get(k, 0) / n_ref, cur.get(k, 0) / n_cur) for k in keys}
    shown = sorted(keys, key=lambda k: -weight[k])[:top]
    p = [ref.get(k, 0) / n_ref for k in shown]
    q = [cur.get(k, 0) / n_cur for k in shown]
    labels = [str(k) for k in shown]
    rest_p, rest_q = max(0.0, 1 - sum(p)), max(0.0, 1 - sum(q))
    if rest_p > 1e-12 or rest_q > 1e-12:
        labels.append("(other values)")
        p.append(rest_p)
        q.append(rest_q)
    return {"kind": "categories", "labels": labels, "reference": p, "current": q}
