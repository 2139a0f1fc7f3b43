"""The results tables' columns, derived from the typed fields of the record dataclasses.

One table per record type (turns, connections, probes, sessions, http, health). A table's
columns are its record's dataclass fields, walked in order: a field that is itself a
dataclass (``Who``, ``TurnResult``, ``ProbeResult``) contributes its own fields in its
place, so a field added at the end of a record (with a default) becomes a column with no
change here. Two columns start every table: ``node`` (the generator process) and
``node_users`` (the users it ran when the record was taken).

Types follow the annotations: ``bool``, ``int`` (int64), ``str`` (utf8), ``float`` (float32:
latencies, shares, counts of a measurement; a float named ``*_at`` or ``at`` is an epoch
time, float64), ``dict[str, float]`` (``map<utf8, float32>``: a turn's ``first_ms``, the
offset of the first event of each grammar name seen), ``list[float]`` (``list<float32>``:
the gaps), ``list[tuple[str, float]]`` (``list<struct<name, ms>>``: the tool spans); any
other annotation is kept as its text. Every column is nullable.

A turn's verdict and explanation are columns computed from the record (``e2e_ms``,
``failure``, ``detail``) in place of the tracker's raw lists (``failures``, ``names``,
``elapsed_ms``) which only the long view's ancestors needed.

A run knows its profile's events when it starts, so its turns table (``turns_spec``) holds
one float32 column per event name, ``first_ms.<event>`` (a dot never occurs in a record
field, so these names cannot clash with one): the offset of that event's first occurrence.
``first_ms`` itself stays, a map holding only the events outside that set (an event the
grammar does not name and the profile does not ignore), NULL on a turn that had none.
``TURNS`` (no event columns: every offset in the map) is the layout of older run folders
and of writers given no events; readers take both. Pure: pyarrow only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
import typing
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import pyarrow as pa

from wsload.net.probes import ProbeResult
from wsload.protocol.tracker import TurnResult
from wsload.run import records as _records
from wsload.run.records import (
    ConnectionAttempt,
    HealthTick,
    HttpRequest,
    ProbeRecord,
    Record,
    SessionEvent,
    TurnRecord,
    Who,
)

SPAN_TYPE = pa.struct([("name", pa.string()), ("ms", pa.float32())])
_NAMESPACE = {"TurnResult": TurnResult, "ProbeResult": ProbeResult, "Who": Who}


@dataclass(frozen=True)
class Column:
    """One column: its name, Arrow type, and how to read it off a record."""

    name: str
    type: pa.DataType
    get: Callable[[Any], Any]
    path: str = ""  # the dotted field path it was read from ("": computed)
    event: str = ""  # a turn's offset of this event (a ``first_ms.<event>`` column)


def _is_flat(kind: pa.DataType) -> bool:
    return not (pa.types.is_map(kind) or pa.types.is_list(kind) or pa.types.is_struct(kind))


@dataclass(frozen=True)
class TableSpec:
    """A results table: its name (and file stem), record class, and columns."""

    name: str
    record: type
    columns: tuple[Column, ...]

    @functools.cached_property
    def schema(self) -> pa.Schema:
        return pa.schema(
            [("node", pa.string()), ("node_users", pa.int32())]
            + [(c.name, c.type) for c in self.columns]
        )

    @functools.cached_property
    def _flat(self) -> list[tuple[int, str, Callable[[Any], Any]]]:
        """The columns read straight off a record's fields (or properties): (column, the
        record's part they are on, their getter on that part). Each is read off all the
        rows in one ``map`` (a C-level loop); a part (``result``, ``who``) is fetched once."""
        plan = []
        for i, c in enumerate(self.columns):
            if c.event or not _is_flat(c.type) or not isinstance(c.get, attrgetter):
                continue
            part, _, rest = _dotted(c.get).rpartition(".")
            plan.append((i, part, attrgetter(rest)))
        return plan

    @functools.cached_property
    def _others(self) -> int:
        """Where the ``first_ms`` map is among the columns."""
        return next(i for i, c in enumerate(self.columns) if c.path == _MAP_PATH)

    def table(self, node: str, records: list[Any], users: list[int]) -> pa.RecordBatch:
        """A record batch of ``records`` taken by ``node``, ``users`` the user count of
        each."""
        arrays: list[pa.Array | None] = [None] * len(self.columns)
        parts: dict[str, list[Any]] = {"": records}
        for i, part, getter in self._flat if records else ():
            on = parts.get(part)
            if on is None:
                on = parts[part] = list(map(attrgetter(part), records))
            arrays[i] = _flat_array(self.columns[i].type, list(map(getter, on)))
        events = [i for i, c in enumerate(self.columns) if c.event]
        if events:  # the offsets of the events seen, in one conversion of the dicts
            firsts = [r.result.first_ms for r in records]
            seen = set().union(*firsts)
            fields = [(self.columns[i].event, pa.float32()) for i in events]
            found = pa.array(firsts, pa.struct([f for f in fields if f[0] in seen]))
            for i in events:
                event = self.columns[i].event
                found_in = event in seen
                arrays[i] = found.field(event) if found_in else pa.nulls(len(records), pa.float32())
            if seen <= {self.columns[i].event for i in events}:  # nothing for the map
                others = self._others
                arrays[others] = pa.nulls(len(records), self.columns[others].type)
        failed: list[int] | None = None  # where the failed turns are, once looked for
        for i, column in enumerate(self.columns):
            if arrays[i] is not None:
                continue
            if column.get is _turn_failure or column.get is _turn_detail:
                if failed is None:
                    failed = _positions(list(map(bool, map(_FAILURES_OF, records))), True)
                arrays[i] = _failure_array(column.get, records, failed)
            else:
                arrays[i] = _array(column, records)
        nodes = pa.repeat(pa.scalar(node, pa.string()), len(records))
        head = [nodes, pa.array(users, pa.int32())]
        return pa.RecordBatch.from_arrays(head + arrays, schema=self.schema)


def _dotted(getter: attrgetter) -> str:
    """The dotted name an ``attrgetter`` of one name reads (from its repr)."""
    text = repr(getter)  # operator.attrgetter('result.ttfe_ms')
    return text[text.index("(") + 2 : -2]


def _all_none(values: list[Any]) -> bool:
    """Whether the records left a column empty (a C-level count, only when it may be)."""
    return not values or (values[0] is None and values.count(None) == len(values))


def _flat_array(kind: pa.DataType, values: list[Any]) -> pa.Array:
    if _all_none(values):
        return pa.nulls(len(values), kind)
    if kind == pa.string() and values and not isinstance(values[0], str | None):
        values = [None if v is None else str(v) for v in values]
    return pa.array(values, kind)


def _array(column: Column, records: list[Any]) -> pa.Array:
    """One column of ``records``: pyarrow converts lists (of floats, of name-ms pairs)
    fast; a map is flattened by hand into offsets, keys and values (its conversion of
    Python dicts costs more, and older pyarrow lacks it)."""
    get, kind = column.get, column.type
    values = list(map(get, records))
    if _all_none(values):
        return pa.nulls(len(values), kind)
    if pa.types.is_list(kind):
        return pa.array(values, kind)
    if pa.types.is_map(kind):
        offsets = [0]
        keys: list[str] = []
        items: list[float] = []
        for value in values:
            if value is not None:
                keys.extend(value)
                items.extend(value.values())
            offsets.append(len(keys))
        mask = pa.array([v is None for v in values]) if None in values else None
        return pa.MapArray.from_arrays(
            pa.array(offsets, pa.int32()),
            pa.array(keys, kind.key_type),
            pa.array(items, kind.item_type),
            mask=mask,
        )
    return _flat_array(kind, values)


def _strip_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def arrow_type(name: str, hint: Any) -> pa.DataType | None:
    """The Arrow type of a field's annotation; None for a nested dataclass."""
    hint = _strip_optional(hint)
    if dataclasses.is_dataclass(hint):
        return None
    if hint is bool:
        return pa.bool_()
    if hint is int:
        return pa.int64()
    if hint is float:
        return pa.float64() if name == "at" or name.endswith("_at") else pa.float32()
    if hint is str:
        return pa.string()
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict and args == (str, float):
        return pa.map_(pa.string(), pa.float32())
    if origin is list and args == (float,):
        return pa.list_(pa.float32())
    is_pairs = origin is list and args and typing.get_origin(args[0]) is tuple
    if is_pairs and typing.get_args(args[0]) == (str, float):
        return pa.list_(SPAN_TYPE)
    return pa.string()  # anything else: its text


