"""Every stats name a run with a given profile can produce, so gates are checked before load.

A threshold on a name no run can produce (``e2e p95 < 5s`` for ``turn:e2e``) would only be
found after the whole run, as "not measured". Names in wsload's own namespaces (``turn:``,
``session:``, ``probe:`` ...) and bare words are checked against this list at start;
names with a ``/`` are left alone, since a locustfile of the user's may add its own
requests (``GET /api/health``) next to wsload's users.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from wsload.config.profile import Profile
from wsload.errors import ConfigError
from wsload.gate.config import GateConfig
from wsload.gate.threshold_model import GOODPUT, GROUPS, VALUE_UNITS
from wsload.net.probes import AUTH_PROBES, CONFORMANCE_PROBES, stats_name
from wsload.protocol.tracker import span_name
from wsload.run.records import STREAM_NAMES

# connections.py's gauges: memory and sessions held, the generator's and the target's
HOLD_GAUGES = (
    "health:memory_kb",
    "health:sessions",
    "health:target_memory_kb",
    "health:target_sessions",
)

CONNECTION_NAMES = ("connect", "tls", "auth", "ping")
TURN_NAMES = ("turn:ttfe", "turn:gap", "turn:e2e", "turn:e2e_intended")
SESSION_NAMES = (
    "session:refresh",
    "session:reconnect",
    "session:disconnect",
    "session:isolation",
    "session:frame",
    "session:error",
    "session:duplicate",
)
HTTP_NAMES = ("http:login", "http:refresh", "http:ticket", "http:token")
HEALTH_NAMES = ("health:cpu", "health:lag", "health:users", *HOLD_GAUGES)
NAMESPACES = ("turn:", "session:", "probe:", "conformance:", "health:", "http:")


def stats_names(profile: Profile) -> frozenset[str]:
    """The stats names a run with ``profile`` can produce (one per event and span)."""
    events = profile.events
    turn_events = {*profile.grammar.names, *events.optional, *events.error}
    spans = {span_name(s[0], s[1]) for s in events.spans if len(s) == 2}
    return frozenset(
        {
            *CONNECTION_NAMES,
            *TURN_NAMES,
            *SESSION_NAMES,
            *HTTP_NAMES,
            *HEALTH_NAMES,
            *(f"turn:{name}" for name in turn_events | spans),
            *(stats_name(p) for p in (*AUTH_PROBES, *CONFORMANCE_PROBES)),
            *(STREAM_NAMES if profile.stream.events else ()),
        }
    )


def is_checked(name: str) -> bool:
    """Whether a name must be one of wsload's: its namespaces and bare words, not paths."""
    return name.startswith(NAMESPACES) or ("/" not in name and ":" not in name)


def check_gate_names(config: GateConfig, profile: Profile) -> None:
    """``ConfigError`` naming the first threshold or goodput limit no run can measure."""
    known = stats_names(profile)
    for threshold in config.thresholds:
        scope = threshold.metric.scope
        if scope is None or scope in GROUPS or scope == GOODPUT:
            continue
        _check(scope, known, profile, f"threshold '{threshold}' ({threshold.origin})")
    for name in config.goodput_limits_ms:
        _check(name, known, profile, f"goodput limit {name!r}")
        if name in VALUE_UNITS:
            raise ConfigError(
                f"goodput limit {name!r}: {name} is not a time, so it cannot be a turn's limit",
                fix="limit times (turn:ttft, turn:tpot, turn:itl, turn:e2e); gate "
                f"{name} with a threshold instead, e.g. '{name} p50 >= ...'",
            )


def _check(name: str, known: Iterable[str], profile: Profile, what: str) -> None:
    known = sorted(known)
    if name in known or not is_checked(name):
        return
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    if not close:  # "e2e" for "turn:e2e": compare with the part after the namespace
        tails = {k.partition(":")[2]: k for k in known if ":" in k}
        close = [tails[t] for t in difflib.get_close_matches(name, list(tails), n=1)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(n for n in known if not n.startswith(("probe:", "conformance:", "health:")))
    raise ConfigError(
        f"{what} names {name!r}, which no run with profile {profile.name!r} produces{hint}",
        fix=f"use a stats name of this profile: {names}, probe:<name> or conformance:<name>",
    )
