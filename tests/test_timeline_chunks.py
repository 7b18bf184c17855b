"""People across a recording and long recordings in chunks, on real PyAV-made videos.

The scene: two people side by side for 12 s. A (left, the smaller face) from the start until 8 s; B (right, a
larger face) walks in at 3 s and stays. Lossless video and 48 kHz PCM audio (resampled to 16 kHz), so a chunk
decoded from a keyframe can give the very numbers of the whole file.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scenes import Placement, inside, planned_frames
from timeline_helpers import write_recording

from edge_emotion.config import PreprocessConfig
from edge_emotion.run.score import ScoreOptions
from edge_emotion.timeline.chunks import Chunking, RecordingTask, recording_tasks
from edge_emotion.timeline.grid import make_grid
from edge_emotion.timeline.recording import recording_pieces
from edge_emotion.timeline.score import score_timelines

FPS, RATE, SECONDS = 20, 48_000, 12
CONFIG = PreprocessConfig(n_segments=4)  # the test checkpoints' N: 0.25 s segments of 5 frames, windows of 1 s
WINDOW, HOP = 1.0, 0.5
A_LEAVES, B_ENTERS = 160, 60  # frames
SMALL_CHUNKS = Chunking(max_s=6.0, min_s=3.0)  # the 12 s scene in 2 chunks on 2 workers


@pytest.fixture(scope="module")
def people(hap_clip_path, neu_clip_path) -> tuple[Placement, Placement]:
    a = Placement(planned_frames(hap_clip_path), face_px=50, top=60, left=10)  # 253 x 189 px
    b = Placement(planned_frames(neu_clip_path), face_px=80, top=10, left=290, mirror=True)  # 404 x 303 px
    return a, b


@pytest.fixture(scope="module")
def scene(people, tmp_path_factory) -> Path:
    a, b = people
    count = SECONDS * FPS
    frames = np.full((count, 320, 704, 3), 96, np.uint8)
    for k in range(count):
        for person, (start, stop) in ((a, (0, A_LEAVES)), (b, (B_ENTERS, count))):
            if start <= k < stop:
                x1, y1, x2, y2 = person.rect()
                frames[k, y1:y2, x1:x2] = person.image(k)
    t = np.arange(SECONDS * RATE) / RATE
    rng = np.random.default_rng(7)
    audio = (0.3 * np.sin(2 * np.pi * 300 * t * (1 + t / 6)) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    return write_recording(tmp_path_factory.mktemp("scene") / "two.mkv", frames, audio, FPS, RATE)


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def whole_rows(scene, sharp_checkpoint, tmp_path_factory) -> dict[str, list[dict]]:
    """The scene scored in one piece (in this process), everyone and the main person, by the sharp checkpoint: its
    probabilities move with the input, so rows equal to 1e-5 are rows of the same inputs."""
    out = {}
    for faces in ("all", "largest"):
        path = tmp_path_factory.mktemp(faces) / "rows.jsonl"
        score_timelines(scene, sharp_checkpoint, path, ScoreOptions(workers=0, window=WINDOW, hop=HOP, faces=faces))
        out[faces] = rows_of(path)
    return out


def test_everyone_has_rows_for_the_windows_they_are_seen_in_with_their_own_boxes(whole_rows, people):
    rows = whole_rows["all"]
    a, b = people
    assert {r["person"] for r in rows} == {0, 1}  # A first seen, then B: ids in order of appearance
    for row in rows:
        rect = (a if row["person"] == 0 else b).rect()
        assert all(inside(s["box"], rect) for s in row["segments"])  # never the other person's box
        assert any(s["detected"] for s in row["segments"])  # seen in the window
        for s in row["segments"]:
            present = s["frame"] < A_LEAVES if row["person"] == 0 else s["frame"] >= B_ENTERS
            assert not s["detected"] or present  # a box of its own only where the person is in the picture
        assert row["faceless"] == sum(not s["detected"] for s in row["segments"])
    a_rows = [r["window"] for r in rows if r["person"] == 0]
    b_rows = [r["window"] for r in rows if r["person"] == 1]
    assert a_rows == list(range(16))  # A's last planned frame is 157 (segment 31): windows 0 .. 15
    assert b_rows == list(range(b_rows[0], 23)) and 4 <= b_rows[0] <= 10  # found within detect_every segments of 3 s
    windows = {}
    for r in rows:
        windows.setdefault(r["window"], []).append(r)
    assert sorted(windows) == list(range(23)) and all(w[0]["people"] == len(w) for w in windows.values())


def test_the_largest_rule_keeps_a_until_a_leaves_though_b_is_larger(whole_rows):
    rows = whole_rows["largest"]
    assert [r["window"] for r in rows] == list(range(23))
    assert [r["person"] for r in rows] == [0] * 16 + [1] * 7  # one switch: when A is no longer in view
    everyone = {(r["window"], r["person"]): r for r in whole_rows["all"]}
    for r in rows:  # the chosen person's row is their row among everyone's
        assert r["probabilities"] == everyone[(r["window"], r["person"])]["probabilities"]


def test_parts_of_any_size_give_the_same_pieces(scene, face_detector):
    task = RecordingTask(0, scene)
    def pieces(size):
        got = {}
        for piece in recording_pieces(task, CONFIG, WINDOW, HOP, face_detector, part_size=size):
            for crops in piece.people:
                got.setdefault(crops.person, []).append((piece.positions[crops.rows], crops.faces, piece.spectrograms[crops.rows]))
        return {p: tuple(np.concatenate(column) for column in zip(*v)) for p, v in got.items()}
    small, large = pieces(3), pieces(16)
    assert sorted(small, key=str) == sorted(large, key=str) == [0, 1]
    for person in small:
        for got, want in zip(small[person], large[person]):
            assert np.array_equal(got, want)


def test_the_scene_is_cut_into_two_chunks_on_keyframes(scene):
    grid = lambda fps: make_grid(4, WINDOW, HOP, fps)  # noqa: E731
    tasks = list(recording_tasks([scene], grid, SMALL_CHUNKS, workers=2, config=CONFIG))
    assert [(t.file, t.chunk.number, t.chunk.count, t.chunk.windows) for t in tasks] == [(0, 0, 2, (0, 12)), (0, 1, 2, (12, 23))]
    assert tasks[0].chunk.start is None and tasks[1].chunk.start.frame % 12 == 0 and tasks[1].chunk.start.frame > 0
    assert [t.chunk for t in recording_tasks([scene], grid, SMALL_CHUNKS, workers=1, config=CONFIG)] == [None]


def assert_same_rows(got: list[dict], want: list[dict]) -> None:
    exact = ("person", "people", "window", "n_windows", "t_start", "t_end", "status", "faceless", "silent", "error")
    assert [[r[k] for k in exact] for r in got] == [[r[k] for k in exact] for r in want]
    for g, w in zip(got, want):
        assert [s["box"] for s in g["segments"]] == [s["box"] for s in w["segments"]]
        np.testing.assert_allclose(list(g["probabilities"].values()), list(w["probabilities"].values()), atol=1e-5)


def test_the_whole_file_rows_tell_inputs_apart(whole_rows):
    """The chunk comparison's 1e-5 means something: across the scene's windows the probabilities move by far more."""
    probs = np.array([list(r["probabilities"].values()) for r in whole_rows["all"]])  # [R, K]
    assert np.ptp(probs, axis=0).max() > 0.05


def _count_chunks(monkeypatch) -> set[tuple[int, int]]:
    """The (number, count) of each chunk the real scorer scores from now on (run.score.score_pieces, wrapped)."""
    import edge_emotion.run.score as run_score

    scored: set[tuple[int, int]] = set()
    score_pieces = run_score.score_pieces

    def counting(pieces, *args, **kwargs):
        for item in score_pieces(pieces, *args, **kwargs):
            scored.add((item.piece.chunk.number, item.piece.chunk.count))
            yield item

    monkeypatch.setattr(run_score, "score_pieces", counting)
    return scored


@pytest.mark.parametrize("faces", ["all", "largest"])
def test_chunks_on_two_workers_give_the_rows_of_the_whole_file(scene, whole_rows, sharp_checkpoint, tmp_path, faces, monkeypatch):

    scored_chunks = _count_chunks(monkeypatch)
    out = tmp_path / "rows.jsonl"
    options = ScoreOptions(workers=2, window=WINDOW, hop=HOP, faces=faces)
    summary = score_timelines(scene, sharp_checkpoint, out, options, chunking=SMALL_CHUNKS)
    assert summary.scored == 1 and scored_chunks == {(0, 2), (1, 2)}  # two chunks really ran
    assert_same_rows(rows_of(out), whole_rows[faces])


@pytest.fixture(scope="module")
def off_beat(people, tmp_path_factory) -> Path:
    """8 s: B throughout, A leaving after 1 s. The whole file's tracker loses A on segment 4 and runs the cascade
    on 4, 5, 6, 16, 26; the second chunk's tracker starts on the beat (10) and runs it on 10, 20, 30."""
    a, b = people
    frames = np.full((8 * FPS, 320, 704, 3), 96, np.uint8)
    for k in range(len(frames)):
        for person, present in ((a, k < 20), (b, True)):
            if present:
                x1, y1, x2, y2 = person.rect()
                frames[k, y1:y2, x1:x2] = person.image(k)
    return write_recording(tmp_path_factory.mktemp("off") / "off.mkv", frames, np.zeros(8 * RATE, np.float32), FPS, RATE)


