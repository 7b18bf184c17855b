"""CREMA-D index, labels, actor-independent folds and the human baseline, on the corpus's full list of 7,442 names."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from edge_emotion import LABELS
from edge_emotion.toolchain.train.crema import (
    ClipItem,
    human_accuracy,
    index_corpus,
    index_names,
    make_folds,
    parse_name,
    read_folds,
    read_votes,
    split,
    write_folds,
)

META = Path(__file__).parent / "fixtures" / "meta"
SUMMARY = META / "summaryTable.csv"


@pytest.fixture(scope="module")
def all_names() -> list[str]:
    with open(SUMMARY, newline="") as f:
        return [row["FileName"] for row in csv.DictReader(f)]


def test_parse_name_fields_and_label() -> None:
    item = parse_name("1076_MTI_SAD_XX", "x.flv")
    assert isinstance(item, ClipItem)
    assert (item.actor, item.sentence, item.emotion, item.level, item.label) == (
        1076,
        "MTI",
        "SAD",
        "XX",
        LABELS.index("SAD"),
    )
    assert parse_name("1076_MTI_BOR_XX") == "unknown emotion 'BOR' (expected one of ANG, DIS, FEA, HAP, NEU, SAD)"
    assert parse_name("notes") == "name is not AAAA_SSS_EEE_LL"


def test_full_name_list_indexes_7442_clips_of_91_actors(all_names: list[str]) -> None:
    items, skipped = index_names(all_names)
    assert len(items) == 7442 and skipped == []
    assert {i.actor for i in items} == set(range(1001, 1092))
    assert {i.emotion for i in items} == set(LABELS)


def test_folds_are_actor_disjoint_cover_all_actors_and_are_deterministic(all_names: list[str], tmp_path: Path) -> None:
    items, _ = index_names(all_names)
    folds = make_folds([i.actor for i in items], n_folds=10, seed=0)
    assert len(folds) == 10
    flat = [a for f in folds for a in f]
    assert sorted(flat) == list(range(1001, 1092))  # every actor in exactly one fold
    assert {len(f) for f in folds} == {9, 10}
    assert make_folds([i.actor for i in reversed(items)], 10, 0) == folds  # order of the input does not matter
    assert make_folds([i.actor for i in items], 10, 1) != folds  # the seed does
    write_folds(tmp_path / "folds.json", folds, seed=0)
    assert read_folds(tmp_path / "folds.json") == folds
    seen_test: set[str] = set()
    for k in range(10):
        train, test = split(items, folds, k)
        assert len(train) + len(test) == 7442
        assert not {i.actor for i in train} & {i.actor for i in test}
        seen_test |= {i.name for i in test}
    assert len(seen_test) == 7442  # each clip is tested exactly once over the 10 folds


def test_too_few_actors_for_the_folds_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 actors cannot fill 10"):
        make_folds([1001, 1002, 1003], 10)


def test_human_baseline_counts_ties_as_misses(all_names: list[str]) -> None:
    items, _ = index_names(all_names)
    votes = read_votes(SUMMARY)
    overall = human_accuracy(votes, items)
    assert overall["clips"] == 7442
    assert overall["accuracy"] == pytest.approx(0.722, abs=0.001)  # the README's audio-visual figure
    assert human_accuracy(read_votes(SUMMARY, "VoiceVote"), items)["accuracy"] == pytest.approx(0.416, abs=0.001)
    tie = ClipItem("1001_IEO_HAP_LO", "", 1001, "IEO", "HAP", "LO")
    assert human_accuracy({"1001_IEO_HAP_LO": "H:N"}, [tie])["correct"] == 0


def test_index_of_a_folder_skips_and_reports_bad_files(tmp_path: Path, hap_clip_path: Path) -> None:
    videos = tmp_path / "VideoFlash"
    videos.mkdir()
    shutil.copy(hap_clip_path, videos / "1001_DFA_HAP_XX.flv")
    shutil.copy(hap_clip_path, videos / "1002_DFA_HAP_XX.mp4")
    (videos / "1003_DFA_ANG_XX.flv").write_bytes(b"")  # zero bytes
    (videos / "1004_DFA_XYZ_XX.flv").write_bytes(b"x")  # no such emotion
    (videos / "holiday.flv").write_bytes(b"x")  # not a CREMA-D name
    (videos / "1001_DFA_HAP_XX.mp4").write_bytes(b"x")  # same clip twice
    (videos / "notes.txt").write_text("not a video")
    items, skipped = index_corpus(tmp_path)
    assert [i.name for i in items] == ["1001_DFA_HAP_XX", "1002_DFA_HAP_XX"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert reasons["1003_DFA_ANG_XX.flv"] == "empty file (0 bytes)"
    assert reasons["1004_DFA_XYZ_XX.flv"].startswith("unknown emotion")
    assert reasons["holiday.flv"] == "name is not AAAA_SSS_EEE_LL"
    assert reasons["1001_DFA_HAP_XX.mp4"].startswith("duplicate of")
    assert "notes.txt" not in reasons
