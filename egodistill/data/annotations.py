"""Annotation readers: EPIC-KITCHENS-100 CSVs, Something-Something v2 JSON, Something-Else splits.

Each reader turns a dataset's annotation files into one record type, `Sample`, plus a
`DatasetInfo` (class names per head, tail classes, unseen participants). Readers are picked by
name from `READERS`; `build_reader(cfg)` reads `cfg.data.reader` and `cfg.data.files`.

    reader = build_reader(cfg)
    reader.splits()            -> ["train", "validation", "test"]  (those whose file is given; EPIC
                                  also reads an `unlabelled` split without label columns)
    reader.samples("train")    -> list[Sample], in file order
    reader.info()              -> DatasetInfo

Every parsing error names the file, the row (or entry) and the column (or key) at fault.
"""
from __future__ import annotations

import ast
import csv
import difflib
import json
from pathlib import Path
from typing import Any, ClassVar

from egodistill.config import Config, resolve_path
from egodistill.data.records import WHOLE_VIDEO, DatasetInfo, Sample


class AnnotationError(ValueError):
    """An annotation file that does not have the expected content."""


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


class AnnotationReader:
    """Reads one dataset's annotation files, given as `{file key: path}`.

    Subclasses set `name`, `split_keys` (file keys that are splits), `other_keys` (the rest of
    the valid file keys) and implement `_read_split(split)` and `info()`.
    """

    name: ClassVar[str] = ""
    split_keys: ClassVar[tuple[str, ...]] = ("train", "validation", "test")
    other_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, files: dict[str, str | Path]):
        valid = self.split_keys + self.other_keys
        for key in files:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise AnnotationError(
                    f"{self.name} reader: unknown annotation file key '{key}'{hint}; "
                    f"valid keys are: {', '.join(valid)}"
                )
        self.files: dict[str, Path] = {k: Path(v) for k, v in files.items()}
        # Fail at start rather than halfway through a run.
        for key, path in self.files.items():
            if not path.is_file():
                raise FileNotFoundError(f"{self.name} annotation file '{key}' not found: {path}")
        self._cache: dict[str, list[Sample]] = {}

    @classmethod
    def from_config(cls, cfg: Config) -> AnnotationReader:
        """Return the reader for `cfg.data.files`, paths resolved against `cfg.data.root`."""
        return cls({k: resolve_path(cfg, v) for k, v in cfg.data.files.items()})

    def splits(self) -> list[str]:
        """Return the split names whose file was given, in the order train, validation, test."""
        return [k for k in self.split_keys if k in self.files]

    def samples(self, split: str) -> list[Sample]:
        """Return the samples of `split` in file order (a fresh list; the records are shared)."""
        if split not in self.files or split not in self.split_keys:
            raise AnnotationError(
                f"{self.name} reader: no split '{split}'; available splits: "
                f"{', '.join(self.splits()) or '(none: no split file given)'}"
            )
        if split not in self._cache:
            samples = self._read_split(split)
            _check_unique_ids(samples, self.files[split])
            self._cache[split] = samples
        return list(self._cache[split])

    def info(self) -> DatasetInfo:
        raise NotImplementedError

    def _read_split(self, split: str) -> list[Sample]:
        raise NotImplementedError

    def _require(self, key: str) -> Path:
        if key not in self.files:
            raise AnnotationError(f"{self.name} reader needs the annotation file '{key}' (data.files.{key})")
        return self.files[key]


def _check_unique_ids(samples: list[Sample], path: Path) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise AnnotationError(f"{path}: sample id '{s.id}' appears more than once")
        seen.add(s.id)


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


