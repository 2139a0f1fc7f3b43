"""``ChatUser``, re-exported: the user class lives in ``wsload.locust.chat``."""

from wsload.locust.chat import ChatUser

__all__ = ["ChatUser"]
