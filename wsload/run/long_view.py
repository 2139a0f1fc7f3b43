"""The long view: one row per measurement, the columns of the classic ``samples.csv``.

Locust counts measurements, not turns: a turn is a ``turn:ttfe``, a ``turn:<event>`` per
first event of the grammar, a ``turn:gap`` per gap, a ``turn:<span>`` per tool span,
maybe a ``turn:e2e_intended``, and its ``turn:e2e``. The tables keep one row per
observation; this SQL (DuckDB, over the views ``wsload.run.tables.connect`` makes)
unfolds them into those measurements, with the values the CSV writer wrote: a stats
name's row count here equals Locust's request count for that name. Latencies are in ms
rounded to the microsecond; health rows carry CPU percent, loop lag ms or a user count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 2
COLUMNS = (
    "v",  # schema version
    "run_id",
    "node",  # generator process
    "ts",  # wall clock at the start of the measurement, epoch seconds
    "user",  # user index within the node
    "subject",
    "session",
    "turn",
    "kind",  # connect | auth | event | gap | span | turn | session | probe | http | health
    "name",  # the Locust stats name (health rows: health:cpu, health:lag, health:users)
    "ms",  # latency in ms (health rows: CPU percent, loop lag ms, user count)
    "ok",
    "failure",
    "http_status",
    "close_code",
    "users",  # users running in this process at that moment
    "bytes",
    "events",
    "detail",
    "inflight",  # handshakes (connect/auth rows) or turns (turn rows) in flight in this process
)
TEXT_COLUMNS = ("failure", "detail", "subject", "session")


def _ms(expression: str, digits: int = 3) -> str:
    return f"round(CAST({expression} AS DOUBLE), {digits})"


class Rule(str):
    """One rule of the long view: its SELECT, and its ``arm`` number as ``order``."""

    order: float


def _arm(
    source: str,
    *,
    ts: str = "started_at",
    user: str = '"user"',
    subject: str = "NULLIF(subject, '')",
    session: str = "NULLIF(session, '')",
    turn: str = "NULL",
    kind: str,
    name: str,
    ms: str,
    failure: str = "NULL",
    http_status: str = "NULL",
    close_code: str = "NULL",
    nbytes: str = "0",
    events: str = "NULL",
    detail: str = "NULL",
    inflight: str = "NULL",
    where: str = "",
    order: float,
    sub: str = "0",
    keep: Sequence[str] | None = None,
) -> Rule:
    failed = f"({failure}) IS NOT NULL AND ({failure}) <> ''"
    expressions = {
        "node": "node",
        "ts": f"CAST({ts} AS DOUBLE)",
        "user": f"CAST({user} AS BIGINT)",
        "subject": f"CAST({subject} AS VARCHAR)",
        "session": f"CAST({session} AS VARCHAR)",
        "turn": f"CAST({turn} AS BIGINT)",
        "kind": f"CAST({kind} AS VARCHAR)",
        "name": f"CAST({name} AS VARCHAR)",
        "ms": ms,
        "ok": f"NOT ({failed})",
        "failure": f"CAST(NULLIF({failure}, '') AS VARCHAR)",
        "http_status": f"CAST({http_status} AS BIGINT)",
        "close_code": f"CAST({close_code} AS BIGINT)",
        "users": "CAST(node_users AS BIGINT)",
        "bytes": f"CAST({nbytes} AS BIGINT)",
        "events": f"CAST({events} AS BIGINT)",
        "detail": f"CAST(NULLIF({detail}, '') AS VARCHAR)",
        "inflight": f"CAST({inflight} AS BIGINT)",
        "arm": f"CAST({order} AS DOUBLE)",
        "sub": sub,
    }
    picked = ", ".join(
        f'{expression} AS "{column}"'
        for column, expression in expressions.items()
        if keep is None or column in keep
    )
    rule = Rule(f"SELECT {picked} FROM {source}" + (f" WHERE {where}" if where else ""))
    rule.order = order
    return rule


# The turns columns each long-view column is made of, on the rows of a turn's lists
_TURN_SOURCES = {
    "node": ("node",),
    "ts": ("started_at",),
    "user": ('"user"',),
    "subject": ("subject",),
    "session": ("session",),
    "turn": ("turn",),
    "users": ("node_users",),
}


def _unnest(values: str, alias: str, keep: Sequence[str] | None, where: str = "") -> str:
    """The turns with one row per element of the list ``values`` (``alias``; ``_i`` its
    position), carrying only the turn's columns the ``keep`` columns are made of: DuckDB
    carries every column it is given through an unnest."""
    wanted = [c for c in _TURN_SOURCES if keep is None or c in keep]
    columns = [source for c in wanted for source in _TURN_SOURCES[c]]
    if keep is None or "sub" in keep:
        columns.append(f"generate_subscripts({values}, 1) AS _i")
    picked = "".join(f"{c}, " for c in columns)
    condition = f" WHERE {where}" if where else ""
    return f"(SELECT {picked}unnest({values}) AS {alias} FROM turns{condition})"


def _stream_arms(keep: Sequence[str] | None) -> list[Rule]:
    """A streamed answer's samples (``turn:ttft``, ``turn:itl`` per gap, ``turn:tpot``,
    ``turn:output_tokens``, ``turn:tokens_per_s``), on turns with a first token event."""
    streamed = "ttft_ms IS NOT NULL"
    common = {"turn": "turn", "kind": "'stream'", "keep": keep}
    return [
        _arm("turns", name="'turn:ttft'", ms=_ms("ttft_ms"), where=streamed, order=3.1,
             **common),
        _arm(_unnest("itl_ms", "_t", keep, streamed), name="'turn:itl'", ms=_ms("_t"), order=3.2,
             sub="_i", **common),
        _arm("turns", name="'turn:tpot'", ms=_ms("tpot_ms"),
             where=f"{streamed} AND tpot_ms IS NOT NULL", order=3.3, **common),
        _arm("turns", name="'turn:output_tokens'",
             ms="CAST(coalesce(output_tokens, 0) AS DOUBLE)", where=streamed, order=3.4,
             **common),
        _arm("turns", name="'turn:tokens_per_s'", ms=_ms("tokens_per_s"),
             where=f"{streamed} AND tokens_per_s IS NOT NULL", order=3.5, **common),
    ]  # fmt: skip


def _quoted(text: str, quote: str = "'") -> str:
    return quote + text.replace(quote, quote * 2) + quote


def _event_arms(events: Sequence[str], keep: Sequence[str] | None) -> list[Rule]:
    """A ``turn:<event>`` row per first occurrence: one scan of each event's column, and
    the ``first_ms`` map unnested for the others (every event, in older folders). A
    turn's event rows are ordered by their offsets (``sub``), which is the order they
    came in (the tracker never dates an event before the one before it); a folder
    without event columns keeps the map's own order."""
    from wsload.run.columns import EVENT_PREFIX  # pyarrow: only once tables are read

    arms = []
    for event in events:
        column = _quoted(EVENT_PREFIX + event, '"')
        arms.append(
            _arm("turns", kind="'event'", name=_quoted("turn:" + event), ms=_ms(column),
                 turn="turn", order=1, sub=f"CAST({column} AS DOUBLE)",
                 where=f"{column} IS NOT NULL", keep=keep)
        )  # fmt: skip
    # the map alone (older folders): its entries' order; beside columns: their offsets
    sub = "CAST(_e.value AS DOUBLE)" if events else "_i"
    arms.append(
        _arm(_unnest("map_entries(first_ms)", "_e", keep, "first_ms IS NOT NULL"),
             kind="'event'", name="'turn:' || _e.key", ms=_ms("_e.value"), turn="turn",
             order=1, sub=sub, keep=keep)
    )  # fmt: skip
    return arms


