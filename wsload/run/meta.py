"""``run.json`` of a run folder, and whether the run stopped cleanly, without pandas.

A run writes ``run.json`` as it starts with ``"stopped": null`` and rewrites it with the
stop time when it ends cleanly. A run killed or crashed keeps the null, and its samples
end wherever the last flush left them, so a crashed run can pass for a short clean one.
The summary, the gate and the report all say so with the one sentence made here; this
module stays stdlib-only so the Locust process and the summary do not load pandas.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from wsload.run.recorder import RUN_FILE

__all__ = ["TLS_INSECURE_NOTICE", "crash_notice", "read_run_meta"]
TLS_INSECURE_NOTICE = (
    "--tls-insecure: the server's TLS certificate and host name were NOT verified; "
    "this run proves nothing about who answered"
)


def read_run_meta(folder: str | Path) -> dict[str, Any]:
    """``run.json`` of a run folder, or ``{}`` when it is missing, torn or not an object."""
    try:
        meta = json.loads((Path(folder) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def crash_notice(meta: dict, last_end_epoch: float | None) -> str | None:
    """The warning for a run that did not stop cleanly, else None.

    ``meta`` is ``run.json``; ``last_end_epoch`` the end of the last sample (its ``ts``
    plus its ``ms``), the best estimate of when the run ended. None when ``stopped`` is a
    number (a clean stop), and when ``run.json`` has no ``stopped`` key at all (missing,
    torn, or not written by a run): that says nothing either way.
    """
    if "stopped" not in meta:
        return None
    stopped = meta.get("stopped")
    if isinstance(stopped, int | float) and not isinstance(stopped, bool):
        return None
    if last_end_epoch is None:
        return (
            "This run did not stop cleanly (crashed or killed) at an unknown time (it "
            "recorded no sample); its last second may be missing."
        )
    when = dt.datetime.fromtimestamp(last_end_epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = meta.get("started")
    if isinstance(started, int | float) and not isinstance(started, bool):
        when += f" ({max(last_end_epoch - started, 0.0):.1f} s after start)"
    return (
        f"This run did not stop cleanly (crashed or killed) at about {when}; "
        "its last second may be missing."
    )
