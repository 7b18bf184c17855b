"""Export of the shared per-segment branch: ONNX (FP32, FP16, INT8 Q/DQ) with its contract, TensorRT engines, parity.

Modules: onnx_export (torch -> ONNX + metadata), fp16 (graph conversion), tensorrt_build
(engines with a JSON header), parity (torch vs artifact on real segments), pipeline
(the orchestration, plain functions). Heavy imports stay in the modules.
"""
