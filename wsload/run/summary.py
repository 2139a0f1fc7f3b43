"""The end-of-run summary: exact percentiles per stats name and failures by taxonomy id.

Read from the raw samples, not Locust's rounded histogram, so the numbers printed here
are the numbers a gate or notebook computes from the same run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from wsload.run.long_view import load_long
from wsload.run.meta import crash_notice, read_run_meta
from wsload.run.recorder import SAMPLES_FILE
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
    rows = []
    for name, group in samples.loc[samples["kind"] != "health"].groupby("name"):
        good = group.loc[group["ok"], "ms"]
        rows.append(
            {
                "name": name,
                "count": len(group),
                "failures": int((~group["ok"]).sum()),
                "p50": good.quantile(0.50) if len(good) else float("nan"),
                "p95": good.quantile(0.95) if len(good) else float("nan"),
                "p99": good.quantile(0.99) if len(good) else float("nan"),
                "max": good.max() if len(good) else float("nan"),
            }
        )
    table = pd.DataFrame(rows, columns=["name", "count", "failures", "p50", "p95", "p99", "max"])
    return table.sort_values("name", key=lambda s: s.map(_name_key)).reset_index(drop=True)


def failure_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Failures counted by stats name and taxonomy id."""
    failed = samples.loc[~samples["ok"]]
    if failed.empty:
        return pd.DataFrame(columns=["name", "failure", "count"])
    counts = failed.groupby(["name", "failure"]).size().rename("count").reset_index()
    return counts.sort_values("count", ascending=False).reset_index(drop=True)


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


def security_lines(samples: pd.DataFrame) -> list[str]:
    """The security part of the summary: probes x outcome, identities, isolation, and the
    handshake-conformance probes apart from them."""
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
    foreign = int((samples["failure"] == "foreign_event").sum())
    if foreign:
        lines.append(f"isolation: {foreign} samples saw events of another user, thread or run")
    return lines


def session_lines(samples: pd.DataFrame) -> list[str]:
    """How many connection attempts became sessions, and what stopped the others.

    A run whose every session was refused has no turn to time: it must say so up front,
    with the likely cause, rather than leave a reader with an empty table.
    """
    connects = samples.loc[samples["name"] == "connect"]
    if connects.empty:
        return []
    auths = samples.loc[samples["name"] == "auth"]
    attempts = len(connects)
    at_connect = connects.loc[~connects["ok"], "failure"].fillna("failed")
    at_auth = auths.loc[~auths["ok"], "failure"].fillna("failed")
    mismatched = int((at_auth == "identity_mismatch").sum())  # a session, of someone else
    at_auth = at_auth[at_auth != "identity_mismatch"]
    established = attempts - len(at_connect) - len(at_auth)
    line = f"sessions: {established} of {attempts} connection attempts authenticated"
    parts = [
        f"{len(found)} failed at {stage} ({_top(found)})"
        for stage, found in (("connect", at_connect), ("auth", at_auth))
        if len(found)
    ]
    if mismatched:
        parts.append(f"{mismatched} of them acked as another user (identity_mismatch)")
    lines = [line + (": " + "; ".join(parts) if parts else "")]
    if established <= 0 and len(at_auth) == attempts:
        rejected = int((at_auth == "auth_rejected").sum())
        lines.append(
            f"100% of sessions were rejected at auth ({_top(at_auth)}): "
            + (
                "is the secret, issuer or audience right?"
                if rejected
                else "did the server send the ack the profile expects?"
            )
        )
    elif established <= 0 and len(at_connect) == attempts:
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
    return {
        "turns": count,
        "turns_per_s": count / span if span > 0 else None,
        "failed_turns": failed,
        "failed_share": failed / count if count else None,
        "duration_s": span,
    }


def headline_lines(samples: pd.DataFrame) -> list[str]:
    """The lines a reader looks at first: turns, turns/s, failed turns and their share."""
    head = turn_headline(samples)
    if not head["turns"]:
        return ["turns: none completed"]
    rate = head["turns_per_s"]
    lines = [
        f"turns: {head['turns']} completed, "
        + (f"{rate:.1f} turns/s" if rate is not None else "- turns/s")
        + f" over {head['duration_s']:.1f} s"
    ]
    turns = samples.loc[samples["name"] == "turn:e2e"]
    failed = turns.loc[~turns["ok"], "failure"].fillna("failed")
    share = head["failed_share"] or 0.0
    line = f"failed turns: {head['failed_turns']} ({share * 100:.1f}% of turns)"
    lines.append(line + (f": {_top(failed)}" if len(failed) else ""))
    return lines


def example_lines(samples: pd.DataFrame, per_id: int = EXAMPLES_PER_ID) -> list[str]:
    """The first few failing samples of each taxonomy id: which name, user, session, and
    the detail that explains it."""
    failed = samples.loc[~samples["ok"]]
    if failed.empty:
        return []
    lines = [f"failure examples (first {per_id} of each id):"]
    order = failed["failure"].fillna("failed").value_counts()
    for failure in order.index:
        rows = failed.loc[failed["failure"].fillna("failed") == failure].head(per_id)
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


def _top(failures: pd.Series) -> str:
    counts = failures.value_counts().head(3)
    return ", ".join(f"{name} x{n}" for name, n in counts.items())


def render(folder: str | Path) -> str:
    """The summary as text for a terminal."""
    samples = load_samples(folder, SUMMARY_COLUMNS)
    lines = [f"wsload summary of {folder} ({len(samples)} samples, times in ms, exact)"]
    notice = crash_notice(read_run_meta(folder), last_sample_end(samples))
    if notice:
        lines.append(f"WARNING: {notice}")
    lines += headline_lines(samples)
    lines += session_lines(samples)
    table = percentile_table(samples)
    header = f"{'name':<28}{'count':>8}{'fail':>7}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}"
    lines += [header, "-" * len(header)]
    for row in table.itertuples(index=False):
        lines.append(
            f"{row.name:<28}{row.count:>8}{row.failures:>7}"
            + "".join(
                f"{v:>10.1f}" if v == v else f"{'-':>10}"
                for v in (row.p50, row.p95, row.p99, row.max)
            )
        )
    failures = failure_table(samples)
    if failures.empty:
        lines.append("failures: none")
    else:
        lines.append("failures by taxonomy id:")
        for row in failures.itertuples(index=False):
            lines.append(f"  {row.name:<26}{row.failure:<24}{row.count:>8}")
    lines += security_lines(samples)
    lines += example_lines(samples)
    return "\n".join(lines)
