from pathlib import Path

import numpy as np
import pytest
from conftest import words_at

from egorag.asr import join_windows
from egorag.config import SceneConfig
from egorag.errors import MediaError
from egorag.ingest.decode import (
    content_hash,
    decode_audio,
    decode_audio_windows,
    decode_frames,
    find_videos,
    probe,
)
from egorag.ingest.scenes import (
    ShotDetector,
    assign_words,
    build_scenes,
    join_words,
    sentences,
)
from egorag.schema import SceneSpan, Word


def spans(pairs):
    return [(s.start, s.end) for s in pairs]


def test_build_scenes_without_cuts_makes_time_windows():
    out = build_scenes([], 70.0, SceneConfig(max_scene_s=30.0))
    flat = [t for pair in spans(out) for t in pair]
    assert flat == pytest.approx([0, 70 / 3, 70 / 3, 140 / 3, 140 / 3, 70])
    assert [s.index for s in out] == [0, 1, 2]


def test_build_scenes_merges_short_and_keeps_exact_boundaries():
    out = build_scenes([4.0, 4.3, 9.0], 12.0, SceneConfig(min_scene_s=1.0, max_scene_s=30.0))
    # the 0.3 s shot merges into its shorter neighbour (4.3-9.0 is longer than 0-4.0)
    assert spans(out) == [(0.0, 4.3), (4.3, 9.0), (9.0, 12.0)]


def test_build_scenes_covers_video_without_gaps():
    cuts = [1.1, 1.5, 7.25, 40.0, 95.0]
    out = build_scenes(cuts, 100.0, SceneConfig(min_scene_s=1.0, max_scene_s=30.0))
    assert out[0].start == 0.0 and out[-1].end == 100.0
    assert all(a.end == b.start for a, b in zip(out, out[1:]))
    assert all(1.0 <= s.duration <= 30.0 + 1e-9 for s in out)


def test_build_scenes_single_short_video():
    assert spans(build_scenes([], 0.5, SceneConfig())) == [(0.0, 0.5)]
    assert build_scenes([], 0.0, SceneConfig()) == []


def test_assign_words_uses_midpoints_not_smearing():
    sp = [SceneSpan(0, 0.0, 2.0), SceneSpan(1, 2.0, 5.0)]
    words = [Word(0.1, 0.5, " hello"), Word(1.8, 2.4, " there"), Word(2.1, 2.3, " general"), Word(4.9, 6.0, " end")]
    buckets = assign_words(words, sp, by="word")
    assert [join_words(b) for b in buckets] == ["hello", "there general end"]


def test_a_sentence_the_picture_cuts_into_stays_with_the_scene_it_mostly_belongs_to():
    sp = [SceneSpan(0, 0.0, 4.1), SceneSpan(1, 4.1, 8.0)]  # the picture cuts at 4.1 s, into a word of the first sentence
    first = words_at("the wider the mirror the fainter the galaxies it can reveal.", 0.5, 4.8)
    second = words_at("a comet is a lump of ice and dust.", 5.0, 7.5)
    by_word = assign_words(first + second, sp, by="word")
    assert join_words(by_word[1]).startswith("can reveal.")  # the sentence's tail smeared into the next scene
    by_sentence = assign_words(first + second, sp)
    assert [join_words(b) for b in by_sentence] == ["the wider the mirror the fainter the galaxies it can reveal.",
                                                     "a comet is a lump of ice and dust."]
    # a cut in a pause between words ends the sentence there, punctuated or not
    paused = words_at("bread dough flour oven yeast", 0.1, 3.9) + words_at("honey bees hive queen wax", 4.3, 7.9)
    assert [join_words(b) for b in assign_words(paused, sp)] == ["bread dough flour oven yeast", "honey bees hive queen wax"]
    # more than a short stretch across the cut: word by word, as the words fall
    long_tail = words_at("one two three four five six seven eight nine ten eleven twelve.", 0.2, 8.0)
    assert [len(b) for b in assign_words(long_tail, sp)] == [sum(0.5 * (w.start + w.end) < 4.0 for w in long_tail),
                                                             sum(0.5 * (w.start + w.end) >= 4.0 for w in long_tail)]
    # no punctuation: a pause ends a sentence, and so does its length
    plain = [Word(t, t + 0.3, " w") for t in np.arange(0.0, 30.0, 0.4)] + [Word(40.0, 40.3, " x")]
    groups = sentences(plain, max_words=40)
    assert [len(g) for g in groups] == [40, 35, 1]


