"""The soundtrack: kitchen ambience, other activity, and each action's sound (the verb's carrier
and pattern, the material's resonance); WAV writing."""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

from egodistill.atomic import atomic_path
from egodistill.synth.config import SynthConfig
from egodistill.synth.plan import VideoPlan
from egodistill.synth.scene import Kitchen
from egodistill.synth.vocab import MATERIALS, VERB_POOL, noun_parts


def verb_frequencies(cfg: SynthConfig) -> np.ndarray:
    """Return the carrier frequency in Hz of each verb class [num_verbs] (geometric spacing).

    The carrier is where a verb's sound has its spectral peak; spacing is wide (>= 30 %)
    compared with the per-segment pitch jitter, so the peak identifies the verb.
    """
    lo, hi = 300.0, min(5000.0, 0.4 * cfg.sample_rate)
    return lo * (hi / lo) ** (np.arange(cfg.num_verbs) / max(1, cfg.num_verbs - 1))


def _band_noise(rng: np.random.Generator, n: int, sr: int, f: np.ndarray | float, width: float) -> np.ndarray:
    """Return unit-rms noise [n] band-limited to f*(1 +- width/2) (f may vary in time: its mean is used)."""
    fc = float(np.mean(f))
    spec = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[np.abs(freqs - fc) > fc * width / 2] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-9)


def _ping(n: int, sr: int, at: float, f: float, decay: float) -> np.ndarray:
    """Return [n] samples with a decaying sine at f Hz starting at second `at` (decay in s)."""
    t = np.arange(n) / sr - at
    return np.where(t >= 0, np.sin(2 * np.pi * f * t) * np.exp(-np.maximum(t, 0) / decay), 0.0)


def _event_sound(kind: str, n: int, sr: int, f: float, mat_f: float, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Return the unit-peak sound [n] of one action: pattern by verb, carrier f, material mode mat_f."""
    dur = n / sr
    t = np.arange(n) / sr
    u = t / dur
    env = np.sin(np.pi * np.clip(u, 0, 1)) ** 0.5
    mat = min(mat_f, 0.45 * sr)

    def impact(at: float, decay: float = 0.08) -> np.ndarray:
        return _ping(n, sr, at, f, decay) + 0.35 * _ping(n, sr, at, mat, decay * 0.6)

    if kind == "lift":  # rising whoosh-tone
        inst = f * (0.9 + 0.2 * u)
        x = np.sin(2 * np.pi * np.cumsum(inst) / sr) * env
    elif kind == "put-down":  # a knock when it lands
        x = impact(0.8 * dur, 0.1) + 0.15 * _band_noise(rng, n, sr, f, 0.3) * env
    elif kind == "push":  # scraping, fast roughness
        x = _band_noise(rng, n, sr, f, 0.25) * env * (0.7 + 0.3 * np.sin(2 * np.pi * 12 * t))
    elif kind == "pull":  # scraping, slow roughness
        x = _band_noise(rng, n, sr, f, 0.25) * env * (0.6 + 0.4 * np.sin(2 * np.pi * 5 * t))
    elif kind == "rotate":  # a ratchet: clicks at 10 Hz
        x = sum(impact(a, 0.015) for a in np.arange(0.02, dur, 0.1))
    elif kind == "shake":  # rattling bursts, two per cycle
        bursts = np.abs(np.sin(2 * np.pi * p["cycles"] * u)) ** 4
        x = _band_noise(rng, n, sr, f, 0.3) * bursts
    elif kind == "open":  # a pop, then a squeak
        squeak = np.sin(2 * np.pi * f * t + 0.5 * np.sin(2 * np.pi * 6 * t)) * ((u > 0.25) & (u < 0.85))
        x = impact(0.1 * dur, 0.03) + 0.7 * squeak
    elif kind == "close":  # a squeak, then a click
        squeak = np.sin(2 * np.pi * f * t + 0.5 * np.sin(2 * np.pi * 6 * t)) * ((u > 0.1) & (u < 0.7))
        x = 0.7 * squeak + impact(0.85 * dur, 0.03)
    elif kind == "wipe":  # swishes in time with the hand
        x = _band_noise(rng, n, sr, f, 0.4) * np.abs(np.sin(2 * np.pi * p["cycles"] * u))
    elif kind == "cut":  # chops at each downstroke
        x = sum(impact(a * dur, 0.04) for a in (np.arange(int(p["cycles"])) + 0.5) / p["cycles"])
    elif kind == "stir":  # clinks as the spoon goes round
        x = sum(impact(a * dur, 0.12) for a in np.arange(int(p["cycles"])) / p["cycles"] + 0.05)
    else:
        raise ValueError(f"synth: no sound for verb kind {kind!r}")
    x = np.asarray(x, np.float64)
    x = x / (np.abs(x).max() + 1e-9)
    if p.get("ring", 0.0) > 0:  # the handled object's resonance under the whole action
        x = x + p["ring"] * _band_noise(rng, n, sr, mat, 0.08) * env / 1.5
        x = x / (np.abs(x).max() + 1e-9)
    return x


def render_audio(cfg: SynthConfig, plan: VideoPlan, seg_params: list[dict[str, Any]], kitchen: Kitchen,
                  rng: np.random.Generator) -> np.ndarray:
    """Return the video's mono waveform float32 [round(num_frames / fps * sample_rate)] in [-1, 1]."""
    sr = cfg.sample_rate
    n = int(round(plan.num_frames / cfg.fps * sr))
    t = np.arange(n) / sr
    # Kitchen ambience: mains hum with harmonics + broadband noise.
    x = sum(0.02 / k * np.sin(2 * np.pi * kitchen.hum_hz * k * t) for k in (1, 2, 3))
    x = x + cfg.audio_noise * rng.normal(size=n)
    freqs = verb_frequencies(cfg)
    # Other activity in the kitchen: action-like sounds (any verb's) that belong to no segment,
    # quieter than the wearer's own, at random times; plus beeps at random pitches.
    for _ in range(rng.poisson(cfg.audio_distractor_rate * n / sr)):
        kind = int(rng.integers(cfg.num_verbs))
        length = min(n, int(rng.uniform(0.3, 0.8) * sr))
        at = int(rng.integers(0, n - length + 1))
        p = {"cycles": float(rng.uniform(2.5, 3.5)), "ring": cfg.material_ring}
        ev = _event_sound(VERB_POOL[kind].key, length, sr, freqs[kind] * rng.uniform(0.95, 1.05),
                          MATERIALS[int(rng.integers(len(MATERIALS)))][3], p, rng)
        x[at:at + length] += cfg.audio_event_gain * rng.uniform(0.3, 0.8) * ev
        x += cfg.audio_event_gain * rng.uniform(0.1, 0.4) * _ping(n, sr, rng.uniform(0, n / sr), rng.uniform(200, 0.4 * sr), 0.05)
    for seg, p in zip(plan.segments, seg_params):
        a = int(round((seg.start_frame - 1) / cfg.fps * sr))
        b = min(n, int(round(seg.stop_frame / cfg.fps * sr)))
        mat_f = MATERIALS[noun_parts(seg.noun)[1]][3]
        ev = _event_sound(VERB_POOL[seg.verb].key, b - a, sr, freqs[seg.verb] * p["pitch"], mat_f,
                          {**p, "ring": cfg.material_ring}, rng)
        x[a:b] += p["gain"] * ev
    return np.clip(x, -1, 1).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float waveform `audio` [S] in [-1, 1] as a 16-bit mono WAV (temp file, then rename)."""
    pcm = (np.clip(audio, -1, 1) * 32767).round().astype("<i2")
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
