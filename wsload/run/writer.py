"""The results writer: one Arrow IPC stream per table while the run goes, Parquet after.

Each table (``wsload.run.columns``) is appended to ``<table>.<part>.arrows`` as Arrow
IPC stream messages, one record batch per write (the recorder writes once a second),
straight to the OS: a process killed at any moment leaves every batch before the last
whole, and the readers (``wsload.run.tables``) stop at the first incomplete one. A part
that reaches ``PART_ROWS`` rows, and every part when the run stops, is compacted into
``<table>.<part>.parquet`` (zstd) written beside it under a temporary name, renamed, and
only then is the stream deleted, so at every moment each part is readable from one of
the two files. A folder stays one run folder, with ``run.json`` beside the tables.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wsload.run.batch import Batch
from wsload.run.columns import (
    EVENT_PREFIX,
    TABLES,
    TableSpec,
    batches_of,
    event_columns,
    turns_spec,
)

MAP_COLUMN = "first_ms"
MAP_TYPE = pa.map_(pa.string(), pa.float32())

STREAM_SUFFIX = ".arrows"
PARQUET_SUFFIX = ".parquet"
PART_ROWS = 2_000_000  # rows of a table per part: bounds the streams' size on disk
ROW_GROUP_ROWS = 1_000_000
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3  # zstd 3: the size of 6 for about half its CPU


def string_columns(schema: pa.Schema) -> list[str]:
    """The Parquet paths of ``schema``'s string leaves (``spans_ms.list.element.name``).

    Only these are dictionary-encoded: a few names repeated (nodes, subjects, events,
    failures) shrink to small ids, while a dictionary of random timings costs most of the
    compaction's CPU and makes the file larger than plain values under zstd.
    """
    paths: list[str] = []

    def walk(path: str, kind: pa.DataType) -> None:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            paths.append(path)
        elif pa.types.is_map(kind):
            walk(f"{path}.key_value.key", kind.key_type)
            walk(f"{path}.key_value.value", kind.item_type)
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            walk(f"{path}.list.element", kind.value_type)
        elif pa.types.is_struct(kind):
            for field in kind:
                walk(f"{path}.{field.name}", field.type)

    for field in schema:
        walk(field.name, field.type)
    return paths


def part_path(folder: Path, table: str, part: int, suffix: str) -> Path:
    return folder / f"{table}.{part:05d}{suffix}"


class _Stream:
    """One open part of one table."""

    def __init__(self, folder: Path, spec: TableSpec, part: int) -> None:
        self.spec = spec
        self.part = part
        self.path = part_path(folder, spec.name, part, STREAM_SUFFIX)
        self.sink = pa.OSFile(str(self.path), "wb")  # unbuffered: each write reaches the OS
        self.writer = pa.ipc.new_stream(self.sink, spec.schema)
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self.writer.close()
        self.sink.close()


def compact(stream: Path) -> Path:
    """A closed (or cut) stream part as compressed Parquet; the stream is then deleted."""
    from wsload.run.tables import read_stream  # the reader that survives a cut

    target = stream.with_suffix(PARQUET_SUFFIX)
    temporary = target.with_name(target.name + ".tmp")
    table = read_stream(stream)
    pq.write_table(
        table,
        temporary,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=string_columns(table.schema),
        write_statistics=True,
    )
    os.replace(temporary, target)
    stream.unlink()
    return target


def align(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` in ``schema``: a worker of another version (or profile) may lack or add
    columns. An event column (``first_ms.<event>``) the schema lacks goes into the
    ``first_ms`` map, so no offset is lost whichever events each side knows."""
    if batch.schema.equals(schema):
        return batch
    if MAP_COLUMN in schema.names:
        batch = _fold_events(batch, set(event_columns(schema.names)))
    arrays = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, field.type))
        else:
            arrays.append(batch.column(index).cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _fold_events(batch: pa.RecordBatch, kept: set[str]) -> pa.RecordBatch:
    """``batch`` with its event columns not in ``kept`` moved into its ``first_ms`` map
    (entries in the order of their offsets, as the tracker saw them)."""
    moved = [e for e in event_columns(batch.schema.names) if e not in kept]
    if not moved:
        return batch
    columns = {e: batch.column(EVENT_PREFIX + e).to_pylist() for e in moved}
    index = batch.schema.get_field_index(MAP_COLUMN)
    maps = batch.column(index).to_pylist() if index >= 0 else [None] * batch.num_rows
    merged = []
    for row, entries in enumerate(maps):
        pairs = list(entries or ())
        pairs += [(e, values[row]) for e, values in columns.items() if values[row] is not None]
        pairs.sort(key=lambda pair: pair[1])
        merged.append(pairs or None)
    gone = {MAP_COLUMN, *(EVENT_PREFIX + e for e in moved)}
    names = [n for n in batch.schema.names if n not in gone]
    arrays = [batch.column(n) for n in names] + [pa.array(merged, MAP_TYPE)]
    return pa.RecordBatch.from_arrays(arrays, names=[*names, MAP_COLUMN])


class ArrowWriter:
    """Appends records to the run folder's tables; compacts them when it closes."""

    def __init__(
        self, folder: Path, run_id: str, *, part_rows: int = PART_ROWS, events: tuple = ()
    ) -> None:
        self.folder = folder
        # the run's turns table: a column per event of its profile (``turn_events``)
        self.specs = {**TABLES, "turns": turns_spec(events)}
        self.run_id = run_id
        self.path = folder  # what the summary names as where the results are
        self.part_rows = part_rows
        self._streams: dict[str, _Stream] = {}
        self._parts: dict[str, int] = {}
        self.closed = False
        self.rows = 0

    def write(self, batch: Batch) -> None:
        """A process's records (a ``Batch``)."""
        if self.closed or not batch:
            return
        self.write_batches(batches_of(batch.node, batch.items, self.specs["turns"]))

    def write_batches(self, batches: dict[str, pa.RecordBatch]) -> None:
        """Record batches by table name, as a worker ships them."""
        if self.closed:
            return
        for name, batch in batches.items():
            spec = self.specs.get(name)
            if spec is None or batch.num_rows == 0:
                continue
            stream = self._streams.get(name)
            if stream is None:
                part = self._parts.get(name, 0)
                stream = self._streams[name] = _Stream(self.folder, spec, part)
                self._parts[name] = part + 1
            stream.write(align(batch, spec.schema))
            self.rows += batch.num_rows
            if stream.rows >= self.part_rows:
                del self._streams[name]
                stream.close()
                compact(stream.path)

    def flush(self) -> None:
        """Nothing to do: every batch went to the OS as it was written."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.close()
            compact(stream.path)


def compact_folder(folder: Path) -> list[Path]:
    """Compact every stream part left in ``folder`` (a crashed run's): ``wsload compact``."""
    return [compact(path) for path in sorted(folder.glob(f"*{STREAM_SUFFIX}"))]
