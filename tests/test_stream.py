"""`stream` on the segment grid: live sources (UDP MPEG-TS from a real-time test sender, RTSP from GStreamer, a paced
file, lavfi devices) -> window events, each segment computed once, a window the sum of its last N segments.

The model is the fresh (untrained) N = 4 checkpoint with its classifier sharpened (conftest's sharp_checkpoint), so
its probabilities move with the input by more than float noise: a window taken from the wrong frames or the
wrong stretch of sound shows. Its default window is 1.28 s: segments of L = 0.32 s, hops multiples of that.
No timing is asserted except against growth and generous bounds.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import av
import live_sender as ls
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge_emotion import LABELS
from edge_emotion.backends import open_backend
from edge_emotion.backends.base import Backend
from edge_emotion.cli import app
from edge_emotion.cli.stream_cmds import live_view, summary_lines
from edge_emotion.config import SpectrogramParams
from edge_emotion.detector.tracker import Face
from edge_emotion.io.decode import _resample_audio
from edge_emotion.run.score import ScoreOptions
from edge_emotion.stream import EventsFile, SourceError, SourceSpec, StreamOptions, read_events, run_stream
from edge_emotion.stream.buffer import LiveBuffer
from edge_emotion.stream.events import EVENT_FIELDS
from edge_emotion.stream.people import MainPerson, PersonNumbers, nearest_sighting
from edge_emotion.stream.source import AudioRuns
from edge_emotion.stream.window import EpochGrid, pick_slot
from edge_emotion.timeline.grid import make_grid, plan_timeline
from edge_emotion.timeline.score import score_timelines

FPS = float(ls.FPS)
N = 4
WINDOW = 1.28  # the default window of an N = 4 model: one audio window
L = WINDOW / N  # 0.32 s per segment
REPO = Path(__file__).resolve().parents[1]


class Collect:
    """An event writer that keeps the events in a list, and when each was written (time.monotonic(), time.time())."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.written: list[float] = []
        self.wall: list[float] = []

    def write(self, event: dict) -> None:
        self.events.append(event)
        self.written.append(time.monotonic())
        self.wall.append(time.time())

    def close(self) -> None:
        pass


class Counting(Backend):
    """A real backend that counts the face crops (rows) of every call."""

    name = "counting"

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.path, inner.contract)
        self.inner, self.rows = inner, []

    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        self.rows.append(len(faces))
        return self.inner.infer(faces, spectrograms)


