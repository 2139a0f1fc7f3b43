"""Socket plumbing of the client: resolve, read with the kernel's arrival time, name errors.

Only what every socket exchange of wsload needs (a session's connection, a probe's raw
request, the preflight); the WebSocket logic is elsewhere (``wsload.protocol.session``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import socket
import ssl
import struct
import sys
import time
from typing import Any

from wsload import taxonomy
from wsload.protocol.upgrade import Endpoint

READ_SIZE = 65536


# Linux kernel receive timestamps (SO_TIMESTAMPNS): when the segment reached the socket,
# not when this process got round to reading it. Python does not name the constant.
SO_TIMESTAMPNS = 35
ANCILLARY_SIZE = socket.CMSG_SPACE(16)


def enable_kernel_timestamps(sock: Any) -> bool:
    """Ask the kernel to stamp arrivals on ``sock``; False where it cannot (TLS, not Linux)."""
    if not sys.platform.startswith("linux") or isinstance(sock, ssl.SSLSocket):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def arrival(ancillary: list[tuple[int, int, bytes]], now: float) -> float:
    """The kernel's arrival time of what was just read, on the ``perf_counter`` clock.

    The kernel stamps the wall clock; the offset between the two clocks is read right
    after the read, so only the conversion (well under a microsecond) adds error. When the
    kernel gave no stamp, or one that is not in the past, the read time stands.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            waited = time.time() - (sec + nsec * 1e-9)
            if 0.0 <= waited < 60.0:
                return now - waited
    return now


# Linux ``struct tcp_info``: eight one-byte fields, then 32-bit ones; ``tcpi_rtt`` (µs) is
# the 16th of those and ``tcpi_total_retrans`` the 24th.
_TCP_INFO = struct.Struct("=8B24I")
_RTT, _TOTAL_RETRANS = 8 + 15, 8 + 23


def kernel_connect_ms(sock: Any) -> float | None:
    """The TCP handshake as the kernel timed it: SYN sent to SYN-ACK received, in ms.

    Right after a connect the kernel's smoothed RTT is its one sample, taken from the SYN
    to its answer in softirq, so it holds nothing of how late this process woke to see the
    connect done (a busy or batching generator wakes milliseconds later). A retransmitted
    SYN is timed from its last copy, so then (and where there is no ``TCP_INFO``) None:
    the caller's own clock, which holds the retransmission wait, stands.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        info = _TCP_INFO.unpack_from(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))
    except (OSError, struct.error):
        return None
    if info[_TOTAL_RETRANS] or not info[_RTT]:
        return None
    return info[_RTT] / 1000.0


# errors of the generator's own machine: no free local port for this source address and
# destination (EADDRNOTAVAIL at connect), no file descriptor left in the process or the
# system, no socket buffer or kernel memory
LOCAL_PORTS = frozenset({errno.EADDRNOTAVAIL})
LOCAL_FILES = frozenset({errno.EMFILE, errno.ENFILE})
LOCAL_EXHAUSTION = LOCAL_PORTS | LOCAL_FILES | {errno.ENOBUFS, errno.ENOMEM}


def classify_socket_error(exc: BaseException, timeout_id: str) -> str:
    """The taxonomy id of a socket error; ``timeout_id`` for a timeout in this phase."""
    if isinstance(exc, socket.gaierror):
        return taxonomy.DNS
    if isinstance(exc, TimeoutError | socket.timeout):
        return timeout_id
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return taxonomy.TLS
    if isinstance(exc, ConnectionRefusedError):
        return taxonomy.REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return taxonomy.RESET
    if isinstance(exc, OSError) and exc.errno in LOCAL_EXHAUSTION:
        return taxonomy.LOCAL_EXHAUSTED
    if isinstance(exc, OSError) and exc.errno in (101, 113):  # unreachable, no route
        return taxonomy.UNREACHABLE
    return taxonomy.RESET


def resolve(endpoint: Endpoint) -> tuple[int, tuple[Any, ...]]:
    """Address family and address to connect to (literal IPs are not looked up)."""
    family = _literal_family(endpoint.host)
    if family is None:
        info = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
        family, _, _, _, address = info[0]
        return family, address
    return family, (endpoint.host, endpoint.port)


@functools.lru_cache(maxsize=64)
def _literal_family(host: str) -> int | None:
    """The address family of a literal IP, None for a name; parsed once per host (it was
    a twentieth of a connection's CPU)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def read_stamped(sock: Any, kernel: bool) -> tuple[bytes, float]:
    """One read and when it arrived (perf_counter seconds; the kernel's stamp if ``kernel``)."""
    if kernel:
        data, ancillary, _, _ = sock.recvmsg(READ_SIZE, ANCILLARY_SIZE)
        return data, arrival(ancillary, time.perf_counter())
    return sock.recv(READ_SIZE), time.perf_counter()


def describe(exc: OSError, endpoint: Endpoint) -> str:
    """A socket error in words, with where it happened."""
    where = f"{endpoint.host}:{endpoint.port}"
    if exc.errno in LOCAL_PORTS:
        return (
            f"no free local port to reach {where} (every ephemeral port of this source "
            "address is taken for that destination): spread over --source-ips"
        )
    if exc.errno in LOCAL_FILES:
        return (
            f"out of open files connecting to {where} (the process's RLIMIT_NOFILE): "
            "use more --processes"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens at {where} (connection refused)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} in time"
    return f"{type(exc).__name__}: {exc} ({where})"


def close_quietly(sock: Any) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
