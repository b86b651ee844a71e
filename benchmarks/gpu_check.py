"""One command for a lent GPU: the paths users run on Kaggle's T4 x2 and on big GPUs,
each for real, timed, within its own time cap (~9 minutes in all).

Sections (a failure or time-out in one is reported in the table, never fatal):
  t4-fp16      train.py as on a T4: --amp-dtype fp16 (GradScaler) --gpu-memory-gb 14, channels-last
  bf16         train.py in bf16 (native from compute capability 8.0)
  sized        train.py without --batch-size / --patch-size: the step sized for the card (ModelSpec)
  compile      train.py --compile
  cuda-graphs  train.py --cuda-graphs (torch.compile, reduce-overhead, static shapes)
  ddp          torchrun, 2 processes on 2 GPUs (NCCL); with fewer GPUs: says so
  predict      predict.py on 500 GNR638-sized frames (480x270 -> 1920x1080), then make_submission.py
  small-crops  bench_small_crops.py: 5,000 SRGB-sized 64x64 crops, batched by size vs one at a time
  precision    fp16 and bf16 outputs against fp32 (max difference, PSNR change), and the bicubic
               residual layer in fp32 against float64 (TF32 must not reach it)
  ops          bench_step_ops.py: ATen ops of one step and one weight-average update
Then the figures the Kaggle session plan needs (samples/s, predict s a frame).
Training sections: SRResNet-16, batch 16, LR patch 24, a few hundred steps; samples/s of the
last epoch, and MFU per GPU (all ranks' samples shared among the GPUs) against the dense peak of the device's name (T4 65 TFLOP/s fp16,
A100 312, H100/H200 989 bf16). Data: frames fabricated from scikit-image's photos
(1920x1080 HR, MATLAB-bicubic LR), so it runs without ../shared.

In:  nothing (a CUDA device for the real run).
Out: a table printed and appended to benchmarks/RESULTS.md with the machine (not for
     --dry-run); gpu_check.json and the runs' folders under --work.

    python benchmarks/gpu_check.py                              # on a lent GPU
    python benchmarks/gpu_check.py --device cpu --dry-run       # every section starts, tiny sizes (tested)
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import REPO, free_port, machine

PEAK_TFLOPS = {"T4": 65, "A100": 312, "H100": 989, "H200": 989, "L4": 121, "A10": 125, "V100": 125,
               "P100": 18.7, "L40S": 362, "4090": 165}
MACS_PER_LR_PIXEL = 2.218e6          # SRResNet-16 forward (benchmarks/bench_train.py)
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def peak_tflops(name: str) -> float:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)


def mfu(samples_per_s: float, gpus: int, patch: int, peak: float) -> float:
    """Model FLOPs utilisation of ONE GPU (0-1): the samples of all `gpus` ranks shared among
    them, forward + backward = 3 x the forward's 2 x MACS_PER_LR_PIXEL, against one GPU's peak."""
    per_gpu = samples_per_s / max(gpus, 1)
    return per_gpu * patch * patch * MACS_PER_LR_PIXEL * 6 / (peak * 1e12)


class Check:
    """The settings and shared state of one gpu_check run."""

    def __init__(self, args):
        self.device, self.dry = args.device, args.dry_run
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
        self.cuda = self.device.startswith("cuda")
        self.gpus = torch.cuda.device_count() if self.cuda else 0
        self.name = torch.cuda.get_device_name(0) if self.cuda else "CPU"
        self.peak = peak_tflops(self.name)
        self.capability = torch.cuda.get_device_capability(0) if self.cuda else (0, 0)
        self.scale = 4
        if self.dry:      # tiny: every section starts and ends in seconds on a CPU
            self.hr_size, self.frames, self.test_frames = (128, 72), 6, 4
            self.train_flags = ["--num-blocks", "1", "--channels", "8", "--batch-size", "4", "--patch-size", "8",
                          "--patches-per-image", "4", "--epochs", "1", "--threads", "1"]
        else:
            self.hr_size, self.frames, self.test_frames = (1920, 1080), 8, 500
            # 6 training frames x 400 patches / 16 = 150 steps an epoch, 3 epochs (the last one timed)
            self.train_flags = ["--batch-size", "16", "--patch-size", "24", "--patches-per-image", "400", "--epochs", "3"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
        self.env.update(SRX4_WORK_DIR=str(self.work), SRX4_KAGGLE_ROOT=str(self.work / "no-kaggle"),
                        PYTHONUNBUFFERED="1")

    # -- data ---------------------------------------------------------------------------------
    def make_data(self):
        """GNR638-shaped pairs from scikit-image's photos: cropped to 16:9, resized to the HR
        size, LR by the MATLAB-exact bicubic; the test set is the LR frames copied."""
        import cv2
        from skimage import data as photos
        from srx4.image.codec import write_png
        from srx4.image.resize import imresize
        w, h = self.hr_size
        sources = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket(), photos.hubble_deep_field(),
                   photos.immunohistochemistry(), photos.coffee()[:, ::-1], photos.astronaut()[::-1]]
        for k in range(self.frames):
            img = sources[k % len(sources)]
            ih, iw = img.shape[:2]
            ch = min(ih, iw * h // w)
            img = img[(ih - ch) // 2:(ih - ch) // 2 + ch, :ch * w // h]
            hr = np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC))
            write_png(self.work / "train" / "hr" / f"{k:05d}.png", hr)
            write_png(self.work / "train" / "lr" / f"{k:05d}.png", imresize(hr, 1 / self.scale))
        lrs = sorted((self.work / "train" / "lr").glob("*.png"))
        test = self.work / "test" / "lr"
        test.mkdir(parents=True, exist_ok=True)
        for k in range(self.test_frames):
            shutil.copyfile(lrs[k % len(lrs)], test / f"t{k:04d}.png")

    # -- running ------------------------------------------------------------------------------
    def run(self, cmd, timeout):
        """Run a command within `timeout` s; raises with its last error line when it fails."""
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=REPO, timeout=timeout)
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            raise RuntimeError(next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else
                                    f"exit {done.returncode}")[:300])
        return done

    def train(self, run, extra, timeout, launcher=None, gpus=1, sized=False):
        """train.py (under `launcher`, e.g. torchrun, on `gpus` GPUs) on the fabricated pairs;
        returns figures. `sized`: no --batch-size / --patch-size, the card's own choice."""
        flags = self.train_flags
        if sized:                 # drops --batch-size B (and --patch-size P, but in a dry run's tiny frames)
            k = flags.index("--batch-size")
            flags = flags[:k] + flags[k + (2 if self.dry else 4):]
        cmd = (launcher or [sys.executable]) + [
            str(REPO / "src/train.py"), "--data", str(self.work / "train"), "--run-name", run, *flags,
            "--val-fraction", "0.25", "--val-limit", "2", "--final-limit", "2", "--sample-every", "0",
            "--checkpoint-every", "0", "--device", "cuda" if self.cuda else "cpu", "--quiet", *extra]
        start = time.perf_counter()
        self.run(cmd, timeout)
        wall = time.perf_counter() - start
        run_dir = self.work / "logs" / run
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        last = rows[-1]
        before = int(rows[-2]["samples"]) if len(rows) > 1 else 0
        rate = (int(last["samples"]) - before) / float(last["train_seconds"])
        config = json.loads((run_dir / "config.json").read_text())
        patch, batch = int(config["patch_size"]), int(config["batch_size"])
        gpus = gpus if self.cuda else 1
        utilisation = (f"{100 * mfu(rate, gpus, patch, self.peak):.1f}% of {self.peak:g} TFLOP/s per GPU"
                       if self.peak and not self.dry else "n/a" if self.dry else "unknown peak")
        summary = json.loads((run_dir / "summary.json").read_text())
        log = (run_dir / "train.log").read_text()
        scaler = [ln.split("fp16 GradScaler: ")[1].split(" |")[0] for ln in log.splitlines() if "GradScaler: " in ln]
        sizing = [ln.split("step sized for this GPU: ")[1].split(" (")[0] for ln in log.splitlines()
                  if "step sized for this GPU" in ln]
        return {"samples/s": round(rate, 1), **({"GPUs": gpus} if gpus > 1 else {}), "MFU": utilisation,
                "batch x patch": f"{batch} x {patch}", **({"sized": sizing[0]} if sizing else {}),
                "wall s": round(wall, 1),
                "gain dB": round(summary["gain_db"], 3), "skipped steps": summary.get("skipped_steps", 0),
                **({"GradScaler": scaler[-1]} if scaler else {})}

    def weights(self) -> Path:
        """The t4-fp16 run's best weights, or an untrained SRResNet when that section failed."""
        best = self.work / "logs" / "t4-fp16" / "best.safetensors"
        if best.is_file():
            return best
        from srx4.models import build_model
        from srx4.models.weights import save_weights
        config = {"name": "srresnet", "scale": 4}
        path = self.work / "untrained.safetensors"
        save_weights(path, build_model(config), build_model(config).config())
        return path


