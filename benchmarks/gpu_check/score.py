"""The score step: score_folder end to end on copies of the fixture clips: clips/s, times real time, GPU utilisation."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.harness import Check, StepOutcome
from benchmarks.gpu_check.inputs import fixture_clips, fresh_checkpoint
from benchmarks.gpu_check.report import fmt, table
from benchmarks.gpu_check.utilisation import GpuSampler


def clip_folder(root: Path, count: int) -> Path:
    """`count` copies of the fixture clips (about 2 s each) under root."""
    root.mkdir(parents=True, exist_ok=True)
    sources = fixture_clips()
    for i in range(count):
        shutil.copy(sources[i % len(sources)], root / f"{i:04d}_{sources[i % len(sources)].name}")
    return root


def score_run(check: Check, folder: Path, checkpoint: Path, name: str) -> dict[str, Any]:
    """score_folder over `folder` into a fresh JSONL, GPU utilisation sampled meanwhile."""
    from edge_emotion.run.score import ScoreOptions, score_folder

    s = check.sizes
    options = ScoreOptions(device=check.device, face_device=check.device, workers=s.score_workers,
                           batch_size=s.score_batch)  # fmt: skip
    with GpuSampler(check.cuda) as sampler:
        summary = score_folder(folder, checkpoint, check.work / f"{name}.jsonl", options)
    return {"clips": summary.scored, "seconds": summary.seconds, "media_seconds": summary.media_seconds,
            "clips_per_s": summary.clips_per_second, "times_real_time": summary.times_real_time,
            "statuses": summary.statuses, "failures": summary.failures,
            "stage_ms_per_clip": {k: 1e3 * v / max(1, summary.scored) for k, v in summary.stages.items()},
            "gpu_utilisation": sampler.summary()}  # fmt: skip


def step_score(check: Check) -> dict[str, Any]:
    result = check.begin()
    s = check.sizes
    checkpoint = fresh_checkpoint(check)  # N = 10, the CREMA-D setting: speed does not depend on the weights
    result.update(artifact="checkpoint (torch backend)", n_segments=10, workers=s.score_workers,
                  batch_size=s.score_batch, device=check.device, face_device=check.device)  # fmt: skip
    result["one_clip"] = score_run(check, clip_folder(check.work / "score-1", 1), checkpoint, "score-1")
    result["folder"] = score_run(check, clip_folder(check.work / "score-n", s.score_clips), checkpoint, "score-n")
    one, many = result["one_clip"], result["folder"]
    if many["clips"] > 1 and many["seconds"] > one["seconds"]:
        # the one-clip run is almost all start-up (backend, detector, worker pool): the difference is the steady state
        steady = (many["clips"] - 1) / (many["seconds"] - one["seconds"])
        result["steady_clips_per_s_est"] = steady
        result["steady_times_real_time_est"] = steady * many["media_seconds"] / many["clips"]
    util = many["gpu_utilisation"]
    result["summary"] = (f"{many['clips']} clips in {many['seconds']:.1f} s: {many['clips_per_s']:.2f} clips/s, "
                         f"{many['times_real_time']:.1f}x real time (start-up included)"
                         + (f", GPU busy {util['mean_percent']:.0f} % (mean)" if util["status"] == "ok" else ""))  # fmt: skip
    bad = {k: v for k, v in many["statuses"].items() if k == "error"}
    if bad or many["clips"] != s.score_clips:
        raise StepOutcome("failed", f"{many['clips']} of {s.score_clips} clips scored; failures {many['failures']}", result)
    return result



def md_score(r: dict[str, Any]) -> list[str]:
    rows = []
    for label in ("one_clip", "folder"):
        x = r.get(label)
        if x:
            util = x["gpu_utilisation"]
            busy = f"{util['mean_percent']:.0f} / {util['max_percent']:.0f}" if util["status"] == "ok" else util["status"]
            rows.append([label, x["clips"], x["seconds"], x["clips_per_s"], x["times_real_time"], busy,
                         ", ".join(f"{k} {v:.0f}" for k, v in x["stage_ms_per_clip"].items())])  # fmt: skip
    lines = [(f"{r.get('artifact')}, N = {r.get('n_segments')}, workers {r.get('workers')}, batch {r.get('batch_size')}; "
              f"steady state (est.): {fmt(r.get('steady_clips_per_s_est'))} clips/s, "
              f"{fmt(r.get('steady_times_real_time_est'))}x real time"), ""]  # fmt: skip
    return lines + table(["run", "clips", "s", "clips/s", "x real time", "GPU % mean / max", "ms per clip by stage"], rows)
