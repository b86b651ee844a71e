"""Score predictions against HR images: PSNR, SSIM and the GNR638 score locally.

In:  a submission CSV or a folder of predicted PNGs; --hr the ground-truth HR
     folder (default: the demo's test HR); --lr the LR folder, to also score
     MATLAB-bicubic upsampling of the same images (default: beside --hr).
Out: per-image and mean PSNR, SSIM, score = PSNR + 40 * SSIM (RGB, range [0, 1],
     SSIM as scikit-image computes it on colour images); the worst five; a
     per-image CSV (--output, default beside the input).

    python src/score.py submissions/submission.csv
    python src/score.py submissions/demo/png --hr data/demo/test/hr
    python src/score.py preds/ --hr Set5/HR --y-channel --crop 4   # the benchmark form
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from srx4 import paths
from srx4.checkpoint import write_csv
from srx4.config import option, parse_config
from srx4.images import ImageError, list_images, read_image, to_tensor
from srx4.imresize import resize_tensor
from srx4.metrics import competition_score, psnr, ssim, ssim_skimage
from srx4.submission import SubmissionError, iter_rows


@dataclass
class ScoreConfig:
    predictions: str = option("", "submission CSV or folder of predicted PNGs")
    hr: str = option("", "ground-truth HR folder (default: the demo's test HR)")
    lr: str = option("", "LR folder for the bicubic comparison (default: lr/ beside --hr, if there)")
    y_channel: bool = option(False, "score the Y channel (BT.601) as the SR papers do")
    crop: int = option(0, "pixels shaved from each border (the papers use the scale)")
    output: str = option("", "per-image CSV (default: <predictions>_scores.csv)")


def image_scores(sr: np.ndarray, hr: np.ndarray, y_channel: bool, crop: int) -> dict:
    sr_t, hr_t = to_tensor(sr, torch.float64), to_tensor(hr, torch.float64)
    p = psnr(sr_t, hr_t, crop, y_channel).clamp(max=100).item()
    s = ssim_skimage(sr_t, hr_t, crop, y_channel).item()
    return {"psnr": p, "ssim": s, "score": competition_score(p, s),
            "ssim_gaussian": ssim(sr_t, hr_t, crop, y_channel).item()}


def predictions(source: Path):
    """Yield (name, uint8 image) from a CSV or a PNG folder."""
    if source.is_dir():
        for path in list_images(source):
            yield path.name, read_image(path)
    else:
        yield from iter_rows(source)


def find_hr(hr_dir: Path, name: str) -> Path:
    for candidate in [hr_dir / name] + sorted(hr_dir.glob(Path(name).stem + ".*")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{hr_dir}: no HR image for {name}")


def main(argv=None):
    config = parse_config(ScoreConfig, "Score predictions against HR images.", argv, positional="predictions")
    source = Path(config.predictions)
    hr_dir = Path(config.hr) if config.hr else paths.demo_dir() / "test" / "hr"
    lr_dir = Path(config.lr) if config.lr else hr_dir.parent / "lr"
    grey = config.y_channel  # the benchmark form scores grey images on their own grey values
    rows = []
    try:
        if not source.exists():
            raise FileNotFoundError(f"{source}: not found")
        for name, sr in predictions(source):
            hr_path = find_hr(hr_dir, name)
            hr = read_image(hr_path, keep_grey=grey)
            if hr.ndim == 2:
                sr = sr[:, :, 0] if sr.ndim == 3 else sr
            if sr.shape != hr.shape:
                raise SubmissionError(f"{name}: prediction {sr.shape[1]}x{sr.shape[0]} vs HR {hr.shape[1]}x{hr.shape[0]}")
            row = {"id": name, **image_scores(sr, hr, config.y_channel, config.crop)}
            lr_path = lr_dir / hr_path.name
            if lr_path.is_file():
                lr = to_tensor(read_image(lr_path, keep_grey=grey), torch.float64)
                scale = hr.shape[0] // lr.shape[1]
                bicubic = (resize_tensor(lr[None], scale)[0].clamp(0, 1) * 255).round().byte()
                bicubic = bicubic[0].numpy() if hr.ndim == 2 else bicubic.permute(1, 2, 0).numpy()
                row.update({f"bicubic_{k}": v for k, v in image_scores(bicubic, hr, config.y_channel, config.crop).items()})
            rows.append(row)
    except (FileNotFoundError, ImageError, SubmissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not rows:
        print(f"error: {source}: no predictions to score", file=sys.stderr)
        return 1
    form = f"{'Y' if config.y_channel else 'RGB'}, crop {config.crop}"
    print(f"{len(rows)} images ({form})")
    for r in sorted(rows, key=lambda r: r["score"])[:5]:
        print(f"  worst: {r['id']:<30} PSNR {r['psnr']:.3f}  SSIM {r['ssim']:.4f}  score {r['score']:.3f}")
    for prefix, label in (("", "model"), ("bicubic_", "bicubic")):
        if all(f"{prefix}psnr" in r for r in rows):
            mean = {k: float(np.mean([r[f"{prefix}{k}"] for r in rows])) for k in ("psnr", "ssim", "score")}
            print(f"{label:>8}: PSNR {mean['psnr']:.3f} dB  SSIM {mean['ssim']:.4f}  score {mean['score']:.3f}")
    out = Path(config.output) if config.output else source.parent / f"{source.stem}_scores.csv"
    write_csv(out, rows, list(rows[0]))
    print(f"per-image scores: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
