"""A run's measurements counted by (kind, name, ok, failure, ms): exact statistics without
the rows.

Latencies are kept to the microsecond, so the successful measurements of a name take a
few thousand distinct values however many there are, and the digest of a billion rows is
a small table. Counts, failure shares and exact percentiles all come out of it: DuckDB
makes it in one pass over the results tables (``digest_sql``), pandas from a frame of the
long view (``digest_of``), and the one set of functions below reads either, so the
summary and the gate give the same numbers for a run that fits in memory and one that
does not.

Percentiles are the linear interpolation between closest ranks (numpy's and pandas'
default), computed with numpy's own formula on the value at each rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

KEYS = ["kind", "name", "ok", "failure", "ms"]


def digest_sql(
    where: str = "",
    *,
    also: tuple[str, ...] = (),
    events: Sequence[str] = (),
    by: Mapping[str, str] | None = None,
) -> str:
    """The digest of the long view (rows matching ``where``; ``also``: more long-view
    columns the condition or ``by`` read), over only the columns it needs; ``events``:
    the turns view's event columns (``wsload.run.tables.turn_events_of``); ``by``: more
    columns to count by (name -> SQL over the long view's columns).

    Each rule of the long view is counted on its own (its kind and name are mostly
    constants, so DuckDB hashes little more than the value) and the counts added up: a
    quarter less work than counting the whole view at once."""
    from wsload.run.long_view import _arms

    extra = "".join(f"{expression} AS {name}, " for name, expression in (by or {}).items())
    names = "".join(f"{name}, " for name in by or {})
    condition = f"WHERE {where}" if where else ""
    counted = [
        f"SELECT kind, name, ok, failure, CASE WHEN ok THEN ms END AS ms, {extra}count(*) AS n "
        f"FROM ({arm}) {condition} GROUP BY ALL"
        for arm in _arms(("kind", "name", "ok", "failure", "ms", *also), events)
    ]
    return (
        f"SELECT kind, name, ok, failure, ms, {names}CAST(sum(n) AS BIGINT) AS n "
        f"FROM ({' UNION ALL '.join(counted)}) GROUP BY ALL"
    )


def digest_of(samples: pd.DataFrame) -> pd.DataFrame:
    """The digest of a long-view frame (the columns it lacks are taken as empty)."""
    frame = pd.DataFrame(
        {
            "kind": samples["kind"].astype(str) if "kind" in samples else "",
            "name": samples["name"].astype(str),
            "ok": samples["ok"].astype(bool),
            "failure": samples["failure"].astype("string") if "failure" in samples else pd.NA,
            "ms": pd.to_numeric(samples["ms"], errors="coerce").astype(float),
        }
    )
    frame.loc[~frame["ok"], "ms"] = np.nan
    counted = frame.groupby(KEYS, dropna=False, sort=False).size().rename("n").reset_index()
    return tidy(counted)


def tidy(digest: pd.DataFrame) -> pd.DataFrame:
    """One dtype per column whichever engine made it."""
    return pd.DataFrame(
        {
            "kind": digest["kind"].astype(str),
            "name": digest["name"].astype(str),
            "ok": digest["ok"].astype(bool),
            "failure": digest["failure"].astype("string").replace("", pd.NA),
            "ms": pd.to_numeric(digest["ms"], errors="coerce").astype(float),
            "n": digest["n"].astype("int64"),
        }
    )


def percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """numpy's linear percentile (``q`` in 0..1) of ``values`` each repeated ``counts``
    times; ``values`` sorted ascending, no NaN."""
    total = int(counts.sum())
    if total == 0:
        return float("nan")
    ends = np.cumsum(counts)
    virtual = (total - 1) * q  # numpy's linear virtual index
    if virtual >= total - 1:
        return float(values[-1])
    if virtual < 0:
        return float(values[0])
    lower = int(np.floor(virtual))
    a = values[int(np.searchsorted(ends, lower, side="right"))]
    b = values[int(np.searchsorted(ends, lower + 1, side="right"))]
    gamma = virtual - lower
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


def successes(digest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(values, counts) of the successful timed rows of ``digest``, sorted by value."""
    good = digest.loc[digest["ok"] & digest["ms"].notna(), ["ms", "n"]]
    good = good.groupby("ms", sort=True)["n"].sum()
    return good.index.to_numpy(dtype=float), good.to_numpy(dtype="int64")


def stat(values: np.ndarray, counts: np.ndarray, which: str | float) -> float:
    """A percentile (a number, 0..100: numpy's ``percentile`` argument) or min, max, mean."""
    if not isinstance(which, str):
        return percentile(values, counts, float(np.true_divide(which, 100)))
    if which == "min":
        return float(values[0])
    if which == "max":
        return float(values[-1])
    return float(np.dot(values, counts) / counts.sum())  # mean (numpy's to ~1e-15)


def percentile_table(digest: pd.DataFrame, order) -> pd.DataFrame:
    """Per name (health left out): count, failures, p50/p95/p99 and max of the successes."""
    rows = []
    timed = digest.loc[digest["kind"] != "health"]
    for name, group in timed.groupby("name", sort=False):
        values, counts = successes(group)
        some = len(values) > 0
        rows.append(
            {
                "name": name,
                "count": int(group["n"].sum()),
                "failures": int(group.loc[~group["ok"], "n"].sum()),
                # pandas' quantile takes q as a percentage (q * 100) before numpy divides
                "p50": stat(values, counts, 0.50 * 100.0) if some else float("nan"),
                "p95": stat(values, counts, 0.95 * 100.0) if some else float("nan"),
                "p99": stat(values, counts, 0.99 * 100.0) if some else float("nan"),
                "max": float(values[-1]) if some else float("nan"),
            }
        )
    table = pd.DataFrame(rows, columns=["name", "count", "failures", "p50", "p95", "p99", "max"])
    return table.sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def failure_table(digest: pd.DataFrame) -> pd.DataFrame:
    """Failures counted by stats name and taxonomy id, most first."""
    failed = digest.loc[~digest["ok"] & digest["failure"].notna()]
    if failed.empty:
        return pd.DataFrame(columns=["name", "failure", "count"])
    counts = failed.groupby(["name", "failure"])["n"].sum().rename("count").reset_index()
    return counts.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)
