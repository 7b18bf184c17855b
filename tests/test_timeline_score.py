"""score --window: a recording's parts equal the whole-file inputs, windows equal `predict` on files cut to them,
one error row per broken file, resumes without a duplicate or missing window, parts through the worker pool."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import typer
from conftest import write_video

from edge_emotion import LABELS
from edge_emotion.backends import open_backend
from edge_emotion.cli import app
from edge_emotion.cli.boundary import EXIT_USAGE, run
from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.decode import open_clip
from edge_emotion.io.probe import probe
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import extract, model_faces
from edge_emotion.run.codec import format_for, to_record
from edge_emotion.run.pool import WorkerPool
from edge_emotion.run.read import clip_pieces
from edge_emotion.run.score import ScoreOptions, predict_clip
from edge_emotion.timeline.chunks import RecordingTask
from edge_emotion.timeline.grid import make_grid, plan_timeline, whole_file
from edge_emotion.timeline.recording import recording_pieces
from edge_emotion.timeline.score import score_timelines

FPS = 20  # 0.25 s segments are 5 whole frames: a window is exactly a cut file
CONFIG = PreprocessConfig(n_segments=4)  # the fresh checkpoint's N


def write_lossless(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int = FPS, sample_rate: int = 16_000) -> Path:
    """FFV1 video + 16-bit PCM audio in Matroska: a file cut from it decodes to exactly its frames and samples."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("ffv1", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        pcm = av.AudioFrame.from_ndarray((np.clip(audio, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono")
        pcm.sample_rate, pcm.pts = sample_rate, 0
        for packet in [*sound.encode(pcm), *sound.encode()]:
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def face_frames(hap_clip_path) -> np.ndarray:
    """[F, 360, 480, 3] the frames of a real CREMA-D clip (a face in every one)."""
    with av.open(str(hap_clip_path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def recording(face_frames: np.ndarray, seconds: float, audio: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(frames, audio) of a recording of `seconds` at FPS: the clip's frames played forwards and backwards."""
    loop = np.concatenate([face_frames, face_frames[::-1]])
    frames = loop[np.arange(int(seconds * FPS)) % len(loop)]
    return frames, np.zeros(int(seconds * 16_000), np.float32) if audio is None else audio


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.2 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.normal(size=t.size)).astype(np.float32)


def test_parts_equal_the_whole_file_decoded_at_once(face_frames, face_detector, tmp_path):
    """One pass in parts (frames converted where planned, audio resampled as it comes) = open_clip + extract."""
    path = tmp_path / "rec.mp4"  # lossy MPEG-4 + AAC: the same file both ways, so any codec will do
    frames, _ = recording(face_frames, 4.0)
    write_video(path, frames, fps=FPS, audio=noise(4.0))
    parts = list(recording_pieces(RecordingTask(7, path), CONFIG, 1.0, 0.5, face_detector, part_size=5))
    facts, _ = probe(path)
    timeline = plan_timeline(make_grid(4, 1.0, 0.5, facts.fps), facts.times)
    got = [(p.index, [c.person for c in p.people], p.positions.tolist(), p.last) for p in parts]  # one person, on every segment
    assert got == [(7, [0], list(range(k, min(k + 5, 16))), k == 15) for k in (0, 5, 10, 15)]
    assert all(np.array_equal(p.people[0].rows, np.arange(len(p.positions))) for p in parts)
    whole = extract(open_clip(path), timeline.segments, CONFIG, detector=face_detector)
    assert np.array_equal(model_faces(np.concatenate([p.people[0].faces for p in parts]), CONFIG.face), whole.faces)
    assert np.array_equal(np.concatenate([p.spectrograms for p in parts]), whole.spectrograms)
    assert [b for p in parts for b in p.people[0].boxes] == whole.boxes
    assert not np.concatenate([p.silent for p in parts]).any()


def test_a_broken_file_ends_in_one_error_part(face_detector, tmp_path):
    (tmp_path / "bad.mp4").write_text("not a video\n")
    (parts,) = list(recording_pieces(RecordingTask(3, tmp_path / "bad.mp4"), CONFIG, 1.0, 0.5, face_detector))
    assert parts.index == 3 and parts.chunk is None and not parts.people and "not a readable video container" in parts.error


@pytest.fixture(scope="module")
def silent_recording(tmp_path_factory, face_frames) -> Path:
    folder = tmp_path_factory.mktemp("silent")
    return write_lossless(folder / "talk.mkv", *recording(face_frames, 4.0))


def test_each_window_equals_predict_on_a_file_cut_to_it(silent_recording, face_frames, fresh_checkpoint, tmp_path):
    """With the exact follower a window's boxes are the cut file's, whatever the tracker saw before the window."""
    from timeline_helpers import checkpoint_following

    checkpoint = checkpoint_following(fresh_checkpoint, tmp_path / "cascade.pt", "cascade")
    out = tmp_path / "rows.jsonl"
    summary = score_timelines(silent_recording, checkpoint, out, ScoreOptions(workers=0, window=1.0, hop=0.5))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.rows == len(rows) == 7 and summary.scored == 1
    assert [(r["window"], r["t_start"], r["t_end"], r["n_windows"]) for r in rows] == [(k, k / 2, k / 2 + 1, 7) for k in range(7)]
    frames, audio = recording(face_frames, 4.0)
    with open_backend(checkpoint) as backend:
        detector = FaceDetector(backend.contract.preprocess.face)
        for k in (0, 3, 6):
            cut = write_lossless(tmp_path / f"cut{k}.mkv", frames[10 * k : 10 * k + 20], audio[8000 * k : 8000 * k + 16000])
            want = to_record(predict_clip(cut, backend, detector))
            got = rows[k]
            assert [s["frame"] - 10 * k for s in got["segments"]] == [s["frame"] for s in want["segments"]]
            assert [s["box"] for s in got["segments"]] == [s["box"] for s in want["segments"]]  # the same faces
            np.testing.assert_allclose(list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-5)
            assert (got["label"], got["faceless"], got["silent"], got["status"]) == (want["label"], 0, 4, "degraded")


def test_audio_is_aligned_with_the_recording_where_windows_do_not_cross_the_cut(face_frames, face_detector, tmp_path):
    """Real audio: segments whose 1.28 s audio window lies inside the cut see the same samples; the edge ones
    see real audio where the cut file has zero padding (so scores match only where the audio does)."""
    frames, audio = recording(face_frames, 6.0, noise(6.0, seed=1))
    path = write_lossless(tmp_path / "talk.mkv", frames, audio)
    parts = list(recording_pieces(RecordingTask(0, path), CONFIG, 4.0, 1.0, face_detector))  # L = 1 s: windows at 0, 1, 2 s
    specs = np.concatenate([p.spectrograms for p in parts])  # [6, 1, 192, 120] grid segments 0-5
    cut_path = write_lossless(tmp_path / "cut.mkv", frames[20:100], audio[16000:80000])
    (cut,) = clip_pieces(RecordingTask(0, cut_path), CONFIG, face_detector)
    assert [s.frame for s in whole_file(4, cut.facts.times).segments] == [10, 30, 50, 70]  # grid segments 1-4, shifted by 20 frames
    inside = [1, 2]  # centres 1.0 and 2.0 s into the cut: [0.36, 1.64] and [1.36, 2.64] lie within its 4 s
    np.testing.assert_allclose(specs[[2, 3]], cut.spectrograms[inside], atol=1e-5)
    for edge in (0, 3):  # centre 0.5 s: the window starts 0.14 s before the cut; centre 3.5 s: ends 0.14 s after it
        assert np.abs(specs[1 + edge] - cut.spectrograms[edge]).max() > 0.1


def test_a_file_shorter_than_a_window_is_one_window_with_predicts_numbers(hap_clip_path, fresh_checkpoint, face_detector, tmp_path):
    out = tmp_path / "rows.csv"
    score_timelines(hap_clip_path, fresh_checkpoint, out, ScoreOptions(workers=0, window=5.0, hop=1.25))
    (row,) = map(to_record, format_for(out, LABELS).decode(out.read_text()))
    with open_backend(fresh_checkpoint) as backend:
        want = to_record(predict_clip(hap_clip_path, backend, face_detector))
    assert (row["window"], row["n_windows"], row["t_start"]) == (0, 1, 0.0) and row["t_end"] == pytest.approx(want["duration_s"], abs=1e-3)
    assert row["probabilities"] == want["probabilities"] and row["label"] == want["label"]


def _folder(tmp_path: Path, silent_recording: Path, hap_clip_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(hap_clip_path, folder / "a_clip.flv")
    shutil.copy(silent_recording, folder / "b_talk.mkv")
    (folder / "c_broken.mp4").write_text("not a video\n")
    return folder


def test_a_folder_gives_window_rows_in_file_order_and_one_error_row(silent_recording, hap_clip_path, fresh_checkpoint, tmp_path):
    folder = _folder(tmp_path, silent_recording, hap_clip_path)
    inline, pooled = tmp_path / "inline.csv", tmp_path / "pooled.csv"
    summary = score_timelines(folder, fresh_checkpoint, inline, ScoreOptions(workers=0, window=1.0, hop=0.5))
    score_timelines(folder, fresh_checkpoint, pooled, ScoreOptions(workers=1, window=1.0, hop=0.5))
    assert pooled.read_text() == inline.read_text()  # parts through the worker pool: the same rows
    lines = inline.read_text().splitlines()
    names = [line.split(",")[0].rsplit("/", 1)[-1] for line in lines[1:]]
    assert names == ["a_clip.flv"] * 2 + ["b_talk.mkv"] * 7 + ["c_broken.mp4"]  # the 1.87 s clip: windows at 0 and 0.5 s
    assert summary.statuses == {"ok": 2, "degraded": 7, "error": 1} and summary.failures == {"not a readable video container": 1}
    assert "not a readable video container" in lines[-1]


def test_a_partly_written_file_is_scored_again_without_duplicates(silent_recording, hap_clip_path, fresh_checkpoint, tmp_path):
    folder = _folder(tmp_path, silent_recording, hap_clip_path)
    out = tmp_path / "rows.jsonl"
    options = ScoreOptions(workers=0, window=1.0, hop=0.5)
    score_timelines(folder, fresh_checkpoint, out, options)
    reference = out.read_text()
    lines = reference.splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:40])  # killed while writing b_talk's windows: 3 of 7 and a torn line
    summary = score_timelines(folder, fresh_checkpoint, out, options)
    assert_same_rows(out.read_text(), reference)
    assert (summary.skipped, summary.scored, summary.rows) == (1, 2, 10)
    again = score_timelines(folder, fresh_checkpoint, out, options)
    assert (again.skipped, again.scored) == (3, 0)
    assert_same_rows(out.read_text(), reference)


def test_resuming_with_another_grid_is_refused(silent_recording, fresh_checkpoint, tmp_path):
    out = tmp_path / "rows.csv"
    score_timelines(silent_recording, fresh_checkpoint, out, ScoreOptions(workers=0, window=1.0, hop=0.5))
    with pytest.raises(EdgeEmotionError, match=r"windows of 1 s every 0.5 s, not 1 s every 0.25 s"):
        score_timelines(silent_recording, fresh_checkpoint, out, ScoreOptions(workers=0, window=1.0, hop=0.25))


def test_the_pool_streams_parts_and_a_death_mid_file_still_ends_the_file(tmp_path):
    from timeline_helpers import PartsJob

    paths = [tmp_path / "parts_3", tmp_path / "die_2", tmp_path / "slow_4_0.4", tmp_path / "parts_1"]
    with WorkerPool(PartsJob(), workers=1, timeout=1.0, setup_timeout=30) as pool:
        got = [(r.index, r.error, r.last) for r in pool.run(paths)]
    by_file = {i: [(e, last) for j, e, last in got if j == i] for i in range(4)}
    assert by_file[0] == [("part 0", False), ("part 1", False), ("part 2", True)]
    *before, (cause, last) = by_file[1]  # parts still queued in the dying worker may die with it
    assert before == [("part 0", False), ("part 1", False)][: len(before)] and "worker died (exit code 3)" in cause and last
    assert by_file[2] == [(f"part {k}", k == 3) for k in range(4)]  # 1.6 s in all, never 1 s without a part
    assert by_file[3] == [("part 0", True)]


# ----------------------------------------------------------------------------- the command line

CLI = str(Path(sys.executable).with_name("edge-emotion"))


def _cli(args, capsys):
    code = run(typer.main.get_command(app), [str(a) for a in args])
    return code, capsys.readouterr()


def test_a_hop_off_the_grid_is_a_bad_option_naming_both_lengths(silent_recording, fresh_checkpoint, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code, captured = _cli(["score", silent_recording, "-m", fresh_checkpoint, "-o", out, "--window", "1", "--hop", "0.3", "-q"], capsys)
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert code == EXIT_USAGE and len(errors) == 1 and "Traceback" not in captured.err, captured.err
    assert "--hop" in errors[0] and "hop 0.3 s is not a multiple of the segment length 0.25 s" in errors[0]
    assert not out.exists()  # refused before a results file was opened
    code, captured = _cli(["score", silent_recording, "-m", fresh_checkpoint, "-o", out, "--window", "1", "--executor", "ray"], capsys)
    assert code == EXIT_USAGE and "--executor local only" in captured.err


def test_score_window_then_plot(silent_recording, hap_clip_path, fresh_checkpoint, tmp_path, capsys):
    folder = _folder(tmp_path, silent_recording, hap_clip_path)
    out, png = tmp_path / "rows.csv", tmp_path / "timeline.png"
    code, captured = _cli(["score", folder, "-m", fresh_checkpoint, "-o", out, "--window", "1", "--hop", "0.5", "-w", "0", "-q"], capsys)
    assert code == 0, captured.err
    said = " ".join(captured.out.split())  # rich wraps lines at the console's width
    assert "10 rows (3 scored now, 0 already there)" in said and "failed 1: not a readable video container" in said
    code, captured = _cli(["plot", out, "-o", png], capsys)
    assert code == 0 and "2 panel(s)" in captured.out and png.exists(), captured.err  # the broken file has no panel


def _kill_after(cmd: list[str], seconds: float, out: Path | None = None) -> None:
    """Run cmd; SIGKILL it after `seconds`, or (with `out`) as soon as `out` holds a whole row."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline and not (out and out.exists() and "\n" in out.read_text()):
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def assert_same_rows(got: str, want: str) -> None:
    """The same rows in the same order; probabilities to 1e-5 (another batch composition may move the 6th decimal)."""
    got_rows, want_rows = ([json.loads(line) for line in text.splitlines()] for text in (got, want))
    exact = ("path", "person", "window", "n_windows", "t_start", "t_end", "status", "faceless", "silent", "error")
    assert [[r[k] for k in exact] for r in got_rows] == [[r[k] for k in exact] for r in want_rows]
    for g, w in zip(got_rows, want_rows):
        if w["probabilities"]:
            np.testing.assert_allclose(list(g["probabilities"].values()), list(w["probabilities"].values()), atol=1e-5)


@pytest.mark.slow
def test_score_window_killed_and_resumed_equals_one_run(face_frames, hap_clip_path, fresh_checkpoint, tmp_path):
    """SIGKILL mid-recording (as soon as the first file's rows are written) and at random points: the resumed
    file equals an uninterrupted run's, row for row: no window twice, none missing."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(hap_clip_path, folder / "a_clip.flv")
    write_lossless(folder / "b_long.mkv", *recording(face_frames, 24.0, noise(24.0)))
    write_lossless(folder / "c_talk.mkv", *recording(face_frames, 4.0))
    reference = tmp_path / "reference.jsonl"
    score_timelines(folder, fresh_checkpoint, reference, ScoreOptions(workers=0, window=1.0, hop=0.5, batch_size=16))
    want = reference.read_text()
    out = tmp_path / "killed.jsonl"
    cmd = [CLI, "score", str(folder), "-m", str(fresh_checkpoint), "-o", str(out), "--window", "1", "--hop", "0.5", "-w", "1", "-b", "16", "-q"]
    _kill_after(cmd, 120.0, out)  # a_clip's 2 rows are there: b_long (96 segments) is being scored
    assert 0 < out.read_text().count("\n") < want.count("\n")
    for delay in np.random.default_rng(3).uniform(2.0, 8.0, size=2):
        _kill_after(cmd, float(delay))
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert_same_rows(out.read_text(), want)
