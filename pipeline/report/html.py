"""``--report OUT.html``: one self-contained HTML file for people.

What it shows: the verdict and counts, the findings (failing ones first), with
a baseline the drift measurements and, for every drifted column, its reference
and current distributions overlaid (histogram on shared bins, or category and
class shares), a few quarantined rows with their reasons, the label distribution, and a
collapsed panel per column with its statistics and a histogram (inline SVG)
marking the NaN, inf and null counts and the outlier fences.

Safety and size
---------------
- Self-contained: inline CSS, no script at all, no remote fonts or images. A
  Content-Security-Policy ``<meta>`` forbids scripts and remote loads, as a
  second line of defence.
- Every value from the data (column names, categorical values, quarantined
  cells, messages quoting them) reaches the page through Jinja2 with
  autoescaping on; no value is marked safe. Element ids are ``col-<index>``,
  never a column name.
- Histograms are one ``<path>`` per column, column panels are collapsed
  ``<details>`` (open only where there are findings, up to
  :data:`OPEN_PANELS`), so a 500-column report stays around a megabyte and
  opens fast.
- No raw data dump: statistics, up to :data:`MAX_TOP_VALUES` most frequent
  values of a column, and up to 20 example rows (cells cut at
  :data:`MAX_CELL` characters).
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ._common import check_label, number, rows_affected

if TYPE_CHECKING:
    from ..fences import Fences
    from ..findings import Finding
    from .model import Report

__all__ = [
    "MAX_CELL",
    "MAX_CLASSES",
    "MAX_EXAMPLE_COLUMNS",
    "MAX_TOP_VALUES",
    "OPEN_PANELS",
    "render",
    "write",
]

#: column panels opened at load, at most (those with findings first)
OPEN_PANELS = 20
#: most frequent values listed for a column with exact value counts
MAX_TOP_VALUES = 10
#: label classes drawn
MAX_CLASSES = 50
#: characters of a cell shown in the example rows
MAX_CELL = 200
#: columns listed in an example row's "all values" panel
MAX_EXAMPLE_COLUMNS = 200

# histogram geometry (SVG user units)
_W, _H, _LEFT, _TOP, _BOTTOM = 480.0, 90.0, 6.0, 6.0, 16.0
_SPECIAL_W, _SPECIAL_GAP = 30.0, 18.0

_ENV: Any = None


def _environment() -> Any:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.PackageLoader("pipeline.report", "templates"),
            autoescape=True,  # every template, whatever its name: nothing from the data is trusted
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


def render(report: Report) -> str:
    """The report as one self-contained HTML document.

    Example rows come from ``report.examples`` and outlier fences from
    ``report.fences``: what the run chose and applied.
    """
    examples = report.examples
    fences = report.fences
    by_column: dict[str | None, list[Finding]] = {}
    for f in report.findings:
        by_column.setdefault(f.column, []).append(f)
    columns = [
        _column(report, i, name, fences.get(name), by_column.get(name, []))
        for i, name in enumerate(report.profile.columns)
    ]
    opened = 0
    for col in columns:
        if col["findings"] and opened < OPEN_PANELS:
            col["open"] = True
            opened += 1
    index = {c["name"]: c["index"] for c in columns}
    context = {
        "title": f"batchguard: {'PASSED' if report.passed else 'FAILED'}: {report.dataset}",
        "report": report,
        "version": _version(),
        "summary": _summary(report),
        "quarantined": number(report.rows_quarantined),
        "findings": [_finding(report, f, index) for f in _ordered(report)],
        "examples": [_example(e, index) for e in examples],
        "label": _label(report),
        "joint": _joint(report, index),
        "drift": _drift(report, index),
        "columns": columns,
        "flagged": [c for c in columns if c["findings"]],
        "settings": _settings(report),
    }
    return str(_environment().get_template("report.html").render(context))


def write(report: Report, path: str | os.PathLike[str]) -> None:
    """Write the HTML report to ``path`` atomically (a temporary file, then a rename)."""
    from .._atomic import write_text

    write_text(path, render(report))


# -- view model --------------------------------------------------------------------------------
def _ordered(report: Report) -> list[Finding]:
    return sorted(report.findings, key=lambda f: not report.fails(f))


def _summary(report: Report) -> list[tuple[str, str]]:
    return [
        ("rows", number(report.rows)),
        ("columns", number(len(report.profile.columns))),
        ("clean", number(report.rows_clean)),
        ("quarantined", number(report.rows_quarantined)),
        ("errors", number(len(report.errors))),
        ("warnings", number(len(report.warnings))),
    ]


def _settings(report: Report) -> list[tuple[str, str]]:
    o = report.options
    out = [
        ("schema", report.schema or "none"),
        ("label", o.label or "none"),
        ("outliers", f"{o.outlier_method}, threshold {o.outlier_k:g}"),
        ("joint score", o.joint_score),
        ("near-constant threshold", f"{o.near_constant_threshold:.2%}"),
        ("min class share", f"{o.min_class_share:.2%}"),
        ("max bad rows", "unset" if o.max_bad_rows is None else f"{o.max_bad_rows:.2%}"),
        ("strict", "yes" if o.strict else "no"),
        ("exit zero", "yes" if report.exit_zero else "no"),
        ("elapsed", f"{report.elapsed:.2f} s"),
    ]
    out += [(f"output: {kind}", path) for kind, path in report.outputs.items()]
    return out


def _finding(report: Report, f: Finding, index: dict[str, int]) -> dict[str, Any]:
    return {
        "level": "error" if report.fails(f) else "warning",
        "severity": f.severity,
        "check": check_label(f),
        "column": f.column,
        "anchor": index.get(f.column) if f.column is not None else None,
        "rows": rows_affected(f),
        "message": f.message,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return number(value) if not math.isfinite(value) else repr(value)
    if isinstance(value, bytes):
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _example(example: dict[str, Any], index: dict[str, int]) -> dict[str, Any]:
    values: dict[str, Any] = example.get("values", {})
    reasons = []
    named: list[str] = []
    for r in example.get("reasons") or []:
        column = r.get("column")
        if column is not None and column not in named:
            named.append(column)
        score = r.get("score")
        reasons.append(
            {
                "check": r.get("check") or "",
                "schema_check": r.get("schema_check"),
                "column": column,
                "anchor": index.get(column) if column is not None else None,
                "value": "" if r.get("value") is None else _cell(r["value"]),
                "threshold": r.get("threshold") or "",
                "score": None if score is None else f"{score:.3g}",
            }
        )
    cells = [(name, _cell(values[name])) for name in named if name in values]
    everything = [(name, _cell(v)) for name, v in list(values.items())[:MAX_EXAMPLE_COLUMNS]]
    return {
        "row_id": example.get("row_id"),
        "reasons": reasons,
        "cells": cells,
        "all": everything,
        "more": max(0, len(values) - MAX_EXAMPLE_COLUMNS),
    }


def _label(report: Report) -> dict[str, Any] | None:
    label = report.label
    if label is None:
        return None
    classes: dict[str, int] = label["classes"]
    total = sum(classes.values())
    top = max(classes.values(), default=0) or 1
    bars = [
        {
            "value": _cell(k),
            "count": number(v),
            "share": f"{v / total:.2%}" if total else "–",
            "width": f"{100 * v / top:.1f}",
        }
        for k, v in list(classes.items())[:MAX_CLASSES]
    ]
    return {
        "column": label["column"],
        "bars": bars,
        "more": max(0, len(classes) - MAX_CLASSES),
        "note": "" if classes else "too many distinct values to count exactly",
    }


def _column(
    report: Report, i: int, name: str, fence: Fences | None, findings: list[Finding]
) -> dict[str, Any]:
    st = report.profile.stats(name)
    levels = ["error" if report.fails(f) else "warning" for f in findings]
    distinct = number(st.distinct) if st.distinct_exact else f"≥ {number(st.distinct)}"
    stats = [
        ("count", number(st.count)),
        ("null", number(st.null)),
        ("NaN", number(st.nan)),
        ("+inf", number(st.posinf)),
        ("-inf", number(st.neginf)),
        ("min", _cell(st.min) if st.kind == "temporal" else number(st.min)),
        ("max", _cell(st.max) if st.kind == "temporal" else number(st.max)),
        ("mean", number(st.mean)),
        ("std", number(st.std)),
        ("q25", number(st.q25)),
        ("median", number(st.median)),
        ("q75", number(st.q75)),
        ("top value", _top(st)),
        (
            "top share",
            "–" if st.top_value_fraction is None else f"{st.top_value_fraction:.2%}",
        ),
        ("distinct", distinct),
    ]
    if st.kind in ("categorical", "other"):
        stats = [s for s in stats if s[0] not in {"NaN", "+inf", "-inf", "mean", "std"}]
        stats = [s for s in stats if s[0] not in {"min", "max", "q25", "median", "q75"}]
    missing = [
        (what, n) for what, n in (("null", st.null), ("NaN", st.nan), ("+inf", st.posinf),
                                  ("-inf", st.neginf)) if n
    ]  # fmt: skip
    fences_text = ""
    if fence is not None:
        fences_text = f"outlier fences [{number(fence.low)}, {number(fence.high)}]"
    return {
        "index": i,
        "name": name,
        "dtype": st.dtype,
        "kind": st.kind,
        "findings": [
            {"level": lv, "check": check_label(f), "message": f.message}
            for lv, f in zip(levels, findings, strict=True)
        ],
        "status": "error" if "error" in levels else ("warning" if levels else "ok"),
        "open": False,
        "stats": stats,
        "missing": [(what, number(n)) for what, n in missing],
        "histogram": _histogram(st, _fence_lines(fence), missing),
        "fences": fences_text,
        "top_values": _top_values(report, name),
    }


def _top(st: Any) -> str:
    if st.top_value is None:
        return "–"
    if st.kind == "numeric" and isinstance(st.top_value, (int, float)):
        return number(st.top_value)
    return _cell(st.top_value)


def _top_values(report: Report, name: str) -> list[dict[str, str]] | None:
    column = report.profile.columns[name]
    if column.kind not in ("categorical", "boolean") or not column.values:
        return None
    total = sum(column.values.values())
    top = sorted(column.values.items(), key=lambda kv: -kv[1])[:MAX_TOP_VALUES]
    most = top[0][1] or 1
    return [
        {
            "value": _cell(v),
            "count": number(n),
            "share": f"{n / total:.2%}",
            "width": f"{100 * n / most:.1f}",
        }
        for v, n in top
    ]


def _histogram(st: Any, lines: list[tuple[str, float]], missing: list[tuple[str, int]]) -> Any:
    """SVG geometry of a histogram: bar path, special bins, marker lines (title, value)."""
    hist = st.histogram
    if not hist or not hist.get("counts"):
        return None
    edges = [float(e) for e in hist["edges"]]
    counts = [int(c) for c in hist["counts"]]
    lo, hi = edges[0], edges[-1]
    top = max([*counts, *(n for _, n in missing)]) or 1
    scale = math.log1p(top)

    def height(n: int) -> float:
        # Log scale: a single outlier stays visible beside a bin of 100,000.
        return _H * math.log1p(n) / scale if n else 0.0

    def x_of(v: float) -> float:
        if hi == lo:
            return _LEFT + _W / 2
        return _LEFT + (v - lo) / (hi - lo) * _W

    base = _TOP + _H
    parts = []
    for i, n in enumerate(counts):
        if not n:
            continue
        x0 = _LEFT if hi == lo else x_of(edges[i])
        x1 = _LEFT + _W if hi == lo else x_of(edges[i + 1])
        h = max(height(n), 1.0)
        parts.append(f"M{x0:.1f} {base:.1f}V{base - h:.1f}H{x1:.1f}V{base:.1f}Z")
    specials = []
    x = _LEFT + _W + _SPECIAL_GAP
    for what, n in missing:
        h = max(height(n), 1.0)
        specials.append(
            {
                "label": what,
                "count": number(n),
                "x": f"{x:.1f}",
                "y": f"{base - h:.1f}",
                "w": f"{_SPECIAL_W - 6:.1f}",
                "h": f"{h:.1f}",
                "cx": f"{x + (_SPECIAL_W - 6) / 2:.1f}",
            }
        )
        x += _SPECIAL_W
    marks = []
    for title, v in lines:
        if lo <= v <= hi and hi > lo:
            marks.append({"kind": "line", "x": f"{x_of(v):.1f}", "title": title})
        else:
            # Off the histogram's range: a marker at the edge it lies beyond.
            edge = _LEFT if v < lo else _LEFT + _W
            marks.append(
                {
                    "kind": "off",
                    "x": f"{edge:.1f}",
                    "points": _arrow(edge, v < lo),
                    "title": title + " (off scale)",
                }
            )
    low_label = st.min if st.kind == "temporal" else number(lo)
    high_label = st.max if st.kind == "temporal" else number(hi)
    return {
        "width": f"{(x if specials else _LEFT + _W) + _LEFT:.0f}",
        "height": f"{base + _BOTTOM:.0f}",
        "path": "".join(parts),
        "top": f"{_TOP:.1f}",
        "base": f"{base:.1f}",
        "left": f"{_LEFT:.1f}",
        "right": f"{_LEFT + _W:.1f}",
        "label_y": f"{base + 12:.1f}",
        "low": _cell(low_label),
        "high": _cell(high_label),
        "max_count": number(max(counts)),
        "specials": specials,
        "marks": marks,
    }


def _fence_lines(fence: Fences | None) -> list[tuple[str, float]]:
    if fence is None:
        return []
    return [
        (f"{side} outlier fence {number(v)}", v)
        for side, v in (("low", fence.low), ("high", fence.high))
    ]


def _joint(report: Report, index: dict[str, int]) -> dict[str, Any] | None:
    """The joint-score section: the sample's score histogram and its top rows."""
    joint = report.joint
    if joint is None:
        return None
    stats = SimpleNamespace(
        histogram={"edges": joint.edges, "counts": joint.counts}, kind="numeric"
    )
    line = [(f"joint-outlier threshold {number(joint.threshold)}", joint.threshold)]
    top = [
        {**r, "score": number(round(r["score"], 3)), "anchor": index.get(r["column"] or "")}
        for r in joint.top
    ]
    return {
        "columns": joint.columns,
        "combined": report.options.joint_score == "combined",
        "threshold": number(joint.threshold),
        "sampled": number(joint.sampled),
        "estimated": joint.sampled < report.rows,
        "reported": number(report.rows_reported),
        "histogram": _histogram(stats, line, []),
        "top": top,
    }


