"""Load steps: when the generators held a constant user count, and how many users that was.

A capacity run writes its steps to ``steps.csv`` (exact boundaries and the search verdict).
Any other run gets its steps derived from the users counts (``health:users`` rows, else the
``users`` column of every sample, summed across generator nodes per second): each stretch
of a constant total that lasts ``min_hold_s`` is a step. Ramps between steps belong to the
step they lead to, so the connects of the users a step adds count in that step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wsload.capacity.steps_file import STEP_COLUMNS, STEPS_FILE

__all__ = [
    "STEPS_FILE",
    "STEP_COLUMNS",
    "assign_steps",
    "derive_steps",
    "empty_steps",
    "read_steps_file",
    "users_timeline",
]


def users_timeline(counts: pd.DataFrame, origin: float, bin_s: float = 1.0) -> pd.DataFrame:
    """Total users running across all nodes per ``bin_s`` window (``t_s`` from ``origin``).

    ``counts`` holds observations (node, ts, users): the last count of each node in a
    window is its count there, a node without observations keeps its last one, and the
    nodes are summed.
    """
    counts = counts.dropna(subset=["ts", "users"])
    if counts.empty:
        return pd.DataFrame({"t_s": pd.Series(dtype=float), "users": pd.Series(dtype=int)})
    frame = pd.DataFrame(
        {
            "node": counts["node"].to_numpy(),
            "bin": np.floor((counts["ts"] - origin) / bin_s).astype(int).to_numpy(),
            "users": counts["users"].astype(float).to_numpy(),
            "order": counts["ts"].to_numpy(),
        }
    ).sort_values("order", kind="stable")
    per_node = frame.groupby(["bin", "node"])["users"].last().unstack("node")
    bins = np.arange(min(0, per_node.index.min()), per_node.index.max() + 1)
    per_node = per_node.reindex(bins).ffill().fillna(0)
    total = per_node.sum(axis=1).astype(int)
    return pd.DataFrame({"t_s": total.index * bin_s, "users": total.to_numpy()})


def derive_steps(timeline: pd.DataFrame, origin: float, min_hold_s: float = 2.0) -> pd.DataFrame:
    """Steps from a users timeline: stretches of a constant non-zero total of ``min_hold_s``."""
    if timeline.empty:
        return empty_steps()
    users = timeline["users"].to_numpy()
    t = timeline["t_s"].to_numpy()
    width = float(t[1] - t[0]) if len(t) > 1 else 1.0
    change = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(users)]))
    rows = []
    previous_end = origin + float(t[0])
    for a, b in zip(starts, ends, strict=True):
        count = int(users[a])
        hold_start = origin + float(t[a])
        end = origin + float(t[b - 1]) + width
        if count <= 0 or end - hold_start < min_hold_s:
            continue
        rows.append(
            {
                "users": count,
                "start": previous_end,
                "hold_start": hold_start,
                "end": end,
                "verdict": pd.NA,
                "breaches": pd.NA,
            }
        )
        previous_end = end
    return _finish(pd.DataFrame(rows), source="derived")


def read_steps_file(folder: Path) -> pd.DataFrame | None:
    """The steps a capacity run marked, or None when the run wrote none."""
    path = folder / STEPS_FILE
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(
            path, on_bad_lines="skip", dtype={"verdict": "string", "breaches": "string"}
        )
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if frame.empty or not {"users", "start", "hold_start", "end"} <= set(frame.columns):
        return None
    frame = frame.dropna(subset=["users", "start", "end"])
    frame["hold_start"] = frame["hold_start"].fillna(frame["start"])
    return _finish(frame.drop(columns=["step"], errors="ignore"), source=STEPS_FILE)


def empty_steps() -> pd.DataFrame:
    return _finish(pd.DataFrame(columns=list(STEP_COLUMNS[1:])), source="derived")


def _finish(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = frame.sort_values("start", kind="stable").reset_index(drop=True)
    frame.insert(0, "step", np.arange(1, len(frame) + 1))
    frame["users"] = frame["users"].astype(int)
    for column in ("start", "hold_start", "end"):
        frame[column] = frame[column].astype(float)
    frame["hold_s"] = frame["end"] - frame["hold_start"]
    for column in ("verdict", "breaches"):
        frame[column] = frame[column].astype("string")
    frame["source"] = source
    return frame


def assign_steps(ended: pd.Series, steps: pd.DataFrame) -> pd.DataFrame:
    """For each measurement end: its step, the step's users and whether it ended during the
    hold (after the ramp); <NA> outside every step.

    A measurement belongs to the step in which it ended, as in Locust's stats (and so in the
    capacity shape's verdict): a turn that a step's extra load slowed down counts there.
    """
    out = pd.DataFrame(
        {
            "step": pd.Series(pd.NA, index=ended.index, dtype="Int64"),
            "step_users": pd.Series(pd.NA, index=ended.index, dtype="Int64"),
            "in_hold": pd.Series(False, index=ended.index, dtype=bool),
        }
    )
    for row in steps.itertuples(index=False):
        inside = (ended >= row.start) & (ended < row.end)
        out.loc[inside, "step"] = row.step
        out.loc[inside, "step_users"] = row.users
        out.loc[inside & (ended >= row.hold_start), "in_hold"] = True
    return out
