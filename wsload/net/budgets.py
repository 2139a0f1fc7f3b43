"""The local limits many sessions run into, checked before the ramp instead of mid-run.

Two limits of the machine that loads: the ephemeral ports of one source address towards
one destination (``ip_local_port_range``), and the open files of one process
(``RLIMIT_NOFILE``: every socket is a file). A run that needs more than either fails
thousands of connects half way up the ramp; ``check_budgets`` says so before any user starts,
with the values found and the fix. The soft file limit is raised to the hard one first
(``raise_file_limit``), since that needs no privilege.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from pathlib import Path

from wsload.errors import ConfigError

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_PORT_RANGE = (32768, 60999)
# Files a generator process holds besides its sessions (modules, logs, the results file,
# Locust's sockets, a probe's connection) and sessions being replaced while the old one
# closes: a margin under the limit.
FILES_RESERVE = 256
FILES_SHARE = 0.97
# Ports a source address keeps for connections in TIME_WAIT and for other programs.
PORTS_SHARE = 0.95
# connect() tries a source address's even ports first (odd ones are left for bind(); Linux
# 4.6 on), so once its connections to one destination take half its range, every connect
# walks all the even ones, checking each against the established table, before it finds
# an odd one, and the search lengthens well before that. On a 100,000-session ramp on 2
# cores, 6 addresses at 59% of their ports cost the generator 0.58 ms of CPU per session,
# 9 at 39% 0.50 ms, 12 at 30% 0.34 to 0.43 ms and 24 at 15% 0.37 ms.
PORTS_COMFORT = 0.3


def raise_file_limit() -> tuple[int, int]:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, hard
        soft = target
    return soft, hard


def port_range(path: Path = PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (both ends included)."""
    try:
        low, high = (int(v) for v in path.read_text().split()[:2])
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE
    return low, high


@dataclass(frozen=True)
class Budget:
    """What a run will hold and what the machine allows it."""

    users: int  # sessions held at the peak, all generator processes together
    processes: int  # generator processes sharing them (workers, or 1 standalone)
    source_ips: int  # local addresses connected from (0: the kernel's choice, one)
    destinations: int  # target addresses (address and port) the sessions spread over
    file_limit: int  # RLIMIT_NOFILE soft limit of a generator process (after raising)
    file_hard_limit: int
    ports: tuple[int, int]  # ip_local_port_range

    @property
    def port_count(self) -> int:
        return self.ports[1] - self.ports[0] + 1

    @property
    def per_process(self) -> int:
        return math.ceil(self.users / max(1, self.processes))

    @property
    def per_source(self) -> int:
        """Sessions one source address holds towards one destination."""
        return math.ceil(self.users / max(1, self.source_ips) / max(1, self.destinations))

    @property
    def files_usable(self) -> int:
        return int(self.file_limit * FILES_SHARE) - FILES_RESERVE

    @property
    def ports_usable(self) -> int:
        return int(self.port_count * PORTS_SHARE)

    def processes_needed(self) -> int:
        return math.ceil(self.users / max(1, self.files_usable))

    def sources_needed(self, share: float = PORTS_SHARE) -> int:
        ports = int(self.port_count * share)
        return math.ceil(self.users / max(1, self.destinations) / max(1, ports))


def _source_example(need: int, loopback: bool) -> tuple[str, str]:
    if loopback:
        return f"--source-ips 127.0.0.2-127.0.0.{1 + need}", "every 127.0.0.0/8 address works"
    return (
        f"--source-ips with {need} addresses of this machine",
        "add secondary addresses to the NIC (ip addr add IP/PREFIX dev DEV)",
    )


def port_search_advice(budget: Budget, *, loopback: bool) -> str | None:
    """A warning when the ports fit but fill far enough to slow every connect, else None."""
    b = budget
    if b.per_source <= b.port_count * PORTS_COMFORT or b.per_source > b.ports_usable:
        return None
    need = b.sources_needed(PORTS_COMFORT)
    example, how = _source_example(need, loopback)
    share = b.per_source / b.port_count
    return (
        f"{b.per_source:,} connections per source address and destination take {share:.0%} "
        f"of its {b.port_count:,} ephemeral ports: the kernel's search for a free port on "
        f"each connect lengthens as they fill (it tries the even ones first, and past half "
        f"walks them all), and can cost the generator as much CPU as the rest of opening a "
        f"session; {example} ({how}) keeps each under {PORTS_COMFORT:.0%}"
    )


def check_budgets(budget: Budget, *, loopback: bool, embedded_target: bool) -> None:
    """``ConfigError`` naming the first limit ``budget`` exceeds, the values and the fix."""
    b = budget
    if b.per_process > b.files_usable:
        need = b.processes_needed()
        raise ConfigError(
            f"{b.users:,} users over {b.processes} generator process(es) are {b.per_process:,} "
            f"open connections per process, but a process may open {b.file_limit:,} files "
            f"(RLIMIT_NOFILE soft {b.file_limit:,}, hard {b.file_hard_limit:,}; about "
            f"{b.files_usable:,} usable for sessions)",
            fix=f"run --processes {need} (or more), or raise the hard limit (ulimit -Hn as "
            "root, LimitNOFILE= in a systemd unit, nofile in /etc/security/limits.conf); "
            "--no-budget-check starts anyway",
        )
    if b.per_source > b.ports_usable:
        need = b.sources_needed()
        sources = f"{b.source_ips} source address(es)" if b.source_ips else "one source address"
        example, how = _source_example(need, loopback)
        target = " or give the target more listening ports" if not embedded_target else ""
        raise ConfigError(
            f"{b.users:,} users from {sources} to {b.destinations} destination(s) are "
            f"{b.per_source:,} connections per source address and destination, but the kernel "
            f"has {b.port_count:,} ephemeral ports for each (ip_local_port_range "
            f"{b.ports[0]}-{b.ports[1]}; about {b.ports_usable:,} usable)",
            fix=f"{example} ({how}){target}, or widen net.ipv4.ip_local_port_range; "
            "--no-budget-check starts anyway",
        )


def target_budget(sessions: int, workers: int, file_limit: int) -> None:
    """``ConfigError`` when the embedded reference target cannot hold ``sessions``: each of
    its ``workers`` processes holds its share within ``file_limit`` open files."""
    usable = int(file_limit * FILES_SHARE) - FILES_RESERVE
    # the kernel spreads connections over SO_REUSEPORT workers by hash, not exactly evenly
    per_worker = math.ceil(sessions / max(1, workers) * 1.03)
    if per_worker > usable:
        need = math.ceil(sessions * 1.03 / max(1, usable))
        raise ConfigError(
            f"the embedded reference target has {workers} worker process(es) for {sessions:,} "
            f"sessions, about {per_worker:,} each, but a process may open {file_limit:,} files "
            f"(about {usable:,} usable for sessions)",
            fix=f'pass --target-args "--workers {need}" (or more)',
        )
