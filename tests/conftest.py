"""Shared test fixtures: the real CREMA-D clips, and videos made on the spot with PyAV."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
HAP = FIXTURES / "1001_DFA_HAP_XX.flv"
NEU = FIXTURES / "1001_DFA_NEU_XX.flv"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """gpu-marked tests need a CUDA GPU: where torch sees none they skip, saying so (benchmarks/gpu_check runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_video(
    path: Path,
    frames: np.ndarray | None = None,
    fps: int = 10,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    codec: str = "mpeg4",
) -> Path:
    """Write [F, H, W, 3] uint8 frames (and optional mono float audio in [-1, 1]) with PyAV.

    Defaults: 5 grey frames of 64x48 at 10 fps (0.5 s), no audio.
    """
    if frames is None:
        frames = np.full((5, 48, 64, 3), 128, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(codec, rate=fps)
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate, layout="mono")
        for image in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            pcm = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def tone(seconds: float, freq: float = 440.0, sample_rate: int = 16_000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def hap_clip_path() -> Path:
    return HAP


@pytest.fixture(scope="session")
def neu_clip_path() -> Path:
    return NEU


@pytest.fixture(scope="session")
def face_detector():
    from edge_emotion.preprocess.faces import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def fresh_checkpoint(tmp_path_factory) -> Path:
    """A freshly initialised (untrained) model saved as a real checkpoint: enough for export and scoring plumbing."""
    from edge_emotion import LABELS
    from edge_emotion.config import PreprocessConfig
    from edge_emotion.toolchain.checkpoint import save_checkpoint
    from edge_emotion.toolchain.model import WIDTHS, SegmentBranch

    torch.manual_seed(0)
    branch = SegmentBranch()
    # a few train-mode passes give BatchNorm non-trivial running statistics
    with torch.no_grad():
        for _ in range(3):
            branch(torch.randn(8, 3, 224, 224), torch.randn(8, 1, 192, 120))
    path = tmp_path_factory.mktemp("ckpt") / "fresh.pt"
    save_checkpoint(
        path,
        {
            "model": branch.state_dict(),
            "model_config": {"n_classes": 6, "modality": "both", "widths": list(WIDTHS)},
            "labels": list(LABELS),
            "preprocess": PreprocessConfig(n_segments=4).to_dict(),
            "train_config": {"note": "untrained test model"},
        },
    )
    return path


@pytest.fixture(scope="session")
def sharp_checkpoint(fresh_checkpoint, tmp_path_factory) -> Path:
    """The fresh checkpoint with its classifier centred and scaled by 40: probabilities that move with the input.

    The untrained model's probabilities sit within ~1e-3 of uniform whatever the input, so a comparison
    of its outputs passes for wrong inputs or a broken graph too; this one's move by ~0.1 across real segments.
    """
    from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(fresh_checkpoint)
    weights = dict(state["model"])
    w = weights["classifier.weight"]  # [K, 256]
    weights["classifier.weight"] = (w - w.mean(0, keepdim=True)) * 40.0
    weights["classifier.bias"] = torch.zeros_like(weights["classifier.bias"])
    state["model"] = weights
    path = tmp_path_factory.mktemp("ckpt") / "sharp.pt"
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A small synthetic CREMA-D-shaped corpus, made once per session: 4 actors (1001-1004) x 6 emotions x 2 clips.

    Returns the corpus root; the 48 FLV clips are in root / "VideoFlash". Seed 0,
    15 fps, 240x180, 1.5-2.5 s each. Treat it as read-only: it is shared.
    """
    from edge_emotion.toolchain.synth import make_corpus

    root = tmp_path_factory.mktemp("synth_corpus")
    make_corpus(root, actors=4, clips_per_class=2, seed=0)
    return root


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray cluster for the whole session (Ray's testing tips): two nodes of 1 CPU each, this process connected.

    Two nodes, so that work really crosses nodes: a preprocessing actor and a backend
    actor hold one CPU each and cannot share a node. tests/ is on the workers' PYTHONPATH
    (nodes inherit this environment), so a test may send them helper jobs from tests/.
    Skips, with the reason, where the [ray] extra is not installed.
    """
    ray = pytest.importorskip("ray", reason="ray[data] is not installed: pip install '.[ray]'")
    pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install '.[ray]'")
    from ray.cluster_utils import Cluster

    tests = str(Path(__file__).parent)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, saved) if p)
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
