"""Follow known faces to the next frame with MTCNN's own cascade, restricted to each face's neighbourhood.

Why not ONet alone on the previous box (the classic tracker, 4x cheaper): MTCNN's box is the best-scoring
of several ONet outputs, each from a candidate the pyramid's grid proposed, so it jumps by IoU ~0.9 from
frame to frame even on a still face; ONet on the previous box follows its own fixed point instead and
agrees with per-frame MTCNN only at IoU 0.92 mean, 0.84-0.89 min (benchmarks/tracker.py), no better than
detecting at 320 px. Running the cascade on the pyramid levels whose 12 px window covers faces of 0.4-2.5x
the previous box's side, over a region around it, proposes the same candidates near the face as the whole
frame does, so the followed box is the one per-frame detection gives (on every frame of the fixture clips
and of HD scenes with 45-80 px faces; with 0.5-2x, faces of ~2 x min_face_size lost the smallest level and
10 of 72 boxes moved). Capping the candidates (RNet's best 8, ONet's best 4) moved a third of the boxes.

What it saves is the frame: a summed-area table of the region and PNet on a few level windows instead of the
whole pyramid. On an HD frame with a small face that is ~5 % of a full detection; on a CREMA-D frame, where
the face is a third of the picture, ~60 %: the ~15 RNet and ~5 ONet candidates near the face are most of
the cost either way.

The cells of a level inside the region are exactly the whole level's: the region starts on an even cell
(PNet's stride) and has an even number of cells unless it ends where the level ends (PNet's ceil-mode pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_emotion.detector import cascade
from edge_emotion.detector.mtcnn import Mtcnn

PNET_WINDOW = cascade.PNET_CELL  # PNet's window side in level pixels: the face size a level stands for is 12 / scale


@dataclass(frozen=True)
class FollowSettings:
    """Which part of the pyramid and of the frame a followed face is looked for in."""

    smallest: float = 0.4  # levels whose window covers faces from smallest x ...
    largest: float = 2.5  # ... to largest x the previous box's side
    margin: float = 1.0  # region: the previous box grown by this many sides on each side


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

    Returns [T, 5] float32 (x1, y1, x2, y2, probability): per face, the box MTCNN finds in its neighbourhood
    that overlaps it most, or a row of NaN where none does (the face is lost: gone, turned away, covered).
    """
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