def _boxes(task, config):
    """person -> {position: (box, own)} of a task's pieces, and the crops by (person, position)."""
    from edge_emotion.preprocess.faces import FaceDetector

    boxes, crops = {}, {}
    for piece in recording_pieces(task, config, WINDOW, HOP, FaceDetector(config.face)):
        for inputs in piece.people:
            for k, p in enumerate(piece.positions[inputs.rows].tolist()):
                boxes.setdefault(inputs.person, {})[p] = (inputs.boxes[k], inputs.detected[k])
                crops[(inputs.person, p)] = inputs.faces[k]
    return boxes, crops


@pytest.mark.parametrize("follow", ["onet", "cascade"])
def test_off_the_beat_a_chunk_differs_only_by_the_followers_boxes(off_beat, people, follow):
    """What a chunk border changes, exactly: off the whole recording's beat, B's boxes in the second chunk are
    followed from other full cascades. With the exact follower nothing changes; with ONet they move a little."""
    from edge_emotion.config import FaceParams
    from edge_emotion.preprocess.faces import box_iou

    config = PreprocessConfig(n_segments=4, face=FaceParams(follow=follow))
    grid = lambda fps: make_grid(4, WINDOW, HOP, fps)  # noqa: E731
    _, second = recording_tasks([off_beat], grid, SMALL_CHUNKS, workers=2, config=config)
    assert second.chunk.track == (10, 32) and second.chunk.score == (16, 32)
    whole, whole_crops = _boxes(RecordingTask(0, off_beat), config)
    chunk, chunk_crops = _boxes(second, config)
    assert sorted(whole) == [0, 1] and sorted(chunk) == [0]  # A (0) left before the chunk; B is its only person
    b_whole = {p: v for p, v in whole[1].items() if p >= 16}
    assert sorted(b_whole) == sorted(chunk[0]) == list(range(16, 32))
    assert all(b_whole[p][1] and chunk[0][p][1] for p in b_whole)  # B seen on every segment by both
    assert all(inside(chunk[0][p][0], people[1].rect()) for p in b_whole)
    ious = [box_iou(b_whole[p][0], chunk[0][p][0]) for p in b_whole]
    if follow == "cascade":
        assert ious == [1.0] * 16
        assert all(np.array_equal(whole_crops[(1, p)], chunk_crops[(0, p)]) for p in b_whole)
    else:
        assert 0.9 <= min(ious) and max(ious) < 1.0  # the follower's own boxes, from other starts: close, never the same


