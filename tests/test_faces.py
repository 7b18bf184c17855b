"""faces: MTCNN boxes on real CREMA-D frames, crops and normalisation (the no-face policy: test_tracks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_emotion.config import FaceParams
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.faces import (
    FaceDetector,
    box_iou,
    crop_face,
    downscale,
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


@pytest.fixture(scope="module")
def parity_images(hap_clip_path, neu_clip_path):
    """What the detector sees at the default settings (full resolution): real frames of both fixture clips, drawn
    faces and frames without a face."""
    from edge_emotion.toolchain.synth.face import draw_face, random_look

    frames = []
    for path in (hap_clip_path, neu_clip_path):
        clip = open_clip(path)
        frames += list(read_frames(clip, range(0, clip.frame_count, 6)).values())
    rng = np.random.default_rng(7)
    frames += [draw_face(random_look(rng, 480, 360), k % 3, 0.3 * (k % 4), 480, 360) for k in range(12)]
    frames += [np.zeros((360, 480, 3), np.uint8), np.full((360, 480, 3), 128, np.uint8)]
    frames += [rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)]
    return np.stack(frames)  # [F, 360, 480, 3]


def test_packaged_detector_finds_facenets_boxes(parity_images):
    """The ONNX nets + numpy cascade against facenet-pytorch's MTCNN at the same settings (issue 12's bar:
    mean IoU >= 0.99, min >= 0.95, the same frames with and without a face)."""
    from facenet_pytorch import MTCNN

    from edge_emotion.detector.mtcnn import CascadeSettings, Mtcnn

    params = FaceParams()
    theirs, _ = MTCNN(keep_all=False, min_face_size=params.min_face_size).detect(parity_images)
    ours = Mtcnn.open(CascadeSettings(min_face=params.min_face_size)).detect(parity_images)
    assert [t is None for t in theirs] == [len(o) == 0 for o in ours]
    ious = [box_iou(tuple(np.asarray(t[0], float)), tuple(o[0, :4].astype(float))) for t, o in zip(theirs, ours) if t is not None]
    assert len(ious) >= 30 and sum(t is None for t in theirs) >= 3
    assert np.mean(ious) >= 0.99 and min(ious) >= 0.95, (np.mean(ious), min(ious))


def test_face_detector_never_imports_torch(hap_clip_path):
    """The runtime detector is ONNX Runtime + numpy: a fresh process that detects faces has no torch in it."""
    import subprocess
    import sys

    code = (
        "import sys; from edge_emotion.io.decode import open_clip, read_frames; from edge_emotion.preprocess.faces import FaceDetector; "
        f"c = open_clip({str(hap_clip_path)!r}); f = list(read_frames(c, [10, 40]).values()); "
        "b = FaceDetector().detect(f); assert all(x is not None for x in b), b; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("scale", [320 / 480, 240 / 480, 0.37])
def test_downscale_gives_pils_bilinear_pixels(real_frames, scale):
    from PIL import Image

    frames = np.stack(real_frames)  # [F, 360, 480, 3]
    got = downscale(frames, scale)
    h, w = round(360 * scale), round(480 * scale)
    want = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])
    assert got.shape == want.shape == (len(frames), h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1


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
