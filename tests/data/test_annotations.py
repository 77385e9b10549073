"""Annotation readers on the real EPIC-100 / SSv2 / Something-Else files and on crafted bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from egodistill.config import load_config
from egodistill.data.annotations import (
    READERS,
    AnnotationError,
    Epic100Reader,
    SomethingElseReader,
    SSv2Reader,
    build_reader,
    parse_timestamp,
    strip_brackets,
)
from egodistill.data.records import WHOLE_VIDEO

from conftest import FIXTURES  # tests/fixtures, inside the repository

REAL = FIXTURES / "real"
EPIC = REAL / "epic_kitchens_100"
SSV2 = REAL / "something_something_v2"
SE = REAL / "something_else" / "dataset_splits"

EPIC_FILES = {
    "train": EPIC / "UDA_annotations" / "EPIC_100_uda_source_train.head400.csv",
    "validation": EPIC / "EPIC_100_validation.csv",
    "test": EPIC / "EPIC_100_test_timestamps.csv",
    "verb_classes": EPIC / "EPIC_100_verb_classes.csv",
    "noun_classes": EPIC / "EPIC_100_noun_classes.csv",
    "tail_verbs": EPIC / "EPIC_100_tail_verbs.csv",
    "tail_nouns": EPIC / "EPIC_100_tail_nouns.csv",
    "unseen_participants": EPIC / "EPIC_100_unseen_participant_ids_validation.csv",
}
SSV2_FILES = {
    "validation": SSV2 / "something-something-v2-validation.json",
    "test": SSV2 / "something-something-v2-test.json",
    "labels": SSV2 / "something-something-v2-labels.json",
}


@pytest.fixture(scope="module")
def epic() -> Epic100Reader:
    return Epic100Reader(EPIC_FILES)


@pytest.fixture(scope="module")
def ssv2() -> SSv2Reader:
    return SSv2Reader(SSV2_FILES)


def by_id(samples):
    return {s.id: s for s in samples}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def test_parse_timestamp_known_values():
    assert parse_timestamp("00:00:00.00") == 0.0
    assert parse_timestamp("00:00:01.89") == pytest.approx(1.89)
    assert parse_timestamp("00:17:47.56") == pytest.approx(17 * 60 + 47.56)
    assert parse_timestamp("01:02:03.125") == pytest.approx(3723.125)
    for bad in ("", "1:2", "00:61:00.00", "aa:00:00.00", "00:00:60.5"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_strip_brackets_removes_every_token():
    assert strip_brackets("Putting [something] into [something in it]") == "Putting something into something in it"
    assert strip_brackets("[Something] falling like a rock") == "Something falling like a rock"
    assert strip_brackets("Pretending to pick [something] up") == "Pretending to pick something up"


# --------------------------------------------------------------------------------------------
# EPIC-KITCHENS-100 (real files)
# --------------------------------------------------------------------------------------------


def test_epic_splits_and_counts(epic):
    assert epic.splits() == ["train", "validation", "test"]
    val = epic.samples("validation")
    assert len(val) == 9668
    assert len({s.video_id for s in val}) == 138
    assert len({s.participant for s in val}) == 32
    assert all(set(s.labels) == {"verb", "noun"} for s in val)
    test = epic.samples("test")
    assert len(test) == 13092
    assert len({s.video_id for s in test}) == 67
    assert all(s.labels == {} for s in test)
    assert len(epic.samples("train")) == 400


def test_epic_exact_rows(epic):
    val = by_id(epic.samples("validation"))
    s = val["P01_11_0"]
    assert (s.video_id, s.participant, s.start_frame, s.stop_frame) == ("P01_11", "P01", 1, 113)
    assert s.labels == {"verb": 0, "noun": 2}
    assert (s.start_time, s.stop_time) == pytest.approx((0.0, 1.89))
    assert s.narration == "take plate" and s.all_noun_classes == (2,)
    assert s.num_frames == 113

    s = val["P01_11_12"]  # quoted list literals with commas
    assert (s.start_frame, s.stop_frame, s.labels) == (3118, 3181, {"verb": 13, "noun": 49})
    assert s.narration == "throw paper into bin" and s.all_noun_classes == (49, 36)

    s = val["P02_12_293"]  # empty narration_timestamp
    assert (s.start_frame, s.stop_frame, s.labels) == (64053, 64245, {"verb": 47, "noun": 25})
    assert (s.start_time, s.stop_time) == pytest.approx((17 * 60 + 47.56, 17 * 60 + 50.75))

    train = epic.samples("train")
    assert train[0].id == "P01_01_0" and train[0].narration == "open door"
    assert (train[0].start_frame, train[0].stop_frame, train[0].labels) == (8, 202, {"verb": 3, "noun": 3})

    test = epic.samples("test")
    assert test[0].id == "P01_101_0"
    assert (test[0].start_frame, test[0].stop_frame) == (143, 193)
    assert (test[0].start_time, test[0].stop_time) == pytest.approx((2.86, 3.87))


def test_epic_file_order_is_kept(epic):
    ids = [s.id for s in epic.samples("validation")[:3]]
    assert ids == ["P01_11_0", "P01_11_1", "P01_11_10"]  # string order, as in the file


def test_epic_invariants(epic):
    for split in ("train", "validation", "test"):
        for s in epic.samples(split):
            assert 1 <= s.start_frame <= s.stop_frame
            assert 0 <= s.start_time <= s.stop_time
            assert s.id.startswith(s.video_id + "_") and s.video_id.startswith(s.participant + "_")
    for s in epic.samples("validation"):
        assert 0 <= s.labels["verb"] < 97 and 0 <= s.labels["noun"] < 300
        assert s.labels["noun"] in s.all_noun_classes


def test_epic_info(epic):
    info = epic.info()
    assert info.name == "epic100"
    assert info.num_classes == {"verb": 97, "noun": 300}
    assert info.heads["verb"][:2] == ["take", "put"]
    assert info.heads["verb"][96] == "unfreeze"  # last line, no final newline, CRLF
    assert info.heads["noun"][2] == "plate" and info.heads["noun"][25] == "dough"  # class key; the row's noun was "ball:dough"
    assert info.action_heads == ("verb", "noun")
    assert len(info.tail_classes["verb"]) == 86 and len(info.tail_classes["noun"]) == 228
    assert min(info.tail_classes["verb"]) == 10 and {12, 13, 96} <= info.tail_classes["verb"]
    assert info.unseen_participants == {"P18", "P32"}


def test_epic_noun_classes_v2_fully_quoted():
    info = Epic100Reader(
        {"verb_classes": EPIC_FILES["verb_classes"], "noun_classes": EPIC / "EPIC_100_noun_classes_v2.csv"}
    ).info()
    assert info.num_classes == {"verb": 97, "noun": 305}
    assert info.heads["noun"][:2] == ["tap", "spoon"]
    assert info.tail_classes == {} and info.unseen_participants == set()


def test_epic_test_unseen_participants():
    files = {k: EPIC_FILES[k] for k in ("verb_classes", "noun_classes")}
    files["unseen_participants"] = EPIC / "EPIC_100_unseen_participant_ids_test.csv"
    assert Epic100Reader(files).info().unseen_participants == {"P33", "P34", "P36"}


def test_epic_samples_returns_fresh_list(epic):
    a = epic.samples("validation")
    a.clear()
    assert len(epic.samples("validation")) == 9668


# --------------------------------------------------------------------------------------------
# EPIC bad input
# --------------------------------------------------------------------------------------------

HEADER = "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
ROW = "P01_01_0,P01,P01_01,00:00:01.089,00:00:00.14,00:00:03.37,8,202,open door,open,3,door,3,['door'],[3]"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_epic_missing_column_names_file_and_column(tmp_path):
    header = HEADER.replace("verb_class,", "")
    row = ROW.replace("open,3,", "open,")
    path = write(tmp_path, "train.csv", f"{header}\n{row}\n")
    with pytest.raises(AnnotationError, match=r"train\.csv.*missing column\(s\) 'verb_class'"):
        Epic100Reader({"train": path}).samples("train")


def test_epic_test_split_needs_no_labels_but_train_does(tmp_path):
    header = ",".join(HEADER.split(",")[:8])
    row = ",".join(ROW.split(",")[:8])
    path = write(tmp_path, "ts.csv", f"{header}\n{row}\n")
    (s,) = Epic100Reader({"test": path}).samples("test")
    assert s.labels == {} and s.narration is None and (s.start_frame, s.stop_frame) == (8, 202)
    with pytest.raises(AnnotationError, match="missing column.*'verb_class', 'noun_class'"):
        Epic100Reader({"train": path}).samples("train")


def test_epic_crlf_quoted_header_and_bom(tmp_path):
    quoted = ",".join(f'"{c}"' for c in HEADER.split(","))
    path = tmp_path / "v.csv"
    path.write_bytes(("\ufeff" + quoted + "\r\n" + ROW).encode("utf-8"))  # no final newline
    (s,) = Epic100Reader({"validation": path}).samples("validation")
    assert s.id == "P01_01_0" and s.labels == {"verb": 3, "noun": 3} and s.all_noun_classes == (3,)


@pytest.mark.parametrize(
    "old, new, message",
    [
        (",8,202,", ",x,202,", r"line 2, column 'start_frame': expected an integer, got 'x'"),
        (",8,202,", ",300,202,", r"line 2 \(P01_01_0\): start_frame 300 is after stop_frame 202"),
        ("00:00:03.37", "3.37", r"line 2, column 'stop_timestamp'"),
        (",[3]", ",[3", r"line 2, column 'all_noun_classes'"),
        ("open,3,", "open,-1,", r"P01_01_0.*'verb_class': class -1 out of range"),
        ("open door,", "open,door,", r"line 2: 16 fields, expected 15"),
    ],
)
def test_epic_bad_rows_name_file_line_and_column(tmp_path, old, new, message):
    path = write(tmp_path, "bad.csv", f"{HEADER}\n{ROW.replace(old, new)}\n")
    with pytest.raises(AnnotationError, match=message) as e:
        Epic100Reader({"validation": path}).samples("validation")
    assert "bad.csv" in str(e.value)


def test_epic_class_out_of_range_of_class_file(tmp_path):
    path = write(tmp_path, "v.csv", f"{HEADER}\n{ROW.replace('open,3,', 'open,97,')}\n")
    files = {"validation": path, "verb_classes": EPIC_FILES["verb_classes"], "noun_classes": EPIC_FILES["noun_classes"]}
    with pytest.raises(AnnotationError, match=r"'verb_class': class 97 out of range, expected 0\.\.96"):
        Epic100Reader(files).samples("validation")


def test_epic_duplicate_id(tmp_path):
    path = write(tmp_path, "v.csv", f"{HEADER}\n{ROW}\n{ROW}\n")
    with pytest.raises(AnnotationError, match="'P01_01_0' appears more than once"):
        Epic100Reader({"validation": path}).samples("validation")


def test_epic_class_file_ids_must_be_in_order(tmp_path):
    path = write(tmp_path, "verbs.csv", "id,key,instances,category\n0,take,['take'],x\n2,put,['put'],x\n")
    with pytest.raises(AnnotationError, match=r"verbs\.csv, line 3, column 'id': expected class id 1"):
        Epic100Reader({"verb_classes": path, "noun_classes": EPIC_FILES["noun_classes"]}).info()


def test_epic_tail_out_of_range(tmp_path):
    tail = write(tmp_path, "tail.csv", "verb\n10\n97\n")
    files = {"verb_classes": EPIC_FILES["verb_classes"], "noun_classes": EPIC_FILES["noun_classes"], "tail_verbs": tail}
    with pytest.raises(AnnotationError, match=r"tail\.csv: tail verb class\(es\) \[97\] out of range"):
        Epic100Reader(files).info()


def test_info_without_class_files_names_the_key():
    with pytest.raises(AnnotationError, match="needs the annotation file 'verb_classes'"):
        Epic100Reader({"test": EPIC_FILES["test"]}).info()


def test_unknown_split_lists_available(epic):
    with pytest.raises(AnnotationError, match="no split 'val'; available splits: train, validation, test"):
        epic.samples("val")
    with pytest.raises(AnnotationError, match="no split 'verb_classes'"):
        epic.samples("verb_classes")  # a file key, but not a split


def test_unknown_file_key_suggests(tmp_path):
    with pytest.raises(AnnotationError, match="unknown annotation file key 'valdation'.*did you mean 'validation'"):
        Epic100Reader({"valdation": EPIC_FILES["validation"]})


def test_missing_file_fails_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"epic100 annotation file 'train' not found: .*nope\.csv"):
        Epic100Reader({"train": tmp_path / "nope.csv"})


# --------------------------------------------------------------------------------------------
# Something-Something v2 (real files)
# --------------------------------------------------------------------------------------------


def test_ssv2_counts_and_rows(ssv2):
    assert ssv2.splits() == ["validation", "test"]
    val = ssv2.samples("validation")
    assert len(val) == 24777
    s = val[0]
    assert (s.id, s.video_id, s.labels) == ("74225", "74225", {"action": 140})
    assert (s.start_frame, s.stop_frame) == (1, WHOLE_VIDEO) and s.whole_video
    assert s.narration == "spinning cube that quickly stops spinning"
    with pytest.raises(ValueError, match="74225.*whole video"):
        s.num_frames
    # Three bracket tokens, two of them "[something in it]".
    assert by_id(val)["149956"].labels == {"action": ssv2._class_ids()["Tipping something with something in it over, so something in it falls out"]}
    assert len({s.labels["action"] for s in val}) == 174
    test = ssv2.samples("test")
    assert len(test) == 27157 and test[0].id == "1420" and all(t.labels == {} for t in test)


def test_ssv2_info(ssv2):
    info = ssv2.info()
    assert info.name == "ssv2" and info.num_classes == {"action": 174}
    assert info.heads["action"][0] == "Approaching something with your camera"
    assert info.heads["action"][140] == "Spinning something that quickly stops spinning"
    assert info.heads["action"][173] == "Wiping something off of something"
    assert info.action_heads is None


def test_ssv2_test_split_needs_no_label_file():
    (s, *_rest) = SSv2Reader({"test": SSV2_FILES["test"]}).samples("test")
    assert s.id == "1420" and s.labels == {}


def test_ssv2_unknown_template_names_video(tmp_path):
    entries = [{"id": "7", "label": "x", "template": "Spinning [something] that slowly stops spinning", "placeholders": ["x"]}]
    path = write(tmp_path, "train.json", json.dumps(entries))
    with pytest.raises(AnnotationError, match=r"train\.json, video 7: template .*slowly.* not in the label file.*closest label: 'Spinning something that quickly stops spinning'"):
        SSv2Reader({"train": path, "labels": SSV2_FILES["labels"]}).samples("train")


def test_ssv2_bad_json_and_entries(tmp_path):
    labels = SSV2_FILES["labels"]
    path = write(tmp_path, "train.json", "[{\"id\": \"1\",")
    with pytest.raises(AnnotationError, match=r"train\.json: not valid JSON"):
        SSv2Reader({"train": path, "labels": labels}).samples("train")
    path = write(tmp_path, "train.json", json.dumps([{"label": "x"}]))
    with pytest.raises(AnnotationError, match=r"train\.json, entry 0: expected an object with key 'id'"):
        SSv2Reader({"train": path, "labels": labels}).samples("train")
    path = write(tmp_path, "train.json", json.dumps([{"id": "5"}]))
    with pytest.raises(AnnotationError, match=r"video 5: no 'template' key"):
        SSv2Reader({"train": path, "labels": labels}).samples("train")


def test_ssv2_label_file_ids_must_be_a_permutation(tmp_path):
    split = write(tmp_path, "v.json", json.dumps([{"id": "1", "template": "A [something]"}]))
    dup = write(tmp_path, "labels.json", json.dumps({"A something": "0", "B something": "0"}))
    with pytest.raises(AnnotationError, match="class id 0 is used by both 'A something' and 'B something'"):
        SSv2Reader({"validation": split, "labels": dup}).samples("validation")
    gap = write(tmp_path, "labels.json", json.dumps({"A something": "0", "B something": "2"}))
    with pytest.raises(AnnotationError, match=r"class ids must be 0\.\.1, found \[2\]"):
        SSv2Reader({"validation": split, "labels": gap}).info()


# --------------------------------------------------------------------------------------------
# Something-Else (real files)
# --------------------------------------------------------------------------------------------


def test_something_else_oneobject_sorted_ids():
    labels = SE / "compositional_oneobject" / "labels.json"
    reader = SomethingElseReader({"train": SE / "compositional_oneobject" / "train.json", "labels": labels})
    train = reader.samples("train")
    assert len(train) == 6560
    info = reader.info()
    assert info.num_classes == {"action": 166}
    raw = json.loads(labels.read_text())
    assert info.heads["action"] == sorted(raw)  # the authors' rule: id = index in sorted keys
    assert len({s.labels["action"] for s in train}) == 164
    first = train[0]  # {"placeholders": ..., "new_placeholdes": ..., "id": "203403", "template": ...}
    assert first.id == "203403"
    key = "Moving something and something closer to each other"
    assert first.labels == {"action": sorted(raw).index(key)}
    assert first.narration == "moving polish and a box closer to each other"


def test_something_else_file_ids_option():
    labels = SE / "compositional" / "labels.json"
    raw = json.loads(labels.read_text())
    sorted_reader = SomethingElseReader({"labels": labels})
    file_reader = SomethingElseReader({"labels": labels}, label_ids="file")
    assert file_reader.info().heads["action"][168] == "Approaching something with your camera"
    assert raw["Approaching something with your camera"] == 168
    assert sorted_reader.info().heads["action"][0] == "Approaching something with your camera"
    # The two numberings agree on the class set but differ in ids (only 1 of 174 coincides).
    s, f = sorted_reader._class_ids(), file_reader._class_ids()
    assert set(s) == set(f) == set(SSv2Reader({"labels": SSV2_FILES["labels"]})._class_ids())
    assert sum(s[k] == f[k] for k in s) == 1
    with pytest.raises(AnnotationError, match="label_ids must be 'sorted' or 'file'"):
        SomethingElseReader({"labels": labels}, label_ids="ssv2")


def test_something_else_fewshot_sets():
    fs = SE / "fewshot"
    base = SomethingElseReader({"validation": fs / "base_validation_set.json", "labels": fs / "base_labels.json"})
    assert len(base.samples("validation")) == 12467 and base.info().num_classes == {"action": 88}
    fine = SomethingElseReader(
        {"train": fs / "finetune_5shot_training.json", "validation": fs / "finetune_10shot_train.json",
         "labels": fs / "finetune_labels.json"}
    )
    five, ten = fine.samples("train"), fine.samples("validation")
    assert (len(five), len(ten)) == (430, 860)
    assert fine.info().num_classes == {"action": 86}
    # 5 and 10 examples of each of the 86 classes.
    assert sorted({sum(1 for s in five if s.labels["action"] == c) for c in range(86)}) == [5]
    assert sorted({sum(1 for s in ten if s.labels["action"] == c) for c in range(86)}) == [10]
    base_names = set(base.info().heads["action"])
    assert not base_names & set(fine.info().heads["action"])  # disjoint


def test_something_else_template_outside_split_labels():
    # A base-class video looked up in the fine-tune label file must fail, naming the video.
    fs = SE / "fewshot"
    reader = SomethingElseReader({"validation": fs / "base_validation_set.json", "labels": fs / "finetune_labels.json"})
    with pytest.raises(AnnotationError, match=r"base_validation_set\.json, video \d+: template .* not in the label file"):
        reader.samples("validation")


def test_something_else_accepts_boxes_key():
    reader = SomethingElseReader({"labels": SE / "compositional" / "labels.json", "boxes": REAL / "something_else" / "annotations.json"})
    assert reader.splits() == []


# --------------------------------------------------------------------------------------------
# build_reader
# --------------------------------------------------------------------------------------------


def test_build_reader_resolves_paths_against_root(tmp_path):
    cfg = load_config(
        None,
        [
            "data.reader=epic100",
            f"data.root={EPIC}",
            "data.files.validation=EPIC_100_validation.csv",
            "data.files.verb_classes=EPIC_100_verb_classes.csv",
            f"data.files.noun_classes={EPIC_FILES['noun_classes']}",  # absolute stays as is
        ],
    )
    reader = build_reader(cfg)
    assert isinstance(reader, Epic100Reader)
    assert reader.files["validation"] == EPIC / "EPIC_100_validation.csv"
    assert len(reader.samples("validation")) == 9668


def test_build_reader_something_else_label_ids(tmp_path):
    labels = SE / "compositional" / "labels.json"
    cfg = load_config(None, ["data.reader=something_else", f"data.files.labels={labels}", "data.label_ids=file"])
    reader = build_reader(cfg)
    assert isinstance(reader, SomethingElseReader) and reader.label_ids == "file"
    assert reader.info().heads["action"][168] == "Approaching something with your camera"


def test_build_reader_unknown_name():
    cfg = load_config(None, ["data.reader=epic55"])
    with pytest.raises(AnnotationError, match="unknown reader 'epic55'; valid readers: epic100, ssv2, something_else"):
        build_reader(cfg)
    assert set(READERS) == {"epic100", "ssv2", "something_else"}
