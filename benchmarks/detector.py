"""The face detector alone: facenet-pytorch's torch MTCNN against the packaged ONNX nets + numpy cascade,
one frame per call against a clip's N frames (and several clips' frames) per call; box parity alongside.

    python benchmarks/detector.py [--repeats 5] [--threads 1] [--json out.json]

CPU time per frame (process_time, robust to a busy machine) and wall time, on real CREMA-D frames downscaled
to the default 320 px, as FaceDetector feeds them. Needs the [train] install plus facenet-pytorch for the
reference rows (`pip install --no-deps facenet-pytorch==2.6.0`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_emotion.config import FaceParams
from edge_emotion.detector.mtcnn import CascadeSettings, Mtcnn
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.faces import _detect_scale, box_iou, downscale

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def frames(n_per_clip: int = 10) -> np.ndarray:
    """[2 * n, 240, 320, 3]: n evenly spaced frames of each fixture clip, downscaled as the detector gets them."""
    out = []
    for path in sorted(FIXTURES.glob("*.flv")):
        clip = open_clip(path)
        idx = np.linspace(0, clip.frame_count - 1, n_per_clip).astype(int)
        decoded = read_frames(clip, idx)
        out += [decoded[i] for i in idx]
    return downscale(np.stack(out), _detect_scale(out[0].shape, FaceParams().detect_max_side))


def timed(detect, images: np.ndarray, per_call: int, repeats: int) -> dict:
    detect(images[:per_call])  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        for start in range(0, len(images), per_call):
            detect(images[start : start + per_call])
    n = repeats * len(images)
    return {"cpu_ms_per_frame": round(1e3 * (time.process_time() - cpu) / n, 2), "wall_ms_per_frame": round(1e3 * (time.perf_counter() - wall) / n, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and ONNX Runtime (a worker's share)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = frames()
    params = FaceParams()
    ours = Mtcnn.open(CascadeSettings(min_face=params.min_face_size), threads=args.threads)
    rows = {}
    for per_call in (1, 10, 20):
        rows[f"packaged ONNX + numpy, {per_call} frame(s) per call"] = timed(ours.detect, images, per_call, args.repeats)
    try:
        import torch
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        print(f"facenet-pytorch reference skipped: {exc}")
    else:
        torch.set_num_threads(args.threads)
        ref = MTCNN(keep_all=False, min_face_size=params.min_face_size)
        nhwc = MTCNN(keep_all=False, min_face_size=params.min_face_size).to(memory_format=torch.channels_last)
        for name, net in (("facenet-pytorch MTCNN", ref), ("facenet-pytorch MTCNN, channels_last (the previous default)", nhwc)):
            rows[f"{name}, 10 frames per call"] = timed(lambda x, n=net: n.detect(x), images, 10, args.repeats)
        theirs, _ = ref.detect(images)
        mine = ours.detect(images)
        ious = [box_iou(tuple(np.asarray(t[0], float)), tuple(m[0, :4].astype(float))) for t, m in zip(theirs, mine) if t is not None and len(m)]
        rows["parity"] = {"frames": len(images), "both_found": len(ious), "mean_iou": round(float(np.mean(ious)), 5), "min_iou": round(float(np.min(ious)), 5)}
    print("| detector | CPU ms/frame | wall ms/frame |\n|---|---|---|")
    for name, r in rows.items():
        if "cpu_ms_per_frame" in r:
            print(f"| {name} | {r['cpu_ms_per_frame']} | {r['wall_ms_per_frame']} |")
    if "parity" in rows:
        print(f"\nparity vs facenet: {rows['parity']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
