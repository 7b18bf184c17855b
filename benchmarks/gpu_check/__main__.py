"""The command line of the GPU check (see __init__.py for what it does and how to run it on a device)."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # `python benchmarks/gpu_check`: its folder is on sys.path instead of the repository root
    _folder = Path(__file__).resolve().parent
    sys.path = [str(_folder.parents[1]), *(p for p in sys.path if Path(p or ".").resolve() != _folder)]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from benchmarks.gpu_check.harness import Check, Record, run_steps  # noqa: E402
from benchmarks.gpu_check.report import FORMAT, markdown, write_reports  # noqa: E402
from benchmarks.gpu_check.sizes import CPU_SIZES, CUDA_SIZES, QUICK_SIZES  # noqa: E402
from benchmarks.gpu_check.steps import RENDERERS, STEPS  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description="Every GPU path of the toolkit, checked and timed in one process.")  # fmt: skip
    parser.add_argument("--device", choices=("cuda", "cpu"), required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.md, gpu_tests.log")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock seconds for the whole run")
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS), help="comma-separated subset of the steps")
    parser.add_argument("--quick", action="store_true",
                        help="the smallest sizes that still run every step's code (a smoke run: its figures are not for reading)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    unknown = set(args.steps.split(",")) - {s.name for s in STEPS}
    if unknown:
        raise SystemExit(f"gpu_check: unknown step(s) {sorted(unknown)}; choose from {[s.name for s in STEPS]}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"gpu_check: --device cuda but torch {torch.__version__} sees no CUDA device; use --device cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = QUICK_SIZES if args.quick else CUDA_SIZES if args.device == "cuda" else CPU_SIZES
    report = {"format": FORMAT, "device": args.device, "quick": args.quick, "budget_s": args.budget_s, "command": sys.argv,
              "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "steps": []}  # fmt: skip

    def keep(record: Record) -> None:
        report["steps"].append(record)
        write_reports(args.out, report, RENDERERS)

    with tempfile.TemporaryDirectory(prefix="edge-emotion-gpu-check.") as work:
        check = Check(args.device, sizes, Path(work), args.out, deadline=started + args.budget_s)
        run_steps(check, STEPS, args.steps.split(","), keep)
    report["elapsed_s"] = time.perf_counter() - started
    write_reports(args.out, report, RENDERERS)
    print(markdown(report, RENDERERS).split("\n## ")[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