def _arms(keep: Sequence[str] | None = None, events: Sequence[str] = ()) -> list[Rule]:
    """The rules, each a SELECT of the ``keep`` columns (all when None); ``events``: the
    events with a column of their own in the turns table."""
    turn_part = {"turn": "turn", "order": 0, "keep": keep}
    arms = [
        _arm("turns", kind="'event'", name="'turn:ttfe'", ms=_ms("ttfe_ms"),
             where="ttfe_ms IS NOT NULL", **turn_part),
        *_event_arms(events, keep),
        _arm(_unnest("gaps_ms", "_g", keep), kind="'gap'", name="'turn:gap'", ms=_ms("_g"),
             turn="turn", order=2, sub="_i", keep=keep),
        _arm(_unnest("spans_ms", "_s", keep), kind="'span'", name="'turn:' || _s.name",
             ms=_ms("_s.ms"), turn="turn", order=3, sub="_i", keep=keep),
        *_stream_arms(keep),
        _arm("turns", kind="'intended'", name="'turn:e2e_intended'", ms=_ms("intended_ms"),
             where="intended_ms IS NOT NULL", turn="turn", order=4, keep=keep),
        _arm("turns", kind="'turn'", name="'turn:e2e'", ms=_ms("e2e_ms"), failure="failure",
             nbytes="sent_bytes", events="events", detail="detail", inflight="inflight",
             turn="turn", order=5, keep=keep),
    ]  # fmt: skip
    failed = "(failure IS NOT NULL AND failure <> '')"
    arms += [
        _arm("connections", kind="'connect'", name="'connect'", ms=_ms("coalesce(connect_ms, 0)"),
             failure="CASE WHEN phase = 'connect' THEN failure END",
             http_status=f"CASE WHEN phase = 'connect' AND {failed} THEN http_status END",
             close_code=f"CASE WHEN phase = 'connect' AND {failed} THEN close_code END",
             detail="CASE WHEN phase = 'connect' THEN detail ELSE extensions END",
             inflight="inflight",
             order=6, keep=keep),
        _arm("connections", kind="'tls'", name="'tls'", ms=_ms("tls_ms"),
             detail="CASE WHEN tls_resumed THEN 'resumed' END", inflight="inflight",
             where="phase IS DISTINCT FROM 'connect' AND tls_ms IS NOT NULL", order=6.5,
             keep=keep),
        _arm("connections", kind="'auth'", name="'auth'", ms=_ms("coalesce(auth_ms, 0)"),
             failure="failure", http_status=f"CASE WHEN {failed} THEN http_status END",
             close_code=f"CASE WHEN {failed} THEN close_code END", detail="detail",
             inflight="inflight", where="phase IS DISTINCT FROM 'connect'", order=7, keep=keep),
        _arm("probes", kind="kind", name="name", ms=_ms("elapsed_ms"), failure="failure",
             http_status="http_status", close_code="close_code",
             detail="substr(outcome || ': ' || coalesce(detail, ''), 1, 300)", order=8, keep=keep),
        _arm("sessions", kind="'session'", name="name", ms=_ms("ms"), failure="failure",
             close_code=f"CASE WHEN {failed} THEN close_code END", detail="detail", order=9,
             keep=keep),
        _arm("http", kind="'http'", name="name", ms=_ms("ms"), failure="failure",
             http_status="http_status", nbytes="length", detail="detail", order=10, keep=keep),
    ]  # fmt: skip
    health = {"ts": '"at"', "user": "0", "subject": "NULL", "session": "NULL", "keep": keep}
    arms += [
        _arm("health", kind="'health'", name="'health:cpu'", ms=_ms("cpu_percent", 1),
             order=11, **health),
        _arm("health", kind="'health'", name="'health:lag'", ms=_ms("lag_ms"), order=12,
             **health),
        _arm("health", kind="'health'", name="'health:users'", ms="CAST(users AS DOUBLE)",
             where="users IS NOT NULL", order=13, **health),
    ]  # fmt: skip
    # The optional gauges of a tick (HealthTick.extra): memory and open sessions.
    for step, column in enumerate(("memory_kb", "sessions", "target_memory_kb", "target_sessions")):
        arms.append(
            _arm("health", kind="'health'", name=f"'health:{column}'",
                 ms=f"round(CAST({column} AS DOUBLE), 1)", where=f"{column} IS NOT NULL",
                 order=13.1 + step / 10, **health)
        )  # fmt: skip
    return arms


