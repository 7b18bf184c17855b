"""plan: N segments, ordered, in bounds, deterministic in test mode, seeded in train mode."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emotion.preprocess.plan import Segment, plan_segments


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("frame_count", [1, 5, 56, 300])
def test_plan_properties(n, frame_count):
    fps = 29.97
    for mode, rng in (("test", None), ("train", np.random.default_rng(1))):
        plan = plan_segments(n, frame_count, fps, mode, rng, jitter=0.01)
        assert len(plan) == n
        frames = [s.frame for s in plan]
        assert frames == sorted(frames)
        assert all(0 <= f < frame_count for f in frames)
        for s in plan:
            bound = 0.01 + 1e-12 if mode == "train" else 0.0
            assert abs(s.centre - s.frame / fps) <= bound


def test_test_mode_takes_middle_frames_and_is_deterministic():
    plan = plan_segments(4, 40, 10.0, "test")
    assert plan == [Segment(5, 0.5), Segment(15, 1.5), Segment(25, 2.5), Segment(35, 3.5)]
    assert plan == plan_segments(4, 40, 10.0, "test")


def test_train_mode_frame_stays_inside_its_segment_and_is_seeded():
    a = plan_segments(10, 100, 25.0, "train", np.random.default_rng(7))
    b = plan_segments(10, 100, 25.0, "train", np.random.default_rng(7))
    c = plan_segments(10, 100, 25.0, "train", np.random.default_rng(8))
    assert a == b and a != c
    assert [s.frame // 10 for s in a] == list(range(10))


def test_train_mode_covers_each_segment_uniformly():
    rng = np.random.default_rng(0)
    seen = {f for _ in range(300) for f in (s.frame for s in plan_segments(2, 8, 8.0, "train", rng))}
    assert seen == set(range(8))


def test_fewer_frames_than_segments_still_gives_n():
    plan = plan_segments(10, 3, 30.0, "test")
    assert len(plan) == 10 and {s.frame for s in plan} == {0, 1, 2}


def test_invalid_arguments():
    with pytest.raises(ValueError):
        plan_segments(0, 10, 30.0)
    with pytest.raises(ValueError):
        plan_segments(3, 0, 30.0)
    with pytest.raises(ValueError, match="rng"):
        plan_segments(3, 10, 30.0, "train")
