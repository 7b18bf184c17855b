"""The throughput step: branch segments/s for each batch size and each way of running it (eager FP32 NCHW and
channels_last, FP16 autocast, torch.compile, CUDA graphs, the torch backend with numpy in and out), with the FLOPs per
segment (model.branch_cost) and the share of a matmul ceiling measured in the same run and of the datasheet peak."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import Check, StepOutcome, short
from benchmarks.gpu_check.inputs import fresh_checkpoint
from benchmarks.gpu_check.report import fmt, table
from benchmarks.gpu_check.timing import timed
from benchmarks.gpu_check.torch_switches import tf32

# Dense (no sparsity) TFLOP/s from NVIDIA's H100 / H200 SXM datasheets, by torch's device name; other GPUs: none.
DATASHEET_TFLOPS: dict[str, dict[str, float]] = {
    "NVIDIA H200": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4},
    "NVIDIA H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4},
}


@dataclass(frozen=True)
class Variant:
    """One way of running the branch: kind eager | compile | graph | backend."""

    name: str
    kind: str
    precision: str  # fp32 | fp16
    channels_last: bool


def variants(check: Check) -> list[Variant]:
    if not check.cuda:
        return [Variant("eager FP32", "eager", "fp32", False), Variant("eager FP32 channels_last", "eager", "fp32", True),
                Variant("torch.compile FP32 channels_last", "compile", "fp32", True),
                Variant("torch backend FP32 (numpy in/out)", "backend", "fp32", True)]  # fmt: skip
    return [Variant("eager FP32", "eager", "fp32", False), Variant("eager FP32 channels_last", "eager", "fp32", True),
            Variant("eager FP16 autocast channels_last", "eager", "fp16", True),
            Variant("torch.compile FP16 autocast channels_last", "compile", "fp16", True),
            Variant("CUDA graph FP16 autocast channels_last", "graph", "fp16", True),
            Variant("torch backend FP16 (numpy in/out)", "backend", "fp16", True)]  # fmt: skip


def matmul_ceiling_tflops(check: Check) -> dict[str, float]:
    """Measured dense matmul TFLOP/s per precision: the ceiling the branch's FLOP rate is compared with."""
    import torch

    device = torch.device(check.device)
    n, reps = (8192, 10) if check.cuda else (1024, 5)
    kinds = {"fp32": (torch.float32, False), "tf32": (torch.float32, True), "fp16": (torch.float16, None)}
    ceilings = {}
    for name, (dtype, allow) in kinds.items() if check.cuda else [("fp32", (torch.float32, None))]:
        pair = torch.randn(2, n, n, device=device, dtype=dtype)
        with tf32(allow):
            stats = timed(lambda p=pair: p[0] @ p[1], check.sync, min_seconds=0.0, warmup=2, min_calls=reps, max_calls=reps)
        ceilings[name] = 2 * n**3 / (stats["p50"] / 1e3) / 1e12
    return ceilings


def branch_runner(variant: Variant, model: Any, face: Any, spec: Any, device: Any) -> Callable[[], Any]:
    """A call that runs the branch on the batch (inputs already on the device) and returns logits."""
    import torch

    fp16 = variant.precision == "fp16"
    if variant.kind == "graph":
        return cuda_graph_runner(model, face, spec)

    def call() -> Any:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=fp16):
            return model(face, spec)

    return call


def cuda_graph_runner(model: Any, face: Any, spec: Any) -> Callable[[], Any]:
    """Capture one FP16-autocast forward in a CUDA graph (autocast's weight cache off, as capture requires); replay it."""
    import torch

    def forward() -> Any:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
            return model(face, spec)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            forward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()

    def replay() -> Any:
        graph.replay()
        return out

    return replay


def probabilities(output: Any) -> np.ndarray:
    """Logits (a tensor) or a backend's probabilities (numpy) -> float64 probabilities [S, K] on the host."""
    if isinstance(output, np.ndarray):
        return output.astype(np.float64)
    return output.float().softmax(dim=1).cpu().numpy().astype(np.float64)


@dataclass
class Models:
    """The branch in each form the variants need, made once per throughput step."""

    nchw: Any
    channels_last: Any
    compiled: Any
    backend: Any  # a torch Backend over a fresh checkpoint (numpy in/out), or why it did not open (str)


