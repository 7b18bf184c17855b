"""Follow known faces to the next frame: MTCNN's own cascade near each face ("cascade"), or ONet alone ("onet").

"cascade" (exact): MTCNN's box is the best-scoring of several ONet outputs, each from a candidate the
pyramid's grid proposed, so it jumps by IoU ~0.9 from frame to frame even on a still face. Running the
cascade on the pyramid levels whose 12 px window covers faces of 0.4-2.5x the previous box's side, over a
region around it, proposes the same candidates near the face as the whole frame does, so the followed box
is the one per-frame detection gives (on every frame of the fixture clips and of HD scenes with 45-80 px
faces; with 0.5-2x, faces of ~2 x min_face_size lost the smallest level and 10 of 72 boxes moved). Capping
the candidates (RNet's best 8, ONet's best 4) moved a third of the boxes. What it saves is the frame: a
summed-area table of the region and PNet on a few level windows instead of the whole pyramid. On an HD
frame with a small face that is ~5 % of a full detection; on a CREMA-D frame, where the face is a third of
the picture, ~60 %: the ~15 RNet and ~5 ONet candidates near the face are most of the cost either way.
The cells of a level inside the region are exactly the whole level's: the region starts on an even cell
(PNet's stride) and has an even number of cells unless it ends where the level ends (PNet's ceil-mode pool).

"onet" (cheap: ~1.2 ms a frame for one face on one thread where the cascade takes ~11, CREMA-D frames, a busy
machine): ONet on two squares about the previous box's centre, of 0.975 -/+ 0.07 times its longer side, and
the mean of the boxes it regresses from those that pass its threshold. The cascade's own ONet candidates for
one face are squares centred on its box with sides of 0.95-0.99 (sd 0.07) times its height (fixture clips,
HD scenes), and its box is the best-scoring one's output: which one wins is what ONet alone cannot know, so
it aims at the middle of that cloud. Against facenet's per-frame boxes (benchmarks/tracker.py): IoU ~0.93
mean, ~0.85 min, where ONet on the previous box made square reaches 0.92 / 0.84 and the mean of the
cascade's own candidates would reach 0.94. Tried on the same frames and dropped: ONet applied twice (0.92),
the best-scoring of a few shifted squares (the cascade's own rule on other candidates, 0.89-0.90), RNet then
ONet on a grid of squares (0.92), a square fitted to the winning candidate's offset (0.925: it moves with
the face's size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_emotion.detector import cascade
from edge_emotion.detector.mtcnn import Mtcnn
from edge_emotion.detector.nets import NET_SPECS

PNET_WINDOW = cascade.PNET_CELL  # PNet's window side in level pixels: the face size a level stands for is 12 / scale


@dataclass(frozen=True)
class FollowSettings:
    """Which follower (FaceParams.follow), and where it looks for a followed face."""

    method: str = "cascade"  # "cascade" (MTCNN's own box) or "onet" (ONet alone, cheaper, IoU ~0.93 against it)
    # cascade: the pyramid levels and the part of the frame
    smallest: float = 0.4  # levels whose window covers faces from smallest x ...
    largest: float = 2.5  # ... to largest x the previous box's side
    margin: float = 1.0  # region: the previous box grown by this many sides on each side
    # onet: squares centred on the previous box, of side (side -/+ spread) x its longer side (one when spread is 0)
    side: float = 0.975
    spread: float = 0.07


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a [M, >=4] with every box of b [K, >=4]: [M, K]."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def level_cells(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> tuple[int, int] | None:
    """The cells [i0, i1) of one level axis whose source pixels lie in [lo, hi), aligned for PNet; None if too few.

    starts, ends: [n] source windows of the level's cells along this axis (level_bounds).
    """
    n = len(starts)
    i0 = int(np.searchsorted(starts, lo, side="left"))
    i1 = int(np.searchsorted(ends, hi, side="right"))
    i0 -= i0 % 2  # PNet's grid: cell k reads level pixels [2k, 2k + 12)
    if (i1 - i0) % 2 and i1 < n:
        i1 += 1  # an even count, or up to the level's own end: no half pool window that the whole level lacks
    if i1 - i0 < PNET_WINDOW:
        return None
    return i0, i1


@dataclass(frozen=True)
class Window:
    """PNet's work for one followed face on one level: the cells, and the pixels they read."""

    face: int
    scale: float
    rows: tuple[int, int]
    cols: tuple[int, int]
    pixels: tuple[int, int, int, int]  # y0, y1, x0, x1


