"""Hostile input: every file of a generated corpus indexes correctly or fails with a one-line
error naming it, without crashing, hanging or touching the videos already indexed; hostile
queries and configs are one-line errors too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_video
from writer_proc import engine

from egorag.config import (
    AsrConfig,
    EngineConfig,
    RetrievalConfig,
    SceneConfig,
    load_config,
)
from egorag.errors import ConfigError, EgoragError, MediaError, QueryError
from egorag.filters import SceneFilter

GOOD_NAMES = ["plain.mp4", "new\nline.mp4", "ünïcødé 視頻.mp4", "with spaces .mp4", "-rf.mp4", "it's; DROP TABLE videos.mp4",
              "100%_done.mp4", "back\\slash.mp4", ".hidden.mp4", "UPPER.MP4", "x" * 200 + ".mp4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, cut_video) -> tuple[Path, dict[str, Path], list[Path]]:
    """A folder of hostile files: (folder, bad files by kind, good files)."""
    d = tmp_path_factory.mktemp("hostile")
    good = []
    for i, name in enumerate(GOOD_NAMES):
        good.append(make_video(d / name, [20], 40, seed=100 + i))
    good.append(make_video(d / "tiny16.mp4", [], 10, size=(16, 16), seed=200))
    good.append(make_video(d / "one_frame.mp4", [], 1, seed=201))
    mkv = d / "actually_mkv.mp4"
    make_video(d / "tmp.mkv", [10], 30, seed=202).rename(mkv)
    good.append(mkv)
    rng = np.random.default_rng(0)
    data = cut_video.read_bytes()
    bad = {}

    def write(name: str, content: bytes) -> Path:
        bad[name] = d / name
        bad[name].write_bytes(content)
        return bad[name]

    write("empty.mp4", b"")
    write("empty.mkv", b"")
    write("notes.mp4", b"this is not a video\n" * 50)
    write("garbage.mp4", rng.bytes(50_000))
    write("ftyp_then_garbage.mp4", data[:32] + rng.bytes(20_000))
    write("head_only.mp4", data[: len(data) // 3])
    write("one_byte.mp4", b"\x00")
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(d / "picture.png")
    write("picture_renamed.mp4", (d / "picture.png").read_bytes())
    (d / "picture.png").unlink()
    os.mkfifo(d / "fifo.mp4")
    bad["fifo.mp4"] = d / "fifo.mp4"
    (d / "folder.mp4").mkdir()  # a folder with a video's name: nothing in it, nothing indexed
    os.symlink(d / "nowhere.mp4", d / "dangling.mp4")
    bad["dangling.mp4"] = d / "dangling.mp4"
    loop = d / "loop"
    loop.mkdir()
    os.symlink(loop, loop / "again")  # a symlink loop: walked once
    raw = os.fsencode(d) + b"/bad\xffname.mp4"
    shutil.copyfile(good[0], raw)
    bad["non-utf8"] = Path(os.fsdecode(raw))
    junk = d / "junk"
    junk.mkdir()
    for i in range(1000):  # non-videos in a folder are passed over
        (junk / f"note{i}.txt").write_text("x")
    return d, bad, good


def test_a_hostile_folder_indexes_the_good_files_and_reports_the_bad(corpus, tmp_path):
    folder, bad, good = corpus
    e = engine(str(tmp_path / "db"))
    report = e.index([folder], on_bad_media="skip")
    indexed = sorted(report.indexed + report.unchanged)
    assert indexed == sorted(str(p.resolve()) for p in good)
    failed = dict(report.failed)
    in_folder = [k for k in bad if k not in ("fifo.mp4", "dangling.mp4")]  # not regular files: not picked from folders
    reported = {Path(p).name for p in failed}
    for kind in in_folder:  # each by its own name (a non-UTF-8 one as it can be shown)
        assert os.fsencode(bad[kind].name).decode("utf-8", "backslashreplace") in reported, f"{kind} not reported: {failed}"
    for reason in failed.values():
        assert "\n" not in reason
    listed = sorted(v.path for v in e.videos())
    assert listed == sorted(str(p.resolve()) for p in good)
    assert "new\nline.mp4" in "".join(listed)  # a newline in a name is kept, not mangled


@pytest.mark.parametrize("kind, message", [
    ("empty.mp4", "empty (0 bytes)"), ("empty.mkv", "empty (0 bytes)"), ("notes.mp4", "not a readable media file"),
    ("garbage.mp4", "not a readable media file"), ("ftyp_then_garbage.mp4", ""), ("head_only.mp4", ""),
    ("one_byte.mp4", ""), ("picture_renamed.mp4", ""), ("fifo.mp4", "not a regular file (a FIFO)"),
    ("dangling.mp4", "no such file"), ("non-utf8", "not valid UTF-8; rename the file"),
])
def test_each_bad_file_is_a_one_line_error_naming_it_and_loses_nothing(corpus, tmp_path, kind, message, cut_video):
    folder, bad, good = corpus
    e = engine(str(tmp_path / "db"))
    e.index([cut_video])
    before = [(v.video_id, v.n_scenes) for v in e.videos()]
    with pytest.raises(MediaError) as caught:
        e.index([bad[kind]])
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert os.fsencode(bad[kind]).decode("utf-8", "backslashreplace").split("/")[-1] in text
    assert [(v.video_id, v.n_scenes) for v in e.videos()] == before
    assert e.search("honey bees hive", k=1).hits


def test_bad_files_fail_before_any_model_loads_or_anything_is_encoded(corpus, tmp_path, monkeypatch):
    import egorag.engine

    folder, bad, good = corpus
    e = egorag.engine.Engine(tmp_path / "db")  # the real models, which must not be loaded
    monkeypatch.setattr(egorag.engine.Engine, "index_models", lambda self: pytest.fail("models loaded"))
    with pytest.raises(MediaError, match="notes.mp4"):
        e.index([good[0], bad["notes.mp4"], good[1]])
    report = e.index([bad["notes.mp4"], bad["garbage.mp4"]], on_bad_media="skip")
    assert len(report.failed) == 2 and not report.indexed and not (tmp_path / "db").exists()


def test_an_error_found_while_encoding_says_what_is_kept(corpus, tmp_path, bad_files):
    """A file whose header reads but whose frames are cut off fails only when decoded."""
    folder, bad, good = corpus
    e = engine(str(tmp_path / "db"))
    with pytest.raises(MediaError, match=r"truncated.*the 1 video\(s\) indexed before it are kept"):
        e.index([good[0], bad_files["truncated_tail"], good[1]])
    assert [v.path for v in e.videos()] == [str(good[0].resolve())]


def test_a_folder_without_videos_is_an_error_from_the_cli(corpus, tmp_path, capsys):
    from egorag.cli import main

    folder, _, _ = corpus
    assert main(["index", str(folder / "junk"), "--db", str(tmp_path / "db"), "--quiet"]) == 1
    assert "no video files found" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("query, k, where, message", [
    ("", 5, None, "needs a text query"),
    ("   \n\t", 5, None, "needs a text query"),
    ("bees\udcff", 5, None, r"not UTF-8 text \(byte ff"),
    ("bees", -1, None, "at least 1"),
    ("bees", float("inf"), None, "whole number"),
])
def test_hostile_queries_are_one_line_errors(tmp_path, cut_video, query, k, where, message):
    e = engine(str(tmp_path / "db"))
    e.index([cut_video])
    with pytest.raises(QueryError, match=message):
        e.search(query, k=k, where=where)


@pytest.mark.parametrize("time_from, time_to", [(float("inf"), None), (None, float("nan")), (float("-inf"), 3.0)])
def test_time_filters_must_be_finite(time_from, time_to):
    with pytest.raises(QueryError, match="finite number of seconds"):
        SceneFilter(time_from=time_from, time_to=time_to)


def test_odd_but_valid_queries_answer(tmp_path, cut_video):
    e = engine(str(tmp_path / "db"))
    e.index([cut_video])
    for query in ["the and of", "🐝🍯", "'; DROP TABLE scenes; --", "bees " * 2000, "100% _honey_ \\ bees"]:
        assert isinstance(e.search(query, k=3).hits, list)
    assert e.search("honey bees", k=10**6).hits
    with pytest.raises(QueryError, match="no indexed video has the id 'no-such-video'"):
        e.search("honey bees", k=3, where=SceneFilter(video_ids=("no-such-video",)))


@pytest.mark.parametrize("make, message", [
    (lambda: SceneConfig(max_scene_s=0), "max_scene_s = 0"),
    (lambda: SceneConfig(min_scene_s=5, max_scene_s=2), "min_scene_s = 5 is above"),
    (lambda: AsrConfig(window_s=0), "window_s = 0"),
    (lambda: RetrievalConfig(candidates=-1), "candidates = -1"),
    (lambda: RetrievalConfig(fused_pool=-5), "fused_pool = -5"),
    (lambda: RetrievalConfig(weights={"text": float("nan")}), "text = nan"),
    (lambda: RetrievalConfig(prior_weight=float("inf")), "prior_weight = inf"),
])
def test_out_of_range_config_values_are_refused_at_once(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_out_of_range_config_in_a_file_names_its_section(tmp_path):
    path = tmp_path / "egorag.toml"
    path.write_text("[scenes]\nmax_scene_s = 0\n")
    with pytest.raises(ConfigError, match=r"\[scenes\] max_scene_s = 0"):
        load_config(path)
    assert isinstance(EngineConfig(), EngineConfig)


def test_a_huge_image_query_is_refused_from_its_header(tmp_path, cut_video):
    from PIL import Image

    from egorag.images import MAX_IMAGE_PIXELS, load_image

    path = tmp_path / "huge.png"
    Image.new("1", (20_000, MAX_IMAGE_PIXELS // 20_000 + 1)).save(path)  # 1 bit a pixel: a small file
    with pytest.raises(MediaError, match="over the limit"):
        load_image(path)
    e = engine(str(tmp_path / "db"))
    e.index([cut_video])
    with pytest.raises(EgoragError, match="image queries need the visual modality"):
        e.search(image=path)  # said before the file is decoded


def test_a_file_changed_while_indexed_is_said_and_not_stored(tmp_path, cut_video):
    """A download still being written: the records would not match the content that was hashed."""
    from writer_proc import HashEncoder, config

    from egorag.models import ModelSet

    growing = tmp_path / "growing.mp4"
    shutil.copyfile(cut_video, growing)

    class AppendingTranscriber:  # the file grows while its audio is transcribed
        model_name = "appending"

        def transcribe(self, audio):
            with open(growing, "ab") as f:
                f.write(b"\0" * 1000)
            return []

    from egorag.engine import Engine

    e = Engine(tmp_path / "db", config(), models=ModelSet(transcriber=AppendingTranscriber(), text=HashEncoder(dim=64)))
    with pytest.raises(MediaError, match="changed while it was being indexed"):
        e.index([growing])
    report = e.index([cut_video], on_bad_media="skip")
    assert report.indexed == [str(cut_video.resolve())]
    assert [v.path for v in e.videos()] == [str(cut_video.resolve())]


def test_transcription_has_no_temperature_fallback():
    """Whisper's fallback to higher temperatures samples at random: indexing the same video
    twice must give the same transcript, so decoding runs at temperature 0 only."""
    from egorag.asr import Transcriber
    from egorag.config import AsrConfig

    class Model:
        def transcribe(self, audio, **kwargs):
            self.kwargs = kwargs
            return iter(()), None

    t = Transcriber.__new__(Transcriber)
    t.config, t._model = AsrConfig(), Model()
    assert t.transcribe(np.zeros(16000, np.float32)) == []
    assert t._model.kwargs["temperature"] == 0.0


def test_a_ten_hour_timestamp_jump_is_said(tmp_path, caplog):
    """Decided: the video is indexed as its timestamps say (they are what a player shows), and
    the gap without frames is said, naming the file and where."""
    import logging

    import av

    path = tmp_path / "jump.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5, np.uint8), format="rgb24")
            frame.pts = i if i < 25 else i + 25 * 36000
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    with caplog.at_level(logging.WARNING, "egorag"):
        report = engine(str(tmp_path / "db")).index([path])
    assert report.indexed and "jump.mp4: no frames from 1.0s to 36001.0s" in caplog.text