# drift overlays (SVG user units); colours as attributes, the stylesheet stays as it is
_REF_FILL, _CUR_STROKE = "#8c959f", "#4c72b0"
_BAR_LABEL_W, _BAR_W, _BAR_ROW = 150.0, 300.0, 18.0


def _drift(report: Report, index: dict[str, int]) -> dict[str, Any] | None:
    """The baseline comparison: flagged metrics, every metric, and an overlay per drifted column."""
    drift = report.drift
    if drift is None:
        return None

    def row(m: Any) -> dict[str, Any]:
        return {
            "column": m.column,
            "anchor": index.get(m.column),
            "section": m.section,
            "metric": m.metric,
            "value": f"{m.value:.4g}",
            "thresholds": " / ".join("–" if t is None else f"{t:g}" for t in (m.warn, m.error)),
            "status": m.status,
            "level": m.status if m.status in ("error", "warning") else "",
            "exact": "exact" if m.exact else f"±{m.bound:.4f}",
            "detail": m.detail,
        }

    plots = []
    for column, overlay in drift.overlays.items():
        plot = _overlay(overlay)
        plot.update(column=column, anchor=index.get(column))
        plots.append(plot)
    return {
        "baseline": drift.baseline,
        "baseline_rows": number(drift.baseline_rows),
        "compared": number(len(drift.compared)),
        "drifted": number(len({m.column for m in drift.flagged})),
        "ignored": drift.ignored,
        "flagged": [row(m) for m in drift.flagged],
        "all": [row(m) for m in drift.measurements],
        "plots": plots,
    }


