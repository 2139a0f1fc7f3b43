"""What decoding a Socket.IO event costs on the hot path, against plain JSON frames.

    .venv/bin/python benchmarks/socketio_codec.py            # about 20 seconds
    .venv/bin/python benchmarks/socketio_codec.py --rounds 5 --events 50000

Every received event of a Socket.IO session goes through ``SocketIOCodec.decode_text``.
Decoders timed on the same event (an agent event of about 200 bytes, ``42["name",{...}]``),
in interleaved rounds (A, B, C, D, A, B, ...) because the machines are noisy:

* ``json``: the baseline, ``JsonTextCodec.decode_text`` on the same event as a JSON frame;
* ``socketio``: wsload's codec as shipped: an event of its namespace (``42[`` or
  ``42/ns,[``) is one ``orjson.loads`` of the array; every other packet (open, ping,
  CONNECT, errors, acks, binary, other namespaces) goes through the libraries' parsers;
* ``sio_packet``: ``socketio.packet.Packet`` (python-socketio's parser) with orjson's
  ``loads`` as its json, for the event too;
* ``libraries``: the libraries as they come: ``engineio.packet.Packet`` then
  ``socketio.packet.Packet``, both with the standard library's json.

Prints microseconds per event (the median of the rounds) and each one's ratio to ``json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import engineio.packet as eio
import orjson
import socketio.packet as sio

from wsload.config.profile import load_profile
from wsload.protocol.codec import JsonTextCodec
from wsload.protocol.socketio import SocketIOCodec, settings_for

EVENT = (
    '{"type":"agent_thinking","timestamp":1718000000.111,"user_id":"wsload-0001",'
    '"thread_id":"thread-1","run_id":"run-1","data":{"agent_name":"wsload-agent",'
    '"thought":"step 1 of 2","seq":1}}'
)
PACKET = '42["agent_thinking",' + EVENT + "]"


def decoders():
    profile = load_profile("default")
    json_codec = JsonTextCodec("type")
    sio_codec = SocketIOCodec(settings_for(profile))

    def json_path() -> object:
        return json_codec.decode_text(EVENT)

    def socketio_path() -> object:
        return sio_codec.decode_text(PACKET)

    def libraries_path() -> object:
        engine = eio.Packet(encoded_packet=PACKET)
        packet = sio.Packet(encoded_packet=engine.data)
        name, data = packet.data[0], packet.data[1]
        return name, {**data, "type": name}

    class _Orjson:
        loads = staticmethod(orjson.loads)

    class _Packet(sio.Packet):
        json = _Orjson

    def sio_packet_path() -> object:
        packet = _Packet(encoded_packet=PACKET[1:])
        name, data = packet.data[0], packet.data[1]
        return name, {**data, "type": name}

    return {
        "json": json_path,
        "socketio": socketio_path,
        "sio_packet": sio_packet_path,
        "libraries": libraries_path,
    }


def time_one(fn, events: int) -> float:
    start = time.perf_counter()
    for _ in range(events):
        fn()
    return (time.perf_counter() - start) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    paths = decoders()
    for fn in paths.values():  # the same answer from each, and warm
        name, event = fn()
        assert name == "agent_thinking" and event["run_id"] == "run-1"
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            times[name].append(time_one(fn, args.events))
    base = statistics.median(times["json"])
    for name, values in times.items():
        us = statistics.median(values)
        print(f"{name:10s} {us:6.2f} us/event  x{us / base:4.2f} of json")


if __name__ == "__main__":
    main()