KILLABLE = """
import os, signal, sys
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.score import ScoreOptions
from edge_emotion.timeline.chunks import Chunking
from edge_emotion.timeline.score import score_timelines
folder, model, out, faces, max_s, min_s, kill_at = sys.argv[1:]
write, writes = ResultsFile.write_rows, []
def write_then_die(self, rows):  # the kill_at-th write: half its rows, then SIGKILL (0: never)
    writes.append(len(rows))
    if len(writes) == int(kill_at):
        write(self, rows[: len(rows) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, rows)
ResultsFile.write_rows = write_then_die
score_timelines(folder, model, out, ScoreOptions(workers=2, window=1.0, hop=0.5, faces=faces),
                chunking=Chunking(max_s=float(max_s), min_s=float(min_s)))
"""


@pytest.mark.slow
def test_chunked_scoring_killed_and_resumed_equals_one_run(scene, hap_clip_path, sharp_checkpoint, whole_rows, tmp_path):
    """SIGKILL while the scene's chunks are in the workers, and at random points: the resumed file equals one run."""
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a_clip.flv").write_bytes(hap_clip_path.read_bytes())
    (folder / "b_two.mkv").write_bytes(scene.read_bytes())
    (folder / "c_two.mkv").write_bytes(scene.read_bytes())
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-c", KILLABLE, str(folder), str(sharp_checkpoint), str(out), "all", "6.0", "3.0", "0"]

    def kill_after(seconds: float, first_row: bool = False) -> None:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        while proc.poll() is None and time.monotonic() < deadline and not (first_row and out.exists() and "\n" in out.read_text()):
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    kill_after(120.0, first_row=True)  # a_clip's rows are there: the scenes' chunks are being scored
    assert 0 < out.read_text().count("\n") < 1 + 2 * len(whole_rows["all"])
    for delay in np.random.default_rng(5).uniform(3.0, 9.0, size=2):
        kill_after(float(delay))
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    rows = rows_of(out)
    names = [Path(r["path"]).name for r in rows]
    assert names == ["a_clip.flv"] * names.count("a_clip.flv") + ["b_two.mkv"] * len(whole_rows["all"]) + ["c_two.mkv"] * len(whole_rows["all"])
    assert_same_rows(rows[-2 * len(whole_rows["all"]) : -len(whole_rows["all"])], whole_rows["all"])
    assert_same_rows(rows[-len(whole_rows["all"]) :], whole_rows["all"])


