"""wsload's tabs in Locust's web UI: agent turns, and auth and security, live, with CSV.

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
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, request

from wsload.config.options import OPTION_SPECS, RunOptions, from_namespace
from wsload.errors import ConfigError
from wsload.locust.live import LiveStats

TURNS_KEY = "wsloadturns"  # no '_' or '-': the UI camel-cases keys it gets from the server
AUTH_KEY = "wsloadauth"
TURNS_TITLE = "Agent turns"
AUTH_TITLE = "Auth & security"
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
STATS_ENDPOINT = "locust.request_stats"  # Locust's /stats/requests view
SWARM_ENDPOINT = "locust.swarm"  # Locust's start form's POST /swarm

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
        ],
        extended_tables=[
            {"key": TURNS_KEY, "structure": TURN_STRUCTURE},
            {"key": AUTH_KEY, "structure": AUTH_STRUCTURE},
        ],
        extended_csv_files=[
            {"href": "./wsload/turns.csv", "title": "Download agent turns CSV (wsload)"},
            {"href": "./wsload/auth.csv", "title": "Download auth & security CSV (wsload)"},
        ],
    )
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

    @blueprint.route("/turns.csv")
    @guard
    def turns_csv() -> Response:
        return _csv_download(live.turn_csv(), "wsload_turns.csv")

    @blueprint.route("/auth.csv")
    @guard
    def auth_csv() -> Response:
        return _csv_download(live.auth_csv(), "wsload_auth.csv")

    web_ui.app.register_blueprint(blueprint)

    @web_ui.app.after_request
    def add_tables(response: Response) -> Response:
        if request.endpoint != STATS_ENDPOINT or not response.is_json:
            return response
        report = response.get_json(silent=True)
        if isinstance(report, dict):
            report["extended_stats"] = [
                {"key": TURNS_KEY, "data": _ui_rows(live.turn_table())},
                {"key": AUTH_KEY, "data": _ui_rows(live.auth_table())},
            ]
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
