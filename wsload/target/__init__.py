"""The reference target: a real agent-chat WebSocket server speaking docs/PROTOCOL.md.

``start_target()`` embeds one as a subprocess (tests, the locustfile, ``make demo``);
``python -m wsload.target`` / ``wsload target`` run it from a shell.
"""

from wsload.target.config import TargetConfig
from wsload.target.process import RunningTarget, start_target

__all__ = ["RunningTarget", "TargetConfig", "start_target"]
