"""Reading a run folder's tables: Parquet parts, and stream parts cut at any byte.

Every reader of results (summary, gate, report, ``load_run``, export) comes through here.
A part is read from its Parquet file when there is one (the writer renames it into place
before deleting the stream), else from its Arrow stream up to the last complete record
batch: a run killed mid-write, or a file cut anywhere, loads what was whole. DuckDB
queries the tables where they lie (``connect``); the long view of one row per
measurement, with the columns of the classic ``samples.csv``, is a SQL view over them
(``wsload.run.long_view``), so nothing needs to fit in memory but the answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from wsload.run.columns import TABLES
from wsload.run.writer import PARQUET_SUFFIX, STREAM_SUFFIX

LEGACY_SAMPLES = "samples.csv"
_PART = re.compile(r"^(?P<table>[a-z_]+)\.(?P<part>\d+)(?P<suffix>\.arrows|\.parquet)$")


def read_stream(path: Path, data: pa.Buffer | None = None) -> pa.Table:
    """The complete record batches of an Arrow stream file (or of ``data``, its bytes),
    however it ends."""
    spec = TABLES.get(path.name.split(".", 1)[0])
    empty = spec.schema.empty_table() if spec is not None else pa.table({})
    try:
        source = pa.memory_map(str(path)) if data is None else pa.BufferReader(data)
    except (OSError, pa.ArrowException):
        return empty
    try:
        reader = pa.ipc.open_stream(source)
    except (OSError, pa.ArrowException):
        return empty  # cut inside the schema: nothing was written yet
    batches = []
    while True:
        try:
            batch = reader.read_next_batch()
            batch.validate()
        except StopIteration:
            break
        except (OSError, pa.ArrowException):
            break  # the first incomplete batch: everything after it is lost, by design
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


def table_parts(folder: Path, table: str) -> tuple[list[Path], list[Path]]:
    """(Parquet parts, stream parts without a Parquet twin) of ``table``, in order."""
    parquet: dict[int, Path] = {}
    streams: dict[int, Path] = {}
    for path in folder.glob(f"{table}.*"):
        match = _PART.match(path.name)
        if match is None or match["table"] != table:
            continue
        part = int(match["part"])
        (parquet if match["suffix"] == PARQUET_SUFFIX else streams)[part] = path
    return (
        [parquet[p] for p in sorted(parquet)],
        [streams[p] for p in sorted(streams) if p not in parquet],
    )


def has_tables(folder: Path) -> bool:
    """Whether ``folder`` holds results tables (any part of any table)."""
    return any(
        _PART.match(p.name) and p.name.split(".", 1)[0] in TABLES
        for suffix in (STREAM_SUFFIX, PARQUET_SUFFIX)
        for p in folder.glob(f"*{suffix}")
    )


def is_run_folder(folder: Path) -> bool:
    """A folder a run wrote results into: tables, or a classic ``samples.csv``."""
    return folder.is_dir() and (has_tables(folder) or (folder / LEGACY_SAMPLES).is_file())


def has_streams(folder: Path) -> bool:
    """Stream parts left: the run is going on, or it stopped without compacting."""
    return any(folder.glob(f"*{STREAM_SUFFIX}"))


def read_table(folder: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """A whole table in memory (small runs, tests): every part, in order."""
    import pyarrow.parquet as pq

    spec = TABLES[table]
    parquet, streams = table_parts(folder, table)
    pieces = [pq.read_table(p, columns=columns) for p in parquet]
    for path in streams:
        piece = read_stream(path)
        pieces.append(piece.select(columns) if columns else piece)
    if not pieces:
        schema = spec.schema
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return pa.concat_tables(pieces, promote_options="permissive")


_DATABASE = None


def connect(folder: Path, *, memory_limit: str | None = None):  # -> duckdb.DuckDBPyConnection
    """A DuckDB connection with one view per table of ``folder`` (stream parts loaded,
    Parquet parts queried in place) and the long view ``samples``."""
    import duckdb

    from wsload.run.long_view import long_view_sql

    global _DATABASE
    if _DATABASE is None:  # a DuckDB database takes 0.1 s to open: one per process
        _DATABASE = duckdb.connect()
    con = _DATABASE.cursor()  # a connection of its own: its temporary views are its own
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    for name, spec in TABLES.items():
        parquet, streams = table_parts(folder, name)
        arms = []
        if parquet:
            files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parquet)
            arms.append(f"SELECT * FROM read_parquet([{files}], union_by_name = true)")
        pieces = [read_stream(p) for p in streams]
        if pieces or not parquet:  # parts of either turns layout (event columns or not)
            streamed = pa.concat_tables(
                [spec.schema.empty_table(), *pieces], promote_options="permissive"
            )
            con.register(f"_{name}_streamed", streamed)
            arms.append(f"SELECT * FROM _{name}_streamed")
        con.execute(f"CREATE TEMP VIEW {name} AS " + " UNION ALL BY NAME ".join(arms))
    con.execute(f"CREATE TEMP VIEW samples AS {long_view_sql(events=turn_events_of(con))}")
    return con


def turn_events_of(con) -> list[str]:
    """The events with a column of their own in the turns view of ``con`` (``connect``):
    what ``long_view_sql`` and ``digest_sql`` take as ``events``."""
    from wsload.run.columns import event_columns

    names = [row[0] for row in con.execute("DESCRIBE turns").fetchall()]
    return event_columns(names)


def require_run_folder(folder: Path) -> Path:
    """``folder`` if a run wrote results there, else ``ConfigError`` saying what to give."""
    from wsload.errors import ConfigError

    if not is_run_folder(folder):
        what = "does not exist" if not folder.exists() else "holds no results tables"
        raise ConfigError(
            f"{folder} is not a wsload run folder (it {what})",
            fix="give the folder a run wrote, e.g. results/<run-id>",
        )
    return folder
