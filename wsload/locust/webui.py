"""wsload in Locust's web UI: the headline strip, the tabs (agent turns, auth and security,
failure examples), live, with CSV; and the headline in Locust's HTML report.

Locust's header counts every stats entry as a request; the strip wsload puts above Locust's
page shows turns/s, the share of failed turns, TTFE and e2e percentiles and users at a
glance, with charts over time and failure examples folded under it. It is plain HTML
outside Locust's React root, fetched from ``/wsload/panel`` every two seconds. The same
panel is inserted into the HTML report (``--html``, and the report the UI downloads).

Locust's React UI renders an extra tab per ``extended_tabs`` entry as a table whose columns
come from ``extended_tables`` and whose rows come from the ``extended_stats`` field of the
``/stats/requests`` JSON it polls every two seconds while a test runs; so the tables are
added to that answer and refresh with Locust's own. The same tables are also served as
JSON and as CSV downloads (listed on the download tab). The numbers come from a
``LiveStats`` fed the records this process writes, which on a master include every
worker's.

The start form's values are checked before Locust starts a run from them: a bad value is
answered as Locust answers its own bad values (``success: false`` and a message the page
shows), and nothing starts.
"""

from __future__ import annotations

import json
import time
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, request
from locust.stats import StatsEntry

from wsload.config.options import OPTION_SPECS, RunOptions, from_namespace
from wsload.errors import ConfigError
from wsload.locust.live import PROBE_KINDS, LiveStats
from wsload.locust.panel import ELEMENT_ID, STYLE, panel_html, report_section

TURNS_KEY = "wsloadturns"  # no '_' or '-': the UI camel-cases keys it gets from the server
AUTH_KEY = "wsloadauth"
EXAMPLES_KEY = "wsloadexamples"
TURNS_TITLE = "Agent turns"
AUTH_TITLE = "Auth & security"
EXAMPLES_TITLE = "Failure examples"
_MS = " (ms)"
TURN_STRUCTURE = [
    {"key": "stat", "title": "Stage"},
    {"key": "count", "title": "Count"},
    {"key": "median", "title": "Median" + _MS},
    {"key": "p95", "title": "p95" + _MS},
    {"key": "p99", "title": "p99" + _MS},
    {"key": "fail", "title": "Failures"},
    {"key": "failures", "title": "Failures by taxonomy id"},
]
AUTH_STRUCTURE = [
    {"key": "section", "title": "Section"},
    {"key": "stat", "title": "Name"},
    {"key": "outcome", "title": "Failure id / probe outcome"},
    {"key": "count", "title": "Count"},
    {"key": "fail", "title": "Failures"},
    {"key": "median", "title": "Median" + _MS},
    {"key": "p95", "title": "p95" + _MS},
    {"key": "p99", "title": "p99" + _MS},
]
EXAMPLES_STRUCTURE = [
    {"key": "failure", "title": "Failure id"},
    {"key": "count", "title": "Count"},
    {"key": "stat", "title": "Stats name"},
    {"key": "user", "title": "User"},
    {"key": "subject", "title": "Subject"},
    {"key": "session", "title": "Session"},
    {"key": "detail", "title": "Detail"},
]
STATS_ENDPOINT = "locust.request_stats"  # Locust's /stats/requests view
SWARM_ENDPOINT = "locust.swarm"  # Locust's start form's POST /swarm
INDEX_ENDPOINT = "locust.index"  # Locust's page
ROOT_DIV = '<div id="root"></div>'  # where Locust's React app mounts (page and report)
REFRESH_MS = 2000
# Refreshes the strip from /wsload/panel, keeping the folded parts as the user left them.
_SCRIPT = """<script>(() => {
  const el = document.getElementById("%(id)s");
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const open = [...el.querySelectorAll("details")].map((d) => d.open);
      const answer = await fetch("%(url)s", {cache: "no-store", credentials: "same-origin"});
      if (answer.ok) {
        el.innerHTML = await answer.text();
        el.querySelectorAll("details").forEach((d, i) => { d.open = !!open[i]; });
      }
    } catch (e) {
    } finally {
      busy = false;
    }
  }
  refresh();
  setInterval(refresh, %(every)d);
})();</script>"""

OptionsCheck = Callable[[Any, RunOptions], None]


