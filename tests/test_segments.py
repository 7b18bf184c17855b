"""segments: clip -> N face crops + N spectrograms, the one path shared by training and scoring."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import tone, write_video
from scenes import Placement, compose, inside, planned_frames

from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import extract, extract_people, plan_clip


def test_extract_real_clip(hap_clip_path, face_detector):
    config = PreprocessConfig(n_segments=10)
    clip = open_clip(hap_clip_path)
    segments = plan_clip(clip, config)
    inputs = extract(clip, segments, config, detector=face_detector)
    assert inputs.faces.shape == (10, 3, 224, 224) and inputs.faces.dtype == np.float32
    assert inputs.spectrograms.shape == (10, 1, 192, 120) and np.isfinite(inputs.spectrograms).all()
    assert inputs.faceless == 0 and inputs.silent == 0
    assert -1.0 <= inputs.faces.min() and inputs.faces.max() <= 1.0
    # the same boxes given back (training from the cache) give the same inputs: one code path
    again = extract(clip, segments, config, boxes=inputs.boxes)
    np.testing.assert_array_equal(again.faces, inputs.faces)
    np.testing.assert_array_equal(again.spectrograms, inputs.spectrograms)


def test_train_mode_plans_vary_with_the_seed(hap_clip_path):
    config = PreprocessConfig(n_segments=5)
    clip = open_clip(hap_clip_path)
    a = plan_clip(clip, config, "train", np.random.default_rng(0))
    assert a == plan_clip(clip, config, "train", np.random.default_rng(0))
    assert a != plan_clip(clip, config, "train", np.random.default_rng(1))


def test_faceless_short_video_falls_back_to_centre_crops(tmp_path, face_detector):
    path = write_video(tmp_path / "blank.mp4", audio=tone(0.5))  # 5 grey frames, 0.5 s: shorter than d
    config = PreprocessConfig(n_segments=10)
    clip = open_clip(path)
    inputs = extract(clip, plan_clip(clip, config), config, detector=face_detector)
    assert inputs.faces.shape[0] == 10 and inputs.faceless == 10
    assert inputs.boxes == [None] * 10
    assert np.allclose(inputs.faces, 128 / 255 * 2 - 1, atol=0.02)  # grey everywhere


def test_extract_needs_exactly_one_source_of_boxes(hap_clip_path, face_detector):
    config = PreprocessConfig(n_segments=2)
    clip = open_clip(hap_clip_path)
    with pytest.raises(ValueError):
        extract(clip, plan_clip(clip, config), config)
    with pytest.raises(ValueError):
        extract(clip, plan_clip(clip, config), config, detector=face_detector, boxes=[None, None])


def test_config_round_trip():
    config = PreprocessConfig(n_segments=3)
    assert PreprocessConfig.from_dict(config.to_dict()) == config


@pytest.fixture(scope="module")
def two_people_video(tmp_path_factory, hap_clip_path, neu_clip_path):
    """A 1280x720, 1 s video of two people side by side (the larger on the left); the right one is gone on frames 3-4."""
    hap, neu = planned_frames(hap_clip_path), planned_frames(neu_clip_path)
    left, right = Placement(hap, 110, 150, 20), Placement(neu, 70, 300, 760)
    frames = compose([left, right], 10, 1280, 720)
    frames[3:5] = compose([left], 2, 1280, 720)
    path = write_video(tmp_path_factory.mktemp("people") / "two.mp4", frames, fps=10, audio=tone(1.0))
    return path, left.rect(), right.rect()


def test_extract_people_one_set_of_inputs_per_person(two_people_video, face_detector):
    path, left, right = two_people_video
    config = PreprocessConfig(n_segments=10)
    clip = open_clip(path)
    segments = plan_clip(clip, config)
    everyone = extract_people(clip, segments, config, face_detector, "all")
    assert [p.person for p in everyone] == [0, 1]
    assert everyone[0].spectrograms is everyone[1].spectrograms  # computed once per clip
    assert all(inside(b, left) for b in everyone[0].boxes) and all(inside(b, right) for b in everyone[1].boxes)
    assert everyone[0].faceless == 0 and everyone[0].detected == [True] * 10
    # the right person is missing on frames 3-4: they borrow their own nearest box, never the left person's
    assert everyone[1].faceless == 2 and everyone[1].detected == [True] * 3 + [False] * 2 + [True] * 5
    assert everyone[1].boxes[3] == everyone[1].boxes[2] and everyone[1].boxes[4] == everyone[1].boxes[5]
    largest = extract_people(clip, segments, config, face_detector, "largest")
    assert len(largest) == 1 and largest[0].person == 0 and largest[0].boxes == everyone[0].boxes
    np.testing.assert_array_equal(largest[0].faces, everyone[0].faces)
    # extract with a detector (what scoring calls today) is the largest person
    single = extract(clip, segments, config, detector=face_detector)
    assert single.person == 0 and single.boxes == everyone[0].boxes
    with pytest.raises(ValueError, match="largest"):
        extract_people(clip, segments, config, face_detector, "biggest")  # type: ignore[arg-type]


def test_a_small_face_in_hd_is_found_in_every_segment(tmp_path, hap_clip_path, face_detector):
    """1920x1080 with a ~58 px face: found on every planned frame at full resolution; the old 320 px downscale
    never looked for faces that small."""
    frames = compose([Placement(planned_frames(hap_clip_path), 58, 600, 1300)], 10, 1920, 1080)
    path = write_video(tmp_path / "hd.mp4", frames, fps=10, audio=tone(1.0))
    config = PreprocessConfig(n_segments=10)
    clip = open_clip(path)
    inputs = extract(clip, plan_clip(clip, config), config, detector=face_detector)
    assert inputs.faceless == 0
    assert all(50 < b[2] - b[0] < 70 for b in inputs.boxes)
    old = replace(config.face, detect_max_side=320, detect_every=1)
    assert extract(clip, plan_clip(clip, config), config, detector=FaceDetector(old)).faceless == 10


def test_prepare_caches_the_boxes_scoring_tracks(tmp_path, hap_clip_path, neu_clip_path, face_detector):
    """One face implementation: the prepare cache's boxes (track_clip, every frame planned here) are the tracked boxes
    of the person largest over the clip that scoring crops; a larger face on the first frames only never takes over."""
    from edge_emotion.toolchain.train.box_cache import track_clip

    steady, glimpse = Placement(planned_frames(hap_clip_path), 90, 150, 20), Placement(planned_frames(neu_clip_path), 120, 200, 660)
    frames = compose([steady], 10, 1280, 720)
    frames[:3] = compose([steady, glimpse], 3, 1280, 720)
    clip = open_clip(write_video(tmp_path / "glimpse.mp4", frames, fps=10, audio=tone(1.0)))
    planned, boxes, detected = track_clip(clip, face_detector, clip.frame_count)  # [F], [F, 4], [F]
    config = PreprocessConfig(n_segments=clip.frame_count)
    scored = extract_people(clip, plan_clip(clip, config), config, face_detector, "largest")[0]
    assert detected.all() and planned.tolist() == [s.frame for s in scored.segments] == list(range(clip.frame_count))
    np.testing.assert_array_equal(boxes, np.array(scored.boxes, np.float32))
    assert all(inside(b, steady.rect()) for b in boxes)
