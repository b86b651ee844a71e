"""The quality ladder: every architecture trained for the same wall-clock budget on the
same photos, then benchmarked the papers' way (Set5 / Set14, Y, 4 px shaved).

In:  ../shared/train (T91 + BSD200 HR photos; made into x4 pairs with prepare_data.py
     on the first run), --minutes per model, --preset small (each model's demo
     preset: ranking on a CPU) or full (the models' own sizes: a GPU).
Out: OUT/ladder.md and ladder.json: per model its parameters (trained / inference
     form), MACs per LR pixel, steps done, Set5 and Set14 PSNR / SSIM (Y), inference
     ms per 1080p frame (480x270 LR) on this device; beside them bicubic and the
     ensemble of the two best models (predict.py --weights a b). The runs stay in
     OUT/logs for evaluate.py, inspect_run.py or a longer fine-tune.

    python benchmarks/bench_quality.py --minutes 4 --preset small          # CPU, about 20 minutes
    python benchmarks/bench_quality.py --minutes 5 --preset full --device cuda   # one GPU, ~25 minutes
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO

import torch

from srx4.models import TRAINABLE, count_parameters
from srx4.models.weights import load_model
from srx4.predict.inference import estimate_predict_seconds, prepare_model
from srx4.core.system import resolve_device

TRAIN_PHOTOS = REPO.parent / "shared" / "train"


def run(script: str, *args, work: Path, log: Path):
    """A repo CLI as a user runs it; its output appended to `log`."""
    env = {**os.environ, "SRX4_WORK_DIR": str(work), "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as out:
        out.write(f"\n$ python src/{script} {' '.join(map(str, args))}\n")
        out.flush()
        done = subprocess.run([sys.executable, str(REPO / "src" / script), *map(str, args)], stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}): see {log}")


def prepare(photos: Path, out: Path, log: Path) -> Path:
    pairs = out / "train291"
    for name in ("T91", "BSD200"):
        run("prepare_data.py", "--hr", photos / name, "--out", pairs, "--quiet", work=out, log=log)
    return pairs


def macs_per_lr_pixel(model) -> float:
    """Multiply-accumulates per LR pixel of the inference form (BatchNorm folded), counted
    by torch's FLOP counter on a 32 x 32 input."""
    from torch.utils.flop_counter import FlopCounterMode
    fast = prepare_model(model.cpu().eval(), fold_bn=True, channels_last=False)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fast(torch.rand(1, 3, 32, 32))
    return counter.get_total_flops() / 2 / (32 * 32)


