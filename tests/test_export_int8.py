"""INT8: deterministic segment selection, the data reader, the ranges cache, QDQ export with parity and agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from export_helpers import CLIPS, detected, fixture_source, parity_batch

from edge_emotion.backends import open_backend
from edge_emotion.errors import ArtifactError
from edge_emotion.toolchain.calibration.data import ClipRef, SegmentSource, label_of, list_videos, order_clips
from edge_emotion.toolchain.calibration.int8 import SegmentDataReader, classifier_nodes, graph_digest, load_cache
from edge_emotion.toolchain.checkpoint import load_checkpoint
from edge_emotion.toolchain.export.onnx_export import read_contract
from edge_emotion.toolchain.export.parity import DEFAULT_TOLERANCES, Tolerance, compare
from edge_emotion.toolchain.export.pipeline import CalibrationOptions, build_onnx, export_onnx_artifact


def _names(n_actors: int) -> list[str]:
    return [f"{1001 + a}_DFA_{e}_XX" for a in range(n_actors) for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]


def test_order_is_deterministic_and_spreads_classes():
    clips = [ClipRef(Path(f"{n}.flv"), n, label_of(n)) for n in _names(10)]
    first = order_clips(clips, seed=0)
    assert first == order_clips(list(reversed(clips)), seed=0)  # input order does not matter
    assert [c.label for c in first[:12]] == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"] * 2  # round-robin
    assert len({c.name.split("_")[0] for c in first[:6]}) > 1  # actors mixed by the seeded hash
    assert order_clips(clips, seed=1) != first


def test_label_of_names():
    assert label_of("1001_DFA_HAP_XX") == "HAP"
    assert label_of("holiday_video") == "unknown"


def test_list_videos_prefers_videoflash(tmp_path):
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "VideoFlash" / "1002_IEO_SAD_HI.flv").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [c.name for c in list_videos(tmp_path)] == ["1002_IEO_SAD_HI"]


def test_source_yields_exact_count_and_holdout_elsewhere():
    source, _ = fixture_source(detected()[1], segments=20, per_clip=16)
    batches = list(source.batches())
    assert sum(len(b) for b in batches) == 20 and [len(b) for b in batches] == [16, 4]
    assert source.used == ["1001_DFA_HAP_XX", "1001_DFA_NEU_XX"]
    held, origin = source.holdout(6)
    assert len(held) == 6 and "other frames" in origin  # only two clips: held out at other frames
    assert held.faces.shape == (6, 3, 224, 224) and held.spectrograms.shape == (6, 1, 192, 120)


def test_source_refuses_too_few_segments():
    source, _ = fixture_source(detected()[1], segments=100, per_clip=4)
    with pytest.raises(ValueError, match="give only 8 of the 100"):
        list(source.batches())


def test_reader_rebatches():
    rng = np.random.default_rng(0)
    batches = [(rng.random((n, 3, 4, 4), np.float32), rng.random((n, 1, 2, 2), np.float32)) for n in (3, 5, 1)]
    reader = SegmentDataReader(batches, batch_size=4)
    sizes = []
    while (feed := reader.get_next()) is not None:
        sizes.append(feed["face"].shape[0])
        assert feed["spectrogram"].shape[0] == feed["face"].shape[0]
    assert sizes == [4, 4, 1]


@pytest.fixture(scope="module")
def int8_export(sharp_checkpoint, tmp_path_factory):
    """INT8 export of the sharpened checkpoint calibrated on 32 real segments (MinMax), then a rebuild from the cache.

    Sharpened (conftest): the untrained model's near-uniform probabilities would hide a broken INT8 graph.
    """
    out = tmp_path_factory.mktemp("int8")
    config = detected()[1]
    options = CalibrationOptions(Path(CLIPS[0].parent), "minmax", segments=32, per_clip=16, holdout=16)
    first_source, first_calls = fixture_source(config)
    first = export_onnx_artifact(
        sharp_checkpoint, out / "model.int8.onnx", parity_batch(), "int8", options, source=first_source
    )
    again_source, again_calls = fixture_source(config)
    cache = out / "model.int8.calib.json"  # the default: beside the first output
    options_cached = CalibrationOptions(
        Path(CLIPS[0].parent), "minmax", segments=32, per_clip=16, holdout=16, cache=cache
    )
    again = export_onnx_artifact(
        sharp_checkpoint, out / "again.int8.onnx", parity_batch(), "int8", options_cached, source=again_source
    )
    return {
        "first": first,
        "first_calls": first_calls,
        "first_source": first_source,
        "again": again,
        "again_calls": again_calls,
        "cache": cache,
    }


def _spread(probs: np.ndarray) -> float:
    """How far the probabilities move across segments: the largest per-class range of [S, K]."""
    return float((probs.max(0) - probs.min(0)).max())


def test_int8_parity_on_real_segments(int8_export, sharp_checkpoint):
    result = int8_export["first"]
    batch = parity_batch()
    with open_backend(sharp_checkpoint, "torch", device="cpu") as ref, open_backend(result.path) as q:
        want, got = ref.infer(batch.faces, batch.spectrograms), q.infer(batch.faces, batch.spectrograms)  # [8, 6]
    report = compare(want, got, "int8")
    assert report.max_abs_diff == pytest.approx(result.report.max_abs_diff)
    # INT8 follows the FP32 outputs where they move: its error is a small part of how far they move
    assert _spread(want) > 0.05  # ~1e-3 for the untrained model, whose near-uniform outputs prove nothing
    assert result.report.passed and report.max_abs_diff < 0.02 and report.max_abs_diff < _spread(want) / 4


def test_int8_graph_is_qdq_per_channel_with_float_head(int8_export):
    proto = onnx.load(str(int8_export["first"].path))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    weight_scales = [
        i for i in proto.graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1
    ]
    assert weight_scales, "per-channel weight scales expected"
    head = set(classifier_nodes(proto))
    assert {"Gemm", "Softmax"} <= {n.op_type for n in proto.graph.node if n.name in head}
    producer = {o: n for n in proto.graph.node for o in n.output}
    softmax = next(n for n in proto.graph.node if n.op_type == "Softmax")
    assert producer[softmax.input[0]].op_type == "Gemm"  # logits are not quantized
    assert proto.graph.output[0].name == softmax.output[0]  # nor the probabilities


def test_int8_agreement_in_metadata(int8_export, sharp_checkpoint, tmp_path):
    """The metadata's INT8-vs-FP32 figures equal ONNX Runtime's FP32 and INT8 sessions on the held-out segments."""
    result = int8_export["first"]
    contract = read_contract(result.path)
    assert contract.precision == "int8" and contract.io_dtype == "float32"
    assert contract.extra["calibration_method"] == "minmax" and contract.extra["calibration_segments"] == "32"
    assert contract.extra["int8_holdout_segments"] == "16"
    held, _ = int8_export["first_source"].holdout(16)  # the same segments again (seeded)
    fp32 = tmp_path / "fp32.onnx"
    build_onnx(load_checkpoint(sharp_checkpoint), fp32)
    assert graph_digest(fp32) == load_cache(int8_export["cache"]).model_digest  # the graph that was quantized

    def probs(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"face": held.faces, "spectrogram": held.spectrograms})[0]  # [16, 6]

    want, got = probs(fp32), probs(result.path)
    agree = want.argmax(1) == got.argmax(1)  # [16]
    top2 = np.sort(want, axis=1)[:, -2:]  # [16, 2]
    tolerance = DEFAULT_TOLERANCES["int8"]
    decisive = top2[:, 1] - top2[:, 0] >= tolerance.decisive_margin  # [16]
    meta = contract.extra
    assert float(meta["int8_vs_fp32_top1_agreement"]) == pytest.approx(agree.mean(), abs=1e-4)
    assert int(meta["int8_vs_fp32_decisive_segments"]) == decisive.sum()
    assert float(meta["int8_vs_fp32_decisive_agreement"]) == pytest.approx(agree[decisive].mean(), abs=1e-4)
    assert float(meta["int8_vs_fp32_max_abs_diff"]) == pytest.approx(np.abs(want - got).max(), rel=1e-3)
    # the export's own bar, on enough decisive segments for it to mean something
    assert decisive.sum() >= 8 and agree[decisive].mean() >= tolerance.min_agreement
    assert agree.mean() >= tolerance.min_agreement


def test_rebuild_reuses_the_calibration_cache(int8_export):
    first, again = int8_export["first"], int8_export["again"]
    assert not first.calibration.reused_cache and again.calibration.reused_cache
    assert int8_export["first_calls"][:2] == [16, 16]  # calibration loaded both clips
    assert 16 not in int8_export["again_calls"]  # the rebuild loaded only held-out segments
    cache = json.loads(int8_export["cache"].read_text())
    assert cache["method"] == "minmax" and cache["clips"] == ["1001_DFA_HAP_XX", "1001_DFA_NEU_XX"]
    assert all(lo <= hi for lo, hi in cache["ranges"].values()) and "face" in cache["ranges"]
    def graph_bytes(path):
        return onnx.load(str(path)).graph.SerializeToString()

    assert graph_bytes(first.path) == graph_bytes(again.path)


def test_cache_for_another_method_is_not_used(int8_export, tmp_path):
    cache = load_cache(int8_export["cache"])
    assert cache is not None
    assert not cache.matches("entropy", cache.model_digest, cache.selection)
    assert not cache.matches("minmax", "0" * 64, cache.selection)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable calibration cache"):
        assert load_cache(bad) is None


def test_int8_refused_beyond_agreement(fresh_checkpoint, tmp_path):
    source, _ = fixture_source(detected()[1], segments=16, per_clip=8)
    options = CalibrationOptions(Path("unused"), "minmax", segments=16, per_clip=8, holdout=8)
    with pytest.raises(ArtifactError, match="refused, parity check failed"):
        export_onnx_artifact(
            fresh_checkpoint,
            tmp_path / "m.onnx",
            parity_batch(),
            "int8",
            options,
            source=source,
            tolerance=Tolerance(max_abs=0.0),
        )
    assert not (tmp_path / "m.onnx").exists()


def test_segment_source_rejects_empty():
    with pytest.raises(ValueError, match="no video clips"):
        SegmentSource([], lambda *a: None)


def test_prepare_cache_source_uses_cached_boxes(tmp_path):
    """Calibration from the prepare cache: boxes come from the cache files, MTCNN never runs."""
    from edge_emotion.io.decode import open_clip
    from edge_emotion.toolchain.calibration.data import cached_clips, video_folder_source
    from edge_emotion.toolchain.train import box_cache

    inputs, config = detected()
    for path, seg in zip(CLIPS, inputs):
        clip = open_clip(path, config.audio.sample_rate)
        frames = np.array([s.frame for s in seg.segments])  # [N]
        boxes = np.array(seg.boxes, np.float32)  # [N, 4]: the scorer's box on each planned frame
        box_cache.write_cached(box_cache.cache_file(tmp_path, path.stem), clip, frames, boxes, np.ones(len(frames), bool))
    assert [c.name for c in cached_clips(CLIPS[0].parent, tmp_path)] == [p.stem for p in CLIPS]
    source = video_folder_source(CLIPS[0].parent, config, detector=None, segments=8, per_clip=4, cache_dir=tmp_path)
    batch = next(source.batches())
    np.testing.assert_allclose(batch.faces, inputs[0].faces, atol=1e-6)  # same boxes, same crops as MTCNN's
    np.testing.assert_allclose(batch.spectrograms, inputs[0].spectrograms, atol=1e-6)


def test_histogram_calibration_takes_ragged_batches(fresh_checkpoint, tmp_path):
    """20 segments from clips of 16 and 4 -> batches 8, 8, 4: the short one must not break the histograms.

    Entropy and Percentile share ONNX Runtime's HistogramCalibrater, so one method covers both.
    """
    from edge_emotion.toolchain.calibration.int8 import compute_ranges

    fp32 = tmp_path / "m.onnx"
    build_onnx(load_checkpoint(fresh_checkpoint), fp32)
    source, _ = fixture_source(detected()[1], segments=20, per_clip=16)
    ranges = compute_ranges(fp32, ((b.faces, b.spectrograms) for b in source.batches()), "percentile")
    assert ranges["face"][0] < 0 < ranges["face"][1] and all(lo <= hi for lo, hi in ranges.values())