class SlowBackend(Counting):
    """A real backend made slower than the stream: every crop costs `seconds` first (an overloaded edge device)."""

    def __init__(self, inner: Backend, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds

    def infer_impl(self, faces: np.ndarray, spectrograms: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds * len(faces))
        return super().infer_impl(faces, spectrograms)


def probs(event: dict) -> np.ndarray:
    return np.array([event["probabilities"][k] for k in LABELS])


def windows_of(frames: int, hop: float) -> int:
    """Windows `score --window 1.28 --hop HOP` finds in a file of `frames` frames."""
    return len(plan_timeline(make_grid(N, WINDOW, hop, FPS), frames).windows)


def stream(spec: SourceSpec, backend: Backend, detector, audio: SourceSpec | None = None, stop=None, sink=None, **options):
    sink = sink or Collect()
    summary = run_stream(spec, backend, detector, [sink], StreamOptions(**options), audio=audio, stop=stop)
    return sink.events, summary


def by_window(events: list[dict]) -> dict[int, dict]:
    return {e["window"]: e for e in events}


def check_margin(summary) -> float:
    """real_time_margin is the seconds spent on segments and windows (their stages) per stream second; returns it."""
    margin = summary.real_time_margin
    assert margin == pytest.approx(summary.processing_s / summary.stream_s)
    assert sum(summary.stages.values()) <= summary.processing_s + 1e-6  # the stages are parts of it
    assert 0 < summary.processing_s <= summary.wall_s  # one loop does the work: never more than the run
    return margin


def check_close(events: list[dict], reference: dict[int, dict], atol: float) -> float:
    """Each event's probabilities against the reference window of the same number; the largest difference."""
    worst = 0.0
    for event in events:
        want = reference[event["window"]]
        assert event["label"] == want["label"] and event["person"] == want["person"], (event, want)
        worst = max(worst, float(np.abs(probs(event) - probs(want)).max()))
    assert worst <= atol, worst
    return worst


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_emotion", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def sharp_onnx(sharp_checkpoint, tmp_path_factory) -> Path:
    from edge_emotion.build.checkpoint import load_checkpoint
    from edge_emotion.build.export.pipeline import build_onnx

    path = tmp_path_factory.mktemp("stream_model") / "sharp.onnx"
    build_onnx(load_checkpoint(sharp_checkpoint), path, "fp32")
    return path


@pytest.fixture(scope="module")
def backend(sharp_onnx):
    with open_backend(sharp_onnx, device="cpu") as runner:
        yield runner


@pytest.fixture(scope="module")
def recording(hap_clip_path, neu_clip_path) -> ls.Recording:
    """The two real clips back to back: 117 frames, 3.9 s."""
    return ls.load([hap_clip_path, neu_clip_path])


@pytest.fixture(scope="module")
def clip_file(recording, tmp_path_factory) -> Path:
    return ls.write_lossless(recording, tmp_path_factory.mktemp("stream_src") / "two.nut")


@pytest.fixture(scope="module")
def file_run(clip_file, backend, face_detector):
    """The file read as fast as it decodes (every segment and window computed), hop L."""
    return stream(SourceSpec(str(clip_file)), backend, face_detector, hop=L)


class References:
    """Windows of lossless files read without pacing (the exact numbers), made on demand and kept."""

    def __init__(self, folder: Path, backend: Backend, detector) -> None:
        self.folder, self.backend, self.detector = folder, backend, detector
        self.made: dict[tuple[str, int, float], dict[int, dict]] = {}

    def windows(self, recording: ls.Recording, name: str, hop: float, lost: int = 0) -> dict[int, dict]:
        """Window number -> event of the recording from frame `lost` on (a receiver that joined late)."""
        key = (name, lost, hop)
        if key not in self.made:
            part = recording.cut(lost, len(recording.frames) - lost, lost / FPS) if lost else recording
            path = ls.write_lossless(part, self.folder / f"{name}_{lost}.nut")
            self.made[key] = by_window(stream(SourceSpec(str(path)), self.backend, self.detector, hop=hop)[0])
        return self.made[key]


@pytest.fixture(scope="module")
def references(tmp_path_factory, backend, face_detector) -> References:
    return References(tmp_path_factory.mktemp("references"), backend, face_detector)


def best_fit(events: list[dict], recording: ls.Recording, name: str, references: References, hop: float) -> dict[int, dict]:
    """The reference of the recording with 0 or 1 leading frames lost (joining an MPEG-TS stream may lose one) that
    the events fit best."""
    def worst(lost: int) -> float:
        ref = references.windows(recording, name, hop, lost)
        return max(float(np.abs(probs(e) - probs(ref[e["window"]])).max()) for e in events if e["window"] in ref)

    return references.windows(recording, name, hop, min((0, 1), key=worst))


# ----------------------------------------------------------------------------- pure parts


def test_the_grid_on_the_stream_clock_is_the_files_grid_from_the_epochs_first_frame():
    grid = make_grid(N, WINDOW, 2 * L, FPS)  # segments of 9.59 frames, windows every 2 segments
    epoch = EpochGrid(grid, 10.0, SpectrogramParams())
    frames = grid.frames(np.arange(12))
    assert [epoch.slot(j) for j in range(12)] == pytest.approx(10.0 + frames / FPS)
    assert epoch.window_times(3) == pytest.approx((10.0 + 6 * L, 10.0 + 10 * L)) and epoch.segments(3) == range(6, 10)
    for j in range(12):  # a segment is whole once its last frame is there: the file's rule (segment_count)
        assert grid.segment_count(round((epoch.last_frame(j) - 10.0) * FPS) + 1) == j + 1
        assert epoch.last_covered_at(epoch.last_frame(j)) == j and epoch.last_covered_at(epoch.last_frame(j) - 1e-3) == j - 1
        assert epoch.last_slot_at(epoch.slot(j)) == j and epoch.last_slot_at(epoch.slot(j) - 1e-3) == j - 1
        a, b = epoch.audio_span(j)  # [c - d/2, c + d/2) in samples of the stream clock
        assert (a + b) / 2 == pytest.approx(epoch.slot(j) * 16_000, abs=1) and b - a == 20_480
        assert epoch.last_audio_at(b) == j and epoch.last_audio_at(b - 1) == j - 1
    assert [epoch.last_window_through(j) for j in range(2, 9)] == [-1, 0, 0, 1, 1, 2, 2]
    assert epoch.last_slot_at(9.0) == -1 and epoch.last_covered_at(9.0) == -1


def test_each_slot_takes_the_newest_frame_at_or_before_it():
    times = np.array([0.0, 1, 3, 4, 5]) / 30  # frame 2 lost in transit
    assert [pick_slot(times, k / 30 + 0.002, 0.5 / 30) for k in range(6)] == [0, 1, 1, 2, 3, 4]
    assert pick_slot(times, -1.0, 0.5 / 30) == -1  # before every frame: none


def test_the_sound_is_resampled_in_runs_that_follow_each_other(recording):
    rate, chunk = ls.AUDIO_RATE, 1152
    frames = []
    for k, start in enumerate(range(0, 44_100, chunk)):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(recording.audio[None, start : start + chunk]), format="flt", layout="mono")
        frame.sample_rate = rate
        frames.append((start / rate + (3.0 if k >= 20 else 0.0), frame))  # 3 s of nothing before the 21st frame
    runs = AudioRuns(16_000)
    pieces = [p for t, f in frames for p in runs.add(t, f)] + runs.flush()
    joined = np.concatenate([s for _, s in pieces])
    whole_first = _resample_audio([f for _, f in frames[:20]], 16_000)  # decode's resampler over the first run
    second = [(a, s) for a, s in pieces if a >= 3 * 16_000]
    assert np.array_equal(joined[: len(whole_first)], whole_first)  # the very samples `score` resamples
    assert second[0][0] == round((3.0 + 20 * chunk / rate) * 16_000)  # the second run sits at its own time
    assert np.array_equal(np.concatenate([s for _, s in second]), _resample_audio([f for _, f in frames[20:]], 16_000))


