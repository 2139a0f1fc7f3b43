"""The service levels of capacity runs, for analysis code: defined in ``wsload.capacity.slo``
(pure, shared with the capacity load shape) and re-exported here."""

from wsload.capacity.slo import LIMITED_NAMES, RATED_NAMES, SLO, SLO_OPTIONS

__all__ = ["LIMITED_NAMES", "RATED_NAMES", "SLO", "SLO_OPTIONS"]
