"""plan: N segments, ordered, in bounds, deterministic in test mode, seeded in train mode."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.preprocess.plan import Segment, plan_segments


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("frame_count", [1, 5, 56, 300])
def test_plan_properties(n, frame_count):
    fps = 29.97
    for mode, rng in (("test", None), ("train", np.random.default_rng(1))):
        plan = plan_segments(n, FrameTimes.constant(frame_count, fps), mode, rng, jitter=0.01)
        assert len(plan) == n
        frames = [s.frame for s in plan]
        assert frames == sorted(frames)
        assert all(0 <= f < frame_count for f in frames)
        for s in plan:
            bound = 0.01 + 1e-12 if mode == "train" else 0.0
            assert abs(s.centre - s.frame / fps) <= bound


def test_test_mode_takes_middle_frames_and_is_deterministic():
    plan = plan_segments(4, FrameTimes.constant(40, 10.0), "test")
    assert plan == [Segment(5, 0.5), Segment(15, 1.5), Segment(25, 2.5), Segment(35, 3.5)]
    assert plan == plan_segments(4, FrameTimes.constant(40, 10.0), "test")


def test_train_mode_frame_stays_inside_its_segment_and_is_seeded():
    a = plan_segments(10, FrameTimes.constant(100, 25.0), "train", np.random.default_rng(7))
    b = plan_segments(10, FrameTimes.constant(100, 25.0), "train", np.random.default_rng(7))
    c = plan_segments(10, FrameTimes.constant(100, 25.0), "train", np.random.default_rng(8))
    assert a == b and a != c
    assert [s.frame // 10 for s in a] == list(range(10))


def test_train_mode_covers_each_segment_uniformly():
    rng = np.random.default_rng(0)
    seen = {f for _ in range(300) for f in (s.frame for s in plan_segments(2, FrameTimes.constant(8, 8.0), "train", rng))}
    assert seen == set(range(8))


def test_fewer_frames_than_segments_still_gives_n():
    plan = plan_segments(10, FrameTimes.constant(3, 30.0), "test")
    assert len(plan) == 10 and {s.frame for s in plan} == {0, 1, 2}


def test_invalid_arguments():
    with pytest.raises(ValueError):
        plan_segments(0, FrameTimes.constant(10, 30.0))
    with pytest.raises(ValueError):
        plan_segments(3, FrameTimes.constant(0, 30.0))
    with pytest.raises(ValueError, match="rng"):
        plan_segments(3, FrameTimes.constant(10, 30.0), "train")


@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0])
def test_constant_rate_plan_is_the_papers_frame_index_plan(fps):
    """Time is the timestamp now; on a constant-rate file that gives the frame-index plan: the middle frame
    floor((i + 1/2) F / N) of each of N equal spans (in integers: the float rule before timestamps floored an exact
    middle such as 14.0 of frames 11.2-16.8 to 13 at F = 56, N = 10), its audio centred at frame / fps."""
    for frame_count in range(1, 400):
        for n in (1, 4, 10):
            times = FrameTimes.constant(frame_count, fps)
            frames = [min((2 * i + 1) * frame_count // (2 * n), frame_count - 1) for i in range(n)]
            assert [s.frame for s in plan_segments(n, times)] == frames, (frame_count, n)
            assert [s.centre for s in plan_segments(n, times)] == [f / fps for f in frames]


def test_variable_rate_plan_takes_the_frame_on_screen_and_its_time():
    """Frames 33 ms apart, then 120 ms apart (a phone's variable rate): each segment's frame is the one shown at
    its instant (timestamp within that frame's interval of it) and the audio is centred on that frame's time."""
    t = np.concatenate([np.arange(30) / 30, 1.0 + np.arange(1, 30) * 0.12])
    times = FrameTimes(t, 30.0)
    plan = plan_segments(10, times)
    edges = np.linspace(0.0, times.duration, 11)
    for s, instant in zip(plan, (edges[:-1] + edges[1:]) / 2):
        assert t[s.frame] <= instant < t[s.frame] + times.interval(s.frame)
        assert s.centre == t[s.frame] and s.video
    index_plan = [int(np.floor((i + 0.5) * len(t) / 10)) for i in range(10)]  # the frame-index rule's frames
    assert max(abs(t[f] - c) for f, c in zip(index_plan, (edges[:-1] + edges[1:]) / 2)) > 0.9  # what it got wrong


def test_a_segment_inside_a_hole_in_the_video_is_marked_without_video():
    t = np.concatenate([np.arange(60) / 30, 12.0 + np.arange(60) / 30])  # 0-2 s, a 10 s hole, 12-14 s
    plan = plan_segments(7, FrameTimes(t, 30.0))  # instants 1, 3, 5, ... 13 s
    assert [s.video for s in plan] == [True, False, False, False, False, False, True]
    assert [s.frame for s in plan] == [30, 59, 59, 59, 59, 59, 90]  # in the hole: the last frame before it, flagged
