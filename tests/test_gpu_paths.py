"""The code paths that branch on CUDA: device placement, autocast, pinned host memory, synchronisation in timing,
training and resume on the GPU, the face detector and `score` with a CUDA device, ONNX Runtime's CUDA provider.

Every test here is gpu-marked: without a CUDA GPU they skip (tests/conftest.py says why); benchmarks/gpu_check
runs them on a GPU machine. FP32 comparisons with the CPU switch TF32 off (it is on for cuDNN convolutions by
default); the TF32 default itself is measured by gpu_check's parity step.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import FIXTURES, tone, write_video

from edge_emotion import LABELS
from edge_emotion.backends import open_backend
from edge_emotion.config import FaceParams
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.faces import FaceDetector, box_iou
from edge_emotion.run.bench.timing import time_calls
from edge_emotion.run.score import ScoreOptions, score_folder
from edge_emotion.toolchain.checkpoint import load_checkpoint
from edge_emotion.toolchain.export.parity import compare
from edge_emotion.toolchain.train.distributed import pick_device
from edge_emotion.toolchain.train.loop import recipe_config, train
from edge_emotion.toolchain.train.prepare import prepare_corpus

pytestmark = pytest.mark.gpu


@pytest.fixture
def strict_fp32() -> Iterator[None]:
    """TF32 off for cuDNN and cuBLAS during the test (IEEE FP32, comparable with the CPU to 1e-4), restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def cudnn_flags_restored() -> Iterator[None]:
    """`train` sets cudnn.deterministic / benchmark for the process: put them back for the other tests."""
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def segments(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded inputs: faces [S, 3, 224, 224], spectrograms [S, 1, 192, 120] float32."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((count, 3, 224, 224), dtype=np.float32),
        rng.standard_normal((count, 1, 192, 120), dtype=np.float32),
    )


