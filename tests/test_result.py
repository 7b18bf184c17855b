"""The one result type and its codec: clip rows, window rows and stream events share field names and values, and
every result reads back exactly as written (JSON lines whole, CSV without the segments and live fields)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from edge_emotion import LABELS
from edge_emotion.run.codec import FIELDS, LIVE_FIELDS, CsvFormat, JsonlFormat, format_for, from_record, to_record
from edge_emotion.run.result import FileKey, Live, Result, error_result, segment_result, window_result
from edge_emotion.run.score import ScoreOptions, score_folder
from edge_emotion.stream.events import EVENT_FIELDS
from edge_emotion.timeline.score import score_timelines


def _results() -> list[Result]:
    """A clip result with segments (one borrowed box), a centre-crop window, a stream event and an error."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=4)  # [N, K]
    key = FileKey("/v/a,b \"quoted\".mp4", 1234, 5678)  # CSV quoting too
    segments = [segment_result(k, 3 + 6 * k, (3 + 6 * k) / 30, 0.1 + 0.2 * k, None if k == 1 else (10.04, 20, 110, 130.06),
                               k != 1, probs[k], LABELS) for k in range(4)]
    common = dict(segment_probs=probs, labels=LABELS, silent=1)
    return [
        window_result("clip", key, key.path, person=0, people=2, window=0, n_windows=1, t_start=0.0, t_end=2.4023, duration_s=2.4023,
                      detected=[True, False, True, True], segments=segments, **common),
        window_result("window", key, key.path, person=None, people=0, window=7, n_windows=30, t_start=3.5, t_end=4.5,
                      detected=[False] * 4, **common),
        window_result("stream", None, "udp://127.0.0.1:5000", person=3, people=1, window=2, n_windows=None, t_start=1.0,
                      t_end=2.0, detected=[True] * 4, live=Live(1, "2025-06-01T12:00:03.250+00:00", 87.5, 3), **common),
        error_result("window", key, "corrupt or truncated stream\n(bad)"),
    ]


def test_the_codec_reads_back_exactly_what_it_wrote():
    results = _results()
    jsonl = JsonlFormat(LABELS)
    assert list(jsonl.decode("".join(jsonl.encode(r) for r in results))) == results
    csv = CsvFormat(LABELS)
    text = csv.header() + "".join(csv.encode(r) for r in results)
    assert list(csv.decode(text)) == [dataclasses.replace(r, segments=(), live=None) for r in results]
    assert results[0].segments[1].box is None and results[0].segments[0].box == (10.0, 20.0, 110.0, 130.1)
    assert (results[0].faceless, results[0].status, results[1].faceless, results[2].status) == (1, "degraded", 4, "degraded")
    assert results[3].error == "corrupt or truncated stream (bad)" and results[3].person is None and results[3].label is None
    record = to_record(results[2])
    assert tuple(record) == EVENT_FIELDS == (*FIELDS, *LIVE_FIELDS) and from_record(json.loads(json.dumps(record))) == results[2]
    assert tuple(to_record(results[0])) == FIELDS  # no live fields on a file's result
    with pytest.raises(ValueError, match="labels"):
        list(JsonlFormat(LABELS[::-1]).decode(jsonl.encode(results[0])))
    with pytest.raises(ValueError, match="must end in .csv or .jsonl"):
        format_for("out.txt", LABELS)


def test_a_clip_scored_as_a_clip_and_as_one_window_gives_the_same_result(hap_clip_path, sharp_checkpoint, tmp_path):
    """CREMA-D's HAP clip: `score` (a clip) and `score --window 5` (one window over the 2.4 s file) write the same
    fields with the same values; only the kind and the window's end (the grid's, not the decoded duration) differ."""
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(hap_clip_path, folder / hap_clip_path.name)
    clip_out, window_out = tmp_path / "clips.jsonl", tmp_path / "windows.jsonl"
    score_folder(folder, sharp_checkpoint, clip_out, ScoreOptions(workers=0))
    score_timelines(folder, sharp_checkpoint, window_out, ScoreOptions(workers=0, window=5.0, hop=1.25))
    (clip,) = [json.loads(line) for line in clip_out.read_text().splitlines()]
    (window,) = [json.loads(line) for line in window_out.read_text().splitlines()]
    assert tuple(clip) == tuple(window) == FIELDS
    assert (clip["kind"], window["kind"]) == ("clip", "window")
    assert window["t_end"] == pytest.approx(clip["t_end"], abs=0.05) and clip["t_end"] == clip["duration_s"]
    same = [k for k in FIELDS if k not in ("kind", "t_end")]
    assert {k: clip[k] for k in same} == {k: window[k] for k in same}
    assert max(clip["probabilities"].values()) > 0.3  # the sharp model: numbers that move with the input
