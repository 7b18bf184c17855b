"""The MTCNN face detector on ONNX Runtime: the packaged PNet/RNet/ONet and the numpy cascade, batched.

Per call, all images go through PNet in one run per pyramid level, and all surviving candidates of
all images go through RNet, then ONet, in one run each, where facenet loops over boxes for the crops.
No torch anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_emotion.detector import cascade
from edge_emotion.detector.nets import NET_SPECS, NetSpec

EMPTY_BOXES = np.zeros((0, 5), dtype=np.float32)


@dataclass(frozen=True)
class CascadeSettings:
    """facenet-pytorch's MTCNN defaults, bar the smallest face (ours: FaceParams.min_face_size)."""

    min_face: float = 20.0  # pixels of the image given to `detect`
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # face probability to pass PNet, RNet, ONet
    factor: float = 0.709  # pyramid step
    nms_level: float = 0.5  # PNet, within one pyramid level
    nms_image: float = 0.7  # PNet across levels, RNet, and (intersection over minimum) ONet


class Net(Protocol):
    """One network: a float32 NCHW batch in, its outputs (in NetSpec order) out."""

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]: ...


class OnnxNet:
    """A detector net in an ONNX Runtime session (CPU, or CUDA with onnxruntime-gpu)."""

    def __init__(self, spec: NetSpec, path: Path | None = None, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int | None = None) -> None:
        from edge_emotion.deps import require

        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting between runs: the cascade's numpy steps need the same cores in between
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.spec = spec
        path = Path(path or spec.path)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as exc:  # ORT's own Fail / InvalidProtobuf / NoSuchFile types
            from edge_emotion.errors import ArtifactError

            raise ArtifactError(path, f"not a loadable detector net ({type(exc).__name__}: {exc})") from exc
        self._dtype = np.float16 if self.session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = self.session.run(list(self.spec.outputs), {self.spec.input: batch.astype(self._dtype, copy=False)})
        return [o.astype(np.float32, copy=False) for o in outputs]


class EngineNet:
    """A detector net as a TensorRT engine (built by `edge_emotion.toolchain.export.detector_nets --engine`). UNVERIFIED:
    TensorRT cannot run on the development machines; the runner is the branch backend's (tensorrt_backend)."""

    def __init__(self, spec: NetSpec, path: Path, device: str = "cuda:0") -> None:
        from edge_emotion.backends.tensorrt_backend import open_engine

        self.spec = spec
        self.runner = open_engine(path, device)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Batches beyond the engine's largest profile run in pieces (a frame with many candidates)."""
        from edge_emotion.backends.tensorrt_backend import batch_range, chunk_bounds

        largest = batch_range(self.runner.profiles, self.spec.input)[1]
        parts = [self._run(batch[a:b]) for a, b in chunk_bounds(len(batch), largest)]
        return [np.concatenate(outs) for outs in zip(*parts)]

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        outputs = dict(zip(self.runner.output_names, self.runner.run({self.spec.input: batch})))
        return [outputs[name].astype(np.float32, copy=False) for name in self.spec.outputs]


def open_net(spec: NetSpec, folder: Path | None, providers: Sequence[str], threads: int | None, device: str) -> Net:
    """The net `spec` from `folder` (default: the packaged FP32 ONNX): NAME.engine, else NAME.fp16.onnx, else NAME.onnx."""
    if folder is None:
        return OnnxNet(spec, spec.path, providers, threads)
    for name in (f"{spec.name}.engine", f"{spec.name}.fp16.onnx", f"{spec.name}.onnx"):
        path = Path(folder) / name
        if path.is_file():
            return EngineNet(spec, path, device) if path.suffix == ".engine" else OnnxNet(spec, path, providers, threads)
    from edge_emotion.errors import ArtifactError

    raise ArtifactError(folder, f"no {spec.name}.engine, {spec.name}.fp16.onnx or {spec.name}.onnx in this detector folder")


