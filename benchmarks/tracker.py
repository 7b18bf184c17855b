"""The faces stage as tracks (issue 23) against per-frame detection at 320 px: CPU time and box agreement.

    OPENBLAS_NUM_THREADS=1 python benchmarks/tracker.py [--repeats 7] [--n 10] [--onet-side 0.975 --onet-spread 0.07]

On the CREMA-D fixture clips at N planned frames (test mode), one process, ONNX Runtime on one thread:

- faces ms per clip (CPU, median of the repeats): the old way (the full cascade on every planned frame,
  downscaled to 320 px, FaceParams(detect_max_side=320, detect_every=1)) and the tracker in both follow modes
  (full resolution, the full cascade on the first planned frame, each face followed on the others: by the
  cascade near it, FaceParams.follow="cascade", or by ONet alone, "onet"), all with the 224x224 crops and
  their normalisation, as `segments.extract_people` does them;
- each mode's CPU ms per frame: frames where the full cascade ran vs frames where the face was followed;
- IoU per planned frame against facenet-pytorch's MTCNN run on every planned frame at full resolution with
  the same smallest face (mean, min), for both modes and the old way (needs facenet-pytorch);
- the same on an HD frame sequence: a fixture clip's face pasted, small, into 1920x1080 frames.

--onet-side / --onet-spread set the "onet" follower's squares (detector.follow.FollowSettings; spread 0 and
side 1 is ONet on the previous box made square). CPU time (process_time) rather than wall time, so a busy
machine inflates the figures less; still, record figures only from a quiet machine (benchmarks/README.md
says how).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: its BLAS threads only spin here

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.detector.follow import FollowSettings
from edge_emotion.detector.tracker import FaceTracker
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.faces import FaceDetector, box_iou, crop_face, normalise_faces
from edge_emotion.preprocess.people import chosen_people
from edge_emotion.preprocess.segments import plan_clip
from edge_emotion.preprocess.tracks import borrow_boxes

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
    filled, _ = borrow_boxes(boxes)
    return normalise_faces(np.stack([crop_face(f, b, params) for f, b in zip(frames, filled)]), params)


def old_faces(detector: FaceDetector, frames: list[np.ndarray]) -> list:
    boxes = detector.detect(frames)
    crops(frames, boxes, detector.params)
    return boxes


def tracked_faces(tracker: FaceTracker, frames: list[np.ndarray], params: FaceParams, per_frame: dict[str, list[float]] | None = None) -> list:
    """The faces stage of extract_people: track, take the largest person, crop. per_frame gets CPU ms by kind."""
    faces = []
    for frame in frames:
        start = time.process_time()
        faces.append(tracker.update(frame))
        if per_frame is not None:
            kind = "detect" if tracker.detected_on and tracker.detected_on[-1] == tracker.frames_seen - 1 else "follow"
            per_frame[kind].append((time.process_time() - start) * 1000)
    people = chosen_people(faces, "largest")
    boxes = people[0].boxes if people else [None] * len(frames)
    crops(frames, boxes, params)
    return boxes


def trackers(params: FaceParams, onet: FollowSettings) -> dict[str, Callable[[], FaceTracker]]:
    """A fresh tracker per clip for each follow mode, through FaceDetector as scoring makes them; the "onet"
    one with the given squares (FaceDetector's own when they are the defaults)."""
    cascade_mode = FaceDetector(replace(params, follow="cascade"), threads=1)
    onet_mode = FaceDetector(replace(params, follow="onet"), threads=1)

    def onet_tracker() -> FaceTracker:
        tracker = onet_mode.tracker()
        tracker.settings = replace(tracker.settings, follow=onet)
        return tracker

    return {"cascade": cascade_mode.tracker, "onet": onet_tracker}


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
    parser.add_argument("--onet-side", type=float, default=FollowSettings.side, help="the onet follower's squares: mean side / the box's")
    parser.add_argument("--onet-spread", type=float, default=FollowSettings.spread, help="... and their spread (two squares, side -/+ spread)")
    args = parser.parse_args()
    params = FaceParams()
    old = FaceDetector(FaceParams(detect_max_side=320, detect_every=1), threads=1)
    modes = trackers(params, FollowSettings("onet", side=args.onet_side, spread=args.onet_spread))
    sequences = {name: planned_frames(FIXTURES / name, args.n) for name in CLIPS}
    sequences["HD 1920x1080, face ~58 px"] = hd_frames(sequences[CLIPS[0]])
    results = {}
    for name, frames in sequences.items():
        reference = facenet_boxes(frames, params.min_face_size)
        row: dict[str, dict] = {"faces_ms_per_clip": {"old (every frame, 320 px)": round(cpu_ms(lambda f=frames: old_faces(old, f), args.repeats), 1)}}
        row["ms_per_frame"], row["frames_detected"], row["iou_vs_facenet"] = {}, {}, {}
        for mode, start in modes.items():
            per_frame: dict[str, list[float]] = {"detect": [], "follow": []}
            for _ in range(args.repeats):
                tracked = tracked_faces(start(), frames, params, per_frame)
            row["faces_ms_per_clip"][mode] = round(cpu_ms(lambda f=frames, s=start: tracked_faces(s(), f, params), args.repeats), 1)
            row["ms_per_frame"][mode] = {k: round(statistics.median(v), 2) if v else None for k, v in per_frame.items()}
            row["frames_detected"][mode] = len(per_frame["detect"]) // args.repeats
            if reference:
                row["iou_vs_facenet"][mode] = agreement(tracked, reference)
        if reference:
            row["iou_vs_facenet"]["old"] = agreement(old_faces(old, frames), reference)
        results[name] = row
        print(json.dumps({name: row}), flush=True)
    print("\n| sequence | faces ms/clip: old / cascade / onet | detect ms/frame | follow ms/frame: cascade / onet "
          "| IoU mean/min: cascade | onet | old |")
    print("|---|---|---|---|---|---|---|")
    for name, row in results.items():
        iou = row["iou_vs_facenet"]
        fmt = lambda a: f"{a['mean_iou']} / {a['min_iou']}" if a else "n/a"  # noqa: E731
        per = row["ms_per_frame"]
        print(
            f"| {name} | {' / '.join(str(v) for v in row['faces_ms_per_clip'].values())} | {per['cascade']['detect']} "
            f"| {per['cascade']['follow']} / {per['onet']['follow']} "
            f"| {fmt(iou.get('cascade'))} | {fmt(iou.get('onet'))} | {fmt(iou.get('old'))} |"
        )


if __name__ == "__main__":
    main()
