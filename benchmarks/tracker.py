"""The faces stage as tracks (issue 23) against per-frame detection at 320 px: CPU time and box agreement.

    OPENBLAS_NUM_THREADS=1 python benchmarks/tracker.py [--repeats 7] [--n 10]

On the CREMA-D fixture clips at N planned frames (test mode), one process, ONNX Runtime on one thread:

- faces ms per clip (CPU, median of the repeats): the old way (the full cascade on every planned frame,
  downscaled to 320 px, FaceParams(detect_max_side=320, detect_every=1)) and the tracker (full resolution,
  the full cascade on the first planned frame, each face followed on the others), both with the 224x224
  crops and their normalisation, as `segments.extract_people` does them;
- the tracker's CPU ms per frame: frames where the full cascade ran vs frames where the face was followed;
- IoU per planned frame against facenet-pytorch's MTCNN run on every planned frame at full resolution with
  the same smallest face (mean, min), for the tracker and for the old way (needs facenet-pytorch);
- for comparison, the classic follower the tracker does not use: ONet alone on the previous box (squared),
  the full cascade again only where ONet's face probability falls below its 0.7 threshold;
- the same on an HD frame sequence: a fixture clip's face pasted, small, into 1920x1080 frames.

CPU time (process_time) rather than wall time, so a busy machine inflates the figures less; still, record
figures only from a quiet machine (benchmarks/README.md says how).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: its BLAS threads only spin here

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.detector import cascade
from edge_emotion.detector.mtcnn import CascadeSettings, Mtcnn
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.faces import FaceDetector, box_iou, crop_face, fill_missing, normalise_faces
from edge_emotion.preprocess.people import chosen_people
from edge_emotion.preprocess.segments import plan_clip

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CLIPS = ("1001_DFA_HAP_XX.flv", "1001_DFA_NEU_XX.flv")


def planned_frames(path: Path, n: int) -> list[np.ndarray]:
    clip = open_clip(path)
    segments = plan_clip(clip, PreprocessConfig(n_segments=n))
    decoded = read_frames(clip, [s.frame for s in segments])
    return [decoded[s.frame] for s in segments]


def hd_frames(frames: list[np.ndarray], width: int = 1920, height: int = 1080, face_px: int = 58) -> list[np.ndarray]:
    """Each frame shrunk so its face (~95 px wide at 480x360) is ~face_px wide, pasted into a grey HD canvas."""
    scale = face_px / 95
    out = []
    for k, frame in enumerate(frames):
        small = np.asarray(Image.fromarray(frame).resize((round(480 * scale), round(360 * scale)), Image.Resampling.BILINEAR))
        canvas = np.full((height, width, 3), 96, np.uint8)
        top, left = 600, 1300 + 2 * k  # drifting right by 2 px a frame
        canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
        out.append(canvas)
    return out


def crops(frames: list[np.ndarray], boxes: list, params: FaceParams) -> np.ndarray:
    filled, _ = fill_missing(boxes, list(range(len(frames))))
    return normalise_faces(np.stack([crop_face(f, b, params) for f, b in zip(frames, filled)]), params)


def old_faces(detector: FaceDetector, frames: list[np.ndarray]) -> list:
    boxes = detector.detect(frames)
    crops(frames, boxes, detector.params)
    return boxes


def tracked_faces(detector: FaceDetector, frames: list[np.ndarray], per_frame: dict[str, list[float]] | None = None) -> list:
    """The faces stage of extract_people: track, take the largest person, crop. per_frame gets CPU ms by kind."""
    tracker = detector.tracker()
    faces = []
    for frame in frames:
        start = time.process_time()
        faces.append(tracker.update(frame))
        if per_frame is not None:
            kind = "detect" if tracker.detected_on and tracker.detected_on[-1] == tracker.frames_seen - 1 else "follow"
            per_frame[kind].append((time.process_time() - start) * 1000)
    people = chosen_people(faces, "largest")
    boxes = people[0].boxes if people else [None] * len(frames)
    crops(frames, boxes, detector.params)
    return boxes


def onet_alone(mtcnn: Mtcnn, frames: list[np.ndarray], params: FaceParams) -> list:
    """The classic follower: the full cascade on the first frame, then ONet on the previous box made square."""
    boxes: list = []
    previous = None
    for frame in frames:
        if previous is not None:
            square = cascade.to_square(previous[None])  # [1, 5]
            y0, y1, x0, x1 = cascade.crop_bounds(square, *frame.shape[:2])
            table = cascade.Table.of(frame[None], (y0, y1), (x0, x1))
            crop, _ = cascade.crop_candidates(table, np.zeros(1, np.int64), square, 48)
            regression, _, probability = mtcnn.onet(crop)
            previous = cascade.apply_offsets(square, regression, plus_one=True)[0] if probability[0, 1] > 0.7 else None
        if previous is None:
            found = mtcnn.detect(frame[None])[0]
            previous = found[0] if len(found) else None
        boxes.append(None if previous is None else tuple(float(v) for v in previous[:4]))
    crops(frames, boxes, params)
    return boxes


def cpu_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def facenet_boxes(frames: list[np.ndarray], min_face: int) -> list:
    """facenet-pytorch's MTCNN on every frame at full resolution (its largest face), or None without it."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        return []
    mtcnn = MTCNN(keep_all=False, min_face_size=min_face)
    out = []
    for frame in frames:
        boxes, _ = mtcnn.detect(Image.fromarray(frame))
        out.append(None if boxes is None else tuple(float(v) for v in np.asarray(boxes, float)[0]))
    return out


