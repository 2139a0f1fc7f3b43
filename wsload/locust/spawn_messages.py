"""Workers read the master's spawn messages in microseconds, not seconds.

For every option in a spawn message Locust's worker asks ``default_args_dict()``, which
builds and runs a whole argument parser (about 18 ms here); with Locust's and wsload's
options together that is 150 parses, 2 to 7 s, per spawn message, and during a ramp the
master sends one a second. The worker's event loop is blocked all that time: its users do
not connect, its heartbeats stop (the master calls it missing and stops the run) and the
ramp crawls. The defaults never change within a process, so they are computed once.
"""

from __future__ import annotations

import functools

from locust import argument_parser


def cache_default_args() -> None:
    """Make ``locust.argument_parser.default_args_dict`` compute its answer once."""
    current = argument_parser.default_args_dict
    if getattr(current, "cache_info", None) is not None:
        return  # already cached
    cached = functools.cache(current)

    @functools.wraps(current)
    def default_args_dict() -> dict:  # type: ignore[type-arg]
        return dict(cached())  # a copy: a caller may change what it gets

    default_args_dict.cache_info = cached.cache_info  # type: ignore[attr-defined]
    argument_parser.default_args_dict = default_args_dict  # type: ignore[assignment]
