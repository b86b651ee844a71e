"""Score predictions against ground truth, as the competition and as the papers do.

In:  a submission CSV or a folder of predicted PNGs; --hr the ground-truth HR
     folder (default: the demo's test HR); --lr the LR folder (default: lr/
     beside --hr, if there), which adds the bicubic line: MATLAB bicubic
     upsampling of the same images, rounded to PNG values.
Out: per-image and mean figures under both protocols of `srx4/image/scoring.py`
     (--protocol to pick one): competition = RGB PSNR, scikit-image SSIM,
     score = PSNR + 40 * SSIM; paper = Y (BT.601), `scale` px shaved, Gaussian
     SSIM. The worst five images, a per-image CSV (--output, default beside
     the input) and a report page beside it (<name>_report.html: the tables,
     and crops of the images where the model gains least and most over
     bicubic). A grey ground truth: see the grey rule in scoring.py. A last
     line names the leaderboard's own figure (--metric; auto = the competition's:
     PSNR for SRGB, PSNR + 40 SSIM for GNR638). Reads both CSV formats (png, rle).
Speed: about 1 s per 1080p frame on 2 CPU cores with both protocols and the
     bicubic line (benchmarks/bench_score.py); float64 on a CPU, float32 on a GPU.

    python src/score.py submissions/submission.csv
    python src/score.py submissions/demo/png --hr data/demo/test/hr
    python src/score.py preds/ --hr benchmarks/Set5/HR --protocol paper
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from srx4.core import paths
from srx4.core.cli import option, parse_config, run_main
from srx4.core.errors import JobFailed
from srx4.core.io import atomic_write_text
from srx4.core.progress import progress
from srx4.core.system import resolve_device
from srx4.image.codec import ImageError
from srx4.image.scoring import COMPETITION_METRICS, LEADERBOARD_COLUMNS, PROTOCOLS, leaderboard_metric, score_images
from srx4.runs.html import Cases, case_crops
from srx4.runs.score_report import summary_lines, write_page
from srx4.submit.predictions import load_all, lr_dir_for, predictions
from srx4.submit.submission import SubmissionError


@dataclass
class ScoreConfig:
    predictions: str = option("", "submission CSV or folder of predicted PNGs")
    hr: str = option("", "ground-truth HR folder (default: the demo's test HR)")
    lr: str = option("", "LR folder for the bicubic line (default: lr/ beside --hr, if there)")
    protocol: str = option("both", "competition (RGB, PSNR + 40 SSIM), paper (Y, shaved, Gaussian SSIM) or both",
                           choices=["both", "competition", "paper"])
    scale: int = option(4, "the upscale factor, for the papers' border shave (taken from the LR files when there)")
    device: str = option("auto", "auto, cpu or cuda (float64 on a CPU, float32 on a GPU)")
    output: str = option("", "per-image CSV (default: <predictions>_scores.csv)")
    metric: str = option("auto", "the leaderboard's figure to name: score = PSNR + 40 SSIM (GNR638) or psnr (SRGB); auto = "
                                 "the competition's, found under the Kaggle input or in data/competition.txt",
                         choices=["auto", *LEADERBOARD_COLUMNS])
    quiet: bool = option(False, "no progress bar")


def main(argv=None):
    config = parse_config(ScoreConfig, "Score predictions against HR images.", argv, positional="predictions")
    source = Path(config.predictions)
    hr_dir = Path(config.hr) if config.hr else paths.demo_dir() / "test" / "hr"
    lr_dir = Path(config.lr) if config.lr else lr_dir_for(source, hr_dir)
    if lr_dir is None:
        print(f"no LR folder found (none given with --lr, no lr/ beside {hr_dir}, none recorded by predict.py): "
              f"no bicubic baseline to compare with", flush=True)
        lr_dir = hr_dir.parent / "lr"            # absent: every image is scored without the bicubic line
    else:
        print(f"bicubic baseline from the LR images in {lr_dir}", flush=True)
    print(f"ground truth: the HR images in {hr_dir}", flush=True)
    protocols = list(PROTOCOLS.values()) if config.protocol == "both" else [PROTOCOLS[config.protocol]]
    device = resolve_device(config.device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    rows, scale, cases = [], config.scale, Cases(keep=3)
    try:
        if not source.exists():
            raise FileNotFoundError(f"{source}: not found")
        if not hr_dir.is_dir():
            raise FileNotFoundError(f"{hr_dir}: no HR folder")
        count, items = predictions(source, hr_dir)
        bar = progress(total=count, desc="score", unit="img", quiet=config.quiet)
        for name, sr, hr, lr, bicubic, scale in load_all(items, hr_dir, lr_dir, config.scale):
            try:
                scores = score_images([sr] if bicubic is None else [sr, bicubic], hr, protocols, scale, device, dtype)
                row = {"id": name, **scores[0]}
                if bicubic is not None:
                    row.update({f"bicubic_{k}": v for k, v in scores[1].items()})
                    key = protocols[0].columns()[0]
                    cases.offer(name, scores[0][key] - scores[1][key],
                                lambda focus, a=(lr, bicubic, sr, hr, scale): case_crops(*a, focus=focus),
                                **{c: scores[0][c] for c in protocols[0].columns()})
            except ValueError as err:
                raise SubmissionError(f"{name}: {err}") from None
            rows.append(row)
            bar.update()
        bar.close()
    except (FileNotFoundError, ImageError) as err:      # mid-run: the scores so far are not a result
        raise JobFailed(str(err)) from None
    if not rows:
        raise JobFailed(f"{source}: no predictions to score")
    table = pd.DataFrame(rows)
    print("\n".join(summary_lines(table, protocols, scale)))
    metric, why = leaderboard_metric(config.metric, paths.competition_slug(COMPETITION_METRICS))
    column = LEADERBOARD_COLUMNS[metric]
    if column in table:
        line = f"leaderboard figure ({metric}; {why}): {table[column].mean():.4f}"
        if f"bicubic_{column}" in table:
            line += f" vs bicubic {table[f'bicubic_{column}'].mean():.4f}"
        print(line)
    out = Path(config.output) if config.output else source.parent / f"{source.stem}_scores.csv"
    atomic_write_text(out, table.to_csv(index=False, float_format="%.9f"))
    page = out.with_name(out.name.removesuffix("_scores.csv").removesuffix(".csv") + "_report.html")
    write_page(page, source, table, protocols, scale, cases)
    print(f"per-image scores: {out}\nreport: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
