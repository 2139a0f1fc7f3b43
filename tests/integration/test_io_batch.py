"""Batched reads: fewer wakes of the gevent loop, and times that stay the kernel's."""

from __future__ import annotations

import socket
import struct
import threading
import time

import gevent
import gevent.monkey
import gevent.socket
import pytest

from wsload.net.client import ClientOptions, connect
from wsload.net.io_batch import batch_io
from wsload.net.sockets import enable_kernel_timestamps, kernel_connect_ms, read_stamped
from wsload.protocol.carrier import place

MESSAGES = 120
SPACING_S = 0.001
STAMP = struct.Struct("d")  # the writer's perf_counter when it sent the message
_real_sleep = gevent.monkey.get_original("time", "sleep")


@pytest.fixture
def tcp_pair():
    """A connected loopback TCP pair of plain (kernel) sockets, and a gevent socket on the
    reading end."""
    listener = socket.create_server(("127.0.0.1", 0))
    writer = socket.create_connection(listener.getsockname())
    raw_reader, _ = listener.accept()
    listener.close()
    reader = gevent.socket.socket(fileno=raw_reader.detach())
    yield writer, reader
    writer.close()
    reader.close()


def _send_from_a_native_thread(writer: socket.socket) -> threading.Thread:
    """Messages stamped with their send time, from a thread the gevent loop does not run."""
    real_thread = gevent.monkey.get_original("threading", "Thread")

    def send() -> None:
        for _ in range(MESSAGES):
            writer.send(STAMP.pack(time.perf_counter()))
            _real_sleep(SPACING_S)

    thread = real_thread(target=send, daemon=True)
    thread.start()
    return thread


def _read_all(reader) -> tuple[int, list[tuple[float, float, float, float]]]:
    """Loop iterations used, and per read: the send times of its first and its last
    message, the kernel's arrival stamp (the last message's) and when this process read it."""
    assert enable_kernel_timestamps(reader)
    loop = gevent.get_hub().loop
    start = loop.iteration
    reads, got = [], b""
    reader.settimeout(10.0)
    while len(got) < MESSAGES * STAMP.size:
        data, stamped = read_stamped(reader, True)
        read_at = time.perf_counter()
        assert data, "the writer closed early"
        first = len(got) // STAMP.size * STAMP.size
        got += data
        last = len(got) // STAMP.size * STAMP.size - STAMP.size
        if last >= first:
            (first_sent,) = STAMP.unpack_from(got, first)
            (last_sent,) = STAMP.unpack_from(got, last)
            reads.append((first_sent, last_sent, stamped, read_at))
    return loop.iteration - start, reads


def test_a_batched_loop_wakes_once_for_many_arrivals_and_keeps_their_kernel_times(tcp_pair):
    writer, reader = tcp_pair
    assert batch_io(0.02)
    try:
        thread = _send_from_a_native_thread(writer)
        iterations, reads = _read_all(reader)
        thread.join(5.0)
    finally:
        batch_io(0.0)
    assert iterations < MESSAGES / 3, f"{iterations} loop iterations for {MESSAGES} arrivals"
    waited = sorted(read_at - first_sent for first_sent, _, _, read_at in reads)
    assert waited[len(waited) // 2] > 0.005, "reads were not held back: nothing was batched"
    # yet the kernel's stamp is when the last message of a read arrived, not when it was read
    errors = sorted(abs(stamped - last_sent) for _, last_sent, stamped, _ in reads)
    assert errors[len(errors) // 2] < 0.001, errors


def test_an_unbatched_loop_wakes_for_about_every_arrival(tcp_pair):
    writer, reader = tcp_pair
    thread = _send_from_a_native_thread(writer)
    iterations, _ = _read_all(reader)
    thread.join(5.0)
    assert iterations > MESSAGES / 2


def test_the_tcp_phase_is_the_kernels_syn_to_syn_ack_and_the_phases_sum_to_the_connect(
    target, profile, minter, tcp_pair
):
    writer, reader = tcp_pair
    options = ClientOptions(connect_timeout_s=2.0, handshake_timeout_s=2.0)
    placement = place(profile.auth, target.url, minter.mint("kernel-clock"))
    assert batch_io(0.05)  # each wake of the busy loop below comes up to 50 ms late
    try:
        thread = _send_from_a_native_thread(writer)
        busy = gevent.spawn(_read_all, reader)
        conns = [
            connect(
                target.url, profile, placement, expected_subject="kernel-clock", options=options
            )
            for _ in range(5)
        ]
        busy.join(10.0)
        thread.join(5.0)
    finally:
        batch_io(0.0)
    for conn in conns:
        t = conn.timings
        assert 0 < t.tcp_ms < 5.0  # loopback SYN to SYN-ACK: microseconds, not the late wake
        assert t.connect_ms == pytest.approx(t.dns_ms + t.tcp_ms + t.upgrade_ms, abs=1e-6)
        conn.close()


def test_a_retransmitted_syn_leaves_the_tcp_phase_to_the_callers_clock():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # two connections fill the accept queue; it drops the next SYNs
    queued = [socket.create_connection(listener.getsockname(), timeout=2) for _ in range(2)]
    accepted: list[socket.socket] = []

    def accept_later() -> None:
        _real_sleep(1.2)
        for _ in range(3):
            accepted.append(listener.accept()[0])

    thread = gevent.monkey.get_original("threading", "Thread")(target=accept_later, daemon=True)
    thread.start()
    late = socket.create_connection(listener.getsockname(), timeout=10)
    try:
        assert all(kernel_connect_ms(s) is not None for s in queued)
        assert kernel_connect_ms(late) is None  # its SYN went again: timed from the last copy
    finally:
        thread.join(5.0)
        for s in (*queued, late, *accepted, listener):
            s.close()
