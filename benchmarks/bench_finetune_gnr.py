"""Fine-tuning from trained weights against training from scratch, on real competition
frames: the same model, the same steps, on crops of one GNR638 frame, scored on the
other (their LR is not a bicubic downscale, so a start from bicubic-trained weights
is not sure to help).

In:  --weights a run folder, .safetensors or shipped name (the start); the two sample
     frames (../shared/samples/gnr638: 00029 to train on, 00034 to score).
Out: a table: PSNR / score on frame 00034 (unseen) and on the whole frame 00029 (the one
     trained on) for bicubic, the start weights as they are, from scratch, and fine-tuned;
     runs under --out.

    python benchmarks/bench_finetune_gnr.py --weights srresnet-x4 --epochs 4
    python benchmarks/bench_finetune_gnr.py --weights logs/ladder/logs/srresnet_small --epochs 4
"""
import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, sample_dir

from srx4.models.weights import load_model
from srx4.image.codec import read_image, to_tensor, to_uint8, write_png
from srx4.predict.inference import super_resolve
from srx4.image.scoring import COMPETITION, bicubic_prediction, score_images


def run(script, *args, work: Path):
    env = {**os.environ, "SRX4_WORK_DIR": str(work), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(REPO / "src" / script), *map(str, args)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def crops(frames: Path, out: Path):
    """The 12 aligned LR 120x67 / HR 480x268 crops of frame 00029 (as tests/test_at_scale.py)."""
    lr, hr = read_image(frames / "lr" / "00029.png"), read_image(frames / "hr" / "00029.png")
    for k, (y, x) in enumerate((y, x) for y in range(0, 270 - 67 + 1, 67) for x in range(0, 480 - 120 + 1, 120)):
        write_png(out / "lr" / f"00029_s{k + 1:03d}.png", lr[y:y + 67, x:x + 120])
        write_png(out / "hr" / f"00029_s{k + 1:03d}.png", hr[4 * y:4 * y + 268, 4 * x:4 * x + 480])
    return out


def scored(sr, hr) -> dict:
    (row,) = score_images([sr], hr, [COMPETITION], 4)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", default="")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--out", default=str(REPO / "logs" / "finetune_gnr"))
    args = parser.parse_args()
    frames, out = sample_dir(args.samples), Path(args.out).resolve()
    data = crops(frames, out / "data")
    _, config = load_model(args.weights)
    shape = [f"--{k.replace('_', '-')}" if v is True else f"--no-{k.replace('_', '-')}" if v is False else None
             for k, v in config.items() if k == "bicubic_residual"]
    shape = [s for s in shape if s] + [x for k in ("num_blocks", "channels") if k in config
                                       for x in (f"--{k.replace('_', '-')}", config[k])]
    common = ["--data", data, "--epochs", args.epochs, "--val-fraction", 0, "--learning-rate", args.learning_rate,
              "--sample-every", 0, "--quiet"]
    runs = {"from scratch": ["--model", config["name"], *shape], "fine-tuned": ["--init-weights", args.weights]}
    frame_names = ("00034", "00029")
    pairs = {f: (read_image(frames / "lr" / f"{f}.png"), read_image(frames / "hr" / f"{f}.png")) for f in frame_names}

    def on_frames(predict) -> dict:
        return {f: scored(predict(lr), hr) for f, (lr, hr) in pairs.items()}

    def with_model(model):
        return lambda lr: to_uint8(super_resolve(model, to_tensor(lr)[None])[0])

    rows = {"bicubic": on_frames(lambda lr: bicubic_prediction(lr, 4)),
            "start weights as they are": on_frames(with_model(load_model(args.weights)[0]))}
    tag = f"{Path(args.weights).resolve().name}_e{args.epochs}_lr{args.learning_rate:g}"   # runs kept per start
    for name, flags in runs.items():
        run_name = f"{name.replace(' ', '_')}_{tag}"
        if not (out / "logs" / run_name / "summary.json").is_file():
            run("train.py", *common, *flags, "--run", run_name, work=out)
        rows[name] = on_frames(with_model(load_model(out / "logs" / run_name)[0]))
    steps = list(csv.DictReader(open(out / "logs" / f"fine-tuned_{tag}" / "metrics.csv")))[-1]["step"]
    print(f"trained on 12 crops of 00029, {args.epochs} epochs, {steps} steps; start: {args.weights}")
    print("| model | 00034 PSNR | 00034 score (PSNR + 40 SSIM) | 00029 PSNR (trained on) | 00029 score |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['00034']['psnr']:.3f} | {r['00034']['score']:.3f} | {r['00029']['psnr']:.3f} | "
              f"{r['00029']['score']:.3f} |")


if __name__ == "__main__":
    main()
