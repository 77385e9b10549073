"""The EPIC-100 annotation CSVs of a planned dataset."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from egodistill.atomic import write_text
from egodistill.synth.config import SynthConfig
from egodistill.synth.plan import VideoPlan
from egodistill.synth.vocab import EPIC_HEADER, EPIC_UNLABELLED_HEADER, MATERIALS, SHAPES, VERB_POOL, noun_key, noun_parts


def _timestamp(seconds: float, decimals: int = 2) -> str:
    """Return EPIC's HH:MM:SS.ss (decimals=2) or HH:MM:SS.sss (3) for `seconds`."""
    scale = 10 ** decimals
    total = int(round(seconds * scale))
    h, rest = divmod(total, 3600 * scale)
    m, rest = divmod(rest, 60 * scale)
    s, frac = divmod(rest, scale)
    return f"{h:02d}:{m:02d}:{s:02d}.{frac:0{decimals}d}"


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Write `header` and `rows` to the CSV file `path` atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def tail_classes(counts: np.ndarray, share: float = 0.2) -> list[int]:
    """Return EPIC-style tail classes: the rarest classes that together hold at most `share` of
    the instances (at least the single rarest class), sorted by id."""
    order = np.argsort(-counts, kind="stable")  # most frequent first
    total = counts.sum()
    head, covered = [], 0
    for c in order:
        if covered >= (1 - share) * total:
            break
        head.append(int(c))
        covered += counts[c]
    tail = sorted(set(range(len(counts))) - set(head))
    return tail or [int(order[-1])]


def write_annotations(out: Path, cfg: SynthConfig, videos: list[VideoPlan]) -> dict[str, Any]:
    """Write the EPIC-100 annotation files under `out/annotations`; return counts per split."""
    ann = out / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[list[Any]]] = {"train": [], "validation": [], "unlabelled": []}
    verb_counts = np.zeros(cfg.num_verbs, np.int64)
    noun_counts = np.zeros(cfg.num_nouns, np.int64)
    for v in videos:
        for s in v.segments:
            verb_key, nkey = VERB_POOL[s.label_verb].key, noun_key(s.noun)
            start_t = (s.start_frame - 1) / cfg.fps
            if v.split == "unlabelled":  # as EPIC's test timestamps: no narration, no labels
                rows["unlabelled"].append([s.narration_id, v.participant, v.video_id, _timestamp(start_t),
                                           _timestamp((s.stop_frame - 1) / cfg.fps), s.start_frame, s.stop_frame])
                continue
            rows[v.split].append([
                s.narration_id, v.participant, v.video_id, _timestamp(start_t + 0.1, 3), _timestamp(start_t),
                _timestamp((s.stop_frame - 1) / cfg.fps), s.start_frame, s.stop_frame, f"{verb_key} {nkey}",
                verb_key, s.label_verb, nkey, s.noun, f"['{nkey}']", f"[{s.noun}]",
            ])
            if v.split == "train":
                verb_counts[s.label_verb] += 1
                noun_counts[s.noun] += 1
    _write_csv(ann / "EPIC_100_train.csv", EPIC_HEADER, rows["train"])
    _write_csv(ann / "EPIC_100_validation.csv", EPIC_HEADER, rows["validation"])
    if cfg.num_unlabelled:
        _write_csv(ann / "EPIC_100_unlabelled.csv", EPIC_UNLABELLED_HEADER, rows["unlabelled"])
    cls_header = ["id", "key", "instances", "category"]
    _write_csv(ann / "EPIC_100_verb_classes.csv", cls_header, [
        [i, VERB_POOL[i].key, str(list(VERB_POOL[i].instances)), VERB_POOL[i].category] for i in range(cfg.num_verbs)
    ])
    noun_rows = []
    for i in range(cfg.num_nouns):
        s, m = noun_parts(i)
        noun_rows.append([i, noun_key(i), str([noun_key(i), f"{MATERIALS[m][0]}:{SHAPES[s][0]}"]), SHAPES[s][1]])
    _write_csv(ann / "EPIC_100_noun_classes.csv", cls_header, noun_rows)
    tail_v, tail_n = tail_classes(verb_counts), tail_classes(noun_counts)
    _write_csv(ann / "EPIC_100_tail_verbs.csv", ["verb"], [[c] for c in tail_v])
    _write_csv(ann / "EPIC_100_tail_nouns.csv", ["noun"], [[c] for c in tail_n])
    unseen = sorted({v.participant for v in videos if v.index == cfg.num_participants - 1})
    _write_csv(ann / "EPIC_100_unseen_participant_ids_validation.csv", ["participant_id"], [[p] for p in unseen])
    return {
        "train_segments": len(rows["train"]), "validation_segments": len(rows["validation"]),
        "train_videos": sum(v.split == "train" for v in videos),
        "validation_videos": sum(v.split == "validation" for v in videos),
        "unlabelled_segments": len(rows["unlabelled"]),
        "unlabelled_videos": sum(v.split == "unlabelled" for v in videos),
        "tail_verbs": tail_v, "tail_nouns": tail_n, "unseen_participants": unseen,
        "train_verb_counts": verb_counts.tolist(), "train_noun_counts": noun_counts.tolist(),
    }


ANNOTATION_FILES = {
    "train": "annotations/EPIC_100_train.csv",
    "validation": "annotations/EPIC_100_validation.csv",
    "verb_classes": "annotations/EPIC_100_verb_classes.csv",
    "noun_classes": "annotations/EPIC_100_noun_classes.csv",
    "tail_verbs": "annotations/EPIC_100_tail_verbs.csv",
    "tail_nouns": "annotations/EPIC_100_tail_nouns.csv",
    "unseen_participants": "annotations/EPIC_100_unseen_participant_ids_validation.csv",
}
#: written when SynthConfig.num_unlabelled > 0: segments without labels (EPIC test-timestamps columns)
UNLABELLED_FILE = "annotations/EPIC_100_unlabelled.csv"