def agreement(ours: list, theirs: list) -> dict[str, float | int]:
    pairs = [(a, b) for a, b in zip(ours, theirs) if b is not None]
    ious = [box_iou(a, b) for a, b in pairs]
    both_none = sum(a is None and b is None for a, b in zip(ours, theirs))
    return {
        "mean_iou": round(float(np.mean(ious)), 3) if ious else float("nan"),
        "min_iou": round(float(np.min(ious)), 3) if ious else float("nan"),
        "frames": len(theirs),
        "same_face_or_none": sum(b is not None for _, b in pairs) + both_none,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10, help="planned frames per clip (the paper's N)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    params = FaceParams()
    old = FaceDetector(FaceParams(detect_max_side=320, detect_every=1), threads=1)
    new = FaceDetector(params, threads=1)
    mtcnn = Mtcnn.open(CascadeSettings(min_face=params.min_face_size), threads=1)
    sequences = {name: planned_frames(FIXTURES / name, args.n) for name in CLIPS}
    sequences["HD 1920x1080, face ~58 px"] = hd_frames(sequences[CLIPS[0]])
    results = {}
    for name, frames in sequences.items():
        per_frame: dict[str, list[float]] = {"detect": [], "follow": []}
        for _ in range(args.repeats):
            tracked = tracked_faces(new, frames, per_frame)
        reference = facenet_boxes(frames, params.min_face_size)
        row = {
            "faces_ms_per_clip": {
                "old (every frame, 320 px)": round(cpu_ms(lambda f=frames: old_faces(old, f), args.repeats), 1),
                "tracker": round(cpu_ms(lambda f=frames: tracked_faces(new, f), args.repeats), 1),
                "ONet alone (not used)": round(cpu_ms(lambda f=frames: onet_alone(mtcnn, f, params), args.repeats), 1),
            },
            "tracker_ms_per_frame": {k: round(statistics.median(v), 2) if v else None for k, v in per_frame.items()},
            "frames_detected": len(per_frame["detect"]) // args.repeats,
        }
        if reference:
            row["iou_vs_facenet"] = {
                "tracker": agreement(tracked, reference),
                "old": agreement(old_faces(old, frames), reference),
                "ONet alone (not used)": agreement(onet_alone(mtcnn, frames, params), reference),
            }
        results[name] = row
        print(json.dumps({name: row}), flush=True)
    print("\n| sequence | faces ms/clip: old / tracker / ONet alone | tracker detect ms/frame | tracker follow ms/frame "
          "| IoU mean/min: tracker | old | ONet alone |")
    print("|---|---|---|---|---|---|---|")
    for name, row in results.items():
        iou = row.get("iou_vs_facenet", {})
        fmt = lambda a: f"{a['mean_iou']} / {a['min_iou']}" if a else "n/a"  # noqa: E731
        ms = row["faces_ms_per_clip"]
        print(
            f"| {name} | {' / '.join(str(v) for v in ms.values())} "
            f"| {row['tracker_ms_per_frame']['detect']} | {row['tracker_ms_per_frame']['follow']} "
            f"| {fmt(iou.get('tracker'))} | {fmt(iou.get('old'))} | {fmt(iou.get('ONet alone (not used)'))} |"
        )


if __name__ == "__main__":
    main()
