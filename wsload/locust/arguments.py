"""wsload's options on Locust's parser: command line, environment, ``locust.conf``, and
the web UI form for those it may edit (``spec.web_ui``), all from the one declaration table."""

from __future__ import annotations

from typing import Any

from wsload.config.options import OPTION_SPECS
from wsload.config.spec import add_locust_arguments


def add_options(parser: Any) -> None:
    """Register every option of the table (run, gate, capacity, SLO) on Locust's parser."""
    add_locust_arguments(parser, OPTION_SPECS)