def _overlay(overlay: dict[str, Any]) -> dict[str, Any]:
    """SVG geometry of one overlay: reference bars (grey) under the current outline (blue)."""
    ref = [float(v) for v in overlay["reference"]]
    cur = [float(v) for v in overlay["current"]]
    if overlay["kind"] == "numeric":
        return _numeric_overlay(overlay["edges"], ref, cur)
    top = max([*ref, *cur]) or 1.0
    rows = []
    for i, (name, p, q) in enumerate(zip(overlay["labels"], ref, cur, strict=True)):
        y = i * _BAR_ROW
        rows.append(
            {
                "label": _cell(name),
                "y": f"{y + 11:.1f}",
                "ry": f"{y + 2:.1f}",
                "cy": f"{y + 9:.1f}",
                "rw": f"{max(_BAR_W * p / top, 0.5 if p else 0):.1f}",
                "cw": f"{max(_BAR_W * q / top, 0.5 if q else 0):.1f}",
                "shares": f"{p:.1%} → {q:.1%}",
            }
        )
    return {
        "kind": "categories",
        "width": f"{_BAR_LABEL_W + _BAR_W + 110:.0f}",
        "height": f"{len(rows) * _BAR_ROW + 4:.0f}",
        "x0": f"{_BAR_LABEL_W:.1f}",
        "tx": f"{_BAR_LABEL_W + _BAR_W + 6:.1f}",
        "rows": rows,
        "ref_fill": _REF_FILL,
        "cur_fill": _CUR_STROKE,
    }


