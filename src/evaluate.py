"""Benchmark a model the way the SR papers do: the paper protocol of `srx4/image/scoring.py`
(PSNR / SSIM on Y of BT.601, `scale` pixels shaved, 11x11 Gaussian SSIM).

In:  --weights (predict.py's rule: run folders, files or shipped names; default the run
     train.py finished last, else the shipped weights) or --model bicubic; --data one or more benchmark
     folders, each with HR/ and LR_x4/ (or HR/ alone: LR is then made with the
     MATLAB-compatible resize). A bare name (Set5, Set14) is one of the sets
     shipped under benchmarks/. Grey images are scored on their own grey values
     (the grey rule in scoring.py).
Out: a table per set with the bicubic row beside the model's, printed and
     written as CSV and Markdown, every image's figures in images.csv, and
     report.html (the tables, every image by gain over bicubic, crops of the
     images where the model gains least and most) (--output, default
     logs/eval/<model>).

    python src/evaluate.py --model bicubic --data Set5 Set14
    python src/evaluate.py --weights logs/srresnet_a --data Set5 Set14 --tta
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from srx4.core import paths
from srx4.core.io import atomic_write_text
from srx4.core.errors import JobFailed, MissingData
from srx4.core.cli import option, parse_config, run_main
from srx4.image.codec import list_images, read_image
from srx4.image.resize import imresize, modcrop
from srx4.predict.choose import WEIGHTS_HELP, load_predictor
from srx4.predict.folder import Options, predict_images
from srx4.core.system import resolve_device
from srx4.core.progress import progress
from srx4.runs.eval_report import markdown, set_table, write_page
from srx4.runs.html import Cases, case_crops
from srx4.image.scoring import PAPER, bicubic_prediction, score_images

SHIPPED_SETS = paths.REPO / "benchmarks"


@dataclass
class EvaluateConfig:
    weights: list = option([], WEIGHTS_HELP)
    model: str = option("", "'bicubic' to evaluate the baseline alone", choices=["", "bicubic"])
    data: list = option([], "benchmark folders (each with HR/ and LR_x<scale>/ or HR/ alone), or Set5 / Set14")
    scale: int = option(4, "scale (weights carry their own)")
    tta: bool = option(False, "x8 self-ensemble")
    device: str = option("auto", "auto, cpu or cuda")
    output: str = option("", "folder for table.csv, table.md and images.csv (default: logs/eval/<name>)")
    quiet: bool = option(False, "no progress bar")


def benchmark_folder(name: str) -> Path:
    """A folder as given, else a set shipped under benchmarks/ (Set5, Set14)."""
    folder = Path(name)
    if not folder.is_dir() and (SHIPPED_SETS / name / "HR").is_dir():
        return SHIPPED_SETS / name
    if not (folder / "HR").is_dir():
        shipped = sorted(p.name for p in SHIPPED_SETS.iterdir() if (p / "HR").is_dir())
        raise MissingData(f"{folder / 'HR'}: no HR folder (shipped sets: {', '.join(shipped)})")
    return folder


def load_pair(hr_path: Path, lr_dir: Path, scale: int):
    """(lr, hr) uint8; grey images stay (H, W). LR from the folder, else MATLAB-resized."""
    hr = modcrop(read_image(hr_path, keep_grey=True), scale)
    lr_path = lr_dir / hr_path.name
    lr = read_image(lr_path, keep_grey=True) if lr_path.is_file() else imresize(hr, 1 / scale)
    return lr, hr


def run_model(model, lr, device, tta: bool):
    """uint8 LR (H, W[, 3]) -> uint8 SR (sH, sW, 3), as predict.py writes it but in fp32
    (the papers' protocol). A grey image goes through the model as three equal channels."""
    rgb = np.repeat(lr[..., None], 3, axis=2) if lr.ndim == 2 else lr       # (H, W, 3)
    sr = predict_images(model, [rgb], Options(tta=tta, amp=False), device)[0]
    if sr is None:
        raise JobFailed("the model's output has NaN or inf values: are the weights broken?")
    return sr


def evaluate_set(model, folder: Path, scale: int, device, tta: bool, quiet: bool, cases: Cases = None) -> list:
    """One row per image: set, image, psnr_y and ssim_y for bicubic and (if any) the model;
    the model's gain over bicubic offered to `cases` for the report."""
    lr_dir = folder / f"LR_x{scale}"
    rows = []
    for hr_path in progress(list_images(folder / "HR"), desc=folder.name, unit="img", quiet=quiet, leave=False):
        lr, hr = load_pair(hr_path, lr_dir, scale)
        predictions = [bicubic_prediction(lr, scale)] + ([run_model(model, lr, device, tta)] if model else [])
        scored = score_images(predictions, hr, [PAPER], scale)
        for label, scores in zip(("bicubic", "model"), scored):
            rows.append({"set": folder.name, "image": hr_path.name, "model": label, **scores})
        if model and cases is not None:
            cases.offer(f"{folder.name}/{hr_path.name}", scored[1]["psnr_y"] - scored[0]["psnr_y"],
                        lambda focus, a=(lr, *predictions, hr, scale): case_crops(*a, focus=focus), **scored[1])
    return rows


def main(argv=None):
    config = parse_config(EvaluateConfig, "Benchmark PSNR/SSIM on Y with border = scale.", argv)
    device = resolve_device(config.device)
    if not config.data:
        raise MissingData("--data: give one or more benchmark folders (HR/ and LR_x4/), or Set5 Set14")
    model, name, scale = None, "bicubic", config.scale
    if config.model != "bicubic":
        predictor = load_predictor(config.weights, device)
        model, name, scale = predictor.inference_form(), predictor.name, predictor.model.scale
    rows, cases = [], Cases(keep=3)
    for folder in map(benchmark_folder, config.data):
        print(f"{folder.name}: {folder}")
        rows += evaluate_set(model, folder, scale, device, config.tta, config.quiet, cases)
    images = pd.DataFrame(rows)
    if images.empty:
        raise MissingData(f"no HR images in {', '.join(config.data)}")
    images["model"] = images["model"].replace({"model": name})
    table, tta = set_table(images), " +TTA" if config.tta else ""
    text = markdown(table, tta)
    print(f"x{scale}, {PAPER.describe(scale)}\n{text}")
    out_dir = Path(config.output) if config.output else paths.logs_dir() / "eval" / name
    atomic_write_text(out_dir / "table.csv", table.round({"psnr_y": 4, "ssim_y": 5}).to_csv(index=False))
    atomic_write_text(out_dir / "images.csv", images.to_csv(index=False, float_format="%.9f"))
    atomic_write_text(out_dir / "table.md", text + "\n")
    write_page(out_dir / "report.html", name + tta, scale, table, images, cases)
    print(f"written: {out_dir}/table.csv, table.md, images.csv, report.html")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