def long_view_sql(
    keep: Sequence[str] | None = None,
    events: Sequence[str] = (),
    arms: tuple[float, float] | None = None,
) -> str:
    """The long view over the table views (``arm`` says which rule made a row, ``sub`` which
    element of a turn's list, or for events its offset); ``keep``: just those columns,
    which spares DuckDB making the others for every measurement; ``events``: the events
    with a column of their own in the turns view (``tables.turn_events_of``); ``arms``:
    only the rules numbered from..to (a filter on ``arm`` does not spare DuckDB the others)."""
    picked = _arms(keep, events)
    if arms is not None:
        low, high = arms
        picked = [rule for rule in picked if low <= rule.order <= high]
    return "\nUNION ALL\n".join(picked)


def load_long(
    folder: str | Path, columns: Sequence[str] | None = None, *, run_id: str = ""
) -> pd.DataFrame:
    """The long view of a run folder's tables as a DataFrame (``columns``: just those),
    ordered by time as the CSV writer wrote them."""
    from wsload.run.tables import connect

    wanted = [c for c in COLUMNS if columns is None or c in columns]  # in file order
    picked = []
    for column in wanted:
        if column == "v":
            picked.append(f"{SCHEMA_VERSION} AS v")
        elif column == "run_id":
            picked.append("? AS run_id")
        else:
            picked.append(f'"{column}"')
    con = connect(Path(folder))
    try:
        params = [run_id] if "run_id" in wanted else []
        sql = f"SELECT {', '.join(picked)} FROM samples ORDER BY ts, turn, arm, sub"
        frame = con.execute(sql, params).df()
    finally:
        con.close()
    for column in TEXT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("string")
    for column in ("node", "kind", "name"):
        if column in frame:
            frame[column] = frame[column].astype(str)
    if "ok" in frame:
        frame["ok"] = frame["ok"].astype(bool)
    return frame
