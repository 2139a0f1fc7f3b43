"""Records on the wire: a worker ships its batches to the master as Arrow columns.

Locust's messages carry msgpack. A worker turns a second of its records into one record
batch per results table (``wsload.run.columns``, on its own CPU) and ships each as the
bytes of an Arrow IPC stream; the master hands those batches to its writer as they came,
without a row of Python work per record. Only when the master has listeners (the web UI,
an abort watch) does it turn the columns back into records for them (``records_of``).
Pure: no Locust, no sockets.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

import pyarrow as pa

from wsload.run.batch import Batch
from wsload.run.columns import (
    _NAMESPACE,
    EVENT_PREFIX,
    SPEC_OF,
    TABLES,
    TableSpec,
    batches_of,
    event_columns,
)
from wsload.run.records import Record

__all__ = ["decode", "encode", "encode_tables", "failed_only", "records_of"]
# lz4 halves a second of turns for a few percent of the worker's encoding time
_SHIP_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


def encode(batch: Batch, turns: TableSpec | None = None) -> dict[str, Any]:
    """A worker's message: the node, and each table's record batch as IPC stream bytes
    (``turns``: the run's turns table, with its event columns)."""
    return encode_tables(batch.node, batches_of(batch.node, batch.items, turns))


def encode_tables(node: str, batches: dict[str, pa.RecordBatch]) -> dict[str, Any]:
    """A worker's message of record batches by table (``encode`` of columns made already)."""
    tables = {}
    for name, records in batches.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, records.schema, options=_SHIP_OPTIONS) as writer:
            writer.write_batch(records)
        tables[name] = sink.getvalue().to_pybytes()
    return {"node": node, "tables": tables}


def decode(message: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    """The master's side: the record batches of a worker's message, by table."""
    out = {}
    for name, data in (message.get("tables") or {}).items():
        if name not in TABLES:
            continue
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        out[name] = table.combine_chunks().to_batches()[0] if table.num_rows else None
    return {name: batch for name, batch in out.items() if batch is not None}


def records_of(batches: dict[str, pa.RecordBatch]) -> list[Record]:
    """The records the batches were made of, as the listeners take them (ordered by
    start time across tables)."""
    out: list[Any] = []
    for name, batch in batches.items():
        spec = TABLES[name]
        events = event_columns(batch.schema.names)
        for row in batch.to_pylist():
            if events:
                _gather_events(row, events)
            out.append(_build(spec, row))
    out.sort(key=lambda r: r.at if type(r) is SPEC_OF_HEALTH else r.started_at)
    return out


SPEC_OF_HEALTH = TABLES["health"].record


def failed_only(batches: dict[str, pa.RecordBatch]) -> dict[str, pa.RecordBatch]:
    """The rows of ``batches`` that failed (tables without failures left out), filtered in
    Arrow: a listener that looks at failures only then costs the master next to nothing
    for the successful rows, which are nearly all of them."""
    import pyarrow.compute as pc

    out = {}
    for name, batch in batches.items():
        if "failure" not in batch.schema.names:
            continue
        failed = batch.filter(pc.is_valid(batch.column("failure")))
        if failed.num_rows:
            out[name] = failed
    return out


def _gather_events(row: dict[str, Any], events: list[str]) -> None:
    """A turn row's event columns and its map as the one ``first_ms`` map, in the order
    of the offsets (the order the tracker saw the events in)."""
    pairs = list(row.get("first_ms") or ())
    for event in events:
        value = row.pop(EVENT_PREFIX + event)
        if value is not None:
            pairs.append((event, value))
    pairs.sort(key=lambda pair: pair[1])
    row["first_ms"] = pairs


def _build(spec: TableSpec, row: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for column in spec.columns:
        value = row.get(column.name)
        if value is not None and pa.types.is_map(column.type):
            value = dict(value)
        elif value is not None and _is_span_list(column.type):
            value = [(v["name"], v["ms"]) for v in value]
        values[column.path or column.name] = value
    return _make(spec.record, "", values)


def _is_span_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) and pa.types.is_struct(kind.value_type)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A record class's field types, resolved once (per record, it was most of a master's
    CPU in a connection ramp)."""
    return typing.get_type_hints(cls, localns=_NAMESPACE | {c.__name__: c for c in SPEC_OF})


def _make(cls: type, prefix: str, values: dict[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        dotted = prefix + field.name
        hint = hints[field.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if dotted in values:
            kwargs[field.name] = values[dotted]
        elif prefix and field.name in _FILLS:
            kwargs[field.name] = _FILLS[field.name](values)
        elif dataclasses.is_dataclass(inner[0]):
            kwargs[field.name] = _make(inner[0], dotted + ".", values)
        elif field.default is not dataclasses.MISSING:
            kwargs[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            kwargs[field.name] = field.default_factory()
        else:
            kwargs[field.name] = None
    return cls(**kwargs)


# A turn's tracker fields the table keeps as computed columns, back from those.
_FILLS = {
    "failures": lambda v: (
        [(v.get("failure"), v.get("detail") or "")] if v.get("failure") or v.get("detail") else []
    ),
    "names": lambda v: [],
    "e2e_ms": lambda v: v.get("e2e_ms"),
    "elapsed_ms": lambda v: v.get("e2e_ms"),
    "run_id": lambda v: None,
    "stream": lambda v: None,
}
