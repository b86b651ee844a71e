"""Does CPU bf16 training cost quality? The same model, seed, data and number of steps,
trained twice on this CPU: in fp32 (--no-amp, the path before CPU bf16) and as train.py
chooses by default (bf16 autocast in channels-last where the CPU computes bf16 natively
and the model is measured faster so; fp32 elsewhere), then scored the papers' way on
Set5 / Set14 (evaluate.py: Y, 4 px shaved, MATLAB-bicubic LR).

In:  ../shared/train (T91 + BSD200 HR photos, made into x4 pairs by prepare_data.py as
     bench_quality.py does) or --pairs DIR (lr/ + hr/); --epochs of the same run for both.
Out: OUT/bf16_quality.md and .json: per model and precision the steps, the training
     seconds, Set5 / Set14 PSNR-Y and SSIM-Y, and the differences default - fp32 (the
     issue's bar: within 0.05 dB on Set5); the runs stay in OUT/logs.

    python benchmarks/bench_cpu_bf16_quality.py --models span --epochs 4      # ~15 min on 2 cores
"""
import argparse
import csv
import json
import time
from pathlib import Path

from common import REPO, machine
from bench_quality import TRAIN_PHOTOS, evaluate, prepare, run

from srx4.core.system import cpu_has_bf16

PRECISIONS = {"fp32": ["--no-amp"], "default": []}


def train_seconds(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv") as f:
        return sum(float(r["train_seconds"]) for r in csv.DictReader(f))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["span"])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of 16 patches per training image")
    parser.add_argument("--pairs", default="", help="x4 pairs (lr/, hr/); default: made from --photos")
    parser.add_argument("--photos", default=str(TRAIN_PHOTOS), help="folder with T91/ and BSD200/")
    parser.add_argument("--train-args", default="", help="more train.py flags for every run")
    parser.add_argument("--out", default=str(REPO / "logs" / "bf16_quality"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bf16_quality.log"
    pairs = Path(args.pairs) if args.pairs else prepare(Path(args.photos), out, log)
    rows = []
    for name in args.models:
        for precision, flags in PRECISIONS.items():
            run_name = f"{name}_{precision}"
            run_dir = out / "logs" / run_name
            if not (run_dir / "summary.json").is_file():
                run("train.py", "--data", pairs, "--model", name, "--epochs", args.epochs, "--batch-size", 16,
                    "--patch-size", 24, "--patches-per-image", 16, "--learning-rate", "5e-4", "--val-fraction", 0.05,
                    "--sample-every", 0, "--device", "cpu", "--seed", 42, "--run", run_name, "--quiet", *flags,
                    *args.train_args.split(), work=out, log=log)
            chosen = next((ln.split("mixed precision: ")[1] for ln in (run_dir / "train.log").read_text().splitlines()
                           if "mixed precision: " in ln), "fp32")
            with open(run_dir / "metrics.csv") as f:
                steps = int(list(csv.DictReader(f))[-1]["step"])
            rows.append({"model": name, "precision": precision, "chosen": chosen.split(" (")[0], "steps": steps,
                         "train_s": round(train_seconds(run_dir), 1),
                         "eval": evaluate([run_dir], out / "eval" / run_name, log, "cpu", out)})
            print(f"{run_name}: {rows[-1]['chosen']}, {steps} steps in {rows[-1]['train_s']:.0f} s: "
                  f"Set5 {rows[-1]['eval']['Set5'][0]:.3f} dB, Set14 {rows[-1]['eval']['Set14'][0]:.3f} dB", flush=True)
    lines = [f"x4, {args.epochs} epochs each, seed 42, batch 16, LR patch 24; {machine()}, native bf16: "
             f"{cpu_has_bf16()}", "",
             "| model | precision | steps | train s | Set5 PSNR / SSIM (Y) | Set14 PSNR / SSIM (Y) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        s5, s14 = r["eval"]["Set5"], r["eval"]["Set14"]
        lines.append(f"| {r['model']} | {r['precision']}: {r['chosen']} | {r['steps']} | {r['train_s']:.0f} | "
                     f"{s5[0]:.3f} / {s5[1]:.4f} | {s14[0]:.3f} / {s14[1]:.4f} |")
    for name in args.models:
        fp32, default = (next(r for r in rows if r["model"] == name and r["precision"] == p) for p in PRECISIONS)
        d5 = default["eval"]["Set5"][0] - fp32["eval"]["Set5"][0]
        d14 = default["eval"]["Set14"][0] - fp32["eval"]["Set14"][0]
        lines.append(f"\n{name}: default - fp32 = {d5:+.3f} dB on Set5, {d14:+.3f} dB on Set14 "
                     f"({'within' if abs(d5) <= 0.05 else 'OUTSIDE'} 0.05 dB on Set5); training "
                     f"{fp32['train_s'] / max(default['train_s'], 1e-9):.2f}x faster")
    table = "\n".join(lines)
    print(table)
    (out / "bf16_quality.md").write_text(table + "\n")
    (out / "bf16_quality.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"written: {out / 'bf16_quality.md'}; runs in {out / 'logs'}; {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
