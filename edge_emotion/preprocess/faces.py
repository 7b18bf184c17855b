"""Face boxes (MTCNN, as tracks) and 224x224 face crops.

No-face policy: a segment where a person's face was not found borrows that person's own
box by the one borrowing rule (preprocess/tracks.py); if no frame has a face, every
segment uses a centred square crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from edge_emotion.config import FaceParams
from edge_emotion.deps import require
from edge_emotion.detector.follow import FollowSettings
from edge_emotion.detector.tracker import Face, FaceTracker, TrackerSettings

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the full frame


class FaceDetector:
    """MTCNN (the packaged ONNX nets, edge_emotion.detector) on ONNX Runtime: boxes per frame, or faces as tracks."""

    def __init__(
        self, params: FaceParams = FaceParams(), device: str = "cpu", threads: int | None = None, nets: Path | None = None
    ) -> None:
        """`nets`: a folder of FP16 ONNX nets or TensorRT engines (edge_emotion.toolchain.export.detector_nets); default the
        packaged FP32 ONNX. `device` picks ONNX Runtime's provider (CUDA with onnxruntime-gpu) or the engines' GPU."""
        from edge_emotion.backends.onnxruntime_backend import available_providers, wanted_providers
        from edge_emotion.detector.mtcnn import CascadeSettings, Mtcnn

        ort = require("onnxruntime")
        providers = available_providers(wanted_providers("auto", device), ort.get_available_providers())
        self.params = params
        settings = CascadeSettings(min_face=float(params.min_face_size))
        self._mtcnn = Mtcnn.open(settings, providers, threads, nets, "cuda:0" if device in ("cpu", "auto") else device)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Box | None]:
        """Largest face box per [H, W, 3] uint8 frame by the full cascade on each, in full-frame pixels; None where no face."""
        if not frames:
            return []
        if len({f.shape for f in frames}) > 1:  # a stream that changes resolution: one call per frame
            return [self.detect([f])[0] for f in frames]
        scale = _detect_scale(frames[0].shape, self.params.detect_max_side)
        if min(frames[0].shape[:2]) * scale < self.params.min_face_size:
            return [None] * len(frames)  # smaller than the smallest face MTCNN looks for
        images = downscale(np.stack(frames), scale)  # [F, h, w, 3]
        found = self._mtcnn.detect(images)  # per frame [k, 5], largest first
        return [tuple(float(v) / scale for v in boxes[0, :4]) if len(boxes) else None for boxes in found]

    def tracker(self) -> FaceTracker:
        """A fresh tracker (one per clip or stream window) with this detector's nets, FaceParams.detect_every and .follow."""
        settings = TrackerSettings(detect_every=max(1, self.params.detect_every), follow=FollowSettings(method=self.params.follow))
        return FaceTracker(self._mtcnn, settings)

    def track(self, frames: Sequence[np.ndarray], tracker: FaceTracker | None = None) -> list[list[Face]]:
        """The faces on each [H, W, 3] uint8 frame, in time order, by person (edge_emotion.detector.tracker), full-frame pixels.

        A fresh tracker unless one is given (a caller that keeps identities across calls).
        """
        tracker = tracker or self.tracker()
        out: list[list[Face]] = []
        for frame in frames:
            scale = _detect_scale(frame.shape, self.params.detect_max_side)
            if min(frame.shape[:2]) * scale < self.params.min_face_size:
                out.append([])  # smaller than the smallest face MTCNN looks for
                continue
            faces = tracker.update(downscale(frame[None], scale)[0])
            out.append([replace(f, box=_scaled(f.box, 1.0 / scale)) for f in faces])
        return out


def _scaled(box: Box, factor: float) -> Box:
    x1, y1, x2, y2 = box
    return x1 * factor, y1 * factor, x2 * factor, y2 * factor


def _detect_scale(shape: tuple[int, ...], max_side: int) -> float:
    longest = max(shape[0], shape[1])
    return 1.0 if max_side <= 0 or longest <= max_side else max_side / longest


def downscale(frames: np.ndarray, scale: float) -> np.ndarray:
    """[F, H, W, 3] uint8 -> [F, h, w, 3] uint8 with PIL's bilinear (antialiased) resize."""
    if scale == 1.0:
        return frames
    _, h, w, _ = frames.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in frames])


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two boxes; 0 when either is missing (how the speed levers are judged)."""
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def crop_face(frame: np.ndarray, box: Box | None, params: FaceParams) -> np.ndarray:
    """A square crop around the box (centre square of the frame if None), zero-padded, [S, S, 3] uint8."""
    h, w = frame.shape[:2]
    if box is None:
        side = float(min(h, w))
        cx, cy = w / 2, h / 2
    else:
        x1, y1, x2, y2 = box
        side = max(x2 - x1, y2 - y1) * (1 + params.margin)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(side, 1.0)
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = int(round(side))
    square = np.zeros((n, n, 3), dtype=np.uint8)
    sx1, sy1, sx2, sy2 = max(left, 0), max(top, 0), min(left + n, w), min(top + n, h)
    if sx2 > sx1 and sy2 > sy1:
        square[sy1 - top : sy2 - top, sx1 - left : sx2 - left] = frame[sy1:sy2, sx1:sx2]
    return np.asarray(Image.fromarray(square).resize((params.size, params.size), Image.Resampling.BILINEAR))


def normalise_faces(crops: np.ndarray, params: FaceParams) -> np.ndarray:
    """[N, S, S, 3] uint8 crops -> [N, 3, S, S] float32, (x / 255 - mean) / std.

    One fused multiply-subtract per channel, written straight into the NCHW array: 7x faster than
    converting, normalising and transposing the whole batch in turn.
    """
    n, h, w, _ = crops.shape
    out = np.empty((n, 3, h, w), dtype=np.float32)
    for c in range(3):
        scale = np.float32(1.0 / (255.0 * params.std[c]))
        np.multiply(crops[..., c], scale, out=out[:, c])
        out[:, c] -= np.float32(params.mean[c] / params.std[c])
    return out