def install(environment: Any, live: LiveStats, check: OptionsCheck | None = None) -> None:
    """Add the two tabs, their JSON and CSV routes, to ``environment.web_ui``, and the
    start form's check (``check`` runs on the parsed options with the form's values)."""
    web_ui = environment.web_ui
    options = environment.parsed_options
    base = (getattr(options, "web_base_path", None) or "").rstrip("/")
    web_ui.template_args.update(
        extended_tabs=[
            {"title": TURNS_TITLE, "key": TURNS_KEY},
            {"title": AUTH_TITLE, "key": AUTH_KEY},
            {"title": EXAMPLES_TITLE, "key": EXAMPLES_KEY},
        ],
        extended_tables=[
            {"key": TURNS_KEY, "structure": TURN_STRUCTURE},
            {"key": AUTH_KEY, "structure": AUTH_STRUCTURE},
            {"key": EXAMPLES_KEY, "structure": EXAMPLES_STRUCTURE},
        ],
        extended_csv_files=[
            {"href": "./wsload/turns.csv", "title": "Download agent turns CSV (wsload)"},
            {"href": "./wsload/auth.csv", "title": "Download auth & security CSV (wsload)"},
            {"href": "./wsload/examples.csv", "title": "Download failure examples CSV (wsload)"},
        ],
    )
    install_report(live)
    guard: Callable[[Callable[..., Any]], Callable[..., Any]] = web_ui.auth_required_if_enabled
    blueprint = Blueprint("wsload", __name__, url_prefix=f"{base}/wsload")

    @blueprint.route("/turns")
    @guard
    def turns_json() -> Response:
        return jsonify({"rows": live.turn_table()})

    @blueprint.route("/auth")
    @guard
    def auth_json() -> Response:
        return jsonify({"rows": live.auth_table()})

    @blueprint.route("/headline")
    @guard
    def headline_json() -> Response:
        return jsonify(
            {"headline": live.headline(), "series": live.series(), "examples": live.examples()}
        )

    @blueprint.route("/panel")
    @guard
    def panel() -> Response:
        now = time.time()
        html = panel_html(live.headline(now), live.series(now=now), live.examples())
        response = make_response(html)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Cache-Control"] = "no-store"
        return response

    @blueprint.route("/examples")
    @guard
    def examples_json() -> Response:
        return jsonify({"rows": live.examples()})

    @blueprint.route("/examples.csv")
    @guard
    def examples_csv() -> Response:
        return _csv_download(live.examples_csv(), "wsload_failure_examples.csv")

    @blueprint.route("/turns.csv")
    @guard
    def turns_csv() -> Response:
        return _csv_download(live.turn_csv(), "wsload_turns.csv")

    @blueprint.route("/auth.csv")
    @guard
    def auth_csv() -> Response:
        return _csv_download(live.auth_csv(), "wsload_auth.csv")

    web_ui.app.register_blueprint(blueprint)

    strip = f'{STYLE}<div id="{ELEMENT_ID}"></div>' + _SCRIPT % {
        "id": ELEMENT_ID,
        "url": f"{base}/wsload/panel",
        "every": REFRESH_MS,
    }

    @web_ui.app.after_request
    def add_tables(response: Response) -> Response:
        if request.endpoint == INDEX_ENDPOINT and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            if ROOT_DIV in page and ELEMENT_ID not in page:
                response.set_data(page.replace(ROOT_DIV, strip + ROOT_DIV, 1))
            return response
        if request.endpoint != STATS_ENDPOINT or not response.is_json:
            return response
        report = response.get_json(silent=True)
        if isinstance(report, dict):
            report["extended_stats"] = [
                {"key": TURNS_KEY, "data": _ui_rows(live.turn_table())},
                {"key": AUTH_KEY, "data": _ui_rows(live.auth_table())},
                {"key": EXAMPLES_KEY, "data": _ui_rows(live.examples())},
            ]
            runner = environment.runner
            if runner is not None and isinstance(report.get("stats"), list):
                report["stats"] = group_probe_rows(report["stats"], runner.stats)
            response.set_data(json.dumps(report))
        return response

    @web_ui.app.before_request
    def check_form() -> Response | None:
        if request.endpoint != SWARM_ENDPOINT or request.method != "POST":
            return None
        problem = form_problem(environment, dict(request.form.items()), check)
        if problem is None:
            return None
        return jsonify({"success": False, "message": problem, "host": environment.host})


