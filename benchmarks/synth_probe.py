"""Linear probes on the synthetic dataset: which modality tells the verb, which the noun?

Renders a synthetic dataset in memory (`egodistill.synth.render_video`), turns every
segment into a crude per-modality feature vector, fits a multinomial logistic regression per
modality and head on the training split and prints validation top-1 (verb, noun, action) per
modality and for the sum of their logits (a naive ensemble). This checks the generator's design
(docs/synthetic.md: motion and sound tell the verb, appearance the noun) before any network is
trained; the numbers are not those of the trained models.

    python benchmarks/synth_probe.py [--seed 0] [--videos 48]

Features (8 frames spread over each segment): rgb = the frames at 16x16 and a colour histogram
of the middle frame's centre; flow = OpenCV
Farneback flow between frames 2 apart at 8x8 (as `prepare flow` computes flow from RGB);
audio = a 32-band log spectrum (mean and std over time); layout = the hand box and the
highest-scoring object box per frame, relative to the first frame.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from egodistill.synth import SynthConfig, plan_dataset, render_video


def segment_features(cfg: SynthConfig, video, frames, dets, audio, seg, t: int = 8) -> dict[str, np.ndarray]:
    """Return {modality: 1-D float32 feature vector} for one segment."""
    idx = np.linspace(seg.start_frame - 1, seg.stop_frame - 1, t).round().astype(int)
    rgb = np.stack([cv2.resize(frames[i], (16, 16), interpolation=cv2.INTER_AREA) for i in idx]) / 255.0
    # Appearance without position: a joint colour histogram of the middle frame's centre.
    h, w = frames.shape[1:3]
    centre = frames[idx[t // 2], h // 6: h - h // 6, w // 6: w - w // 6]
    hist = cv2.calcHist([centre], [0, 1, 2], None, [6, 6, 6], [0, 256] * 3).ravel()
    hist = np.sqrt(hist / hist.sum())
    flows = []
    for i in idx:
        j = min(i + 2, video.num_frames - 1)
        a = cv2.cvtColor(frames[max(0, j - 2)], cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(frames[j], cv2.COLOR_RGB2GRAY)
        f = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 3, 5, 1.1, 0)
        f -= np.median(f.reshape(-1, 2), axis=0)  # discount the camera's global motion
        flows.append(cv2.resize(f, (8, 8), interpolation=cv2.INTER_AREA))
    sr = cfg.sample_rate
    x = audio[round((seg.start_frame - 1) / cfg.fps * sr): round(seg.stop_frame / cfg.fps * sr)]
    hop, n_fft = 128, 512
    frames_a = np.lib.stride_tricks.sliding_window_view(np.pad(x, n_fft // 2), n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames_a, axis=1)) ** 2
    edges = np.geomspace(100, sr / 2, 33)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    logmel = np.log(bands + 1e-8)
    boxes = []
    for i in idx:
        entry = dets["frames"].get(str(i + 1), {"hands": [], "objects": []})
        hand = entry["hands"][0]["box"] if entry["hands"] else [0, 0, 0, 0]
        obj = entry["objects"][0]["box"] if entry["objects"] else [0, 0, 0, 0]
        boxes.append(hand + obj)
    boxes = np.array(boxes)
    boxes = np.concatenate([boxes, boxes - boxes[:1]], 1)
    return {
        "rgb": np.concatenate([rgb.ravel(), hist]), "flow": np.stack(flows).ravel(),
        "audio": np.concatenate([logmel.mean(0), logmel.std(0)]), "layout": boxes.ravel(),
    }


def fit_predict(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, classes: int, wd: float = 1e-2) -> np.ndarray:
    """Return validation logits [N_val, classes] of an L2-regularised logistic regression."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = torch.tensor((xtr - mu) / sd, dtype=torch.float32)
    b = torch.tensor((xva - mu) / sd, dtype=torch.float32)
    y = torch.tensor(ytr)
    lin = torch.nn.Linear(a.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(a), y) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return torch.log_softmax(lin(b), 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=48)
    args = parser.parse_args()
    cfg = SynthConfig(seed=args.seed, num_videos=args.videos)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    feats: dict[str, dict[str, list]] = {"train": {}, "validation": {}}
    labels: dict[str, dict[str, list]] = {s: {"verb": [], "noun": []} for s in feats}
    for video in plan_dataset(cfg):
        frames, dets, audio = render_video(cfg, video)
        for seg in video.segments:
            for m, f in segment_features(cfg, video, frames, dets, audio, seg).items():
                feats[video.split].setdefault(m, []).append(f)
            labels[video.split]["verb"].append(seg.label_verb)
            labels[video.split]["noun"].append(seg.noun)
    n_tr, n_va = len(labels["train"]["verb"]), len(labels["validation"]["verb"])
    print(f"seed {args.seed}: {n_tr} train / {n_va} validation segments, features in {time.perf_counter() - t0:.1f} s")
    yv = {s: np.array(labels[s]["verb"]) for s in feats}
    yn = {s: np.array(labels[s]["noun"]) for s in feats}
    rows, total = [], {"verb": 0.0, "noun": 0.0}
    for m in ("rgb", "flow", "audio", "layout"):
        xtr, xva = np.array(feats["train"][m]), np.array(feats["validation"][m])
        lv = fit_predict(xtr, yv["train"], xva, cfg.num_verbs)
        ln = fit_predict(xtr, yn["train"], xva, cfg.num_nouns)
        total["verb"] = total["verb"] + lv
        total["noun"] = total["noun"] + ln
        rows.append((m, lv, ln))
    rows.append(("sum of all", total["verb"], total["noun"]))
    print(f"{'probe':<12}{'verb':>8}{'noun':>8}{'action':>8}")
    for name, lv, ln in rows:
        v, n = lv.argmax(1) == yv["validation"], ln.argmax(1) == yn["validation"]
        print(f"{name:<12}{100 * v.mean():8.1f}{100 * n.mean():8.1f}{100 * (v & n).mean():8.1f}")


if __name__ == "__main__":
    main()
