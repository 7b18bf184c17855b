"""The N-segment audio-visual model: one shared per-segment branch, class probabilities summed over segments.

What the paper states (Birhala et al., 2020, Fig. 2 and Sec. 3): per segment a
stack of convolutional blocks for the face (224x224 RGB) and one for the
spectrogram (192x120), Batch Normalization after every convolution, the two
feature vectors concatenated, one fully connected layer, softmax over 6 classes;
the segment networks share weights; clip score = sum of segment probabilities.

What the paper does not state (the layer sizes) and we chose for edge devices:
each modality is a stem (stride-2 conv, BN, ReLU, 2x2 max-pool) + 4 blocks of (3x3 conv, BN, ReLU,
2x2 max-pool) with widths 16-32-64-96-128, then global average pooling to 128
features; 256 concatenated features -> Linear(256, 6). See `branch_cost` for
parameters and FLOPs per segment.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Modality = Literal["both", "audio", "video"]
WIDTHS = (16, 32, 64, 96, 128)


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def conv_stack(in_channels: int, widths: tuple[int, ...] = WIDTHS) -> nn.Sequential:
    """Stride-2 stem and max-pool (input/4), then (conv, BN, ReLU, max-pool) blocks, then global average pooling -> [B, widths[-1]]."""
    layers: list[nn.Module] = [*_conv_bn(in_channels, widths[0], stride=2), nn.MaxPool2d(2)]
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [*_conv_bn(c_in, c_out), nn.MaxPool2d(2)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class SegmentBranch(nn.Module):
    """The shared per-segment network: (face, spectrogram) -> 6 logits. This is what gets exported.

    The modality switch zeroes the unused feature vector (ablation), so every
    variant has the same parameters and the same exported interface.
    """

    def __init__(self, n_classes: int = 6, modality: Modality = "both", widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        if modality not in ("both", "audio", "video"):
            raise ValueError(f"modality must be both, audio or video, got {modality!r}")
        self.modality = modality
        self.video = conv_stack(3, widths)
        self.audio = conv_stack(1, widths)
        self.classifier = nn.Linear(2 * widths[-1], n_classes)

    def forward(self, face: torch.Tensor, spectrogram: torch.Tensor) -> torch.Tensor:
        # face: [S, 3, 224, 224], spectrogram: [S, 1, 192, 120] -> logits [S, n_classes]
        v = self.video(face)  # [S, C]
        a = self.audio(spectrogram)  # [S, C]
        if self.modality == "audio":
            v = torch.zeros_like(v)
        elif self.modality == "video":
            a = torch.zeros_like(a)
        return self.classifier(torch.cat([v, a], dim=1))  # [S, n_classes]


class ClipModel(nn.Module):
    """TSN-style wrapper: the one branch on B*N segments, softmax, sum over N."""

    def __init__(self, branch: SegmentBranch) -> None:
        super().__init__()
        self.branch = branch

    def segment_logits(self, faces: torch.Tensor, spectrograms: torch.Tensor) -> torch.Tensor:
        # faces: [B, N, 3, H, W], spectrograms: [B, N, 1, F, T] -> [B, N, K]
        b, n = faces.shape[:2]
        logits = self.branch(faces.flatten(0, 1), spectrograms.flatten(0, 1))  # [B*N, K]
        return logits.view(b, n, -1)

    def forward(self, faces: torch.Tensor, spectrograms: torch.Tensor) -> torch.Tensor:
        """Clip scores [B, K]: sum over N of segment probabilities (each row sums to N)."""
        return self.segment_logits(faces, spectrograms).softmax(dim=-1).sum(dim=1)


def clip_loss(segment_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy on the consensus: -log(mean over N of segment probabilities of the true class).

    Summing probabilities (the paper's consensus) and normalising by N gives a
    distribution, so the loss is the usual cross entropy of the clip prediction.
    """
    # segment_logits: [B, N, K], targets: [B]
    log_probs = segment_logits.log_softmax(dim=-1)  # [B, N, K]
    n = segment_logits.shape[1]
    clip_log_probs = torch.logsumexp(log_probs, dim=1) - torch.log(torch.tensor(float(n)))  # [B, K]
    return nn.functional.nll_loss(clip_log_probs, targets)


def branch_cost(branch: SegmentBranch, face_shape: tuple[int, int] = (224, 224), spec_shape: tuple[int, int] = (192, 120)) -> dict[str, int]:
    """Parameters and multiply-accumulates of one segment (convolutions and the linear layer)."""
    macs = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs += output.numel() * k
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in branch.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = branch.training
    branch.eval()
    with torch.no_grad():
        branch(torch.zeros(1, 3, *face_shape), torch.zeros(1, 1, *spec_shape))
    branch.train(was_training)
    for h in hooks:
        h.remove()
    return {"parameters": sum(p.numel() for p in branch.parameters()), "macs": macs, "flops": 2 * macs}
