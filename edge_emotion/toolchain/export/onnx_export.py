"""The shared per-segment branch -> ONNX, with softmax inside the graph and the contract in metadata_props.

Why the legacy (TorchScript) exporter: `dynamo=True` needs onnxscript, a heavy
extra that is not a dependency; the legacy path exports this plain conv net
exactly (ONNX Runtime matches torch to ~1e-7) and folds BatchNorm into the
convolutions in eval mode, so the FP32 graph has no BN left to worry about.

The exported graph: face [S, 3, 224, 224], spectrogram [S, 1, 192, 120]
-> probabilities [S, K] (softmax applied), S dynamic.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import onnx
import torch
from torch import nn

from edge_emotion import defaults
from edge_emotion.contract import FACE_INPUT, OUTPUT, SPEC_INPUT, ModelContract
from edge_emotion.errors import ArtifactError
from edge_emotion.toolchain.model import SegmentBranch

DEFAULT_OPSET = defaults.OPSET


class ProbabilityBranch(nn.Module):
    """The branch with softmax appended, so every backend returns probabilities and consensus stays one sum."""

    def __init__(self, branch: SegmentBranch) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, face: torch.Tensor, spectrogram: torch.Tensor) -> torch.Tensor:
        # face [S, 3, H, W], spectrogram [S, 1, F, T] -> [S, K]; softmax in float32 whatever the branch dtype
        logits = self.branch(face, spectrogram)  # [S, K]
        return (logits if logits.dtype == torch.float32 else logits.float()).softmax(dim=1)


def example_inputs(contract: ModelContract, segments: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Dummy inputs of the contract's shapes (S = `segments`): only shapes matter for tracing."""
    shapes = contract.input_shapes()
    face = torch.zeros(segments, *shapes[FACE_INPUT][1:])  # [S, 3, 224, 224]
    spec = torch.zeros(segments, *shapes[SPEC_INPUT][1:])  # [S, 1, 192, 120]
    return face, spec


def export_onnx(branch: SegmentBranch, contract: ModelContract, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write the FP32 branch (+ softmax) to `path` with a dynamic segment axis, its contract and opset, checked.

    `path` is written in place: callers wanting atomicity pass a temporary path.
    """
    path = Path(path)
    model = ProbabilityBranch(branch).eval().float()
    dynamic = {FACE_INPUT: {0: "S"}, SPEC_INPUT: {0: "S"}, OUTPUT: {0: "S"}}
    with warnings.catch_warnings():
        # the exporter warns that it is the legacy one on every call: that is a choice here, not news
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*feature will be removed.*")
        torch.onnx.export(
            model,
            example_inputs(contract),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[FACE_INPUT, SPEC_INPUT],
            output_names=[OUTPUT],
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    inline_identity_initializers(proto)
    write_checked(proto, contract, path)
    return path


def inline_identity_initializers(proto: onnx.ModelProto) -> None:
    """Drop `Identity(initializer)` nodes (the exporter's de-duplication of equal conv biases).

    Why: quantizers and TensorRT expect a convolution's bias to be an initializer;
    behind an Identity, ONNX Runtime's quantizer leaves it unquantized and warns.
    """
    initializers = {init.name for init in proto.graph.initializer}
    outputs = {out.name for out in proto.graph.output}
    alias = {
        node.output[0]: node.input[0]
        for node in proto.graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    }
    if not alias:
        return
    kept = [node for node in proto.graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)


def write_checked(proto: onnx.ModelProto, contract: ModelContract, path: str | Path) -> None:
    """Embed the contract (+ opset), run onnx.checker with full shape/type checks, save. Every variant ends here."""
    set_metadata(proto, contract_metadata(contract, proto))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def opset_of(proto: onnx.ModelProto) -> int:
    """The default-domain opset the graph was written for."""
    return next(int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def contract_metadata(contract: ModelContract, proto: onnx.ModelProto) -> dict[str, str]:
    """The contract's metadata with the graph's opset in `extra` (so a runtime's support can be checked)."""
    return replace(contract, extra={**contract.extra, "opset": str(opset_of(proto))}).to_metadata()


def set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Replace our keys in metadata_props (others, e.g. from quantizers, are kept)."""
    kept = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in sorted(meta.items()):
        proto.metadata_props.add(key=key, value=value)


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file (weights not needed); ArtifactError if it is not a readable ONNX model."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, google.protobuf errors...: all mean unreadable
        raise ArtifactError(path, f"not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not proto.graph.node:
        raise ArtifactError(path, "not a readable ONNX model (empty graph)")
    return {p.key: p.value for p in proto.metadata_props}


def read_contract(path: str | Path) -> ModelContract:
    """The ModelContract an ONNX file carries; ArtifactError naming the file and what is missing otherwise."""
    meta = read_metadata(path)
    try:
        return ModelContract.from_metadata(meta)
    except ValueError as exc:
        raise ArtifactError(path, str(exc)) from exc
