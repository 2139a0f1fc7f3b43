"""``wsload har RECORDING.har``: a browser recording turned into a profile, a corpus and a report.

The profile is checked as ``wsload profile check`` would (loaded, then dry-run on its
recorded frames) before the command says it is done; a profile that would fail is still
written, so the report can point at the keys to change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsload.errors import EXIT_CONFIG_ERROR, ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", metavar="RECORDING.har", help="a DevTools HAR with content")
    parser.add_argument(
        "--output",
        "-o",
        default="",
        help="the profile to write (default: the recording's name with .toml, in the "
        "current folder); the corpus and report are written next to it",
    )
    parser.add_argument("--name", default="", help="the profile's name (default: the file's)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args: argparse.Namespace) -> int:
    from wsload.cli import LOCUSTFILE
    from wsload.har.infer import infer
    from wsload.har.reader import read_har
    from wsload.har.writer import corpus_text, known_keys, profile_toml, report_text

    recording = read_har(args.recording)
    known = known_keys()
    inference = infer(recording, known)
    output = Path(args.output or Path(args.recording).with_suffix(".toml").name)
    corpus = output.with_name(output.stem + "-corpus.txt")
    report = output.with_name(output.stem + "-report.txt")
    existing = [p for p in (output, corpus, report) if p.exists()]
    if existing and not args.force:
        raise ConfigError(
            f"{existing[0]} exists; wsload har does not overwrite it",
            fix="give another --output, or --force to overwrite",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    name = args.name or output.stem
    output.write_text(profile_toml(inference, name=name, source=recording.source, known=known))
    corpus.write_text(corpus_text(inference))
    missing = sorted(
        f"{section}.{key}"
        for section, table in inference.profile.items()
        for key in table
        if key not in known.get(section, ())
    )
    verdict, failed = _check(output, missing)
    outputs = [f"profile {output}", f"corpus {corpus} ({len(inference.corpus)} messages)"]
    command = (
        f"run: locust -f {LOCUSTFILE} --host {inference.host} --ws-profile {output} "
        f"--corpus {corpus}"
    )
    if inference.profile.get("auth", {}).get("carrier") == "header":
        command += " --client-mode native"  # a browser cannot set that header
    text = report_text(inference, outputs=[*outputs, f"report {report}"], check=[*verdict, command])
    report.write_text(text)
    print(text, end="")
    return EXIT_CONFIG_ERROR if failed else 0


def _check(path: Path, missing: list[str]) -> tuple[list[str], bool]:
    """The profile check's verdict as report lines, and whether it fails."""
    from wsload.config.profile import load_profile
    from wsload.protocol.dry_run import dry_run

    if missing:
        return [
            f"profile check: not run: this wsload does not know the keys {', '.join(missing)} "
            "the recording needs (they are written as comments in the profile)"
        ], False
    try:
        profile = load_profile(path)
    except ConfigError as error:
        return [f"profile check: the profile does not load: {error}"], True
    result = dry_run(profile)
    if result.errors:
        lines = [f"profile check: fails its dry run ({len(result.errors)} problems):"]
        lines += [f"  error: {finding}" for finding in result.errors]
        return lines, True
    warned = (
        f" ({len(result.warnings)} warnings: wsload profile check {path})"
        if result.warnings
        else ""
    )
    return [f"profile check: ok{warned}"], False
