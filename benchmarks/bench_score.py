"""Scoring speed: score.py on 1080p frames vs scikit-image's own functions.

Frames: the real GNR638 1920x1080 pairs (`--frames` copies; with --samples or
../shared), predictions = bicubic of the LR plus a little noise (so no frame
scores 100 dB). Both sides compute the same figures: both protocols
(competition: RGB PSNR + 40 * scikit-image SSIM; paper: Y, 4 px shaved,
Gaussian SSIM) for the prediction and for the bicubic line.
- baseline: skimage.metrics (peak_signal_noise_ratio, structural_similarity)
  and skimage.color.rgb2ycbcr in a plain loop, in this process;
- score.py as a user runs it: one subprocess, start-up included, and the time
  each further frame adds (a run on one frame subtracted).
Prints seconds per frame for each and their ratio, and checks that the two
agree (to 1e-6 dB and 1e-6 SSIM).

    python benchmarks/bench_score.py --frames 6
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import REPO, machine, sample_dir


def reference_scores(sr, hr, scale=4):
    """Both protocols with scikit-image alone (float64)."""
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    s, h = sr / 255.0, hr / 255.0
    psnr = peak_signal_noise_ratio(h, s, data_range=1)
    ssim = structural_similarity(h, s, data_range=1, channel_axis=2)
    c = scale
    ys, yh = (rgb2ycbcr(x)[c:-c, c:-c, 0] / 255 for x in (sr, hr))
    return {"psnr": psnr, "ssim": ssim, "score": psnr + 40 * ssim,
            "psnr_y": peak_signal_noise_ratio(yh, ys, data_range=1),
            "ssim_y": structural_similarity(yh, ys, data_range=1, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--samples", default="")
    args = parser.parse_args()
    from srx4.image.codec import read_image, write_png
    from srx4.image.scoring import bicubic_prediction
    source = sample_dir(args.samples)
    pairs = sorted((source / "hr").glob("*.png"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = []
        for k in range(args.frames):
            pair = pairs[k % len(pairs)]
            name = f"{k:05d}.png"
            hr, lr = read_image(pair), read_image(source / "lr" / pair.name)
            sr = np.clip(bicubic_prediction(lr, 4).astype(int) + rng.integers(-2, 3, hr.shape), 0, 255).astype(np.uint8)
            for folder, img in (("hr", hr), ("lr", lr), ("pred", sr)):
                write_png(tmp / folder / name, img)
            frames.append((name, sr, hr, lr))

        start = time.perf_counter()
        reference = {}
        for name, sr, hr, lr in frames:
            reference[name] = reference_scores(sr, hr)
            reference_scores(bicubic_prediction(lr, 4), hr)            # the bicubic line
        baseline = (time.perf_counter() - start) / len(frames)

        def run_score(folder):
            start = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "src" / "score.py"), folder, "--hr", tmp / "hr",
                            "--output", tmp / "scores.csv", "--quiet", "--device", "cpu"], check=True,
                           capture_output=True)
            return time.perf_counter() - start

        write_png(tmp / "one" / frames[0][0], frames[0][1])
        start_up = run_score(tmp / "one")                 # one frame: start-up plus one frame
        whole = run_score(tmp / "pred")
        ours = whole / len(frames)
        steady = (whole - start_up) / max(1, len(frames) - 1)
        table = pd.read_csv(tmp / "scores.csv").set_index("id")
        worst = max(abs(table.loc[name, k] - v) for name, r in reference.items() for k, v in r.items())
    print(f"machine: {machine()}")
    print(f"{args.frames} frames 1920x1080, both protocols + bicubic line")
    print(f"scikit-image loop: {baseline:.2f} s/frame")
    print(f"score.py (whole process, start-up included): {ours:.2f} s/frame   ratio {baseline / ours:.2f}x")
    print(f"score.py (each further frame): {steady:.2f} s/frame   ratio {baseline / steady:.2f}x")
    print(f"largest difference from scikit-image: {worst:.1e}")
    assert worst < 1e-6, worst


if __name__ == "__main__":
    main()
