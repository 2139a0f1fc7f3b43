"""``HandshakeUser``, re-exported: the user class lives in ``wsload.locust.handshake``."""

from wsload.locust.handshake import HandshakeUser

__all__ = ["HandshakeUser"]
