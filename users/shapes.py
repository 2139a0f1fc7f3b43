"""``SteppedShape``, re-exported: the capacity load shape lives in ``wsload.locust.shapes``."""

from wsload.locust.shapes import SteppedShape

__all__ = ["SteppedShape"]
