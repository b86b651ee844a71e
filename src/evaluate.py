"""Benchmark a model the way the SR papers do: PSNR / SSIM on Y, border = scale.

In:  --weights FILE_OR_RUN_DIR (or --model bicubic); --data one or more benchmark
     folders, each with HR/ and LR_x4/ (or HR/ alone: LR is then made with the
     MATLAB-compatible resize). Grey images are scored on their own grey values.
Out: a table per set with the bicubic row beside the model's, printed and
     written as CSV and Markdown (--output, default logs/eval/<model>).

    python src/evaluate.py --model bicubic --data ../shared/benchmarks/Set5 ../shared/benchmarks/Set14
    python src/evaluate.py --weights logs/srresnet_a --data ../shared/benchmarks/Set5 --tta
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from srx4 import paths
from srx4.checkpoint import WeightsError, atomic_write_text, load_model, write_csv
from srx4.config import option, parse_config
from srx4.images import list_images, read_image, to_tensor
from srx4.imresize import imresize, modcrop
from srx4.infer import resolve_device, super_resolve
from srx4.metrics import psnr, ssim
from srx4.models import Bicubic


@dataclass
class EvaluateConfig:
    weights: str = option("", "weights file or run folder")
    model: str = option("", "'bicubic' to evaluate the baseline alone", choices=["", "bicubic"])
    data: list = option([], "benchmark folders (each with HR/ and LR_x<scale>/ or HR/ alone)")
    scale: int = option(4, "scale (weights carry their own)")
    tta: bool = option(False, "x8 self-ensemble")
    device: str = option("auto", "auto, cpu or cuda")
    output: str = option("", "folder for table.csv and table.md (default: logs/eval/<name>)")


def load_pair(hr_path: Path, lr_dir: Path, scale: int):
    """(lr, hr) uint8; grey images stay (H, W). LR from the folder, else MATLAB-resized."""
    hr = modcrop(read_image(hr_path, keep_grey=True), scale)
    lr_path = lr_dir / hr_path.name
    lr = read_image(lr_path, keep_grey=True) if lr_path.is_file() else imresize(hr, 1 / scale)
    return lr, hr


def run_model(model, lr, device, tta: bool):
    """uint8 LR (H, W[, 3]) -> float64 SR (C, sH, sW) in [0, 1], rounded to 8 bits like a saved PNG.
    A grey image goes through the model as RGB and comes back as the mean of its channels."""
    x = to_tensor(lr).to(device)                                             # (1 or 3, H, W)
    x = x.expand(3, -1, -1)                                                  # (3, H, W)
    sr = super_resolve(model, x[None].contiguous(), amp=False, tta=tta)[0].clamp(0, 1).cpu()
    sr = sr.double().mean(0, keepdim=True) if lr.ndim == 2 else sr.double()   # grey back to one channel
    return (sr * 255).round() / 255


def evaluate_set(models: dict, folder: Path, scale: int, device, tta: bool):
    """{model name: (mean PSNR, mean SSIM)} on one benchmark folder, Y channel, crop = scale."""
    hr_dir, lr_dir = folder / "HR", folder / f"LR_x{scale}"
    if not hr_dir.is_dir():
        raise FileNotFoundError(f"{hr_dir}: no HR folder")
    results = {name: [] for name in models}
    for hr_path in list_images(hr_dir):
        lr, hr = load_pair(hr_path, lr_dir, scale)
        hr_t = to_tensor(hr, torch.float64)
        for name, model in models.items():
            sr = run_model(model, lr, device, tta and name != "bicubic")
            results[name].append((psnr(sr, hr_t, scale, True).item(), ssim(sr, hr_t, scale, True).item()))
    return {name: (sum(p for p, _ in r) / len(r), sum(s for _, s in r) / len(r), len(r)) for name, r in results.items()}


def main(argv=None):
    config = parse_config(EvaluateConfig, "Benchmark PSNR/SSIM on Y with border = scale.", argv)
    device = resolve_device(config.device)
    try:
        if not config.data:
            raise FileNotFoundError("--data: give one or more benchmark folders (HR/ and LR_x4/)")
        models, name, scale = {"bicubic": Bicubic(config.scale).to(device)}, "bicubic", config.scale
        if config.model != "bicubic":
            if not config.weights:
                raise WeightsError("--weights or --model bicubic is required")
            model, model_config = load_model(config.weights, device=device)
            scale = model.scale
            models = {"bicubic": Bicubic(scale).to(device), "model": model}
            name = Path(config.weights).stem if Path(config.weights).is_file() else Path(config.weights).name
        rows = []
        for folder in map(Path, config.data):
            for label, (p, s, n) in evaluate_set(models, folder, scale, device, config.tta).items():
                rows.append({"set": folder.name, "model": name if label == "model" else "bicubic",
                             "images": n, "psnr_y": round(p, 3), "ssim_y": round(s, 4)})
    except (FileNotFoundError, WeightsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lines = ["| set | model | images | PSNR (Y, dB) | SSIM (Y) |", "|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['model']}{' +TTA' if config.tta and r['model'] != 'bicubic' else ''} | "
              f"{r['images']} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} |" for r in rows]
    table = "\n".join(lines)
    print(f"x{scale}, Y channel (BT.601), {scale} px border shaved\n{table}")
    out_dir = Path(config.output) if config.output else paths.logs_dir() / "eval" / name
    write_csv(out_dir / "table.csv", rows, list(rows[0]))
    atomic_write_text(out_dir / "table.md", table + "\n")
    print(f"written: {out_dir}/table.csv, table.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