# -- sections ---------------------------------------------------------------------------------
def t4_fp16(check, cap):
    return check.train("t4-fp16", ["--amp-dtype", "fp16", "--gpu-memory-gb", "14", "--channels-last"], cap)


def bf16(check, cap):
    figures = check.train("bf16", ["--amp-dtype", "bf16"], cap)
    if check.cuda and check.capability < (8, 0):
        figures["note"] = "bf16 is emulated before compute capability 8.0"
    return figures


def compiled(check, cap):
    return check.train("compile", ["--compile"], cap)


def cuda_graphs(check, cap):
    return check.train("cuda-graphs", ["--cuda-graphs"], cap)


def sized(check, cap):
    """No --batch-size / --patch-size: the step train.py sizes for this card (ModelSpec, memory)."""
    return check.train("sized", [], cap, sized=True)


def step_ops(check, cap):
    """benchmarks/bench_step_ops.py: ATen ops of one SRResNet-16 step and weight-average update."""
    size = ["--batch-size", "2", "--patch-size", "8"] if check.dry else []
    done = check.run([sys.executable, str(REPO / "benchmarks/bench_step_ops.py"), "--models", "srresnet", *size], cap)
    row = next(ln for ln in done.stdout.splitlines() if ln.startswith("| srresnet"))
    old, new, fp16, ema_old, ema_new = [int(x) for x in row.strip("| ").split(" | ")[1:]]
    return {"step ops old": old, "step ops bf16 fused": new, "fp16": fp16, "EMA ops old": ema_old, "EMA ops": ema_new}


