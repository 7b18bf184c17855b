"""End-to-end clip throughput of `score` on this machine: times real time, by worker count and detection size.

    python benchmarks/e2e.py                      # 10 real fixture clips, N = 10, workers 1 and 2
    python benchmarks/e2e.py --workers 1,2 --detect-max-side 0,320,240 --json e2e.json
    python benchmarks/e2e.py --artifacts checkpoint,onnx    # torch backend vs ONNX Runtime FP32, one run

What it measures, per (workers, FaceParams.detect_max_side):
- steady state: the worker pool and the backend are warmed up on one clip per
  worker first, then the clips are scored through the same path as `score`
  (WorkerPool of ReadJob -> SegmentBatcher -> rows); times real time = seconds
  of video scored per second of wall time;
- the stage breakdown (decode, faces, spectrogram, inference, consensus) in
  one process, one clip at a time (`bench --videos`), which shows where the
  time goes without workers overlapping;
- segments whose frame had no face of its own, so a smaller detection image
  that loses faces shows up next to the speed it buys.

The model is a freshly initialised checkpoint of the real architecture (its
weights do not change the time); detect_max_side lives in the artifact's
contract, so each setting gets its own checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from edge_emotion import LABELS
from edge_emotion.backends import open_backend
from edge_emotion.config import PreprocessConfig
from edge_emotion.run.bench.machine import machine_info
from edge_emotion.run.bench.stages import stage_breakdown
from edge_emotion.run.pool import WorkerPool
from edge_emotion.run.read import ReadJob
from edge_emotion.run.score import score_pieces
from edge_emotion.timeline.chunks import RecordingTask
from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint
from edge_emotion.toolchain.export.pipeline import build_onnx
from edge_emotion.toolchain.model import WIDTHS, SegmentBranch

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def make_checkpoint(path: Path, config: PreprocessConfig) -> Path:
    """An untrained checkpoint of the real architecture carrying `config` as its contract."""
    torch.manual_seed(0)
    branch = SegmentBranch()
    model_config = {"n_classes": len(LABELS), "modality": "both", "widths": list(WIDTHS)}
    state = {"model": branch.state_dict(), "model_config": model_config, "labels": list(LABELS), "preprocess": config.to_dict()}
    save_checkpoint(path, {**state, "train_config": {"note": "untrained, for timing"}})
    return path


def clip_folder(root: Path, count: int) -> list[Path]:
    """`count` copies of the two real CREMA-D fixture clips (FLV, 480x360, ~2 s)."""
    sources = sorted(FIXTURES.glob("*.flv"))
    paths = []
    for i in range(count):
        path = root / f"{i:03d}_{sources[i % len(sources)].name}"
        shutil.copy(sources[i % len(sources)], path)
        paths.append(path)
    return paths


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_state(checkpoint: Path, clips: list[Path], workers: int, batch_size: int, threads: int | None) -> dict:
    """Warm the pool and the backend, then time scoring `clips`; returns throughput and faceless counts."""
    with open_backend(checkpoint, device="cpu") as backend:
        config = backend.contract.preprocess
        tasks = [RecordingTask(i, c) for i, c in enumerate(clips)]
        with WorkerPool(ReadJob(config), workers=workers, timeout=600, threads=threads) as pool:
            start = time.perf_counter()
            list(score_pieces(pool.run(tasks[:workers]), backend, batch_size))  # one clip per worker: start-up
            startup = time.perf_counter() - start
            cpu_before = time.process_time() + sum(cpu_seconds(p) for p in pool.pids)
            start = time.perf_counter()
            scored = list(score_pieces(pool.run(tasks), backend, batch_size))  # a clip is one piece
            wall = time.perf_counter() - start
            cpu = time.process_time() + sum(cpu_seconds(p) for p in pool.pids) - cpu_before
    media = sum(s.piece.facts.times.duration for s in scored if s.piece.facts is not None)
    stages: dict[str, float] = {}
    for s in scored:
        for stage, seconds in {**s.piece.timings, "inference": s.infer_s}.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    return {
        "workers": workers,
        "clips": len(scored),
        "errors": sum(s.probs is None for s in scored),
        "faceless_segments": sum(int((~c.detected).sum()) for s in scored for c in s.piece.people),
        "media_s": round(media, 3),
        "wall_s": round(wall, 3),
        "startup_s": round(startup, 3),
        "clips_per_s": round(len(scored) / wall, 3),
        "times_real_time": round(media / wall, 3),
        "cpu_s_per_clip": round(cpu / len(scored), 3),
        # what two dedicated cores would give if all of that CPU time overlapped perfectly
        "times_real_time_2_free_cores_est": round(media / (cpu / 2), 3),
        "stage_ms_per_clip_in_workers": {k: round(1e3 * v / len(scored), 1) for k, v in stages.items()},
    }


def detector_cpu_ms(clips: list[Path], side: int, frames_per_clip: int = 10) -> dict:
    """MTCNN alone: CPU and wall ms per 480x360 frame at this detection size (CPU time is robust to a busy machine)."""
    from edge_emotion.config import FaceParams
    from edge_emotion.io.decode import open_clip, read_frames
    from edge_emotion.preprocess.faces import FaceDetector

    frames = []
    for path in clips[:2]:
        clip = open_clip(path)
        decoded = read_frames(clip, range(0, clip.frame_count, max(1, clip.frame_count // frames_per_clip)))
        frames += [decoded[i] for i in sorted(decoded)][:frames_per_clip]
    detector = FaceDetector(FaceParams(detect_max_side=side))
    detector.detect(frames[:2])  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    found = sum(box is not None for box in detector.detect(frames))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"frames": len(frames), "found": found, "cpu_ms_per_frame": round(1e3 * cpu / len(frames), 1), "wall_ms_per_frame": round(1e3 * wall / len(frames), 1)}


def one_process(checkpoint: Path, clips: list[Path]) -> dict:
    with open_backend(checkpoint, device="cpu") as backend:
        cpu = time.process_time()
        stages, _ = stage_breakdown(backend, clips)
        cpu = time.process_time() - cpu
    return {
        "cpu_s_per_clip": round(cpu / max(1, stages.clips), 3),
        "clips": stages.clips,
        "ms_per_clip": {k: round(v, 1) for k, v in stages.ms_per_clip.items()},
        "total_ms": round(stages.total_ms, 1),
        "times_real_time": round(stages.times_real_time, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--segments", type=int, default=10, help="N")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--detect-max-side", default="0,320,240", help="FaceParams.detect_max_side values (0 = full frame)")
    parser.add_argument("--artifacts", default="checkpoint", help="checkpoint (torch backend), onnx (FP32, ONNX Runtime) or both")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: the default)")
    parser.add_argument("--no-pools", action="store_true", help="only MTCNN alone and the one-process breakdown")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"machine": machine_info(), "load_average_start": os.getloadavg(), "args": vars(args) | {"json": str(args.json)}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="edge-emotion-e2e.") as tmp:
        clips = clip_folder(Path(tmp), args.clips)
        for side in (int(s) for s in args.detect_max_side.split(",")):
            base = PreprocessConfig(n_segments=args.segments)
            config = replace(base, face=replace(base.face, detect_max_side=side))
            checkpoint = make_checkpoint(Path(tmp) / f"side{side}.pt", config)
            models = {"checkpoint": checkpoint}
            if "onnx" in args.artifacts.split(","):
                models["onnx"] = Path(tmp) / f"side{side}.onnx"
                build_onnx(load_checkpoint(checkpoint), models["onnx"])
            mtcnn = detector_cpu_ms(clips, side)
            for kind in args.artifacts.split(","):
                model = models[kind]
                run = {"detect_max_side": side, "artifact": kind, "mtcnn": mtcnn,
                       "one_process": one_process(model, clips), "pools": []}
                print(json.dumps({"detect_max_side": side, "artifact": kind, "mtcnn": run["mtcnn"], "one_process": run["one_process"]}), flush=True)
                for workers in () if args.no_pools else (int(w) for w in args.workers.split(",")):
                    pool = steady_state(model, clips, workers, args.batch_size, args.threads or None)
                    run["pools"].append(pool)
                    print(json.dumps({"detect_max_side": side, "artifact": kind, **pool}), flush=True)
                results["runs"].append(run)
    results["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print_markdown(results)


def print_markdown(results: dict) -> None:
    """The tables for benchmarks/README."""
    print(f"\nload average at start {results['load_average_start']}, at end {results['load_average_end']}")
    print("\n| detect_max_side | model | workers | clips/s | x real time | CPU s/clip | x real time on 2 free cores (est.) | faceless segs | startup s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in results["runs"]:
        for pool in run["pools"]:
            print(
                f"| {run['detect_max_side'] or 'full'} | {run['artifact']} | {pool['workers']} | {pool['clips_per_s']} | {pool['times_real_time']} "
                f"| {pool['cpu_s_per_clip']} | {pool['times_real_time_2_free_cores_est']} | {pool['faceless_segments']} | {pool['startup_s']} |"
            )
    print("\n| detect_max_side | MTCNN CPU ms/frame (1 thread) | wall ms/frame | faces found |")
    print("|---|---|---|---|")
    for run in {r["detect_max_side"]: r for r in results["runs"]}.values():
        m = run["mtcnn"]
        print(f"| {run['detect_max_side'] or 'full'} | {m['cpu_ms_per_frame']} | {m['wall_ms_per_frame']} | {m['found']}/{m['frames']} |")
    print("\n| detect_max_side | model | decode | faces | spectrogram | inference | consensus | total ms/clip | CPU s/clip | x real time (1 process) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in results["runs"]:
        one = run["one_process"]
        ms = one["ms_per_clip"]
        print(
            f"| {run['detect_max_side'] or 'full'} | {run['artifact']} | {ms['decode']} | {ms['faces']} | {ms['spectrogram']} | {ms['inference']} "
            f"| {ms['consensus']} | {one['total_ms']} | {one['cpu_s_per_clip']} | {one['times_real_time']} |"
        )


if __name__ == "__main__":
    main()