def make_models(check: Check) -> Models:
    """The branch straight from model.py (it needs torch alone); the backend row also needs the checkpoint stack
    (PyAV among it): if that fails, its reason stands in for the backend and the other rows still run."""
    import torch

    from edge_emotion.toolchain.model import SegmentBranch

    torch.manual_seed(0)
    nchw = SegmentBranch().eval()
    try:
        from edge_emotion.backends import open_backend
        from edge_emotion.toolchain.checkpoint import load_checkpoint

        checkpoint = fresh_checkpoint(check)
        nchw.load_state_dict(load_checkpoint(checkpoint)["model"])  # the backend's weights: outputs comparable
        precision = "fp16" if check.cuda else "fp32"
        backend: Any = open_backend(checkpoint, "torch", device=check.device, precision=precision)
    except Exception as exc:  # noqa: BLE001 - recorded in the backend row's cells
        backend = f"the torch backend did not open: {short(exc)}"
    nchw = nchw.to(torch.device(check.device))
    cl = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    return Models(nchw, cl, torch.compile(cl, dynamic=False), backend)


def batch_inputs(check: Check, batch: int) -> dict[str, Any]:
    """Seeded random inputs of the contract's shapes on the device (speed does not depend on the values)."""
    import torch

    device = torch.device(check.device)
    gen = torch.Generator(device=device).manual_seed(batch)
    face = torch.randn(batch, 3, 224, 224, device=device, generator=gen)  # [S, 3, 224, 224]
    spec = torch.randn(batch, 1, 192, 120, device=device, generator=gen)  # [S, 1, 192, 120]
    inputs = {"face": face, "spec": spec, "face_cl": face.contiguous(memory_format=torch.channels_last),
              "spec_cl": spec.contiguous(memory_format=torch.channels_last)}  # fmt: skip
    return inputs


def run_cell(check: Check, variant: Variant, models: Models, inputs: dict[str, Any], reference: np.ndarray) -> dict[str, Any]:
    """Time one variant at one batch size; its probabilities against eager FP32 on the same inputs."""
    import torch

    device = torch.device(check.device)
    cell: dict[str, Any] = {}
    if variant.kind == "backend":
        face_np, spec_np = inputs["face"].cpu().numpy(), inputs["spec"].cpu().numpy()
        def call() -> Any:
            return models.backend.infer(face_np, spec_np)
    else:
        model = {"eager": models.channels_last if variant.channels_last else models.nchw, "compile": models.compiled,
                 "graph": models.channels_last}[variant.kind]  # fmt: skip
        face, spec = (inputs["face_cl"], inputs["spec_cl"]) if variant.channels_last else (inputs["face"], inputs["spec"])
        if variant.kind == "compile":
            start = time.perf_counter()
            branch_runner(variant, model, face, spec, device)()
            check.sync()
            cell["compile_s"] = time.perf_counter() - start
        call = branch_runner(variant, model, face, spec, device)
    out = probabilities(call())
    cell["max_abs_diff_vs_eager_fp32"] = float(np.abs(out - reference).max())
    cell["finite"] = bool(np.isfinite(out).all())
    cell["latency_ms"] = timed(call, check.sync, check.sizes.cell_s)
    cell["segments_per_s"] = inputs["face"].shape[0] / (cell["latency_ms"]["p50"] / 1e3)
    return cell


def peak_shares(cell: dict[str, Any], variant: Variant, flops: int, ceilings: dict[str, float], datasheet: dict | None,
                tf32_convs: bool) -> None:  # fmt: skip
    """Add achieved TFLOP/s and its share of the measured matmul ceiling and of the datasheet peak of its precision."""
    kind = "fp16" if variant.precision == "fp16" else ("tf32" if tf32_convs and "tf32" in ceilings else "fp32")
    achieved = cell["segments_per_s"] * flops / 1e12
    cell.update(tflops=achieved, peak_kind=kind, share_of_measured_ceiling=achieved / ceilings[kind])
    cell["share_of_datasheet_peak"] = achieved / datasheet[kind] if datasheet else None


