"""A self-contained HTML page for a `DriftReport`: tables and inline SVG charts.

Offline by design: no script, style sheet, font or image is fetched from anywhere
(not even the SVG namespace URL, which inline SVG in HTML does not need).  The charts
are drawn here as plain SVG: per column, the reference and current shares over the
PSI bins or the top categories; with time windows, the gating value per window
against its threshold.  (Altair would need vl-convert to render SVG offline, and it
is not part of the locked environment.)
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from hortus.monitoring.drift import P_VALUE_TESTS, ColumnDrift, DriftReport

REFERENCE_COLOR = "#7a8b99"
CURRENT_COLOR = "#2f7d4f"
DRIFT_COLOR = "#c0392b"
MAX_DETAIL_ROWS = 500

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;
max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:1.2rem 0 .3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td{background:#fdecea}.verdict{padding:.6rem 1rem;border-radius:4px;font-weight:600}
.verdict.bad{background:#fdecea;color:#8e1c12}.verdict.ok{background:#e8f5ec;color:#1d5e34}
.muted{color:#777}.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem}
svg text{font-size:10px;fill:#333}
"""


def render_html(report: DriftReport, *, title: str | None = None) -> str:
    """Render a drift report as one offline HTML page with inline SVG charts."""
    title = title or f"Drift: {report.current_name} vs {report.reference_name}"
    cfg = report.config
    drifted = report.drifted_columns
    verdict = (
        f'<p class="verdict bad">Drift found in {len(drifted)} column(s): '
        f"{_e(', '.join(drifted))}</p>"
        if drifted
        else '<p class="verdict ok">No drift found.</p>'
    )
    settings = (
        f"correction {cfg.correction}, alpha {cfg.alpha:g}, p-value tests at or below "
        f"{cfg.small_sample_rows:,} rows, thresholds: Wasserstein {cfg.wasserstein_threshold:g}, "
        f"Jensen-Shannon {cfg.jensen_shannon_threshold:g}, PSI {cfg.psi_threshold:g}, "
        f"null share change {cfg.null_share_threshold:g}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">reference {_e(report.reference_name)} '
        f"({report.reference_rows:,} rows) &middot; current {_e(report.current_name)} "
        f"({report.current_rows:,} rows) &middot; generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        verdict,
        f'<p class="muted">{_e(settings)}</p>',
        _exactness(report),
        "<h2>Overall</h2>",
        _table(report.overall(), show_group=False),
    ]
    left_out = report.excluded
    if left_out:
        parts.append("<h2>Columns not compared</h2>")
        parts.append(
            '<p class="muted">left out by default; name them in the columns to compare '
            "them</p><table><thead><tr><th>column</th><th>reason</th></tr></thead><tbody>"
            + "".join(f"<tr><td>{_e(c)}</td><td>{_e(r)}</td></tr>" for c, r in left_out.items())
            + "</tbody></table>"
        )
    detail = [r for r in report.results if r.segment is not None or r.window_start is not None]
    if detail:
        by = " and ".join(
            x for x in (report.segment and "segment", report.window and "time window") if x
        )
        parts.append(f"<h2>Per {by}</h2>")
        if len(detail) > MAX_DETAIL_ROWS:
            shown = [r for r in detail if r.drifted or r.null_drifted][:MAX_DETAIL_ROWS]
            parts.append(
                f'<p class="muted">{len(detail):,} rows; showing the {len(shown):,} drifted '
                "ones (the JSON output has them all).</p>"
            )
            detail = shown
        parts.append(_table(detail, show_group=True))
    parts.append("<h2>Distributions</h2>")
    parts.append(
        f'<p class="legend">share of rows per bin or category:<span style="background:'
        f'{REFERENCE_COLOR}"></span>reference<span style="background:{CURRENT_COLOR}">'
        "</span>current</p>"
    )
    for r in report.overall():
        parts.append(f"<h3>{_e(r.column)} <span class='muted'>({r.kind})</span></h3>")
        if r.histogram is None:
            parts.append(f'<p class="muted">skipped: {_e(r.skipped or "no data")}</p>')
            continue
        h = r.histogram
        parts.append(
            bar_chart_svg(
                h["labels"],
                {"reference": h["reference"], "current": h["current"]},
                colors={"reference": REFERENCE_COLOR, "current": CURRENT_COLOR},
            )
        )
        windows = [
            w
            for w in report.results
            if w.column == r.column and w.segment is None and w.window_start is not None
        ]
        if windows:
            parts.append(_window_chart(windows))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(report: DriftReport, path: str | Path, *, title: str | None = None) -> Path:
    """Write the HTML page of a drift report to `path`; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title=title), encoding="utf-8")
    return path


def _exactness(report: DriftReport) -> str:
    """Say whether the statistics are exact, or which come from a sketch and how far off."""
    sketched = [r for r in report.overall() if not r.exact]
    if not sketched:
        return (
            '<p class="muted">Statistics are exact (the whole reference against the whole '
            "current).</p>"
        )
    bounds = ", ".join(
        f"{r.column} (KS within ±{r.ks_error_bound:.2g}, normalised Wasserstein within "
        f"±{r.wasserstein_error_bound or 0.0:.2g})"
        for r in sketched
    )
    return (
        '<p class="verdict bad">Some statistics are approximate: the reference of '
        f"{len(sketched)} column(s) is a quantile sketch (stored profile or over "
        f"exact_max_rows): {_e(bounds)}.</p>"
    )


# ---------------------------------------------------------------------- tables
def _table(rows: Sequence[ColumnDrift], *, show_group: bool) -> str:
    head = ["column"]
    if show_group:
        head += ["segment", "window"]
    head += ["kind", "statistic", "value", "p-value (adj.)", "threshold", "drifted",
             "null share ref → cur", "new categories", "note"]  # fmt: skip
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        cls = ' class="drift"' if r.drifted or r.null_drifted else ""
        cells = [_e(r.column)]
        if show_group:
            cells += [_e(r.segment or "all"), _e(_window(r))]
        p = "" if r.p_value is None else f"{_num(r.p_value)} ({_num(r.p_value_adjusted)})"
        nulls = f"{_num(r.null_share_reference)} → {_num(r.null_share_current)}"
        flags = ("yes" if r.drifted else "no") + (" (nulls)" if r.null_drifted else "")
        cells += [
            _e(r.kind),
            _e(r.statistic or "-"),
            f'<span class="num">{_num(r.value)}</span>',
            p,
            _num(r.threshold),
            flags,
            nulls,
            _e(", ".join(r.new_categories[:10]) + (" ..." if len(r.new_categories) > 10 else "")),
            _e(r.skipped or "")
            + ("" if r.exact else f"approximate (KS ±{r.ks_error_bound or 0.0:.2g})"),
        ]
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _window(r: ColumnDrift) -> str:
    if r.window_start is None:
        return "all"
    return (
        r.window_start.isoformat(sep=" ")
        if isinstance(r.window_start, datetime)
        else str(r.window_start)
    )


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------------- charts
def bar_chart_svg(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    colors: dict[str, str],
    width: int = 720,
    height: int = 230,
    y_label: str = "share",
) -> str:
    """Draw a grouped bar chart (one group per label, one bar per series) as inline SVG.

    Examples
    --------
    >>> svg = bar_chart_svg(["a", "b"], {"x": [0.5, 0.5]}, colors={"x": "#333"})
    >>> svg.startswith("<svg") and "<rect" in svg
    True
    """
    left, right, top, bottom = 48, 10, 10, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = max((v for s in series.values() for v in s if _finite(v)), default=0.0) or 1.0
    n = max(len(labels), 1)
    group_w = plot_w / n
    bar_w = group_w * 0.8 / max(len(series), 1)
    out = [_svg_open(width, height, f"{y_label} per bin")]
    out += _y_axis(left, top, plot_w, plot_h, vmax)
    for i, label in enumerate(labels):
        x0 = left + i * group_w + group_w * 0.1
        for j, (name, values) in enumerate(series.items()):
            v = values[i] if i < len(values) and _finite(values[i]) else 0.0
            h = plot_h * v / vmax
            out.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" '
                f'width="{max(bar_w - 1, 0.5):.1f}" height="{h:.1f}" fill="{colors[name]}">'
                f"<title>{_e(label)} {_e(name)}: {v:.4f}</title></rect>"
            )
        cx, cy = left + (i + 0.5) * group_w, top + plot_h + 8
        out.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
            f'transform="rotate(-40 {cx:.1f} {cy:.1f})">{_e(_short(label))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _window_chart(rows: Sequence[ColumnDrift]) -> str:
    """Draw the gating value per time window with the threshold as a dashed line."""
    stat = rows[0].statistic or "value"
    p_test = stat in P_VALUE_TESTS
    values = [(r.p_value_adjusted if p_test else r.value) for r in rows]
    labels = [_window(r) for r in rows]
    threshold = next((r.threshold for r in rows if r.threshold is not None), None)
    width, height = 720, 200
    left, right, top, bottom = 48, 10, 22, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [v for v in values if _finite(v)]
    vmax = max([*finite, threshold or 0.0], default=0.0) or 1.0
    vmax = 1.0 if p_test else vmax * 1.1
    n = max(len(rows), 1)
    group_w = plot_w / n
    what = "adjusted p-value (drift below the line)" if p_test else f"{stat} (drift at or above)"
    out = [_svg_open(width, height, f"{stat} per window")]
    out.append(f'<text x="{left}" y="12">{_e(what)} per window</text>')
    out += _y_axis(left, top, plot_w, plot_h, vmax)
    for i, (r, v) in enumerate(zip(rows, values, strict=True)):
        x = left + i * group_w + group_w * 0.15
        vv = v if _finite(v) else 0.0
        h = plot_h * min(vv, vmax) / vmax
        color = DRIFT_COLOR if r.drifted else CURRENT_COLOR
        out.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{group_w * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{_e(labels[i])}: '
            f"{_e(_num(v))}{' ' + _e(r.skipped) if r.skipped else ''}</title></rect>"
        )
        cx, cy = left + (i + 0.5) * group_w, top + plot_h + 8
        out.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
            f'transform="rotate(-40 {cx:.1f} {cy:.1f})">{_e(_short(labels[i]))}</text>'
        )
    if threshold is not None and _finite(threshold):
        y = top + plot_h - plot_h * min(threshold, vmax) / vmax
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{DRIFT_COLOR}" stroke-dasharray="4 3"/>'
        )
    out.append("</svg>")
    return "".join(out)


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}">'
    )


def _y_axis(left: float, top: float, plot_w: float, plot_h: float, vmax: float) -> list[str]:
    out = []
    for k in range(5):
        v = vmax * k / 4
        y = top + plot_h - plot_h * k / 4
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{v:.3g}</text>'
        )
    return out


def _short(label: str, n: int = 22) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)