def test_the_live_buffer_stays_bounded_however_long_the_stream():
    halt = threading.Event()
    live = LiveBuffer(span_s=3.0, fps=30.0, sample_rate=16_000, lossless=False)
    for i in range(20_000):  # 11 minutes of 30 fps video and 40 audio chunks a second
        live.push_video(i / 30, object(), halt)
        live.push_audio(i * 400, np.zeros(400, np.float32), halt)
    assert len(live.video) <= 3 * 30 + 1 and live.next_seq == 20_000
    assert live.audio[-1].end - live.audio[0].start <= 3.0 * 16_000 + 400
    frozen = LiveBuffer(span_s=3.0, fps=30.0, sample_rate=16_000, lossless=True)  # a clock that stands still, no loop
    for _ in range(2_000):
        frozen.push_video(0.0, object(), halt)
    assert len(frozen.video) <= 4 * frozen.max_video and frozen.lost > 0


def test_people_keep_their_numbers_across_epochs_and_windows_follow_their_main_person():
    left, right, elsewhere = (10.0, 10.0, 60.0, 70.0), (300.0, 20.0, 360.0, 90.0), (600.0, 20.0, 650.0, 80.0)
    numbers = PersonNumbers()
    numbers.new_epoch()
    assert numbers.number([Face(0, left, 1.0), Face(1, right, 1.0)]) == {0: left, 1: right}  # the tracker's own
    numbers.new_epoch()  # a reconnect: a new tracker numbers from 0 again
    assert numbers.number([Face(0, right, 1.0)]) == {1: right}  # where person 1 was: still person 1
    assert numbers.number([Face(1, elsewhere, 1.0), Face(0, right, 1.0)]) == {2: elsewhere, 1: right}  # a newcomer
    main = MainPerson()
    assert main.choose({0: 50.0, 1: 80.0}) == 1  # the largest face
    assert main.choose({0: 90.0, 1: 10.0}) == 1  # ... kept while in the window, even when another is larger
    assert main.choose({0: 5.0}) == 0 and main.choose({}) is None
    sightings = {3: {7: left}, 6: {7: right}}
    assert nearest_sighting(sightings, 7, 5, last=6, n=4) == right  # nearer after
    assert nearest_sighting(sightings, 7, 5, last=5, n=4) == left  # ... but not computed yet when the window ends
    assert nearest_sighting({4: {7: left}, 6: {7: right}}, 7, 5, last=6, n=4) == left  # a tie: the earlier


