"""Time is the timestamp, in every driver: on a variable-rate file and on one with a hole in its video, each segment's
frame is the frame on screen at the segment's instant, its audio is centred on that frame's timestamp, and no
window holds frames from both sides of a hole (clips: the segments inside a hole are marked without video).

The files are H.264 + AAC made here with PyAV, frames of the real CREMA-D clip, timestamps in milliseconds.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from bad_inputs import face_frames
from conftest import tone

from edge_emotion.backends import open_backend
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.io.probe import probe
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.run.score import ScoreOptions, score_folder
from edge_emotion.stream import SourceSpec, StreamOptions, run_stream
from edge_emotion.timeline.score import score_timelines

N, WINDOW, HOP = 4, 1.0, 0.5  # the fresh checkpoint's N; L = 0.25 s


def write_timed(path: Path, pts_ms: np.ndarray, seconds_of_sound: float) -> Path:
    """An H.264 + AAC file whose video frames are shown at `pts_ms` (time base 1/1000), sound throughout."""
    frames = face_frames(len(pts_ms), (160, 120))
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        video.options = {"bf": "0"}
        audio = container.add_stream("aac", rate=16_000, layout="mono")
        for image, t in zip(frames, pts_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        pcm = av.AudioFrame.from_ndarray(tone(seconds_of_sound).reshape(1, -1), format="flt", layout="mono")
        pcm.sample_rate = 16_000
        container.mux(audio.encode(pcm))
        container.mux(audio.encode())
    return path


@pytest.fixture(scope="module")
def timed_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("timed")
    steps = np.concatenate([np.full(9, 33), np.full(6, 120)] * 4)  # a phone's variable rate: 33 ms, then 120 ms, ...
    vfr = write_timed(folder / "vfr.mp4", np.concatenate([[0], np.cumsum(steps)]), 4.5)
    hole = np.concatenate([np.arange(0, 3000, 50), np.arange(7000, 10000, 50)])  # 0-3 s, a 4 s hole, 7-10 s
    return {"vfr": vfr, "hole": write_timed(folder / "hole.mp4", hole, 10.2)}


def _on_screen(times: FrameTimes, frame: int, instant: float) -> bool:
    """Frame `frame` is the one shown at `instant` (to the rows' 4 decimals)."""
    return times.t[frame] - 1e-4 <= instant < times.t[frame] + times.interval(frame) + 1e-4


def _check_segments(times: FrameTimes, t_start: float, segment_s: float, segments: list[dict]) -> None:
    for m, seg in enumerate(segments):
        instant = t_start + (m + 0.5) * segment_s
        assert _on_screen(times, seg["frame"], instant), (t_start, m, seg)
        assert seg["time_s"] == pytest.approx(times.t[seg["frame"]], abs=1e-4)  # the frame's own timestamp
        assert seg["audio_centre_s"] == pytest.approx(seg["time_s"], abs=1e-4)  # the voice of the same instant


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_frame_times_are_the_files_timestamps(timed_files):
    facts, _ = probe(timed_files["vfr"])
    gaps = np.diff(facts.times.t)
    assert np.allclose(sorted(set(np.round(gaps, 3))), [0.033, 0.12])  # not evenly spaced at an average rate
    assert facts.times.epochs() == [(0, len(facts.times))]
    hole, _ = probe(timed_files["hole"])
    assert hole.times.epochs() == [(0, 60), (60, 120)] and hole.times.span((60, 120))[0] == pytest.approx(7.0)


def test_recording_windows_take_the_frame_on_screen_and_never_cross_a_hole(timed_files, fresh_checkpoint, tmp_path):
    for name, path in timed_files.items():
        out = tmp_path / f"{name}.jsonl"
        score_timelines(path, fresh_checkpoint, out, ScoreOptions(workers=0, window=WINDOW, hop=HOP))
        times = probe(path)[0].times
        rows = [r for r in _rows(out) if "t_start" in r]
        assert rows
        for row in rows:
            _check_segments(times, row["t_start"], WINDOW / N, row["segments"])
        if name == "hole":
            spans = [(r["t_start"], r["t_end"]) for r in rows]
            assert all(b <= 3.0 + 1e-6 or a >= 7.0 - 1e-6 for a, b in spans)  # nothing over the hole
            assert min(a for a, _ in spans) == 0.0 and max(b for _, b in spans) == pytest.approx(10.0)
            assert sorted(a for a, _ in spans if a >= 7.0) == pytest.approx([7.0 + HOP * k for k in range(5)])  # a grid from 7 s


def test_a_clips_segments_take_the_frame_on_screen_and_say_when_they_lie_in_a_hole(timed_files, fresh_checkpoint, tmp_path):
    for name, path in timed_files.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / path.name).symlink_to(path)
        out = tmp_path / f"{name}.jsonl"
        score_folder(folder, fresh_checkpoint, out, ScoreOptions(workers=0))
        (row,) = [r for r in _rows(out) if "segments" in r]
        times = probe(path)[0].times
        span = times.duration / N
        _check_segments(times, 0.0, span, row["segments"])
        if name == "hole":  # instants 1.25, 3.75, 6.25, 8.75 s: the middle two lie in the hole, and the row says so
            assert [s["frame"] for s in row["segments"]] == [25, 59, 59, 95]
            assert [s["video"] for s in row["segments"]] == [True, False, False, True]
            assert row["videoless"] == 2 and row["status"] == "degraded"
        else:
            assert row["videoless"] == 0 and all(s["video"] for s in row["segments"])


def test_a_stream_of_the_file_takes_the_frame_on_screen(timed_files, fresh_checkpoint, tmp_path):
    from stream_helpers import Collect

    with open_backend(fresh_checkpoint) as backend:
        detector = FaceDetector(backend.contract.preprocess.face)
        for name, path in timed_files.items():
            sink = Collect()
            run_stream(SourceSpec(str(path)), backend, detector, [sink], StreamOptions(window=WINDOW, hop=HOP))
            times = probe(path)[0].times
            assert sink.events
            events = sink.events  # JSON records (stream_helpers.Collect encodes through the codec)
            for event in events:
                _check_segments(times, event["t_start"], WINDOW / N, event["segments"])
            if name == "hole":
                assert {e["epoch"] for e in events} == {0, 1}
                assert all(e["t_end"] <= 3.0 + 1e-6 or e["t_start"] >= 7.0 - 1e-6 for e in events)
