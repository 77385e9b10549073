"""A seeded synthetic egocentric dataset in the EPIC-KITCHENS-100 formats (`egodistill synth`).

Each video is a head-mounted camera over a participant's cluttered kitchen counter: the camera
drifts and shakes, a hand (with its forearm entering from the bottom edge) grasps one object
per action segment and moves it. The *verb* is the motion (lift, put-down, push, pull, rotate,
shake, open, close, wipe, cut, stir), the *noun* is the object's appearance (shape x material).
Modalities are complementary on purpose, as in real egocentric video (docs/synthetic.md):

* motion and sound tell the verb: each verb has its own trajectory (seen in optical flow and in
  the hand/object boxes) and its own sound (carrier frequency + temporal pattern);
* appearance tells the noun: shape and material colour/texture are plain in RGB; flow sees only
  the silhouette, layout only box size/aspect, audio only the material's resonance;
* RGB is noisy: ego-motion, shake, motion blur, defocus, lighting flicker, sensor noise, JPEG,
  background clutter and distractor objects; a single frame says little about the verb.

Everything is written through the `prepare` code, so the data travels the real pipeline:
JPEG frame folders -> `prepare_frames` -> rgb.h5; OpenCV flow from rgb.h5 -> flow.h5; one WAV
per video -> `prepare_audio` -> audio.h5; a hand-object detections JSON -> `prepare_layout`
-> layout.h5; EPIC-100 CSVs with the real 15-column header and class files.

    summary = generate(Path("synth"), SynthConfig(seed=0))

Frame f of a video (1-based, as EPIC's `frame_0000000001.jpg`) is at time (f - 1) / fps; the
audio sample of that time is at index round((f - 1) / fps * sample_rate).
"""
from __future__ import annotations

from egodistill.synth.annotations import ANNOTATION_FILES, UNLABELLED_FILE, tail_classes, write_annotations
from egodistill.synth.audio import verb_frequencies, write_wav
from egodistill.synth.config import SynthConfig
from egodistill.synth.generate import STORE_FILES, data_config, generate
from egodistill.synth.plan import SegmentPlan, VideoPlan, plan_dataset
from egodistill.synth.render import render_video
from egodistill.synth.vocab import (
    EPIC_HEADER,
    EPIC_UNLABELLED_HEADER,
    MATERIALS,
    MAX_NOUNS,
    SHAPES,
    VERB_POOL,
    VerbSpec,
    noun_key,
    noun_parts,
)

__all__ = [
    "ANNOTATION_FILES", "EPIC_HEADER", "EPIC_UNLABELLED_HEADER", "MATERIALS", "MAX_NOUNS", "SHAPES", "STORE_FILES",
    "UNLABELLED_FILE", "VERB_POOL", "SegmentPlan", "SynthConfig", "VerbSpec", "VideoPlan", "data_config", "generate",
    "noun_key", "noun_parts", "plan_dataset", "render_video", "tail_classes", "verb_frequencies", "write_annotations",
    "write_wav",
]
