"""segments: clip -> N face crops + N spectrograms, the one path shared by training and scoring."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import tone, write_video

from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.segments import detect_every, extract, plan_clip


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


def test_strided_detection_reuses_the_nearest_detected_box(hap_clip_path, face_detector):
    clip = open_clip(hap_clip_path)
    config = PreprocessConfig(n_segments=5)
    decoded = read_frames(clip, [s.frame for s in plan_clip(clip, config)])
    frames = [decoded[i] for i in sorted(decoded)]
    every = face_detector.detect(frames)
    strided = detect_every(face_detector, frames, 2)  # detects frames 0, 2, 4

    def same(a, b):  # MTCNN's boxes move by a pixel with the batch it runs in
        return np.allclose(a, b, atol=2.0)

    assert same(strided[0], every[0]) and same(strided[2], every[2]) and same(strided[4], every[4])
    assert strided[1] in (strided[0], strided[2]) and strided[3] in (strided[2], strided[4])
    config2 = replace(config, face=replace(config.face, detect_every=2))
    inputs = extract(clip, plan_clip(clip, config2), config2, detector=face_detector)
    assert inputs.boxes == strided and inputs.faceless == 0
