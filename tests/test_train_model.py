"""The clip model as training uses it: shapes for any N, one parameter set, consensus = sum of segment softmax."""

from __future__ import annotations

import pytest
import torch

from edge_emotion.toolchain.model import ClipModel, SegmentBranch, clip_loss
from edge_emotion.toolchain.train.loop import build_model, learning_rate, recipe_config


def _inputs(b: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return torch.randn(b, n, 3, 224, 224, generator=g), torch.randn(b, n, 1, 192, 120, generator=g)  # [B, N, ...]


@pytest.fixture(scope="module")
def model() -> ClipModel:
    return build_model(recipe_config()).eval()


@pytest.mark.parametrize("n", [1, 3, 10])
def test_forward_shapes_for_any_n(model: ClipModel, n: int) -> None:
    faces, specs = _inputs(2 if n < 10 else 1, n)
    with torch.no_grad():
        logits = model.segment_logits(faces, specs)
        scores = model(faces, specs)
    assert logits.shape == (faces.shape[0], n, 6)
    assert scores.shape == (faces.shape[0], 6)
    assert torch.allclose(scores.sum(dim=1), torch.full((faces.shape[0],), float(n)), atol=1e-5)


def test_one_parameter_set_whatever_n() -> None:
    shapes = {
        n: [(k, tuple(p.shape)) for k, p in build_model(recipe_config(n_segments=n)).named_parameters()]
        for n in (1, 3, 10)
    }
    assert shapes[1] == shapes[3] == shapes[10]
    a, b = build_model(recipe_config(n_segments=1)), build_model(recipe_config(n_segments=10))
    assert all(
        torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters())
    )  # same seed, same weights, N plays no part


def test_clip_output_is_the_sum_of_segment_softmax(model: ClipModel) -> None:
    faces, specs = _inputs(2, 3)
    with torch.no_grad():
        scores = model(faces, specs)  # [B, K]
        per_segment = [model.branch(faces[:, k], specs[:, k]).softmax(dim=-1) for k in range(3)]  # N x [B, K]
    assert torch.allclose(scores, torch.stack(per_segment).sum(dim=0), atol=1e-6)


def test_clip_loss_is_cross_entropy_of_the_mean_probability() -> None:
    logits = torch.randn(4, 3, 6)  # [B, N, K]
    targets = torch.tensor([0, 5, 2, 2])
    mean_prob = logits.softmax(-1).mean(1)
    expected = -mean_prob[torch.arange(4), targets].log().mean()
    assert torch.allclose(clip_loss(logits, targets), expected, atol=1e-6)


def test_modality_switch_keeps_the_parameters_and_ablates_the_other_input() -> None:
    """One parameter set for every modality; "audio" ignores the faces and follows the spectrograms, "video" the reverse."""
    torch.manual_seed(0)
    both = SegmentBranch(modality="both").eval()
    branches = {"both": both}
    for m in ("audio", "video"):
        branches[m] = SegmentBranch(modality=m).eval()
        branches[m].load_state_dict(both.state_dict())  # the same names and shapes: the same weights run here
    faces, specs = _inputs(1, 1)  # [1, 1, 3, 224, 224], [1, 1, 1, 192, 120]
    face, spec = faces[:, 0], specs[:, 0]
    # another input shifted by 1, not other noise: two noise images pool to nearly the same features
    swaps = {
        "faces": ((face, spec), (face + 1.0, spec)),
        "spectrograms": ((face, spec), (face, spec + 1.0)),
    }

    def change(modality: str, swapped: str) -> float:
        """How far the logits move when only the `swapped` input changes."""
        (x, y), branch = swaps[swapped], branches[modality]
        with torch.no_grad():
            return float((branch(*x) - branch(*y)).abs().max())

    assert change("audio", "faces") == 0.0 and change("audio", "spectrograms") > 1e-3
    assert change("video", "spectrograms") == 0.0 and change("video", "faces") > 1e-3
    assert change("both", "faces") > 1e-3 and change("both", "spectrograms") > 1e-3


def test_paper_schedule_divides_by_ten_every_50_steps_and_restarts_each_epoch() -> None:
    config = recipe_config("paper")
    assert [learning_rate(config, 0, s, 400) for s in (0, 49, 50, 100)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])
    assert learning_rate(config, 3, 0, 400) == pytest.approx(1e-3)


def test_modern_schedule_warms_up_then_decays_to_zero() -> None:
    config = recipe_config("modern", epochs=2)
    lrs = [learning_rate(config, e, s, 100) for e in range(2) for s in range(100)]
    peak = lrs.index(max(lrs))
    assert peak == 9 and max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :])) and lrs[-1] < 1e-6


def test_recipe_overrides_and_unknown_options() -> None:
    assert recipe_config("modern", lr=5e-4, optimizer=None).lr == 5e-4
    assert recipe_config("modern", optimizer=None).optimizer == "adamw"
    with pytest.raises(ValueError, match="unknown training options"):
        recipe_config("paper", learning_rate=1)
