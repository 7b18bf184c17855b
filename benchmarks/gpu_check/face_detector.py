"""The face_detector step: FaceDetector (the packaged ONNX MTCNN) on the device: frames/s, boxes against the CPU's."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import Check, StepOutcome
from benchmarks.gpu_check.inputs import face_detector, fixture_clips
from benchmarks.gpu_check.report import table
from benchmarks.gpu_check.timing import timed

PER_CALL = 10  # scoring detects the N = 10 planned frames of a clip in one call


def fixture_frames(limit: int) -> list[np.ndarray]:
    """Frames of the fixture clips, [H, W, 3] uint8: all of them when limit is 0, else the first `limit` of each clip."""
    from edge_emotion.io.decode import open_clip, read_frames

    frames: list[np.ndarray] = []
    for path in fixture_clips():
        clip = open_clip(path)
        decoded = read_frames(clip, range(min(clip.frame_count, limit or clip.frame_count)))
        frames += [decoded[i] for i in sorted(decoded)]
    return frames


def call_plans(frames: list[np.ndarray]) -> dict[str, list[list[np.ndarray]]]:
    """label -> the frame lists the timed calls cycle through: PER_CALL frames per call, and all frames in one call."""
    chunks = [frames[i : i + PER_CALL] for i in range(0, len(frames) - PER_CALL + 1, PER_CALL)]
    plans = {f"{PER_CALL} frames per call (as score calls it)": chunks}
    if len(frames) > PER_CALL:
        plans[f"{len(frames)} frames in one call"] = [frames]
    return plans


def step_face_detector(check: Check) -> dict[str, Any]:
    from edge_emotion.config import FaceParams
    from edge_emotion.preprocess.faces import box_iou

    result = check.begin()
    params = FaceParams()
    frames = fixture_frames(check.sizes.detector_frames)
    with warnings.catch_warnings(record=True) as caught:  # a detector that falls back to the CPU says so here
        warnings.simplefilter("always")
        detector, why = face_detector(params, check.device)
    result["warnings"] = [" ".join(str(w.message).split())[:300] for w in caught]
    if detector is None:
        raise StepOutcome("failed", f"no face detector: {why}", result)
    result.update(detector=f"{type(detector).__module__}.{type(detector).__name__}", frames=len(frames),
                  frame_size=list(frames[0].shape[:2]), params=params.to_dict())  # fmt: skip
    result["calls"] = {}
    for label, calls in call_plans(frames).items():
        if check.step_left() < 3:
            result["calls"][label] = {"status": "skipped", "reason": "step time used"}
            continue
        turn = iter(range(10**9))
        stats = timed(lambda c=calls, t=turn: detector.detect(c[next(t) % len(c)]), check.sync,
                      min_seconds=1.0 if check.cuda else 0.3, warmup=2 if check.cuda else 1, min_calls=3)  # fmt: skip
        result["calls"][label] = {"latency_ms": stats, "frames_per_s": len(calls[0]) / (stats["p50"] / 1e3)}
    boxes = detector.detect(frames)
    result["faces_found"] = sum(b is not None for b in boxes)
    if check.cuda:
        cpu, _ = face_detector(params, "cpu")
        sample = frames[:: max(1, len(frames) // 20)]
        cpu_boxes = cpu.detect(sample) if cpu is not None else []
        ious = [box_iou(a, b) for a, b in zip(detector.detect(sample), cpu_boxes)]
        result["iou_vs_cpu"] = {"frames": len(ious), "mean": float(np.mean(ious)), "min": float(np.min(ious))} if ious else None
    rate = max(c.get("frames_per_s", 0.0) for c in result["calls"].values())
    result["summary"] = f"{rate:.0f} frames/s best; faces on {result['faces_found']}/{len(frames)} frames"
    if result["faces_found"] < len(frames) // 2:
        raise StepOutcome("failed", f"faces found on only {result['faces_found']} of {len(frames)} frames", result)
    return result


def md_face_detector(r: dict[str, Any]) -> list[str]:
    rows = [[label, c.get("frames_per_s"), (c.get("latency_ms") or {}).get("p50"), (c.get("latency_ms") or {}).get("p99")]
            for label, c in (r.get("calls") or {}).items()]  # fmt: skip
    lines = [f"{r.get('detector')} on {r.get('frames')} frames {r.get('frame_size')}; IoU vs CPU: {r.get('iou_vs_cpu')}; "
             f"warnings when built: {r.get('warnings') or 'none'}", ""]  # fmt: skip
    return lines + table(["calls", "frames/s", "p50 ms", "p99 ms"], rows)
