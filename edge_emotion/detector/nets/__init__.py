"""The three MTCNN networks as ONNX files (data, not code): names, inputs and outputs of each.

Regenerated from facenet-pytorch's bundled weights by `python -m edge_emotion.toolchain.export.detector_nets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NET_DIR = Path(__file__).parent


@dataclass(frozen=True)
class NetSpec:
    """One cascade stage's network: input name, output names in order, fixed input side (None: any H x W)."""

    name: str
    input: str
    outputs: tuple[str, ...]
    side: int | None

    @property
    def path(self) -> Path:
        return NET_DIR / f"{self.name}.onnx"


#: outputs as facenet's nets return them: box regression, (ONet) landmarks, then softmax over (no face, face)
NET_SPECS: dict[str, NetSpec] = {
    "pnet": NetSpec("pnet", "image", ("regression", "probability"), None),
    "rnet": NetSpec("rnet", "image", ("regression", "probability"), 24),
    "onet": NetSpec("onet", "image", ("regression", "landmarks", "probability"), 48),
}
