"""`score` of CREMA-D clips as a device runs it (the runtime-only venv, the real CLI), against the fer peer, in one run.

    python benchmarks/score_speed.py --model n10.onnx --venv /work/rtvenv [--peer /tmp/fervenv] [--repeats 3]
        [--before VENV MODEL] [--json out.json]

Per repeat, interleaved (so a drift in the machine's load touches every row alike):
- `score SMALL --workers 2` and `score LARGE --workers 2` (6 and 66 copies of the fixture clips): the steady rate is
  the marginal one, (media of LARGE - media of SMALL) / (wall of LARGE - wall of SMALL), which takes start-up (imports,
  sessions, worker spawn, the first batch) out;
- a plain `score FOLDER` of 60 clips with default options, cold (a fresh process): what a user sees;
- the fer peer (benchmarks/peer_fer.py in its own venv: face only, N = 10, steady and cold), when --peer is given;
- with --before VENV MODEL, the same two score figures for an older install (another commit's runtime venv and an
  N = 10 model exported by that commit), interleaved with these: before/after in one run;
- decoding alone: each fixture clip opened and every frame and the audio decoded on one thread (PyAV, no
  conversion), the yardstick that does not depend on the machine's speed: the steady wall and CPU per clip are
  also given as multiples of it (CPU from getrusage of the score process and its workers).
Reports medians over the repeats and the ratios the issues set targets for.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*.flv"))


def media_seconds(venv: Path) -> dict[str, float]:
    """The fixtures' durations as the runtime's decoder reads them (what `score` counts as real time)."""
    code = "import sys, json; from edge_emotion.io.decode import open_clip; " \
           "print(json.dumps({p: open_clip(p).duration for p in sys.argv[1:]}))"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code, *map(str, FIXTURES)], capture_output=True,
                          text=True, check=True)
    return {Path(k).name: v for k, v in json.loads(done.stdout).items()}


def folder(root: Path, count: int, durations: dict[str, float]) -> tuple[Path, float]:
    """`count` copies of the fixtures (alternating) in a fresh folder, and their summed duration."""
    out = root / f"clips{count}"
    out.mkdir()
    media = 0.0
    for i in range(count):
        source = FIXTURES[i % len(FIXTURES)]
        shutil.copy(source, out / f"{i:03d}_{source.name}")
        media += durations[source.name]
    return out, media


DECODE_ALONE = """
import sys, time, av
def decode(path):
    with av.open(path) as c:
        for frame in c.decode(*c.streams.video, *c.streams.audio):  # every frame and the audio, one thread
            pass
times = []
for _ in range(int(sys.argv[1])):
    for path in sys.argv[2:]:
        start = time.perf_counter(); decode(path); times.append(time.perf_counter() - start)
times.sort(); print(times[len(times) // 2] * 1000)
"""


def decode_alone_ms(venv: Path, repeats: int = 15) -> float:
    """Median ms to decode one fixture clip alone (every frame and the audio, one thread), in the runtime venv."""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", DECODE_ALONE, str(repeats), *map(str, FIXTURES)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def score_wall(venv: Path, model: Path, clips: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    out.unlink(missing_ok=True)
    command = [str(venv / "bin" / "edge-emotion"), "score", str(clips), "-m", str(model), "-o", str(out), "-q", *extra]
    return timed(command, {**os.environ})


def peer(peer_venv: Path, clips: int) -> dict[str, float]:
    done = subprocess.run([str(peer_venv / "bin" / "python"), str(ROOT / "benchmarks" / "peer_fer.py"), "--clips",
                           str(clips)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout[done.stdout.index("{"):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True, help="a runtime-only venv (pip install .)")
    parser.add_argument("--peer", type=Path, help="the fer peer's venv (see benchmarks/peer_fer.py)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", type=int, default=6)
    parser.add_argument("--large", type=int, default=66)
    parser.add_argument("--cold", type=int, default=60)
    parser.add_argument("--before", nargs=2, type=Path, metavar=("VENV", "MODEL"), help="an older install to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    durations = media_seconds(args.venv)
    rows: dict[str, list[float]] = {"steady_x": [], "cold_default_x": [], "peer_steady_x": [], "peer_cold_x": [],
                                    "before_steady_x": [], "before_cold_default_x": [], "decode_alone_ms": []}
    for prefix in ("", "before_"):
        rows.update({f"{prefix}steady_wall_ms_per_clip": [], f"{prefix}steady_cpu_ms_per_clip": []})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, small_media = folder(root, args.small, durations)
        large, large_media = folder(root, args.large, durations)
        cold, cold_media = folder(root, args.cold, durations)
        for _ in range(args.repeats):
            installs = [("", args.venv, args.model)] + ([("before_", *args.before)] if args.before else [])
            rows["decode_alone_ms"].append(decode_alone_ms(args.venv))
            for prefix, venv, model in installs:
                t_small, cpu_small = score_wall(venv, model, small, root / "s.csv", ["--workers", "2"])
                t_large, cpu_large = score_wall(venv, model, large, root / "l.csv", ["--workers", "2"])
                rows[f"{prefix}steady_x"].append((large_media - small_media) / (t_large - t_small))
                rows[f"{prefix}steady_wall_ms_per_clip"].append((t_large - t_small) / (args.large - args.small) * 1000)
                rows[f"{prefix}steady_cpu_ms_per_clip"].append((cpu_large - cpu_small) / (args.large - args.small) * 1000)
                rows[f"{prefix}cold_default_x"].append(cold_media / score_wall(venv, model, cold, root / "c.csv", [])[0])
            if args.peer:
                result = peer(args.peer, args.cold)
                rows["peer_steady_x"].append(result["steady_times_real_time"])
                rows["peer_cold_x"].append(result["media_s"] / result["cold_wall_s_without_interpreter_start"])
    medians = {k: round(statistics.median(v), 2) for k, v in rows.items() if v}
    for prefix in ("", "before_") if args.before else ("",):
        for what in ("wall", "cpu"):
            medians[f"{prefix}steady_{what}_vs_decode_alone"] = round(
                medians[f"{prefix}steady_{what}_ms_per_clip"] / medians["decode_alone_ms"], 2)
    if args.peer:
        medians["steady_vs_peer_steady"] = round(medians["steady_x"] / medians["peer_steady_x"], 2)
        medians["cold_default_vs_peer_steady"] = round(medians["cold_default_x"] / medians["peer_steady_x"], 2)
    report = {"runs": {k: [round(x, 2) for x in v] for k, v in rows.items() if v}, "medians": medians,
              "load_before": load_before}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
