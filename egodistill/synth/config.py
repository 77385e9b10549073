"""`SynthConfig`: every parameter of the generator."""
from __future__ import annotations

from dataclasses import dataclass

from egodistill.synth.vocab import MAX_NOUNS, VERB_POOL


@dataclass
class SynthConfig:
    """Every parameter of the generator; all difficulty knobs are here.

    Lengths in pixels are given as fractions of the frame's short side; amplitudes of sounds
    relative to full scale (1.0 = int16 maximum).
    """

    seed: int = 0
    # --- sizes and counts
    num_videos: int = 48
    num_participants: int = 6  # P01..Pk; the last one appears only in validation (unseen)
    # Extra videos of the seen participants whose segments are written without labels
    # (annotations/EPIC_100_unlabelled.csv, file key `unlabelled`), for distillation on unlabelled
    # clips. The labelled videos are the same whatever this number.
    num_unlabelled: int = 0
    val_fraction: float = 0.25  # of the seen participants' videos, for validation
    segments_per_video: int = 10
    frames_per_segment: int = 20  # mean; each segment's length varies by +-segment_jitter
    segment_jitter: float = 0.25
    gap_frames: tuple[int, int] = (4, 10)  # idle frames between segments (min, max)
    height: int = 64
    width: int = 64
    fps: float = 30.0
    num_verbs: int = 8  # the first num_verbs of VERB_POOL
    num_nouns: int = 12  # the first num_nouns of the shape x material grid (noun_parts)
    sample_rate: int = 16000
    class_imbalance: float = 0.6  # class frequency ~ (id + 1) ** -class_imbalance (long tail)
    label_noise: float = 0.0  # fraction of TRAINING segments whose verb label is another verb
    # --- RGB difficulty
    object_size: float = 0.34  # of the short side
    motion_amplitude: float = 0.30  # object displacement over a segment, of the short side
    camera_drift: float = 0.06  # slow ego-motion amplitude, of the short side
    camera_shake: float = 0.012  # per-frame jitter (std), of the short side
    motion_blur: float = 0.8  # blur length per pixel/frame of camera speed (0 = off)
    defocus: float = 0.7  # max Gaussian blur sigma in pixels, drawn per video
    noise_std: float = 8.0  # sensor noise std in 0..255 units
    light_variation: float = 0.2  # per-video brightness +- this fraction
    light_flicker: float = 0.06  # per-frame brightness flicker amplitude
    jpeg_quality: int = 80
    clutter: int = 10  # background blobs per kitchen
    distractors: int = 2  # static distractor objects on the counter (real nouns)
    # --- audio difficulty
    audio_noise: float = 0.06  # background noise rms
    audio_event_gain: float = 0.25  # peak amplitude of an action's sound (x U(0.6, 1))
    audio_distractor_rate: float = 0.6  # other activity's sounds per second (action-like + beeps)
    pitch_jitter: float = 0.05  # relative carrier jitter per segment
    # Handling an object excites its resonance all through the action (a faint ring at the
    # material's mode under the verb's sound), relative to the action sound's peak; 0 = only
    # the impacts of some verbs ring the material.
    material_ring: float = 0.0
    # --- detection noise (layout)
    box_jitter: float = 0.04  # std of box edge noise, of the box size
    det_miss: float = 0.05  # probability a box is missing in a frame
    # --- flow
    flow_stride: int = 2  # RGB frames per flow frame (EPIC: 2)

    def validate(self) -> None:
        """Raise ValueError naming the parameter that is out of range."""
        checks = [
            ("num_videos", self.num_videos >= 2, ">= 2"),
            ("num_participants", 2 <= self.num_participants <= 99, "2..99"),
            ("num_videos", self.num_videos >= self.num_participants, f">= num_participants ({self.num_participants})"),
            ("num_unlabelled", self.num_unlabelled >= 0, ">= 0"),
            ("segments_per_video", self.segments_per_video >= 1, ">= 1"),
            ("frames_per_segment", self.frames_per_segment >= 4, ">= 4"),
            ("segment_jitter", 0 <= self.segment_jitter < 1, "in [0, 1)"),
            ("gap_frames", 1 <= self.gap_frames[0] <= self.gap_frames[1], "(min, max) with 1 <= min <= max"),
            ("height", self.height >= 16, ">= 16"),
            ("width", self.width >= 16, ">= 16"),
            ("fps", self.fps > 0, "> 0"),
            ("num_verbs", 2 <= self.num_verbs <= len(VERB_POOL), f"2..{len(VERB_POOL)}"),
            ("num_nouns", 2 <= self.num_nouns <= MAX_NOUNS, f"2..{MAX_NOUNS}"),
            ("sample_rate", self.sample_rate >= 8000, ">= 8000"),
            ("val_fraction", 0 < self.val_fraction < 1, "in (0, 1)"),
            ("label_noise", 0 <= self.label_noise < 1, "in [0, 1)"),
            ("material_ring", 0 <= self.material_ring <= 1, "in [0, 1]"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "1..100"),
            ("det_miss", 0 <= self.det_miss < 1, "in [0, 1)"),
            ("flow_stride", self.flow_stride >= 1, ">= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"synth: parameter '{name}' = {getattr(self, name)!r}, expected {expected}")
        seen = self.num_videos - max(1, round(self.num_videos / self.num_participants))
        if seen < 2:
            raise ValueError(f"synth: num_videos={self.num_videos} leaves fewer than 2 videos of seen participants")

    @classmethod
    def tiny(cls, seed: int = 0) -> SynthConfig:
        """Return the settings for tests: 5 short videos of 32x32, builds in a couple of seconds."""
        return cls(
            seed=seed, num_videos=5, num_participants=3, segments_per_video=3, frames_per_segment=12,
            gap_frames=(2, 4), height=32, width=32, sample_rate=8000, num_verbs=4, num_nouns=4,
            clutter=4, distractors=1, class_imbalance=0.0,
        )
