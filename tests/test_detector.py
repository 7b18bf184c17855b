"""The packaged detector: its nets match facenet's torch nets, the numpy cascade's pieces match torch's ops,
and the FP16 / engine variants go through the branch's export machinery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_emotion.detector import cascade
from edge_emotion.detector.mtcnn import Mtcnn, OnnxNet
from edge_emotion.detector.nets import NET_SPECS
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.faces import FaceDetector, box_iou


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_packaged_nets_equal_facenets_torch_nets(name):
    from facenet_pytorch.models import mtcnn as facenet

    spec = NET_SPECS[name]
    net = {"pnet": facenet.PNet, "rnet": facenet.RNet, "onet": facenet.ONet}[name]().eval()
    side = spec.side or 37  # PNet: any size, here an odd one
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, side, side + (0 if spec.side else 11))).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in net(torch.from_numpy(x))]
    got = OnnxNet(spec)(x)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=2e-5)


@pytest.mark.parametrize("n_in,n_out", [(240, 73), (73, 24), (10, 24), (333, 48), (7, 7)])
def test_area_resize_is_torchs_adaptive_average(n_in, n_out):
    rng = np.random.default_rng(n_in)
    image = rng.integers(0, 256, (1, n_in, n_in + 5, 3), dtype=np.uint8)
    sat = cascade.summed_area(image)
    rows = cascade.area_bounds(np.zeros(1, np.int64), np.array([n_in]), n_out)
    cols = cascade.area_bounds(np.zeros(1, np.int64), np.array([n_in + 5]), n_out)
    ours = cascade.window_means(sat, np.zeros(1, np.int64), rows, cols)[0]  # [h, w, 3]
    x = torch.from_numpy(image).permute(0, 3, 1, 2).float()
    theirs = torch.nn.functional.interpolate(x, size=(n_out, n_out), mode="area")[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_nms_keeps_the_best_of_each_cluster_per_image():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.3], np.float32)
    image = np.array([0, 0, 0, 1])
    assert cascade.nms(boxes, scores, image, 0.5).tolist() == [1, 2, 3]  # box 3 is in another image
    assert cascade.nms(boxes[:0], scores[:0], image[:0], 0.5).tolist() == []


def test_a_frame_too_small_for_any_face_finds_none():
    found = Mtcnn.open().detect(np.zeros((2, 11, 11, 3), np.uint8))
    assert [b.shape for b in found] == [(0, 5), (0, 5)]


def test_fp16_nets_from_the_export_machinery_find_the_same_faces(tmp_path, hap_clip_path):
    """The detector's FP16 variant: the branch's FP16 graph pass, loaded with FaceDetector(nets=DIR)."""
    from edge_emotion.toolchain.export.detector_nets import export_all, export_fp16

    export_all(tmp_path)
    paths = export_fp16(tmp_path)
    assert [p.name for p in paths] == ["pnet.fp16.onnx", "rnet.fp16.onnx", "onet.fp16.onnx"]
    clip = open_clip(hap_clip_path)
    frames = list(read_frames(clip, [5, 30, 60]).values())
    for full, half in zip(FaceDetector().detect(frames), FaceDetector(nets=tmp_path).detect(frames)):
        assert box_iou(full, half) > 0.95


def test_pnet_engine_profiles_cover_every_pyramid_level():
    """Every level the default settings ask of a 320 px frame falls inside one PNet profile (TensorRT needs that)."""
    from edge_emotion.toolchain.export.detector_nets import engine_profiles

    profiles = [p["image"] for p in engine_profiles(NET_SPECS["pnet"])]
    for height, width in ((240, 320), (180, 320), (320, 320), (320, 180), (360, 480), (1080, 1920)):
        for scale in cascade.pyramid_scales(height, width, 40, 0.709):
            h, w = cascade.pyramid_size(height, width, scale)
            assert any(lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3] and lo[0] <= 10 <= hi[0] for lo, _, hi in profiles)


def test_a_folder_without_nets_is_refused_naming_it(tmp_path):
    from edge_emotion.errors import ArtifactError

    with pytest.raises(ArtifactError, match="no pnet.engine"):
        FaceDetector(nets=Path(tmp_path))


def test_a_damaged_net_in_a_detector_folder_is_refused_naming_the_file(tmp_path):
    from edge_emotion.errors import ArtifactError

    (tmp_path / "pnet.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ArtifactError, match="pnet.onnx: not a loadable detector net"):
        FaceDetector(nets=tmp_path)


def test_candidates_wholly_outside_the_image_are_dropped_before_the_nets():
    table = cascade.Table.of(np.full((1, 40, 40, 3), 100, np.uint8))
    boxes = np.array([[-30, -30, -10, -10, 0.9], [5, 5, 30, 30, 0.9]], np.float32)
    crops, valid = cascade.crop_candidates(table, np.zeros(2, np.int64), boxes, 24)
    assert valid.tolist() == [False, True] and crops.shape == (1, 3, 24, 24)
    np.testing.assert_allclose(crops, (100 - 127.5) / 128, atol=1e-6)


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_split_prelu_gives_the_same_floats_bit_for_bit(name):
    """The packaged nets' PReLUs are split for ONNX Runtime's blocked layout (detector_nets.split_prelu): the
    outputs must be the unsplit graph's exactly, not merely close."""
    import io

    import onnx
    import onnxruntime as ort
    from facenet_pytorch.models import mtcnn as facenet

    from edge_emotion.toolchain.export.detector_nets import split_prelu

    spec = NET_SPECS[name]
    net = {"pnet": facenet.PNet, "rnet": facenet.RNet, "onet": facenet.ONet}[name]().eval()
    side = spec.side or 31
    buffer = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 3, side, side),), buffer, input_names=["image"], dynamo=False, opset_version=17,
                      dynamic_axes={"image": {0: "batch"}})
    plain = onnx.load_from_string(buffer.getvalue())
    split = split_prelu(onnx.load_from_string(buffer.getvalue()))
    assert [n.op_type for n in split.graph.node].count("PRelu") == (0 if name == "pnet" else 1)  # the dense layer's stays
    x = np.random.default_rng(1).uniform(-1, 1, (5, 3, side, side)).astype(np.float32)
    want = ort.InferenceSession(plain.SerializeToString()).run(None, {"image": x})
    got = ort.InferenceSession(split.SerializeToString()).run(None, {"image": x})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_crops_from_a_table_of_part_of_the_image_equal_the_whole_images():
    """A followed face's table covers only a window of the frame: its crops must be the whole table's, to the bit."""
    image = np.random.default_rng(3).integers(0, 256, (1, 90, 120, 3), dtype=np.uint8)
    boxes = np.array([[30.4, 20.2, 70.9, 61.0, 1], [-5, 40, 35, 80, 1]], np.float32)  # the second runs off the left edge
    whole = cascade.crop_candidates(cascade.Table.of(image), np.zeros(2, np.int64), boxes, 24)[0]
    y0, y1, x0, x1 = cascade.crop_bounds(boxes, 90, 120)
    part = cascade.Table.of(image, (y0, y1), (x0, x1))
    assert (part.top, part.left) == (y0, x0) and part.covers(y0, y1, x0, x1) and not part.covers(0, 90, 0, 120)
    np.testing.assert_array_equal(cascade.crop_candidates(part, np.zeros(2, np.int64), boxes, 24)[0], whole)