def test_event_lines_are_whole_and_a_torn_last_line_is_left_out(tmp_path):
    path = tmp_path / "events.jsonl"
    events = EventsFile(path)
    for k in range(3):
        events.write({"t_start": k, "label": "HAP"})
    events.close()
    assert [e["t_start"] for e in read_events(path)] == [0, 1, 2]
    with open(path, "a") as f:
        f.write('{"t_start": 3, "lab')  # what a kill in the middle of a write would leave
    assert [e["t_start"] for e in read_events(path)] == [0, 1, 2]
    EventsFile(path).close()  # a new run replaces the file
    assert path.read_text() == ""


def test_live_view_and_summary_show_the_label_and_the_figures():
    event = {"t_start": 1.0, "t_end": 2.28, "label": "NEU", "probabilities": dict(zip(LABELS, [0.1, 0.1, 0.1, 0.1, 0.5, 0.1])),
             "latency_ms": 87.0, "dropped_frames": 3, "faceless": 1, "silent": 0, "person": 2}
    with open(os.devnull, "w") as sink:
        console = Console(width=120, record=True, file=sink)
        console.print(live_view(event, "udp://127.0.0.1:5000"))
    text = console.export_text()
    assert "NEU" in text and "0.500" in text and "latency 87 ms" in text and "dropped 3" in text and "1 faceless" in text
    assert "person 2" in text
    lines = summary_lines({"source": "x", "events": 4, "stream_s": 3.9, "wall_s": 4.0, "ended": "end of stream", "segments": 7,
                           "backend_rows": 7, "latency_ms": {"p50": 80.0, "p90": 95.0, "p99": 99.0},
                           "end_lag_ms": {"p50": 600.0, "p90": 650.0, "p99": 700.0}, "dropped_frames": 0, "skipped_windows": 0,
                           "reconnects": 0, "inference_s_per_stream_s": 0.25, "stages_s": {"faces": 0.8}})
    assert "7 segments computed, 7 crops through the backend" in lines[0]
    assert "p50 80, p90 95, p99 99 (after the window's end: p50 600, p90 650)" in lines[1]
    assert "0.250 s of inference per stream second" in lines[2]


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("hop", [L, 2 * L], ids=["hop-L", "hop-2L"])
def test_a_file_gives_score_windows_numbers_at_hop_over_L_crops_an_event(hop, clip_file, recording, backend, face_detector, sharp_onnx, tmp_path):
    counting = Counting(backend)
    events, summary = stream(SourceSpec(str(clip_file)), counting, face_detector, hop=hop)
    out = tmp_path / "rows.jsonl"
    score_timelines(clip_file.parent, sharp_onnx, out, ScoreOptions(window=WINDOW, hop=hop, workers=0, extensions=(".nut",)))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) == len(rows) == windows_of(len(recording.frames), hop) == {L: 9, 2 * L: 5}[hop]
    for event, row in zip(events, rows):  # the same windows, people and numbers as `score --window W --hop H`
        assert (event["window"], event["t_start"], event["t_end"], event["person"]) == (row["window"], row["t_start"], row["t_end"], row["person"])
        assert (event["label"], event["faceless"], event["silent"]) == (row["label"], row["faceless"], row["silent"])
        np.testing.assert_allclose(probs(event), probs(row), atol=1e-5)
    per_event = round(hop / L)  # each window after the first costs hop / L new segments and crops, never N
    warm_up, *calls = counting.rows  # one blank crop before the source opens
    assert warm_up == 1 and calls == [N] + [per_event] * (len(events) - 1)
    assert summary.segments == summary.backend_rows == sum(calls) == N + (len(events) - 1) * per_event
    assert summary.ended == "end of stream" and summary.dropped_frames == 0 and summary.skipped_windows == 0
    assert {e["epoch"] for e in events} == {0} and summary.epochs == 1 and {e["person"] for e in events} == {0}
    assert all(tuple(e) == EVENT_FIELDS for e in events)
    walls = [datetime.fromisoformat(e["t_wall_end"]) for e in events]
    assert all(w.utcoffset().total_seconds() == 0 for w in walls)
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(walls)]  # the window ends on the wall clock
    assert steps == pytest.approx([hop] * len(steps), abs=1.5e-3)
    assert summary.stream_s == pytest.approx(len(recording.frames) / FPS, abs=0.05)
    check_margin(summary)


