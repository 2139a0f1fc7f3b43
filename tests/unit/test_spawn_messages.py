"""A worker reads Locust's default options once, not once per option of each spawn message.

Run in a subprocess: importing Locust monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from locust import argument_parser
    from wsload.locust.spawn_messages import cache_default_args

    cache_default_args()
    cache_default_args()  # idempotent
    first = argument_parser.default_args_dict()
    first["num_users"] = -1  # a caller changing its copy changes nobody else's
    second = argument_parser.default_args_dict()
    info = argument_parser.default_args_dict.cache_info()
    print(second["num_users"] != -1, "host" in second, info.misses, info.hits >= 1)
    """
)


def test_default_args_are_computed_once_and_handed_out_as_copies():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True", "1", "True"], done.stderr[-2000:]
