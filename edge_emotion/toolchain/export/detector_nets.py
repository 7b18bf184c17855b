"""Regenerate the packaged face detector: facenet-pytorch's MTCNN PNet, RNet and ONet as ONNX files.

    pip install ".[train]" && pip install --no-deps facenet-pytorch==2.6.0
    python -m edge_emotion.toolchain.export.detector_nets            # writes edge_emotion/detector/nets/*.onnx
    python -m edge_emotion.toolchain.export.detector_nets --fp16 --out DIR           # + DIR/*.fp16.onnx (GPUs)
    python -m edge_emotion.toolchain.export.detector_nets --engine --out DIR         # + DIR/*.engine (TensorRT, on the GPU)

A folder of FP16 nets or engines is given to FaceDetector(nets=DIR). FP16 goes through the branch's own
graph pass (export.fp16: softmax in FP32); engines through the branch's builder (export.tensorrt_build),
PNet with several shape profiles, one per band of pyramid-level sizes. The engine path is UNVERIFIED:
TensorRT cannot be installed on the development machines.

The nets are fixed, pretrained networks (facenet-pytorch ships their weights in its wheel; MIT licence,
kept beside them as nets/LICENSE), not something this toolkit trains, so their ONNX files ship inside the
package and the runtime never needs torch or facenet-pytorch. All three take a dynamic batch, PNet also a
dynamic height and width (one call per pyramid scale for many frames). Inputs are what facenet feeds them:
RGB, NCHW, (pixel - 127.5) / 128. Output names are the runtime's contract (edge_emotion.detector.nets).

Each convolution's PReLU is written as relu(y) + (-a) * relu(-y) with 1x1 depthwise convolutions (`split_prelu`):
the same numbers bit for bit, but ONNX Runtime keeps the whole body in its blocked (NCHWc) layout instead of
converting back and forth around every PReLU: PNet 35 %, RNet and ONet 45-50 % less CPU on one thread.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from edge_emotion.deps import require
from edge_emotion.detector.nets import NET_DIR, NET_SPECS, NetSpec
from edge_emotion.io.atomic import atomic_path

OPSET = 17


def _facenet_nets() -> dict[str, torch.nn.Module]:
    facenet_mtcnn = require("facenet_pytorch.models.mtcnn")
    return {"pnet": facenet_mtcnn.PNet(), "rnet": facenet_mtcnn.RNet(), "onet": facenet_mtcnn.ONet()}


def export_net(net: torch.nn.Module, spec: NetSpec, path: Path) -> None:
    """One net -> ONNX at `path` (atomic), checked by onnx.checker; dynamic batch (and H, W for PNet)."""
    net = net.eval()
    side = spec.side or 24
    example = torch.zeros(2, 3, side, side)
    dynamic = {0: "batch"} if spec.side else {0: "batch", 2: "height", 3: "width"}
    axes = {spec.input: dynamic, **{name: {0: "batch"} for name in spec.outputs}}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net, (example,), buffer, input_names=[spec.input], output_names=list(spec.outputs),
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    model = split_prelu(onnx.load_from_string(buffer.getvalue()))
    model.doc_string = f"facenet-pytorch 2.6.0 MTCNN {spec.name.upper()} (MIT licence, see LICENSE beside this file)"
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def split_prelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Each PReLU over conv channels (slope [C, 1, 1]) -> relu(y) + (-a) * relu(-y), the products as 1x1 depthwise
    convs. Exact: one of the two terms is 0, and (-a) * (-y) is the same float as a * y. The dense layers' PReLUs
    (slope [C]) stay."""
    graph = model.graph
    slopes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        slope = slopes.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.ndim != 3:
            nodes.append(node)
            continue
        y, out, channels = node.input[0], node.output[0], slope.shape[0]
        minus_one, minus_a = f"{out}/minus_one", f"{out}/minus_slope"
        graph.initializer.extend([
            numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), minus_one),
            numpy_helper.from_array((-slope).reshape(channels, 1, 1, 1).astype(np.float32), minus_a),
        ])
        depthwise = {"group": channels, "kernel_shape": [1, 1]}
        nodes += [
            helper.make_node("Relu", [y], [f"{out}/positive"]),
            helper.make_node("Conv", [y, minus_one], [f"{out}/negated"], **depthwise),
            helper.make_node("Relu", [f"{out}/negated"], [f"{out}/negative"]),
            helper.make_node("Conv", [f"{out}/negative", minus_a], [f"{out}/scaled"], **depthwise),
            helper.make_node("Add", [f"{out}/positive", f"{out}/scaled"], [out]),
        ]
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    return model


