"""egorag as a LangChain retriever (extra ``[langchain]``)::

    from egorag.integrations.langchain import EgoragRetriever
    retriever = EgoragRetriever(engine=egorag.Engine("my_db"), k=5)      # or url="http://127.0.0.1:8765"
    docs = retriever.invoke("where does the speaker show the results table?")

Each document's ``page_content`` is the scene's transcript (with its on-screen text and caption),
its ``metadata`` the video, ``start``/``end``/``moment`` seconds, scores and thumbnail URL.
"""

from __future__ import annotations

from typing import Any

from egorag.errors import MissingExtraError

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - the extra is part of the test set-up
    raise MissingExtraError("langchain-core", "langchain") from exc

from pydantic import ConfigDict, PrivateAttr

from egorag.integrations.source import SceneSource, scene_document, source_for


class EgoragRetriever(BaseRetriever):
    """Scenes of indexed videos for a text query, from a local ``engine`` or a server ``url``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any = None
    url: str | None = None
    api_key: str | None = None
    base_url: str | None = None  # with a local engine: a server over the same store, for thumbnail URLs
    k: int = 5
    filters: dict[str, Any] = {}
    _source: SceneSource = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        self._source = source_for(self.engine, self.url, self.api_key, self.base_url)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        docs = [scene_document(hit, self._source) for hit in self._source.search(query, self.k, self.filters)]
        return [Document(page_content=d.text, metadata=d.metadata, id=d.id) for d in docs]
