"""Encoding side by side ([ingest] workers): windows and videos run in parallel, come back in
order, stay bounded, and give the same store as one at a time."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from conftest import HashEncoder, make_video, words_at
from writer_proc import ScriptByLength, assert_same, config, state

from egorag.config import EngineConfig, IngestConfig, load_config
from egorag.engine import Engine
from egorag.errors import ConfigError, MediaError
from egorag.ingest.decode import probe
from egorag.ingest.parallel import Cancelled, StopWhenCancelled, Workers
from egorag.ingest.pipeline import transcribe
from egorag.models import ModelSet


class Concurrency:
    """Counts how many calls run at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


class SlowTranscriber:
    """Each window's words, after a pause (as a real recogniser would take): the script's words
    that fall in the first 20 s of the window."""

    model_name = "slow-scripted"

    def __init__(self, words):
        self.words = words
        self.running = Concurrency()

    def transcribe(self, audio):
        with self.running:
            time.sleep(0.15)
            return [w for w in self.words if w.end <= len(audio) / 16000]


def test_windows_come_back_in_order_and_few_are_decoded_ahead():
    drawn, done = [], []
    release = threading.Event()

    def windows():
        for i in range(10):
            drawn.append(i)
            yield (i,)

    def square(i):
        release.wait(5)
        done.append(i)
        return i * i

    with Workers(2) as workers:
        result = {}
        runner = threading.Thread(target=lambda: result.setdefault("out", workers.map_windows(square, windows())))
        runner.start()
        time.sleep(0.3)
        ahead = len(drawn)  # nothing has finished: only the room of 2 n windows was drawn
        release.set()
        runner.join(10)
    assert ahead == 4
    assert result["out"] == [i * i for i in range(10)]


def test_a_decode_error_waits_for_the_running_windows_and_frees_their_room():
    finished = []

    def windows():
        yield from [(0,), (1,), (2,)]
        raise ValueError("damaged audio")

    def slow(i):
        time.sleep(0.1)
        finished.append(i)
        return i

    with Workers(2) as workers:
        with pytest.raises(ValueError, match="damaged audio"):
            workers.map_windows(slow, windows())
        assert sorted(finished) == [0, 1, 2]
        # every slot came back: a long run afterwards does not block
        assert workers.map_windows(lambda i: i, iter([(i,) for i in range(20)])) == list(range(20))


def test_videos_run_side_by_side_and_come_back_in_the_order_given():
    running = Concurrency()

    def work(i):
        with running:
            time.sleep(0.05 * (4 - i % 4))  # later items finish first
        return i

    with Workers(3) as workers:
        order = [(i, f.result()) for i, f in workers.in_order(range(8), work, start=lambda i: i != 5)]
    assert order == [(i, i) for i in range(8) if i != 5]
    assert running.most == 3


def test_giving_up_stops_the_work_in_flight_without_waiting_for_it():
    futures = []

    def decode_pass(i):  # ten seconds of frames, unless told to stop
        consumer = StopWhenCancelled(workers.cancelled)
        for n in range(1000):
            consumer.consume(n, n / 100, None)
            time.sleep(0.01)
        return i

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with Workers(2) as workers:
            for _, future in workers.in_order(range(6), decode_pass):
                futures.append(future)
                time.sleep(0.2)
                raise KeyboardInterrupt  # Ctrl-C while the first videos are being decoded
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(Cancelled):
        futures[0].result(timeout=2)  # the decode pass ended at its next frame
    with pytest.raises(Cancelled):  # and no more windows are drawn
        workers.map_windows(lambda i: i, iter([(1,), (2,)]))


def test_windows_of_one_video_are_recognised_side_by_side_with_the_same_words(tmp_path):
    video = make_video(tmp_path / "long.mp4", [], 5 * 75, fps=5, audio_seconds=75.0)
    script = words_at("one two three four five six seven eight nine ten", 1.0, 19.0)
    info = probe(video)
    alone = SlowTranscriber(script)
    expected = transcribe(video, info, ModelSet(transcriber=alone), window_s=30.0)
    parallel = SlowTranscriber(script)
    with Workers(2) as workers:
        words = transcribe(video, info, ModelSet(transcriber=parallel), window_s=30.0, workers=workers)
    assert alone.running.most == 1 and parallel.running.most == 2
    assert words == expected
    assert len({round(w.start) // 20 for w in words}) >= 3  # words from several windows, in absolute time


@pytest.mark.parametrize("workers", [1, 3])
def test_a_library_indexed_side_by_side_is_the_same_as_one_at_a_time(tmp_path, library, clean, workers):
    eng = Engine(tmp_path / "db", replace(config(), ingest=IngestConfig(workers=workers)),
                 models=ModelSet(transcriber=ScriptByLength(), text=HashEncoder(dim=64)))
    seen = []
    report = eng.index([library], on_video=lambda done, total, path: seen.append((done, path)))
    assert len(report.indexed) == 4
    assert [d for d, _ in seen] == [0, 1, 2, 3, 4]  # announced in order, then the end
    assert_same(state(tmp_path / "db"), clean)


def test_a_bad_file_among_videos_encoded_side_by_side_is_skipped_alone(tmp_path, library, bad_files):
    eng = Engine(tmp_path / "db", replace(config(), ingest=IngestConfig(workers=3)),
                 models=ModelSet(transcriber=ScriptByLength(), text=HashEncoder(dim=64)))
    videos = sorted(library.glob("*.mp4"))
    bad = bad_files["truncated_tail"]  # probes well; fails while it is decoded, beside the others
    report = eng.index([*videos[:2], bad, *videos[2:]], on_bad_media="skip")
    assert len(report.indexed) == 4
    assert [f for f, _ in report.failed] == [str(bad)]
    with pytest.raises(MediaError, match="the 4 video"):  # the ones committed before it are kept
        Engine(tmp_path / "db2", eng.config, models=eng.index_models()).index([*videos, bad])


def test_ingest_workers_config(tmp_path):
    path = tmp_path / "egorag.toml"
    path.write_text("[ingest]\nworkers = 3\n")
    assert load_config(path).ingest.resolved_workers() == 3
    assert 1 <= EngineConfig().ingest.resolved_workers() <= 8
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="workers"):
            IngestConfig(workers=bad)
