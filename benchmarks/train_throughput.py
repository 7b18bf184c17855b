"""Training throughput (segments/s) with the prepare cache against MTCNN in the loop, on this machine.

Both variants run the same training step (ClipModel.segment_logits, clip_loss,
SGD) on the same clips, the real CREMA-D fixture clips (480x360 FLV, 29.97 fps)
copied under several actor ids; they differ only in where the face box of each
sampled frame comes from:
    cache : boxes read from `prepare`'s cache (MTCNN ran once per clip, before training)
    mtcnn : MTCNN on the N sampled frames of every clip, every epoch (scoring's path)

    python benchmarks/train_throughput.py --clips 8 --n-segments 10 --batch-size 4 --steps 6
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge_emotion.config import PreprocessConfig
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import extract, plan_clip
from edge_emotion.toolchain.model import clip_loss
from edge_emotion.toolchain.train.crema import ClipItem, index_corpus
from edge_emotion.toolchain.train.dataset import CachedClips
from edge_emotion.toolchain.train.loop import build_model, recipe_config
from edge_emotion.toolchain.train.prepare import prepare_corpus

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


class DetectingClips(torch.utils.data.Dataset):
    """The no-cache alternative: decode and run MTCNN on the sampled frames at every access."""

    def __init__(self, items: list[ClipItem], config: PreprocessConfig, detector: FaceDetector) -> None:
        self.items, self.config, self.detector = items, config, detector

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        item = self.items[index]
        clip = open_clip(item.path, self.config.audio.sample_rate)
        segments = plan_clip(clip, self.config, "train", np.random.default_rng([0, index]))
        inputs = extract(clip, segments, self.config, detector=self.detector)
        return torch.from_numpy(inputs.faces), torch.from_numpy(inputs.spectrograms), item.label


def make_corpus(root: Path, clips: int) -> Path:
    """Copies of the two real fixture clips under actor ids 1001, 1002, ..."""
    videos = root / "data" / "VideoFlash"
    videos.mkdir(parents=True)
    sources = sorted(FIXTURES.glob("*.flv"))
    for i in range(clips):
        source = sources[i % len(sources)]
        shutil.copy(source, videos / f"{1001 + i // len(sources)}{source.stem[4:]}.flv")
    return root / "data"


def time_training(dataset: torch.utils.data.Dataset, batch_size: int, steps: int) -> tuple[float, float]:
    """(segments per second, share of the time spent producing inputs) over `steps` training steps after one warm-up."""
    model = build_model(recipe_config()).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    order = [[(s * batch_size + j) % len(dataset) for j in range(batch_size)] for s in range(steps + 1)]
    data_time, segments, start = 0.0, 0, 0.0
    for step, batch in enumerate(order):
        if step == 1:
            data_time, start = 0.0, time.perf_counter()
        t0 = time.perf_counter()
        faces, specs, labels = zip(*(dataset[i] for i in batch))
        faces, specs, labels = torch.stack(faces), torch.stack(specs), torch.tensor(labels)  # [B, N, ...]
        data_time += time.perf_counter() - t0
        loss = clip_loss(model.segment_logits(faces, specs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        segments += faces.shape[0] * faces.shape[1] if step else 0
    elapsed = time.perf_counter() - start
    return segments / elapsed, data_time / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--n-segments", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PreprocessConfig(n_segments=args.n_segments)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_corpus(Path(tmp), args.clips)
        t0 = time.perf_counter()
        prepare_corpus(data, Path(tmp) / "cache", config.face, n_segments=args.n_segments)
        prepare_s = (time.perf_counter() - t0) / args.clips
        items = index_corpus(data)[0]
        cached = CachedClips(items, str(Path(tmp) / "cache"), config, "train")
        detecting = DetectingClips(items, config, FaceDetector(config.face))
        rows = [
            ("prepare cache", *time_training(cached, args.batch_size, args.steps)),
            ("MTCNN in the loop", *time_training(detecting, args.batch_size, args.steps)),
        ]
    print(
        f"N = {args.n_segments}, batch {args.batch_size}, {args.steps} timed steps, {args.threads} torch threads, "
        f"{args.clips} CREMA-D clips (480x360)"
    )
    print(f"prepare: {prepare_s:.2f} s per clip (faces tracked on the N planned frames, once before training)\n")
    print("| inputs from | training segments/s | share of time making inputs |")
    print("|---|---|---|")
    for name, rate, share in rows:
        print(f"| {name} | {rate:.1f} | {100 * share:.0f} % |")


if __name__ == "__main__":
    main()