def test_a_file_whose_video_starts_after_its_sound_is_read_as_score_reads_it(neu_clip_path, backend, face_detector, sharp_onnx, tmp_path):
    with av.open(str(neu_clip_path)) as container:  # the real CREMA-D FLV: VP6F from 27 ms, MP3 from 0
        assert (container.streams.video[0].start_time, container.streams.audio[0].start_time) == (27, 0)
    events, _ = stream(SourceSpec(str(neu_clip_path)), backend, face_detector, hop=L)
    (tmp_path / "in").mkdir()
    shutil.copy(neu_clip_path, tmp_path / "in")
    score_timelines(tmp_path / "in", sharp_onnx, tmp_path / "rows.jsonl", ScoreOptions(window=WINDOW, hop=L, workers=0))
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(e["window"], e["t_start"]) for e in events] == [(r["window"], r["t_start"]) for r in rows] and len(rows) == 3
    for event, row in zip(events, rows):  # video and sound each from their first frame, as decode (and training) has it
        np.testing.assert_allclose(probs(event), probs(row), atol=1e-5)


def test_realtime_file_is_paced_and_gives_the_same_windows(clip_file, file_run, backend, face_detector):
    events, summary = stream(SourceSpec(str(clip_file)), backend, face_detector, hop=L, realtime=True)
    assert summary.wall_s >= events[-1]["t_end"]  # paced: the last window waited for its frames (and its sound)
    assert len(events) + summary.skipped_windows == 9 and len(events) >= 2
    assert [e["window"] for e in events[-2:]] == [7, 8]  # completed together by the file's end: both reported
    assert check_margin(summary) < 1  # a segment costs a fraction of its 0.32 s here: inference kept up
    check_close(events, by_window(file_run[0]), atol=1e-6)  # the same frames as the unpaced run: the same numbers
    # paced, each event is out d/2 - L/2 = 0.48 s after its window's end (it waits for its last segment's sound), plus
    # the work; but for the windows that the file's end completed (the sound past it is silence)
    lags = summary.end_lags_ms
    assert len(lags) == len(events) and all(lag >= 400 for lag, e in zip(lags, events) if e["t_end"] + 0.48 < summary.stream_s)


def test_duration_stops_the_stream(clip_file, backend, face_detector):
    events, summary = stream(SourceSpec(str(clip_file)), backend, face_detector, hop=L, duration=2.0)
    assert summary.ended == "--duration 2 s reached" and len(events) == 3 and events[-1]["t_end"] <= 2.0


def test_a_gap_in_the_video_starts_a_new_grid_and_no_window_spans_it(hap_clip_path, neu_clip_path, backend, face_detector, references, tmp_path):
    hap, neu = ls.load([hap_clip_path]), ls.load([neu_clip_path])
    gapped = ls.write_lossless([(hap, 0), (neu, 120)], tmp_path / "gap.nut")  # neu starts at 4.004 s: 2.1 s of nothing
    events, summary = stream(SourceSpec(str(gapped)), backend, face_detector, hop=L)
    assert summary.epochs == 2 and summary.reconnects == 0
    first, second = [e for e in events if e["epoch"] == 0], [e for e in events if e["epoch"] == 1]
    assert first and second and events == first + second
    b_start = 120 / FPS
    assert all(e["t_end"] <= hap.duration + L for e in first) and all(e["t_start"] >= b_start - 1e-3 for e in second)
    # each side is scored as a file of that side alone: the very numbers, the person numbers carried on
    ref_a, ref_b = references.windows(hap, "hap", L), references.windows(neu, "neu", L)
    assert set(ref_a) <= set(by_window(first)) and set(by_window(second)) == set(ref_b)
    check_close([e for e in first if e["window"] in ref_a], ref_a, atol=1e-5)
    check_close(second, ref_b, atol=1e-5)
    assert [e["t_start"] - b_start for e in second] == pytest.approx([ref_b[e["window"]]["t_start"] for e in second], abs=1e-3)


@pytest.fixture(scope="module")
def newcomer(recording, tmp_path_factory) -> Path:
    """720x360, 150 frames (15 segments): one actor throughout, a second, smaller one from frame 90 (segment 9), whom the
    tracker finds at its next full detection, on segment 10; the sound is the first actor's."""
    from scenes import Placement, compose

    frames = list(recording.frames)
    first, second = Placement(frames, 70, 20, 10), Placement(frames[30:], 56, 100, 400, mirror=True)
    video = np.concatenate([compose([first], 90, 720, 360), compose([first, second], 150, 720, 360)[90:]])  # [150, H, W, 3]
    audio = np.tile(recording.audio, 2)[: round(150 / FPS * ls.AUDIO_RATE)]
    return ls.write_lossless(ls.Recording(video, audio), tmp_path_factory.mktemp("newcomer") / "newcomer.nut")


