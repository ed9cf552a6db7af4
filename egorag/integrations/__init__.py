"""egorag for RAG frameworks and agents: retrievers for LangChain and LlamaIndex (extras
``[langchain]``, ``[llamaindex]``) and an MCP tool server (extra ``[mcp]``), over a local
:class:`~egorag.engine.Engine` or an ``egorag serve`` URL (:mod:`egorag.integrations.source`)."""
