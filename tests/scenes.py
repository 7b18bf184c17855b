"""Test scenes made from the CREMA-D fixture clips: an HD frame with a small face, several people side by side.

Each "person" is a fixture clip's planned frames, resized and pasted into a larger canvas at a fixed place,
so where each face may be is known exactly (its pasted rectangle) and a track that wanders to another
person is caught. The faces move as the actor does in the clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.segments import plan_clip

FACE_FRACTION = 95 / 480  # a CREMA-D face is ~95 px wide in its 480x360 frame


def planned_frames(path, n: int = 10) -> list[np.ndarray]:
    """The test-mode planned frames of a clip, [360, 480, 3] uint8 each, in plan order."""
    clip = open_clip(path)
    segments = plan_clip(clip, PreprocessConfig(n_segments=n))
    decoded = read_frames(clip, [s.frame for s in segments])
    return [decoded[s.frame] for s in segments]


@dataclass(frozen=True)
class Placement:
    """One person: whose frames, how wide their face is to be, where their frame goes (top-left), mirrored or not."""

    frames: Sequence[np.ndarray]
    face_px: float
    top: int
    left: int
    mirror: bool = False

    @property
    def scale(self) -> float:
        return self.face_px / (FACE_FRACTION * self.frames[0].shape[1])

    def rect(self) -> tuple[int, int, int, int]:
        """x1, y1, x2, y2 of the pasted frame in the canvas: this person's faces lie inside it."""
        h, w = self.frames[0].shape[:2]
        return self.left, self.top, self.left + round(w * self.scale), self.top + round(h * self.scale)

    def image(self, k: int) -> np.ndarray:
        x1, y1, x2, y2 = self.rect()
        frame = self.frames[k % len(self.frames)]
        frame = frame[:, ::-1] if self.mirror else frame
        return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((x2 - x1, y2 - y1), Image.Resampling.BILINEAR))


def compose(people: Sequence[Placement], count: int, width: int, height: int, grey: int = 96) -> np.ndarray:
    """[count, height, width, 3] uint8: every person pasted onto a grey canvas, frame k of each in frame k."""
    out = np.full((count, height, width, 3), grey, np.uint8)
    for k in range(count):
        for person in people:
            x1, y1, x2, y2 = person.rect()
            out[k, y1:y2, x1:x2] = person.image(k)
    return out


def inside(box: Sequence[float], rect: tuple[int, int, int, int]) -> bool:
    """The box's centre lies in the rectangle (the face belongs to the person pasted there)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return rect[0] <= cx <= rect[2] and rect[1] <= cy <= rect[3]