@pytest.mark.parametrize("faces", ["all", "largest"])
def test_people_on_a_file_are_score_windows_people(faces, newcomer, backend, face_detector, sharp_onnx, tmp_path):
    events, summary = stream(SourceSpec(str(newcomer)), backend, face_detector, hop=L, faces=faces)
    out = tmp_path / "rows.jsonl"
    score_timelines(newcomer.parent, sharp_onnx, out, ScoreOptions(window=WINDOW, hop=L, workers=0, extensions=(".nut",), faces=faces))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["window"], e["person"]) for e in events] == [(r["window"], r["person"]) for r in rows]
    for event, row in zip(events, rows):  # the newcomer's segments before they were seen borrow their first box: faceless
        assert (event["label"], event["faceless"], event["silent"]) == (row["label"], row["faceless"], row["silent"])
        np.testing.assert_allclose(probs(event), probs(row), atol=1e-5)
    per_window = [[e["person"] for e in events if e["window"] == k] for k in range(12)]
    if faces == "all":  # the newcomer is person 1 in every window that holds segment 10, with borrowed boxes before it
        assert per_window == [[0]] * 7 + [[0, 1]] * 5
        assert [e["faceless"] for e in events if e["person"] == 1] == [3, 2, 1, 0, 0]
        assert summary.backend_rows == 15 + 8  # each (segment, person) once: 15 of person 0, segments 7-14 of person 1
    else:  # the first actor, larger, stays the main person
        assert per_window == [[0]] * 12 and summary.backend_rows == 15


# ----------------------------------------------------------------------------- live sources


def test_udp_stream_cli_against_the_test_sender(recording, sharp_onnx, references, tmp_path):
    port = ls.free_udp_port()
    sender = threading.Thread(target=lambda: (ls.wait_for_listener(port), ls.send_mpegts(recording, f"udp://127.0.0.1:{port}?pkt_size=1316")))
    sender.start()
    out, summary_path = tmp_path / "events.jsonl", tmp_path / "summary.json"
    result = cli("stream", f"udp://127.0.0.1:{port}", "-m", str(sharp_onnx), "-o", str(out), "--timeout", "1.5",
                 "--summary", str(summary_path))  # the default hop: 2 segments
    sender.join()
    assert result.returncode == 0, result.stderr
    assert "no data for 1.5 s" in result.stderr and "events over" in result.stdout
    events, summary = read_events(out), json.loads(summary_path.read_text())
    assert out.read_text().endswith("\n") and summary["events"] == len(events) and summary["epochs"] == 1
    # every window was either reported or skipped (a loaded machine); frame 0 may be lost on joining a stream
    assert len(events) + summary["skipped_windows"] in (windows_of(117, 2 * L), windows_of(116, 2 * L))
    assert all(b["window"] > a["window"] and b["t_start"] > a["t_start"] for a, b in itertools.pairwise(events))
    # probabilities over each window equal the lossless file's, within the codecs' loss (mpeg2video + mp2)
    check_close(events, best_fit(events, recording, "two", references, 2 * L), atol=0.02)


def test_a_source_that_stops_mid_stream_ends_after_the_timeout(recording, backend, face_detector):
    port = ls.free_udp_port()
    sender = threading.Thread(target=lambda: (ls.wait_for_listener(port), ls.send_mpegts(recording, f"udp://127.0.0.1:{port}", stop_after=2.0)))
    sender.start()
    events, summary = stream(SourceSpec(f"udp://127.0.0.1:{port}"), backend, face_detector, hop=L, timeout=1.0)
    sender.join()
    assert "no data for 1 s: the source stopped or was lost" in summary.ended
    assert events and events[-1]["t_end"] <= 2.0 + 0.05 and summary.stream_s < 2.1
    assert summary.wall_s < 30  # ended, instead of waiting for ever


