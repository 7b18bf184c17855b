"""The nine steps, in the order they run, each with what it needs to be worth starting (cuda s, cpu s) and its table."""

from __future__ import annotations

from benchmarks.gpu_check.artifacts import md_artifacts
from benchmarks.gpu_check.environment import md_environment, step_environment
from benchmarks.gpu_check.face_detector import md_face_detector, step_face_detector
from benchmarks.gpu_check.gpu_tests import md_gpu_tests, step_gpu_tests
from benchmarks.gpu_check.harness import Step
from benchmarks.gpu_check.onnxruntime_cuda import probe_ort_cuda, step_onnxruntime_cuda
from benchmarks.gpu_check.parity import md_parity, step_parity
from benchmarks.gpu_check.score import md_score, step_score
from benchmarks.gpu_check.tensorrt_engines import probe_tensorrt, step_tensorrt
from benchmarks.gpu_check.throughput import md_throughput, step_throughput
from benchmarks.gpu_check.train import md_train, step_train

STEPS = (
    Step("environment", step_environment, (15, 4), md_environment),
    Step("gpu_tests", step_gpu_tests, (90, 12), md_gpu_tests),
    Step("train", step_train, (45, 12), md_train),
    Step("parity", step_parity, (15, 5), md_parity),
    Step("throughput", step_throughput, (120, 20), md_throughput),
    Step("face_detector", step_face_detector, (20, 6), md_face_detector),
    Step("score", step_score, (45, 15), md_score),
    Step("onnxruntime_cuda", step_onnxruntime_cuda, (40, 10), md_artifacts, probe_ort_cuda),
    Step("tensorrt", step_tensorrt, (150, 30), md_artifacts, probe_tensorrt),
)  # fmt: skip
RENDERERS = {step.name: step.render for step in STEPS}
