"""Local source addresses: ``--source-ips`` parsed, shared out between workers, bound.

Every connection from one local address to one destination (address and port) draws on the
same ephemeral ports (``ip_local_port_range``: 28,232 on a default Linux), so one address
holds at most that many sessions to one server. Connecting from several local addresses
multiplies it. Each socket is bound to its address with ``IP_BIND_ADDRESS_NO_PORT``: the
address is fixed at bind, the port is only chosen at connect, per destination, so the port
space is not exhausted by ``bind`` itself (which would reserve a port for every
destination at once).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import socket
from collections.abc import Iterator, Sequence

from wsload.errors import ConfigError

# Linux: bind the address now, pick the port at connect (per destination). Python does not
# name the constant everywhere.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MAX_SOURCE_IPS = 65536

_FIX = (
    "give --source-ips as a list (127.0.0.2,127.0.0.3), a range (127.0.0.2-127.0.0.40) or a "
    "CIDR (127.0.0.0/28), of addresses this machine has"
)


def parse_source_ips(text: str | None) -> tuple[str, ...]:
    """The addresses ``text`` names, in order, without repeats; () for none.

    Items are separated by commas or spaces; each is an address, a range ``A-B`` (both ends
    included) or a CIDR (its host addresses). All of one family.
    """
    if not text or not text.strip():
        return ()
    found: dict[str, None] = {}
    for item in text.replace(",", " ").split():
        for ip in _expand(item):
            found[str(ip)] = None
            if len(found) > MAX_SOURCE_IPS:
                raise ConfigError(
                    f"--source-ips names more than {MAX_SOURCE_IPS:,} addresses", fix=_FIX
                )
    versions = {ipaddress.ip_address(ip).version for ip in found}
    if len(versions) > 1:
        raise ConfigError("--source-ips mixes IPv4 and IPv6 addresses", fix=_FIX)
    return tuple(found)


def _expand(item: str) -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        if "/" in item:
            network = ipaddress.ip_network(item, strict=False)
            if network.num_addresses > MAX_SOURCE_IPS * 4:
                raise ConfigError(f"--source-ips {item!r} is too large a network", fix=_FIX)
            yield from network.hosts() if network.num_addresses > 1 else [network.network_address]
            return
        if "-" in item:
            low_text, high_text = item.split("-", 1)
            low = ipaddress.ip_address(low_text)
            high = ipaddress.ip_address(high_text)
            if low.version != high.version or int(high) < int(low):
                raise ConfigError(
                    f"--source-ips range {item!r} does not go from a lower to a higher address",
                    fix=_FIX,
                )
            if int(high) - int(low) >= MAX_SOURCE_IPS:
                raise ConfigError(f"--source-ips range {item!r} is too long", fix=_FIX)
            for value in range(int(low), int(high) + 1):
                yield (
                    ipaddress.ip_address(value)
                    if low.version == 4
                    else ipaddress.IPv6Address(value)
                )
            return
        yield ipaddress.ip_address(item)
    except ValueError:
        raise ConfigError(
            f"--source-ips: {item!r} is not an address, range or CIDR", fix=_FIX
        ) from None


def worker_share(ips: Sequence[str], worker: int, workers: int) -> tuple[str, ...]:
    """The addresses generator process ``worker`` (of ``workers``) connects from.

    With at least as many addresses as processes each process gets its own (every
    ``workers``-th one), so no two processes draw on one address's ports; with fewer, every
    process uses all of them (the kernel shares the ports out).
    """
    if workers <= 1 or len(ips) < workers:
        return tuple(ips)
    return tuple(ips[worker % workers :: workers])


class SourcePicker:
    """Hands out a process's source addresses round robin, one per new connection."""

    __slots__ = ("_cycle", "family", "ips")

    def __init__(self, ips: Sequence[str]) -> None:
        if not ips:
            raise ValueError("no source addresses")
        self.ips = tuple(ips)
        self.family = socket.AF_INET6 if ":" in self.ips[0] else socket.AF_INET
        self._cycle = itertools.cycle(self.ips)

    def bind(self, sock: socket.socket) -> str:
        """Bind ``sock`` to the next address, port left to ``connect``; the address."""
        ip = next(self._cycle)
        bind_source(sock, ip)
        return ip


def bind_source(sock: socket.socket, ip: str) -> None:
    """Bind to ``ip`` without taking a port yet (``IP_BIND_ADDRESS_NO_PORT`` where known)."""
    with contextlib.suppress(OSError):  # not Linux: bind picks the port now, as always
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((ip, 0))


def check_bindable(ips: Sequence[str], family: int) -> None:
    """``ConfigError`` for an address of another family than the target's, or one this
    machine does not have (bind fails)."""
    for ip in ips:
        ip_family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        if ip_family != family:
            raise ConfigError(
                f"--source-ips {ip} is not of the target's address family",
                fix="give IPv4 source addresses for an IPv4 target and IPv6 ones for IPv6",
            )
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                bind_source(sock, ip)
            except OSError as exc:
                raise ConfigError(
                    f"--source-ips {ip}: this machine cannot connect from it ({exc.strerror})",
                    fix="add the address to a network interface (ip addr add IP/PREFIX dev "
                    "DEV; every 127.0.0.0/8 address works on loopback), or leave it out",
                ) from None
