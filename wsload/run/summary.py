"""The end-of-run summary: exact percentiles per stats name and failures by taxonomy id.

Read from the raw samples, not Locust's rounded histogram, so the numbers printed here
are the numbers a gate or notebook computes from the same run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from wsload.run import digest
from wsload.run.long_view import load_long
from wsload.run.meta import TLS_INSECURE_NOTICE, crash_notice, read_run_meta
from wsload.run.recorder import SAMPLES_FILE
from wsload.run.stream_summary import NOT_MS, stream_lines
from wsload.run.tables import has_tables

_ORDER = ("connect", "auth", "turn:ttfe")


_TEXT_COLUMNS = ("failure", "detail", "subject", "session")
SUMMARY_COLUMNS = (
    "ts",
    "user",
    "subject",
    "session",
    "kind",
    "name",
    "ms",
    "ok",
    "failure",
    "detail",
)
EXAMPLES_PER_ID = 3
_EPOCH_FLOOR = 946684800.0  # 2000-01-01: a ts before it was cut short
_EPOCH_CEILING = 4102444800.0  # 2100-01-01


def load_samples(folder: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The long view of a run folder (one row per measurement), in memory.

    From the results tables when the folder has them (``wsload.run.long_view``), else from
    a classic ``samples.csv`` (``read_samples_csv``). ``columns`` reads only those.
    """
    folder = Path(folder)
    if has_tables(folder):
        return load_long(folder, columns, run_id=str(read_run_meta(folder).get("run_id") or ""))
    return read_samples_csv(folder / SAMPLES_FILE, columns)