def export_all(out_dir: Path = NET_DIR) -> list[Path]:
    """Write pnet.onnx, rnet.onnx, onet.onnx into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    nets = _facenet_nets()
    paths = []
    for spec in NET_SPECS.values():
        path = out_dir / f"{spec.name}.onnx"
        export_net(nets[spec.name], spec, path)
        paths.append(path)
    return paths


#: PNet's optimisation profiles: (min, opt, max) of both sides of a pyramid level, one band each, overlapping by 4x
#: so that any level of a frame up to 16:9 (either way) lies wholly inside one band; batch up to a clip's frames x 6
PNET_BANDS = ((12, 24, 96), (48, 96, 384), (192, 320, 1536))
MAX_BATCH = {"pnet": 64, "rnet": 4096, "onet": 1024}


def export_fp16(folder: Path) -> list[Path]:
    """NAME.fp16.onnx beside each net: FP16 body and input, softmax and outputs kept FP32 (export.fp16's rule)."""
    from edge_emotion.toolchain.export.fp16 import convert_to_fp16

    paths = []
    for spec in NET_SPECS.values():
        path = folder / f"{spec.name}.fp16.onnx"
        model = convert_to_fp16(onnx.load(str(folder / f"{spec.name}.onnx")))
        onnx.checker.check_model(model)
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
        paths.append(path)
    return paths


def engine_profiles(spec: NetSpec) -> list[dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]]:
    """Shape profiles for one net: PNet one per band of level sides (H and W alike), RNet/ONet one batch range."""
    top = MAX_BATCH[spec.name]
    if spec.side:
        side = spec.side
        return [{spec.input: ((1, 3, side, side), (min(64, top), 3, side, side), (top, 3, side, side))}]
    return [
        {spec.input: ((1, 3, lo, lo), (10, 3, opt, opt), (top, 3, hi, hi))} for lo, opt, hi in PNET_BANDS
    ]


def build_engines(folder: Path, fp16: bool, device: str = "cuda:0") -> list[Path]:
    """NAME.engine per net from its ONNX (FP16 if asked), strongly typed: the ONNX decides the precision."""
    from edge_emotion.toolchain.export.tensorrt_build import build_onnx_engine

    paths = []
    for spec in NET_SPECS.values():
        source = folder / (f"{spec.name}.fp16.onnx" if fp16 else f"{spec.name}.onnx")
        path = folder / f"{spec.name}.engine"
        build_onnx_engine(source, path, engine_profiles(spec), "fp16" if fp16 else "fp32",
                          metadata={"edge_emotion.detector_net": spec.name}, device=device)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=NET_DIR, help="folder for the ONNX files (default: the package's)")
    parser.add_argument("--fp16", action="store_true", help="also write NAME.fp16.onnx")
    parser.add_argument("--engine", action="store_true", help="also build NAME.engine with TensorRT (a GPU machine)")
    parser.add_argument("--device", default="cuda:0", help="GPU the engines are built for")
    args = parser.parse_args()
    paths = export_all(args.out)
    if args.fp16:
        paths += export_fp16(args.out)
    if args.engine:
        paths += build_engines(args.out, args.fp16, args.device)
    for path in paths:
        print(f"{path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
