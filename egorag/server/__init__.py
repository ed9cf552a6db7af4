"""egorag's HTTP server: a thin JSON API over :class:`egorag.Engine` (``egorag serve``).

Standard library only. See :mod:`egorag.server.app` for the routes and
:mod:`egorag.server.worker` for how concurrent queries are answered together.
"""

from egorag.server.app import EgoragServer
from egorag.server.worker import EngineWorker, SearchRequest

__all__ = ["EgoragServer", "EngineWorker", "SearchRequest"]
