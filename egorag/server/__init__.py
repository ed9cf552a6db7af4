"""egorag's HTTP server (``egorag serve``): a FastAPI app over :class:`egorag.Engine` with a web page.

:mod:`egorag.server.app` has the routes, :mod:`egorag.server.guard` the API key and body limit,
:mod:`egorag.server.worker` the engine's thread (concurrent text queries answered in one batch),
:mod:`egorag.server.jobs` the index jobs, :mod:`egorag.server.runner` the server's lifecycle.
"""

from egorag.server.runner import EgoragServer
from egorag.server.worker import EngineWorker, SearchRequest

__all__ = ["EgoragServer", "EngineWorker", "SearchRequest"]
