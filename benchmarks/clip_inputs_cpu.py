"""CPU milliseconds per clip of the per-clip preprocessing (run/read.py `clip_pieces`: decode, plan, faces, spectrograms),
one process, one thread, for the code tree at ROOT: run it on two checkouts, interleaved, to compare them.

    git worktree add /tmp/before 89b97a2
    for i in 1 2 3; do python benchmarks/clip_inputs_cpu.py /tmp/before; python benchmarks/clip_inputs_cpu.py .; done

CPU time (process_time) is less disturbed by other jobs on a shared machine than wall time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    sys.path.insert(0, str(root))  # the tree under test, whatever is installed
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch  # the older trees run MTCNN in torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from edge_emotion.config import PreprocessConfig
    from edge_emotion.preprocess.faces import FaceDetector
    try:
        from edge_emotion.run.read import clip_pieces
        from edge_emotion.timeline.chunks import RecordingTask

        def load_clip_inputs(path, config, detector):  # the piece of a clip, as older trees' clip inputs
            return next(iter(clip_pieces(RecordingTask(0, path), config, detector)))
    except ImportError:  # trees before run/pieces.py
        try:
            from edge_emotion.run.clip_inputs import load_clip_inputs
        except ImportError:  # trees before run/workers.py was split (and its prepare_clip renamed)
            from edge_emotion.run.workers import prepare_clip as load_clip_inputs

    config = PreprocessConfig()
    try:
        detector = FaceDetector(config.face, threads=1)
    except TypeError:  # trees before the packaged detector take no threads argument
        detector = FaceDetector(config.face)
    clips = sorted(FIXTURES.glob("*.flv")) * 5
    load_clip_inputs(clips[0], config, detector)  # warm-up
    stages: dict[str, float] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    for path in clips:
        for stage, seconds in load_clip_inputs(path, config, detector).timings.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    per_clip = {k: round(1e3 * v / len(clips), 1) for k, v in stages.items()}
    print(json.dumps({"root": str(root), "cpu_ms_per_clip": round(1e3 * cpu / len(clips), 1), "wall_ms_per_clip": round(1e3 * wall / len(clips), 1), **per_clip}))


if __name__ == "__main__":
    main()