def test_shot_detection_finds_known_cuts_within_one_frame(cut_video):
    info = probe(cut_video)
    assert info.fps == 25 and info.has_audio and info.width == 160
    detector = ShotDetector(SceneConfig(), info.fps, info.width, info.height)
    decoded = decode_frames(cut_video, info, [detector])
    assert decoded == pytest.approx(6.0, abs=0.05)
    cuts = detector.cut_times()
    assert len(cuts) == 3
    assert np.abs(np.array(cuts) - np.array([1.0, 2.48, 4.0])).max() <= 1 / 25 + 1e-9


def test_adaptive_detector_also_finds_cuts(cut_video):
    info = probe(cut_video)
    detector = ShotDetector(SceneConfig(detector="adaptive"), info.fps, info.width, info.height)
    decode_frames(cut_video, info, [detector])
    found = detector.cut_times()
    assert all(min(abs(c - t) for c in found) <= 1 / 25 + 1e-9 for t in [1.0, 2.48, 4.0])


def test_decode_audio_and_silent_video(cut_video, silent_video):
    audio = decode_audio(cut_video, 16000)
    assert audio.dtype == np.float32 and abs(len(audio) / 16000 - 6.0) < 0.2
    assert 0.1 < np.abs(audio).max() < 0.5  # the 0.2-amplitude tone survives AAC
    assert decode_audio(silent_video).size == 0
    assert not probe(silent_video).has_audio


def test_audio_windows_cover_the_track_once_with_overlaps(cut_video, silent_video):
    """Windows of 2 s + 0.5 s every 2 s: each window but the last is 2.5 s, consecutive ones share
    0.5 s of the same samples, and their first 2 s each (the last one whole) are the track."""
    whole = decode_audio(cut_video, 16000)
    windows = list(decode_audio_windows(cut_video, 16000, 2.0, 0.5))
    assert len(windows) == 3 and [start for start, _ in windows] == [0.0, 2.0, 4.0]
    assert all(len(w) == 40000 for _, w in windows[:-1])
    np.testing.assert_array_equal(np.concatenate([w[:32000] for _, w in windows[:-1]] + [windows[-1][1]]), whole)
    np.testing.assert_array_equal(windows[0][1][32000:], windows[1][1][:8000])
    [(start, one)] = decode_audio_windows(cut_video, 16000, 600.0, 20.0)  # a short track: one window
    assert start == 0.0 and np.array_equal(one, whole)
    assert list(decode_audio_windows(silent_video, 16000, 2.0, 0.5)) == []
    with pytest.raises(ValueError, match="window_s"):
        next(decode_audio_windows(cut_video, 16000, 0.0, 0.5))


def speech(n=90):
    """Words every 0.5 s, with a 0.7 s pause after 22.9 s and a 1.1 s one after 26.5 s."""
    words, t = [], 0.0
    for i in range(n):
        t += 0.6 if i == 46 else 1.0 if i == 52 else 0.0
        words.append(Word(t, t + 0.4, f" w{i}"))
        t += 0.5
    return words


def test_overlapping_windows_join_at_the_longest_pause_each_word_once():
    truth = speech()
    # window A hears [0, 30): a word running past its end is garbled; window B hears [20, 50),
    # its first second garbled (it starts mid-speech) and its times 50 ms late
    a = [w if w.end <= 30 else Word(w.start, w.end, " ??") for w in truth if w.start < 30]
    b = [Word(w.start + 0.05, w.end + 0.05, w.text if w.start >= 21 else " ??") for w in truth if 20 <= w.start < 50]
    joined = join_windows([(0.0, a), (20.0, b)], overlap_s=10.0)
    assert [w.text for w in joined] == [w.text for w in truth if w.start < 50]
    cut = 26.5 + 1.1 / 2  # the middle of the longest pause in [22.5, 27.5], the overlap's middle half
    assert all(w.start == t.start for w, t in zip(joined, truth) if t.start < cut)  # A's words
    assert all(w.start == t.start + 0.05 for w, t in zip(joined, truth) if t.start > cut)  # B's
    assert join_windows([(0.0, a)], overlap_s=10.0) == a and join_windows([], overlap_s=10.0) == []


