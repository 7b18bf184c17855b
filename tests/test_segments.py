"""segments: clip -> N face crops + N spectrograms, the one path shared by training and scoring."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tone, write_video
from edge_emotion.decode import open_clip
from edge_emotion.segments import PreprocessConfig, extract, plan_clip


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
