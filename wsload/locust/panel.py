"""The headline of a run as HTML: turns/s, failed turns and their share, TTFE and e2e
percentiles, users, failures by taxonomy id with examples, and charts over time.

Locust's own header counts every stats entry as a request (each turn stage, each gap, each
probe), so its RPS and failure ratio say little about agent turns. This panel says what a
person running a chat backend asks first. The same HTML is the strip at the top of the web
UI (refreshed every two seconds) and a section of the ``--html`` report. Pure: no Locust,
the charts are inline SVG drawn here (no script, nothing fetched from elsewhere), and every
text that came from a server is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

ELEMENT_ID = "wsload-headline"
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777")
STYLE = f"""<style>
#{ELEMENT_ID} {{ font-family: Roboto, Helvetica, Arial, sans-serif; color: #111827;
  background: #f8fafc; border-bottom: 1px solid #cbd5e1; padding: 8px 16px; font-size: 14px; }}
#{ELEMENT_ID} .figures {{ display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: baseline; }}
#{ELEMENT_ID} .figure b {{ font-size: 22px; font-weight: 700; margin-right: 4px; }}
#{ELEMENT_ID} .figure span {{ color: #475569; }}
#{ELEMENT_ID} .bad b {{ color: #b91c1c; }}
#{ELEMENT_ID} summary {{ cursor: pointer; color: #1d4ed8; margin-top: 4px; }}
#{ELEMENT_ID} .charts {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0; }}
#{ELEMENT_ID} svg {{ background: #fff; border: 1px solid #e2e8f0; }}
#{ELEMENT_ID} table {{ border-collapse: collapse; margin: 6px 0; font-size: 13px; }}
#{ELEMENT_ID} td, #{ELEMENT_ID} th {{ border: 1px solid #e2e8f0; padding: 2px 6px;
  text-align: left; vertical-align: top; }}
#{ELEMENT_ID} td.detail {{ font-family: monospace; max-width: 720px; word-break: break-all; }}
</style>"""


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def figures_html(head: dict[str, Any]) -> str:
    """The one line a person reads first."""
    failed_class = "figure bad" if head["failed_turns"] else "figure"
    ttfe, e2e = head["ttfe"], head["e2e"]
    items = [
        ("figure", "turns-per-s-now", _fmt(head["turns_per_s_now"]), "turns/s now"),
        ("figure", "turns-per-s", _fmt(head["turns_per_s"]), "turns/s over the run"),
        ("figure", "turns", f"{head['turns']:,}", "turns"),
        (failed_class, "failed-share", _share(head["failed_share"]), "of turns failed"),
        (failed_class, "failed-turns", f"{head['failed_turns']:,}", "failed turns"),
        ("figure", "ttfe", f"{_fmt(ttfe['median'])} / {_fmt(ttfe['p95'])}", "ms TTFE p50/p95"),
        ("figure", "e2e", f"{_fmt(e2e['median'])} / {_fmt(e2e['p95'])}", "ms e2e p50/p95"),
        *_stream_figures(head),
        ("figure", "users", "-" if head["users"] is None else str(head["users"]), "users"),
    ]
    cells = "".join(
        f'<div class="{cls}" data-figure="{key}"><b>{value}</b><span>{label}</span></div>'
        for cls, key, value, label in items
    )
    failures = head["failures"][:4]
    if failures:
        top = ", ".join(f"{escape(f)} x{n:,}" for f, n in failures)
        cells += f'<div class="figure bad" data-figure="failure-ids"><span>{top}</span></div>'
    return f'<div class="figures">{cells}</div>'


def _stream_figures(head: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """TTFT and ITL, once a turn was streamed (the profile's ``[stream]`` events came)."""
    ttft, itl = head.get("ttft"), head.get("itl")
    out = []
    if ttft:
        out.append(
            ("figure", "ttft", f"{_fmt(ttft['median'])} / {_fmt(ttft['p95'])}", "ms TTFT p50/p95")
        )
    if itl:
        out.append(
            ("figure", "itl", f"{_fmt(itl['median'])} / {_fmt(itl['p99'])}", "ms ITL p50/p99")
        )
    return out


def examples_html(examples: Sequence[dict[str, Any]]) -> str:
    """Failures by taxonomy id, each with its first few failing samples."""
    if not examples:
        return "<p>No failures.</p>"
    head = (
        "<tr><th>failure id</th><th>count</th><th>stats name</th><th>user</th>"
        "<th>subject</th><th>session</th><th>detail</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(e['failure'])}</td><td>{e['count']:,}</td><td>{escape(e['name'])}</td>"
        f"<td>{'' if e['user'] is None else e['user']}</td><td>{escape(e['subject'])}</td>"
        f'<td>{escape(e["session"])}</td><td class="detail">{escape(e["detail"])}</td></tr>'
        for e in examples
    )
    return f'<table class="examples">{head}{rows}</table>'


def chart_svg(
    title: str,
    t: Sequence[float],
    lines: Sequence[tuple[str, Sequence[float | None]]],
    unit: str = "",
    width: int = 330,
    height: int = 150,
) -> str:
    """A small line chart: each line a label and one value per ``t`` (None: a gap)."""
    left, right, top, bottom = 44, 8, 18, 20
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, line in lines for v in line if v is not None]
    high = max(values, default=0.0) or 1.0
    t_max = max(t[-1] if t else 0.0, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="12" font-size="11" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#94a3b8"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#94a3b8"/>',
        f'<text x="{left - 3}" y="{top + 8}" font-size="9" text-anchor="end">'
        f"{_axis(high)}{escape(unit)}</text>",
        f'<text x="{left - 3}" y="{top + plot_h}" font-size="9" text-anchor="end">0</text>',
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="9" text-anchor="end">'
        f"{t_max:.0f} s</text>",
    ]
    legend_x = left + 4
    for i, (label, line) in enumerate(lines):
        color = COLORS[i % len(COLORS)]
        for segment in _segments(t, line):
            points = " ".join(
                f"{left + x / t_max * plot_w:.1f},{top + plot_h - y / high * plot_h:.1f}"
                for x, y in segment
            )
            if len(segment) == 1:
                x, y = points.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="1.5" fill="{color}"/>')
            else:
                parts.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'
                )
        parts.append(
            f'<text x="{legend_x}" y="{top + 10}" font-size="9" fill="{color}">'
            f"{escape(label)}</text>"
        )
        legend_x += 7 * len(label) + 12
    parts.append("</svg>")
    return "".join(parts)