def _pairs(value: Any) -> Any:
    return None if value is None else list(value)


def _walk(cls: type, path: str, skip: frozenset[str], seen: set[str]) -> list[Column]:
    hints = typing.get_type_hints(cls, localns=vars(_records) | _NAMESPACE)
    out: list[Column] = []
    for f in dataclasses.fields(cls):
        dotted = f"{path}{f.name}"
        if dotted in skip:
            continue
        hint = hints[f.name]
        kind = arrow_type(f.name, hint)
        if kind is None:
            out += _walk(_strip_optional(hint), dotted + ".", skip, seen)
            continue
        name = f.name if f.name not in seen else dotted.replace(".", "_")
        seen.add(name)
        out.append(Column(name, kind, attrgetter(dotted), dotted))
    return out


def derive(
    name: str,
    cls: type,
    *,
    skip: Sequence[str] = (),
    computed: Sequence[tuple[str, pa.DataType, Callable[[Any], Any]]] = (),
) -> TableSpec:
    """A table of ``cls``'s fields (nested dataclasses flattened), less ``skip`` (dotted
    paths), with ``computed`` columns after them."""
    seen = {"node", "node_users", *(c[0] for c in computed)}
    columns = _walk(cls, "", frozenset(skip), seen)
    columns += [Column(n, t, g) for n, t, g in computed]
    return TableSpec(name, cls, tuple(columns))