def read_samples_csv(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A classic long CSV (an exported run, or one written before the tables).

    Only whole rows count: a last line without its newline (a write cut short) is dropped,
    and so is a row whose ``ts`` is not an epoch time of this century (a field cut short
    reads as a small number) or whose fields do not parse.
    """
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(size - 1, 0))
        torn = size > 0 and handle.read(1) != b"\n"
    text_columns = {c: "string" for c in _TEXT_COLUMNS if columns is None or c in columns}
    frame = pd.read_csv(
        path,
        usecols=list(columns) if columns is not None else None,
        on_bad_lines="skip",
        keep_default_na=False,  # only an empty field is missing: a detail may say "null"
        na_values=[""],
        dtype=text_columns,
    )
    if torn and len(frame):
        frame = frame.iloc[:-1]
    if "ts" in frame.columns:
        ts = pd.to_numeric(frame["ts"], errors="coerce")
        frame = frame.loc[(ts >= _EPOCH_FLOOR) & (ts < _EPOCH_CEILING)].copy()
        frame["ts"] = ts.loc[frame.index]
    if "ok" in frame.columns:
        frame["ok"] = pd.to_numeric(frame["ok"], errors="coerce").fillna(0).astype(bool)
    return frame.reset_index(drop=True)


def last_sample_end(samples: pd.DataFrame) -> float | None:
    """When the last measurement ended (epoch s): the end of a run that did not say.

    Health rows are left out: their ``ms`` holds a CPU share or a user count, not a time.
    """
    timed = samples.loc[~samples["name"].astype(str).str.startswith("health:")]
    if timed.empty:
        return None
    return float((timed["ts"].astype(float) + timed["ms"].astype(float).fillna(0.0) / 1e3).max())


def _name_key(name: str) -> tuple[int, str]:
    if name in _ORDER:
        return (_ORDER.index(name), name)
    if name == "turn:e2e":
        return (90, name)
    return (50, name)


def percentile_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per name: count, failures, and percentiles of the successful samples (ms)."""
    return digest.percentile_table(digest.digest_of(samples), _name_key)


def failure_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Failures counted by stats name and taxonomy id."""
    return digest.failure_table(digest.digest_of(samples))


def probe_table(samples: pd.DataFrame, kind: str = "probe") -> pd.DataFrame:
    """Probes of a kind (``probe`` or ``conformance``) by outcome: how the server refused
    each (or that it accepted)."""
    probes = samples.loc[samples["kind"] == kind]
    if probes.empty:
        return pd.DataFrame(columns=["probe", "outcome", "count"])
    outcome = probes["detail"].fillna("").str.split(":", n=1).str[0]
    return (
        probes.assign(probe=probes["name"].str.partition(":")[2], outcome=outcome)
        .groupby(["probe", "outcome"])
        .size()
        .rename("count")
        .reset_index()
    )


def _probe_lines(samples: pd.DataFrame, kind: str, title: str, flag: str) -> list[str]:
    probes = probe_table(samples, kind)
    if probes.empty:
        return []
    lines = [title]
    for probe, group in probes.groupby("probe", sort=True):
        outcomes = ", ".join(f"{r.outcome} x{r.count}" for r in group.itertuples(index=False))
        mark = f"   <-- {flag}" if "accepted" in set(group["outcome"]) else ""
        lines.append(f"  {probe:<22}{outcomes}{mark}")
    return lines


def security_lines(samples: pd.DataFrame, foreign: int | None = None) -> list[str]:
    """The security part of the summary: probes x outcome, identities, isolation, and the
    handshake-conformance probes apart from them. ``foreign``: the count of
    ``foreign_event`` samples when ``samples`` holds only the probes and mismatches."""
    lines = _probe_lines(
        samples,
        "probe",
        "security probes (how the server refused; 'accepted' = auth NOT enforced):",
        "NOT ENFORCED",
    )
    lines += _probe_lines(
        samples,
        "conformance",
        "handshake conformance (upgrades RFC 6455 says to refuse; 'accepted' = lax, "
        "not an auth bypass):",
        "NOT CONFORMANT",
    )
    mismatches = samples.loc[samples["failure"] == "identity_mismatch"]
    if not mismatches.empty:
        acked = mismatches["detail"].fillna("").str.extract(r"acked as user '([^']*)'")[0]
        top = ", ".join(f"{name!r} x{n}" for name, n in acked.value_counts().head(3).items())
        lines.append(
            f"identity mismatches: {len(mismatches)} sessions acked as another user than "
            f"their token's subject ({top})"
        )
    if foreign is None:
        foreign = int((samples["failure"] == "foreign_event").sum())
    if foreign:
        lines.append(f"isolation: {foreign} samples saw events of another user, thread or run")
    return lines


def _counts(rows: pd.DataFrame) -> pd.Series:
    """Measurements per failure id of digest rows, most first (no id: ``failed``)."""
    ids = rows["failure"].fillna("failed").astype(str)
    counts = rows["n"].groupby(ids.to_numpy()).sum()
    return counts.sort_values(ascending=False, kind="stable")


def session_lines(samples: pd.DataFrame) -> list[str]:
    """How many connection attempts became sessions, and what stopped the others."""
    return session_lines_of(digest.digest_of(samples))


def session_lines_of(counted: pd.DataFrame) -> list[str]:
    """``session_lines`` from a digest.

    A run whose every session was refused has no turn to time: it must say so up front,
    with the likely cause, rather than leave a reader with an empty table.
    """
    connects = counted.loc[counted["name"] == "connect"]
    if connects.empty:
        return []
    auths = counted.loc[counted["name"] == "auth"]
    attempts = int(connects["n"].sum())
    at_connect = _counts(connects.loc[~connects["ok"]])
    at_auth = _counts(auths.loc[~auths["ok"]])
    mismatched = int(at_auth.get("identity_mismatch", 0))  # a session, of someone else
    at_auth = at_auth.drop("identity_mismatch", errors="ignore")
    established = attempts - int(at_connect.sum()) - int(at_auth.sum())
    line = f"sessions: {established} of {attempts} connection attempts authenticated"
    parts = [
        f"{int(found.sum())} failed at {stage} ({_top(found)})"
        for stage, found in (("connect", at_connect), ("auth", at_auth))
        if found.sum()
    ]
    if mismatched:
        parts.append(f"{mismatched} of them acked as another user (identity_mismatch)")
    lines = [line + (": " + "; ".join(parts) if parts else "")]
    if established <= 0 and int(at_auth.sum()) == attempts:
        rejected = int(at_auth.get("auth_rejected", 0))
        lines.append(
            f"100% of sessions were rejected at auth ({_top(at_auth)}): "
            + (
                "is the secret, issuer or audience right?"
                if rejected
                else "did the server send the ack the profile expects?"
            )
        )
    elif established <= 0 and int(at_connect.sum()) == attempts:
        lines.append(
            f"100% of connection attempts failed at connect ({_top(at_connect)}): "
            "is the host right, does it accept WebSocket upgrades at this path?"
        )
    return lines


def turn_headline(samples: pd.DataFrame) -> dict[str, float | int | None]:
    """Completed agent turns, turns/s and the failed ones, as the web UI's headline.

    Turns/s is completed turns over the time from the first measurement's start to the last
    turn's end (health rows left out).
    """
    turns = samples.loc[samples["name"] == "turn:e2e"]
    count = len(turns)
    failed = int((~turns["ok"]).sum()) if count else 0
    timed = samples.loc[samples["kind"] != "health"]
    span = 0.0
    if count:
        ends = turns["ts"].astype(float) + turns["ms"].astype(float).fillna(0.0) / 1e3
        span = float(ends.max() - timed["ts"].astype(float).min())
    return _headline(count, failed, span)


def _headline(count: int, failed: int, span: float) -> dict[str, float | int | None]:
    return {
        "turns": count,
        "turns_per_s": count / span if span > 0 else None,
        "failed_turns": failed,
        "failed_share": failed / count if count else None,
        "duration_s": span,
    }


def headline_lines(samples: pd.DataFrame) -> list[str]:
    """The lines a reader looks at first: turns, turns/s, failed turns and their share."""
    return headline_lines_of(turn_headline(samples), digest.digest_of(samples))


def headline_lines_of(head: dict, counted: pd.DataFrame) -> list[str]:
    if not head["turns"]:
        return ["turns: none completed"]
    rate = head["turns_per_s"]
    lines = [
        f"turns: {head['turns']} completed, "
        + (f"{rate:.1f} turns/s" if rate is not None else "- turns/s")
        + f" over {head['duration_s']:.1f} s"
    ]
    failed = _counts(counted.loc[(counted["name"] == "turn:e2e") & ~counted["ok"]])
    share = head["failed_share"] or 0.0
    line = f"failed turns: {head['failed_turns']} ({share * 100:.1f}% of turns)"
    lines.append(line + (f": {_top(failed)}" if failed.sum() else ""))
    return lines


def example_lines(samples: pd.DataFrame, per_id: int = EXAMPLES_PER_ID) -> list[str]:
    """The first few failing samples of each taxonomy id: which name, user, session, and
    the detail that explains it."""
    failed = samples.loc[~samples["ok"]]
    order = failed["failure"].fillna("failed").value_counts()
    return example_lines_of(failed, order, per_id)


def example_lines_of(failed: pd.DataFrame, order: pd.Series, per_id: int) -> list[str]:
    """``example_lines`` from the failing rows in time order (at least ``per_id`` of each
    id) and the count of each id, most first."""
    if failed.empty:
        return []
    lines = [f"failure examples (first {per_id} of each id):"]
    ids = failed["failure"].fillna("failed")
    for failure in order.index:
        rows = failed.loc[ids == failure].head(per_id)
        lines.append(f"  {failure} (x{order[failure]}):")
        for row in rows.itertuples(index=False):
            who = " ".join(
                f"{label} {value}"
                for label, value in (
                    ("user", getattr(row, "user", None)),
                    ("subject", getattr(row, "subject", None)),
                    ("session", getattr(row, "session", None)),
                )
                if not _missing(value)
            )
            detail = "" if _missing(row.detail) else str(row.detail)
            lines.append(f"    {row.name} {who}: {detail[:200]}".rstrip(": "))
    return lines


def _missing(value: object) -> bool:
    """An empty field: None, NaN, pandas' NA (whose truth value raises) or empty text."""
    return value is None or bool(pd.isna(value)) or str(value) == ""


def _label(name: str) -> str:
    """A stats name, with its unit when its values are not milliseconds."""
    return f"{name} [{NOT_MS[name]}]" if name in NOT_MS else name


def _top(counts: pd.Series) -> str:
    """The three most frequent ids of a count per id (or of a Series of ids)."""
    if counts.dtype == object or str(counts.dtype) in ("string", "str"):
        counts = counts.value_counts()
    counts = counts.sort_values(ascending=False, kind="stable").head(3)
    return ", ".join(f"{name} x{n}" for name, n in counts.items())


_HEADER = f"{'name':<28}{'count':>8}{'fail':>7}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}"


def _lines(
    folder: str | Path,
    samples: int,
    last_end: float | None,
    head: dict,
    counted: pd.DataFrame,
    security: list[str],
    examples: list[str],
    stream: list[str],
) -> str:
    lines = [f"wsload summary of {folder} ({samples} samples, times in ms, exact)"]
    meta = read_run_meta(folder)
    notice = crash_notice(meta, last_end)
    if notice:
        lines.append(f"WARNING: {notice}")
    if meta.get("tls_insecure") is True:
        lines.append(f"WARNING: {TLS_INSECURE_NOTICE}")
    lines += headline_lines_of(head, counted)
    lines += stream
    lines += session_lines_of(counted)
    table = digest.percentile_table(counted, _name_key)
    lines += [_HEADER, "-" * len(_HEADER)]
    for row in table.itertuples(index=False):
        lines.append(
            f"{_label(row.name):<28}{row.count:>8}{row.failures:>7}"
            + "".join(
                f"{v:>10.1f}" if v == v else f"{'-':>10}"
                for v in (row.p50, row.p95, row.p99, row.max)
            )
        )
    failures = digest.failure_table(counted)
    if failures.empty:
        lines.append("failures: none")
    else:
        lines.append("failures by taxonomy id:")
        for row in failures.itertuples(index=False):
            lines.append(f"  {row.name:<26}{row.failure:<24}{row.count:>8}")
    return "\n".join(lines + security + examples)


def render(folder: str | Path) -> str:
    """The summary as text for a terminal: from the tables in DuckDB, out of core, or from
    a classic ``samples.csv`` in pandas."""
    if has_tables(Path(folder)):
        from wsload.run.summary_sql import render_facts

        return _lines(folder, *render_facts(Path(folder)))
    samples = load_samples(folder, SUMMARY_COLUMNS)
    return _lines(
        folder,
        len(samples),
        last_sample_end(samples),
        turn_headline(samples),
        digest.digest_of(samples),
        security_lines(samples),
        example_lines(samples),
        stream_lines(samples),
    )
