"""MTCNN's cascade around its three nets, in numpy: image pyramid, candidate boxes, NMS, box regression, crops.

A port of facenet-pytorch 2.6.0's `detect_face` (the same scales, thresholds, rounding and NMS rules;
tests compare the boxes with facenet's), arranged for batches: every resampling (the pyramid levels
and the 24x24 / 48x48 candidate crops) is an area average read off one summed-area table per frame,
so all candidates of all frames are cut in a few vectorised gathers instead of one resize per box.

Box arrays are float32 [M, 5] (x1, y1, x2, y2, score) in pixels of the image given to the cascade;
`image` arrays [M] say which image of the batch a box belongs to.

A `Table` may cover only a window of the images (the region around a followed face): pyramid levels
and crops are still defined on the whole image, so the cells and crops inside the window are exactly the
ones the whole image gives; only the table (the cost that grows with the pixels) is smaller.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

PNET_STRIDE = 2  # PNet's output grid step, in pixels of its input
PNET_CELL = 12  # PNet's receptive field: the face size one output cell stands for
PIXEL_MEAN, PIXEL_SCALE = 127.5, 0.0078125  # what the nets were trained on: (x - 127.5) / 128


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which PNet's 12 px cell sees faces from `min_face` px up to the whole image."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def pyramid_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """facenet's level size: int(side * scale + 1)."""
    return int(height * scale + 1), int(width * scale + 1)


def summed_area(images: np.ndarray) -> np.ndarray:
    """[F, H, W, 3] uint8 -> [F, H+1, W+1, 3] uint32 table: sat[f, y, x] = sum of images[f, :y, :x].

    uint32 wraps past 2**32, but a window's sum (four table entries, added and subtracted in uint32)
    is still exact while it stays below 2**32: any window under 16.8 M pixels. Half the memory of int64.
    """
    f, h, w, c = images.shape
    inner = np.cumsum(images, axis=1, dtype=np.uint32)  # contiguous: twice as fast as summing into the padded view
    np.cumsum(inner, axis=2, out=inner)
    sat = np.zeros((f, h + 1, w + 1, c), dtype=np.uint32)
    sat[:, 1:, 1:] = inner
    return sat


