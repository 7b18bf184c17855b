"""timeline: one segment grid over a recording, each segment once, windows as sums of N consecutive segments."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emotion.config import PreprocessConfig, SpectrogramParams
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.preprocess.plan import Segment, plan_segments
from edge_emotion.run.consensus import clip_probabilities, consensus
from edge_emotion.timeline.grid import (
    make_grid,
    plan_timeline,
    window_counts,
    window_probabilities,
    window_sums,
    windows_complete,
)
from edge_emotion.timeline.window_options import GridError, default_hop, default_window


def _frames(grid, count: int) -> list[int]:
    """The frames of a constant-rate recording's first `count` grid segments."""
    return [s.frame for s in plan_timeline(grid, FrameTimes.constant(1000, grid.fps)).segments[:count]]


def test_grid_frames_and_centres_are_the_middle_frames():
    grid = make_grid(4, window_s=1.0, hop_s=0.25, fps=20)  # L = 0.25 s = 5 frames
    assert (grid.segment_frames, grid.hop, grid.segment_s) == (5.0, 1, 0.25)
    assert _frames(grid, 5) == [2, 7, 12, 17, 22]
    assert plan_timeline(grid, FrameTimes.constant(100, 20)).segments[3] == Segment(17, 17 / 20)
    assert grid.window_times(2) == (0.5, 1.5)


def test_a_fractional_segment_takes_floor_of_its_middle():
    grid = make_grid(10, window_s=2.5, hop_s=0.5, fps=30)  # l = 7.5 frames, hop 2 segments
    assert (grid.segment_frames, grid.hop) == (7.5, 2)
    assert _frames(grid, 4) == [3, 11, 18, 26]  # floor(3.75), floor(11.25), ...
    assert plan_timeline(grid, FrameTimes.constant(100, 30)).segments[1].centre == pytest.approx(11 / 30)


def test_a_segment_length_that_is_whole_frames_up_to_rounding_is_snapped():
    grid = make_grid(10, window_s=1.0, hop_s=0.1, fps=30)  # 0.1 x 30 = 3.0000000000000004
    assert grid.segment_frames == 3.0
    assert grid.segment_count(1.0) == 10 and grid.window_count(1.0) == 1


@pytest.mark.parametrize(("fps", "n", "window", "hop"), [(20, 4, 1.0, 0.25), (20, 4, 1.0, 0.5), (25, 10, 2.0, 0.4), (30, 10, 2.0, 0.4)])
def test_each_window_is_the_plan_of_a_file_cut_to_it(fps, n, window, hop):
    grid = make_grid(n, window, hop, fps)
    frame_count = 12 * fps + 7
    timeline = plan_timeline(grid, FrameTimes.constant(frame_count, grid.fps))
    cut = plan_segments(n, FrameTimes.constant(int(n * grid.segment_frames), fps), "test")  # what predict plans for a file of exactly one window
    for w in timeline.windows:
        start = round(w.t_start * fps)  # the cut's first frame
        segs = timeline.segments[w.first : w.first + n]
        assert [s.frame - start for s in segs] == [c.frame for c in cut]
        assert [s.centre - w.t_start for s in segs] == pytest.approx([c.centre for c in cut], abs=1e-9)
        assert w.t_end - w.t_start == pytest.approx(window)
    assert timeline.windows[-1].t_end <= frame_count / fps
    assert [w.t_start for w in timeline.windows] == pytest.approx(np.arange(len(timeline.windows)) * hop)


def test_each_segment_is_planned_once_and_windows_share_them():
    grid = make_grid(10, 2.5, 0.25, 30)  # hop = one segment
    timeline = plan_timeline(grid, FrameTimes.constant(60 * 30, grid.fps))  # a minute: 240 segments
    assert len(timeline.segments) == 240 and len(timeline.windows) == 231
    assert timeline.grid_index == list(range(240))
    assert len({s.frame for s in timeline.segments}) == 240


def test_a_hop_longer_than_the_window_plans_no_segment_in_the_gaps():
    grid = make_grid(4, 1.0, 2.0, 20)  # windows of 4 segments every 8
    timeline = plan_timeline(grid, FrameTimes.constant(100, grid.fps))  # 20 segments: windows at 0, 8, 16
    assert [w.first for w in timeline.windows] == [0, 4, 8]
    assert timeline.grid_index == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]
    assert [(w.t_start, w.t_end) for w in timeline.windows] == [(0.0, 1.0), (2.0, 3.0), (4.0, 5.0)]


def test_the_tail_shorter_than_a_hop_is_in_no_window():
    grid = make_grid(4, 1.0, 0.5, 20)
    timeline = plan_timeline(grid, FrameTimes.constant(49, grid.fps))  # 2.45 s: 9 whole segments; windows at 0, 0.5, 1.0 s
    assert [(w.t_start, w.t_end) for w in timeline.windows] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0)]
    assert timeline.grid_index == list(range(8))


