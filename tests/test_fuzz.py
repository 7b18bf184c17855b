"""Seeded byte-mutation fuzzing of decode and the whole per-clip path on the real CREMA-D clips.

Every mutant must either give well-formed model inputs or raise VideoError naming
the file: never another exception type, never NaN inputs.
"""

from __future__ import annotations

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.errors import VideoError
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.segments import extract, plan_clip

CASES = 200


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: flip random bytes, truncate, duplicate a chunk, zero a chunk."""
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:
        for pos in rng.integers(0, len(buf), size=rng.integers(1, 64)):
            buf[pos] = int(rng.integers(256))
    elif kind == 1:
        del buf[int(rng.integers(1, len(buf))) :]
    elif kind == 2:
        start = int(rng.integers(0, len(buf) - 1024))
        buf[start:start] = buf[start : start + 1024]
    else:
        start = int(rng.integers(0, len(buf) - 4096))
        buf[start : start + 4096] = bytes(4096)
    return bytes(buf)


def test_mutated_clips_decode_or_fail_cleanly(tmp_path, hap_clip_path, neu_clip_path, face_detector):
    rng = np.random.default_rng(20201)
    originals = [hap_clip_path.read_bytes(), neu_clip_path.read_bytes()]
    config = PreprocessConfig(n_segments=2)
    outcomes = {"ok": 0, "VideoError": 0}
    for case in range(CASES):
        path = tmp_path / f"mutant_{case}.flv"
        path.write_bytes(mutate(originals[case % 2], rng))
        try:
            clip = open_clip(path)
            # MTCNN on every mutant would dominate the run time: detect on every 10th, reuse boxes elsewhere
            if case % 10 == 0:
                inputs = extract(clip, plan_clip(clip, config), config, detector=face_detector)
            else:
                inputs = extract(clip, plan_clip(clip, config), config, boxes=[None, None])
        except VideoError as exc:
            assert exc.path == str(path)
            outcomes["VideoError"] += 1
        else:
            assert inputs.faces.shape == (2, 3, 224, 224) and np.isfinite(inputs.faces).all()
            assert inputs.spectrograms.shape == (2, 1, 192, 120) and np.isfinite(inputs.spectrograms).all()
            outcomes["ok"] += 1
        path.unlink()
    assert sum(outcomes.values()) == CASES
    assert outcomes["ok"] > 0 and outcomes["VideoError"] > 0, outcomes
