"""CLI contract: JSON shapes, exit codes, error lines. Fast tests use a store built with the
hash test encoder (selected through --config); slow ones run the real shipped models."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, SAMPLE
from test_engine import config, models

from egorag.cli import main, parse_time
from egorag.engine import Engine


@pytest.fixture
def built(tmp_path, cut_video):
    db = tmp_path / "db"
    Engine(db, config(), models=models()).index([cut_video])
    cfg = tmp_path / "test.toml"
    cfg.write_text('modalities = ["text"]\n[text]\nencoder = "test-hash"\nmodel = "hash-64"\n')
    return db, cfg


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_search_json_contract(built, capsys, cut_video):
    db, cfg = built
    code, out, _ = run(capsys, "search", "saturn rings planet", "--db", db, "--config", cfg, "--k", 2, "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["query"] == "saturn rings planet" and len(payload["hits"]) == 2
    top = payload["hits"][0]
    assert top["video"] == str(cut_video.resolve()) and top["scene"] == 3
    assert top["start"] == pytest.approx(4.0) and top["end"] == pytest.approx(6.0)
    assert set(top["scores"]) >= {"text"} and isinstance(top["score"], float)
    assert "saturn" in top["transcript"] and top["caption"] == ""


def test_search_table_and_filters(built, capsys):
    db, cfg = built
    code, out, _ = run(capsys, "search", "saturn rings", "--db", db, "--config", cfg, "--k", 3, "--before", "0:04")
    assert code == 0 and "cuts.mp4 [00:" in out
    assert "[00:04-00:06]" not in out  # the saturn scene starts at 4 s: filtered out


def test_videos_and_delete(built, capsys):
    db, _ = built
    code, out, _ = run(capsys, "videos", "--db", db, "--json")
    [row] = json.loads(out)
    assert code == 0 and row["scenes"] == 4 and row["path"].endswith("cuts.mp4")
    code, out, _ = run(capsys, "delete", row["video_id"], "--db", db)
    assert code == 0 and out.startswith("deleted")
    code, out, _ = run(capsys, "videos", "--db", db)
    assert "no videos indexed" in out


def test_errors_are_one_line_with_nonzero_exit(built, capsys, tmp_path):
    db, cfg = built
    code, _, err = run(capsys, "delete", "nope", "--db", db)
    assert code == 1 and err.startswith("egorag: error: nope: no such video")
    code, _, err = run(capsys, "videos", "--db", tmp_path / "missing")
    assert code == 1 and "no egorag store here" in err
    code, _, err = run(capsys, "index", tmp_path / "gone.mp4", "--db", db)
    assert code == 1 and err.strip() == f"egorag: error: {tmp_path / 'gone.mp4'}: no such file"
    code, _, err = run(capsys, "search", "--db", db)
    assert code == 1 and "needs a text query" in err


def test_parse_time():
    assert parse_time("90") == 90 and parse_time("1:30") == 90 and parse_time("1:00:01.5") == 3601.5


def test_help_is_fast_and_imports_nothing_heavy():
    code = "import sys, egorag.cli; egorag.cli.build_parser(); print(sorted(m for m in ('torch','lancedb','av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("sample") / "db"
    assert main(["index", str(SAMPLE), "--db", str(db), "-q"]) == 0
    return db


def sample_queries():
    return [json.loads(line) for line in (REPO / "benchmarks/data/sample_queries.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_real_models_transcribe_the_narration(sample_db):
    truth = json.loads((REPO / "benchmarks/data/sample.json").read_text())["scenes"]
    engine = Engine(sample_db)
    scenes = engine.store().scenes_of(engine.videos()[0].video_id)
    assert [round(s.start, 1) for s in scenes] == [round(t["start"], 1) for t in truth]
    for scene, keywords in zip(scenes, [["magma", "lava"], ["flour", "yeast"], ["queen", "honey"], ["bicycle", "puncture"], ["saturn", "ring"]]):
        text = scene.transcript.lower()
        assert all(k in text for k in keywords), (keywords, text)


@pytest.mark.slow
@pytest.mark.parametrize("q", sample_queries(), ids=lambda q: q["query"])
def test_real_models_rank_the_right_scene_first(sample_db, capsys, q):
    code, out, _ = run(capsys, "search", q["query"], "--db", sample_db, "--k", 3, "--json")
    top = json.loads(out)["hits"][0]
    assert code == 0 and top["start"] == pytest.approx(q["start"], abs=0.05), (q, top)


@pytest.mark.slow
def test_cli_status_reports_modalities(capsys):
    code, out, _ = run(capsys, "status", "--json")
    status = {s["name"]: s for s in json.loads(out)}
    assert code == 0 and status["asr"]["enabled"] and status["text"]["enabled"]
    assert not status["visual"]["enabled"] and "To enable" in status["visual"]["detail"]


@pytest.fixture
def visual_built(tmp_path, cut_video, tiny_clip, tiny_clip_checkpoint):
    from conftest import HashEncoder, ScriptedTranscriber

    from egorag.config import EngineConfig, TextConfig
    from egorag.models import ModelSet

    db = tmp_path / "vdb"
    ms = ModelSet(transcriber=ScriptedTranscriber([]), text=HashEncoder(), visual=tiny_clip)
    Engine(db, EngineConfig(text=TextConfig(encoder="test-hash")), models=ms).index([cut_video])
    cfg = tmp_path / "v.toml"
    cfg.write_text(
        'modalities = ["text", "visual"]\n[text]\nencoder = "test-hash"\nmodel = "hash-64"\n'
        f'[visual]\nmodel = "egorag-tiny-clip"\npretrained = "{tiny_clip_checkpoint}"\ndevice = "cpu"\n'
    )
    return db, cfg


def test_search_by_image_and_classify(visual_built, capsys, cut_video, tmp_path):
    import av

    db, cfg = visual_built
    img = tmp_path / "q.png"
    with av.open(str(cut_video)) as c:
        for f in c.decode(video=0):
            if f.time >= 4.5:
                f.to_image().save(img)
                break
    code, out, _ = run(capsys, "search", "--image", img, "--db", db, "--config", cfg, "--json", "--k", 1)
    top = json.loads(out)["hits"][0]
    assert code == 0 and top["scene"] == 3 and top["similarities"]["visual"] > 0.99 and 4.0 <= top["moment"] < 6.0
    code, out, _ = run(capsys, "classify", img, "--labels", "a dog, a car,rain", "--db", db, "--config", cfg, "--json")
    [res] = json.loads(out)
    assert code == 0 and set(res["probabilities"]) == {"a dog", "a car", "rain"}
    assert sum(res["probabilities"].values()) == pytest.approx(1.0) and res["label"] in res["probabilities"]
    code, out, _ = run(capsys, "classify", "--scenes", "--labels", "a,b", "--db", db, "--config", cfg, "--json")
    assert code == 0 and len(json.loads(out)) == 4
    code, _, err = run(capsys, "classify", img, "--labels", "solo", "--db", db, "--config", cfg)
    assert code == 1 and "at least two" in err
    code, _, err = run(capsys, "search", "--image", tmp_path / "nope.png", "--db", db, "--config", cfg)
    assert code == 1 and "nope.png: no such file" in err


def test_ask_no_llm_and_eval(built, capsys, tmp_path):
    db, cfg = built
    code, out, _ = run(capsys, "ask", "where is the saturn scene", "--no-llm", "--db", db, "--config", cfg, "--json", "-k", 2)
    payload = json.loads(out)
    assert code == 0 and payload["answer"] is None and len(payload["evidence"]) == 2
    assert payload["evidence"][0]["tag"] == "[cuts.mp4 @ 00:04-00:06]"
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"query": "saturn rings planet", "video": "cuts.mp4", "start": 4.0, "end": 6.0}\n'
        '{"query": "bread dough oven", "video": "cuts.mp4", "start": 1.0, "end": 2.48}\n'
        '{"query": "bread dough oven", "video": "other.mp4", "start": 1.0, "end": 2.48}\n'
    )
    code, out, _ = run(capsys, "eval", queries, "--db", db, "--config", cfg, "--json", "--ablation")
    results = json.loads(out)
    assert code == 0 and {"text only", "bm25 only", "fusion, no prior", "fusion + prior"} <= set(results)
    m = results["fusion + prior"]
    assert m["n"] == 3 and m["hit_at_1"] == pytest.approx(2 / 3) and m["mrr"] == pytest.approx(2 / 3)
    queries.write_text('{"query": "x"}\n')
    code, _, err = run(capsys, "eval", queries, "--db", db, "--config", cfg)
    assert code == 1 and "q.jsonl:1: bad query line" in err


def test_index_workers_option(built, capsys, tmp_path, cut_video):
    _, cfg = built
    code, out, err = run(capsys, "index", cut_video, "--db", tmp_path / "db2", "--config", cfg, "--workers", "1")
    assert code == 0 and "indexed 1 video" in out + err
    code, out, err = run(capsys, "index", cut_video, "--db", tmp_path / "db3", "--config", cfg, "--workers", "-1")
    assert code != 0 and "[ingest] workers = -1" in err and len(err.strip().splitlines()) == 1
