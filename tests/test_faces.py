"""faces: MTCNN boxes on real CREMA-D frames, the no-face policy, crops and normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emotion.decode import open_clip, read_frames
from edge_emotion.faces import (
    FaceDetector,
    FaceParams,
    box_iou,
    crop_face,
    downscale,
    fill_missing,
    normalise_faces,
)


@pytest.fixture(scope="module")
def real_frames(hap_clip_path):
    clip = open_clip(hap_clip_path)
    return list(read_frames(clip, [0, 28, 55]).values())


def test_face_box_on_real_clip_is_central_and_face_sized(face_detector, real_frames):
    boxes = face_detector.detect(real_frames)
    assert all(b is not None for b in boxes)
    for x1, y1, x2, y2 in boxes:
        # CREMA-D: 480x360 frame, actor centred, face about 100-130 px wide
        assert 180 < (x1 + x2) / 2 < 300 and 90 < (y1 + y2) / 2 < 200
        assert 70 < x2 - x1 < 150 and 90 < y2 - y1 < 170


def test_no_face_on_a_blank_frame(face_detector):
    assert face_detector.detect([np.zeros((360, 480, 3), np.uint8)]) == [None]


@pytest.mark.parametrize("max_side", [320, 240])
def test_downscaled_detection_agrees_with_full_resolution(real_frames, max_side):
    full_resolution = FaceDetector(FaceParams(detect_max_side=0))
    small = FaceDetector(FaceParams(detect_max_side=max_side))
    for full, fast in zip(full_resolution.detect(real_frames), small.detect(real_frames)):
        assert fast is not None
        assert box_iou(full, fast) > 0.8


def test_detector_speedups_keep_facenets_own_boxes(real_frames):
    """channels_last and the batched call are speed levers only: plain facenet MTCNN finds the same boxes."""
    from facenet_pytorch import MTCNN

    params = FaceParams(detect_max_side=0)
    plain = MTCNN(keep_all=False, min_face_size=params.min_face_size)
    for frame, ours in zip(real_frames, FaceDetector(params).detect(real_frames)):
        theirs, _ = plain.detect(frame[None])  # [1, faces, 4]
        np.testing.assert_allclose(ours, np.asarray(theirs[0][0], dtype=float), atol=1e-2)


@pytest.mark.parametrize("scale", [320 / 480, 240 / 480, 0.37])
def test_downscale_gives_pils_bilinear_pixels(real_frames, scale):
    from PIL import Image

    frames = np.stack(real_frames)  # [F, 360, 480, 3]
    got = downscale(frames, scale)
    h, w = round(360 * scale), round(480 * scale)
    want = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    assert got.shape == want.shape == (len(frames), h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1


def test_fill_missing_borrows_the_nearest_detected_box():
    a, b = (0.0, 0.0, 10.0, 10.0), (5.0, 5.0, 15.0, 15.0)
    filled, missing = fill_missing([None, a, None, None, b], [0, 10, 20, 33, 40])
    assert filled == [a, a, a, b, b] and missing == 3
    assert fill_missing([None, None], [0, 1]) == ([None, None], 2)


def test_crop_is_square_sized_and_centred_on_the_box():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 90:110] = 255  # a white 20x20 "face"
    params = FaceParams(size=32, margin=1.0)  # 40 px square around the face
    crop = crop_face(frame, (90, 40, 110, 60), params)
    assert crop.shape == (32, 32, 3)
    assert crop[16, 16].tolist() == [255, 255, 255] and crop[2, 2].tolist() == [0, 0, 0]


def test_crop_past_the_frame_edge_is_zero_padded_and_none_means_centre():
    frame = np.full((50, 80, 3), 200, np.uint8)
    crop = crop_face(frame, (-20, -20, 10, 10), FaceParams(size=20, margin=0.0))
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]
    assert np.all(crop_face(frame, None, FaceParams(size=20)) == 200)  # centre square lies inside


def test_normalise_faces_layout_and_range():
    crops = np.stack([np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)])
    x = normalise_faces(crops, FaceParams())
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    assert np.all(x[0] == -1.0) and np.all(x[1] == 1.0)