def form_problem(
    environment: Any, form: dict[str, str], check: OptionsCheck | None = None
) -> str | None:
    """What is wrong with wsload's options as the start form would set them, or None.

    The values are converted as Locust converts them (to the type of the current value)
    on a copy of the parsed options, so nothing changes until the form is good.
    """
    current = vars(environment.parsed_options) if environment.parsed_options else {}
    trial = dict(current)
    for spec in OPTION_SPECS:
        if spec.dest not in form or not spec.web_ui:
            continue
        value, was = form[spec.dest], current.get(spec.dest)
        try:
            if isinstance(was, bool):
                trial[spec.dest] = value == "true"
            elif was is None or isinstance(was, list):
                trial[spec.dest] = value
            else:
                trial[spec.dest] = type(was)(value)
        except ValueError:
            return f"{spec.flag} {value!r} is not a valid value"
    host = form.get("host") or environment.host
    saved_host = environment.host
    try:
        options = from_namespace(Namespace(**trial))
        if check is not None:
            environment.host = host
            check(environment, options)
    except ConfigError as error:
        return str(error)
    finally:
        environment.host = saved_host
    return None


def install_report(live: LiveStats) -> None:
    """Put the headline panel into Locust's HTML report (``--html`` and the web UI's
    download), from ``live`` as it stands when the report is made.

    Locust renders the report through ``locust.html.render_template_from``; the page it
    returns gets the panel inserted above the report's own content. Installing again
    points the report at another ``LiveStats``.
    """
    import locust.html as locust_html

    _REPORT["live"] = live
    current = locust_html.render_template_from
    if getattr(current, "wsload_panel", False):
        return

    def render_template_from(file: str, *args: Any, **kwargs: Any) -> str:
        page = current(file, *args, **kwargs)
        shown = _REPORT.get("live")
        if file != "report.html" or shown is None:
            return page
        return with_headline(page, shown)

    render_template_from.wsload_panel = True  # type: ignore[attr-defined]
    locust_html.render_template_from = render_template_from


_REPORT: dict[str, LiveStats] = {}


def with_headline(page: str, live: LiveStats) -> str:
    """``page`` (Locust's report) with the headline panel above its content."""
    section = report_section(live.headline(), live.series(), live.examples())
    block = f'<div style="max-width:1200px;margin:16px auto 0">{section}</div>'
    if ROOT_DIV in page:
        return page.replace(ROOT_DIV, block + ROOT_DIV, 1)
    return page.replace("<body>", "<body>" + block, 1)


def group_probe_rows(rows: list[dict[str, Any]], stats: Any) -> list[dict[str, Any]]:
    """Locust's statistics rows with the single-sample ``probe:*`` and ``conformance:*``
    entries folded into one row per kind, for the table of the web UI only.

    Locust's stats keep an entry per name (its CSV, ``--html`` and the gate see each); the
    group row is those entries merged as Locust merges entries (``StatsEntry.extend``), so
    its counts, rates and percentiles are exact.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    kept: list[dict[str, Any]] = []
    for row in rows:
        name = str(row.get("name", ""))
        kind = name.split(":", 1)[0] if ":" in name else ""
        if kind in PROBE_KINDS and "*" not in name:
            groups.setdefault(kind, []).append(row)
        else:
            kept.append(row)
    if not groups:
        return rows
    total = kept.pop() if kept and kept[-1].get("name") == "Aggregated" else None
    for kind, members in groups.items():
        merged = StatsEntry(stats, f"{kind}:* ({len(members)} names)", members[0]["method"])
        for row in members:
            entry = stats.entries.get((row["name"], row["method"]))
            if entry is not None:
                merged.extend(entry)
        kept.append(merged.to_dict())
    if total is not None:
        kept.append(total)
    return kept


def _ui_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for Locust's table, ``name`` renamed to ``stat``.

    The table sorts by a row's ``name`` until a header is clicked; without one it keeps
    wsload's order (first event to end of turn; latency, failures, probes).
    """
    return [{"stat": r["name"], **{k: v for k, v in r.items() if k != "name"}} for r in rows]


def _csv_download(text: str, filename: str) -> Response:
    response = make_response(text)
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    return response