@pytest.mark.slow
def test_windowed_transcription_agrees_with_one_pass():
    """The shipped narration (54 s), transcribed whole and in windows of 40 s starting every 20 s,
    by the real whisper tiny.en: the same words in the same order, up to whisper's own variation."""
    import difflib
    import re

    from egorag.asr import Transcriber
    from egorag.ingest.pipeline import transcribe
    from egorag.models import ModelSet

    sample = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "sample.mp4"
    models, info = ModelSet(transcriber=Transcriber()), probe(sample)
    whole = transcribe(sample, info, models, window_s=600.0)
    windowed = transcribe(sample, info, models, window_s=20.0)

    def tokens(words):
        return [t for w in words for t in re.findall(r"[a-z0-9]+", w.text.lower())]

    # whisper decodes each window in its own 30 s chunks, so a few words differ (0.91 here); a
    # duplicated or dropped overlap (~50 words) would change the count by a third
    assert len(whole) > 100 and abs(len(windowed) - len(whole)) <= 0.1 * len(whole)
    assert difflib.SequenceMatcher(a=tokens(whole), b=tokens(windowed), autojunk=False).ratio() >= 0.85
    starts = [w.start for w in windowed]
    assert starts == sorted(starts) and starts[-1] > 45.0  # absolute times, to the end


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "no such file"),
        ("empty", "empty"),
        ("text", "not a readable media file"),
        ("truncated", "not a readable media file"),
        ("truncated_tail", "truncated"),
        ("audio_only", "no video stream"),
    ],
)
def test_bad_media_gives_clear_error_naming_file(bad_files, kind, reason):
    path = bad_files[kind]
    with pytest.raises(MediaError, match=reason) as exc:
        info = probe(path)
        decode_frames(path, info, [])
    assert str(exc.value).startswith(str(path))
    assert exc.value.path == str(path)


def test_content_hash_and_find_videos(tmp_path, cut_video, silent_video):
    assert content_hash(cut_video) == content_hash(cut_video)
    assert content_hash(cut_video) != content_hash(silent_video)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.MKV").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "camcorder.MTS").write_bytes(b"x")
    found = find_videos([tmp_path, tmp_path / "explicit.txt"])
    assert [p.name for p in found] == ["b.MKV", "camcorder.MTS", "a.mp4", "explicit.txt"]


def test_a_folder_without_videos_says_so_and_loads_nothing(tmp_path, caplog):
    from egorag.engine import Engine

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    engine = Engine(tmp_path / "db")
    with caplog.at_level("WARNING", logger="egorag"):
        report = engine.index([tmp_path / "photos"])
    assert not report.indexed and not report.failed and report.scenes == 0
    assert "photos: no video files in this folder (looked for .3g2" in caplog.text
    assert engine._index_models is None and not (tmp_path / "db").exists()  # no model loaded, no store made


def test_the_text_vector_embeds_the_scene_text_joined_or_labelled():
    from egorag.ingest.pipeline import text_to_embed

    assert text_to_embed("we add flour", "", "Step 2\nKnead", "joined") == "we add flour Step 2 Knead"
    assert text_to_embed("we add flour", "a kitchen", "Step 2\nKnead", "labelled") == \
        "Transcript: we add flour. Visuals: a kitchen. On screen: Step 2 / Knead."
    assert text_to_embed("", "", "EXIT", "labelled") == "On screen: EXIT."
    assert text_to_embed("", "", "", "labelled") == text_to_embed("", "", "", "joined") == ""