def read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Return (header, rows) of CSV `path`; each row is (line number, {column: text}).

    Uses the csv module so CRLF line endings, a missing final newline and quoted headers or
    fields all parse. Raises AnnotationError naming the file and every missing required column.
    """
    # utf-8-sig: tolerate a byte-order mark written by spreadsheet tools.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise AnnotationError(f"{path}: empty file, expected a header with columns {', '.join(required)}") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise AnnotationError(
                f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
                f"the header has: {', '.join(header)}"
            )
        rows = []
        for values in reader:
            if not values:  # blank line
                continue
            if len(values) != len(header):
                raise AnnotationError(
                    f"{path}, line {reader.line_num}: {len(values)} fields, expected {len(header)} ({', '.join(header)})"
                )
            rows.append((reader.line_num, dict(zip(header, values))))
    return header, rows


def _int(row: dict[str, str], column: str, path: Path, line: int) -> int:
    text = row[column].strip()
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(f"{path}, line {line}, column '{column}': expected an integer, got {text!r}") from None


def parse_timestamp(text: str) -> float:
    """Return seconds for an EPIC timestamp `HH:MM:SS.ss` (or `HH:MM:SS.mmm`).

    Raises ValueError for anything else.
    """
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"expected HH:MM:SS.ss, got {text!r}")
    h, m, s = parts
    try:
        hours, minutes, seconds = int(h), int(m), float(s)
    except ValueError:
        raise ValueError(f"expected HH:MM:SS.ss, got {text!r}") from None
    if not (0 <= minutes < 60 and 0 <= seconds < 60 and hours >= 0):
        raise ValueError(f"expected HH:MM:SS.ss with minutes and seconds below 60, got {text!r}")
    return hours * 3600 + minutes * 60 + seconds


def _time(row: dict[str, str], column: str, path: Path, line: int) -> float:
    try:
        return parse_timestamp(row[column])
    except ValueError as e:
        raise AnnotationError(f"{path}, line {line}, column '{column}': {e}") from None


def _int_list(row: dict[str, str], column: str, path: Path, line: int) -> tuple[int, ...]:
    """Parse a Python list literal of ints such as `[49, 36]` (EPIC `all_noun_classes`)."""
    text = row[column].strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise AnnotationError(f"{path}, line {line}, column '{column}': expected a list of ints like [49, 36], got {text!r}")
    return tuple(value)


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f"{path}: not valid JSON: {e}") from None


def strip_brackets(template: str) -> str:
    """Return an SSv2 template with every `[...]` token's brackets removed.

    "Putting [something] into [something in it]" -> "Putting something into something in it",
    which is how the label files key their classes.
    """
    return template.replace("[", "").replace("]", "")


# --------------------------------------------------------------------------------------------
# EPIC-KITCHENS-100
# --------------------------------------------------------------------------------------------


class Epic100Reader(AnnotationReader):
    """EPIC-KITCHENS-100 action segments with a verb and a noun head.

    Samples: id = narration_id; frames as in the CSV (1-based frame files, inclusive);
    start/stop time in seconds from `start_timestamp` / `stop_timestamp`; labels
    {"verb": verb_class, "noun": noun_class} (empty for the test timestamps);
    `all_noun_classes` from the list literal of that name. `narration_timestamp` is not used
    (it is empty for 70 validation rows).
    """

    name = "epic100"
    # `unlabelled`: segments nobody labelled (EPIC's test-timestamps columns), e.g. for
    # distillation on unlabelled clips (distill.unlabelled.split); read like `test`.
    split_keys = ("train", "validation", "test", "unlabelled")
    unlabelled_splits = ("test", "unlabelled")
    other_keys = (
        "verb_classes", "noun_classes", "tail_verbs", "tail_nouns", "unseen_participants", "video_info",
    )
    segment_columns = (
        "narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp",
        "start_frame", "stop_frame",
    )
    label_columns = ("verb_class", "noun_class")

    def _read_split(self, split: str) -> list[Sample]:
        path = self.files[split]
        # The test timestamps (and other unlabelled splits) have no labels; train and validation must.
        required = self.segment_columns + (() if split in self.unlabelled_splits else self.label_columns)
        header, rows = read_csv(path, required)
        labelled = all(c in header for c in self.label_columns)
        has_narration = "narration" in header
        has_all_nouns = "all_noun_classes" in header
        limits = self._class_counts()  # None when the class files are not given
        samples = []
        for line, row in rows:
            start, stop = _int(row, "start_frame", path, line), _int(row, "stop_frame", path, line)
            if start > stop:
                raise AnnotationError(
                    f"{path}, line {line} ({row['narration_id']}): start_frame {start} is after stop_frame {stop}"
                )
            labels: dict[str, int] = {}
            if labelled:
                for head, column in (("verb", "verb_class"), ("noun", "noun_class")):
                    c = _int(row, column, path, line)
                    if c < 0 or (limits is not None and c >= limits[head]):
                        bound = f"0..{limits[head] - 1}" if limits is not None else ">= 0"
                        raise AnnotationError(
                            f"{path}, line {line} ({row['narration_id']}), column '{column}': "
                            f"class {c} out of range, expected {bound}"
                        )
                    labels[head] = c
            samples.append(
                Sample(
                    id=row["narration_id"],
                    video_id=row["video_id"],
                    start_frame=start,
                    stop_frame=stop,
                    labels=labels,
                    participant=row["participant_id"],
                    start_time=_time(row, "start_timestamp", path, line),
                    stop_time=_time(row, "stop_timestamp", path, line),
                    narration=row["narration"] if has_narration else None,
                    all_noun_classes=_int_list(row, "all_noun_classes", path, line) if has_all_nouns else (),
                )
            )
        return samples

    def _class_counts(self) -> dict[str, int] | None:
        if "verb_classes" in self.files and "noun_classes" in self.files:
            return {h: len(names) for h, names in self._heads().items()}
        return None

    def _heads(self) -> dict[str, list[str]]:
        if not hasattr(self, "_heads_cache"):
            self._heads_cache = {
                "verb": _read_class_file(self._require("verb_classes")),
                "noun": _read_class_file(self._require("noun_classes")),
            }
        return self._heads_cache

    def info(self) -> DatasetInfo:
        """Return heads {"verb": names, "noun": names}, tail classes and unseen participants."""
        heads = self._heads()
        tail: dict[str, set[int]] = {}
        for head, key in (("verb", "tail_verbs"), ("noun", "tail_nouns")):
            if key in self.files:
                path = self.files[key]
                _, rows = read_csv(path, (head,))
                ids = {_int(row, head, path, line) for line, row in rows}
                bad = sorted(i for i in ids if not 0 <= i < len(heads[head]))
                if bad:
                    raise AnnotationError(
                        f"{path}: tail {head} class(es) {bad} out of range, expected 0..{len(heads[head]) - 1}"
                    )
                tail[head] = ids
        unseen: set[str] = set()
        if "unseen_participants" in self.files:
            _, rows = read_csv(self.files["unseen_participants"], ("participant_id",))
            unseen = {row["participant_id"].strip() for _, row in rows}
        return DatasetInfo(
            name=self.name, heads=heads, tail_classes=tail, unseen_participants=unseen,
            action_heads=("verb", "noun"),
        )


def _read_class_file(path: Path) -> list[str]:
    """Return the class names (column `key`) of an EPIC class file, index = class id.

    Raises AnnotationError if the `id` column is not 0, 1, 2, ... in order.
    """
    _, rows = read_csv(path, ("id", "key"))
    names = []
    for i, (line, row) in enumerate(rows):
        class_id = _int(row, "id", path, line)
        if class_id != i:
            raise AnnotationError(f"{path}, line {line}, column 'id': expected class id {i} (ids 0, 1, 2, ... in order), got {class_id}")
        names.append(row["key"])
    return names


# --------------------------------------------------------------------------------------------
# Something-Something v2 and Something-Else
# --------------------------------------------------------------------------------------------


class SSv2Reader(AnnotationReader):
    """Something-Something v2: one sample per video, one head `action` (174 templates).

    Samples span their whole video: start_frame = 1, stop_frame = WHOLE_VIDEO (-1), resolved by
    the dataset with the store's frame count. Labels are {"action": labels[strip_brackets(
    template)]}; the `test` split (entries with only "id") is unlabelled. `narration` holds the
    entry's filled-in `label` text.
    """

    name = "ssv2"
    other_keys: ClassVar[tuple[str, ...]] = ("labels",)

    def _class_ids(self) -> dict[str, int]:
        """Return {template without brackets: class id}, validated to be ids 0..N-1."""
        if not hasattr(self, "_ids_cache"):
            path = self._require("labels")
            raw = _read_json(path)
            if not isinstance(raw, dict):
                raise AnnotationError(f"{path}: expected a JSON object {{template: id}}, got {type(raw).__name__}")
            ids = {}
            for template, value in raw.items():
                # SSv2 stores ids as strings ("0"); accept ints as well.
                try:
                    ids[template] = int(value)
                except (TypeError, ValueError):
                    raise AnnotationError(f"{path}, key {template!r}: expected a class id like \"12\", got {value!r}") from None
            self._ids_cache = _check_ids(ids, path)
        return self._ids_cache

    def info(self) -> DatasetInfo:
        """Return the single head {"action": template names by class id}."""
        ids = self._class_ids()
        names = [""] * len(ids)
        for template, i in ids.items():
            names[i] = template
        return DatasetInfo(name=self.name, heads={"action": names})

    def _read_split(self, split: str) -> list[Sample]:
        path = self.files[split]
        entries = _read_json(path)
        if not isinstance(entries, list):
            raise AnnotationError(f"{path}: expected a JSON list of videos, got {type(entries).__name__}")
        ids: dict[str, int] | None = None  # read on first use: a test split needs no label file
        samples = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "id" not in entry:
                raise AnnotationError(f"{path}, entry {i}: expected an object with key 'id', got {entry!r:.120}")
            video_id = str(entry["id"])
            labels: dict[str, int] = {}
            if "template" in entry:
                if ids is None:
                    ids = self._class_ids()
                key = strip_brackets(entry["template"])
                if key not in ids:
                    close = difflib.get_close_matches(key, list(ids), n=1, cutoff=0.6)
                    hint = f"; closest label: {close[0]!r}" if close else ""
                    raise AnnotationError(
                        f"{path}, video {video_id}: template {entry['template']!r} is not in the label file "
                        f"{self.files['labels']} (looked up as {key!r}){hint}"
                    )
                labels["action"] = ids[key]
            elif split != "test":
                raise AnnotationError(f"{path}, video {video_id}: no 'template' key, needed for a labelled split ('{split}')")
            samples.append(
                Sample(
                    id=video_id,
                    video_id=video_id,
                    start_frame=1,
                    stop_frame=WHOLE_VIDEO,
                    labels=labels,
                    narration=entry.get("label"),
                )
            )
        return samples


class SomethingElseReader(SSv2Reader):
    """Something-Else compositional / few-shot splits (SSv2 videos, split JSONs of SSv2's schema).

    `labels` is `{template: int}`. By default (`label_ids="sorted"`) the class id of a template
    is its index in `sorted(labels)` and the file's values are ignored, exactly as the authors'
    loader does, so ids match their checkpoints. `label_ids="file"` uses the file's values.
    The optional `boxes` file (annotations.json) is for the layout store, not read here.
    """

    name = "something_else"
    other_keys = ("labels", "boxes")

    def __init__(self, files: dict[str, str | Path], label_ids: str = "sorted"):
        if label_ids not in ("sorted", "file"):
            raise AnnotationError(f"something_else reader: label_ids must be 'sorted' or 'file', got {label_ids!r}")
        super().__init__(files)
        self.label_ids = label_ids

    @classmethod
    def from_config(cls, cfg: Config) -> AnnotationReader:
        return cls({k: resolve_path(cfg, v) for k, v in cfg.data.files.items()}, label_ids=cfg.data.label_ids)

    def _class_ids(self) -> dict[str, int]:
        if not hasattr(self, "_ids_cache"):
            path = self._require("labels")
            raw = _read_json(path)
            if not isinstance(raw, dict):
                raise AnnotationError(f"{path}: expected a JSON object {{template: id}}, got {type(raw).__name__}")
            if self.label_ids == "sorted":
                ids = {template: i for i, template in enumerate(sorted(raw))}
            else:
                ids = {}
                for template, value in raw.items():
                    if not isinstance(value, int) or isinstance(value, bool):
                        raise AnnotationError(f"{path}, key {template!r}: expected an integer class id, got {value!r}")
                    ids[template] = value
            self._ids_cache = _check_ids(ids, path)
        return self._ids_cache


def _check_ids(ids: dict[str, int], path: Path) -> dict[str, int]:
    """Return `ids` if its values are exactly 0..N-1; else raise naming the file."""
    if sorted(ids.values()) != list(range(len(ids))):
        seen: dict[int, str] = {}
        for template, i in ids.items():
            if i in seen:
                raise AnnotationError(f"{path}: class id {i} is used by both {seen[i]!r} and {template!r}")
            seen[i] = template
        bad = sorted(i for i in ids.values() if not 0 <= i < len(ids))
        raise AnnotationError(f"{path}: class ids must be 0..{len(ids) - 1}, found {bad}")
    return ids


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


READERS: dict[str, type[AnnotationReader]] = {
    "epic100": Epic100Reader,
    "ssv2": SSv2Reader,
    "something_else": SomethingElseReader,
}


def build_reader(cfg: Config) -> AnnotationReader:
    """Return the annotation reader named by `cfg.data.reader`, reading `cfg.data.files`."""
    name = cfg.data.reader
    if name not in READERS:
        raise AnnotationError(f"config key 'data.reader': unknown reader {name!r}; valid readers: {', '.join(READERS)}")
    return READERS[name].from_config(cfg)
