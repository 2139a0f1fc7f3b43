"""A worker reads Locust's default options once, not once per option of each spawn message."""

from __future__ import annotations

from locust import argument_parser

from wsload.locust.spawn_messages import cache_default_args


def test_default_args_are_computed_once_and_handed_out_as_copies():
    cache_default_args()
    cache_default_args()  # idempotent
    first = argument_parser.default_args_dict()
    first["num_users"] = -1  # a caller changing its copy changes nobody else's
    second = argument_parser.default_args_dict()
    assert second["num_users"] != -1 and "host" in second
    info = argument_parser.default_args_dict.cache_info()
    assert info.misses == 1 and info.hits >= 1