def _turn_failure(record: TurnRecord) -> str | None:
    result = record.result
    return result.failure if result.failures else None


def _turn_detail(record: TurnRecord) -> str:
    return record.detail if record.result.failures else ""


_FAILURES_OF = attrgetter("result.failures")


def _positions(values: list[Any], wanted: Any) -> list[int]:
    """Where ``wanted`` is among ``values``, found with C-level scans (it is rare)."""
    found: list[int] = []
    at = -1
    with contextlib.suppress(ValueError):
        while True:
            at = values.index(wanted, at + 1)
            found.append(at)
    return found


def _failure_array(get: Callable[[Any], Any], records: list[Any], failed: list[int]) -> pa.Array:
    """The failure or detail column: most turns have no failure, so those rows take a
    constant and only the ones at ``failed`` are read."""
    empty = None if get is _turn_failure else ""
    if not failed:
        return pa.repeat(pa.scalar(empty, pa.string()), len(records))
    values = [empty] * len(records)
    for at in failed:
        values[at] = get(records[at])
    return pa.array(values, pa.string())


TURNS = derive(
    "turns",
    TurnRecord,
    # the raw lists the record's verdict, detail and e2e are made of; the agent's run id
    skip=(
        "result.failures",
        "result.names",
        "result.e2e_ms",
        "result.elapsed_ms",
        "result.run_id",
        "result.stream",  # the record's own stream figures (ttft_ms, itl_ms, ...) hold it
    ),
    computed=(
        ("e2e_ms", pa.float32(), attrgetter("e2e_ms")),
        ("failure", pa.string(), _turn_failure),
        ("detail", pa.string(), _turn_detail),
    ),
)
CONNECTIONS = derive("connections", ConnectionAttempt)
PROBES = derive("probes", ProbeRecord)
SESSIONS = derive("sessions", SessionEvent)
HTTP = derive("http", HttpRequest)
HEALTH = derive("health", HealthTick)

EVENT_PREFIX = "first_ms."  # a turn's offset of one event: the column first_ms.<event>
_MAP_PATH = "result.first_ms"


def _first_of(event: str) -> Callable[[Any], Any]:
    def get(record: TurnRecord) -> float | None:
        return record.result.first_ms.get(event)

    return get


def _others_of(events: frozenset[str]) -> Callable[[Any], Any]:
    def get(record: TurnRecord) -> dict[str, float] | None:
        first = record.result.first_ms
        if first.keys() <= events:
            return None
        return {k: v for k, v in first.items() if k not in events}

    return get


_TURN_SPECS: dict[tuple[str, ...], TableSpec] = {}


