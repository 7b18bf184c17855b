"""The fer peer, reproducibly offline: fer 25.10.3 (its bundled FER2013 mini-Xception TFLite model) with facenet
MTCNN faces, N = 10 frames per clip, summed over frames, on the same clips as edge-emotion.

    python -m venv /tmp/fervenv && /tmp/fervenv/bin/pip install fer==25.10.3 ai-edge-litert==2.3.0 "setuptools<81"
    /tmp/fervenv/bin/python benchmarks/peer_fer.py --clips 60 [--json out.json]

It is the nearest tool a user would reach for (face only, no audio): per clip, decode (OpenCV), take the middle
frame of each of N segments (as edge-emotion's test-mode plan does), `FER(mtcnn=True).detect_emotions` on each,
sum the emotion scores. Reports the steady state (the detector built and warmed first) and the cold run (this
whole process, start-up and imports included, from the interpreter's own start) as times real time.
Runs in its own venv: fer pins TensorFlow and an older facenet-pytorch, which must not meet ours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def clip_folder(root: Path, count: int) -> list[Path]:
    sources = sorted(FIXTURES.glob("*.flv"))
    paths = []
    for i in range(count):
        path = root / f"{i:03d}_{sources[i % len(sources)].name}"
        shutil.copy(sources[i % len(sources)], path)
        paths.append(path)
    return paths


def segment_frames(path: Path, n: int):
    """(duration s, the middle frame of each of n equal segments as BGR uint8), decoded with OpenCV (fer's own
    dependency; PyAV's FFmpeg beside OpenCV's and TensorFlow's in one process crashed here)."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS) or 29.97
    capture.release()
    edges = np.linspace(0, len(frames), n + 1)
    picks = np.clip(((edges[:-1] + edges[1:]) / 2).astype(int), 0, len(frames) - 1)
    return len(frames) / fps, [frames[i] for i in picks]


def score(detector, path: Path, n: int) -> tuple[float, dict]:
    duration, frames = segment_frames(path, n)
    totals: dict[str, float] = {}
    for frame in frames:
        for face in detector.detect_emotions(frame)[:1]:
            for emotion, p in face["emotions"].items():
                totals[emotion] = totals.get(emotion, 0.0) + p
    return duration, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import facenet_pytorch  # noqa: F401 - torch before TensorFlow: the other order segfaults (torchvision after TF)
    from fer.fer import FER

    with tempfile.TemporaryDirectory() as tmp:
        clips = clip_folder(Path(tmp), args.clips)
        detector = FER(mtcnn=True)
        score(detector, clips[0], args.segments)  # warm-up
        start = time.perf_counter()
        media = sum(score(detector, p, args.segments)[0] for p in clips)
        wall = time.perf_counter() - start
    cold_wall = time.perf_counter() - STARTED
    result = {
        "clips": args.clips,
        "media_s": round(media, 3),
        "steady_wall_s": round(wall, 3),
        "steady_times_real_time": round(media / wall, 3),
        "cold_wall_s_without_interpreter_start": round(cold_wall, 3),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