def evaluate(weights, out: Path, log: Path, device: str, work: Path) -> dict:
    """{set: (psnr_y, ssim_y)} of evaluate.py for `weights` (a list: an ensemble) or bicubic."""
    flags = ["--model", "bicubic"] if weights == "bicubic" else ["--weights", *weights]
    run("evaluate.py", *flags, "--data", "Set5", "Set14", "--output", out, "--device", device, "--quiet",
        work=work, log=log)
    rows = [r for r in csv.DictReader(open(out / "table.csv")) if r["model"] != "bicubic" or weights == "bicubic"]
    return {r["set"]: (float(r["psnr_y"]), float(r["ssim_y"])) for r in rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training wall-clock per model")
    parser.add_argument("--models", nargs="+", default=TRAINABLE, choices=TRAINABLE)
    parser.add_argument("--preset", default="small", choices=["small", "full"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--train-args", default="", help="more train.py flags for every model, e.g. '--loss l1+ssim'")
    parser.add_argument("--photos", default=str(TRAIN_PHOTOS), help="folder with T91/ and BSD200/")
    parser.add_argument("--out", default=str(REPO / "logs" / "ladder"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "ladder.log"
    device = resolve_device(args.device)
    pairs = prepare(Path(args.photos), out, log)
    rows = [{"model": "bicubic", "parameters": 0, "inference_parameters": 0, "macs_per_lr_px": 0, "steps": 0,
             "eval": evaluate("bicubic", out / "eval" / "bicubic", log, args.device, out), "ms_1080p": None}]
    for name in args.models:
        run_name = f"{name}_{args.preset}"
        preset = []
        if args.preset == "small" and name != "srcnn":
            preset = ["--num-blocks", "4", "--channels", "32"]
        started = time.time()
        if not (out / "logs" / run_name / "summary.json").is_file():
            run("train.py", "--data", pairs, "--model", name, *preset, "--epochs", "100000",
                "--time-limit", args.minutes / 60, "--learning-rate", args.learning_rate, "--patches-per-image", 16,
                "--val-fraction", 0.05, "--sample-every", 0, "--device", args.device, "--run", run_name, "--quiet",
                *args.train_args.split(), work=out, log=log)
        trained_s = time.time() - started
        model, config = load_model(out / "logs" / run_name)
        metrics = list(csv.DictReader(open(out / "logs" / run_name / "metrics.csv")))
        ms = estimate_predict_seconds(model.to(device), 480, 270, device, frames=1) * 1000
        rows.append({"model": name, "config": config, "parameters": count_parameters(model),
                     "inference_parameters": model.inference_parameters(), "macs_per_lr_px": macs_per_lr_pixel(model),
                     "steps": int(metrics[-1]["step"]), "train_s": trained_s,
                     "eval": evaluate([out / "logs" / run_name], out / "eval" / run_name, log, args.device, out),
                     "ms_1080p": ms})
        print(f"{name}: Set5 {rows[-1]['eval']['Set5'][0]:.2f} dB, Set14 {rows[-1]['eval']['Set14'][0]:.2f} dB after "
              f"{rows[-1]['steps']} steps", flush=True)
    trained = sorted(rows[1:], key=lambda r: -r["eval"]["Set5"][0])
    if len(trained) >= 2:
        pair = [out / "logs" / f"{r['model']}_{args.preset}" for r in trained[:2]]
        rows.append({"model": f"ensemble {trained[0]['model']} + {trained[1]['model']}",
                     "parameters": trained[0]["parameters"] + trained[1]["parameters"],
                     "inference_parameters": trained[0]["inference_parameters"] + trained[1]["inference_parameters"],
                     "macs_per_lr_px": trained[0]["macs_per_lr_px"] + trained[1]["macs_per_lr_px"], "steps": 0,
                     "eval": evaluate(pair, out / "eval" / "ensemble", log, args.device, out),
                     "ms_1080p": (trained[0]["ms_1080p"] or 0) + (trained[1]["ms_1080p"] or 0)})
    header = ("| model | params (trained / inference) | MACs / LR px | steps | Set5 PSNR / SSIM | Set14 PSNR / SSIM | "
              "ms / 1080p frame |")
    lines = [f"x4, {args.minutes:g} min of training each on {device.type} "
             f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), preset {args.preset}, "
             f"learning rate {args.learning_rate:g} {args.train_args}".rstrip(), "", header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        s5, s14 = r["eval"]["Set5"], r["eval"]["Set14"]
        params = f"{r['parameters'] / 1e6:.3f} M / {r['inference_parameters'] / 1e6:.3f} M" if r["parameters"] else "-"
        ms = f"{r['ms_1080p']:.0f}" if r["ms_1080p"] else "-"
        lines.append(f"| {r['model']} | {params} | {r['macs_per_lr_px'] / 1e3:.1f} K | {r['steps'] or '-'} | "
                     f"{s5[0]:.2f} / {s5[1]:.4f} | {s14[0]:.2f} / {s14[1]:.4f} | {ms} |")
    table = "\n".join(lines)
    print(table)
    (out / "ladder.md").write_text(table + "\n")
    (out / "ladder.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    print(f"written: {out / 'ladder.md'}, {out / 'ladder.json'}; runs in {out / 'logs'}")


if __name__ == "__main__":
    main()
