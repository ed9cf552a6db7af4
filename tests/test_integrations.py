"""Retrievers for LangChain and LlamaIndex (the real packages) over a local engine and over a
server URL, and the MCP tool server through the SDK's own client: in process, and over stdio
from `egorag mcp` on the shipped sample (slow: the real models)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

import pytest
from writer_proc import engine

from egorag.errors import EgoragError
from egorag.server import EgoragServer

KEY = "integration-key"
SAMPLE = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "sample.mp4"


@pytest.fixture
def store(library, tmp_path):
    db = tmp_path / "db"
    engine(str(db)).index([library])
    return db


@pytest.fixture
def served(store):
    server = EgoragServer(engine(str(store)), port=0, api_key=KEY)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_langchain_retriever_local_and_remote(store, served, library):
    from langchain_core.documents import Document

    from egorag.integrations.langchain import EgoragRetriever

    local = EgoragRetriever(engine=engine(str(store)), k=3, base_url=served.url)
    docs = local.invoke("where do honey bees make wax")
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.metadata["video"] == str(library / "v4.mp4") and top.page_content.startswith("honey bees hive")
    assert top.metadata["start"] < top.metadata["moment"] < top.metadata["end"]
    assert top.id == top.metadata["scene_id"] and top.metadata["thumbnail_url"] == f"{served.url}/scenes/{top.id}/thumbnail"
    assert set(top.metadata["scores"]) >= {"text", "bm25"}

    remote = EgoragRetriever(url=served.url, api_key=KEY, k=3)
    assert [d.id for d in remote.invoke("where do honey bees make wax")] == [d.id for d in docs]
    assert [round(d.metadata["score"], 4) for d in remote.invoke("where do honey bees make wax")] == \
        [round(d.metadata["score"], 4) for d in docs]
    filtered = EgoragRetriever(url=served.url, api_key=KEY, k=5, filters={"video": docs[0].metadata["video_id"]})
    assert {d.metadata["video_id"] for d in filtered.invoke("planet")} == {docs[0].metadata["video_id"]}
    assert asyncio.run(remote.ainvoke("saturn rings"))[0].metadata["video"] == str(library / "v5.mp4")

    with pytest.raises(EgoragError, match="401 this server needs its API key"):
        EgoragRetriever(url=served.url, k=3).invoke("bees")
    with pytest.raises(EgoragError, match="either an engine"):
        EgoragRetriever(k=3)
    with pytest.raises(EgoragError, match="cannot reach the egorag server"):
        EgoragRetriever(url="http://127.0.0.1:9", k=3).invoke("bees")


def test_llamaindex_retriever_local_and_remote(store, served, library):
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

    from egorag.integrations.llamaindex import EgoragRetriever

    local = EgoragRetriever(engine(str(store)), k=2)
    nodes = local.retrieve("melting arctic glacier ice")
    assert len(nodes) == 2 and all(isinstance(n, NodeWithScore) for n in nodes)
    top = nodes[0]
    assert top.node.metadata["video"] == str(library / "v6.mp4") and "glacier" in top.node.get_content()
    assert top.score == pytest.approx(top.node.metadata["score"]) and top.node.metadata["thumbnail_url"] is None
    llm_view = top.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "start" in llm_view and "thumbnail_url" not in llm_view  # times for the LLM, no URLs

    remote = EgoragRetriever(url=served.url, api_key=KEY, k=2)
    got = remote.retrieve(QueryBundle("melting arctic glacier ice"))
    assert [n.node.node_id for n in got] == [n.node.node_id for n in nodes]
    assert got[0].node.metadata["thumbnail_url"].startswith(served.url)


def tool_text(result) -> str:
    assert not result.is_error, result
    return "".join(c.text for c in result.content if c.type == "text")


def test_mcp_tools_in_process(store, library):
    from mcp import Client

    from egorag.integrations.mcp_server import create_server

    async def session():
        async with Client(create_server(engine(str(store)))) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"search_videos", "ask_videos", "list_videos", "get_scene"}
            assert set(tools["search_videos"].input_schema["properties"]) == {"query", "k", "video", "start", "end", "audio_event", "speaker"}
            assert tools["search_videos"].input_schema["required"] == ["query"]
            found = json.loads(tool_text(await client.call_tool("search_videos", {"query": "saturn rings planet", "k": 2})))
            assert found["hits"][0]["video"] == str(library / "v5.mp4") and len(found["hits"]) == 2
            listed = json.loads(tool_text(await client.call_tool("list_videos", {})))
            assert sorted(v["path"] for v in listed) == sorted(str(p) for p in library.glob("*.mp4"))
            scene = await client.call_tool("get_scene", {"scene_id": found["hits"][0]["scene_id"]})
            kinds = [c.type for c in scene.content]
            assert kinds == ["text", "image"] and scene.content[1].mime_type == "image/jpeg"
            assert json.loads(scene.content[0].text)["transcript"].startswith("saturn rings")
            asked = json.loads(tool_text(await client.call_tool("ask_videos", {"question": "which planet has rings?", "k": 2})))
            assert asked["answer"] is None and len(asked["evidence"]) == 2 and "could not reach" in asked["llm_error"]
            bad = await client.call_tool("search_videos", {"query": "x", "k": 0})
            assert bad.is_error
            missing = await client.call_tool("get_scene", {"scene_id": "nope:00000"})
            assert missing.is_error and "no such scene" in "".join(c.text for c in missing.content)

    asyncio.run(session())


@pytest.mark.slow
def test_mcp_over_stdio_on_the_shipped_sample(tmp_path):
    from mcp import ClientSession, StdioServerParameters, stdio_client

    from egorag.engine import Engine

    db = tmp_path / "db"
    Engine(db).index([SAMPLE])
    params = StdioServerParameters(command=sys.executable, args=["-m", "egorag.cli", "mcp", "--db", str(db)],
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

    async def session():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
                await client.initialize()
                names = {t.name for t in (await client.list_tools()).tools}
                assert names == {"search_videos", "ask_videos", "list_videos", "get_scene"}
                result = await client.call_tool("search_videos", {"query": "how do bees make honey", "k": 3})
                hits = json.loads(tool_text(result))["hits"]
                assert hits[0]["video"] == str(SAMPLE) and "honey" in hits[0]["transcript"].lower()

    asyncio.run(session())


MCP_HTTP = """
import sys
sys.path.insert(0, {tests!r})
from writer_proc import engine
from egorag.integrations.mcp_server import create_server
create_server(engine({db!r})).run("streamable-http", host="127.0.0.1", port={port})
"""


def test_mcp_over_streamable_http(store, library):
    import socket
    import subprocess
    import time

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = MCP_HTTP.format(tests=str(Path(__file__).resolve().parent), db=str(store), port=port)
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)

        async def session():
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as streams, ClientSession(streams[0], streams[1]) as client:
                await client.initialize()
                result = await client.call_tool("search_videos", {"query": "desert dunes camel", "k": 1})
                assert json.loads(tool_text(result))["hits"][0]["video"] == str(library / "v6.mp4")

        asyncio.run(session())
    finally:
        proc.terminate()
        proc.wait(20)
