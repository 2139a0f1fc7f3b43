"""``SecurityProbeUser``, re-exported: the user class lives in ``wsload.locust.probe``."""

from wsload.locust.probe import SecurityProbeUser

__all__ = ["SecurityProbeUser"]
