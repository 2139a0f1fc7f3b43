"""Old import path, kept only until every user module imports from its new home.

``Runtime``/``runtime_for``: ``wsload.locust.runtime``; ``run_folder``:
``wsload.locust.lifecycle``; ``REQUEST_TYPE``: ``wsload.locust.stats``.
"""

from wsload.locust.lifecycle import run_folder
from wsload.locust.runtime import Runtime, runtime_for
from wsload.locust.stats import REQUEST_TYPE

__all__ = ["REQUEST_TYPE", "Runtime", "run_folder", "runtime_for"]