def test_hop_not_a_multiple_of_the_segment_length_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"hop 0\.3 s is not a multiple of the segment length 0\.25 s"):
        make_grid(10, 2.5, 0.3, 30)
    with pytest.raises(ValueError, match="0.1 s is not a multiple"):
        make_grid(10, 2.5, 0.1, 30)  # shorter than a segment
    with pytest.raises(ValueError, match="positive"):
        make_grid(10, 2.5, 0.0, 30)
    assert make_grid(10, 2.5, 0.75, 30).hop == 3
    with pytest.raises(GridError):  # the CLI turns exactly these into a bad option (exit 2)
        make_grid(4, 1.0, 0.3, 20)


def test_default_hop_is_the_multiple_of_the_segment_nearest_half_a_second():
    assert default_hop(0.25) == 0.5 and default_hop(0.32) == 0.64 and default_hop(1.0) == 1.0 and default_hop(0.1) == pytest.approx(0.5)


@pytest.mark.parametrize("frame_count", [1, 7, 19])
def test_a_recording_shorter_than_a_window_is_one_window_planned_as_score_plans_a_clip(frame_count):
    grid = make_grid(4, 1.0, 0.25, 20)  # a window is 20 frames
    timeline = plan_timeline(grid, FrameTimes.constant(frame_count, grid.fps))
    assert timeline.segments == plan_segments(4, FrameTimes.constant(frame_count, 20.0), "test")
    assert len(timeline.windows) == 1
    w = timeline.windows[0]
    assert (w.index, w.first, w.t_start, w.t_end) == (0, 0, 0.0, frame_count / 20)


def test_a_recording_of_exactly_one_window_is_one_grid_window():
    grid = make_grid(4, 1.0, 0.25, 20)
    timeline = plan_timeline(grid, FrameTimes.constant(20, grid.fps))
    assert len(timeline.windows) == 1 and timeline.segments == plan_segments(4, FrameTimes.constant(20, 20.0), "test")


def test_window_sums_equal_the_direct_consensus_of_each_window():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 6)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # [S, K]
    firsts = np.array([0, 3, 7, 40])
    sums = window_sums(probs, firsts, 10)  # [W, K]
    assert sums.shape == (4, 6)
    for w, f in enumerate(firsts):
        np.testing.assert_allclose(sums[w], consensus(probs[f : f + 10]), rtol=0, atol=1e-6)
    assert sums.sum(axis=1) == pytest.approx([10.0] * 4, abs=1e-5)  # each window's scores sum to N


def test_window_probabilities_and_counts_over_a_timeline():
    grid = make_grid(4, 1.0, 0.5, 20)
    timeline = plan_timeline(grid, FrameTimes.constant(70, grid.fps))  # 14 segments, windows every 2
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(6), size=len(timeline.segments)).astype(np.float32)  # [S, K]
    faceless = np.zeros(len(timeline.segments), bool)
    faceless[[0, 5, 6]] = True
    result = window_probabilities(probs, timeline)
    for w, span in enumerate(timeline.windows):
        np.testing.assert_allclose(result[w], clip_probabilities(probs[span.first : span.first + 4]), atol=1e-7)
    assert window_counts(faceless, timeline).tolist() == [1, 1, 2, 1, 0, 0]  # windows over segments 0-3, 2-5, 4-7, ...


def test_an_hour_of_segments_sums_without_drift():
    grid = make_grid(10, 2.5, 0.25, 30)
    timeline = plan_timeline(grid, FrameTimes.constant(3600 * 30, grid.fps))
    assert len(timeline.segments) == 14400 and len(timeline.windows) == 14391
    probs = np.random.default_rng(2).dirichlet(np.ones(6), size=14400).astype(np.float32)
    last = window_probabilities(probs, timeline)[-1]
    np.testing.assert_allclose(last, probs[-10:].sum(0) / 10, atol=1e-7)


def test_window_sums_refuse_windows_past_the_segments():
    with pytest.raises(ValueError, match="exceed 12 segments"):
        window_sums(np.ones((12, 6)), np.array([0, 4]), 10)
    assert window_sums(np.ones((3, 6)), np.array([], np.int64), 10).shape == (0, 6)


def test_windows_complete_once_their_last_segment_is_scored():
    timeline = plan_timeline(make_grid(4, 1.0, 0.5, 20), FrameTimes.constant(70, 20))
    assert windows_complete(timeline, 3) == []
    assert [w.index for w in windows_complete(timeline, 4)] == [0]
    assert [w.index for w in windows_complete(timeline, 9)] == [0, 1, 2]