@dataclass(frozen=True)
class Table:
    """The summed-area table of rows [top, top + h) and columns [left, left + w) of a batch of images whose
    whole size is height x width (pyramid levels and crops are defined on the whole image)."""

    sat: np.ndarray  # [F, h+1, w+1, 3] uint32
    top: int
    left: int
    height: int
    width: int

    @classmethod
    def of(cls, images: np.ndarray, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> Table:
        """Table of images [F, H, W, 3] uint8 over rows x cols (default: the whole image)."""
        _, height, width, _ = images.shape
        (top, bottom), (left, right) = rows or (0, height), cols or (0, width)
        return cls(summed_area(images[:, top:bottom, left:right]), top, left, height, width)

    @property
    def bottom(self) -> int:
        return self.top + self.sat.shape[1] - 1

    @property
    def right(self) -> int:
        return self.left + self.sat.shape[2] - 1

    def covers(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        return self.top <= y0 and y1 <= self.bottom and self.left <= x0 and x1 <= self.right


def area_bounds(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source windows [lo, hi) of `size` output cells over [start, start + length), as torch's area resize.

    interpolate(mode="area") is adaptive average pooling: cell i averages
    [floor(i * n / size), ceil((i + 1) * n / size)). start, length: [K] -> lo, hi: [K, size].
    """
    i = np.arange(size)[None, :]
    n = length[:, None]
    return start[:, None] + (i * n) // size, start[:, None] - ((-(i + 1) * n) // size)


def window_means(sat: np.ndarray, image: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean of each window: sat [F, H+1, W+1, 3], image [K], rows/cols ([K, h], [K, w]) -> [K, h, w, 3] float32.

    Separable, one candidate at a time: the h row bands of the table over the candidate's own columns
    (contiguous slices), then w column differences of that small array. 1.2-1.6x faster than gathering
    four corners per output pixel through flat indices, for 6 to 200 candidates.
    """
    (r0, r1), (c0, c1) = rows, cols
    total = np.empty((len(image), r0.shape[1], c0.shape[1], sat.shape[3]), np.uint32)  # [K, h, w, 3]
    for k in range(len(image)):
        left, right = c0[k, 0], c1[k, -1] + 1
        table = sat[image[k], :, left:right]  # [H+1, columns, 3]
        band = table[r1[k]] - table[r0[k]]  # [h, columns, 3]: each output row's band, cumulative along x
        total[k] = band[:, c1[k] - left] - band[:, c0[k] - left]  # exact in uint32
    area = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :]).astype(np.float32)[..., None]  # [K, h, w, 1]
    return total.astype(np.float32) / area


def net_input(means: np.ndarray) -> np.ndarray:
    """[K, h, w, 3] float32 pixel means -> [K, 3, h, w] float32, normalised as the nets expect."""
    return np.ascontiguousarray(((means - PIXEL_MEAN) * PIXEL_SCALE).transpose(0, 3, 1, 2))


@functools.lru_cache(maxsize=256)
def level_bounds(height: int, width: int, scale: float) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Source windows of every row and column of one pyramid level: ((r0, r1), (c0, c1)), each [h] or [w].

    Cached: every frame of a video asks for the same levels (callers must not write into the arrays)."""
    h, w = pyramid_size(height, width, scale)
    (r0, r1), (c0, c1) = (
        (lo[0], hi[0]) for lo, hi in (area_bounds(np.zeros(1, np.int64), np.array([n]), m) for n, m in ((height, h), (width, w)))
    )
    return (r0, r1), (c0, c1)


def pyramid_level(table: Table, scale: float, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> np.ndarray:
    """Cells rows x cols (default all) of one pyramid level of every image: [F, 3, h, w] float32, normalised.

    Separable: whole table rows first (row bands, contiguous copies), then columns of that smaller
    array; a third of the cost of gathering four corners per output pixel. The cells' source pixels
    must lie inside the table.
    """
    (r0, r1), (c0, c1) = level_bounds(table.height, table.width, scale)
    if rows is not None:
        r0, r1 = r0[rows[0] : rows[1]], r1[rows[0] : rows[1]]
    if cols is not None:
        c0, c1 = c0[cols[0] : cols[1]], c1[cols[0] : cols[1]]
    sat = table.sat
    bands = sat[:, r1 - table.top] - sat[:, r0 - table.top]  # [F, h, W+1, 3]: each row's band, cumulative along x
    total = bands[:, :, c1 - table.left] - bands[:, :, c0 - table.left]  # [F, h, w, 3] (exact in uint32)
    area = ((r1 - r0)[:, None] * (c1 - c0)[None, :]).astype(np.float32)[None, :, :, None]  # [1, h, w, 1]
    return net_input(total.astype(np.float32) / area)


def pnet_boxes(
    regression: np.ndarray, probability: np.ndarray, scale: float, threshold: float, first_cell: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """PNet's grid -> candidate boxes: regression [F, 4, h, w], probability [F, 2, h, w] -> ([M, 9], image [M]).

    Columns: x1, y1, x2, y2 (the cell's square in image pixels), score, then the four regression offsets.
    first_cell: (row, column) of the output's first cell in the whole level's grid (PNet ran on part of it).
    """
    score = probability[:, 1]  # [F, h, w]
    image, y, x = np.nonzero(score >= threshold)
    cell = np.stack([x + first_cell[1], y + first_cell[0]], axis=1).astype(np.float32)  # [M, 2] as (x, y)
    scale32 = np.float32(scale)
    top_left = np.floor((PNET_STRIDE * cell + 1) / scale32)
    bottom_right = np.floor((PNET_STRIDE * cell + PNET_CELL) / scale32)
    offsets = regression[image, :, y, x]  # [M, 4]
    boxes = np.concatenate([top_left, bottom_right, score[image, y, x][:, None], offsets], axis=1)
    return boxes.astype(np.float32), image


def nms(boxes: np.ndarray, scores: np.ndarray, image: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression within each image; indices kept, by decreasing score.

    "union": torchvision's IoU on (x2 - x1) * (y2 - y1) areas, what facenet uses for its first
    stages; "min": intersection over the smaller box with +1 pixel sides, its final step.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    plus = 1.0 if method == "min" else 0.0
    shift = (np.float64(boxes[:, :4].max()) + 1) * image.astype(np.float64)  # images never overlap
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) + shift for k in range(4))
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    # ties (ONet's probabilities saturate at 1.0) are broken as facenet breaks them: torch's descending
    # sort for "union", numpy's default argsort read from the end for "min"
    order = np.argsort(scores)[::-1] if method == "min" else np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = w * h
        denominator = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denominator <= threshold]
    return np.asarray(keep, dtype=np.int64)


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool) -> np.ndarray:
    """Box regression: each side moves by its offset times the box width / height (+1 px in RNet/ONet's form)."""
    out = boxes.copy()
    extra = np.float32(1.0 if plus_one else 0.0)
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out[:, 0] += offsets[:, 0] * w
    out[:, 1] += offsets[:, 1] * h
    out[:, 2] += offsets[:, 2] * w
    out[:, 3] += offsets[:, 3] * h
    return out


def to_square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square about its centre (the next net's input is square)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crop_regions(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel regions [y0, y1) x [x0, x1) the boxes cover inside the image (facenet's `pad`, 0-based)."""
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    x0 = np.maximum(corners[:, 0], 1) - 1
    y0 = np.maximum(corners[:, 1], 1) - 1
    x1 = np.minimum(corners[:, 2], width)
    y1 = np.minimum(corners[:, 3], height)
    return y0, y1, x0, x1


def crop_candidates(table: Table, image: np.ndarray, boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut every box out of its image and area-resize it to side x side.

    Returns the net input [K, 3, side, side] float32 and a [M] mask of the boxes that had any pixels
    inside their image (K = mask.sum(); boxes wholly outside are dropped). The table must cover the
    boxes' pixels inside the image (`crop_bounds`).
    """
    y0, y1, x0, x1 = crop_regions(boxes, table.height, table.width)
    valid = (y1 > y0) & (x1 > x0)
    rows = area_bounds(y0[valid] - table.top, (y1 - y0)[valid], side)
    cols = area_bounds(x0[valid] - table.left, (x1 - x0)[valid], side)
    return net_input(window_means(table.sat, image[valid], rows, cols)), valid


def crop_bounds(boxes: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """The pixel rectangle (y0, y1, x0, x1) all boxes' crops read, inside the image; empty for no box."""
    y0, y1, x0, x1 = crop_regions(boxes, height, width)
    valid = (y1 > y0) & (x1 > x0)
    if not valid.any():
        return 0, 0, 0, 0
    return int(y0[valid].min()), int(y1[valid].max()), int(x0[valid].min()), int(x1[valid].max())