def _numeric_overlay(edges: list[float], ref: list[float], cur: list[float]) -> dict[str, Any]:
    lo, hi = float(edges[0]), float(edges[-1])
    top = max([*ref, *cur]) or 1.0
    base = _TOP + _H

    def x_of(v: float) -> float:
        return _LEFT + (v - lo) / (hi - lo) * _W if hi > lo else _LEFT

    def y_of(share: float) -> float:
        return base - _H * share / top

    bars = []
    outline = [f"M{x_of(edges[0]):.1f} {base:.1f}"]
    for i, (p, q) in enumerate(zip(ref, cur, strict=True)):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        if p:
            bars.append(f"M{x0:.1f} {base:.1f}V{y_of(p):.1f}H{x1:.1f}V{base:.1f}Z")
        outline.append(f"V{y_of(q):.1f}H{x1:.1f}")
    outline.append(f"V{base:.1f}")
    return {
        "kind": "numeric",
        "width": f"{_LEFT * 2 + _W:.0f}",
        "height": f"{base + _BOTTOM:.0f}",
        "reference": "".join(bars),
        "current": "".join(outline),
        "left": f"{_LEFT:.1f}",
        "right": f"{_LEFT + _W:.1f}",
        "base": f"{base:.1f}",
        "label_y": f"{base + 12:.1f}",
        "low": number(lo),
        "high": number(hi),
        "ref_fill": _REF_FILL,
        "cur_stroke": _CUR_STROKE,
    }


def _arrow(edge: float, left: bool) -> str:
    y = _TOP + 2
    if left:
        return f"{edge:.1f},{y + 4:.1f} {edge + 7:.1f},{y:.1f} {edge + 7:.1f},{y + 8:.1f}"
    return f"{edge:.1f},{y + 4:.1f} {edge - 7:.1f},{y:.1f} {edge - 7:.1f},{y + 8:.1f}"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("batchguard")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "dev"