def turns_spec(events: Sequence[str] = ()) -> TableSpec:
    """The turns table of a run whose profile names ``events``: a ``first_ms.<event>``
    column each, in place of the map, which keeps only the other events."""
    key = tuple(dict.fromkeys(events))
    spec = _TURN_SPECS.get(key)
    if spec is not None:
        return spec
    if not key:
        return TURNS
    known = frozenset(key)
    columns: list[Column] = []
    for column in TURNS.columns:
        if column.path == _MAP_PATH:
            columns += [Column(EVENT_PREFIX + e, pa.float32(), _first_of(e), event=e) for e in key]
            column = Column(column.name, column.type, _others_of(known), column.path)
        columns.append(column)
    spec = _TURN_SPECS[key] = TableSpec(TURNS.name, TURNS.record, tuple(columns))
    return spec


def event_columns(names: Sequence[str]) -> list[str]:
    """The events that have a column of their own among the column ``names``."""
    return [n[len(EVENT_PREFIX) :] for n in names if n.startswith(EVENT_PREFIX)]


def turn_events(profile: Any) -> tuple[str, ...]:
    """The event names a turn of ``profile`` can record an offset for: the grammar's, the
    terminal and error events, the spans' and the streamed answer's, less the ignored."""
    events = profile.events
    stream = getattr(profile, "stream", None)
    named = set(profile.grammar.names) | set(events.terminal) | set(events.error)
    named |= set(events.optional)
    named |= {name for span in events.spans for name in span}
    named |= set(getattr(stream, "events", ()) or ())
    return tuple(sorted(named - set(events.ignore)))


TABLES: dict[str, TableSpec] = {
    t.name: t for t in (TURNS, CONNECTIONS, PROBES, SESSIONS, HTTP, HEALTH)
}
SPEC_OF: dict[type, TableSpec] = {t.record: t for t in TABLES.values()}


def batches_of(
    node: str, items: Sequence[Record | int], turns: TableSpec | None = None
) -> dict[str, pa.RecordBatch]:
    """A process's records (with user-count marks, as a ``Batch`` holds them) as one
    record batch per table (``turns``: the run's turns table, default ``TURNS``)."""
    by_type = _by_kind(items)
    out = {}
    for kind, (records, counts) in by_type.items():
        spec = turns if turns is not None and kind is TurnRecord else SPEC_OF[kind]
        out[spec.name] = spec.table(node, records, counts)
    return out


def joined(pieces: Sequence[dict[str, pa.RecordBatch]]) -> dict[str, pa.RecordBatch]:
    """Pieces of record batches by table (``batches_of`` every few milliseconds) as one
    record batch per table, in order: what a second of them is written or shipped as."""
    by_name: dict[str, list[pa.RecordBatch]] = {}
    for piece in pieces:
        for name, batch in piece.items():
            by_name.setdefault(name, []).append(batch)
    out = {}
    for name, batches in by_name.items():
        if len(batches) == 1:
            out[name] = batches[0]
        else:
            out[name] = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
    return out


def _by_kind(items: Sequence[Any]) -> dict[type, tuple[list[Any], list[int]]]:
    """The records of ``items`` by kind, each with the user count it was taken under.

    A second's records are nearly all of one kind (turns), with a few others (a health
    tick, session events) and user-count marks between them: the few are found with
    C-level scans and walked one by one, and the many go over in slices between them.
    """
    kinds = list(map(type, items))
    tally = Counter(kinds)
    tally.pop(int, None)
    if not tally:
        return {}
    many = max(tally, key=tally.__getitem__)
    few: list[int] = []  # positions of marks and of the other kinds' records
    for kind in (int, *tally):
        if kind is not many:
            few += _positions(kinds, kind)
    few.sort()
    out: dict[type, tuple[list[Any], list[int]]] = {kind: ([], []) for kind in tally}
    records, counts = out[many]
    users = 0
    start = 0  # the first item after the last of the few
    for at in (*few, len(items)):
        records += items[start:at]
        counts += [users] * (at - start)
        start = at + 1
        if at == len(items):
            break
        item = items[at]
        if kinds[at] is int:
            users = item
        else:
            mine = out[kinds[at]]
            mine[0].append(item)
            mine[1].append(users)
    return out