def test_reconnect_starts_a_new_grid_and_never_mixes_the_two_sides(hap_clip_path, neu_clip_path, backend, face_detector, references):
    hap, neu = ls.load([hap_clip_path]), ls.load([neu_clip_path])  # 1.87 s, then 2.0 s after a break
    port = ls.free_udp_port()
    stop = threading.Event()

    def send_twice() -> None:
        for clip, pause in ((hap, 2.0), (neu, 0.5)):
            ls.wait_for_listener(port)
            ls.send_mpegts(clip, f"udp://127.0.0.1:{port}")
            time.sleep(pause)  # the source is gone for longer than the timeout; then the last windows are written
        stop.set()

    sender = threading.Thread(target=send_twice)
    sender.start()
    sink = Collect()
    events, summary = stream(SourceSpec(f"udp://127.0.0.1:{port}"), backend, face_detector, sink=sink, hop=L, timeout=1.0,
                             reconnect=True, stop=stop)
    sender.join()
    assert summary.ended == "interrupted" and summary.reconnects >= 1 and summary.epochs == 2
    first, second = [e for e in events if e["epoch"] == 0], [e for e in events if e["epoch"] == 1]
    assert first and second and events == first + second
    assert second[0]["t_start"] >= first[-1]["t_end"]  # the new grid starts after the old one's last window
    walls = [datetime.fromisoformat(e["t_wall_end"]).timestamp() for e in events]
    assert walls == sorted(walls)
    # on the wall clock an event is out d/2 - L/2 = 0.48 s after its window's end (it waits for the sound of its last
    # segment), plus the work; t_wall_end set by the first frame would be late by what FFmpeg read while opening
    # (not the windows whose last sound would come after the sender's end: they wait for the 2 s skew rule)
    ends = {0: first[0]["t_start"] + hap.duration, 1: second[0]["t_start"] + neu.duration}
    after = [written - wall for written, wall, e in zip(sink.wall, walls, events) if e["t_end"] + 0.48 <= ends[e["epoch"]]]
    assert len(after) >= 2 and 0.3 < min(after) and max(after) < 3.0, after
    assert {e["person"] for e in events} == {0}  # the same face in the same place keeps its number
    # after the reconnect the windows are those of the second clip alone (a window with the first clip's segments
    # or sound would be off by far more than the codecs' loss)
    check_close(second, best_fit(second, neu, "neu", references, L), atol=0.02)
    check_close(first, best_fit(first, hap, "hap", references, L), atol=0.02)


def test_a_network_stream_that_ends_ends_the_run(recording, backend, face_detector, tmp_path):
    ls.send_mpegts(recording, str(tmp_path / "two.ts"), realtime=False)  # MPEG-TS served over HTTP, then EOF
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/two.ts"
        events, summary = stream(SourceSpec(url), backend, face_detector, realtime=True)
        server.shutdown()
    assert summary.ended == "end of stream" and len(events) + summary.skipped_windows == windows_of(117, 2 * L)


