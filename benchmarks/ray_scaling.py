"""Local `score` against `score --executor ray` on the same folder, on this machine: the overhead, and the scaling.

    python benchmarks/ray_scaling.py                          # 24 clips, N = 10, ONNX FP32, workers 1 and 2
    python benchmarks/ray_scaling.py --clips 48 --workers 1,2,4 --json ray.json

For each worker count w, three runs score the same folder into a fresh results file:
- local: `score_folder` with w preprocessing processes (WorkerPool), the default executor;
- ray, own instance: `score_folder_ray` as `score --executor ray` runs it without --address: it starts a
  local Ray instance (w + 1 logical CPUs: w preprocessing actors and the backend actor), scores, stops it;
- ray, joined: the same pipeline on an instance that is already up (as with --address), so the
  instance's start-up is left out and only the pipeline's own (actors, their worker processes) remains.

Per run: the wall time of the whole call (start-up included) and the steady-state rate: the rows
written after the first burst (rows come one burst per backend call) over the seconds from that
burst to the last row, which leaves every start-up out. The
overhead is the ratio of Ray's wall time (and of its steady-state rate) to local's at the same w.
On a 2-core machine w = 2 already fills the cores, so scaling beyond shows contention, not Ray.
The model is a freshly initialised branch of the real architecture, exported to ONNX (its weights do
not change the time); the clips are copies of the two real CREMA-D fixture clips.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import clip_folder, make_checkpoint  # noqa: E402  (benchmarks/e2e.py: the same clips and model)

from edge_emotion.preprocess.segments import PreprocessConfig  # noqa: E402
from edge_emotion.ray.cluster import RayOptions, ray_session  # noqa: E402
from edge_emotion.ray.scoring import score_folder_ray  # noqa: E402
from edge_emotion.run.bench.machine import machine_info  # noqa: E402
from edge_emotion.run.result import Result  # noqa: E402
from edge_emotion.run.score import ScoreOptions, score_folder  # noqa: E402
from edge_emotion.run.summary import Summary  # noqa: E402
from edge_emotion.toolchain.checkpoint import load_checkpoint  # noqa: E402
from edge_emotion.toolchain.export.pipeline import build_onnx  # noqa: E402


class RowTimes:
    """A ScoreProgress that notes when each row was written."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def start(self, total: int, skipped: int) -> None:
        pass

    def advance(self, row: Result) -> None:
        self.times.append(time.perf_counter())

    def steady_clips_per_s(self) -> float | None:
        """Rows after the first burst over the time since it: rows come in bursts, one per backend call."""
        later = [t for t in self.times if t > self.times[0] + 1e-3] if self.times else []
        return len(later) / (later[-1] - self.times[0]) if later else None


def timed(name: str, workers: int, run: Callable[[RowTimes], Summary]) -> dict[str, Any]:
    rows = RowTimes()
    start = time.perf_counter()
    summary = run(rows)
    wall = time.perf_counter() - start
    steady = rows.steady_clips_per_s()
    result = {
        "executor": name,
        "workers": workers,
        "clips": summary.scored,
        "errors": summary.statuses.get("error", 0),
        "wall_s": round(wall, 2),
        "clips_per_s": round(summary.scored / wall, 3),
        "steady_clips_per_s": None if steady is None else round(steady, 3),
        "first_row_s": round(rows.times[0] - start, 2) if rows.times else None,
        "media_s": round(summary.media_seconds, 2),
        "times_real_time": round(summary.media_seconds / wall, 3),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--segments", type=int, default=10, help="N")
    parser.add_argument("--workers", default="1,2", help="preprocessing processes (local) / actors (ray)")
    parser.add_argument("--batch-size", type=int, default=64, help="segments per backend call")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all runs; the table shows medians")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine_info(), "load_average_start": os.getloadavg(), "args": vars(args) | {"json": str(args.json)}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="edge-emotion-ray.") as tmp:
        root = Path(tmp)
        (root / "videos").mkdir()
        clip_folder(root / "videos", args.clips)
        model = root / "model.onnx"
        build_onnx(load_checkpoint(make_checkpoint(root / "model.pt", PreprocessConfig(n_segments=args.segments))), model)
        options = ScoreOptions(batch_size=args.batch_size, timeout=600)
        rounds = [(r, int(w)) for r in range(args.repeats) for w in args.workers.split(",")]
        for n, (_, workers) in enumerate(rounds):  # interleaved, so a busy spell on a shared machine hits all
            local = ScoreOptions(batch_size=args.batch_size, timeout=600, workers=workers)
            own = RayOptions(num_cpus=workers + 1, preprocess_actors=workers)
            out = root / f"out{n}"
            results["runs"].append(timed("local", workers, lambda p: score_folder(root / "videos", model, out / "local.csv", local, p)))
            results["runs"].append(
                timed("ray, own instance", workers, lambda p: score_folder_ray(root / "videos", model, out / "own.csv", options, p, own))
            )
            with ray_session(None, num_cpus=workers + 1):
                results["runs"].append(
                    timed("ray, joined", workers, lambda p: score_folder_ray(root / "videos", model, out / "joined.csv", options, p, own))
                )
    results["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print_markdown(results)


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (executor, workers): the median of each figure over the repeats (None where any run had none)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["executor"], r["workers"]), []).append(r)
    out = []
    for (executor, workers), group in groups.items():
        row: dict[str, Any] = {"executor": executor, "workers": workers, "runs": len(group)}
        for key in ("wall_s", "first_row_s", "clips_per_s", "steady_clips_per_s"):
            values = [g[key] for g in group]
            row[key] = None if None in values else round(float(statistics.median(values)), 3)
        out.append(row)
    return sorted(out, key=lambda r: (r["workers"], r["executor"] != "local", r["executor"]))


def print_markdown(results: dict[str, Any]) -> None:
    """The table for benchmarks/README.md (medians), with Ray's ratios to local at the same worker count."""
    print(f"\nload average at start {results['load_average_start']}, at end {results['load_average_end']}")
    print("\n| executor | workers | runs | wall s | first row s | clips/s (whole run) | steady clips/s | wall vs local | steady vs local |")
    print("|---|---|---|---|---|---|---|---|---|")
    table = medians(results["runs"])
    local = {r["workers"]: r for r in table if r["executor"] == "local"}
    for r in table:
        base = local[r["workers"]]
        wall_ratio = f"{r['wall_s'] / base['wall_s']:.2f}x"
        steady = r["steady_clips_per_s"]
        steady_ratio = f"{steady / base['steady_clips_per_s']:.2f}x" if steady and base["steady_clips_per_s"] else "-"
        print(
            f"| {r['executor']} | {r['workers']} | {r['runs']} | {r['wall_s']} | {r['first_row_s']} | {r['clips_per_s']} | {steady or '-'} "
            f"| {wall_ratio} | {steady_ratio} |"
        )


if __name__ == "__main__":
    main()
