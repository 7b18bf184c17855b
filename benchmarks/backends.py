"""Segments per second of the shared branch: torch eager vs ONNX Runtime FP32 / FP16 / INT8, batch 1, 16, 64, one run.

    python benchmarks/backends.py [--checkpoint CKPT] [--batches 1 16 64] [--seconds 2] [--threads 2] [--out table.md]

Speed does not depend on the weights, so without --checkpoint a freshly
initialised branch is used; inputs are random tensors of the contract's shapes.
INT8 ranges are calibrated on 32 random segments (speed only: for accuracy use
`edge-emotion export --int8 --calib DIR`). Every backend runs through the same
Backend interface (open_backend -> infer), so the numbers include its input
casts and output copy, as a scorer pays them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge_emotion import LABELS
from edge_emotion.backends import Backend, open_backend
from edge_emotion.config import PreprocessConfig
from edge_emotion.contract import ModelContract
from edge_emotion.toolchain.calibration.int8 import compute_ranges, quantize_qdq
from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint
from edge_emotion.toolchain.export.onnx_export import write_checked
from edge_emotion.toolchain.export.pipeline import build_onnx, checkpoint_contract
from edge_emotion.toolchain.model import WIDTHS, SegmentBranch


def fresh_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    state = {
        "model": SegmentBranch().state_dict(),
        "model_config": {"n_classes": len(LABELS), "modality": "both", "widths": list(WIDTHS)},
        "labels": list(LABELS),
        "preprocess": PreprocessConfig().to_dict(),
        "train_config": {"note": "benchmark: untrained weights"},
    }
    save_checkpoint(path, state)
    return path


def random_inputs(contract: ModelContract, segments: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = contract.input_shapes()
    faces = rng.standard_normal((segments, *shapes["face"][1:]), dtype=np.float32)  # [S, 3, 224, 224]
    specs = rng.standard_normal((segments, *shapes["spectrogram"][1:]), dtype=np.float32)  # [S, 1, 192, 120]
    return faces, specs


def build_artifacts(checkpoint: Path, folder: Path) -> dict[str, Path]:
    """FP32 / FP16 / INT8 ONNX of the checkpoint (INT8 ranges from 32 random segments)."""
    state = load_checkpoint(checkpoint)
    paths = {p: folder / f"model.{p}.onnx" for p in ("fp32", "fp16", "int8")}
    build_onnx(state, paths["fp32"], "fp32")
    build_onnx(state, paths["fp16"], "fp16")
    calib = [random_inputs(checkpoint_contract(state), 8, seed) for seed in range(4)]
    quantize_qdq(paths["fp32"], paths["int8"], compute_ranges(paths["fp32"], calib, "minmax"), "minmax")
    import onnx

    write_checked(onnx.load(str(paths["int8"])), checkpoint_contract(state, "int8"), paths["int8"])
    return paths


def segments_per_second(backend: Backend, faces: np.ndarray, specs: np.ndarray, seconds: float) -> tuple[float, float]:
    """(median, best) segments/s over repeated calls after 2 warm-up calls, for at least `seconds` and 5 calls."""
    for _ in range(2):
        backend.infer(faces, specs)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        backend.infer(faces, specs)
        backend.synchronize()
        times.append(time.perf_counter() - t0)
    n = faces.shape[0]
    return n / statistics.median(times), n / min(times)


def machine() -> str:
    """CPU model, cores and vector extensions that matter for INT8 (VNNI) on x86."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{model}, {os.cpu_count()} logical CPUs, ISA: {', '.join(isa) or 'n/a'}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average at start {load:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per cell")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (torch and ORT)")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    args = parser.parse_args()

    import onnxruntime

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="edge-emotion-bench.") as tmp:
        checkpoint = args.checkpoint or fresh_checkpoint(Path(tmp) / "fresh.pt")
        artifacts = build_artifacts(checkpoint, Path(tmp))
        contract = checkpoint_contract(load_checkpoint(checkpoint))
        rows = {"torch eager FP32": (checkpoint, {"device": "cpu"})}
        ort_options = {"device": "cpu", "threads": args.threads}
        rows.update({f"ONNX Runtime {p.upper()}": (path, ort_options) for p, path in artifacts.items()})
        results: dict[str, list[str]] = {}
        for label, (path, options) in rows.items():
            with open_backend(path, **options) as backend:
                cells = []
                for batch in args.batches:
                    median, best = segments_per_second(backend, *random_inputs(contract, batch), args.seconds)
                    cells.append(f"{median:.0f} ({best:.0f})")
                    print(f"{label:22s} batch {batch:3d}: {median:8.1f} segments/s (best {best:.1f})", flush=True)
                results[label] = cells
    header = "| backend | " + " | ".join(f"batch {b}" for b in args.batches) + " |"
    lines = [
        f"Machine: {machine()}; onnxruntime {onnxruntime.__version__} (CPUExecutionProvider, {args.threads} threads).",
        "",
        "Segments/s, median over repeated calls (best in parentheses):",
        "",
        header,
        "|" + "---|" * (len(args.batches) + 1),
        *[f"| {label} | " + " | ".join(cells) + " |" for label, cells in results.items()],
    ]
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
