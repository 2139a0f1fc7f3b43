"""The ``wsload`` command: the reference target, the demo run, summaries, reports, the gate,
profiles and the list of options.

Every configuration problem ends in one message on stderr and exit status 2; load runs
themselves go through Locust (``locust -f locustfiles/ws_auth.py``), which ``demo`` wraps.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

from wsload.errors import EXIT_CONFIG_ERROR, ConfigError

LOCUSTFILES = Path(__file__).resolve().parent / "locustfiles"  # package data
LOCUSTFILE = LOCUSTFILES / "ws_auth.py"


def _cmd_target(args: argparse.Namespace) -> int:
    from wsload.target.cli import run

    return run(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    """A short headless run against the embedded reference target, then its summary.

    Its folder is ``results/demo-<run-id>`` unless ``--results`` says otherwise; a demo in
    the default place becomes ``results/latest`` once it has recorded samples (the
    notebooks' default run), so a demo that failed to start never does.
    """
    from wsload.run.recorder import link_latest_run, new_run_id, prepare_run_folder

    folder = prepare_run_folder(args.results or None, "demo-" + new_run_id(), link_latest=False)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.run_time,
        "--think-time",
        str(args.think_time),
        "--results",
        str(folder),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    print(
        f"wsload demo: {args.users} chat users for {args.run_time} against the embedded "
        "reference target ...",
        flush=True,
    )
    log_path = folder / "locust.log"
    with log_path.open("w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    from wsload.run.tables import is_run_folder

    if not is_run_folder(folder):
        print(log_path.read_text()[-3000:], file=sys.stderr)
        print(f"wsload demo: the run recorded nothing (exit {code}); log: {log_path}")
        return code or 1
    latest = None if args.results else link_latest_run(folder)
    from wsload.run.summary import render

    print(render(folder))
    from wsload.reports.builder import build_report

    report = build_report(folder)
    print(f"\nwsload demo: Locust exit code {code}; its console output: {log_path}")
    print(f"wsload demo: results in {folder.resolve()}")
    if latest is not None:
        print(f"wsload demo: {latest} now names this run (the notebooks' default)")
    print(f"wsload demo: report in {Path(report.html).resolve()}")
    notebooks = Path.cwd() / "analysis"
    if (notebooks / "explore.ipynb").is_file():
        run = "" if latest is not None else f"WSLOAD_RUN={folder} "
        print(f"wsload demo: notebooks: {run}.venv/bin/jupyter lab analysis/")
    return code


def _cmd_summary(args: argparse.Namespace) -> int:
    from wsload.run.summary import render
    from wsload.run.tables import require_run_folder

    print(render(require_run_folder(Path(args.run_dir))))
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from wsload.config.profile import load_profile

    profile = load_profile(args.profile)
    if args.action == "show":
        return _cmd_profile_show(profile)
    return _cmd_profile_check(profile, strict=args.strict)


def _cmd_profile_show(profile) -> int:
    from wsload.config.profile import inherited_keys
    from wsload.config.profile_toml import profile_to_toml

    print(profile_to_toml(profile, inherited_keys(profile.source)), end="")
    return 0


def _cmd_profile_check(profile, *, strict: bool) -> int:
    """Load (done), then dry-run the profile on its example frames; report what fails."""
    from wsload.config.profile_warnings import profile_warnings
    from wsload.protocol.dry_run import dry_run

    report = dry_run(profile)
    failing = report.errors + (report.warnings if strict else ())
    what = (
        f"profile {profile.name!r}, carrier {profile.auth.carrier}, "
        f"grammar: {profile.events.sequence}"
    )
    if failing:
        count = f"{len(failing)} problem{'s' if len(failing) > 1 else ''}"
        print(f"{profile.source}: loads, but fails its dry run: {count} ({what})")
    else:
        print(f"{profile.source}: ok ({what})")
    print("dry run through the client (examples from [examples], the rest synthesised):")
    for line in report.fed:
        print(f"  {line}")
    for finding in report.findings:
        level = "error" if finding in failing else finding.level
        print(f"{level}: {finding}")
    isolation = [w for w in profile_warnings(profile) if w not in {str(f) for f in report.findings}]
    for warning in isolation:
        print(f"warning: {warning}")
    if failing:
        print(
            f"wsload: error: the protocol profile {profile.source} would fail in a run: change "
            "the keys named above (`wsload profile show FILE` prints every key)",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERROR
    return 0


def _cmd_options(args: argparse.Namespace) -> int:
    from wsload.config.listing import render_options
    from wsload.config.spec import GROUPS

    print(render_options(tuple(args.group) if args.group else GROUPS), end="")
    return 0


DESCRIPTION = (
    "Browser-like load and concurrency testing of JWT-authenticated WebSocket agent-chat "
    "backends. Load runs go through Locust with one of the locustfiles below; "
    "`wsload options` lists the options they add."
)
EPILOG = f"""\
locustfiles ({LOCUSTFILES}):
  ws_auth.py     chat users and security probes
  handshakes.py  connection storms: connect, authenticate, close
  capacity.py    chat users in steps, or a search for the largest load that keeps the SLO
e.g. locust -f {LOCUSTFILE} --headless -u 50 -r 25 -t 60s
exit status: 0 ok, 1 a failed run or gate, 2 a configuration error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsload",
        description=textwrap.fill(DESCRIPTION, 79),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from wsload.target.cli import add_arguments as add_target_arguments

    target = sub.add_parser("target", help="run the reference agent-chat WebSocket server")
    add_target_arguments(target)
    target.set_defaults(func=_cmd_target)

    demo = sub.add_parser("demo", help="short headless load against the embedded target")
    demo.add_argument("--users", type=int, default=20, help="concurrent chat users (20)")
    demo.add_argument("--spawn-rate", type=float, default=10, help="users started per second")
    demo.add_argument("--run-time", default="15s", help="how long the load runs (15s)")
    demo.add_argument("--think-time", type=float, default=0.5, help="seconds between messages")
    demo.add_argument("--results", default="", help="run folder (default results/demo-<id>)")
    demo.set_defaults(func=_cmd_demo)

    summary = sub.add_parser("summary", help="exact percentiles and failures of a run folder")
    summary.add_argument("run_dir", help="a run folder, e.g. results/<run-id>")
    summary.set_defaults(func=_cmd_summary)

    from wsload import reports as report_cli

    report = sub.add_parser("report", help="HTML and Markdown report with figures of a run")
    report_cli.add_arguments(report)
    report.set_defaults(func=report_cli.run)

    from wsload.gate.cli import add_arguments as add_gate_arguments
    from wsload.gate.cli import run as run_gate

    gate = sub.add_parser("gate", help="CI gate: thresholds over a finished run folder")
    add_gate_arguments(gate)
    gate.set_defaults(func=run_gate)

    from wsload.run import export

    export_parser = sub.add_parser(
        "export", help="a run's results as the classic long CSV (one row per measurement)"
    )
    export.add_arguments(export_parser)
    export_parser.set_defaults(func=export.run)

    profile = sub.add_parser(
        "profile",
        help="check a protocol profile (load it, dry-run it on example frames), or print it "
        "with every key filled in",
        description="A profile file is merged over the default profile: keys it leaves out "
        "take the default's values. check: load it, then feed its [examples] frames (or "
        "frames made from the profile) through the client as a run would, and name the key "
        "to change for each problem; exit status 2 when a run would fail. show: print the "
        "effective profile as TOML, keys the file leaves out marked.",
    )
    profile.add_argument(
        "action",
        choices=("check", "show"),
        metavar="{check,show}",
        help="check: validate and dry-run it; show: print the effective profile as TOML (keys "
        "the file leaves out filled in)",
    )
    profile.add_argument(
        "profile", metavar="NAME|FILE", help="a profile name in profiles/ or a TOML path"
    )
    profile.add_argument(
        "--strict",
        action="store_true",
        help="check: warnings fail too (assumptions about frames the profile has no example of)",
    )
    profile.set_defaults(func=_cmd_profile)

    from wsload.har import cli as har_cli

    har = sub.add_parser(
        "har",
        help="a protocol profile, a corpus and a report from a browser recording (DevTools HAR)",
        description="Read a HAR exported from the browser's developer tools ('Save all as HAR "
        "with content') after using the product once, and write a protocol profile inferred "
        "from its WebSocket (endpoint, token carrier, ack, chat message, event grammar, "
        "heartbeat, rejection), a corpus of the recorded messages and a report of what was "
        "inferred and how sure. Secrets in the recording are never written.",
    )
    har_cli.add_arguments(har)
    har.set_defaults(func=har_cli.run)

    from wsload.config.spec import GROUPS

    options = sub.add_parser(
        "options",
        help="every option of the locustfiles and the reference target, with env and default",
    )
    options.add_argument(
        "--group",
        action="append",
        choices=GROUPS,
        help="only this group (repeatable; default: all)",
    )
    options.set_defaults(func=_cmd_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"wsload: error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
