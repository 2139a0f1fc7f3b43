"""Before the ramp: raise the open-file limit, and refuse a run the machine cannot hold.

Every generator process raises its soft ``RLIMIT_NOFILE`` to the hard limit at start. The
master (or a standalone process) then compares the users the run will hold with the
ephemeral ports per source address and destination and with each process's file limit,
and with the embedded target's processes when it started one, and stops with one message
naming the limit, the values found and the fix (``wsload.net.budgets``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from locust.env import Environment
from locust.runners import MasterRunner

from wsload.config.options import RunOptions, websocket_url
from wsload.locust.process import PROCESS
from wsload.net.budgets import (
    Budget,
    check_budgets,
    port_range,
    port_search_advice,
    raise_file_limit,
    target_budget,
)
from wsload.net.source_ips import check_bindable
from wsload.protocol.upgrade import parse_ws_url

log = logging.getLogger("wsload")


def raise_limits() -> tuple[int, int]:
    """This process's file limit raised as far as it may go; (soft, hard)."""
    soft, hard = raise_file_limit()
    log.debug("RLIMIT_NOFILE soft %d hard %d", soft, hard)
    return soft, hard


def planned_sessions(environment: Environment, options: RunOptions) -> int:
    """The sessions the run will hold at its peak, when known before it starts (-u), else
    0: a user holds one, ``ConnectionUser`` ``--sessions-per-user``."""
    parsed = environment.parsed_options
    users = int(getattr(parsed, "num_users", 0) or 0)
    shape = environment.shape_class
    if shape is not None:
        users = max(users, int(getattr(shape, "max_users", 0) or 0))
    if any(c.__name__ == "ConnectionUser" for c in environment.user_classes):
        users *= options.sessions_per_user
    return users


def generator_processes(environment: Environment) -> int:
    """Processes that run users: the workers a master expects, else this one."""
    if isinstance(environment.runner, MasterRunner):
        return max(1, int(getattr(environment.parsed_options, "expect_workers", 1) or 1))
    return 1


def check_local_budgets(environment: Environment, options: RunOptions) -> None:
    """``ConfigError`` when the run exceeds a local limit (unless ``--no-budget-check``)."""
    soft, hard = raise_limits()
    endpoint = parse_ws_url(websocket_url(environment.host, options.profile))
    host = endpoint.host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    family = socket.AF_INET6 if address is not None and address.version == 6 else socket.AF_INET
    if options.source_ips:
        check_bindable(options.source_ips, family)
    users = planned_sessions(environment, options)
    if not options.budget_check or users <= 0:
        return
    budget = Budget(
        users=users,
        processes=generator_processes(environment),
        source_ips=len(options.source_ips),
        destinations=1,
        file_limit=soft,
        file_hard_limit=hard,
        ports=port_range(),
    )
    embedded = PROCESS.target is not None
    loopback = address is not None and address.is_loopback
    check_budgets(budget, loopback=loopback, embedded_target=embedded)
    advice = port_search_advice(budget, loopback=loopback)
    if advice is not None:
        log.warning(advice)
    if embedded:
        target_budget(users, PROCESS.target.workers, hard)
