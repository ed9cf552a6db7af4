"""The LLM answerer: prompt budget, an OpenAI-compatible server on 127.0.0.1, a tiny local model."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import word_tokenizer
from test_engine import config, models

from egorag.config import AnswerConfig
from egorag.engine import Engine
from egorag.errors import EgoragError
from egorag.hits import Hit
from retrieval.answer import (
    OpenAIChatClient,
    TransformersChatClient,
    answer,
    build_prompt,
    cited_hits,
    estimate_tokens,
    scene_tag,
    video_labels,
)


def hit(i, text="some words " * 20):
    return Hit(f"v:{i:05d}", "v", "/videos/trip.mp4", i, 10.0 * i, 10.0 * i + 9, 1.0 - i / 100, {"text": 0.5}, transcript=text)


def test_prompt_has_tagged_evidence_in_rank_order_within_budget():
    hits = [hit(i, f"scene {i} " + "words " * 60) for i in range(20)]
    messages, used = build_prompt("what happened?", hits, budget_tokens=400)
    user = messages[1]["content"]
    assert messages[0]["role"] == "system" and "Cite" in messages[0]["content"]
    assert estimate_tokens(user) <= 400 + 60  # evidence within budget, plus the question
    assert 1 < len(used) < 20 and used == hits[: len(used)]
    assert user.index(scene_tag(hits[0])) < user.index(scene_tag(hits[1]))
    assert "[trip.mp4 @ 00:10-00:19]" in user and user.rstrip().endswith("Answer with citations:")


def test_cited_hits_map_tags_back():
    hs = [hit(0), hit(1), hit(2)]
    text = f"It rained {scene_tag(hs[2])} and then cleared {scene_tag(hs[0])}{scene_tag(hs[2])} [other.mp4 @ 00:00-00:05]"
    assert cited_hits(text, hs) == [hs[2], hs[0]]


class OpenAIStub(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        OpenAIStub.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        evidence = body["messages"][1]["content"]
        first_tag = evidence[evidence.index("[") : evidence.index("]") + 1]
        reply = {"choices": [{"message": {"role": "assistant", "content": f"The bees make honey {first_tag}."}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def openai_server():
    server = HTTPServer(("127.0.0.1", 0), OpenAIStub)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    OpenAIStub.requests = []
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_ask_through_openai_compatible_server(tmp_path, cut_video, openai_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    from dataclasses import replace

    cfg = replace(config(), answer=AnswerConfig(endpoint=openai_server, model="tiny-served", k=3))
    engine = Engine(tmp_path / "db", cfg, models=models())
    engine.index([cut_video])
    result = engine.ask("where do honey bees live?")
    [req] = OpenAIStub.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "tiny-served" and req["body"]["temperature"] == 0.0
    assert "honey bees hive" in req["body"]["messages"][1]["content"]
    assert result.answer.startswith("The bees make honey [cuts.mp4 @ 00:02-00:04]")
    assert [h.scene for h in result.cited] == [2]
    d = result.to_dict()
    assert d["cited"][0]["tag"] == "[cuts.mp4 @ 00:02-00:04]" and len(d["evidence"]) <= 3


def test_unreachable_endpoint_is_a_clear_error():
    client = OpenAIChatClient("http://127.0.0.1:9/v1", "m", timeout_s=2)
    with pytest.raises(EgoragError, match="could not reach the LLM endpoint") as caught:
        client.chat([{"role": "user", "content": "hi"}], 5, 0.0)
    assert "--no-llm" not in str(caught.value)  # the surface in use adds its own way out


def test_the_cli_says_its_own_way_out_of_an_unreachable_llm(tmp_path, cut_video, capsys, monkeypatch):
    from egorag import cli

    engine = Engine(tmp_path / "db", config(), models=models())
    engine.index([cut_video])
    monkeypatch.setattr(cli, "_engine", lambda args, **o: engine)
    code = cli.main(["ask", "where do bees live", "--endpoint", "http://127.0.0.1:9/v1"])
    assert code == 1 and "--no-llm" in capsys.readouterr().err


def test_citations_of_two_videos_with_one_file_name_do_not_collide():
    a = Hit("aaaaaa11:00001", "aaaaaa11", "/trips/2023/clip.mp4", 1, 10.0, 19.0, 1.0, transcript="the red car")
    b = Hit("bbbbbb22:00001", "bbbbbb22", "/trips/2024/clip.mp4", 1, 10.0, 19.0, 0.9, transcript="the blue car")
    c = Hit("cccccc33:00000", "cccccc33", "/home/kitchen.mp4", 0, 0.0, 9.0, 0.8, transcript="a kettle")
    messages, used = build_prompt("which car?", [a, b, c], budget_tokens=400)
    tags = [scene_tag(h, video_labels(used)) for h in used]
    assert tags == ["[clip.mp4~aaaaaa @ 00:10-00:19]", "[clip.mp4~bbbbbb @ 00:10-00:19]", "[kitchen.mp4 @ 00:00-00:09]"]
    assert all(t in messages[1]["content"] for t in tags)
    assert cited_hits(f"The blue one {tags[1]}, then {tags[2]}", used) == [b, c]
    alone, used = build_prompt("which car?", [b, c], budget_tokens=400)
    assert "[clip.mp4 @ 00:10-00:19]" in alone[1]["content"]  # a name no other video has stays plain


def test_local_transformers_chat_model_path():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = word_tokenizer("user assistant system the bees make honey evidence question answer".split())
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    client = TransformersChatClient.from_model(lm, tok)
    result = answer("what do bees make?", [hit(0, "the bees make honey")], client, AnswerConfig(max_answer_tokens=6))
    assert isinstance(result.answer, str) and result.evidence and result.cited == []
    assert result.answer == answer("what do bees make?", [hit(0, "the bees make honey")], client, AnswerConfig(max_answer_tokens=6)).answer


def test_no_llm_returns_prompt_and_evidence(tmp_path, cut_video):
    engine = Engine(tmp_path / "db", config(), models=models())
    engine.index([cut_video])
    result = engine.ask("saturn rings", use_llm=False)
    assert result.answer is None and result.evidence and "saturn" in result.messages[1]["content"]
