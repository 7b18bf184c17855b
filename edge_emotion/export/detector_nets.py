"""Regenerate the packaged face detector: facenet-pytorch's MTCNN PNet, RNet and ONet as ONNX files.

    pip install ".[train]" && pip install --no-deps facenet-pytorch==2.6.0
    python -m edge_emotion.export.detector_nets            # writes edge_emotion/detector/nets/*.onnx

The nets are fixed, pretrained networks (facenet-pytorch ships their weights in its wheel; MIT licence,
kept beside them as nets/LICENSE), not something this toolkit trains, so their ONNX files ship inside the
package and the runtime never needs torch or facenet-pytorch. All three take a dynamic batch, PNet also a
dynamic height and width (one call per pyramid scale for many frames). Inputs are what facenet feeds them:
RGB, NCHW, (pixel - 127.5) / 128. Output names are the runtime's contract (edge_emotion.detector.nets).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import onnx
import torch

from edge_emotion.atomic import atomic_path
from edge_emotion.deps import require
from edge_emotion.detector.nets import NET_DIR, NET_SPECS, NetSpec

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
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = f"facenet-pytorch 2.6.0 MTCNN {spec.name.upper()} (MIT licence, see LICENSE beside this file)"
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=NET_DIR, help="folder for the three ONNX files")
    for path in export_all(parser.parse_args().out):
        print(f"{path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
