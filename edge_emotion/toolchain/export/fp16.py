"""FP32 ONNX -> FP16 ONNX, keeping the numerically sensitive tail in FP32.

Why convert the graph rather than export a `.half()` model from torch: CPU half
convolutions are missing or slow in torch, and the graph pass states exactly
which ops stay FP32. The rule is simple and covers this network:

- graph inputs become float16 (the contract's io_dtype), so a GPU copies half the bytes;
- convolutions, ReLU and max-pool run in float16 (their float initializers are cast once);
- reductions (GlobalAveragePool, ReduceMean/Sum), BatchNormalization (if not
  folded), Softmax and LayerNormalization run in float32, and so does
  everything downstream of them: here the pooled features, concat, the linear
  layer and the softmax. The output `probabilities` stays float32 (recorded as
  `output_dtype` in the contract's extra fields).

Cast nodes are inserted only where a tensor crosses from one precision to the other.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: ops computed in float32: accumulations over many values, normalisation, the softmax
FP32_OPS = frozenset(
    {
        "GlobalAveragePool",
        "ReduceMean",
        "ReduceSum",
        "ReduceL2",
        "BatchNormalization",
        "Softmax",
        "LogSoftmax",
        "LayerNormalization",
    }
)
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def convert_to_fp16(model: onnx.ModelProto, fp32_ops: Iterable[str] = FP32_OPS) -> onnx.ModelProto:
    """A new model: float16 inputs and body, float32 for `fp32_ops` and everything after them."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # work on a copy
    graph = model.graph
    keep32 = frozenset(fp32_ops)
    initializers = {init.name: init for init in graph.initializer}
    dtype: dict[str, int] = {}  # tensor name -> elem type it has in the converted graph
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == FLOAT:
            inp.type.tensor_type.elem_type = HALF
        dtype[inp.name] = inp.type.tensor_type.elem_type
    for name, init in initializers.items():
        dtype[name] = init.data_type

    new_nodes: list[onnx.NodeProto] = []
    half_copies: dict[str, str] = {}  # fp32 initializer -> its fp16 copy
    for node in graph.node:
        want = _node_precision(node, dtype, initializers, keep32)
        for i, name in enumerate(node.input):
            have = dtype.get(name)
            if not name or have not in (FLOAT, HALF) or have == want:
                continue
            if name in initializers and want == HALF:
                node.input[i] = _half_initializer(graph, initializers[name], half_copies)
            else:
                cast_name = f"{name}__to_{'fp16' if want == HALF else 'fp32'}"
                if cast_name not in dtype:
                    new_nodes.append(helper.make_node("Cast", [name], [cast_name], to=want, name=f"Cast_{cast_name}"))
                    dtype[cast_name] = want
                node.input[i] = cast_name
        new_nodes.append(node)
        for out in node.output:
            dtype[out] = want if _outputs_float(node) else dtype.get(out, 0)
    _retype_outputs(graph, dtype)
    del graph.node[:]
    graph.node.extend(new_nodes)
    drop_unused_initializers(model)
    del graph.value_info[:]  # stale FP32 annotations; shape inference rebuilds them
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _node_precision(node: onnx.NodeProto, dtype: dict[str, int], initializers: dict, keep32: frozenset[str]) -> int:
    """FP32 for sensitive ops and for any op fed by an FP32 activation (never go back down), else FP16."""
    if node.op_type in keep32:
        return FLOAT
    activations = [dtype.get(n) for n in node.input if n and n not in initializers]
    return FLOAT if any(t == FLOAT for t in activations) else HALF


def _outputs_float(node: onnx.NodeProto) -> bool:
    """Ops whose outputs follow the float precision of the node (all in this graph; Shape-like ops do not)."""
    return node.op_type not in ("Shape", "Size", "NonZero", "ArgMax", "ArgMin")


def _half_initializer(graph: onnx.GraphProto, init: onnx.TensorProto, copies: dict[str, str]) -> str:
    """The name of a float16 copy of an FP32 initializer (made once; the FP32 one stays for FP32 consumers)."""
    if init.name not in copies:
        array = numpy_helper.to_array(init)
        if np.abs(array).max(initial=0.0) > np.finfo(np.float16).max:
            raise ValueError(f"initializer {init.name} overflows float16 (max |w| = {np.abs(array).max():.3g})")
        half = numpy_helper.from_array(array.astype(np.float16), name=f"{init.name}__fp16")
        graph.initializer.append(half)
        copies[init.name] = half.name
    return copies[init.name]


def _retype_outputs(graph: onnx.GraphProto, dtype: dict[str, int]) -> None:
    """Graph outputs declare the dtype their producer now has (float32 for the softmax)."""
    for out in graph.output:
        if out.name in dtype and out.type.tensor_type.elem_type in (FLOAT, HALF):
            out.type.tensor_type.elem_type = dtype[out.name]


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove FP32 initializers whose every consumer now reads the FP16 copy (halves the file)."""
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def io_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    """{tensor name: numpy dtype name} of the graph's inputs and outputs."""
    to_np = {FLOAT: "float32", HALF: "float16"}
    return {v.name: to_np.get(v.type.tensor_type.elem_type, "other") for v in [*model.graph.input, *model.graph.output]}


def fp32_op_types(model: onnx.ModelProto) -> list[str]:
    """Op types (other than Cast) that compute in float32 in a converted, shape-inferred model: for the contract."""
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
    return sorted(
        {n.op_type for n in model.graph.node if n.op_type != "Cast" and n.output and types.get(n.output[0]) == FLOAT}
    )