def _rows(path: Path) -> list[dict]:
    """A results file's rows, JSON lines or CSV (its fields as text, probabilities under their labels)."""
    if path.suffix == ".jsonl":
        return [{**r, **r.pop("probabilities")} for r in rows_of(path)]
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _assert_same(got: list[dict], want: list[dict], labels: list[str]) -> None:
    """The same rows in the same order, person numbers, people and boxes included; probabilities to 1e-5."""
    exact = [k for k in want[0] if k not in labels and k != "mtime_ns"]
    assert [[r[k] for k in exact] for r in got] == [[r[k] for k in exact] for r in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose([float(g[k]) for k in labels], [float(w[k]) for k in labels], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("video", "faces", "suffix"), [("off_beat", "all", ".jsonl"), ("scene", "largest", ".csv")])
def test_a_recording_killed_part_way_resumes_from_its_first_unfinished_chunk(video, faces, suffix, request, sharp_checkpoint, tmp_path, monkeypatch):
    """The real command SIGKILLs itself half-way through writing the last of its recording's three chunks (its
    third write), resumed: only that chunk is scored again, and the file equals one run's. Its rows need what the
    chunks before left: off_beat's third chunk sees B alone (counted afresh B would be 0, not 1); the scene's starts
    with A in view (afresh, the main-person rule would pick the larger B)."""

    folder = tmp_path / "videos"
    folder.mkdir()
    source = request.getfixturevalue(video)
    (folder / source.name).write_bytes(source.read_bytes())
    sizes = (3.0, 2.0) if video == "off_beat" else (4.0, 3.0)  # three chunks either way: windows from 10, from 15
    options = ScoreOptions(workers=2, window=WINDOW, hop=HOP, faces=faces)
    reference = tmp_path / f"reference{suffix}"
    score_timelines(folder, sharp_checkpoint, reference, options, chunking=Chunking(*sizes))
    want = _rows(reference)
    third = 10 if video == "off_beat" else 15
    late = [str(r["person"]) for r in want if int(r["window"]) >= third]  # what a lost state would change
    assert set(late) == {"1"} if faces == "all" else (late[0], set(late)) == ("0", {"0", "1"})

    out = tmp_path / f"killed{suffix}"
    cmd = [sys.executable, "-c", KILLABLE, str(folder), str(sharp_checkpoint), str(out), faces, *map(str, sizes), "3"]
    assert subprocess.run(cmd, capture_output=True).returncode == -signal.SIGKILL
    written = [int(r["window"]) for r in _rows(out)]
    assert len(written) > sum(int(r["window"]) < third for r in want) and max(written) < len(want) - 1  # half the third chunk

    scored_chunks = _count_chunks(monkeypatch)
    summary = score_timelines(folder, sharp_checkpoint, out, replace(options, workers=0), chunking=Chunking(*sizes))
    assert scored_chunks == {(2, 3)} and (summary.scored, summary.skipped) == (1, 0)  # in one process: cut as the first run cut
    _assert_same(_rows(out), want, ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"])
    assert not out.with_name(out.name + ".chunks.json").exists()  # the log goes with its file's last row


@pytest.mark.parametrize(("suffix", "rate"), [(".mkv", 16_000), (".mov", 48_000), (".mp4", 44_100)])
def test_a_pass_from_a_keyframe_gives_the_whole_files_frames_and_samples(suffix, rate, tmp_path):
    """Decoding from a cut: the frames of the whole file, numbered as from the start, and (after the resampler's
    warm-up) its samples: FFV1's dependent frames, PCM repacketised off the resampler's phase (mov, 48 kHz),
    MPEG-4 + AAC at 44.1 kHz (samples compared where AAC's noise substitution is not in play: a pure tone)."""
    from conftest import write_video

    from edge_emotion.io.decode import open_clip, read_frames
    from edge_emotion.io.media import FramePass
    from edge_emotion.io.probe import probe
    from edge_emotion.timeline.grid import plan_timeline

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (120, 48, 64, 3), dtype=np.uint8)  # 6 s at 20 fps
    t = np.arange(6 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    if suffix == ".mp4":
        path = write_video(tmp_path / "r.mp4", frames, fps=FPS, audio=audio, sample_rate=rate)
    else:
        path = write_recording(tmp_path / f"r{suffix}", frames, audio, FPS, rate)
    facts, cuts = probe(path, keyframes=True)
    cut = next(c for c in cuts if c.time_s >= 3.0)
    timeline = plan_timeline(make_grid(4, WINDOW, HOP, facts.fps), facts.times)
    positions = range(next(p for p, s in enumerate(timeline.segments) if s.frame >= cut.frame), len(timeline.segments))
    grid_pass = FramePass(path, facts.times, timeline.segments, positions, CONFIG.audio, cut, facts.audio_origin, audio_until=10**12)
    got = dict(grid_pass.frames())
    clip = open_clip(path)
    want = read_frames(clip, [timeline.segments[p].frame for p in positions])
    assert sorted(got) == list(positions)
    assert all(np.array_equal(got[p], want[timeline.segments[p].frame]) for p in positions)
    buffer = grid_pass.audio.buffer
    samples = np.concatenate(buffer.chunks)[buffer.usable - buffer.start :]
    assert buffer.usable <= round((cut.time_s + 0.1) * 16_000) and len(samples) > 16_000
    np.testing.assert_allclose(samples, clip.waveform[buffer.usable : buffer.end], atol=1e-6)
    early = FramePass(path, facts.times, timeline.segments, range(0, 8), CONFIG.audio, None, None, audio_until=32_000)  # 2 s
    assert len(dict(early.frames())) == 8 and early.decoded < 60 and 32_000 <= early.audio.buffer.end < 48_000  # stops there