def _rtsp_missing() -> str | None:
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3 (GStreamer's Python bindings live in the system python)"
    check = subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), "--check"], capture_output=True, text=True, check=False)
    return None if check.returncode == 0 else (check.stdout.strip() or check.stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_rtsp_from_a_real_gstreamer_server(recording, backend, face_detector, references, tmp_path):
    missing = _rtsp_missing()
    if missing:
        pytest.skip(f"no RTSP server here: {missing} (apt-get install python3-gst-1.0 gir1.2-gst-rtsp-server-1.0 "
                    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)")
    mp4 = ls.write_mp4(recording, tmp_path / "two.mp4")
    port = ls.free_udp_port()
    server = subprocess.Popen(["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(mp4), str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("ready"), server.stderr
        source = SourceSpec(f"rtsp://127.0.0.1:{port}/cam", options={"rtsp_transport": "tcp"})
        events, summary = stream(source, backend, face_detector, hop=L, realtime=True, timeout=3.0)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert summary.epochs == 1 and summary.dropped_frames == 0
    assert len(events) + summary.skipped_windows == windows_of(117, L) and {e["person"] for e in events} == {0}
    walls = [e["t_wall_end"] for e in events]
    assert walls == sorted(walls) and len(set(walls)) == len(walls)
    # the same numbers as the lossless file, within the loss of H.264 (crf 12) + AAC and of the sound's last frame, which
    # RTP leaves out (0.021 seen). The camera's first frame may come before its clock is known: it is left out, and the
    # grid starts a frame later.
    check_close(events, best_fit(events, recording, "two", references, L), atol=0.03)


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict[str, str]:
    """An environment where the training side cannot be imported, as on a device with the runtime-only install."""
    root = tmp_path_factory.mktemp("blocked")
    for name in ("torch", "torchvision", "facenet_pytorch", "librosa", "onnx"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked: the runtime must not need it')\n")
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONNOUSERSITE": "1"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_stream_ends_cleanly(signum, clip_file, sharp_onnx, no_torch, tmp_path):
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge_emotion", "stream", str(clip_file), "--realtime", "-m", str(sharp_onnx),
                             "-o", str(out), "--hop", "0.32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=no_torch)  # without torch: the stream path is the runtime's
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "ended: interrupted" in stdout and "latency ms p50" in stdout
    text = out.read_text()
    assert text.endswith("\n") and len(read_events(out)) == text.count("\n") >= 1  # whole lines only
    assert len(read_events(out)) < 9  # stopped before the end of the 3.9 s stream


def test_overload_skips_to_the_newest_window_and_latency_stays_bounded(clip_file, backend, face_detector):
    slow = SlowBackend(backend, seconds=0.5)  # 2 s for a window's first N crops; a window is due every 0.32 s
    sink = Collect()
    events, summary = stream(SourceSpec(str(clip_file)), slow, face_detector, sink=sink, hop=L, realtime=True)
    assert summary.ended == "end of stream"
    # each window reported was the newest complete one when the loop chose it (right after the previous event), so
    # it had waited less than a hop for that (+ slack for frames delivered late); not the last ones, which no newer
    # window follows. Reporting every window in turn would leave each waiting 0.18 s longer than the one before.
    arrived = [w - e["latency_ms"] / 1000 for w, e in zip(sink.written, events)]  # the window's last input arrived
    waited = [begun - arrival for begun, arrival, e in zip(sink.written, arrived[1:], events[1:])
              if e["t_end"] + L <= summary.stream_s]
    assert waited and max(waited) < L + 0.5, waited
    assert len(events) + summary.skipped_windows == 9 and summary.skipped_windows > 0
    # the segments only skipped windows needed were never computed; the frames no reported window covers are dropped
    assert summary.segments < 12 and summary.backend_rows == sum(slow.rows[1:]) < 12  # rows[0]: the warm-up
    assert summary.dropped_frames > 0 and events[-1]["dropped_frames"] == summary.dropped_frames
    assert [e["dropped_frames"] for e in events] == sorted(e["dropped_frames"] for e in events)  # cumulative
    check_margin(summary)
    assert summary.stages["inference"] >= 0.5 * summary.backend_rows  # the backend's sleep counts as inference time


def test_lavfi_stands_in_for_a_camera_and_a_separate_microphone(backend, face_detector):
    camera = SourceSpec("testsrc=size=320x240:rate=15", "lavfi")
    microphone = SourceSpec("sine=frequency=440:sample_rate=44100", "lavfi")
    events, summary = stream(camera, backend, face_detector, audio=microphone, realtime=True, duration=2.0)
    assert summary.ended == "--duration 2 s reached"
    assert len(events) + summary.skipped_windows == 2 and events  # windows ending by 2 s at the default hop 0.64 s
    # a test pattern has no face: one event per window on centre crops, person null; the tone is sound
    assert all(e["faceless"] == N and e["silent"] == 0 and e["person"] is None for e in events)


# ----------------------------------------------------------------------------- mistakes


def test_bad_sources_and_options_end_in_one_line(sharp_onnx, clip_file):
    result = cli("stream", "/no/such/clip.mp4", "-m", str(sharp_onnx))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "/no/such/clip.mp4: no such file" in result.stderr and "Traceback" not in result.stderr
    runner = CliRunner()
    silent_port = ls.free_udp_port()
    quiet = runner.invoke(app, ["stream", f"udp://127.0.0.1:{silent_port}", "-m", str(sharp_onnx), "--timeout", "0.5"])
    assert isinstance(quiet.exception, SourceError) and "no data within 0.5 s" in str(quiet.exception)
    for args, message in (
        (["--hop", "5"], "--hop must be positive and at most the window"),
        (["--hop", "0.5"], "hop 0.5 s is not a multiple of the segment length 0.32 s (window 1.28 s / N = 4)"),
        (["--window", "2", "--hop", "0.3"], "hop 0.3 s is not a multiple of the segment length 0.5 s"),
        (["-O", "novalue"], "expected KEY=VALUE"),
        (["--reconnect"], "--reconnect is for network sources"),
    ):
        bad = runner.invoke(app, ["stream", str(clip_file), "-m", str(sharp_onnx), *args])
        assert bad.exit_code == 2 and message in " ".join(bad.output.replace("│", " ").split()), bad.output