def windows_for(previous: np.ndarray, height: int, width: int, mtcnn: Mtcnn, settings: FollowSettings) -> list[Window]:
    """The (face, level) windows to run PNet on: levels near each face's size, cells inside its region."""
    s = mtcnn.settings
    scales = cascade.pyramid_scales(height, width, s.min_face, s.factor)
    out = []
    for face, (x1, y1, x2, y2) in enumerate(previous[:, :4].astype(np.float64)):
        side = max(x2 - x1, y2 - y1)
        region = (y1 - settings.margin * side, y2 + settings.margin * side, x1 - settings.margin * side, x2 + settings.margin * side)
        for scale in scales:
            if not settings.smallest * side <= PNET_WINDOW / scale <= settings.largest * side:
                continue
            (r0, r1), (c0, c1) = cascade.level_bounds(height, width, scale)
            rows = level_cells(r0, r1, max(region[0], 0), min(region[1], height))
            cols = level_cells(c0, c1, max(region[2], 0), min(region[3], width))
            if rows and cols:
                pixels = (int(r0[rows[0]]), int(r1[rows[1] - 1]), int(c0[cols[0]]), int(c1[cols[1] - 1]))
                out.append(Window(face, scale, rows, cols, pixels))
    return out


def union(*rects: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Smallest (y0, y1, x0, x1) rectangle holding every non-empty one."""
    full = [r for r in rects if r[1] > r[0] and r[3] > r[2]]
    return min(r[0] for r in full), max(r[1] for r in full), min(r[2] for r in full), max(r[3] for r in full)


def covering(table: cascade.Table, frame: np.ndarray, boxes: np.ndarray) -> cascade.Table:
    """`table`, or a larger one when the boxes' crops read pixels outside it (a candidate regressed far out)."""
    needed = cascade.crop_bounds(boxes, table.height, table.width)
    if needed[1] <= needed[0] or table.covers(*needed):
        return table
    y0, y1, x0, x1 = union(needed, (table.top, table.bottom, table.left, table.right))
    return cascade.Table.of(frame[None], (y0, y1), (x0, x1))


def follow(mtcnn: Mtcnn, frame: np.ndarray, previous: np.ndarray, settings: FollowSettings = FollowSettings()) -> np.ndarray:
    """Each face of `previous` [T, >=4] (full-frame pixels of the last frame) on `frame` [H, W, 3] uint8.

    Returns [T, 5] float32 (x1, y1, x2, y2, probability): per face, its box on this frame by the chosen
    follower, or a row of NaN where it found none (the face is lost: gone, turned away, covered).
    """
    if settings.method not in FOLLOWERS:
        raise ValueError(f"unknown follower {settings.method!r}: one of {', '.join(FOLLOWERS)}")
    return FOLLOWERS[settings.method](mtcnn, frame, previous, settings)


def follow_cascade(mtcnn: Mtcnn, frame: np.ndarray, previous: np.ndarray, settings: FollowSettings) -> np.ndarray:
    """follow by the cascade: the box MTCNN finds in each face's neighbourhood that overlaps it most."""
    height, width = frame.shape[:2]
    found = np.full((len(previous), 5), np.nan, dtype=np.float32)
    windows = windows_for(previous, height, width, mtcnn, settings)
    if not windows:
        return found
    y0, y1, x0, x1 = union(*(w.pixels for w in windows))
    table = cascade.Table.of(frame[None], (y0, y1), (x0, x1))
    s = mtcnn.settings
    candidates, owners = [], []
    for w in windows:
        regression, probability = mtcnn.pnet(cascade.pyramid_level(table, w.scale, w.rows, w.cols))
        boxes, _ = cascade.pnet_boxes(regression, probability, w.scale, s.thresholds[0], (w.rows[0] // 2, w.cols[0] // 2))
        keep = cascade.nms(boxes, boxes[:, 4], np.zeros(len(boxes), np.int64), s.nms_level)
        candidates.append(boxes[keep])
        owners.append(np.full(len(keep), w.face, np.int64))
    boxes, face = mtcnn.merge_levels(candidates, owners)
    near = box_iou_matrix(boxes, previous)[np.arange(len(boxes)), face] > 0 if len(boxes) else np.zeros(0, bool)
    boxes, face = boxes[near], face[near]
    on_frame = np.zeros(len(previous), np.int64)  # every face's candidates are cut from the one frame
    table = covering(table, frame, boxes)
    boxes, face = mtcnn.refine(table, boxes, face, on_frame)
    table = covering(table, frame, boxes)
    boxes, face = mtcnn.output(table, boxes, face, on_frame)
    if len(boxes) == 0:
        return found
    overlap = box_iou_matrix(boxes, previous)[np.arange(len(boxes)), face]  # [K]
    for k in range(len(previous)):
        mine = np.nonzero((face == k) & (overlap > 0))[0]
        if mine.size:
            found[k] = boxes[mine[np.argmax(overlap[mine])]]
    return found


def onet_squares(previous: np.ndarray, settings: FollowSettings) -> np.ndarray:
    """[T, >=4] boxes -> [T, S, 5] squares about each box's centre, of side (side -/+ spread) x its longer side
    (S = 2; S = 1, side x, when spread is 0: side 1 is the box made square, as `cascade.to_square`)."""
    box = previous[:, :4].astype(np.float32)
    centre = (box[:, :2] + box[:, 2:]) / 2  # [T, 2] as (x, y)
    longer = np.max(box[:, 2:] - box[:, :2], axis=1)  # [T]
    sides = [settings.side - settings.spread, settings.side + settings.spread] if settings.spread else [settings.side]
    half = longer[:, None] * np.asarray(sides, np.float32) / 2  # [T, S]
    corners = [centre[:, None, 0] - half, centre[:, None, 1] - half, centre[:, None, 0] + half, centre[:, None, 1] + half]
    return np.stack([*corners, np.ones_like(half)], axis=-1)  # [T, S, 5]


def follow_onet(mtcnn: Mtcnn, frame: np.ndarray, previous: np.ndarray, settings: FollowSettings) -> np.ndarray:
    """follow by ONet alone: per face, the mean of the boxes ONet regresses from the squares about its last box
    (`onet_squares`) whose face probability passes ONet's threshold; one ONet run for all faces."""
    height, width = frame.shape[:2]
    found = np.full((len(previous), 5), np.nan, dtype=np.float32)
    squares, crops, owners = [], [], []
    for k, candidates in enumerate(onet_squares(previous, settings)):
        y0, y1, x0, x1 = cascade.crop_bounds(candidates, height, width)
        if y1 <= y0:
            continue  # every square wholly outside the frame: lost
        table = cascade.Table.of(frame[None], (y0, y1), (x0, x1))  # a table per face: far-apart faces share no pixels
        crop, valid = cascade.crop_candidates(table, np.zeros(len(candidates), np.int64), candidates, NET_SPECS["onet"].side or 48)
        squares.append(candidates[valid])
        crops.append(crop)  # [k, 3, 48, 48]
        owners.append(np.full(int(valid.sum()), k, np.int64))
    if not crops:
        return found
    regression, _landmarks, probability = mtcnn.onet(np.concatenate(crops))
    score = probability[:, 1]  # [K]
    boxes = cascade.apply_offsets(np.concatenate(squares)[:, :4], regression, plus_one=True)  # [K, 4]
    face = np.concatenate(owners)
    for k in range(len(previous)):
        mine = (face == k) & (score > mtcnn.settings.thresholds[2])
        if mine.any():
            found[k, :4] = boxes[mine].mean(axis=0)
            found[k, 4] = score[mine].mean()
    return found


FOLLOWERS = {"cascade": follow_cascade, "onet": follow_onet}  # FollowSettings.method -> follower
