"""Given scene lists (``egorag index --scenes``): PySceneDetect's CSV, two-column CSV and JSON
are read, used exactly instead of shot detection, and a list that does not fit its video is a
one-line error naming the file and the line, before anything is indexed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engine import config, models

from egorag.cli import main
from egorag.engine import Engine
from egorag.ingest.scene_lists import SceneListError, check_scene_list, read_scene_list

SCENEDETECT_CSV = """Timecode List:,00:00:01.000,00:00:04.000
Scene Number,Start Frame,Start Timecode,Start Time (seconds),End Frame,End Timecode,End Time (seconds),Length (frames),Length (timecode),Length (seconds)
1,1,00:00:00.000,0.000,25,00:00:01.000,1.000,25,00:00:01.000,1.000
2,26,00:00:01.000,1.000,100,00:00:04.000,4.000,75,00:00:03.000,3.000
3,101,00:00:04.000,4.000,150,00:00:06.000,6.000,50,00:00:02.000,2.000
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text", [
    ("s.csv", SCENEDETECT_CSV),
    ("s.csv", SCENEDETECT_CSV.split("\n", 1)[1]),  # without the "Timecode List" line (--skip-cuts)
    ("s.csv", "start,end\n0,1\n1,4\n\n4,6\n"),
    ("s.csv", "0,1\n00:01,00:04\n4,6\n"),
    ("s.json", json.dumps([[0, 1], [1, 4], [4, 6]])),
    ("s.json", json.dumps([{"start": 0, "end": "0:01"}, {"start": 1, "end": 4}, {"start": "00:04", "end": 6.0}])),
])
def test_formats(tmp_path, name, text):
    path = write(tmp_path / name, text)
    assert check_scene_list(path, read_scene_list(path), duration=6.0) == [(0, 1), (1, 4), (4, 6)]


@pytest.mark.parametrize("name, text, where, message", [
    ("s.csv", "start,end\n0,2\n1.5,4\n", ":3", "the scene starts at 1.5 s, before the previous one ends (2 s)"),
    ("s.csv", "0,2\n2,9\n", ":2", "the scene ends at 9 s, after the video's end (6.00 s)"),
    ("s.csv", "0,2\n3,3\n", ":2", "a scene must start at 0 s or later and end after it starts"),
    ("s.csv", "0,2\n7,8\n", ":2", "the scene starts at 7 s, after the video's end"),
    ("s.csv", "0,two\n", ":1", "'two' is not a time"),
    ("s.csv", "0\n", ":1", "expected a start and an end"),
    ("s.csv", "", "", "the scene list is empty"),
    ("s.json", "[[0, 1],\n [1 2]]", ":2", "not JSON"),
    ("s.json", json.dumps([[0, 1], [1, 2, 3]]), ":item 2", "expected [start, end]"),
    ("s.json", json.dumps({"scenes": []}), "", "a JSON scene list is a list"),
])
def test_bad_lists_name_the_file_and_line(tmp_path, name, text, where, message):
    path = write(tmp_path / name, text)
    with pytest.raises(SceneListError) as err:
        check_scene_list(path, read_scene_list(path), duration=6.0)
    assert str(err.value).startswith(f"{path}{where}: {message}")


def test_given_scenes_are_used_exactly(tmp_path, cut_video):
    listed = write(tmp_path / "cuts.json", json.dumps([[0, 2.5], [2.5, 3.25], [3.25, 6]]))
    engine = Engine(tmp_path / "db", config(), models=models())
    report = engine.index([cut_video], scenes=listed)
    assert report.scenes == 3
    [video] = engine.videos()
    scenes = engine.store().scenes_of(video.video_id)
    assert [(s.start, s.end) for s in scenes] == [(0, 2.5), (2.5, 3.25), (3.25, 6)]  # not the shot cuts (1, 2.48, 4)
    assert all(engine.thumbnail(s.scene_id) for s in scenes)


def test_a_folder_of_lists_and_videos_without_one(tmp_path, cut_video, media_dir):
    from conftest import make_video

    other = make_video(media_dir / "other.mp4", [50], 100, audio_seconds=4.0, seed=7)
    lists = tmp_path / "lists"
    lists.mkdir()
    write(lists / "cuts.mp4.scenes.json", json.dumps([[0, 3], [3, 6]]))
    engine = Engine(tmp_path / "db", config(), models=models())
    engine.index([cut_video, other], scenes=lists)
    by_path = {v.path: v for v in engine.videos()}
    assert by_path[str(cut_video.resolve())].n_scenes == 2
    assert by_path[str(other.resolve())].n_scenes == 2  # detected: its cut at frame 50
    with pytest.raises(Exception, match="one scene list is for one video"):
        engine.index([cut_video, other], scenes=lists / "cuts.mp4.scenes.json", reindex=True)


def test_the_cli_refuses_a_list_that_does_not_fit_before_indexing(tmp_path, cut_video, capsys):
    cfg = write(tmp_path / "test.toml", 'modalities = ["text"]\n[text]\nencoder = "test-hash"\nmodel = "hash-64"\n')
    bad = write(tmp_path / "cuts.csv", "start,end\n0,3\n3,60\n")
    db = tmp_path / "db"
    assert main(["index", str(cut_video), "--db", str(db), "--config", str(cfg), "--scenes", str(bad), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"egorag: error: {bad}:3: the scene ends at 60 s, after the video's end (6.00 s)"
    assert not (db / "scenes.lance").exists()  # nothing indexed, no model loaded for it
    assert main(["index", str(cut_video), "--db", str(db), "--config", str(cfg), "--scenes", str(tmp_path / "nope.csv"), "-q"]) == 1
    assert "no such scene list" in capsys.readouterr().err
