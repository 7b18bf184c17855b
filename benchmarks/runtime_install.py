"""The runtime-only install, measured: venv size, and `predict` of one clip (wall, peak RSS) against `import torch`.

    python benchmarks/runtime_install.py --model model.onnx [--venv /tmp/ee-runtime] [--json out.json]

Makes (or reuses) a virtual environment with `pip install .` only (no [train]: no torch), checks that torch is
absent there, then times, each `--repeats` times in fresh processes: the runtime venv's
`edge-emotion predict CLIP -m MODEL`, and this interpreter's `python -c "import torch"` (the floor of anything
that imports torch). Peak RSS is the child's ru_maxrss. The ONNX comes from the full install (`edge-emotion
export`), which is the deployment this measures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests" / "fixtures" / "1001_DFA_HAP_XX.flv"


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def make_venv(venv: Path) -> None:
    if not (venv / "bin" / "edge-emotion").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        raise SystemExit(f"{venv} has torch: not a runtime-only install")


def measure(cmd: list[str], repeats: int) -> dict:
    walls, rss = [], []
    for _ in range(repeats):
        wrapper = [sys.executable, "-c", (
            "import resource, subprocess, sys, time, json; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
        ), *cmd]
        wall, peak = json.loads(subprocess.run(wrapper, check=True, capture_output=True, text=True).stdout)
        walls.append(wall)
        rss.append(peak)
    return {"wall_s_median": round(statistics.median(walls), 3), "wall_s": [round(w, 3) for w in walls], "peak_rss_mb": round(max(rss), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an ONNX exported by the full install")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/ee-runtime"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="rebuild the venv")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.fresh and args.venv.exists():
        shutil.rmtree(args.venv)
    make_venv(args.venv)
    predict = [str(args.venv / "bin" / "edge-emotion"), "predict", str(CLIP), "-m", str(args.model.resolve())]
    result = {
        "venv_mb": round(du_mb(args.venv), 1),
        "predict": measure(predict, args.repeats),
        "import_torch": measure([sys.executable, "-c", "import torch"], args.repeats),
    }
    result["predict_over_import_torch"] = round(result["predict"]["wall_s_median"] / result["import_torch"]["wall_s_median"], 3)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