def test_auto_device_puts_the_branch_on_cuda_in_channels_last_and_matches_the_cpu(
    fresh_checkpoint: Path, strict_fp32: None
) -> None:
    faces, specs = segments(12)
    with open_backend(fresh_checkpoint, "torch", device="auto") as gpu, open_backend(fresh_checkpoint, "torch", device="cpu") as cpu:
        assert gpu.device.type == "cuda"
        assert all(p.device.type == "cuda" for p in gpu.model.parameters())
        convs = [m for m in gpu.model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
        probs = gpu.infer(faces, specs)
        reference = cpu.infer(faces, specs)
    assert isinstance(probs, np.ndarray) and probs.dtype == np.float32 and probs.shape == (12, len(LABELS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    report = compare(reference, probs, "fp32")
    assert report.passed, report.summary()


def test_fp16_autocast_runs_the_convolutions_in_half_within_the_fp16_tolerance(fresh_checkpoint: Path) -> None:
    faces, specs = segments(16, seed=1)
    seen: list[torch.dtype] = []
    with open_backend(fresh_checkpoint, "torch", device="cuda", precision="fp16") as gpu:
        first_conv = next(m for m in gpu.model.modules() if isinstance(m, torch.nn.Conv2d))
        hook = first_conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        probs = gpu.infer(faces, specs)
        hook.remove()
    with open_backend(fresh_checkpoint, "torch", device="cpu") as cpu:
        reference = cpu.infer(faces, specs)
    assert seen == [torch.float16]  # autocast took the branch to half precision
    assert probs.dtype == np.float32  # ... and the backend hands back float32, as every backend does
    report = compare(reference, probs, "fp16")
    assert report.passed, report.summary()


def test_pinned_host_buffers_reused_between_calls_give_each_call_its_own_result(
    fresh_checkpoint: Path, strict_fp32: None
) -> None:
    """The backend copies host inputs with non_blocking=True: from pinned memory that copy is truly asynchronous,
    so a caller refilling its buffer right after infer() returns must not change the result already returned."""
    first, second = segments(8, seed=2), segments(8, seed=3)
    face_buf = torch.empty((8, 3, 224, 224), pin_memory=True).numpy()
    spec_buf = torch.empty((8, 1, 192, 120), pin_memory=True).numpy()
    with open_backend(fresh_checkpoint, "torch", device="cuda") as gpu, open_backend(fresh_checkpoint, "torch", device="cpu") as cpu:
        outputs = []
        for faces, specs in (first, second):
            face_buf[:], spec_buf[:] = faces, specs
            outputs.append(gpu.infer(face_buf, spec_buf))
        face_buf[:] = 0.0  # overwrite once more: returned arrays are the caller's own
        for (faces, specs), probs in zip((first, second), outputs):
            assert compare(cpu.infer(faces, specs), probs, "fp32").passed
    assert not np.array_equal(outputs[0], outputs[1])


def test_synchronize_waits_for_queued_kernels_and_timing_counts_them(fresh_checkpoint: Path) -> None:
    faces, specs = segments(64, seed=4)
    with open_backend(fresh_checkpoint, "torch", device="cuda") as gpu:
        torch.cuda._sleep(200_000_000)  # a kernel that spins ~0.1 s on the backend's stream
        stream = torch.cuda.current_stream(gpu.device)
        assert not stream.query()  # still queued
        gpu.synchronize()
        assert stream.query()
        stats = time_calls(gpu, faces, specs, iterations=6, warmup=2, max_seconds=30)
    assert stats.iterations == 6 and 0 < stats.min <= stats.p50 <= stats.max


def test_auto_device_is_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    count = torch.cuda.device_count()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert pick_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", str(count))  # more local ranks than GPUs: shared round-robin
    assert pick_device("auto") == torch.device("cuda", 0)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 actors x 6 emotions of 0.8 s generated clips (no faces: centre crops), prepared."""
    root = tmp_path_factory.mktemp("gpu_tiny")
    for actor in (1001, 1002, 1003):
        for k, emotion in enumerate(LABELS):
            frames = np.full((8, 48, 64, 3), 30 * k + actor % 7, np.uint8)
            path = root / "data" / "VideoFlash" / f"{actor}_DFA_{emotion}_XX.mp4"
            write_video(path, frames, fps=10, audio=tone(0.8, 150.0 * (k + 1)))
    report = prepare_corpus(root / "data", root / "cache")
    assert len(report.done) == 18
    return root / "data", root / "cache"


def test_training_on_cuda_saves_its_rng_and_resumes_bit_identical(
    tiny_corpus: tuple[Path, Path], tmp_path: Path, cudnn_flags_restored: None
) -> None:
    data, cache = tiny_corpus
    config = recipe_config("paper", n_segments=2, epochs=2, batch_size=4, n_folds=3, fold=0, step_size=2, device="cuda")
    whole = train(data, cache, tmp_path / "whole", config)
    cut = train(data, cache, tmp_path / "cut", replace(config, stop_after=4))
    resumed = train(data, cache, tmp_path / "cut", config, resume=True)
    assert cut.stopped and resumed.global_step == whole.global_step == 6
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["cuda_rng"], "a CUDA run must save the CUDA generator state"
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # weights and BN statistics
    losses = [json.loads(line)["loss"] for line in (tmp_path / "whole" / "steps.jsonl").read_text().splitlines()]
    assert np.isfinite(losses).all()
    assert (tmp_path / "whole" / "steps.jsonl").read_text() == (tmp_path / "cut" / "steps.jsonl").read_text()


def test_face_detector_on_cuda_finds_the_boxes_the_cpu_finds(hap_clip_path: Path) -> None:
    clip = open_clip(hap_clip_path)
    decoded = read_frames(clip, range(0, clip.frame_count, max(1, clip.frame_count // 10)))
    frames = [decoded[i] for i in sorted(decoded)]
    params = FaceParams()
    on_gpu = FaceDetector(params, device="cuda").detect(frames)
    on_cpu = FaceDetector(params, device="cpu").detect(frames)
    assert all(b is not None for b in on_cpu) and all(b is not None for b in on_gpu)
    ious = [box_iou(a, b) for a, b in zip(on_gpu, on_cpu)]
    assert min(ious) >= 0.9, ious


def _fixture_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for clip in sorted(FIXTURES.glob("*.flv")):
        shutil.copy(clip, root / clip.name)
    return root


def _rows(path: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in (json.loads(line) for line in path.read_text().splitlines())}


def test_score_with_the_backend_on_cuda_gives_the_cpu_scores(
    fresh_checkpoint: Path, tmp_path: Path, strict_fp32: None
) -> None:
    folder = _fixture_folder(tmp_path / "videos")
    score_folder(folder, fresh_checkpoint, tmp_path / "cpu.jsonl", ScoreOptions(device="cpu", workers=0))
    score_folder(folder, fresh_checkpoint, tmp_path / "gpu.jsonl", ScoreOptions(device="cuda", workers=0))
    cpu, gpu = _rows(tmp_path / "cpu.jsonl"), _rows(tmp_path / "gpu.jsonl")
    assert cpu.keys() == gpu.keys() and len(cpu) == 2
    for name, row in gpu.items():
        assert row["status"] == cpu[name]["status"] != "error"
        np.testing.assert_allclose(list(row["probabilities"].values()), list(cpu[name]["probabilities"].values()), atol=1e-4)


def test_score_with_faces_detected_on_cuda_in_a_worker_process(fresh_checkpoint: Path, tmp_path: Path) -> None:
    """The spawned worker builds its detector on the GPU; rows match the CPU's up to the detector's box jitter."""
    folder = _fixture_folder(tmp_path / "videos")
    score_folder(folder, fresh_checkpoint, tmp_path / "cpu.jsonl", ScoreOptions(device="cpu", workers=0))
    options = ScoreOptions(device="cuda", face_device="cuda", workers=1)
    summary = score_folder(folder, fresh_checkpoint, tmp_path / "gpu.jsonl", options)
    cpu, gpu = _rows(tmp_path / "cpu.jsonl"), _rows(tmp_path / "gpu.jsonl")
    assert summary.scored == 2 and cpu.keys() == gpu.keys()
    for name, row in gpu.items():
        assert row["status"] != "error" and row["faceless"] == cpu[name]["faceless"]
        np.testing.assert_allclose(list(row["probabilities"].values()), list(cpu[name]["probabilities"].values()), atol=0.05)


def test_onnxruntime_cuda_provider_runs_the_export_on_the_gpu(fresh_checkpoint: Path, tmp_path: Path) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (onnxruntime-gpu is not installed)")
    from edge_emotion.toolchain.export.pipeline import build_onnx

    path = tmp_path / "model.onnx"
    build_onnx(load_checkpoint(fresh_checkpoint), path)
    faces, specs = segments(16, seed=5)
    with open_backend(path, "onnxruntime", device="cuda", provider="cuda") as gpu, open_backend(path, "onnxruntime", device="cpu") as cpu:
        assert gpu.providers[0] == "CUDAExecutionProvider"
        diff = np.abs(gpu.infer(faces, specs) - cpu.infer(faces, specs)).max()
    assert diff <= 1e-3, diff  # looser than torch's 1e-4: the CUDA provider may run FP32 convolutions in TF32
