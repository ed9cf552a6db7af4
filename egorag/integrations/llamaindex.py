"""egorag as a LlamaIndex retriever (extra ``[llamaindex]``)::

    from egorag.integrations.llamaindex import EgoragRetriever
    retriever = EgoragRetriever(engine=egorag.Engine("my_db"), k=5)      # or url="http://127.0.0.1:8765"
    nodes = retriever.retrieve("where does the speaker show the results table?")

Each ``NodeWithScore`` holds a ``TextNode`` with the scene's words and the metadata the
LangChain retriever gives (video, ``start``/``end``/``moment``, scores, thumbnail URL).
"""

from __future__ import annotations

from typing import Any

from egorag.errors import MissingExtraError

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - the extra is part of the test set-up
    raise MissingExtraError("llama-index-core", "llamaindex") from exc

from egorag.integrations.source import scene_document, source_for


class EgoragRetriever(BaseRetriever):
    """Scenes of indexed videos for a query, from a local ``engine`` or a server ``url``."""

    def __init__(self, engine=None, url: str | None = None, *, api_key: str | None = None, base_url: str | None = None,
                 k: int = 5, filters: dict[str, Any] | None = None, **kwargs: Any):
        self._source = source_for(engine, url, api_key, base_url)
        self.k, self.filters = k, dict(filters or {})
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._source.search(query_bundle.query_str, self.k, self.filters)
        out = []
        for hit in hits:
            doc = scene_document(hit, self._source)
            # the embedding-free text the LLM sees keeps the times; the rest stays in metadata
            node = TextNode(id_=doc.id, text=doc.text, metadata=doc.metadata,
                            excluded_llm_metadata_keys=["scores", "thumbnail_url", "video_id", "scene_id"],
                            excluded_embed_metadata_keys=list(doc.metadata))
            out.append(NodeWithScore(node=node, score=doc.score))
        return out