class Mtcnn:
    """Face boxes for batches of same-sized RGB images."""

    def __init__(self, pnet: Net, rnet: Net, onet: Net, settings: CascadeSettings = CascadeSettings()) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.settings = settings

    @classmethod
    def open(
        cls,
        settings: CascadeSettings = CascadeSettings(),
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
        folder: Path | None = None,
        device: str = "cuda:0",
    ) -> Mtcnn:
        """The packaged nets on ONNX Runtime with the given execution providers, or the nets of `folder`
        (FP16 ONNX or TensorRT engines written by `python -m edge_emotion.toolchain.export.detector_nets`)."""
        nets = [open_net(NET_SPECS[name], folder, providers, threads, device) for name in ("pnet", "rnet", "onet")]
        return cls(*nets, settings=settings)

    def detect(self, images: np.ndarray) -> list[np.ndarray]:
        """[F, H, W, 3] uint8 -> per image a float32 [k, 5] array (x1, y1, x2, y2, probability), largest box first."""
        count, height, width = images.shape[:3]
        table = cascade.Table.of(images)  # [F, H+1, W+1, 3]
        boxes, image = self.propose(table)
        boxes, image = self.refine(table, boxes, image)
        boxes, image = self.output(table, boxes, image)
        return [largest_first(boxes[image == k]) for k in range(count)]

    def propose(self, table: cascade.Table) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: PNet over the whole pyramid; squared, regressed candidates [M, 5] and their image [M]."""
        s = self.settings
        found, owners = [], []
        for scale in cascade.pyramid_scales(table.height, table.width, s.min_face, s.factor):
            regression, probability = self.pnet(cascade.pyramid_level(table, scale))
            boxes, image = cascade.pnet_boxes(regression, probability, scale, s.thresholds[0])
            keep = cascade.nms(boxes, boxes[:, 4], image, s.nms_level)
            found.append(boxes[keep])
            owners.append(image[keep])
        return self.merge_levels(found, owners)

    def merge_levels(self, found: list[np.ndarray], owners: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """PNet's candidates of all levels [M, 9] -> NMS across levels per group, regressed and squared: [K, 5], group [K]."""
        if not found or sum(len(b) for b in found) == 0:
            return EMPTY_BOXES, np.zeros(0, np.int64)
        boxes, group = np.concatenate(found), np.concatenate(owners)
        keep = cascade.nms(boxes, boxes[:, 4], group, self.settings.nms_image)
        boxes, group = boxes[keep], group[keep]
        regressed = cascade.apply_offsets(boxes[:, :5], boxes[:, 5:9], plus_one=False)
        return cascade.to_square(regressed), group

    def refine(self, table: cascade.Table, boxes: np.ndarray, group: np.ndarray, image_of: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: RNet on 24x24 crops of every candidate at once. `group` [M] is what NMS runs within (the image,
        or a followed face); `image_of[group]` the candidate's image in the table (default: the group itself)."""
        if len(boxes) == 0:
            return boxes, group
        crops, valid = cascade.crop_candidates(table, _image(group, image_of), boxes, NET_SPECS["rnet"].side or 24)
        boxes, group = boxes[valid], group[valid]
        if len(boxes) == 0:  # every candidate lay wholly outside its image
            return EMPTY_BOXES, group
        regression, probability = self.rnet(crops)
        score = probability[:, 1]
        passed = score > self.settings.thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        group, regression = group[passed], regression[passed]
        keep = cascade.nms(boxes, boxes[:, 4], group, self.settings.nms_image)
        boxes = cascade.apply_offsets(boxes[keep], regression[keep], plus_one=True)
        return cascade.to_square(boxes), group[keep]

    def output(self, table: cascade.Table, boxes: np.ndarray, group: np.ndarray, image_of: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stage 3: ONet on 48x48 crops; final regression and intersection-over-minimum NMS (groups as in `refine`)."""
        if len(boxes) == 0:
            return boxes, group
        crops, valid = cascade.crop_candidates(table, _image(group, image_of), boxes, NET_SPECS["onet"].side or 48)
        boxes, group = boxes[valid], group[valid]
        if len(boxes) == 0:
            return EMPTY_BOXES, group
        regression, _landmarks, probability = self.onet(crops)
        score = probability[:, 1]
        passed = score > self.settings.thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        boxes = cascade.apply_offsets(boxes, regression[passed], plus_one=True)
        group = group[passed]
        keep = cascade.nms(boxes, boxes[:, 4], group, self.settings.nms_image, method="min")
        return boxes[keep], group[keep]


def _image(group: np.ndarray, image_of: np.ndarray | None) -> np.ndarray:
    return group if image_of is None else image_of[group]


def largest_first(boxes: np.ndarray) -> np.ndarray:
    """[k, 5] boxes sorted by area, largest first (ties keep their order); EMPTY_BOXES for none."""
    if len(boxes) == 0:
        return EMPTY_BOXES
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area, kind="stable")]
