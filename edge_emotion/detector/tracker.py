"""Faces as tracks: MTCNN's full cascade now and then, each face followed in between, people by box overlap.

Detecting every frame costs the whole pyramid over the whole frame each time; a face in the next frame is
near where it was, so the tracker runs the full cascade only

- on the first frame, and while there is no face to follow,
- on every `detect_every`-th frame, so that people who enter are found,
- on a frame where following lost a face (no box near it with ONet's face probability above its threshold),
  and on the frames after, until the face is found again or dropped (`max_misses` full detections in a row
  without it),

and follows every face from its last box on the others (detector.follow: the cascade restricted to its
neighbourhood, MTCNN's own box, or ONet alone, cheaper; TrackerSettings.follow.method).
A detection continues the track it overlaps most (IoU >= `match_iou`, greedy, best pairs first); one that
continues none starts a new track. Tracks are numbered 0, 1, 2 ... in order of first appearance (left to
right among faces first seen on the same frame): the `person` of every face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_emotion import defaults
from edge_emotion.detector.follow import FollowSettings, box_iou_matrix, follow
from edge_emotion.detector.mtcnn import Mtcnn


@dataclass(frozen=True)
class TrackerSettings:
    """When the full cascade runs and how detections become people."""

    detect_every: int = defaults.DETECT_EVERY_PLANNED  # full cascade on every k-th frame given to the tracker
    max_misses: int = defaults.TRACK_MAX_MISSES  # a track missing from this many full detections in a row is dropped
    match_iou: float = defaults.TRACK_MATCH_IOU  # a detection continues a track it overlaps at least this much
    follow: FollowSettings = field(default_factory=FollowSettings)


@dataclass(frozen=True)
class Face:
    """One person's face on one frame."""

    person: int  # the track: 0, 1, 2 ... in order of first appearance
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the frame
    score: float  # ONet's face probability


@dataclass
class Track:
    person: int
    box: np.ndarray  # [5] x1, y1, x2, y2, probability: where the face was last seen
    misses: int = 0  # full detections in a row that did not find it


def associate(tracks: np.ndarray, detections: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of tracks [T, >=4] and detections [D, >=4], best overlap first: (track, detection)."""
    if len(tracks) == 0 or len(detections) == 0:
        return []
    iou = box_iou_matrix(tracks, detections)  # [T, D]
    pairs: list[tuple[int, int]] = []
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        t, d = divmod(int(flat), iou.shape[1])
        if iou[t, d] < min_iou:
            break
        if all(t != pt and d != pd for pt, pd in pairs):
            pairs.append((t, d))
    return pairs


class FaceTracker:
    """Faces, with identities, frame after frame of one video (one clip, or one window of a stream)."""

    def __init__(self, mtcnn: Mtcnn, settings: TrackerSettings = TrackerSettings()) -> None:
        self.mtcnn = mtcnn
        self.settings = settings
        self.tracks: list[Track] = []
        self.frames_seen = 0
        self.detected_on: list[int] = []  # frames (0-based, in update order) on which the full cascade ran
        self._next_person = 0

    def update(self, frame: np.ndarray) -> list[Face]:
        """[H, W, 3] uint8, the next frame -> the faces found on it, by person."""
        index = self.frames_seen
        self.frames_seen += 1
        if self._detection_due(index):
            return self._detect(frame, index)
        found = follow(self.mtcnn, frame, np.stack([t.box for t in self.tracks]), self.settings.follow)  # [T, 5]
        lost = np.isnan(found[:, 0]) | self._duplicates(found)
        if lost.any():
            return self._detect(frame, index)  # find the lost face again on this very frame (or count its miss)
        for track, box in zip(self.tracks, found):
            track.box = box
        return [self._face(t) for t in self.tracks]

    def _detection_due(self, index: int) -> bool:
        return (
            not self.tracks
            or index - self.detected_on[-1] >= self.settings.detect_every
            or any(t.misses for t in self.tracks)
        )

    def _duplicates(self, found: np.ndarray) -> np.ndarray:
        """[T] bool: faces followed onto a face an earlier track also followed onto (two people merging)."""
        seen = ~np.isnan(found[:, 0])
        overlap = box_iou_matrix(np.nan_to_num(found), np.nan_to_num(found))
        return np.array([bool(seen[k] and np.any(seen[:k] & (overlap[k, :k] >= self.settings.match_iou))) for k in range(len(found))])

    def _detect(self, frame: np.ndarray, index: int) -> list[Face]:
        """Full cascade; detections continue tracks or start new ones; tracks not found miss once more."""
        detections = self.mtcnn.detect(frame[None])[0]  # [D, 5]
        self.detected_on.append(index)
        pairs = associate(np.stack([t.box for t in self.tracks]) if self.tracks else np.zeros((0, 5)), detections, self.settings.match_iou)
        matched = dict(pairs)
        for k, track in enumerate(self.tracks):
            if k in matched:
                track.box, track.misses = detections[matched[k]], 0
            else:
                track.misses += 1
        seen = [self.tracks[k] for k in sorted(matched)]
        self.tracks = [t for t in self.tracks if t.misses < self.settings.max_misses]
        taken = set(matched.values())
        for d in sorted((d for d in range(len(detections)) if d not in taken), key=lambda d: float(detections[d, 0])):
            track = Track(self._next_person, detections[d])
            self._next_person += 1
            self.tracks.append(track)
            seen.append(track)
        return [self._face(t) for t in sorted(seen, key=lambda t: t.person)]

    @staticmethod
    def _face(track: Track) -> Face:
        x1, y1, x2, y2, score = (float(v) for v in track.box)
        return Face(track.person, (x1, y1, x2, y2), score)