def throughput_cells(check: Check, models: Models, found: list[Variant], ceilings: dict[str, float],
                     flops: int, result: dict[str, Any]) -> None:  # fmt: skip
    """Fill result['cells'] batch by batch; cells that do not fit the step's time are recorded as skipped."""
    import torch

    datasheet = DATASHEET_TFLOPS.get(torch.cuda.get_device_name(0)) if check.cuda else None
    tf32_convs = check.cuda and bool(torch.backends.cudnn.allow_tf32)
    broken: dict[str, str] = {}
    for batch in check.sizes.batches:
        inputs = batch_inputs(check, batch)
        reference = probabilities(branch_runner(found[0], models.nchw, inputs["face"], inputs["spec"], inputs["face"].device)())
        for variant in found:
            cell: dict[str, Any] = {"variant": variant.name, "batch": batch}
            result["cells"].append(cell)
            need = check.sizes.compile_cell_s if variant.kind == "compile" else 2 * check.sizes.cell_s + 1
            if variant.kind == "compile" and batch not in check.sizes.compile_batches:
                cell.update(status="skipped", reason=f"compiled only at batches {list(check.sizes.compile_batches)}")
            elif variant.kind == "backend" and isinstance(models.backend, str):
                cell.update(status="failed", reason=models.backend)
            elif variant.name in broken:
                cell.update(status="skipped", reason=broken[variant.name])
            elif check.step_left() < need:
                cell.update(status="skipped", reason=f"would not fit: needs about {need:.0f} s, {check.step_left():.0f} s left")
            else:
                try:
                    cell.update(run_cell(check, variant, models, inputs, reference), status="ok")
                    peak_shares(cell, variant, flops, ceilings, datasheet, tf32_convs)
                except Exception as exc:  # noqa: BLE001 - one cell (OOM, a compiler missing) must not end the table
                    cell.update(status="failed", reason=short(exc))
                    broken[variant.name] = f"failed at batch {batch}"
                    if check.cuda:
                        torch.cuda.empty_cache()
        del inputs
        if check.cuda:
            torch.cuda.empty_cache()


def step_throughput(check: Check) -> dict[str, Any]:
    import torch

    from edge_emotion.toolchain.model import SegmentBranch, branch_cost

    result = check.begin()
    cost = branch_cost(SegmentBranch())
    result.update(flops_per_segment=cost["flops"], parameters=cost["parameters"],
                  inputs="seeded random tensors on the device", threads=torch.get_num_threads())  # fmt: skip
    result["matmul_ceiling_tflops"] = matmul_ceiling_tflops(check)
    if check.cuda:
        result["datasheet_tflops"] = DATASHEET_TFLOPS.get(torch.cuda.get_device_name(0))
        result["cudnn_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    found = variants(check)
    result["variants"] = [v.name for v in found]
    if not check.cuda:
        result["not_on_cpu"] = ["FP16 autocast (the torch backend's fp16 needs CUDA)", "CUDA graphs"]
    result["cells"] = []
    models = make_models(check)
    try:
        throughput_cells(check, models, found, result["matmul_ceiling_tflops"], cost["flops"], result)
    finally:
        if not isinstance(models.backend, str):
            models.backend.close()
    ok = [c for c in result["cells"] if c["status"] == "ok"]
    if not ok:
        raise StepOutcome("failed", "no cell ran", result)
    best = max(ok, key=lambda c: c["segments_per_s"])
    result["summary"] = (f"best {best['segments_per_s']:.0f} segments/s ({best['variant']}, batch {best['batch']}) = "
                         f"{best['tflops']:.3g} TFLOP/s, {100 * best['share_of_measured_ceiling']:.2g} % of the measured "
                         f"{best['peak_kind']} matmul ceiling")  # fmt: skip
    failed = [f"{c['variant']} @ {c['batch']}: {c['reason']}" for c in result["cells"] if c["status"] == "failed"]
    if failed:
        raise StepOutcome("failed", "; ".join(failed)[:600], result)
    return result



def md_throughput(r: dict[str, Any]) -> list[str]:
    cells = r.get("cells", [])
    batches = sorted({c["batch"] for c in cells})
    by = {(c["variant"], c["batch"]): c for c in cells}
    rows = []
    for name in r.get("variants", []):
        row: list[Any] = [name]
        for b in batches:
            c = by.get((name, b), {})
            row.append(f"{c['segments_per_s']:.0f}" if c.get("status") == "ok" else c.get("status", "-"))
        ok = [c for (v, _), c in by.items() if v == name and c.get("status") == "ok"]
        best = max(ok, key=lambda c: c["segments_per_s"]) if ok else None
        row += [fmt(best["tflops"]) if best else "-", f"{100 * best['share_of_measured_ceiling']:.2g} %" if best else "-",
                f"{100 * best['share_of_datasheet_peak']:.2g} %" if best and best.get("share_of_datasheet_peak") else "-"]  # fmt: skip
        rows.append(row)
    lines = [(f"{r.get('flops_per_segment', 0) / 1e6:.1f} MFLOPs per segment; measured matmul ceilings (TFLOP/s): "
              f"{ {k: round(v, 1) for k, v in (r.get('matmul_ceiling_tflops') or {}).items()} }; datasheet: "
              f"{r.get('datasheet_tflops')}. Segments/s at the median call:"), ""]  # fmt: skip
    header = ["variant", *[f"batch {b}" for b in batches], "TFLOP/s (best)", "of measured ceiling", "of datasheet"]
    return lines + table(header, rows)