def _axis(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _segments(t: Sequence[float], line: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(t, line, strict=False):
        if y is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((x, y))
    return [s for s in segments if s]


def charts_html(series: dict[str, Any]) -> str:
    """Turns/s, failed turns/s by taxonomy id, TTFE and e2e percentiles, users, over time."""
    t = series["t"]
    if not t:
        return "<p>No turns yet.</p>"
    bins = "" if series["bin_s"] == 1 else f" ({series['bin_s']} s bins)"
    failed = list(series["failed_per_s"].items())[:6]
    charts = [
        chart_svg("turns/s" + bins, t, [("turns/s", series["turns_per_s"])]),
        chart_svg(
            "failed turns/s by taxonomy id",
            t,
            failed or [("none", [0.0] * len(t))],
        ),
        chart_svg(
            "TTFE (ms)", t, [("p50", series["ttfe_p50"]), ("p95", series["ttfe_p95"])], " ms"
        ),
        chart_svg("e2e (ms)", t, [("p50", series["e2e_p50"]), ("p95", series["e2e_p95"])], " ms"),
        chart_svg("active users (one session each)", t, [("users", series["users"])]),
    ]
    return '<div class="charts">' + "".join(charts) + "</div>"


def panel_html(
    head: dict[str, Any],
    series: dict[str, Any],
    examples: Sequence[dict[str, Any]],
    *,
    open_details: bool = False,
) -> str:
    """The whole panel's inner HTML: figures, then charts and examples (folded unless
    ``open_details``)."""
    opened = " open" if open_details else ""
    return (
        figures_html(head)
        + f'<details class="charts-details"{opened}><summary>charts over time</summary>'
        + charts_html(series)
        + "</details>"
        + f'<details class="examples-details"{opened}><summary>failures by taxonomy id, '
        + "with examples</summary>"
        + examples_html(examples)
        + "</details>"
    )


def report_section(head: dict[str, Any], series: dict[str, Any], examples: Sequence[Any]) -> str:
    """The panel as a static block for an HTML page (the ``--html`` report)."""
    title = "<h2 style='margin:4px 0'>Agent turns (wsload)</h2>"
    inner = panel_html(head, series, examples, open_details=True)
    return f'{STYLE}<div id="{ELEMENT_ID}">{title}{inner}</div>'
