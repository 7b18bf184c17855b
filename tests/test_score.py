"""`score`: one row per clip over a mixed folder, error rows that name the cause, resume after SIGKILL, shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import tone, write_video

from edge_emotion import LABELS
from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.io.probe import VideoFacts
from edge_emotion.io.scan import Shard, find_videos, select_shard, shard_of
from edge_emotion.preprocess.tracks import TrackStore
from edge_emotion.run.codec import CsvFormat, to_record
from edge_emotion.run.pieces import Crops, Piece, ScoredPiece
from edge_emotion.run.pool import WorkerPool
from edge_emotion.run.result import FileKey, Result
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.rows import assemble, file_rows
from edge_emotion.run.score import ScoreOptions, SegmentBatcher, plan_folder, score_folder
from edge_emotion.timeline.chunks import Chunk
from edge_emotion.timeline.grid import whole_file

N = 4  # fresh_checkpoint's segments


def real_frames(clip_path: Path, count: int) -> np.ndarray:
    """[count, H, W, 3] frames of a real clip, so a generated video has a face MTCNN finds."""
    from edge_emotion.io.decode import open_clip, read_frames

    frames = read_frames(open_clip(clip_path), range(0, 3 * count, 3))
    return np.stack([frames[i] for i in sorted(frames)])


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory, hap_clip_path, neu_clip_path) -> Path:
    """Real CREMA-D clips, a generated MP4 with a face and a tone, a blank silent MP4, and two broken files."""
    root = tmp_path_factory.mktemp("videos")
    (root / "real").mkdir()
    shutil.copy(hap_clip_path, root / "real" / hap_clip_path.name)
    shutil.copy(neu_clip_path, root / "real" / neu_clip_path.name)
    write_video(root / "gen" / "face_tone.mp4", real_frames(hap_clip_path, 10), fps=10, audio=tone(1.0))
    write_video(root / "gen" / "blank_silent.mp4", np.full((8, 48, 64, 3), 90, np.uint8), fps=8, audio=np.zeros(16_000, np.float32))
    (root / "broken").mkdir()
    (root / "broken" / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "broken" / "zero.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not a video: never scanned")
    return root


@pytest.fixture(scope="module")
def reference_rows(video_folder, fresh_checkpoint, tmp_path_factory) -> list[dict]:
    """An uninterrupted run (in-process preprocessing), JSONL with segments."""
    out = tmp_path_factory.mktemp("ref") / "results.jsonl"
    summary = score_folder(video_folder, fresh_checkpoint, out, ScoreOptions(workers=0, batch_size=6))
    assert summary.rows == summary.scored == 6 and summary.skipped == 0
    assert summary.statuses == {"ok": 3, "degraded": 1, "error": 2}
    assert summary.failures == {"not a readable video container": 1, "empty file": 1}
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_one_row_per_clip_errors_name_the_cause(reference_rows, video_folder):
    by_name = {Path(r["path"]).name: r for r in reference_rows}
    assert sorted(by_name) == sorted(p.name for p in find_videos(video_folder))
    assert [r["path"] for r in reference_rows] == sorted(r["path"] for r in reference_rows)  # scan order
    assert by_name["zero.mp4"]["status"] == "error" and "empty file" in by_name["zero.mp4"]["error"]
    assert by_name["random.mp4"]["status"] == "error" and "not a readable video container" in by_name["random.mp4"]["error"]
    for name in ("1001_DFA_HAP_XX.flv", "1001_DFA_NEU_XX.flv", "face_tone.mp4"):
        row = by_name[name]
        assert row["status"] == "ok" and row["error"] == "" and row["faceless"] == 0 and row["silent"] == 0
        probs = np.array([row["probabilities"][k] for k in LABELS])
        assert abs(probs.sum() - 1) < 1e-5 and row["label"] == LABELS[int(probs.argmax())]
        assert row["n_segments"] == N and len(row["segments"]) == N
        seg_probs = np.array([[s["probabilities"][k] for k in LABELS] for s in row["segments"]])  # [N, K]
        np.testing.assert_allclose(seg_probs.mean(0), probs, atol=2e-6)  # consensus / N
        assert [s["frame"] for s in row["segments"]] == sorted(s["frame"] for s in row["segments"])
    for name in ("1001_DFA_HAP_XX.flv", "1001_DFA_NEU_XX.flv"):  # 480x360, the actor's face near the centre
        for seg in by_name[name]["segments"]:
            x1, y1, x2, y2 = seg["box"]
            assert seg["detected"] is True and 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 360 and 70 < x2 - x1 < 150
    blank = by_name["blank_silent.mp4"]
    assert blank["status"] == "degraded" and blank["faceless"] == N and blank["silent"] == N
    assert (blank["person"], blank["people"]) == (None, 0)  # nobody seen: no person, as in window rows and stream events
    assert all(seg["box"] is None and seg["detected"] is False for seg in blank["segments"])  # centre crops
    assert by_name["face_tone.mp4"]["duration_s"] == pytest.approx(1.0, abs=0.01)


def _data_rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:] if path.exists() else []


def _score_cmd(folder: Path, model: Path, out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("edge-emotion")
    return [str(exe), "score", str(folder), "-m", str(model), "-o", str(out), "--workers", "1", "--batch-size", str(N), "--quiet"]


def test_kill_and_resume_equals_uninterrupted_run(video_folder, fresh_checkpoint, reference_rows, tmp_path):
    out = tmp_path / "results.csv"
    proc = subprocess.Popen(_score_cmd(video_folder, fresh_checkpoint, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _data_rows(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    children = _children(proc.pid)  # the preprocessing worker (and multiprocessing's resource tracker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = _data_rows(out)
    assert 1 <= len(written) < len(reference_rows), proc.stderr.read().decode()
    with open(out, "ab") as f:  # a torn last write, as a kill during write() could leave
        f.write(b"/half/a/row.flv,HAP,0.1")
    summary = score_folder(video_folder, fresh_checkpoint, out, ScoreOptions(workers=0, batch_size=N))  # resume
    assert summary.skipped == len(written) and summary.scored == len(reference_rows) - len(written)
    text = out.read_text()
    assert text.endswith("\n") and "/half/a/row.flv" not in text
    rows = [to_record(r) for r in CsvFormat(LABELS).decode(text)]
    assert [r["path"] for r in rows] == [r["path"] for r in reference_rows]  # no duplicate, missing or torn row
    for got, want in zip(rows, reference_rows):
        for key in ("label", "status", "error", "n_segments", "faceless", "silent", "duration_s", "size_bytes", "mtime_ns"):
            assert got[key] == want[key], (got["path"], key)
        if want["probabilities"] is not None:
            np.testing.assert_allclose([got["probabilities"][k] for k in LABELS], [want["probabilities"][k] for k in LABELS], atol=1e-5)
    again = score_folder(video_folder, fresh_checkpoint, out, ScoreOptions(workers=0))
    assert again.scored == 0 and again.skipped == again.rows == len(reference_rows)
    assert out.read_text() == text
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "orphaned workers outlived the killed run"


def _children(pid: int) -> list[int]:
    """Child process ids (Linux /proc; empty where unavailable)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_worker_pool_survives_a_hang_and_a_crash_and_goes_on():
    from score_helpers import ScriptedJob

    paths = [Path(name) for name in ("a.mp4", "hang.mp4", "b.mp4", "crash.mp4", "c.mp4")]
    with WorkerPool(ScriptedJob(), workers=1, timeout=1.0) as pool:
        results = list(pool.run(paths))
    assert all(isinstance(r, Piece) for r in results)  # the hung and the crashed file too: the job's `failed`
    errors = {r.index: r.error for r in results}
    assert errors == {
        0: "scripted a.mp4",
        1: "timed out after 1 s (preprocessing did not finish)",
        2: "scripted b.mp4",  # queued behind the hang: handed to the replacement worker
        3: "preprocessing worker died (exit code 3)",
        4: "scripted c.mp4",
    }


