"""`stream` on the segment grid: the grid on the stream clock, sound runs, the bounded buffer, person numbers,
event lines; a file (plain, paced, with a gap, with a newcomer) gives `score --window`'s numbers, each segment
computed once, a window the sum of its last N segments. Shared pieces: stream_helpers.py.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
from datetime import datetime
from pathlib import Path

import av
import live_sender as ls
import numpy as np
import pytest
import stream_helpers
from rich.console import Console
from stream_helpers import (
    FPS,
    WINDOW,
    Counting,
    L,
    N,
    by_window,
    check_close,
    check_margin,
    probs,
    stream,
    windows_of,
)

from edge_emotion import LABELS
from edge_emotion.cli.stream_cmds import live_view, summary_lines
from edge_emotion.config import SpectrogramParams
from edge_emotion.io.audio_runs import AudioRuns, mono_resampler
from edge_emotion.run.result import Live, window_result
from edge_emotion.run.score import ScoreOptions
from edge_emotion.stream import EventsFile, SourceSpec, read_events
from edge_emotion.stream.buffer import LiveBuffer
from edge_emotion.stream.events import EVENT_FIELDS
from edge_emotion.stream.window import EpochGrid, pick_slot
from edge_emotion.timeline.grid import make_grid
from edge_emotion.timeline.score import score_timelines

# the shared module-scoped fixtures: pytest finds fixtures among a module's attributes
sharp_onnx, backend, recording, clip_file, file_run, references = (stream_helpers.sharp_onnx, stream_helpers.backend, stream_helpers.recording, stream_helpers.clip_file, stream_helpers.file_run, stream_helpers.references)


def test_the_grid_on_the_stream_clock_is_the_files_grid_from_the_epochs_first_frame():
    grid = make_grid(N, WINDOW, 2 * L, FPS)  # segments of 9.59 frames, windows every 2 segments
    epoch = EpochGrid(grid, 10.0, SpectrogramParams())
    assert [epoch.slot(j) for j in range(12)] == pytest.approx(10.0 + (np.arange(12) + 0.5) * grid.segment_s)  # middles
    assert epoch.window_times(3) == pytest.approx((10.0 + 6 * L, 10.0 + 10 * L)) and epoch.segments(3) == range(6, 10)
    for j in range(12):  # a segment is whole once its last frame is there: the file's rule (segment_count)
        assert grid.segment_count((round((epoch.last_frame(j) - 10.0) * FPS) + 1) / FPS) == j + 1
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


def _resampled(frames):
    """[T] float32: one FFmpeg resampler (the settings of every reader) over the frames, flushed."""
    resampler = mono_resampler(16_000)
    return np.concatenate([out.to_ndarray().reshape(-1) for f in [*frames, None] for out in resampler.resample(f)])


def test_the_sound_is_resampled_in_runs_that_follow_each_other(recording):
    rate, chunk = ls.AUDIO_RATE, 1152
    frames = []
    for k, start in enumerate(range(0, 44_100, chunk)):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(recording.audio[None, start : start + chunk]), format="flt", layout="mono")
        frame.sample_rate = rate
        frames.append((start / rate + (3.0 if k >= 20 else 0.0), frame))  # 3 s of nothing before the 21st frame
    runs = AudioRuns(16_000, restart=True)
    pieces = [p for t, f in frames for p in runs.add(f, t)] + runs.flush()
    joined = np.concatenate([s for _, s in pieces])
    whole_first = _resampled([f for _, f in frames[:20]])  # one resampler over the first run
    second = [(a, s) for a, s in pieces if a >= 3 * 16_000]
    assert np.array_equal(joined[: len(whole_first)], whole_first)  # the very samples `score` resamples
    assert second[0][0] == round((3.0 + 20 * chunk / rate) * 16_000)  # the second run sits at its own time
    assert np.array_equal(np.concatenate([s for _, s in second]), _resampled([f for _, f in frames[20:]]))


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


def test_event_lines_are_whole_and_a_torn_last_line_is_left_out(tmp_path):
    path = tmp_path / "events.jsonl"
    events = EventsFile(path)
    for k in range(3):
        events.write(window_result(
            "stream", None, "udp://x", person=None, people=0, window=k, n_windows=None, t_start=k, t_end=k + 2.5,
            segment_probs=np.full((10, 6), 1 / 6), detected=[False] * 10, silent=0, labels=LABELS, live=Live(0, "t", 1.0, 0),
        ))
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