def ddp(check, cap):
    if check.cuda and check.gpus < 2:
        return {"status": "skipped", "note": f"{check.gpus} GPU on this machine: two-process DDP needs 2"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    if not check.cuda:
        check.env["OMP_NUM_THREADS"] = "1"
    figures = check.train("ddp", [], cap, launcher=launcher, gpus=2)
    ranks = json.loads((check.work / "logs" / "ddp" / "summary.json").read_text())["ranks"]
    figures["ranks identical"] = len({r["weights_fingerprint"] for r in ranks}) == 1
    return figures


def predict(check, cap):
    started = time.perf_counter()
    out = check.work / "sr"
    check.run([sys.executable, str(REPO / "src/predict.py"), "--weights", str(check.weights()), "--input",
               str(check.work / "test" / "lr"), "--output", str(out), "--quiet",
               "--device", "cuda" if check.cuda else "cpu"], cap)
    predicted = time.perf_counter() - started
    csv_path = check.work / "submission.csv"
    check.run([sys.executable, str(REPO / "src/make_submission.py"), "--input", str(out), "--lr-dir",
               str(check.work / "test" / "lr"), "--output", str(csv_path), "--quiet"],
              max(1, cap - predicted))
    total = time.perf_counter() - started
    return {"frames": check.test_frames, "predict s": round(predicted, 1),
            "frames/s": round(check.test_frames / predicted, 2), "CSV s": round(total - predicted, 1),
            "CSV MB": round(csv_path.stat().st_size / 1e6, 1)}


def small_crops(check, cap):
    """benchmarks/bench_small_crops.py (with x8 TTA, as a submission would run; a dry run: 8 crops,
    no TTA) in its own process."""
    size = ["--images", "8", "--seconds", "1"] if check.dry else ["--images", "5000", "--seconds", "20", "--tta"]
    done = check.run([sys.executable, str(REPO / "benchmarks/bench_small_crops.py"), "--device",
                      "cuda" if check.cuda else "cpu", *size], cap)
    line = done.stdout.strip().splitlines()[-1]
    rates = [float(x) for x in re.findall(r"([\d.]+) images/s", line)]
    return {"one at a time img/s": rates[0], "batched img/s": rates[1], "ratio": round(rates[1] / rates[0], 2),
            "max diff (levels)": int(re.search(r"max difference (\d+)", line).group(1))}


def precision(check, cap):
    from srx4.models.weights import load_model
    from srx4.image.codec import read_image, to_tensor
    from srx4.image.resize import BicubicUpscale, resize_tensor
    from srx4.predict.inference import prepare_model, super_resolve
    from srx4.image.metrics import psnr
    device = torch.device("cuda" if check.cuda else "cpu")
    model, _ = load_model(check.weights(), device=device)
    model = prepare_model(model)
    names = sorted((check.work / "train" / "lr").glob("*.png"))[:2]
    lr = torch.stack([to_tensor(read_image(p)) for p in names]).to(device)                 # (2, 3, h, w)
    hr = torch.stack([to_tensor(read_image(p.parent.parent / "hr" / p.name)) for p in names]).to(device)
    figures = {}
    reference = super_resolve(model, lr, amp=False).clamp(0, 1)
    base = psnr(reference.double(), hr.double()).mean().item()
    for dtype in ("fp16", "bf16"):
        out = super_resolve(model, lr, amp=True, amp_dtype=dtype).clamp(0, 1)
        figures[f"{dtype} max diff (levels)"] = round(255 * (out - reference).abs().max().item(), 2)
        figures[f"{dtype} PSNR change dB"] = round(psnr(out.double(), hr.double()).mean().item() - base, 4)
    exact = resize_tensor(lr.double().cpu(), check.scale)
    layer = BicubicUpscale(check.scale).to(device)(lr).double().cpu()
    figures["bicubic layer fp32 vs f64"] = f"{(layer - exact).abs().max().item():.2e}"
    if not check.cuda:
        figures["note"] = "on a CPU, fp16 prediction runs fp32 (only bf16 is used there)"
    return figures


SECTIONS = [("t4-fp16", 80, t4_fp16), ("bf16", 50, bf16), ("sized", 60, sized), ("compile", 80, compiled),
            ("cuda-graphs", 80, cuda_graphs), ("ddp", 50, ddp), ("predict", 80, predict),
            ("small-crops", 50, small_crops), ("precision", 30, precision), ("ops", 40, step_ops)]


def plan_figures(results) -> str:
    """The figures a Kaggle session plan needs (train/plan.py): samples/s of the T4 rehearsal and
    predict seconds a frame."""
    rows = {r["section"]: r["figures"] for r in results}
    t4, pred = rows.get("t4-fp16", {}), rows.get("predict", {})
    per_frame = pred["predict s"] / pred["frames"] if pred.get("frames") else None
    return (f"for the session plan: T4 rehearsal {t4.get('samples/s', 'n/a')} samples/s (batch x patch "
            f"{t4.get('batch x patch', 'n/a')}); predict {per_frame:.3f} s a frame" if per_frame is not None else
            f"for the session plan: T4 rehearsal {t4.get('samples/s', 'n/a')} samples/s; predict n/a")


def table(results) -> str:
    lines = ["| section | status | seconds | figures |", "|---|---|---|---|"]
    for r in results:
        figures = "; ".join(f"{k} {v}" for k, v in r["figures"].items())
        lines.append(f"| {r['section']} | {r['status']} | {r['seconds']} | {figures or r.get('error', '')} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: every section starts and ends quickly")
    parser.add_argument("--work", default="", help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--only", nargs="+", default=[], help="run only these sections")
    parser.add_argument("--results", default="", help="append the table here (default: benchmarks/RESULTS.md, "
                                                      "none for --dry-run)")
    args = parser.parse_args(argv)
    check = Check(args)
    print(f"gpu_check on {machine()}; device {args.device} ({check.name}, {check.gpus} GPU(s)); work {check.work}",
          flush=True)
    started = time.perf_counter()
    check.make_data()
    print(f"data: {check.frames} pairs of {check.hr_size[0]}x{check.hr_size[1]} HR, {check.test_frames} test frames "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    results = []
    for name, cap, section in SECTIONS:
        if args.only and name not in args.only:
            continue
        cap = cap * (3 if check.dry else 1)        # a dry run on 2 CPU cores: startup dominates
        start = time.perf_counter()
        try:
            figures = section(check, cap)
            status = figures.pop("status", "ok")
            error = ""
        except subprocess.TimeoutExpired:
            figures, status, error = {}, "timed out", f"over its {cap} s cap"
        except Exception as err:          # one section's failure is a row of the table, not the end
            figures, status, error = {}, "failed", f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        row = {"section": name, "status": status, "seconds": round(time.perf_counter() - start, 1),
               "figures": figures, "error": error}
        results.append(row)
        print(f"{name}: {status} in {row['seconds']} s {figures or error}", flush=True)
    text = table(results) + "\n\n" + plan_figures(results)
    print(text)
    (check.work / "gpu_check.json").write_text(json.dumps({"machine": machine(), "device": check.name,
                                                           "results": results}, indent=1))
    results_file = Path(args.results) if args.results else (None if check.dry else RESULTS)
    if results_file is not None and args.results != "none":
        with open(results_file, "a") as f:
            f.write(f"\n### gpu_check {time.strftime('%Y-%m-%d')}: {check.name}, {machine()}\n\n"
                    f"`python benchmarks/gpu_check.py{' ' + ' '.join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else ''}`"
                    f" ({time.perf_counter() - started:.0f} s in all)\n\n{text}\n")
    return 0 if all(r["status"] in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