def test_worker_pool_does_not_restart_a_worker_without_work_left():
    from score_helpers import ScriptedJob

    with WorkerPool(ScriptedJob(), workers=2, timeout=1.0) as pool:
        errors = [r.error for r in pool.run([Path("hang.mp4"), Path("a.mp4")])]
        assert len(pool.pids) == 1  # the hung worker was killed; nothing left to do, so no start-up paid
    assert sorted(errors) == ["scripted a.mp4", "timed out after 1 s (preprocessing did not finish)"]


class _EchoBackend:
    """Fake backend: records call sizes; segment s gets a distinct probability row derived from its input."""

    contract = SimpleNamespace(preprocess=PreprocessConfig())

    def __init__(self) -> None:
        self.calls: list[int] = []

    def infer(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        self.calls.append(len(faces))
        first = faces[:, 0, 0, 0]  # [S] segment ids planted below
        return np.stack([np.full(6, v) for v in first]).astype(np.float32)


def _clip(index: int, n: int, people: int = 1) -> Piece:
    """A clip's piece of `people` people whose segment k of person p carries index * 100 + p * 10 + k in its face."""
    crops = []
    for person in range(people):
        faces = np.zeros((n, 3, 224, 224), np.float32)
        faces[:, 0, 0, 0] = index * 100 + person * 10 + np.arange(n)
        crops.append(Crops(person, np.arange(n), faces, [(0.0, 0.0, 10.0, 10.0)] * n, np.ones(n, bool)))
    tracks = TrackStore()
    for k in range(n):
        tracks.add(k, {c.person: c.boxes[k] for c in crops})
    facts = VideoFacts(FrameTimes.constant(10 * n, 10.0), 480, 360)
    chunk = Chunk(0, 1, (0, 1), (0, n), (0, n), None)
    return Piece(index, f"clip{index}", chunk, np.arange(n), np.zeros((n, 1, 192, 120), np.float32), np.zeros(n, bool), crops,
                 facts=facts, tracks=tracks)


def _clip_rows(piece: Piece, probs: list[np.ndarray], key: FileKey) -> list[Result]:
    """The clip's rows by the one assembly and row builder (probs: [N, K] per person)."""
    n = len(piece.positions)
    (file,) = assemble([ScoredPiece(piece, probs)], lambda facts: whole_file(n, facts.times), {})
    return [r for rows in file_rows(key, file, LABELS, "all", "clip") for r in rows]


def test_batcher_runs_exact_batches_across_clips_and_people_and_reassembles_each_clip():
    backend = _EchoBackend()
    batcher = SegmentBatcher(backend, batch_size=6)
    done = []
    for i in range(5):
        done += batcher.add(_clip(i, 4, people=1 + i % 3))  # 1, 2, 3, 1, 2 people: 36 segments
    done += batcher.flush()
    assert backend.calls == [6] * 6  # exact batches, people of one clip and clips split across calls
    assert [d.piece.index for d in done] == list(range(5))
    for d in done:
        assert [p.shape for p in d.probs] == [(4, 6)] * (1 + d.piece.index % 3)  # [N, K] per person
        for person, probs in enumerate(d.probs):
            np.testing.assert_array_equal(probs[:, 0], d.piece.index * 100 + person * 10 + np.arange(4))


def test_the_timeline_gives_each_segment_its_own_box_and_detection():
    clip = _clip(0, 3)
    boxes = [(1.0, 2.0, 3.0, 4.0), (1.0, 2.0, 3.0, 4.0), (5.04, 6.0, 7.0, 8.0)]
    clip.people[0] = Crops(0, np.arange(3), clip.people[0].faces, boxes, np.array([True, False, True]))
    (row,) = map(to_record, _clip_rows(clip, [np.full((3, 6), 1 / 6, np.float32)], FileKey("/v/0.mp4", 1, 1)))
    assert [s["box"] for s in row["segments"]] == [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    assert [s["detected"] for s in row["segments"]] == [True, False, True]
    assert (row["kind"], row["window"], row["n_windows"], row["faceless"], row["t_end"]) == ("clip", 0, 1, 1, 3.0)


def test_results_file_truncates_a_partial_line_and_drops_stale_rows(tmp_path):
    out = tmp_path / "r.csv"
    rows = [_clip_rows(_clip(i, 2), [np.full((2, 6), 1 / 6, np.float32)], FileKey(f"/v/{i}.mp4", 10 + i, 5))[0] for i in range(3)]
    with ResultsFile(out, LABELS) as results:
        for row in rows:
            results.write(row)
    with open(out, "ab") as f:
        f.write(b"/v/3.mp4,NEU,0.2")
    with ResultsFile(out, LABELS) as results:
        assert list(results.files) == ["/v/0.mp4", "/v/1.mp4", "/v/2.mp4"]
        assert results.done(FileKey("/v/1.mp4", 11, 5)) and not results.done(FileKey("/v/1.mp4", 99, 5))
        results.drop(["/v/1.mp4"])
    text = out.read_text()
    assert text.endswith("\n") and "/v/1.mp4" not in text and "/v/3.mp4" not in text and text.count("\n") == 3
    with pytest.raises(EdgeEmotionError, match="columns"):
        ResultsFile(out, ("A", "B"))
    with pytest.raises(EdgeEmotionError, match="cannot write the results here"):
        ResultsFile(out / "below_a_file.csv", LABELS)  # checked before any work starts
    with pytest.raises(EdgeEmotionError, match="regular file"):
        ResultsFile(_link(tmp_path / "null.csv", "/dev/null"), LABELS)


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


def test_shards_partition_exactly(video_folder):
    names = [Path(f"/data/actor{i // 12}/clip_{i:04d}.flv") for i in range(300)]
    for n in (1, 2, 3, 7):
        parts = [select_shard(names, "/data", Shard(i, n)) for i in range(n)]
        assert sorted(p for part in parts for p in part) == sorted(names)  # union = all, no path twice
        assert sum(map(len, parts)) == len(names)
        if n > 1:
            assert all(len(part) > 0 for part in parts)
    # the same relative path lands in the same shard wherever the folder is mounted
    assert shard_of("actor1/clip_0013.flv", 5) == shard_of(Path("actor1/clip_0013.flv").as_posix(), 5)
    assert select_shard([Path("/a/x/y.mp4")], "/a", Shard(shard_of("x/y.mp4", 3), 3)) == [Path("/a/x/y.mp4")]
    everything = {k.path for k in plan_folder(video_folder, ScoreOptions())}
    parts = [{k.path for k in plan_folder(video_folder, ScoreOptions(shard=Shard(i, 3)))} for i in range(3)]
    assert set().union(*parts) == everything and sum(map(len, parts)) == len(everything) == 6
    with pytest.raises(ValueError):
        Shard.parse("3/3")


def test_scan_finds_videos_recursively_and_never_follows_dir_links(video_folder, tmp_path):
    found = find_videos(video_folder, ["MP4"])
    assert {p.name for p in found} == {"face_tone.mp4", "blank_silent.mp4", "random.mp4", "zero.mp4"}
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "again").symlink_to(loop, target_is_directory=True)
    (loop / "odd.mp4").mkdir()  # a directory with a video's name is listed, so it gets an error row
    assert [p.name for p in find_videos(loop)] == ["odd.mp4"]
    assert os.path.isabs(find_videos(loop)[0])


def test_resuming_with_another_model_is_refused(video_folder, fresh_checkpoint, tmp_path):
    from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint

    other = tmp_path / "other.pt"
    state = load_checkpoint(fresh_checkpoint)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(other, state)
    out = tmp_path / "rows.csv"
    score_folder(video_folder / "real", fresh_checkpoint, out, ScoreOptions(workers=0))
    before = out.read_text()
    with pytest.raises(EdgeEmotionError, match=r"rows\.csv: its rows were scored by another model"):
        score_folder(video_folder / "real", other, out, ScoreOptions(workers=0))
    assert out.read_text() == before  # nothing appended by the refused run