def test_default_window_is_a_quarter_second_a_segment_and_at_least_one_audio_window():
    assert default_window(PreprocessConfig(n_segments=3, audio=SpectrogramParams(window_s=1.0))) == 1.0
    assert default_window(PreprocessConfig(n_segments=10)) == 2.5
    assert default_window(PreprocessConfig(n_segments=4)) == 1.28  # never shorter than one audio window


# ----------------------------------------------------------------------------- window rows

LABELS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]


def _scored(timeline):
    count = len(timeline.segments)
    probs = np.random.default_rng(3).dirichlet(np.ones(6), size=count).astype(np.float32)  # [S, K]
    detected = np.ones(count, bool)
    detected[[1, 6]] = False
    silent = np.zeros(count, bool)
    silent[9] = True
    boxes = [(10.04 + p, 20.0, 110.0, 130.06) for p in range(count)]
    return probs, boxes, detected, silent


def _file_rows(timeline, probs, boxes, detected, silent, person):
    """The one row builder's window rows (run/rows.py) of one person's scored segments over a one-chunk file."""
    from edge_emotion.preprocess.tracks import TrackStore
    from edge_emotion.run.codec import to_record
    from edge_emotion.run.result import FileKey
    from edge_emotion.run.rows import ChunkScores, FileScores, PersonScores, file_rows
    from edge_emotion.timeline.chunks import whole

    tracks = TrackStore()
    for p, (box, own) in enumerate(zip(boxes, detected)):
        if own and person is not None:
            tracks.add(p, {person: box})
    scores = {person: PersonScores(probs, list(boxes), np.asarray(detected, bool))}
    file = FileScores(0, timeline, [ChunkScores(whole(timeline), np.asarray(silent, bool), scores, tracks)])
    return [to_record(r) for rows in file_rows(FileKey("/v/a.mp4", 123, 456), file, LABELS, "all", "window") for r in rows]


def _window_rows():
    timeline = plan_timeline(make_grid(4, 1.0, 0.5, 20), FrameTimes.constant(70, 20))  # 14 segments, 6 windows
    probs, boxes, detected, silent = _scored(timeline)
    return timeline, probs, _file_rows(timeline, probs, boxes, detected, silent, 0)


def test_window_rows_hold_each_windows_consensus_counts_and_segments():
    timeline, probs, rows = _window_rows()
    assert [r["window"] for r in rows] == list(range(6))
    assert [(r["t_start"], r["t_end"]) for r in rows] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0), (2.5, 3.5)]
    for row, span in zip(rows, timeline.windows):
        expected = clip_probabilities(probs[span.first : span.first + 4])
        assert list(row["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
        assert row["label"] == LABELS[int(np.argmax(expected))]
        assert (row["path"], row["person"], row["people"], row["n_segments"], row["n_windows"], row["size_bytes"], row["mtime_ns"]) == (
            "/v/a.mp4", 0, 1, 4, 6, 123, 456)
        assert [s["segment"] for s in row["segments"]] == list(range(span.first, span.first + 4))
    assert [r["faceless"] for r in rows] == [1, 0, 1, 1, 0, 0]  # segments 1 and 6 had no face of their own
    assert [r["silent"] for r in rows] == [0, 0, 0, 1, 1, 0]  # segment 9
    assert [r["status"] for r in rows] == ["degraded", "ok", "degraded", "degraded", "degraded", "ok"]
    seg = rows[1]["segments"][0]  # grid segment 2: frame 12
    assert seg == {
        "segment": 2, "frame": 12, "time_s": 0.6, "audio_centre_s": 0.6, "box": [12.0, 20.0, 110.0, 130.1], "detected": True,
        "probabilities": {k: round(float(v), 6) for k, v in zip(LABELS, probs[2])}, "video": True,
    }


def test_a_window_without_anyone_has_one_centre_crop_row_with_person_empty():
    timeline = plan_timeline(make_grid(4, 1.0, 0.5, 20), FrameTimes.constant(70, 20))
    s = len(timeline.segments)
    rows = _file_rows(timeline, np.full((s, 6), 1 / 6, np.float32), [None] * s, np.zeros(s, bool), np.zeros(s, bool), None)
    row = rows[2]
    assert (row["window"], row["person"], row["people"], row["faceless"], row["status"]) == (2, None, 0, 4, "degraded")
    assert [s["box"] for s in row["segments"]] == [None] * 4


def test_csv_labels_reads_the_results_header_and_refuses_others():
    from edge_emotion.run.codec import csv_columns, csv_labels

    assert csv_labels(csv_columns(LABELS)) == LABELS
    assert csv_labels(["path", "person", "people", "window", "n_windows", "t_start", "t_end", "label", "HAP", "n_segments"]) is None
